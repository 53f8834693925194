"""Show/save handling shared by the plotting functions (scanpy's ``show``/``save`` convention)."""

from __future__ import annotations

import os
from typing import Any

import matplotlib.pyplot as plt


def finish(figure: Any, axes: Any, *, show: bool | None, save: str | os.PathLike | None) -> Any:
    """Save the figure if asked, show it if asked, and return the axes unless it was shown."""
    if save is not None:
        figure.savefig(save, dpi=150, bbox_inches="tight")
    if show:
        plt.show()
        return None
    return axes
