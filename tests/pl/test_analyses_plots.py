"""The analyses' plots draw from the returned table or from the AnnData, and name the tool to run otherwise."""

from __future__ import annotations

import warnings

import matplotlib
import numpy as np
import pytest

import sigscan as ss

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def analysed():
    adata = ss.datasets.pbmc3k()[:500].copy()
    adata.obs["phase"] = np.where(
        np.arange(adata.n_obs) % 7 == 0, "G2M", np.where(np.arange(adata.n_obs) % 7 == 1, "S", "G1")
    )
    sets = {"B cells": ["CD79A", "CD79B", "MS4A1"], "NK cells": ["GNLY", "NKG7", "PRF1"]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ss.tl.qc_correlation(adata, sets, groupby="cell_type", methods=["mean"], n_shuffles=2)
        ss.tl.rank_percentiles(adata, ["ribosomal", "mitochondrial"], groupby="cell_type", n_shuffles=2)
        ss.tl.cell_cycle_contrast(adata, phase_key="phase", methods=["mean"], n_shuffles=2)
    return adata


def test_plots_from_anndata_and_table(analysed, tmp_path):
    import matplotlib.pyplot as plt

    axes = ss.pl.qc_correlation(analysed, qc=["total_counts"])
    assert len(axes) == 1 and "total_counts" in axes[0].get_ylabel()
    table = analysed.uns["sigscan"]["rank_percentiles"]
    ax = ss.pl.rank_percentiles(table, families=["ribosomal"], save=tmp_path / "ranks.png")
    assert (tmp_path / "ranks.png").stat().st_size > 0 and len(ax.patches) >= 1
    figure = ss.pl.cell_cycle_contrast(analysed, return_fig=True)
    assert figure.axes
    plt.close("all")


def test_factor_specificity_plot():
    import matplotlib.pyplot as plt

    adata = ss.datasets.kang_ifnb()[:, :200].copy()
    table = ss.tl.factor_specificity(adata, "B cells", batch_key="donor", n_factors=3, reads=["expression"])
    axes = ss.pl.factor_specificity(table)
    assert len(axes) == 2
    plt.close("all")


def test_plot_errors(analysed):
    with pytest.raises(KeyError, match=r"run ss\.tl\.factor_specificity first"):
        ss.pl.factor_specificity(analysed)
    with pytest.raises(ValueError, match="are not in the table"):
        ss.pl.qc_correlation(analysed, qc=["depth"])
    with pytest.raises(KeyError, match="lacks columns"):
        ss.pl.rank_percentiles(analysed.uns["sigscan"]["qc_correlation"])
