"""``sigscan demo``: the main job on bundled real data, end to end, with a short report."""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._logging import logger
from ._utils import cache_dir

#: PBMC3k cell type → PanglaoDB immune set that marks it (used for the report's signature panels)
PBMC3K_SIGNATURES = {
    "B cells": "PANGLAODB_B_CELLS",
    "NK cells": "PANGLAODB_NK_CELLS",
    "CD14+ Monocytes": "PANGLAODB_MONOCYTES",
    "CD4 T cells": "PANGLAODB_T_HELPER_CELLS",
    "CD8 T cells": "PANGLAODB_T_CYTOTOXIC_CELLS",
    "Dendritic cells": "PANGLAODB_DENDRITIC_CELLS",
    "Megakaryocytes": "PANGLAODB_PLATELETS",
}
_MODEL_VERSION = "pbmc3k-scvi-v1"


def _demo_data() -> Any:
    import scanpy as sc

    from . import datasets

    adata = datasets.pbmc3k()
    adata = adata[adata.obs["passed_tutorial_qc"].to_numpy()].copy()
    sc.pp.filter_genes(adata, min_cells=3)
    return adata


def _gene_space(adata: Any, gene_sets: dict[str, list[str]], n_top_genes: int = 3000) -> list[str]:
    """Highly variable genes plus every gene of the bundled immune sets that the data has."""
    import scanpy as sc

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hvg = sc.pp.highly_variable_genes(adata, flavor="seurat_v3", n_top_genes=n_top_genes, inplace=False)
    chosen = set(adata.var_names[hvg["highly_variable"].to_numpy()])
    chosen |= {g for genes in gene_sets.values() for g in genes} & set(adata.var_names)
    return [g for g in adata.var_names if g in chosen]


def train_demo_model(adata: Any, genes: list[str], *, max_epochs: int = 40, seed: int = 0) -> Any:
    """Train (or load from the cache folder) the small scVI model the demo attributes."""
    import scvi

    from .models import SCVI

    folder = cache_dir() / _MODEL_VERSION
    if (folder / "model.pt").exists():
        logger.warning("loading the cached demo scVI model from %s", folder)
        return SCVI(folder, name="scvi")
    logger.warning(
        "training a small scVI model on PBMC3k (%d genes, %d epochs; cached afterwards)", len(genes), max_epochs
    )
    scvi.settings.seed = seed
    train = adata[:, genes].copy()
    scvi.model.SCVI.setup_anndata(train)
    model = scvi.model.SCVI(train, n_hidden=128, n_latent=10, n_layers=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.train(
            max_epochs=max_epochs, batch_size=256, accelerator="cpu", enable_progress_bar=False, early_stopping=False
        )
    tmp = folder.with_name(folder.name + ".tmp")
    model.save(str(tmp), overwrite=True, save_anndata=False)
    if not folder.exists():
        tmp.replace(folder)
    return SCVI(folder, name="scvi")


def run_demo(out: str | Path, *, max_epochs: int = 40) -> Path:
    """Train/load scVI on PBMC3k, compute IG attributions, score the PanglaoDB immune sets, write a report."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import scanpy as sc
    import torch

    from . import datasets, pp, tl

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    adata = _demo_data()
    gene_sets = datasets.gene_sets("panglaodb_immune")
    model = train_demo_model(adata, _gene_space(adata, gene_sets), max_epochs=max_epochs)
    timings["model"] = time.perf_counter() - start

    start = time.perf_counter()
    pp.attributions(adata, model, method="ig", progress=False)
    timings["attributions"] = time.perf_counter() - start
    key = "attr_scvi_ig"
    in_model = adata.var_names[adata.var[f"{key}_in_model"].to_numpy()]

    start = time.perf_counter()
    scored = {}
    for cell_type, set_name in PBMC3K_SIGNATURES.items():
        genes = [g for g in gene_sets[set_name] if g in set(in_model)]
        tl.attribution_score(adata, genes, layer=key, key_added=set_name)
        scored[cell_type] = set_name
    timings["scores"] = time.perf_counter() - start

    with torch.no_grad():
        adata.obsm["X_scvi"] = model.embed(torch.as_tensor(model.prepare(adata).toarray())).numpy()
    sc.pp.neighbors(adata, use_rep="X_scvi", random_state=0)
    sc.tl.umap(adata, random_state=0)

    figures = _figures(adata, scored, out, plt, sc)
    table = _mean_scores(adata, scored)
    adata.write_h5ad(out / "pbmc3k_attributions.h5ad")
    report = _report(adata, model, key, table, figures, timings)
    (out / "report.md").write_text(report)
    (out / "summary.json").write_text(json.dumps({"timings_s": timings, "n_cells": adata.n_obs}, indent=1))
    return out / "report.md"


def _mean_scores(adata: Any, scored: dict[str, str]) -> pd.DataFrame:
    """Mean signature score per cell type, and whether the matching cell type ranks first."""
    labels = adata.obs["cell_type"].astype(str)
    rows = []
    for cell_type, set_name in scored.items():
        means = adata.obs[set_name].groupby(labels, observed=True).mean().sort_values(ascending=False)
        rows.append(
            {
                "signature": set_name,
                "cell type": cell_type,
                "mean in cell type": means.get(cell_type, np.nan),
                "mean elsewhere": adata.obs.loc[labels != cell_type, set_name].mean(),
                "top cell type": means.index[0],
                "rank of cell type": int(list(means.index).index(cell_type)) + 1,
            }
        )
    return pd.DataFrame(rows)


def _figures(adata: Any, scored: dict[str, str], out: Path, plt: Any, sc: Any) -> list[str]:
    names = []
    shown = ["PANGLAODB_B_CELLS", "PANGLAODB_NK_CELLS", "PANGLAODB_MONOCYTES"]
    fig = sc.pl.umap(
        adata, color=["cell_type", *shown], ncols=2, wspace=0.5, show=False, return_fig=True, frameon=False
    )
    fig.savefig(out / "umap_scores.png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    names.append("umap_scores.png")
    fig, axes = plt.subplots(len(shown), 1, figsize=(9, 3.2 * len(shown)), constrained_layout=True)
    for ax, set_name in zip(axes, shown, strict=True):
        sc.pl.violin(adata, set_name, groupby="cell_type", rotation=40, ax=ax, show=False, stripplot=False)
        ax.set_ylabel("mean attribution")
        ax.set_title(set_name)
    fig.savefig(out / "violins_scores.png", dpi=110)
    plt.close(fig)
    names.append("violins_scores.png")
    return names


def _report(adata: Any, model: Any, key: str, table: pd.DataFrame, figures: list[str], timings: dict) -> str:
    provenance = adata.uns["sigscan"]["attributions"][key]
    lines = [
        "# sigscan demo: PBMC3k",
        "",
        f"{adata.n_obs} PBMC3k cells (scanpy tutorial QC), a small scVI model ({model.n_genes} genes, "
        f"{model.embedding_dim}-dimensional latent space), Integrated Gradients attributions of the summation head "
        f"(`{key}`, {provenance['n_steps']} steps, {provenance['engine']} path, scaled to {provenance['target_sum']:g} "
        "per cell), and PanglaoDB immune signatures scored as the mean attribution of their genes.",
        "",
        "## Does each signature score highest in its own cell type?",
        "",
        table.to_markdown(index=False, floatfmt=".3f")
        if _has_tabulate()
        else "```\n" + table.to_string(index=False) + "\n```",
        "",
        "## Figures",
        "",
        *[f"![{name}]({name})" for name in figures],
        "",
        "## Timings (seconds)",
        "",
        *[f"- {step}: {seconds:.1f}" for step, seconds in timings.items()],
        "",
        f"Provenance: model weights sha256 `{provenance['weights_sha256'][:16]}…`, sigscan {provenance['sigscan_version']}.",
        "The AnnData with the attribution layer is `pbmc3k_attributions.h5ad`.",
        "",
    ]
    return "\n".join(lines)


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True
