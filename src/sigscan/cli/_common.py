"""Helpers shared by the sub-commands: reading inputs and models, and turning library errors into CLI messages."""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._model_spec import MODEL_HELP, MODEL_KINDS, load_model  # re-exported for the sub-commands


def option_flags(parser: argparse.ArgumentParser) -> dict[str, str]:
    """``dest`` → long flag of every option of ``parser`` (``attribution_layer`` → ``--attribution-layer``)."""
    flags = {}
    for action in parser._actions:
        long = [o for o in action.option_strings if o.startswith("--")]
        if long and action.dest not in ("help", "version", "verbose"):
            flags[action.dest] = long[0]
    return flags


def error_message(error: BaseException, flags: Mapping[str, str]) -> str:
    """One line for ``error``, naming the command's flags where the library's message names a Python argument.

    The library's errors name the fix for a Python caller (``pass attribution_layer=``, ``layer='counts'``);
    ``flags`` maps those arguments to the sub-command's flags (``attribution_layer`` → ``--attribution-layer``), so
    the message names the flag that works on the command line. The one place this translation happens.
    """
    if isinstance(error, KeyError) and error.args:
        message = str(error.args[0])
    elif isinstance(error, OSError) and error.errno is not None and error.strerror:
        message = f"{error.filename}: {error.strerror}" if error.filename else error.strerror
    else:
        message = str(error) or type(error).__name__
    for argument, flag in flags.items():
        # ``overwrite=True`` → ``--overwrite``; ``layer='counts'`` → ``--layer counts``; ``pass layer=`` → ``--layer``
        message = re.sub(rf"(?<![\w.]){argument}=True\b", flag, message)
        message = re.sub(rf"(?<![\w.]){argument}=(['\"]?)([^\s'\",)]+)\1", rf"{flag} \2", message)
        message = re.sub(rf"(?<![\w.]){argument}=", flag, message)
    return " ".join(message.split())


def read_anndata(path: str | os.PathLike, *, backed: bool = False) -> Any:
    """Read an ``.h5ad`` file or a ``.zarr`` store (optionally backed), or a MuData ``.h5mu``."""
    import anndata as ad

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"input {path} does not exist")
    if path.suffix not in (".h5ad", ".h5", ".h5mu", ".zarr") and not path.is_dir():
        raise ValueError(f"input {path}: expected an .h5ad file, a .zarr store or an .h5mu file")
    try:
        if path.suffix == ".h5mu":
            import mudata

            return mudata.read_h5mu(path)
        if path.suffix == ".zarr" or path.is_dir():
            return ad.read_zarr(path)
        return ad.read_h5ad(path, backed="r" if backed else None)
    except Exception as error:  # h5py/zarr/anndata raise many types for a damaged file
        cause = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise OSError(f"cannot read {path}: the file is truncated, corrupt or not AnnData ({cause})") from error


__all__ = ["MODEL_HELP", "MODEL_KINDS", "load_model", "read_anndata"]
