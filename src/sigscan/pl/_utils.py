"""Axes, show and save handling shared by the plotting functions (scanpy's ``ax``/``show``/``save`` convention)."""

from __future__ import annotations

import os
from typing import Any

import matplotlib.pyplot as plt
import numpy as np


def new_axes(ax: Any, n_panels: int, figsize: tuple[float, float]) -> tuple[Any, np.ndarray]:
    """``(figure, axes)`` with one Axes per panel: the given ``ax`` (one Axes or a sequence) or a new figure."""
    if ax is None:
        figure, axes = plt.subplots(1, n_panels, figsize=figsize, squeeze=False, constrained_layout=True)
        return figure, axes[0]
    axes = np.atleast_1d(np.asarray(ax, dtype=object)).ravel()
    if len(axes) != n_panels:
        raise ValueError(f"ax holds {len(axes)} Axes but the plot has {n_panels} panels; pass one Axes per panel.")
    return axes[0].figure, axes


def finish(
    figure: Any, axes: Any, *, show: bool | None, save: str | os.PathLike | None, return_fig: bool = False
) -> Any:
    """Save the figure if asked, show it if asked; return the figure (``return_fig``) or the axes unless shown."""
    if save is not None:
        from .._utils import written_aside

        with written_aside(save) as tmp:
            figure.savefig(tmp, dpi=150, bbox_inches="tight")
    if show:
        plt.show()
        return None
    return figure if return_fig else axes
