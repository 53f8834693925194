"""Attribution throughput and memory: sigscan against the reference sc-signature, same model, cells and machine.

SPEC 7 set-up: a random-weight SCimilarity-architecture model (28,231 genes; 1,024–1,024–128) and 1,000 PBMC3k
cells. Each measurement runs in a fresh process (isolated peak RSS). Prints cells/s, peak RSS, speed-up ratios,
the agreement of IG with the reference (per-cell Pearson, max |difference| on the 1000-scaled values) and the
fraction of the FLOP limit (FLOPs per cell of the exact fast path ÷ measured matmul throughput).

    python benchmarks/attributions.py                 # full comparison (needs benchmarks/requirements.txt)
    python benchmarks/attributions.py --no-reference  # sigscan only
    python benchmarks/attributions.py --memory 100000 # adds the 100k-cell backed-file peak-RSS check
    python benchmarks/attributions.py --profile       # adds where sigscan's time goes, stage by stage
    python benchmarks/attributions.py --contention    # IG slowdown under two competing numeric processes (issue 10)
    python benchmarks/attributions.py --first-call    # first call of a fresh process against steady state (issue 10)

Each figure is the median of several calls (``--repeats``, ``--reference-repeats``; the machines are shared and
noisy), with the range in the JSON rows. The FLOP limit is printed for every method.

The scGPT row comes from benchmarks/scgpt.py, the scFoundation and SSL-scTab rows from benchmarks/foundation.py.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from scipy import sparse

sys.path.insert(0, str(Path(__file__).parent))
import itertools

from _common import (
    benchmark_cells,
    matmul_gflops,
    pbmc_gene_order,
    peak_rss_gb,
    run_worker,
    workdir,
)

HIDDEN = (1024, 1024)
LATENT = 128
METHODS = ("ig", "dl", "ixg")


def _model_dir() -> Path:
    """Write (once) the random SCimilarity-architecture model in the published folder format."""
    import sigscan as ss

    path = workdir() / "scimilarity_random"
    if not (path / "encoder.ckpt").exists():
        model = ss.models.SCimilarity.random(pbmc_gene_order(), hidden_dim=HIDDEN, latent_dim=LATENT, random_state=0)
        model.save(path)
        (path / "label_ints.csv").write_text(",0\n0,cell\n")  # the reference loader requires this file
    return path


def _worker(kind: str, method: str, n_cells: int, batch_size: int, repeats: int, out: str) -> None:
    if kind == "reference":
        import torch  # noqa: F401  - before sigscan: torch's thread pool as the reference's users get it

    import sigscan as ss

    model = ss.models.SCimilarity(_model_dir())
    adata = benchmark_cells(n_cells)
    x = model.prepare(adata)  # log-normalised, aligned: the same input for both packages
    seconds = []
    if kind == "sigscan":
        ss.pp.attributions(adata[:8].copy(), model, method=method, progress=False)  # warm-up (numba compile)
        for _ in range(repeats):
            start = time.perf_counter()
            ss.pp.attributions(adata, model, method=method, batch_size=batch_size or None, progress=False)
            seconds.append(time.perf_counter() - start)
        result = model.align(adata.var).to_model(adata.layers[f"attr_scimilarity_{method}"])
    else:
        from SIGnature.models.scimilarity import SCimilarityWrapper

        wrapper = SCimilarityWrapper(str(_model_dir()), use_gpu=False)
        for _ in range(repeats):
            start = time.perf_counter()
            result = wrapper.calculate_attributions(x, method=method, batch_size=batch_size, disable_tqdm=True)
            seconds.append(time.perf_counter() - start)
    sparse.save_npz(out, sparse.csr_matrix(result, dtype=np.float32))
    rates = sorted(n_cells / s for s in seconds)
    print(
        json.dumps(
            {
                "cells_per_s": float(np.median(rates)),
                "cells_per_s_range": [rates[0], rates[-1]],
                "repeats": repeats,
                "peak_rss_gb": peak_rss_gb(),
            }
        )
    )


#: where a fast-path call spends its time: stage name → the functions whose cumulative time it is
_STAGES = {
    "model input (align, log-normalise)": ("model_input",),
    "group non-zeros by gene": ("from_csr",),
    "first layer x Wᵀ (sparse + dense genes)": ("sparse_dense_mm",),
    "dense chain (forward + backward)": ("hidden_gradient",),
    "gene gather ḡ·W_j at the non-zeros": ("sampled_rowdot",),
    "abs + scale rows to 1000": ("scale_rows",),
    "back to the data's genes": ("to_data",),
}


def _profile_worker(method: str, n_cells: int, batch_size: int) -> None:
    """Time one call's stages with cProfile (after a warm-up call); print them as JSON."""
    import cProfile
    import pstats

    import sigscan as ss

    model = ss.models.SCimilarity(_model_dir())
    adata = benchmark_cells(n_cells)
    ss.pp.attributions(adata, model, method=method, batch_size=batch_size or None, progress=False)
    profile = cProfile.Profile()
    profile.enable()
    ss.pp.attributions(adata, model, method=method, batch_size=batch_size or None, progress=False)
    profile.disable()
    stats = pstats.Stats(profile).stats  # (file, line, name) → (calls, primitive calls, tottime, cumtime, callers)
    cumulative: dict[str, float] = {}
    for (_, _, name), (_, _, _, cumtime, _) in stats.items():
        cumulative[name] = max(cumulative.get(name, 0.0), cumtime)
    total = cumulative.get("attributions", 0.0)
    stages = {stage: sum(cumulative.get(f, 0.0) for f in functions) for stage, functions in _STAGES.items()}
    stages["everything else (checks, AnnData, provenance)"] = total - sum(stages.values())
    print(json.dumps({"total_s": total, "stages": stages}))


def _flops_per_cell(nnz_per_cell: float, n_steps: int) -> float:
    """Multiply-adds ×2 of the exact fast path: first layer, n_steps × (forward + input-gradient) of the rest,
    and the gene-space map at the non-zeros (IG: ``n_steps`` path points; DeepLIFT and IxG: one)."""
    sizes = [*HIDDEN, LATENT]
    dense = sum(a * b for a, b in itertools.pairwise(sizes))
    return 2 * nnz_per_cell * HIDDEN[0] * 2 + n_steps * 2 * dense * 2


def _agreement(a: sparse.csr_matrix, b: sparse.csr_matrix, n_cells: int, n_oracle: int = 8) -> dict:
    """Per-cell Pearson and max |difference|; for the most different cells, which side a float64 oracle backs."""
    a, b = a.toarray(), b.toarray()
    keep = (a.sum(1) > 0) & (b.sum(1) > 0)
    r = [np.corrcoef(x, y)[0, 1] for x, y in zip(a[keep], b[keep], strict=True)]
    per_cell = np.abs(a - b).max(axis=1)
    worst = np.argsort(-per_cell)[:n_oracle]
    oracle = _float64_oracle(worst, n_cells)
    return {
        "min_pearson": float(np.min(r)),
        "max_abs_diff": float(per_cell.max()),
        "cells_within_1e-3": float((per_cell <= 1e-3).mean()),
        "oracle_cells": len(worst),
        "oracle_max_diff_sigscan": float(np.abs(a[worst] - oracle).max()),
        "oracle_max_diff_reference": float(np.abs(b[worst] - oracle).max()),
    }


def _float64_oracle(cells: np.ndarray, n_cells: int) -> np.ndarray:
    """IG by captum in float64 on the dense input (the definition, without float32 rounding)."""
    import copy

    import torch
    from captum.attr import IntegratedGradients

    import sigscan as ss

    model = ss.models.SCimilarity(_model_dir())
    x = torch.as_tensor(model.prepare(benchmark_cells(n_cells)[cells].copy()).toarray(), dtype=torch.float64)
    encoder = copy.deepcopy(model.encoder).double().eval()

    def head(inputs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return (encoder(inputs) * weights).abs().sum(dim=1)

    with torch.no_grad():
        w = encoder(x)
    attr = IntegratedGradients(head).attribute(
        x, baselines=torch.zeros_like(x), additional_forward_args=(w,), n_steps=50
    )
    attr = attr.abs().numpy()
    return attr / attr.sum(axis=1, keepdims=True) * 1000


def _memory_check(n_cells: int, method: str) -> dict:
    path = workdir() / f"cells_{n_cells}.h5ad"
    if not path.exists():
        benchmark_cells(n_cells).write_h5ad(path)
    return run_worker(__file__, "memory", method, str(n_cells), "0", str(path))


def _memory_worker(method: str, path: str) -> None:
    import shutil

    import anndata as ad

    import sigscan as ss

    model = ss.models.SCimilarity(_model_dir())
    adata = ad.read_h5ad(path, backed="r")
    out = workdir() / "memory_check.zarr"
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    ss.pp.attributions(adata, model, method=method, out=out, progress=False)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "cells_per_s": adata.n_obs / seconds, "peak_rss_gb": peak_rss_gb()}))


def _first_call_worker(method: str, n_cells: int) -> None:
    """A fresh process: import sigscan, load the model and cells, then time three calls (first vs steady state)."""
    from _load import load_average

    load = load_average()
    start = time.perf_counter()
    import sigscan as ss

    imported = time.perf_counter()
    model = ss.models.SCimilarity(_model_dir())
    adata = benchmark_cells(n_cells)
    ready = time.perf_counter()
    seconds = []
    for _ in range(3):
        cells = adata.copy()
        begin = time.perf_counter()
        ss.pp.attributions(cells, model, method=method, progress=False)
        seconds.append(time.perf_counter() - begin)
    steady = min(seconds[1:])
    result = {
        "method": method,
        "import_s": imported - start,
        "setup_s": ready - imported,
        "first_cells_per_s": n_cells / seconds[0],
        "steady_cells_per_s": n_cells / steady,
        "ratio": seconds[0] / steady,
        "seconds": seconds,
        "load_average": load,
    }
    print(json.dumps(result))


def first_call(methods: list[str], n_cells: int) -> None:
    """``--first-call``: first-call and steady-state cells/s of a fresh process, per method."""
    from _load import print_first_call

    run_worker(__file__, "first-call", methods[0], "50", "0", "-")  # primes numba's cache if this checkout has none
    rows = []
    for method in methods:
        rows.append(run_worker(__file__, "first-call", method, str(n_cells), "0", "-"))
        print(json.dumps(rows[-1]), flush=True)
    print_first_call(rows, n_cells)


def contention(
    method: str, n_cells: int, *, reference: bool, reference_batch_size: int, n_processes: int, repeats: int
) -> None:
    """``--contention``: cells/s alone and under competing load, sigscan and (when importable) the reference."""
    import importlib.util

    from _load import contention_table, print_contention

    kinds = ["sigscan"]
    if reference and importlib.util.find_spec("SIGnature") is not None:
        kinds.append("reference")
    elif reference:
        print("reference sc-signature not importable (put it on PYTHONPATH): sigscan only")

    def run(kind: str) -> dict:
        batch = str(reference_batch_size if kind == "reference" else 0)
        out = str(workdir() / f"contention_{kind}.npz")
        return run_worker(__file__, kind, method, str(n_cells), batch, "1", out)

    rows = contention_table(run, kinds, n_processes=n_processes, repeats=repeats)
    print_contention(rows, n_processes=n_processes, method=method, n_cells=n_cells)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=None, help="sigscan batch size (default: its own)")
    parser.add_argument("--reference-batch-size", type=int, default=500)
    parser.add_argument("--no-reference", action="store_true")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--memory", type=int, default=0, help="also run N cells from a backed h5ad to a zarr store")
    parser.add_argument("--memory-method", default="ig", choices=METHODS)
    parser.add_argument("--no-scgpt", action="store_true", help="skip the scGPT row (benchmarks/scgpt.py)")
    parser.add_argument(
        "--no-foundation",
        action="store_true",
        help="skip the scFoundation and SSL-scTab rows (benchmarks/foundation.py)",
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed sigscan calls per method (median reported)")
    parser.add_argument(
        "--reference-repeats",
        type=int,
        default=3,
        help="timed reference calls per method (median reported; IG: 1, it takes minutes)",
    )
    parser.add_argument("--profile", action="store_true", help="also print where sigscan's time goes, per method")
    parser.add_argument("--contention", action="store_true", help="only: IG alone vs under competing load")
    parser.add_argument("--contention-cells", type=int, default=200)
    parser.add_argument("--contention-processes", type=int, default=2)
    parser.add_argument("--contention-repeats", type=int, default=2, help="alone/loaded pairs; the best of each")
    parser.add_argument("--first-call", action="store_true", help="only: first call vs steady state, fresh process")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, method, n_cells, batch_size, *rest = args.worker
        if kind == "first-call":
            _first_call_worker(method, int(n_cells))
        elif kind == "memory":
            _memory_worker(method, rest[0])
        elif kind == "profile":
            _profile_worker(method, int(n_cells), int(batch_size))
        else:
            _worker(kind, method, int(n_cells), int(batch_size), int(rest[0]), rest[1])
        return
    if args.contention or args.first_call:
        if args.contention:
            contention(
                "ig",
                args.contention_cells,
                reference=not args.no_reference,
                reference_batch_size=args.reference_batch_size,
                n_processes=args.contention_processes,
                repeats=args.contention_repeats,
            )
        if args.first_call:
            first_call([m for m in args.methods if m in ("ig", "ixg")] or args.methods, args.cells)
        return

    import torch

    import sigscan as ss

    model_dir = _model_dir()
    cells = benchmark_cells(args.cells)
    nnz_per_cell = ss.models.SCimilarity(model_dir).prepare(cells).nnz / cells.n_obs
    gflops = matmul_gflops()
    print(f"machine: {torch.get_num_threads()} torch threads, float32 matmul {gflops:.0f} GFLOP/s")
    print(f"model: SCimilarity architecture, {len(pbmc_gene_order())} genes, {HIDDEN} → {LATENT}, random weights")
    print(f"cells: {args.cells} PBMC3k cells, {nnz_per_cell:.0f} non-zero model genes per cell\n")

    rows = []
    for method in args.methods:
        ours_out = workdir() / f"sigscan_{method}.npz"
        ours = run_worker(
            __file__,
            "sigscan",
            method,
            str(args.cells),
            str(args.batch_size or 0),
            str(args.repeats),
            str(ours_out),
        )
        row = {
            "method": method,
            "sigscan_cells_per_s": ours["cells_per_s"],
            "sigscan_range": ours["cells_per_s_range"],
            "sigscan_rss_gb": ours["peak_rss_gb"],
        }
        if not args.no_reference:
            ref_out = workdir() / f"reference_{method}.npz"
            repeats = 1 if method == "ig" else args.reference_repeats
            ref = run_worker(
                __file__,
                "reference",
                method,
                str(args.cells),
                str(args.reference_batch_size),
                str(repeats),
                str(ref_out),
            )
            row |= {
                "reference_cells_per_s": ref["cells_per_s"],
                "reference_range": ref["cells_per_s_range"],
                "reference_rss_gb": ref["peak_rss_gb"],
            }
            row["speedup"] = ours["cells_per_s"] / ref["cells_per_s"]
            if method == "ig":  # dl/ixg: the reference explains the normalised head, whose gradient is noise (SPEC 1.1)
                row |= _agreement(sparse.load_npz(ours_out), sparse.load_npz(ref_out), args.cells)
        limit = gflops * 1e9 / _flops_per_cell(nnz_per_cell, 50 if method == "ig" else 1)
        row["flop_limit_cells_per_s"] = limit
        row["fraction_of_flop_limit"] = ours["cells_per_s"] / limit
        if args.profile:
            row["profile"] = run_worker(__file__, "profile", method, str(args.cells), str(args.batch_size or 0))
        rows.append(row)
        print(json.dumps(row))

    print("\nmethod  sigscan cells/s  (peak RSS)  reference cells/s  (peak RSS)  speed-up  notes")
    for row in rows:
        ref = (
            f"{row['reference_cells_per_s']:17.1f}  ({row['reference_rss_gb']:.1f} GB)  {row['speedup']:7.1f}x"
            if "speedup" in row
            else " " * 40
        )
        notes = []
        if "min_pearson" in row:
            notes.append(
                f"vs reference: min per-cell Pearson {row['min_pearson']:.6f}, max |diff| {row['max_abs_diff']:.2e}, "
                f"{100 * row['cells_within_1e-3']:.1f}% of cells within 1e-3; float64 oracle on the "
                f"{row['oracle_cells']} most different cells: max |diff| sigscan {row['oracle_max_diff_sigscan']:.1e}, "
                f"reference {row['oracle_max_diff_reference']:.1e}"
            )
        if "fraction_of_flop_limit" in row:
            notes.append(
                f"FLOP limit {row['flop_limit_cells_per_s']:.0f} cells/s → {100 * row['fraction_of_flop_limit']:.0f}% of it"
            )
        print(
            f"{row['method']:6s}  {row['sigscan_cells_per_s']:15.1f}  ({row['sigscan_rss_gb']:.1f} GB)  {ref}  {'; '.join(notes)}"
        )
    print(
        f"(medians of {args.repeats} sigscan and {args.reference_repeats} reference calls, IG reference: 1; "
        f"load average at the end {os.getloadavg()[0]:.2f})"
    )
    profiled = [row for row in rows if "profile" in row]
    if profiled:
        print("\nwhere sigscan's time goes (ms per call, one profiled call after a warm-up)")
        stages = list(profiled[0]["profile"]["stages"])
        print(f"{'stage':48s}" + "".join(f"{row['method']:>9s}" for row in profiled))
        for stage in stages:
            print(f"{stage:48s}" + "".join(f"{1000 * row['profile']['stages'][stage]:9.1f}" for row in profiled))
        print(f"{'total':48s}" + "".join(f"{1000 * row['profile']['total_s']:9.1f}" for row in profiled))

    if args.memory:
        mem = _memory_check(args.memory, args.memory_method)
        print(
            f"\nbacked h5ad → zarr, {args.memory} cells, {args.memory_method}: {mem['cells_per_s']:.0f} cells/s, "
            f"peak RSS {mem['peak_rss_gb']:.2f} GB (goal < 3 GB)"
        )
    if not args.no_scgpt:
        from scgpt import scgpt_row  # benchmarks/scgpt.py

        print(
            "\nscGPT (12 layers × 512, 1,200 genes):",
            json.dumps(scgpt_row(device="cuda" if torch.cuda.is_available() else "cpu")),
        )
    if not args.no_foundation:
        from foundation import scfoundation_rows, sctab_rows  # benchmarks/foundation.py

        print("\nSSL-scTab and scFoundation (CPU; sigscan against captum on the same module):")
        for row in [*sctab_rows(), *scfoundation_rows()]:
            print(json.dumps(row, ensure_ascii=False))


if __name__ == "__main__":
    main()
