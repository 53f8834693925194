"""``sigscan demo --out DIR``: the main job on bundled real data."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the sub-command."""
    parser = subparsers.add_parser(
        "demo",
        help="run the end-to-end demo on bundled PBMC3k and write a report",
        description="Train (once; cached) a small scVI model on the bundled PBMC3k counts, compute Integrated "
        "Gradients attributions, score PanglaoDB immune signatures and write a report with plots into DIR.",
    )
    parser.add_argument("--out", default="sigscan-demo", help="output folder (default: sigscan-demo)")
    parser.add_argument("--max-epochs", type=int, default=40, help="scVI training epochs on first run")
    parser.add_argument("--n-splits", type=int, default=10, help="train/test splits of the scorer comparison")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the sub-command."""
    from sigscan._demo import run_demo

    report = run_demo(args.out, max_epochs=args.max_epochs, n_splits=args.n_splits)
    print(f"wrote {report}")
    return 0
