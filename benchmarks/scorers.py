"""Gene-set scorer benchmark (SPEC 7): time per method on PBMC3k and on 100,000 cells resampled from it.

Runs pyucell and scanpy in the same process for reference and prints the ratios against the goals:
UCell >= 5x pyucell, JASMINE >= 5x the ANS package's JASMINE (3.8 s for a 50-gene set on PBMC3k, measured on this
machine kind; the package is not installable here), ANS no slower than the ANS package's ANS (0.18 s), equality with
pyucell (Pearson >= 0.999) and scanpy (identical), and peak RSS (< 4 GB at 100,000 cells).

    python benchmarks/scorers.py                # PBMC3k, then 100,000 cells (each size in its own process)
    python benchmarks/scorers.py --cells 2700   # one size only
    python benchmarks/scorers.py --compare      # compare_scorers, paper preset (25 splits) on PBMC3k: wall time
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import peak_rss_gb

ANS_PACKAGE_JASMINE_S = 3.8
ANS_PACKAGE_ANS_S = 0.18
METHODS = ("mean", "scanpy", "ans", "jasmine", "ucell", "aucell", "attribution")


def best_of(func, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def build(n_cells: int):
    import scanpy as sc
    from scipy import sparse

    import sigscan as ss

    adata = ss.datasets.pbmc3k()
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    # an attribution-like layer with the sparsity of the data (scores read it the same way as real attributions)
    attr = adata.X.copy()
    attr.data = np.random.default_rng(1).gamma(1.0, 1.0, attr.data.size).astype(np.float32)
    adata.layers["attr_bench_ig"] = attr
    if n_cells != adata.n_obs:
        rows = np.random.default_rng(0).integers(0, adata.n_obs, n_cells)
        x = adata.X[rows]
        layer = adata.layers["attr_bench_ig"][rows]
        obs = adata.obs.iloc[rows].reset_index(drop=True)
        obs.index = [f"cell{i}" for i in range(n_cells)]
        import anndata as ad

        adata = ad.AnnData(sparse.csr_matrix(x), obs=obs, var=adata.var.copy())
        adata.layers["attr_bench_ig"] = layer
    genes = [g for g in ss.datasets.gene_sets("panglaodb_immune")["PANGLAODB_B_CELLS"] if g in adata.var_names][:50]
    return adata, genes


def run(n_cells: int, repeats: int, skip_pyucell: bool) -> None:
    import pyucell
    import scanpy as sc

    import sigscan as ss

    warnings.simplefilter("ignore")
    adata, genes = build(n_cells)
    print(
        f"\n== {adata.n_obs:,} cells x {adata.n_vars:,} genes, {adata.X.nnz / adata.n_obs:.0f} non-zeros per cell, "
        f"{len(genes)}-gene set; data loaded, peak RSS {peak_rss_gb():.2f} GB"
    )
    times = {}
    for method in METHODS:
        times[method] = best_of(
            lambda m=method: ss.tl.score_genes(adata, genes, method=m, normalize=False, key_added=f"ours_{m}"), repeats
        )
        print(f"sigscan {method:<12s} {times[method]:8.3f} s   (peak RSS so far {peak_rss_gb():.2f} GB)")
    times["scanpy.tl.score_genes"] = best_of(lambda: sc.tl.score_genes(adata, genes, score_name="ref_scanpy"), repeats)
    print(f"scanpy.tl.score_genes  {times['scanpy.tl.score_genes']:8.3f} s")
    if not skip_pyucell:
        times["pyucell"] = best_of(
            lambda: pyucell.compute_ucell_scores(adata, {"ref": genes}, missing_genes="skip"),
            1 if n_cells > 10_000 else repeats,
        )
        print(f"pyucell                {times['pyucell']:8.3f} s   (default n_jobs=-1)")

    print("-- ratios and equality")
    if "pyucell" in times:
        r = np.corrcoef(adata.obs["ours_ucell"], adata.obs["ref_UCell"])[0, 1]
        diff = np.abs(adata.obs["ours_ucell"] - adata.obs["ref_UCell"]).max()
        print(
            f"UCell: {times['pyucell'] / times['ucell']:.1f}x pyucell (goal >= 5x); Pearson {r:.6f} (goal >= 0.999), "
            f"max |diff| {diff:.2e}"
        )
    if n_cells == 2700:
        print(f"JASMINE: {ANS_PACKAGE_JASMINE_S / times['jasmine']:.1f}x the ANS package's 3.8 s (goal >= 5x)")
        print(f"ANS: {ANS_PACKAGE_ANS_S / times['ans']:.1f}x the ANS package's 0.18 s (goal >= 1x)")
    same = np.array_equal(adata.obs["ours_scanpy"].to_numpy(), adata.obs["ref_scanpy"].to_numpy())
    print(
        f"scanpy path identical to scanpy.tl.score_genes: {same}; "
        f"sigscan scanpy / scanpy time {times['scanpy'] / times['scanpy.tl.score_genes']:.2f}"
    )
    print(f"peak RSS {peak_rss_gb():.2f} GB (goal < 4 GB at 100,000 cells)")


def compare(repeats: int, n_jobs: int | None = None) -> None:
    """Wall time of ``compare_scorers(preset="paper")`` (6 methods, logreg with 25 splits + Otsu) on PBMC3k."""
    import os

    import sigscan as ss

    warnings.simplefilter("ignore")
    adata, _ = build(2700)
    signatures = ss.datasets.pbmc3k_signatures()
    sets = ss.datasets.gene_sets("panglaodb_immune")
    tables = []

    def once() -> None:
        tables.append(
            ss.tl.compare_scorers(
                adata, signatures, "cell_type", gmt=sets, preset="paper", normalize=False, n_jobs=n_jobs
            )
        )

    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        once()
        times.append(time.perf_counter() - start)
    elapsed = float(np.median(times))
    table = tables[-1]
    n_logreg = int((table["classifier"] == "logreg").sum())
    print(
        f"compare_scorers paper preset on PBMC3k ({adata.n_obs:,} cells, {len(signatures)} labels, "
        f"{table['method'].nunique()} methods, {n_logreg} logreg F1 values): {elapsed:.2f} s (median of {repeats}: "
        f"{', '.join(f'{t:.2f}' for t in times)}; n_jobs={n_jobs}; load average {os.getloadavg()[0]:.1f}; "
        f"{os.cpu_count()} CPUs visible, goal < 10 s on 2 cores); mean logreg F1 "
        f"{table.loc[table['classifier'] == 'logreg', 'f1'].mean():.6f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, default=None, help="one size only (default: 2700 then 100000)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-pyucell", action="store_true")
    parser.add_argument("--compare", action="store_true", help="time compare_scorers (paper preset) on PBMC3k only")
    parser.add_argument(
        "--n-jobs", type=int, default=None, help="--compare: processes for the fits (default: one per CPU)"
    )
    args = parser.parse_args()
    if args.compare:
        compare(args.repeats, args.n_jobs)
        return
    if args.cells is not None:
        run(args.cells, args.repeats, args.skip_pyucell)
        return
    for cells in (2700, 100_000):  # separate processes so each peak RSS is its own
        command = [sys.executable, __file__, "--cells", str(cells), "--repeats", str(args.repeats)]
        subprocess.run(command + (["--skip-pyucell"] if args.skip_pyucell else []), check=True)


if __name__ == "__main__":
    main()
