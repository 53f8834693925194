"""The SPEC 5.1 robustness analyses (issue 13) on real data: the tables the SIGnature paper reports, with wall times.

For PBMC3k and the Kang 2018 IFN-β subset (bundled), a small scVI model is trained on the data (the demo's cached
helper; 40 epochs), Integrated Gradients attributions are computed once, and each analysis prints its table for
attribution, expression and the shuffled-gene baseline, with its wall time:

- downsampling: Spearman and top-50 overlap of each cell type's gene ranking at 50% and 90% of counts removed.

    python benchmarks/analyses.py                       # both datasets, all analyses
    python benchmarks/analyses.py --datasets pbmc3k --n-steps 20 --fractions 0 0.5 0.9

Wall times depend on the machine and its load; quote them with both.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np
import pandas as pd

DATASETS = ("pbmc3k", "kang")
ANALYSES = ("downsampling",)


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
    markers = {label: panglao[name_] for label, name_ in ss.datasets.pbmc3k_signatures().items() if label in labels}
    return adata, markers, model


def downsampling(adata, markers, model, args) -> pd.DataFrame:
    import sigscan as ss
    from sigscan.tl._robustness_report import downsampling_summary

    table = ss.tl.downsampling_stability(
        adata,
        model,
        fractions=args.fractions,
        groupby="cell_type",
        method="ig",
        n_shuffles=args.n_shuffles,
        n_steps=args.n_steps,
    )
    return downsampling_summary(table)


RUNNERS = {"downsampling": downsampling}


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

    warnings.simplefilter("ignore")
    pd.set_option("display.width", 160)
    pd.set_option("display.max_columns", 20)
    print(f"torch threads: {torch.get_num_threads()}; load average: {os.getloadavg()}")
    for name in args.datasets:
        start = time.perf_counter()
        adata, markers, model = load(name)
        print(
            f"\n=== {name}: {adata.n_obs} cells × {adata.n_vars} genes; scVI {model.n_genes} genes "
            f"(model ready in {time.perf_counter() - start:.1f} s)"
        )
        start = time.perf_counter()
        ss.pp.attributions(adata, model, method="ig", n_steps=args.n_steps, progress=False)
        print(f"IG attributions ({args.n_steps} steps): {time.perf_counter() - start:.1f} s")
        for analysis in args.analyses:
            start = time.perf_counter()
            table = RUNNERS[analysis](adata, markers, model, args)
            seconds = time.perf_counter() - start
            print(f"\n--- {name} · {analysis} ({seconds:.1f} s wall, load average {os.getloadavg()[0]:.1f})")
            print(table.round(3).to_string(index=False))
    print(f"\nnumpy {np.__version__}, sigscan {ss.__version__}")


if __name__ == "__main__":
    main()
