"""``sigscan attributions IN --model KIND:DIR --method ig --out OUT``."""

from __future__ import annotations

import argparse

from .._utils import write_anndata
from ._common import MODEL_HELP, load_model, read_anndata


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the sub-command."""
    parser = subparsers.add_parser(
        "attributions",
        help="compute attributions of a model for every cell",
        description="Compute gene attributions of a foundation model for every cell of IN and write them to OUT "
        "(.h5ad: a copy of IN with the attribution layer; .zarr: an incremental store that resumes if interrupted).",
    )
    parser.add_argument("input", metavar="IN", help="counts as .h5ad, .zarr or .h5mu")
    parser.add_argument("--model", required=True, help=MODEL_HELP)
    parser.add_argument("--method", default="ig", choices=("ig", "dl", "ixg"))
    parser.add_argument("--out", required=True, help="output .h5ad or .zarr")
    parser.add_argument("--layer", default=None, help="layer with raw counts (default X)")
    parser.add_argument("--n-steps", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--head", default="auto", choices=("auto", "prenorm", "reference"))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--gene-symbols", default=None, help="var column with gene symbols")
    parser.add_argument("--gene-ids", default=None, help="var column with Ensembl IDs")
    parser.add_argument("--key-added", default=None)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the sub-command."""
    from ..pp import attributions

    if not args.out.endswith((".h5ad", ".zarr", ".h5mu")):
        raise ValueError(f"--out {args.out}: use a .h5ad, .zarr or .h5mu path")
    to_zarr = args.out.endswith(".zarr")
    if not to_zarr and args.out.endswith(".h5mu") != str(args.input).endswith(".h5mu"):
        raise ValueError(
            f"--out {args.out}: the output is a copy of IN, so use the same format "
            f"({'.h5mu' if str(args.input).endswith('.h5mu') else '.h5ad'}) or a .zarr store"
        )
    data = read_anndata(args.input, backed=to_zarr and args.input.endswith(".h5ad"))
    model = load_model(args.model)
    attributions(
        data,
        model,
        method=args.method,
        layer=args.layer,
        key_added=args.key_added,
        n_steps=args.n_steps,
        batch_size=args.batch_size,
        head=args.head,
        device=args.device,
        gene_symbols=args.gene_symbols,
        gene_ids=args.gene_ids,
        out=args.out if to_zarr else None,
    )
    if not to_zarr:
        write_anndata(data, args.out)
    print(f"wrote {args.out}")
    return 0
