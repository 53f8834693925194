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

    build = actions.add_parser("build", help="create an atlas (if needed) and add datasets to it")
    build.add_argument("dir", metavar="DIR", help="atlas folder (local path or fsspec URL)")
    build.add_argument("inputs", metavar="IN", nargs="+", help=".h5ad files or attribution zarr stores")
    build.add_argument("--names", nargs="+", default=None, help="shard names (default: the input file names)")
    build.add_argument("--layer", default=None, help="attribution layer (default: the single one present)")
    genes = build.add_mutually_exclusive_group()
    genes.add_argument("--gene-order", default=None, help="file with the model's genes, one per line")
    genes.add_argument("--model", default=None, help="KIND:DIR model whose gene order the atlas uses")
    build.add_argument("--overwrite", action="store_true", help="replace shards of the same name holding other data")
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


def run_build(args: argparse.Namespace) -> int:
    """Create the atlas when DIR holds none, then add every input."""
    from tqdm.auto import tqdm

    from ..atlas import Atlas
    from ..atlas._location import Location
    from ..atlas._manifest import MANIFEST

    names = args.names or [_shard_name(p) for p in args.inputs]
    if len(names) != len(args.inputs):
        raise ValueError(f"--names gives {len(names)} names for {len(args.inputs)} inputs")
    if len(set(names)) != len(names):
        raise ValueError(f"shard names repeat ({names}); pass distinct --names")
    for path in args.inputs:
        if not os.path.exists(path):
            raise FileNotFoundError(f"input {path} does not exist")
    location = Location(args.dir)
    created = not location.exists(MANIFEST)
    fresh_folder = not location.exists()
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
        for path, name in tqdm(list(zip(args.inputs, names, strict=True)), desc="adding shards", unit="shard"):
            atlas.add(path, name=name, layer=args.layer, overwrite=args.overwrite)
    except BaseException:
        if created:  # a failed build leaves no empty atlas behind (shards already added stay: rerun to resume)
            from ..atlas._integrity import discard_if_empty

            discard_if_empty(location, fresh_folder)
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
