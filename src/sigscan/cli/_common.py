"""Helpers shared by the sub-commands: reading inputs and models."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def read_anndata(path: str | os.PathLike, *, backed: bool = False) -> Any:
    """Read an ``.h5ad`` file or a ``.zarr`` store (optionally backed), or a MuData ``.h5mu``."""
    import anndata as ad

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"input {path} does not exist")
    if path.suffix == ".h5mu":
        import mudata

        return mudata.read_h5mu(path)
    if path.suffix == ".zarr" or path.is_dir():
        return ad.read_zarr(path)
    if path.suffix not in (".h5ad", ".h5"):
        raise ValueError(f"input {path}: expected an .h5ad file, a .zarr store or an .h5mu file")
    return ad.read_h5ad(path, backed="r" if backed else None)


#: ``--model KIND:DIR``: every model kind the command line loads, and the ``ss.models`` class that loads it
MODEL_KINDS: dict[str, str] = {
    "scimilarity": "SCimilarity",
    "scvi": "SCVI",
    "scgpt": "ScGPT",
    "scfoundation": "ScFoundation",
    "sctab": "ScTabSSL",
}
MODEL_HELP = f"KIND:DIR with KIND one of {', '.join(MODEL_KINDS)} (e.g. scgpt:./scGPT_human)"


def load_model(spec: str) -> Any:
    """``KIND:DIR`` (a kind of :data:`MODEL_KINDS`) → a model wrapper."""
    from .. import models

    kind, sep, location = spec.partition(":")
    if not sep or kind not in MODEL_KINDS:
        raise ValueError(f"--model {spec!r}: use {MODEL_HELP}")
    if not hasattr(models, MODEL_KINDS[kind]):
        raise ValueError(f"--model {kind}: this model type is not available in this installation")
    return getattr(models, MODEL_KINDS[kind])(location)
