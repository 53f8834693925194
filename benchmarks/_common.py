"""Shared set-up for the benchmark scripts: the SPEC 7 model and cells, subprocess workers, timing helpers."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

N_MODEL_GENES = 28_231


def peak_rss_gb() -> float:
    """Peak resident memory of this process (GB): ``VmHWM`` of its own address space.

    ``getrusage``'s ``ru_maxrss`` is not used: on Linux it carries the parent's high-water mark across fork + exec.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def matmul_gflops(n: int = 4096, size: int = 1024, repeats: int = 10) -> float:
    """Measured float32 matrix-multiply throughput with the current torch thread count (GFLOP/s)."""
    import torch  # imported here: a worker imports sigscan first, as users do (it sets up torch's thread pool)

    a, b = torch.randn(n, size), torch.randn(size, size)
    torch.mm(a, b)
    start = time.perf_counter()
    for _ in range(repeats):
        torch.mm(a, b)
    return 2 * n * size * size * repeats / (time.perf_counter() - start) / 1e9


def pbmc_gene_order(n_genes: int = N_MODEL_GENES) -> list[str]:
    """The ``n_genes`` most often detected PBMC3k genes: a SCimilarity-sized gene space covering the data."""
    import sigscan as ss

    adata = ss.datasets.pbmc3k()
    detected = np.asarray((adata.X > 0).sum(axis=0)).ravel()
    order = np.argsort(-detected, kind="stable")[:n_genes]
    return list(adata.var_names[order])


def benchmark_cells(n_cells: int):
    """The first ``n_cells`` PBMC3k cells that passed the tutorial's QC (raw counts), resampled if more are asked."""
    import sigscan as ss

    adata = ss.datasets.pbmc3k()
    adata = adata[adata.obs["passed_tutorial_qc"].to_numpy()].copy()
    if n_cells <= adata.n_obs:
        return adata[:n_cells].copy()
    rng = np.random.default_rng(0)
    out = adata[rng.integers(0, adata.n_obs, n_cells)].copy()
    out.obs_names_make_unique()
    return out


def run_worker(script: str, *args: str, env: dict | None = None) -> dict:
    """Run ``script --worker args…`` in a fresh process (isolated peak RSS); return its JSON result line."""
    command = [sys.executable, script, "--worker", *args]
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **(env or {})}, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"worker {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def workdir() -> Path:
    """Scratch folder for models and outputs (``benchmarks/_out``, git-ignored)."""
    path = Path(__file__).parent / "_out"
    path.mkdir(exist_ok=True)
    return path
