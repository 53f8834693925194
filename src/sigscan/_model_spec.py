"""A model named by a picklable spec ``KIND:DIR`` (what the command line and Dask workers load a model from)."""

from __future__ import annotations

from typing import Any

#: ``KIND:DIR``: every model kind that loads from a folder, and the ``ss.models`` class that loads it
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
    from . import models

    kind, sep, location = spec.partition(":")
    if not sep or kind not in MODEL_KINDS:
        raise ValueError(f"--model {spec!r}: use {MODEL_HELP}")
    if not hasattr(models, MODEL_KINDS[kind]):
        raise ValueError(f"--model {kind}: this model type is not available in this installation")
    return getattr(models, MODEL_KINDS[kind])(location)
