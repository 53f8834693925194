"""``benchmarks/atlas.py --scale``: first vs warm query in fresh processes, a large atlas, generation throughput.

Parts (each prints its figures; every figure depends on the machine's load, so say what the load was):

- first query: for each size, ``Atlas(path).score(genes)`` (99 genes, all obs columns) in a fresh process, against the
  warm query in the same process; the reference ``query_attributions`` on the same rows in a fresh process when
  sc-signature is importable (``SIGSCAN_REFERENCE_PATH`` may name a folder holding it and tiledb);
- scale: a large atlas of PBMC-like rows (build throughput, size on disk, peak RSS, cold query after evicting the
  shard files from the page cache with ``posix_fadvise(DONTNEED)``, warm query), and a projection to 22M and 100M cells;
- generation: ``Atlas.build`` of PBMC3k counts in one process against a local Dask cluster of 2 workers.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

import sigscan as ss

HERE = Path(__file__).parent

_FRESH = r"""
import json, sys, time
t0 = time.perf_counter()
from sigscan import Atlas  # `import sigscan` is lazy: this imports the atlas code (timed as import_s, not first_s)
from sigscan.atlas._kernels import start_loading
from sigscan.atlas import _compiled
t1 = time.perf_counter()
path, genes = sys.argv[1], json.load(open(sys.argv[2]))
start = time.perf_counter()
atlas = Atlas(path)
first_scores = atlas.score(genes, progress=False)
first = time.perf_counter() - start
kernel = "C library" if _compiled.kernel() is not None else "numba"
start_loading(wait=True)  # what a second query starts without the C library: then the warm queries below use numba
warm = []
for _ in range(5):
    start = time.perf_counter()
    atlas.score(genes, progress=False)
    warm.append(time.perf_counter() - start)
print(json.dumps({"import_s": t1 - t0, "first_s": first, "warm_s": sorted(warm)[2], "rows": len(first_scores),
                  "kernel": kernel}))
"""

_REFERENCE = r"""
import contextlib, io, json, sys, time
import numpy as np
from SIGnature import SIGnature
uri, genes_file, set_file, npz, part = sys.argv[1:6]
genes = open(genes_file).read().splitlines()
gene_list = json.load(open(set_file))
sig = SIGnature(gene_order=genes, attribution_tiledb_uri=uri)
if part == "build":
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        sig.create_tiledb(npz_path=npz, attribution_tiledb_uri=uri, overwrite=True)
    print(json.dumps({"build_s": time.perf_counter() - start}))
else:
    start = time.perf_counter()
    sig.query_attributions(gene_list, attribution_tiledb_uri=uri)
    first = time.perf_counter() - start
    warm = []
    for _ in range(3):
        start = time.perf_counter()
        sig.query_attributions(gene_list, attribution_tiledb_uri=uri)
        warm.append(time.perf_counter() - start)
    print(json.dumps({"first_s": first, "warm_s": sorted(warm)[1]}))
"""


def _python(code: str, *args: str, extra_path: str | None = None) -> dict:
    env = dict(os.environ)
    if extra_path:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), extra_path) if p)
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, check=False)
    if result.returncode:
        raise RuntimeError(result.stderr[-2000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def _reference_path() -> str | None:
    extra = os.environ.get("SIGSCAN_REFERENCE_PATH")
    env = dict(os.environ)
    if extra:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), extra) if p)
    ok = (
        subprocess.run([sys.executable, "-c", "import SIGnature, tiledb"], env=env, capture_output=True).returncode == 0
    )
    return (extra or "") if ok else None


def _make_atlas(path: str, cells: int, shards: int, source) -> tuple[float, int]:
    """An atlas of ``cells`` resampled PBMC rows in ``shards`` shards; returns (seconds in Atlas.add, non-zeros)."""
    from atlas import make_shard, shard_rows

    matrix, obs, genes, provenance = source
    shutil.rmtree(path, ignore_errors=True)
    atlas = ss.Atlas.create(path, gene_order=genes)
    per_shard = -(-cells // shards)
    seconds, nnz = 0.0, 0
    for index in range(shards):
        n = min(per_shard, cells - index * per_shard)
        if n <= 0:
            break
        shard = make_shard(matrix, obs, genes, provenance, shard_rows(index, n, matrix.shape[0]), index)
        start = time.perf_counter()
        atlas.add(shard, name=f"study{index}")
        seconds += time.perf_counter() - start
        nnz += shard.layers["attr_scimilarity_ixg"].nnz
        del shard
    return seconds, nnz


def _evict(path: str) -> None:
    """Drop the atlas files from the page cache (only ours; no root, no effect on other processes' files)."""
    for root, _, files in os.walk(path):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def first_query(
    sizes: list[int],
    workdir: str,
    source,
    gene_list: list[str],
    ref_max_cells: int = 20_000,
    *,
    keep: bool = False,
    reuse: bool = False,
) -> None:
    """First vs warm query in fresh processes, and the reference's first query on the same rows.

    ``keep``: leave the reference's TileDB arrays (``<workdir>/ref<cells>.tdb``, ~1 h of build per 1M cells here);
    ``reuse``: query arrays an earlier ``keep`` run left instead of building them again.
    """
    from atlas import shard_rows

    from sigscan.atlas import _compiled

    set_file = os.path.join(workdir, "set.json")
    json.dump(gene_list, open(set_file, "w"))
    reference = _reference_path()
    if _compiled.kernel() is None and _compiled._compiling is not None:
        _compiled._compiling.join()  # built once per install (the first query of a new install uses SciPy)
    print("\n# first query in a fresh process (Atlas(path).score(99 genes), all obs columns; median of 3 processes)")
    for cells in sizes:
        path = os.path.join(workdir, f"first{cells}")
        _make_atlas(path, cells, max(1, cells // 50_000), source)
        runs = [_python(_FRESH, path, set_file) for _ in range(3)]
        first = float(np.median([r["first_s"] for r in runs]))
        warm = float(np.median([r["warm_s"] for r in runs]))
        load = os.getloadavg()[0]
        line = (
            f"{cells:>9,} cells: first {first:.3f} s, warm {warm:.3f} s, first/warm {first / warm:.1f}x "
            f"(import {float(np.median([r['import_s'] for r in runs])):.2f} s, not counted; kernel: {runs[0]['kernel']}; "
            f"load average {load:.1f})"
        )
        if reference is not None and cells <= ref_max_cells:  # its build runs ~0.25 M non-zeros/s (6 min per 100k)
            from scipy import sparse

            matrix, _, genes, _ = source
            rows = np.concatenate(
                [
                    shard_rows(i, min(50_000, cells - i * 50_000), matrix.shape[0])
                    for i in range(max(1, cells // 50_000))
                ]
            )
            npz = os.path.join(workdir, f"ref{cells}.npz")
            genes_file = os.path.join(workdir, "genes.txt")
            open(genes_file, "w").write("\n".join(genes))
            uri = os.path.join(workdir, f"ref{cells}.tdb")
            record = uri + ".json"  # written after a finished build: a killed build is never reused
            if not (reuse and os.path.exists(record)):
                sparse.save_npz(npz, matrix[rows], compressed=False)
                built = _python(_REFERENCE, uri, genes_file, set_file, npz, "build", extra_path=reference)
                os.remove(npz)
                json.dump({"cells": cells, **built}, open(record, "w"))
            ref = [_python(_REFERENCE, uri, genes_file, set_file, npz, "query", extra_path=reference) for _ in range(3)]
            ref_first = float(np.median([r["first_s"] for r in ref]))
            line += f"; reference first query_attributions {ref_first:.3f} s ({ref_first / first:.1f}x ours)"
        elif reference is None:
            line += "; reference not importable (sc-signature + tiledb), not measured"
        print(line, flush=True)
        shutil.rmtree(path, ignore_errors=True)
        if reference is not None and not keep:
            shutil.rmtree(os.path.join(workdir, f"ref{cells}.tdb"), ignore_errors=True)
            Path(os.path.join(workdir, f"ref{cells}.tdb.json")).unlink(missing_ok=True)


def scale(
    cells: int,
    shards: int,
    workdir: str,
    source,
    gene_list: list[str],
    *,
    keep: bool = False,
    reuse: bool = False,
    query: bool = True,
) -> None:
    """Build and query a large atlas; project to 22M and 100M cells.

    ``keep``: leave the atlas (and its build figures, ``build.json``) in ``<workdir>/scale``; ``reuse``: query an atlas
    kept there by an earlier run with the same cells and shards instead of building it (its build figures are printed);
    ``query=False``: build only.
    """
    from _common import peak_rss_gb
    from atlas import disk_size

    free = shutil.disk_usage(workdir).free
    path = os.path.join(workdir, "scale")
    record = os.path.join(workdir, "scale-build.json")
    print(f"\n# scale: {cells:,} cells in {shards} shards ({free / 1e9:.0f} GB free on {workdir})")
    built = json.load(open(record)) if reuse and os.path.exists(record) else None
    if built is not None and (built["cells"], built["shards"]) == (cells, shards) and ss.Atlas.exists(path):
        print(f"(reusing the atlas built by an earlier run at load average {built['load']})")
        add_s, nnz, rss = built["add_s"], built["nnz"], built["peak_rss_gb"]
    else:
        add_s, nnz = _make_atlas(path, cells, shards, source)
        rss = peak_rss_gb()
        load = "{:.1f} / {:.1f} / {:.1f}".format(*os.getloadavg())
        built = {"cells": cells, "shards": shards, "add_s": add_s, "nnz": nnz, "peak_rss_gb": rss, "load": load}
        json.dump(built, open(record, "w"))
        print(f"(built; load average {load} at the end of the build)")
    size = disk_size(path)
    cores = os.cpu_count() or 1
    print(
        f"build (Atlas.add of precomputed rows): {nnz / 1e9:.2f} G non-zeros in {add_s:.1f} s = "
        f"{nnz / add_s / 1e6:.1f} M non-zeros/s ({nnz / add_s / 1e6 / cores:.1f} M/s per core, {cores} cores); "
        f"{size / 1e9:.2f} GB on disk ({size / nnz:.2f} bytes per non-zero); peak RSS {rss:.2f} GB"
    )
    if not query:
        return
    set_file = os.path.join(workdir, "set.json")
    json.dump(gene_list, open(set_file, "w"))
    _evict(path)
    cold = _python(_FRESH, path, set_file)
    fresh = _python(_FRESH, path, set_file)
    print(
        f"query, 99 genes: cold (page cache evicted, fresh process) {cold['first_s']:.2f} s; first in a fresh process "
        f"with the files cached {fresh['first_s']:.3f} s; warm {fresh['warm_s']:.3f} s "
        f"({cells / fresh['warm_s'] / 1e6:.1f} M cells/s warm); first/warm {fresh['first_s'] / fresh['warm_s']:.1f}x "
        f"(load average {os.getloadavg()[0]:.1f})"
    )
    per_nnz_build = add_s / nnz
    per_cell_cold = cold["first_s"] / cells
    per_cell_warm = fresh["warm_s"] / cells
    for target in (22_000_000, 100_000_000):
        target_nnz = nnz / cells * target
        print(
            f"projection {target / 1e6:.0f}M cells ({target_nnz / 1e9:.0f} G non-zeros, "
            f"{size / nnz * target_nnz / 1e12:.2f} TB): build {per_nnz_build * target_nnz / 3600:.1f} h on one machine "
            f"(/N on N workers writing their own shards), query cold {per_cell_cold * target:.0f} s, "
            f"warm {per_cell_warm * target:.1f} s (both /N with one task per shard on N workers)"
        )
    if not keep:
        shutil.rmtree(path, ignore_errors=True)
        if os.path.exists(record):
            os.remove(record)


def generation(n_cells: int, method: str, workdir: str) -> None:
    """Atlas.build of PBMC3k counts: one process vs a local Dask cluster of 2 single-threaded workers."""
    import torch

    adata = ss.datasets.pbmc3k()[:n_cells].copy()
    model = ss.models.SCimilarity.random(adata.var_names)
    kwargs = {"method": method, "n_steps": 20, "batch_size": 128, "block_size": 256, "progress": False}
    print(f"\n# generation: Atlas.build of {n_cells} PBMC3k cells, {method}, random SCimilarity-architecture weights")
    results = {}
    start = time.perf_counter()
    one = ss.Atlas.build(os.path.join(workdir, "gen1"), {"pbmc": adata}, model, **kwargs)
    results["one process"] = time.perf_counter() - start
    nnz = int(one.info()["nnz"].sum())
    from distributed import Client, LocalCluster

    with (
        warnings.catch_warnings(),
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        warnings.simplefilter("ignore")
        client.run(torch.set_num_threads, 1)
        client.run(lambda: __import__("sigscan"))  # worker start-up and imports are not build time
        start = time.perf_counter()
        two = ss.Atlas.build(os.path.join(workdir, "gen2"), {"pbmc": adata}, model, client=client, **kwargs)
        results["local cluster, 2 workers x 1 thread"] = time.perf_counter() - start
    same = two.manifest.shards[0].checksum == one.manifest.shards[0].checksum
    for name, seconds in results.items():
        print(
            f"{name}: {seconds:.1f} s = {n_cells / seconds:.0f} cells/s, {nnz / seconds / 1e6:.2f} M non-zeros/s "
            f"(torch threads in this process: {torch.get_num_threads()})"
        )
    print(f"identical shards: {same}")


def main(args) -> None:
    sys.path.insert(0, str(HERE))
    from atlas import gene_set_99, pbmc_attributions

    os.makedirs(args.workdir, exist_ok=True)
    load = os.getloadavg()
    print(
        f"# atlas --scale, {os.cpu_count()} CPUs, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} at start"
    )
    source = pbmc_attributions()
    gene_list = gene_set_99(source[2])
    if args.first_query:
        sizes = [int(c) for c in args.first_query.split(",")]
        first_query(sizes, args.workdir, source, gene_list, args.ref_max_cells, keep=args.keep, reuse=args.reuse)
    if args.scale_cells:
        scale(
            args.scale_cells,
            args.shards,
            args.workdir,
            source,
            gene_list,
            keep=args.keep,
            reuse=args.reuse,
            query=not args.no_query,
        )
    if args.gen_cells:
        generation(args.gen_cells, args.gen_method, args.workdir)
    load = os.getloadavg()
    print(f"# load average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}")
