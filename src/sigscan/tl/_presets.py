"""Method presets and the gene-set mapping used by the PBMC3k scorer comparison (demo and tests)."""

from __future__ import annotations

from typing import Any

#: per-method options of the SIGnature paper's scorer comparison: ANS with 50 control genes, JASMINE likelihood
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "paper": {"ans": {"ctrl_size": 50}, "jasmine": {"mode": "likelihood"}},
}

#: PBMC3k cell types (``obs["cell_type"]`` of :func:`sigscan.datasets.pbmc3k`) → PanglaoDB immune set names
#: (:func:`sigscan.datasets.gene_sets` ``("panglaodb_immune")``). Both monocyte populations use the monocyte set.
PBMC3K_PANGLAODB: dict[str, str] = {
    "CD4 T cells": "PANGLAODB_T_HELPER_CELLS",
    "CD14+ Monocytes": "PANGLAODB_MONOCYTES",
    "B cells": "PANGLAODB_B_CELLS",
    "CD8 T cells": "PANGLAODB_T_CYTOTOXIC_CELLS",
    "NK cells": "PANGLAODB_NK_CELLS",
    "FCGR3A+ Monocytes": "PANGLAODB_MONOCYTES",
    "Dendritic cells": "PANGLAODB_DENDRITIC_CELLS",
    "Megakaryocytes": "PANGLAODB_MEGAKARYOCYTES",
}


def preset_options(preset: str | None) -> dict[str, dict[str, Any]]:
    """Per-method options of a named preset (``None``: no options)."""
    if preset is None:
        return {}
    if preset not in PRESETS:
        raise ValueError(f"Unknown preset {preset!r}; available: {', '.join(PRESETS)} (or None).")
    return {method: dict(options) for method, options in PRESETS[preset].items()}
