"""The SPEC 5.1 robustness analyses (issue 13) on real data: the tables the SIGnature paper reports, with wall times.

For PBMC3k and the Kang 2018 IFN-β subset (bundled), a small scVI model is trained on the data (the demo's cached
helper, 40 epochs), Integrated Gradients attributions are computed once, and each analysis prints its table for
attribution, expression and the shuffled-gene baseline (mean over 25 relabellings), with its wall time:

- qc_correlation: |Spearman| of each cell type's PanglaoDB marker-set score with total counts (and genes detected,
  % MT counts), mean attribution vs mean log-normalised expression;
- rank_percentiles: mean within-cell rank percentile of the marker sets, ribosomal, MT- and transcription-factor
  genes (attributions vs counts);
- downsampling: Spearman and top-50 overlap of each cell type's gene ranking at 50% and 90% of counts removed;
- cell_cycle: G2/M and S log2 fold change. Neither dataset has measured phases: on PBMC3k the phases are
  ``scanpy.tl.score_genes_cell_cycle`` calls from the same Tirosh genes' expression, so expression is favoured by
  construction (the table is a plumbing check, not evidence); Kang lacks most cell-cycle genes and is skipped;
- factor_specificity (Kang only: it needs batches): NMF factors of attributions and of expression, each cell type vs
  the rest in every within- and cross-sample comparison, pass rate over n_factors (5, 10) × 2 seeds.

    python benchmarks/analyses.py                       # both datasets, all analyses
    python benchmarks/analyses.py --datasets pbmc3k --analyses downsampling --fractions 0 0.5 0.9

Wall times depend on the machine and its load; quote them with both.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import pandas as pd

DATASETS = ("pbmc3k", "kang")
ANALYSES = ("qc_correlation", "rank_percentiles", "downsampling", "cell_cycle", "factor_specificity")


def load(name: str):
    """(counts AnnData, marker sets named by cell type, scVI model wrapper) for one dataset."""
    import scanpy as sc

    import sigscan as ss
    from sigscan._demo import _gene_space, train_demo_model

    panglao = ss.datasets.gene_sets("panglaodb_immune")
    if name == "pbmc3k":
        adata = ss.datasets.pbmc3k()
        adata = adata[adata.obs["passed_tutorial_qc"].to_numpy()].copy()
        sc.pp.filter_genes(adata, min_cells=3)
        model = train_demo_model(adata, _gene_space(adata, panglao), name="pbmc3k", max_epochs=40)
    elif name == "kang":
        adata = ss.datasets.kang_ifnb()
        model = train_demo_model(adata, list(adata.var_names), name="kang", max_epochs=40)
    else:
        raise ValueError(f"unknown dataset {name!r}; use one of {DATASETS}")
    labels = set(adata.obs["cell_type"].astype(str))
    markers = {label: panglao[set_] for label, set_ in ss.datasets.pbmc3k_signatures().items() if label in labels}
    return adata, markers, model


def add_scanpy_phases(adata) -> None:
    """``obs["phase"]`` from scanpy's ``score_genes_cell_cycle`` on log-normalised counts (expression-derived)."""
    import anndata as ad
    import scanpy as sc

    import sigscan as ss

    g2m, s = ss.datasets.gene_sets("tirosh_cell_cycle").values()
    lognorm = sc.pp.log1p(sc.pp.normalize_total(adata, target_sum=1e4, inplace=False)["X"])
    scored = ad.AnnData(lognorm, obs=adata.obs[[]], var=adata.var[[]])
    sc.tl.score_genes_cell_cycle(scored, s_genes=s, g2m_genes=g2m, random_state=0)
    adata.obs["phase"] = scored.obs["phase"].astype(str).to_numpy()


def factor_table(adata, layer: str) -> pd.DataFrame:
    """Pass rate and median minimum t per cell type and representation (Kang: batches are the 4 samples)."""
    import sigscan as ss

    rows = []
    grid = {"n_factors": [5, 10], "random_state": [0, 1]}
    for label in sorted(set(adata.obs["cell_type"].astype(str))):
        table = ss.tl.factor_specificity(adata, label, batch_key="sample", layer=layer, grid=grid)
        for reads, part in table.groupby("reads", sort=False):
            rows.append(
                {
                    "cell type": label,
                    "reads": reads,
                    "pass rate": float(part["passes"].mean()),
                    "median min t": float(part["min_t"].median()),
                    "runs": len(part),
                    "comparisons": int(part["n_comparisons"].iloc[0]),
                }
            )
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--analyses", nargs="+", default=list(ANALYSES), choices=ANALYSES)
    parser.add_argument("--fractions", nargs="+", type=float, default=[0.0, 0.5, 0.9])
    parser.add_argument("--n-steps", type=int, default=50, help="Integrated Gradients steps")
    parser.add_argument("--n-shuffles", type=int, default=25)
    args = parser.parse_args()

    import torch

    import sigscan as ss
    from sigscan.tl._robustness_report import ANALYSES as SECTIONS
    from sigscan.tl._robustness_report import ReportContext

    warnings.simplefilter("ignore")
    pd.set_option("display.width", 200)
    pd.set_option("display.max_columns", 20)
    print(f"torch threads: {torch.get_num_threads()}; CPUs: {os.cpu_count()}; load average: {os.getloadavg()}")
    for name in args.datasets:
        start = time.perf_counter()
        adata, markers, model = load(name)
        print(
            f"\n=== {name}: {adata.n_obs} cells × {adata.n_vars} genes; scVI on {model.n_genes} genes "
            f"(model ready in {time.perf_counter() - start:.1f} s)",
            flush=True,
        )
        start = time.perf_counter()
        ss.pp.attributions(adata, model, method="ig", n_steps=args.n_steps, progress=False)
        print(f"IG attributions ({args.n_steps} steps): {time.perf_counter() - start:.1f} s", flush=True)
        layer = f"attr_{model.name}_ig"
        phase_key = None
        if name == "pbmc3k" and "cell_cycle" in args.analyses:
            add_scanpy_phases(adata)
            phase_key = "phase"
            print(
                "phases (scanpy score_genes_cell_cycle, expression-derived):",
                adata.obs["phase"].value_counts().to_dict(),
            )
        context = ReportContext(
            adata=adata,
            model=model,
            gene_sets=markers,
            groupby="cell_type",
            attribution_layer=layer,
            counts_layer=None,
            method="ig",
            fractions=tuple(args.fractions),
            n_shuffles=args.n_shuffles,
            phase_key=phase_key,
            random_state=0,
            attribution_options={"n_steps": args.n_steps},
        )
        for analysis in args.analyses:
            start = time.perf_counter()
            if analysis == "factor_specificity":
                if name != "kang":
                    print(f"\n--- {name} · factor_specificity: skipped (no batches in these data)")
                    continue
                table = factor_table(adata, layer)
            else:
                section = SECTIONS[analysis]
                reason = section.skip(context)
                if reason is not None:
                    print(f"\n--- {name} · {analysis}: skipped: {reason}")
                    continue
                table = section.summarise(section.run(context))
            seconds = time.perf_counter() - start
            load_now = os.getloadavg()[0]
            print(f"\n--- {name} · {analysis} ({seconds:.1f} s wall, load average {load_now:.1f})", flush=True)
            print(table.round(3).to_string(index=False), flush=True)


if __name__ == "__main__":
    main()
