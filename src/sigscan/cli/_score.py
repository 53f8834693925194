"""``sigscan score IN --genes FILE|--gmt FILE[:SET] --method M`` and ``sigscan compare IN --gmt FILE --groupby COL``."""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path
from typing import Any

from .._utils import write_anndata, written_aside
from ._common import read_anndata


def _normalize(value: str) -> bool | str:
    return {"auto": "auto", "yes": True, "no": False}[value]


def _options(pairs: list[str]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--option {pair!r}: use KEY=VALUE, e.g. --option ctrl_size=50")
        try:
            options[key] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            options[key] = raw
    return options


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``score`` and ``compare`` sub-commands."""
    from ..tl import DEFAULT_COMPARE_METHODS, scorers

    methods = list(scorers().index)

    score = subparsers.add_parser(
        "score",
        help="score gene sets per cell",
        description="Score gene set(s) per cell with one method and write the scores (CSV of obs columns, or the "
        "AnnData with the scores added). Expression scorers read log-normalised data; raw counts are normalised on "
        "the fly (--normalize auto).",
    )
    score.add_argument("input", metavar="IN", help="data as .h5ad or .zarr")
    source = score.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--genes", help="one gene set: a gene list file (one per line), FILE.gmt:SET, or a comma-separated list"
    )
    source.add_argument("--gmt", help="GMT file (all sets) or FILE:SET for one set")
    score.add_argument("--method", required=True, choices=methods)
    score.add_argument("--layer", default=None, help="layer to read (default X; the attribution layer for attribution)")
    score.add_argument("--normalize", default="auto", choices=("auto", "yes", "no"), help="log-normalise counts")
    score.add_argument("--key-added", default=None, help="obs column (or prefix for several sets)")
    score.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="method option")
    score.add_argument(
        "--out", default=None, help="OUT.csv (scores) or OUT.h5ad (data + scores); default: CSV on stdout"
    )
    score.set_defaults(func=run_score)

    compare = subparsers.add_parser(
        "compare",
        help="benchmark scorers on labelled cells (F1 table and figures)",
        description="For each label of --groupby that has a gene set, measure how well each method's score "
        "identifies the cells (logistic regression over shuffle splits and multi-Otsu; F1). Writes "
        "DIR/compare_scorers.csv and DIR/compare_scorers_{heatmap,bar}.png.",
    )
    compare.add_argument("input", metavar="IN", help="data as .h5ad or .zarr")
    compare.add_argument("--gmt", required=True, help="GMT file with the gene sets")
    compare.add_argument("--groupby", required=True, help="obs column with the labels (e.g. cell_type)")
    compare.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="LABEL=SET",
        help="label → set name (repeat); default: the sets whose names are labels",
    )
    compare.add_argument(
        "--methods",
        nargs="+",
        default=None,
        choices=methods,
        help=f"default: {' '.join(DEFAULT_COMPARE_METHODS)} (attribution only if a layer exists)",
    )
    compare.add_argument("--classifiers", nargs="+", default=["logreg", "otsu"], choices=("logreg", "otsu"))
    compare.add_argument("--n-splits", type=int, default=25)
    compare.add_argument("--test-size", type=float, default=0.2)
    compare.add_argument("--random-state", type=int, default=114)
    compare.add_argument("--preset", default=None, choices=("paper",))
    compare.add_argument("--expression-layer", default=None, help="layer with expression (default X)")
    compare.add_argument("--attribution-layer", default=None, help="attribution layer (default: the single one)")
    compare.add_argument("--normalize", default="auto", choices=("auto", "yes", "no"), help="log-normalise counts")
    compare.add_argument("--out", required=True, help="output folder")
    compare.set_defaults(func=run_compare)


def run_score(args: argparse.Namespace) -> int:
    """Run ``sigscan score``."""
    from .._gene_sets import read_gene_set, read_gene_sets
    from ..tl import score_genes

    if args.out is not None and not args.out.endswith((".csv", ".h5ad")):
        raise ValueError(f"--out {args.out}: use a .csv or .h5ad path")
    adata = read_anndata(args.input)
    genes = read_gene_set(args.genes, name="genes") if args.genes is not None else read_gene_sets(args.gmt)
    before = set(adata.obs.columns)
    score_genes(
        adata,
        genes,
        method=args.method,
        layer=args.layer,
        normalize=_normalize(args.normalize),
        key_added=args.key_added,
        **_options(args.option),
    )
    added = [c for c in adata.obs.columns if c not in before] or [
        c for c in adata.uns["sigscan"]["score_genes"] if c in adata.obs
    ]
    if args.out is None:
        adata.obs[added].to_csv(sys.stdout)
    elif args.out.endswith(".csv"):
        with written_aside(args.out) as tmp:
            adata.obs[added].to_csv(tmp)
        print(f"wrote {args.out} ({', '.join(added)})")
    else:
        write_anndata(adata, args.out)
        print(f"wrote {args.out} ({', '.join(added)})")
    return 0


def run_compare(args: argparse.Namespace) -> int:
    """Run ``sigscan compare``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .. import pl
    from .._attribution_layer import has_attributions as has_attribution_layer
    from .._gene_sets import read_gene_sets
    from ..tl import DEFAULT_COMPARE_METHODS, compare_scorers

    adata = read_anndata(args.input)
    if args.groupby not in adata.obs:
        raise KeyError(f"--groupby {args.groupby!r} is not an obs column; available: {', '.join(adata.obs.columns)}")
    sets = read_gene_sets(args.gmt)
    if args.map:
        mapping = {}
        for pair in args.map:
            label, sep, name = pair.partition("=")
            if not sep:
                raise ValueError(f"--map {pair!r}: use LABEL=SET")
            mapping[label] = name
    else:
        labels = set(map(str, adata.obs[args.groupby].dropna().unique()))
        mapping = {name: name for name in sets if name in labels}
        if not mapping:
            raise ValueError(
                f"no set of {args.gmt} is named like a {args.groupby} label; map them with --map 'LABEL=SET'"
            )
    methods = args.methods
    if methods is None:
        has_attributions = has_attribution_layer(adata) or args.attribution_layer is not None
        methods = [m for m in DEFAULT_COMPARE_METHODS if has_attributions or m != "attribution"]
        if not has_attributions:
            print("no attribution layer found: comparing expression scorers only", file=sys.stderr)
    table = compare_scorers(
        adata,
        mapping,
        args.groupby,
        gmt=sets,
        methods=methods,
        classifiers=args.classifiers,
        n_splits=args.n_splits,
        test_size=args.test_size,
        random_state=args.random_state,
        preset=args.preset,
        expression_layer=args.expression_layer,
        attribution_layer=args.attribution_layer,
        normalize=_normalize(args.normalize),
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with written_aside(out / "compare_scorers.csv") as tmp:
        table.to_csv(tmp, index=False)
    for kind in ("heatmap", "bar"):
        pl.compare_scorers(table, kind=kind, save=out / f"compare_scorers_{kind}.png")
        plt.close("all")
    summary = table.groupby(["classifier", "method"])["f1"].mean().unstack(0)
    print(summary.round(3).to_string())
    print(f"wrote {out}/compare_scorers.csv and figures")
    return 0
