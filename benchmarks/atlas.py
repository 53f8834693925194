"""Benchmark: build and score an attribution atlas of >= 1M cells, against the reference SIGnature TileDB functions.

The atlas is made by resampling the rows of PBMC3k attributions (ixg, random SCimilarity-architecture weights over the
PBMC3k genes) into shards of equal size. Reported: build time (and M non-zeros/s), score time for a 99-gene set, on-disk
size, peak RSS, and the time to read the selected columns' raw bytes (the floor). The reference (sc-signature 1.0.0
``SIGnature.create_tiledb`` / ``query_attributions``, benchmark environment only, see requirements.txt) runs on the
first ``--ref-cells`` cells, which are exactly the atlas's first shards, in a child process (for its own peak RSS).

    flock /tmp/sigscan-bench.lock python benchmarks/atlas.py --cells 1000000 --shards 20

``--check-cost`` measures only what the damage checks of a query cost (issue 9) against a warm query:

    python benchmarks/atlas.py --cells 100000 --shards 5 --ref-cells 0 --check-cost
    python benchmarks/atlas.py --scale --first-query 20000,100000,1000000 --scale-cells 5000000 --gen-cells 2700

``--scale`` runs benchmarks/_atlas_scale.py instead (first vs warm query in fresh processes, a large atlas with cold and
warm queries and a projection to 22M/100M cells, generation with a local Dask cluster).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import sparse

import sigscan as ss

sys.path.insert(0, str(Path(__file__).parent))
from _common import peak_rss_gb


def rss_breakdown() -> str:
    """Current anonymous vs file-backed resident memory (Linux), to tell allocations from mapped page cache."""
    try:
        fields = dict(line.split(":", 1) for line in open("/proc/self/status"))
    except OSError:
        return "n/a"
    gb = {k: int(fields[k].split()[0]) / 1e6 for k in ("RssAnon", "RssFile", "VmHWM") if k in fields}
    return (
        f"now {gb.get('RssAnon', 0):.2f} GB anonymous + {gb.get('RssFile', 0):.2f} GB file-backed "
        "(shard pages mapped from the page cache: shared, clean, reclaimable)"
    )


def disk_size(path: str) -> int:
    total = 0
    for root, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return total


def gene_set_99(genes: pd.Index) -> list[str]:
    """PanglaoDB monocyte markers present in PBMC3k, topped up with Hallmark IFN-alpha genes to 99 genes."""
    sets = ss.datasets.gene_sets("panglaodb_immune")
    hallmark = ss.datasets.gene_sets("hallmark_v7")
    chosen: list[str] = []
    for gene in sets["PANGLAODB_MONOCYTES"] + hallmark["HALLMARK_INTERFERON_ALPHA_RESPONSE"]:
        if gene in genes and gene not in chosen:
            chosen.append(gene)
    return chosen[:99]


def pbmc_attributions() -> tuple[sparse.csr_matrix, pd.DataFrame, pd.Index, dict]:
    adata = ss.datasets.pbmc3k()
    model = ss.models.SCimilarity.random(adata.var_names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ss.pp.attributions(adata, model, method="ixg", progress=False)
    key = "attr_scimilarity_ixg"
    return adata.layers[key], adata.obs, adata.var_names, adata.uns["sigscan"]["attributions"][key]


def shard_rows(seed: int, n: int, n_source: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n_source, n)


def make_shard(matrix, obs, genes, provenance, rows, index: int):
    import anndata as ad

    cells = pd.DataFrame(
        {
            "cell_type": obs["cell_type"].to_numpy()[rows],
            "sample": pd.Categorical([f"study{index}_sample{r % 40}" for r in range(len(rows))]),
            "disease": pd.Categorical(np.where(np.arange(len(rows)) % 40 < 20, "control", "case")),
        },
        index=[f"study{index}-cell{r}" for r in range(len(rows))],
    )
    adata = ad.AnnData(obs=cells, var=pd.DataFrame(index=genes))
    adata.layers["attr_scimilarity_ixg"] = matrix[rows]
    adata.uns["sigscan"] = {"attributions": {"attr_scimilarity_ixg": provenance}}
    return adata


def raw_read(atlas: ss.Atlas, columns: np.ndarray, shards: list[str] | None = None) -> int:
    """Read the selected columns' bytes (data + indices) of every shard, nothing else; returns bytes read."""
    columns = np.sort(columns)

    def one(entry):
        reader = atlas._reader(entry)
        indptr = reader.indptr
        starts, stops = indptr[columns], indptr[columns + 1]
        keep = stops > starts
        starts, stops = starts[keep], stops[keep]
        data = reader.read_ranges("data", starts, stops)
        indices = reader.read_ranges("indices", starts, stops)
        return data.nbytes + indices.nbytes

    entries = atlas._entries(shards)
    with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
        return sum(pool.map(one, entries))


def best_of(fn, repeat: int) -> tuple[float, float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return times[0], float(np.median(times[1:] if repeat > 1 else times)), result


def check_cost(atlas_path: str, gene_list: list[str], repeat: int = 21) -> None:
    """Warm 99-gene query with and without the read checks, and the checks timed on their own."""
    from sigscan.atlas import _atlas, _integrity

    atlas = ss.Atlas(atlas_path)
    atlas.score(gene_list, columns=[], progress=False)  # warm: readers open, indptr and obs read, pages cached
    checked, guarded = _atlas.check_scores, _atlas._guarded

    def unchecked_guard(location, entry, read):
        return read()

    with_checks, without = [], []
    for _ in range(repeat):  # interleaved: both see the same page-cache and machine state
        t0 = time.perf_counter()
        atlas.score(gene_list, columns=[], progress=False)
        t1 = time.perf_counter()
        _atlas.check_scores, _atlas._guarded = lambda *args: None, unchecked_guard
        try:
            atlas.score(gene_list, columns=[], progress=False)
        finally:
            _atlas.check_scores, _atlas._guarded = checked, guarded
        t2 = time.perf_counter()
        with_checks.append(t1 - t0)
        without.append(t2 - t1)
    on, off = float(np.median(with_checks)), float(np.median(without))
    # the per-query check alone: the score bound over each shard's per-cell sums
    columns = np.sort(np.asarray([atlas.gene_order.get_loc(g) for g in gene_list]))
    weights = np.ones(len(columns))
    readers = [atlas._reader(e) for e in atlas.manifest.shards]
    totals = [r.column_sums(columns, weights) for r in readers]
    alone = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for reader, total in zip(readers, totals, strict=True):
            _integrity.check_scores(reader, total, columns, weights)
        alone.append(time.perf_counter() - t0)
    # the once-per-shard checks of the first query: chunk presence and X/indptr consistency
    once, arrays = [], [reader.group["X/indptr"] for reader in readers]
    for _ in range(5):
        t0 = time.perf_counter()
        for reader, array in zip(readers, arrays, strict=True):
            _integrity.missing_chunks(atlas.location, f"{reader.relpath}/X/indptr", array)
            _integrity.indptr_problem(reader.indptr, reader.shape[1], int(reader.indptr[-1]), reader.expected_nnz)
        once.append(time.perf_counter() - t0)
    alone_s, once_s = float(np.median(alone)), float(np.median(once))
    print(
        f"\n# damage checks ({atlas.n_cells:,} cells, {len(readers)} shards, {len(gene_list)} genes; median of {repeat})"
    )
    print(f"warm score with checks {on * 1e3:.2f} ms, without {off * 1e3:.2f} ms: difference {(on - off) / off:+.1%}")
    print(f"the per-query check alone: {alone_s * 1e3:.3f} ms = {alone_s / off:.2%} of a warm query (goal < 10%)")
    print(f"once per shard at the first query (chunk presence, indptr): {once_s * 1e3:.2f} ms for all shards")


def run_reference(args) -> None:
    """Child process: reference create_tiledb + query_attributions on the saved subset."""
    from SIGnature import SIGnature

    genes = open(args.genes_file).read().splitlines()
    gene_list = json.load(open(args.set_file))
    uri = os.path.join(args.workdir, "reference.tdb")
    shutil.rmtree(uri, ignore_errors=True)
    sig = SIGnature(gene_order=genes, attribution_tiledb_uri=uri)
    start = time.perf_counter()
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        sig.create_tiledb(npz_path=args.npz, attribution_tiledb_uri=uri, overwrite=True)
    build = time.perf_counter() - start
    rss_build = peak_rss_gb()
    first, warm, scores = best_of(lambda: sig.query_attributions(gene_list, attribution_tiledb_uri=uri), 4)
    np.save(os.path.join(args.workdir, "reference_scores.npy"), np.asarray(scores).ravel())
    json.dump(
        {"build_s": build, "query_first_s": first, "query_s": warm, "rss_build_gb": rss_build, "size": disk_size(uri)},
        open(os.path.join(args.workdir, "reference.json"), "w"),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, default=1_000_000)
    parser.add_argument("--shards", type=int, default=20)
    parser.add_argument("--ref-cells", type=int, default=100_000, help="cells for the reference (0: skip it)")
    parser.add_argument("--workdir", default="/tmp/sigscan-atlas-bench")
    parser.add_argument("--keep", action="store_true", help="keep the atlas and TileDB array")
    parser.add_argument(
        "--check-cost", action="store_true", help="only measure the read-time damage checks against a warm query"
    )
    parser.add_argument("--part", default="main", choices=("main", "reference"), help=argparse.SUPPRESS)
    parser.add_argument("--npz", help=argparse.SUPPRESS)
    parser.add_argument("--genes-file", help=argparse.SUPPRESS)
    parser.add_argument("--set-file", help=argparse.SUPPRESS)
    parser.add_argument("--scale", action="store_true", help="run the scale figures (_atlas_scale.py)")
    parser.add_argument("--first-query", default="20000,100000", help="--scale: sizes for first vs warm query")
    parser.add_argument("--scale-cells", type=int, default=0, help="--scale: cells of the large atlas (0: skip)")
    parser.add_argument("--gen-cells", type=int, default=0, help="--scale: PBMC3k cells for generation (0: skip)")
    parser.add_argument("--gen-method", default="ixg", choices=("ig", "dl", "ixg"))
    parser.add_argument("--ref-max-cells", type=int, default=20_000, help="--scale: largest size for the reference")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="--scale: query the atlas (and reference arrays) a --keep run left (no build)",
    )
    parser.add_argument("--no-query", action="store_true", help="--scale: build the large atlas only (with --keep)")
    args = parser.parse_args()
    if args.scale:
        from _atlas_scale import main as scale_main

        scale_main(args)
        return
    if args.part == "reference":
        run_reference(args)
        return

    shutil.rmtree(args.workdir, ignore_errors=True)
    os.makedirs(args.workdir)
    print(f"# atlas benchmark: {args.cells:,} cells in {args.shards} shards, {os.cpu_count()} CPUs")
    start = time.perf_counter()
    matrix, obs, genes, provenance = pbmc_attributions()
    print(
        f"PBMC3k ixg attributions: {matrix.shape[0]} cells, {matrix.nnz / matrix.shape[0]:.0f} non-zeros/cell "
        f"({time.perf_counter() - start:.1f} s)"
    )
    per_shard = -(-args.cells // args.shards)
    atlas_path = os.path.join(args.workdir, "atlas")
    atlas = ss.Atlas.create(atlas_path, gene_order=genes)

    build_time, resample_time, nnz = 0.0, 0.0, 0
    for index in range(args.shards):
        n = min(per_shard, args.cells - index * per_shard)
        if n <= 0:
            break
        t0 = time.perf_counter()
        shard = make_shard(matrix, obs, genes, provenance, shard_rows(index, n, matrix.shape[0]), index)
        t1 = time.perf_counter()
        atlas.add(shard, name=f"study{index}")
        t2 = time.perf_counter()
        resample_time += t1 - t0
        build_time += t2 - t1
        nnz += shard.layers["attr_scimilarity_ixg"].nnz
        del shard
    rss_build = peak_rss_gb()
    size = disk_size(atlas_path)
    n_cells = atlas.n_cells
    print(
        f"build: {n_cells:,} cells, {nnz / 1e6:.1f} M non-zeros in {build_time:.1f} s "
        f"({nnz / 1e6 / build_time:.1f} M non-zeros/s; resampling the rows, not counted: {resample_time:.1f} s)"
    )
    print(f"on disk: {size / 1e9:.2f} GB ({size / nnz:.2f} bytes per non-zero); peak RSS so far {rss_build:.2f} GB")

    gene_list = gene_set_99(genes)
    if args.check_cost:
        check_cost(atlas_path, gene_list)
        if not args.keep:
            shutil.rmtree(args.workdir, ignore_errors=True)
        return
    columns = np.asarray([genes.get_loc(g) for g in gene_list])
    atlas = ss.Atlas(atlas_path)  # fresh handle: the first score reads indptr and obs of each shard
    first, _, scores = best_of(lambda: atlas.score(gene_list, columns=[]), 1)
    bytes_read = raw_read(atlas, columns)
    raw_times, score_times = [], []
    for _ in range(9):  # interleaved, so both see the same page-cache state
        t0 = time.perf_counter()
        raw_read(atlas, columns)
        t1 = time.perf_counter()
        atlas.score(gene_list, columns=[])
        t2 = time.perf_counter()
        raw_times.append(t1 - t0)
        score_times.append(t2 - t1)
    raw, score = float(np.median(raw_times)), float(np.median(score_times))
    _, with_obs, _ = best_of(lambda: atlas.score(gene_list), 3)
    print(
        f"score ({len(gene_list)} genes, {n_cells:,} cells): {score:.3f} s (first call, reading indptr and obs: "
        f"{first:.3f} s; with all obs columns: {with_obs:.3f} s); mean score {scores['score'].mean():.4f}"
    )
    print(
        f"raw read of the selected columns: {raw:.3f} s for {bytes_read / 1e6:.1f} MB "
        f"({bytes_read / 1e9 / raw:.2f} GB/s)"
    )
    print(f"peak RSS: {peak_rss_gb():.2f} GB (model + attributions + build + score); {rss_breakdown()}")

    result = {"build_nnz_per_s": nnz / build_time, "score_s": score, "raw_s": raw}
    if args.ref_cells:
        ref_shards = list(atlas.shard_names)
        sizes = atlas.info()["n_cells"].cumsum()
        ref_shards = ref_shards[: int(np.searchsorted(sizes.to_numpy(), args.ref_cells) + 1)]
        # the reference subset: the exact rows of the first shards (regenerated with the same seeds)
        blocks = []
        for index, _ in enumerate(ref_shards):
            n = min(per_shard, args.cells - index * per_shard)
            blocks.append(matrix[shard_rows(index, n, matrix.shape[0])])
        reference_matrix = sparse.vstack(blocks, format="csr")[: args.ref_cells]
        ref_nnz = reference_matrix.nnz
        npz = os.path.join(args.workdir, "reference.npz")
        sparse.save_npz(npz, reference_matrix, compressed=False)
        del blocks, reference_matrix
        genes_file = os.path.join(args.workdir, "genes.txt")
        open(genes_file, "w").write("\n".join(genes))
        set_file = os.path.join(args.workdir, "set.json")
        json.dump(gene_list, open(set_file, "w"))
        n_ref = args.ref_cells
        ours_sub = [atlas.score(gene_list, columns=[], shards=ref_shards) for _ in range(4)]
        _, ours_sub_time, _ = best_of(lambda: atlas.score(gene_list, columns=[], shards=ref_shards), 5)
        print(f"\n# reference sc-signature TileDB on the first {n_ref:,} cells ({ref_nnz / 1e6:.1f} M non-zeros)")
        subprocess.run(
            [sys.executable, __file__, "--part", "reference", "--workdir", args.workdir, "--npz", npz,
             "--genes-file", genes_file, "--set-file", set_file],
            check=True,
        )  # fmt: skip
        ref = json.load(open(os.path.join(args.workdir, "reference.json")))
        ref_scores = np.load(os.path.join(args.workdir, "reference_scores.npy"))
        ours = ours_sub[0]["score"].to_numpy()[:n_ref]
        max_diff = float(np.abs(ours - ref_scores[:n_ref]).max())
        print(
            f"reference build (create_tiledb incl. load_npz): {ref['build_s']:.1f} s "
            f"({ref_nnz / 1e6 / ref['build_s']:.2f} M non-zeros/s), peak RSS {ref['rss_build_gb']:.2f} GB, "
            f"{ref['size'] / 1e9:.2f} GB on disk"
        )
        print(
            f"reference query_attributions ({len(gene_list)} genes, {n_ref:,} cells): {ref['query_s']:.3f} s "
            f"(first {ref['query_first_s']:.3f} s); sigscan on the same cells: {ours_sub_time:.3f} s; "
            f"max |score difference| {max_diff:.2e}"
        )
        result.update(
            build_ratio=(nnz / build_time) / (ref_nnz / ref["build_s"]),
            score_ratio=ref["query_s"] / ours_sub_time,
        )
    print("\n# ratios (goal)")
    if "build_ratio" in result:
        print(f"build, per non-zero: {result['build_ratio']:.0f}x the reference (goal >= 50x)")
        print(f"score, same {args.ref_cells:,} cells: {result['score_ratio']:.1f}x the reference (goal >= 10x)")
    print(f"score / raw read of the selected columns: {score / raw:.2f} (goal <= 2)")
    if not args.keep:
        shutil.rmtree(args.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
