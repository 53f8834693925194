"""scFoundation and SSL-scTab attribution throughput: sigscan against captum on the same module, and the FLOP limit.

- SSL-scTab: the published size (19,331 genes → 512 → 512 → 256 → 256 → 64, SELU, random weights) on PBMC3k cells;
  sigscan's exact fast path against captum on the dense input (``engine="captum"``, same batches).
- scFoundation: a reduced model (its size is printed; the published encoder is 768 wide and 12 deep) over the most
  detected PBMC3k genes; sigscan's batched path against the reference way of running it, captum one cell per call.

Cells/s are medians of ``--repeats`` runs after a warm-up; the FLOP limit is the FLOPs per cell (written out in
``_sctab_flops`` / ``_scfoundation_flops``) divided by the measured float32 matmul throughput.

    python benchmarks/foundation.py                # both rows
    python benchmarks/foundation.py --only sctab   # one of them
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import benchmark_cells, matmul_gflops, pbmc_gene_order

import sigscan as ss
from sigscan._engine import attribute_captum, inference_mode

SCTAB_GENES = 19_331
SCTAB_UNITS = (512, 512, 256, 256, 64)
SCF_SIZE = {"hidden_dim": 64, "depth": 2, "heads": 4}
SCF_GENES = 1_000
SCF_BINS = 100


def _median_seconds(run, repeats: int) -> float:
    run()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _sctab_flops(nnz_per_cell: float, n_steps: int) -> float:
    """First layer (``u = x Wᵀ`` and the gene map ``x ⊙ ḡW`` at the non-zeros), then per step the forward and the
    input-gradient pass of the 512-…-64 rest (2 FLOPs per multiply-add)."""
    rest = sum(a * b for a, b in itertools.pairwise(SCTAB_UNITS))
    return 2 * nnz_per_cell * SCTAB_UNITS[0] * 2 + n_steps * 2 * rest * 2


def sctab_rows(n_cells: int = 256, repeats: int = 3, methods: tuple[str, ...] = ("ig", "ixg")) -> list[dict]:
    """Cells/s of the fast path and of captum on a full-size SSL-scTab, and the fraction of the FLOP limit."""
    genes = pbmc_gene_order(SCTAB_GENES)
    model = ss.models.ScTabSSL.random(genes, units=SCTAB_UNITS, random_state=0)
    adata = benchmark_cells(n_cells)
    nnz = model.prepare(adata).nnz / n_cells
    gflops = matmul_gflops()
    rows = []
    for method in methods:
        row = {"model": f"SSL-scTab {SCTAB_GENES} → {'→'.join(map(str, SCTAB_UNITS))} (SELU)", "method": method}
        kwargs = {"method": method, "device": "cpu", "progress": False}
        fast = _median_seconds(lambda kw=kwargs: ss.pp.attributions(adata.copy(), model, **kw), repeats)
        ref = _median_seconds(
            lambda kw=kwargs: ss.pp.attributions(adata.copy(), model, engine="captum", batch_size=64, **kw), repeats
        )
        limit = gflops * 1e9 / _sctab_flops(nnz, 50 if method == "ig" else 1)
        row |= {
            "cells": n_cells,
            "nnz_per_cell": round(nnz),
            "sigscan_cells_per_s": round(n_cells / fast, 1),
            "captum_cells_per_s": round(n_cells / ref, 1),
            "speedup": round(ref / fast, 2),
            "flop_limit_cells_per_s": round(limit, 1),
            "fraction_of_flop_limit": round(n_cells / fast / limit, 3),
        }
        rows.append(row)
    return rows


def _scfoundation_flops(tokens: float, n_steps: int) -> float:
    """Per step: forward + backward (≈ 3 forwards) of the value embedding (1→100→100 MLP, 100 × d bin mixture), the
    encoder layers (4 d² projections + 2 · 4 d² feed-forward per token, 2 · tokens² · d for the attention products)."""
    d, depth = SCF_SIZE["hidden_dim"], SCF_SIZE["depth"]
    embedding = tokens * 2 * (SCF_BINS + SCF_BINS * SCF_BINS + SCF_BINS * d)
    layer = tokens * 2 * (4 * d * d + 8 * d * d) + 2 * 2 * tokens * tokens * d
    return n_steps * 3 * (embedding + depth * layer)


def scfoundation_rows(n_cells: int = 8, repeats: int = 3, methods: tuple[str, ...] = ("ig", "ixg")) -> list[dict]:
    """Cells/s of sigscan's batched path and of captum one cell per call on a reduced scFoundation."""
    genes = pbmc_gene_order(SCF_GENES)
    model = ss.models.ScFoundation.random(genes, **SCF_SIZE, random_state=0)
    adata = benchmark_cells(n_cells)
    x = model.prepare(adata)
    tokens = x.nnz / n_cells + 2
    gflops = matmul_gflops()
    device = torch.device("cpu")
    rows = []
    for method in methods:
        n_steps = 50 if method == "ig" else 1
        kwargs = {"method": method, "device": "cpu", "progress": False, "batch_size": n_cells}

        def one_cell_per_call(m=method):
            with inference_mode(model.module, device):
                for i in range(n_cells):
                    attribute_captum(model, x[i], method=m, n_steps=50, normalize=False, device=device)

        ours = _median_seconds(lambda kw=kwargs: ss.pp.attributions(adata.copy(), model, **kw), repeats)
        ref = _median_seconds(one_cell_per_call, repeats)
        limit = gflops * 1e9 / _scfoundation_flops(tokens, n_steps)
        rows.append(
            {
                "model": f"scFoundation reduced: {SCF_SIZE['depth']} layers × {SCF_SIZE['hidden_dim']} "
                f"({SCF_SIZE['heads']} heads), {SCF_GENES} genes",
                "method": method,
                "cells": n_cells,
                "tokens_per_cell": round(tokens),
                "sigscan_cells_per_s": round(n_cells / ours, 2),
                "captum_one_cell_per_call_cells_per_s": round(n_cells / ref, 2),
                "speedup": round(ref / ours, 2),
                "flop_limit_cells_per_s": round(limit, 2),
                "fraction_of_flop_limit": round(n_cells / ours / limit, 3),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=("sctab", "scfoundation"), default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sctab-cells", type=int, default=256)
    parser.add_argument("--scfoundation-cells", type=int, default=8)
    args = parser.parse_args()
    print(f"machine: {torch.get_num_threads()} torch threads, float32 matmul {matmul_gflops():.0f} GFLOP/s")
    if args.only in (None, "sctab"):
        for row in sctab_rows(args.sctab_cells, args.repeats):
            print(json.dumps(row, ensure_ascii=False))
    if args.only in (None, "scfoundation"):
        for row in scfoundation_rows(args.scfoundation_cells, args.repeats):
            print(json.dumps(row, ensure_ascii=False))


if __name__ == "__main__":
    main()
