"""``sigscan atlas build|add|score|info|verify``: build and query an attribution atlas from the shell."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from .._utils import written_aside


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the sub-command and its actions."""
    parser = subparsers.add_parser(
        "atlas",
        help="build, query and verify an attribution atlas",
        description="An attribution atlas holds the attributions of many datasets (one shard each) and scores a gene "
        "set over all their cells, reading only that set's genes.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    build = actions.add_parser(
        "build",
        help="create an atlas (if needed) and add datasets to it, computing attributions of raw counts",
        description="Inputs holding attributions (from sigscan attributions) are added as they are; inputs holding raw "
        "counts (.h5ad files, zarr stores, folders of them, TileDB-SOMA experiments) get their attributions computed "
        "with --model, block by block, on --scheduler. An interrupted build run again computes only the missing "
        "blocks.",
    )
    build.add_argument("dir", metavar="DIR", help="atlas folder (local path or fsspec URL)")
    build.add_argument(
        "inputs",
        metavar="IN",
        nargs="+",
        help=".h5ad files, zarr stores, folders of them, or TileDB-SOMA experiment URIs",
    )
    build.add_argument("--names", nargs="+", default=None, help="shard names (default: the input file names)")
    build.add_argument("--layer", default=None, help="attribution layer (default: the single one present)")
    genes = build.add_mutually_exclusive_group()
    genes.add_argument("--gene-order", default=None, help="file with the model's genes, one per line")
    genes.add_argument("--model", default=None, help="KIND:DIR model whose gene order the atlas uses")
    build.add_argument("--overwrite", action="store_true", help="replace shards of the same name holding other data")
    compute = build.add_argument_group("computing attributions of raw counts (needs --model)")
    compute.add_argument("--method", default="ig", choices=("ig", "dl", "ixg"))
    compute.add_argument("--n-steps", type=int, default=50, help="integration steps for ig")
    compute.add_argument("--batch-size", type=int, default=None, help="cells per attribution batch")
    compute.add_argument("--block-size", type=int, default=None, help="cells per task (a multiple of --batch-size)")
    compute.add_argument("--counts-layer", default=None, help="layer of the inputs holding raw counts (default X)")
    compute.add_argument(
        "--scheduler",
        default="threads",
        help="'threads' (this process), 'processes' (a local Dask cluster) or the ADDRESS of a Dask scheduler",
    )
    compute.add_argument("--n-workers", type=int, default=None, help="workers of --scheduler processes")
    compute.add_argument(
        "--cells-per-shard", type=int, default=None, help="split each input into shards of this many cells"
    )
    compute.add_argument("--obs-columns", nargs="+", default=None, help="cell metadata columns to keep (default all)")
    compute.add_argument("--measurement", default="RNA", help="SOMA measurement")
    compute.add_argument("--x-name", default="raw", help="SOMA X layer with raw counts")
    compute.add_argument("--obs-filter", default=None, help="SOMA obs value filter, e.g. \"cell_type == 'B cell'\"")
    compute.add_argument("--var-filter", default=None, help="SOMA var value filter")
    build.set_defaults(func=run_build)

    add = actions.add_parser("add", help="add one dataset to an existing atlas")
    add.add_argument("dir", metavar="DIR")
    add.add_argument("input", metavar="IN", help=".h5ad file or attribution zarr store")
    add.add_argument("--name", required=True, help="shard name")
    add.add_argument("--layer", default=None)
    add.add_argument("--overwrite", action="store_true")
    add.set_defaults(func=run_add)

    score = actions.add_parser("score", help="score a gene set over every cell")
    score.add_argument("dir", metavar="DIR")
    score.add_argument(
        "--genes",
        required=True,
        help="one gene set: a gene list file (one per line), FILE.gmt:SET, or a comma-separated list",
    )
    score.add_argument("--out", required=True, help="output CSV (cell, obs columns, score)")
    score.add_argument("--agg", default="mean", choices=("mean", "sum"))
    score.add_argument("--filter", default=None, help="pandas query over obs, e.g. \"cell_type == 'B cells'\"")
    score.add_argument("--columns", nargs="*", default=None, help="obs columns to write (default all)")
    score.add_argument("--key", default="score", help="name of the score column")
    score.set_defaults(func=run_score)

    info = actions.add_parser("info", help="list the shards")
    info.add_argument("dir", metavar="DIR")
    info.set_defaults(func=run_info)

    verify = actions.add_parser(
        "verify", help="check every shard against the manifest and report leftovers of interrupted writes"
    )
    verify.add_argument("dir", metavar="DIR")
    verify.add_argument(
        "--repair",
        action="store_true",
        help="delete leftovers of interrupted writes (damaged shards are only reported)",
    )
    verify.set_defaults(func=run_verify)


def _shard_name(path: str) -> str:
    name = Path(path.rstrip("/")).name
    for suffix in (".h5ad", ".zarr", ".h5"):
        name = name.removesuffix(suffix)
    return name


def _holds_attributions(path: str, layer: str | None) -> bool:
    """Whether an input holds attributions (added as they are) rather than raw counts (computed with --model).

    It does when attributions are recorded in ``uns``, a layer has the attribution prefix, or ``--layer`` names one of
    its layers.
    """
    from .._attribution_layer import PREFIX
    from .._soma import is_soma

    if is_soma(path):
        return False
    if os.path.isdir(path):
        import zarr

        try:
            handle = zarr.open_group(path, mode="r")
        except Exception:  # a folder of inputs
            return False
    else:
        import h5py

        handle = h5py.File(path, "r")
    try:
        recorded = "uns" in handle and "sigscan" in handle["uns"] and "attributions" in handle["uns"]["sigscan"]
        layers = list(handle["layers"].keys()) if "layers" in handle else []
        return bool(recorded) or any(k.startswith(PREFIX) for k in layers) or (layer is not None and layer in layers)
    finally:
        if hasattr(handle, "close"):
            handle.close()


def _client(args: argparse.Namespace):
    """The Dask client of --scheduler (``None`` for threads) and what to close afterwards."""
    if args.scheduler == "threads":
        return None, []
    try:
        from distributed import Client, LocalCluster
    except ImportError as error:
        raise ValueError(
            f"--scheduler {args.scheduler}: install dask's distributed (pip install 'sigscan[dask]')"
        ) from error
    if args.scheduler == "processes":
        cluster = LocalCluster(n_workers=args.n_workers, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
        return client, [client, cluster]
    client = Client(args.scheduler)
    return client, [client]


def run_build(args: argparse.Namespace) -> int:
    """Create the atlas when DIR holds none; add inputs holding attributions, compute the others' attributions."""
    from tqdm.auto import tqdm

    from .._soma import is_soma
    from ..atlas import Atlas

    names = args.names or [_shard_name(p) for p in args.inputs]
    if len(names) != len(args.inputs):
        raise ValueError(f"--names gives {len(names)} names for {len(args.inputs)} inputs")
    if len(set(names)) != len(names):
        raise ValueError(f"shard names repeat ({names}); pass distinct --names")
    for path in args.inputs:
        if not os.path.exists(path) and not is_soma(path):
            raise FileNotFoundError(f"input {path} does not exist")
    counts = {
        name: path for path, name in zip(args.inputs, names, strict=True) if not _holds_attributions(path, args.layer)
    }
    if counts and args.model is None:
        raise ValueError(
            f"inputs {sorted(counts.values())} hold raw counts, not attributions: pass --model KIND:DIR to compute "
            "their attributions"
        )
    created = not Atlas.exists(args.dir)
    fresh_folder = "://" not in str(args.dir) and not os.path.exists(args.dir)
    if not created:
        atlas = Atlas(args.dir)
    elif args.model is not None:
        from ._common import load_model

        atlas = Atlas.create(args.dir, model=load_model(args.model))
    elif args.gene_order is not None:
        genes = [g.strip() for g in Path(args.gene_order).read_text().splitlines() if g.strip()]
        atlas = Atlas.create(args.dir, gene_order=genes)
    else:
        raise ValueError(
            f"{args.dir} holds no atlas yet: pass --gene-order FILE (the model's genes, one per line) or --model KIND:DIR"
        )
    try:
        ready = [(p, n) for p, n in zip(args.inputs, names, strict=True) if n not in counts]
        for path, name in tqdm(ready, desc="adding shards", unit="shard", disable=not ready):
            atlas.add(path, name=name, layer=args.layer, overwrite=args.overwrite)
        if counts:
            client, closing = _client(args)
            try:
                Atlas.build(  # a folder of inputs expands to its files (named after them); others keep their --names
                    args.dir,
                    counts,
                    args.model,
                    method=args.method,
                    n_steps=args.n_steps,
                    batch_size=args.batch_size,
                    block_size=args.block_size,
                    client=client,
                    layer=args.counts_layer,
                    obs_columns=args.obs_columns,
                    measurement=args.measurement,
                    X_name=args.x_name,
                    obs_value_filter=args.obs_filter,
                    var_value_filter=args.var_filter,
                    cells_per_shard=args.cells_per_shard,
                )
            finally:
                for item in closing:
                    item.close()
            atlas.refresh()
    except BaseException:
        if created:  # a failed build leaves no empty atlas behind (shards already added stay: rerun to resume)
            atlas.discard_if_empty(remove_folder=fresh_folder)
        raise
    print(f"{args.dir}: {len(atlas.shard_names)} shards, {atlas.n_cells} cells")
    return 0


def run_add(args: argparse.Namespace) -> int:
    """Add one dataset."""
    from ..atlas import Atlas

    if not os.path.exists(args.input):
        raise FileNotFoundError(f"input {args.input} does not exist")
    atlas = Atlas(args.dir)
    atlas.add(args.input, name=args.name, layer=args.layer, overwrite=args.overwrite)
    print(f"{args.dir}: {len(atlas.shard_names)} shards, {atlas.n_cells} cells")
    return 0


def run_score(args: argparse.Namespace) -> int:
    """Score a gene set and write a CSV."""
    from .._gene_sets import read_gene_set
    from ..atlas import Atlas

    genes = read_gene_set(args.genes)
    atlas = Atlas(args.dir)
    scores = atlas.score(genes, agg=args.agg, obs_filter=args.filter, columns=args.columns, key=args.key, progress=True)
    scores.index.name = scores.index.name or "cell"
    with written_aside(args.out) as tmp:
        scores.to_csv(tmp)
    print(f"wrote {len(scores)} scores to {args.out}")
    return 0


def run_info(args: argparse.Namespace) -> int:
    """Print the shards."""
    import pandas as pd

    from ..atlas import Atlas

    atlas = Atlas(args.dir)
    print(atlas)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(atlas.info().drop(columns=["path"]).to_string())
    return 0


def run_verify(args: argparse.Namespace) -> int:
    """Verify every shard; exit 1 when one is damaged."""
    import sys

    from ..atlas import Atlas

    atlas = Atlas(args.dir)
    try:
        report = atlas.verify(repair=args.repair, progress=True)
    except ValueError as error:
        print(f"sigscan atlas verify: {error}", file=sys.stderr)
        return 1
    deleted = report.index[report["problem"].str.endswith("deleted")].tolist()
    if deleted:
        print(f"deleted {len(deleted)} leftovers of interrupted writes: {', '.join(deleted)}")
    print(f"{args.dir}: all {len(report) - len(deleted)} shards verified")
    return 0
