"""``sigscan analyses IN --model KIND:DIR --gmt FILE --groupby COL --out DIR``: the robustness report (SPEC 5.1)."""

from __future__ import annotations

import argparse

from ._common import MODEL_HELP, load_model, read_anndata


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the sub-command."""
    import inspect

    from ..tl import robustness_report

    defaults = inspect.signature(robustness_report).parameters  # one place decides the defaults: the function
    parser = subparsers.add_parser(
        "analyses",
        help="robustness analyses of attributions vs expression, written as one report",
        description="Compute attributions with --model, run the robustness analyses (attribution vs expression vs a "
        "shuffled-gene baseline) for the cell types of --groupby and write DIR/report.md, DIR/report.html (figures "
        "inline) and one CSV per analysis.",
    )
    parser.add_argument("input", metavar="IN", help="raw counts as .h5ad or .zarr")
    parser.add_argument("--model", required=True, help=MODEL_HELP)
    parser.add_argument("--gmt", required=True, help="GMT file of marker sets named like the --groupby labels")
    parser.add_argument("--groupby", required=True, help="obs column with the cell types")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--analyses",
        nargs="+",
        default=None,
        help="analyses to run: qc_correlation, rank_percentiles, downsampling, cell_cycle (default: all that apply)",
    )
    parser.add_argument("--method", default="ig", choices=("ig", "dl", "ixg"), help="attribution method")
    parser.add_argument("--layer", default=None, help="layer with raw counts (default X)")
    parser.add_argument(
        "--fractions",
        nargs="+",
        type=float,
        default=list(defaults["fractions"].default),
        help="shares of counts removed by the downsampling analysis (each in [0, 1))",
    )
    parser.add_argument("--phase-key", default=None, help="obs column with cell-cycle phases (G1/S/G2M)")
    parser.add_argument("--n-shuffles", type=int, default=25, help="gene-label relabellings of the baselines")
    parser.add_argument("--n-steps", type=int, default=50, help="Integrated Gradients steps")
    parser.add_argument("--batch-size", type=int, default=None, help="cells per attribution batch")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    parser.add_argument("--random-state", type=int, default=0)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the sub-command."""
    import matplotlib

    matplotlib.use("Agg")

    from ..tl import robustness_report

    adata = read_anndata(args.input)
    if args.groupby not in adata.obs:
        raise KeyError(f"--groupby {args.groupby!r} is not an obs column; available: {', '.join(adata.obs.columns)}")
    if args.layer is not None and args.layer not in adata.layers:
        raise KeyError(f"--layer {args.layer!r} is not a layer of {args.input}; available: {', '.join(adata.layers)}")
    if args.phase_key is not None and args.phase_key not in adata.obs:
        raise KeyError(f"--phase-key {args.phase_key!r} is not an obs column of {args.input}")
    bad = [f for f in args.fractions if not 0 <= f < 1]
    if bad:
        raise ValueError(f"--fractions {' '.join(map(str, bad))}: each must be in [0, 1), e.g. --fractions 0 0.5 0.9")
    model = load_model(args.model)
    page = robustness_report(
        adata,
        model,
        args.gmt,
        groupby=args.groupby,
        out=args.out,
        analyses=args.analyses,
        method=args.method,
        counts_layer=args.layer,
        fractions=args.fractions,
        phase_key=args.phase_key,
        n_shuffles=args.n_shuffles,
        random_state=args.random_state,
        n_steps=args.n_steps,
        batch_size=args.batch_size,
        device=args.device,
    )
    print(f"wrote {page} and {page.with_suffix('.md')}")
    return 0
