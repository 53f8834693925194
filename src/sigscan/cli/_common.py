"""Helpers shared by the sub-commands: reading inputs and models."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .._model_spec import MODEL_HELP, MODEL_KINDS, load_model  # re-exported for the sub-commands


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


__all__ = ["MODEL_HELP", "MODEL_KINDS", "load_model", "read_anndata"]
