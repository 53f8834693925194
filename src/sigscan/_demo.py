"""``sigscan demo``: the main job on bundled real data, end to end, with a short report.

1. PBMC3k: a small scVI model (trained once, then cached), Integrated Gradients attributions, PanglaoDB immune
   signatures scored by attribution, UMAP and violins, and the scorer comparison (F1 of attribution, ANS, JASMINE,
   UCell, scanpy and mean expression, logistic regression and Otsu).
2. Kang 2018 IFN-β: a second small scVI model, the Hallmark interferon-α signature scored by attribution, hits
   (top 10% within each cell type) and the fraction of hit cells per sample — the SIGnature "hits per sample" workflow.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from ._logging import logger, quiet_libraries
from ._report import Report
from ._utils import cache_dir, write_anndata, written_aside
from .datasets import pbmc3k_signatures

_CACHE_VERSION = "v1"
IFN_SET = "HALLMARK_INTERFERON_ALPHA_RESPONSE"


def _gene_space(adata: Any, gene_sets: dict[str, list[str]], n_top_genes: int = 3000) -> list[str]:
    """Highly variable genes plus every gene of the given sets that the data has."""
    import scanpy as sc

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hvg = sc.pp.highly_variable_genes(adata, flavor="seurat_v3", n_top_genes=n_top_genes, inplace=False)
    chosen = set(adata.var_names[hvg["highly_variable"].to_numpy()])
    chosen |= {g for genes in gene_sets.values() for g in genes} & set(adata.var_names)
    return [g for g in adata.var_names if g in chosen]


def train_demo_model(adata: Any, genes: list[str], *, name: str, max_epochs: int, random_state: int = 0) -> Any:
    """Train a small scVI model on ``adata[:, genes]`` once, then load it from the cache folder."""
    import scvi

    from .models import SCVI

    folder = cache_dir() / f"demo-scvi-{name}-{_CACHE_VERSION}"
    if (folder / "model.pt").exists():
        logger.warning("loading the cached %s demo scVI model from %s", name, folder)
        return SCVI(folder, name="scvi")
    logger.warning(
        "training a small scVI model on %s (%d genes, %d epochs; cached afterwards)", name, len(genes), max_epochs
    )
    scvi.settings.seed = random_state
    train = adata[:, genes].copy()
    scvi.model.SCVI.setup_anndata(train)
    model = scvi.model.SCVI(train, n_hidden=128, n_latent=10, n_layers=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.train(
            max_epochs=max_epochs, batch_size=256, accelerator="cpu", enable_progress_bar=False, early_stopping=False
        )
    tmp = folder.with_name(f"{folder.name}.{os.getpid()}.tmp")  # one name per process: concurrent trainings
    model.save(str(tmp), overwrite=True, save_anndata=False)
    try:
        tmp.rename(folder)  # the first finished training wins; an equal one is simply dropped
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return SCVI(folder, name="scvi")


def run_demo(out: str | Path, *, max_epochs: int = 40, n_splits: int = 10) -> Path:
    """Run both parts of the demo and write ``report.md`` (with figures and tables) into ``out``."""
    import matplotlib

    matplotlib.use("Agg")

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    report = Report("sigscan demo")
    with quiet_libraries(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # absent-gene notices of the immune sets
        _pbmc3k_part(report, out, timings, max_epochs=max_epochs, n_splits=n_splits)
        _kang_part(report, out, timings, max_epochs=max_epochs)
    report.heading("Timings (seconds)").bullets([f"{k}: {v:.1f}" for k, v in timings.items()])
    report.write(out)
    with written_aside(out / "summary.json") as tmp:
        tmp.write_text(json.dumps({"timings_s": timings}, indent=1))
    return out / "report.md"


def _pbmc3k_part(report: Report, out: Path, timings: dict[str, float], *, max_epochs: int, n_splits: int) -> None:
    import matplotlib.pyplot as plt
    import scanpy as sc
    import torch

    from . import datasets, pl, pp, tl

    start = time.perf_counter()
    adata = datasets.pbmc3k()
    adata = adata[adata.obs["passed_tutorial_qc"].to_numpy()].copy()
    sc.pp.filter_genes(adata, min_cells=3)
    gene_sets = datasets.gene_sets("panglaodb_immune")
    model = train_demo_model(adata, _gene_space(adata, gene_sets), name="pbmc3k", max_epochs=max_epochs)
    timings["PBMC3k scVI model"] = time.perf_counter() - start

    start = time.perf_counter()
    pp.attributions(adata, model, method="ig", progress=False)
    timings["PBMC3k IG attributions"] = time.perf_counter() - start
    key = "attr_scvi_ig"
    signatures = list(dict.fromkeys(pbmc3k_signatures().values()))
    for set_name in signatures:
        tl.attribution_score(adata, gene_sets[set_name], layer=key, key_added=set_name)

    with torch.no_grad():
        adata.obsm["X_scvi"] = model.embed(torch.as_tensor(model.prepare(adata).toarray())).numpy()
    sc.pp.neighbors(adata, use_rep="X_scvi", random_state=0)
    sc.tl.umap(adata, random_state=0)
    shown = ["PANGLAODB_B_CELLS", "PANGLAODB_NK_CELLS", "PANGLAODB_MONOCYTES"]
    fig = sc.pl.umap(
        adata, color=["cell_type", *shown], ncols=2, wspace=0.5, show=False, return_fig=True, frameon=False
    )
    with written_aside(out / "umap_scores.png") as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    pl.score_distributions(adata, shown, "cell_type", show=False, save=out / "violins_scores.png")
    plt.close("all")

    start = time.perf_counter()
    table = tl.compare_scorers(
        adata, pbmc3k_signatures(), "cell_type", gmt=gene_sets, preset="paper", n_splits=n_splits, attribution_layer=key
    )
    timings["PBMC3k scorer comparison"] = time.perf_counter() - start
    with written_aside(out / "compare_scorers.csv") as tmp:
        table.to_csv(tmp, index=False)
    pl.compare_scorers(table, show=False, save=out / "compare_scorers.png")
    plt.close("all")
    write_anndata(adata, out / "pbmc3k_attributions.h5ad")

    f1 = table.groupby(["classifier", "label", "method"], observed=True)["f1"].mean().unstack("method")
    ranks = _signature_ranks(adata, signatures)
    (
        report.heading("PBMC3k: attributions and signature scores")
        .text(
            f"{adata.n_obs} PBMC3k cells (scanpy tutorial QC), a small scVI model ({model.n_genes} genes, "
            f"{model.embedding_dim}-dimensional latent space), Integrated Gradients attributions of the summation "
            f"head (`{key}`, fast path, 1,000 per cell), PanglaoDB immune signatures scored as the mean attribution "
            "of their genes."
        )
        .text("Does each signature score highest in the cell type it marks?")
        .table(ranks)
        .image(out / "umap_scores.png", "UMAP coloured by cell type and signature scores")
        .image(out / "violins_scores.png", "Signature scores per cell type")
        .heading(f"PBMC3k: scorer comparison (mean F1 over {n_splits} splits; paper preset)")
        .text(
            "One score per method is the single feature that identifies each cell type (logistic regression on "
            "held-out cells; Otsu thresholds without training). Table: `compare_scorers.csv`."
        )
        .table(f1.reset_index())
        .image(out / "compare_scorers.png", "F1 per scorer and cell type")
    )


def _signature_ranks(adata: Any, signatures: list[str]) -> pd.DataFrame:
    labels = adata.obs["cell_type"].astype(str)
    rows = []
    for set_name in signatures:
        marked = [cell_type for cell_type, name in pbmc3k_signatures().items() if name == set_name]
        means = adata.obs[set_name].groupby(labels, observed=True).mean().sort_values(ascending=False)
        rows.append(
            {
                "signature": set_name,
                "marks": ", ".join(marked),
                "top cell type": means.index[0],
                "rank of marked type": min(list(means.index).index(t) + 1 for t in marked),
                "mean in marked": float(adata.obs.loc[labels.isin(marked), set_name].mean()),
                "mean elsewhere": float(adata.obs.loc[~labels.isin(marked), set_name].mean()),
            }
        )
    return pd.DataFrame(rows)


def _kang_part(report: Report, out: Path, timings: dict[str, float], *, max_epochs: int) -> None:
    import matplotlib.pyplot as plt

    from . import datasets, pl, pp, tl

    start = time.perf_counter()
    adata = datasets.kang_ifnb()
    model = train_demo_model(adata, list(adata.var_names), name="kang", max_epochs=max_epochs)
    pp.attributions(adata, model, method="ig", progress=False)
    genes = datasets.gene_sets("hallmark")[IFN_SET]
    tl.attribution_score(adata, genes, layer="attr_scvi_ig", key_added="ifn_alpha")
    tl.hits(adata, "ifn_alpha", percentile=90, key_added="ifn_hit")
    per_sample = tl.sample_hits(
        adata.obs,
        "ifn_hit",
        sample_key="sample",
        groupby="cell_type",
        min_cells=25,
        min_samples=3,
        sample_columns=["condition"],
    )
    timings["Kang model, attributions, hits"] = time.perf_counter() - start
    with written_aside(out / "kang_sample_hits.csv") as tmp:
        per_sample.to_csv(tmp, index=False)
    pl.sample_hits(per_sample, hue="condition", show=False, save=out / "kang_sample_hits.png")
    plt.close("all")
    by_condition = (
        per_sample.groupby(["cell_type", "condition"], observed=True)["hit_fraction"].mean().unstack("condition")
    )
    n_genes = len(set(genes) & set(adata.var_names))
    (
        report.heading("Kang 2018 IFN-β: hits per sample")
        .text(
            f"{adata.n_obs} PBMCs from 2 donors, control or IFN-β stimulated. {IFN_SET} ({n_genes} of its genes are "
            "in the data) scored by attribution with a small scVI model; hits are the top 10% of cells over all "
            "samples; below, the fraction of hit cells per sample and cell type (samples with at least 25 cells)."
        )
        .table(by_condition.reset_index())
        .image(out / "kang_sample_hits.png", "Fraction of interferon-signature hits per sample")
    )
