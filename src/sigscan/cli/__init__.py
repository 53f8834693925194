"""The ``sigscan`` command line: ``sigscan demo|attributions|score|compare|atlas …``.

Each sub-command lives in its own module with a ``register(subparsers)`` function. Errors in user input exit
with status 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

#: modules that register sub-commands, in the order ``--help`` lists them
_COMMAND_MODULES = ("_demo", "_attributions", "_score", "_atlas")

_USER_ERRORS = (ValueError, KeyError, FileNotFoundError, FileExistsError, TypeError, PermissionError)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command registered."""
    from .. import __version__

    parser = argparse.ArgumentParser(prog="sigscan", description="Foundation-model gene attributions for scanpy.")
    parser.add_argument("--version", action="version", version=f"sigscan {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sigscan`` script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.verbose:
        from .._logging import set_level

        set_level(logging.INFO)
    try:
        return int(args.func(args) or 0)
    except _USER_ERRORS as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"sigscan {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
