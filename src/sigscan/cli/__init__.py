"""The ``sigscan`` command line: ``sigscan demo|attributions|score|compare|atlas|concepts|analyses …``.

Each sub-command lives in its own module with a ``register(subparsers)`` function. Errors in user input exit
with status 2 and one line on stderr; I/O errors (a missing, truncated or corrupt input, a full disk, a read-only
target) with status 1 and one line naming the path and the cause. ``-v`` adds the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback
from collections.abc import Sequence

#: modules that register sub-commands, in the order ``--help`` lists them
_COMMAND_MODULES = ("_demo", "_attributions", "_score", "_atlas", "_concepts", "_analyses")

#: the module registering each command: a command line naming one imports only that module (``sigscan atlas score``
#: then imports neither torch nor scanpy, which the other commands' option lists need)
_COMMAND_MODULE = {
    "demo": "_demo",
    "attributions": "_attributions",
    "score": "_score",
    "compare": "_score",
    "atlas": "_atlas",
    "concepts": "_concepts",
    "analyses": "_analyses",
}

_USER_ERRORS = (ValueError, KeyError, TypeError)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser with every sub-command registered (only ``command``'s module when given)."""
    from .. import __version__

    parser = argparse.ArgumentParser(prog="sigscan", description="Foundation-model gene attributions for scanpy.")
    parser.add_argument("--version", action="version", version=f"sigscan {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = _COMMAND_MODULES if command not in _COMMAND_MODULE else (_COMMAND_MODULE[command],)
    for name in modules:
        importlib.import_module(f"{__name__}.{name}").register(subparsers)
    _set_flags(parser)
    return parser


def _set_flags(parser: argparse.ArgumentParser) -> None:
    """Give every (sub-)command its ``flags`` (Python argument → flag), which error messages are rewritten with."""
    from ._common import option_flags

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for subparser in action.choices.values():
                subparser.set_defaults(flags=option_flags(subparser))
                _set_flags(subparser)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sigscan`` script."""
    words = list(sys.argv[1:] if argv is None else argv)
    command = next((word for word in words if not word.startswith("-")), None)
    parser = build_parser(command)
    args = parser.parse_args(words)
    if args.command is None:
        parser.print_help()
        return 2
    if args.verbose:
        from .._logging import set_level

        set_level(logging.INFO)
    from .._logging import quiet_libraries
    from ._common import error_message

    try:
        with quiet_libraries():
            return int(args.func(args) or 0)
    except (OSError, *_USER_ERRORS) as error:
        if args.verbose:
            traceback.print_exc()
        message = error_message(error, getattr(args, "flags", {}))
        print(f"sigscan {args.command}: error: {message}", file=sys.stderr)
        return 1 if isinstance(error, OSError) else 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
