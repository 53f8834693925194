"""Benchmarks of the engine under a busy machine and in a fresh process (issue 10): competing load and first call.

``competing_load`` starts other multi-threaded numeric processes (numpy float32 matrix products in a loop, each with
as many BLAS threads as this process may use) and always stops them; each child also stops by itself after
``seconds``, so nothing outlives the benchmark even if it is killed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

_SPIN = """
import time
import numpy as np
a = np.random.default_rng(0).random((768, 768), dtype=np.float32)
end = time.monotonic() + {seconds}
while time.monotonic() < end:
    a = (a @ a) * np.float32(1e-3)
"""


def usable_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@contextmanager
def competing_load(n_processes: int = 2, *, threads: int | None = None, seconds: float = 900) -> Iterator[None]:
    """Run ``n_processes`` numpy matmul loops, ``threads`` BLAS threads each (default: all usable CPUs)."""
    threads = threads or usable_cpus()
    env = {
        **os.environ,
        **{v: str(threads) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")},
    }
    processes = []
    try:
        for _ in range(n_processes):
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-c", _SPIN.format(seconds=float(seconds))],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,  # its own process group: killed with its threads below
                )
            )
        time.sleep(2.0)  # let them import numpy and reach their loops
        if any(p.poll() is not None for p in processes):
            raise RuntimeError("a competing-load process exited early (is numpy importable?)")
        yield
    finally:
        for process in processes:
            if process.poll() is None:
                with _ignore(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
        for process in processes:
            process.wait(timeout=30)


@contextmanager
def _ignore(*errors):
    try:
        yield
    except errors:
        pass


def load_average() -> str:
    return "{:.1f}/{:.1f}/{:.1f}".format(*os.getloadavg())


def contention_table(
    run: Callable[[str], dict], kinds: list[str], *, n_processes: int = 2, repeats: int = 2
) -> list[dict]:
    """For each kind: cells/s alone and under ``n_processes`` competing processes, and the slowdown factor.

    ``run(kind)`` runs one measurement in a fresh process and returns its JSON result (``cells_per_s``). Alone and
    loaded runs alternate ``repeats`` times and the best of each counts (noise from other users only slows runs down).
    """
    rows = []
    for kind in kinds:
        alone, loaded, before, during = [], [], [], []
        for _ in range(repeats):
            before.append(load_average())
            alone.append(run(kind)["cells_per_s"])
            with competing_load(n_processes):
                during.append(load_average())
                loaded.append(run(kind)["cells_per_s"])
        rows.append(
            {
                "kind": kind,
                "alone_cells_per_s": max(alone),
                "loaded_cells_per_s": max(loaded),
                "slowdown": max(alone) / max(loaded),
                "load_average_alone": before[alone.index(max(alone))],
                "load_average_loaded": during[loaded.index(max(loaded))],
                "runs_alone": alone,
                "runs_loaded": loaded,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def print_contention(rows: list[dict], *, n_processes: int, method: str, n_cells: int) -> None:
    print(
        f"\n{method} on {n_cells} cells, alone and with {n_processes} competing {usable_cpus()}-thread numpy matmul "
        "processes (best of the runs; load average 1/5/15 min at the start of that run):"
    )
    print("package    alone cells/s  (load)            loaded cells/s  (load)            slowdown")
    for row in rows:
        print(
            f"{row['kind']:9s}  {row['alone_cells_per_s']:13.1f}  ({row['load_average_alone']:14s})  "
            f"{row['loaded_cells_per_s']:14.1f}  ({row['load_average_loaded']:14s})  {row['slowdown']:7.2f}x"
        )
    if len(rows) == 2:
        ours, ref = rows
        verdict = "meets" if ours["slowdown"] <= ref["slowdown"] else "misses"
        print(
            f"sigscan slows down {ours['slowdown']:.2f}x, the reference {ref['slowdown']:.2f}x: {verdict} the goal "
            "(no worse than the reference)"
        )


def print_first_call(rows: list[dict], n_cells: int) -> None:
    print(f"\nfresh process, {n_cells} cells (the numba cache primed by an earlier process; load average at start):")
    print("method  import s  setup s  first call cells/s  steady cells/s  first/steady time  load")
    for row in rows:
        print(
            f"{row['method']:6s}  {row['import_s']:8.2f}  {row['setup_s']:7.2f}  {row['first_cells_per_s']:18.1f}  "
            f"{row['steady_cells_per_s']:14.1f}  {row['ratio']:17.2f}x  {row['load_average']}"
            + ("" if row["ratio"] <= 1.5 else "  (goal: <= 1.5x)")
        )
