"""Which matrix holds "the attributions" of an AnnData (or an attribution store), and its provenance."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

#: prefix of the layers :func:`sigscan.pp.attributions` writes (``attr_<model>_<method>``)
PREFIX = "attr_"


def recorded_attributions(uns: Mapping[str, Any]) -> dict[str, Any]:
    """``uns["sigscan"]["attributions"]``: provenance per attribution key (empty when none recorded)."""
    return dict(uns.get("sigscan", {}).get("attributions", {}))


def find_attribution_layer(
    recorded: Mapping[str, Any],
    layers: Sequence[str],
    layer: str | None = None,
    *,
    has_x: bool = False,
    where: str = "adata",
    argument: str = "layer",
) -> str | None:
    """The layer holding attributions: ``layer`` if given, else the single one recorded (or named ``attr_*``).

    ``None`` means ``X`` holds them: allowed only with ``has_x`` (an ``out=`` attribution store, whose ``X`` is the
    attribution matrix and which has no layers). Errors name the fix with the caller's ``argument`` name (e.g.
    ``attribution_layer`` for ``compare_scorers``; the command line turns it into its flag).
    """
    layers = list(layers)
    if layer is not None:
        if layer in layers:
            return layer
        if has_x and layer in recorded and not layers:
            return None
        present = [k for k in recorded if k in layers] or [k for k in layers if k.startswith(PREFIX)]
        raise KeyError(f"{where}: layer {layer!r} not found; attribution layers present: {present}.")
    present = [k for k in recorded if k in layers] or [k for k in layers if k.startswith(PREFIX)]
    if len(present) > 1:
        raise ValueError(
            f"{where}: several attribution layers present ({', '.join(present)}); pass {argument}= to pick one."
        )
    if present:
        return present[0]
    if has_x and recorded:
        return None
    raise KeyError(
        f"No attribution layer found in {where}: run ss.pp.attributions(adata, model) first, or pass {argument}= "
        "naming the attribution layer."
    )


def attribution_provenance(recorded: Mapping[str, Any], key: str | None) -> dict[str, Any]:
    """Provenance of the attributions in layer ``key`` (``None``: ``X`` of a store with one recorded run)."""
    if key is None:
        return dict(next(iter(recorded.values()))) if len(recorded) == 1 else {}
    return dict(recorded.get(key, {}))


def attribution_layer(adata: Any, layer: str | None = None, *, argument: str = "layer") -> str:
    """The attribution layer of an in-memory AnnData: ``layer``, or the single attribution layer present.

    A ``layer`` that holds integer counts (not attributions, which are scaled to 1,000 per cell) is an error: its
    mean would be reported as an attribution score.
    """
    key = str(find_attribution_layer(recorded_attributions(adata.uns), list(adata.layers), layer, argument=argument))
    if key not in recorded_attributions(adata.uns) and not key.startswith(PREFIX):
        from ._validation import looks_like_counts

        if looks_like_counts(adata.layers[key]):
            present = [k for k in adata.layers if k in recorded_attributions(adata.uns) or k.startswith(PREFIX)]
            raise ValueError(
                f"adata.layers[{key!r}] holds integer counts, not attributions (which ss.pp.attributions writes as "
                f"attr_<model>_<method>, scaled to 1,000 per cell). Pass {argument}= naming an attribution layer"
                + (f" (present: {', '.join(present)})" if present else ", after running ss.pp.attributions")
                + ", or score expression with another method."
            )
    return key


def has_attributions(adata: Any) -> bool:
    """Whether ``adata`` holds at least one attribution layer."""
    recorded = recorded_attributions(adata.uns)
    return any(k in adata.layers for k in recorded) or any(k.startswith(PREFIX) for k in adata.layers)
