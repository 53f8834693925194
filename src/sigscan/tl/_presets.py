"""Method presets of the scorer comparison (``compare_scorers(..., preset="paper")``)."""

from __future__ import annotations

from typing import Any

#: per-method options of the SIGnature paper's scorer comparison: ANS with 50 control genes, JASMINE likelihood
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "paper": {"ans": {"ctrl_size": 50}, "jasmine": {"mode": "likelihood"}},
}


def preset_options(preset: str | None) -> dict[str, dict[str, Any]]:
    """Per-method options of a named preset (``None``: no options)."""
    if preset is None:
        return {}
    if preset not in PRESETS:
        raise ValueError(f"Unknown preset {preset!r}; available: {', '.join(PRESETS)} (or None).")
    return {method: dict(options) for method, options in PRESETS[preset].items()}
