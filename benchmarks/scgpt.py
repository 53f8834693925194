"""scGPT attribution throughput: a 12-layer, 512-wide scGPT (random weights) on 1,200 genes of PBMC3k.

Run ``python benchmarks/scgpt.py`` (``--help`` for options); ``scgpt_row`` is what benchmarks/attributions.py calls.
IG is run with reduced ``n_steps`` by default (its cost is linear in ``n_steps``); the value used is printed with it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

import sigscan as ss

sys.path.insert(0, str(Path(__file__).parent))
from _common import peak_rss_gb

N_GENES = 1200
#: a whole-human-sized scGPT (the published scGPT_human widths and depth)
SIZE = {"embsize": 512, "nheads": 8, "d_hid": 512, "nlayers": 12}
#: IG steps of the benchmark rows (the package default is 50; the cost is linear in it)
N_STEPS = 8


def _data(n_cells: int):
    adata = ss.datasets.pbmc3k()
    means = np.asarray(adata.X.mean(axis=0)).ravel()
    genes = adata.var_names[np.argsort(-means, kind="stable")[:N_GENES]]
    return adata[:n_cells, genes].copy(), genes


def scgpt_row(
    n_cells: int = 4, device: str = "cpu", n_steps: int = N_STEPS, methods: tuple[str, ...] = ("ixg", "ig")
) -> dict:
    """Cells per second of ``ss.pp.attributions`` with a whole-human-sized scGPT on ``N_GENES`` genes.

    One warm-up cell is attributed first and not timed. Returns a flat dict (one benchmark row).
    """
    adata, genes = _data(n_cells + 1)
    model = ss.models.ScGPT.random(genes, **SIZE, random_state=0)
    lengths = np.diff(adata.X.tocsr().indptr)[1:]
    row = {
        "model": "scGPT 12 layers × 512 (random weights)",
        "genes": N_GENES,
        "cells": n_cells,
        "expressed_genes_per_cell": float(lengths.mean()),
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "ig_n_steps": n_steps,
    }
    for method in methods:
        kwargs = {"method": method, "n_steps": n_steps, "progress": False, "device": device}
        ss.pp.attributions(adata[:1].copy(), model, **kwargs)  # warm-up
        cells = adata[1:].copy()
        start = time.perf_counter()
        ss.pp.attributions(cells, model, **kwargs)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        row[f"{method}_seconds"] = round(seconds, 2)
        row[f"{method}_cells_per_s"] = round(n_cells / seconds, 4)
        total = np.asarray(cells.layers[f"attr_scgpt_{method}"].sum(axis=1)).ravel()
        assert np.allclose(total, 1000, rtol=1e-3), total
    row["peak_rss_gb"] = round(peak_rss_gb(), 2)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cells", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--n-steps", type=int, default=N_STEPS, help="IG integration steps (default 8; the package uses 50)"
    )
    args = parser.parse_args()
    print(
        json.dumps(
            scgpt_row(n_cells=args.cells, device=args.device, n_steps=args.n_steps), indent=1, ensure_ascii=False
        )
    )


if __name__ == "__main__":
    main()
