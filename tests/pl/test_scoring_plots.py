"""Plots of scorer comparisons, score distributions and sample hits return Axes and save files."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest

import sigscan as ss


@pytest.fixture(scope="module")
def compared():
    adata = ss.datasets.toy(n_cells=200, n_genes=100)
    ss.tl.compare_scorers(adata, adata.uns["programs"], "group", methods=["ucell", "mean"], n_splits=2)
    return adata


@pytest.mark.parametrize("kind", ["heatmap", "bar"])
def test_compare_scorers_plot(compared, kind, tmp_path):
    axes = ss.pl.compare_scorers(compared, kind=kind, save=tmp_path / "f1.png")
    assert len(axes) == 2 and [ax.get_title() for ax in axes] == ["F1 (logreg)", "F1 (otsu)"]
    assert (tmp_path / "f1.png").stat().st_size > 1000
    table = compared.uns["sigscan"]["compare_scorers"]
    assert len(ss.pl.compare_scorers(table, classifiers=["otsu"])) == 1
    with pytest.raises(ValueError, match="not in the table"):
        ss.pl.compare_scorers(table, classifiers=["svm"])
    plt.close("all")


@pytest.mark.parametrize("kind", ["violin", "density"])
def test_score_distributions(compared, kind, tmp_path):
    ss.tl.score_genes(compared, compared.uns["programs"]["group1"], method="ucell")
    axes = ss.pl.score_distributions(compared, ["ucell_score"], "group", kind=kind, save=tmp_path / "d.png")
    assert len(axes) == 1 and (tmp_path / "d.png").exists()
    with pytest.raises(KeyError):
        ss.pl.score_distributions(compared, "missing", "group")
    plt.close("all")


def test_sample_hits_plot_orders_by_mean(compared, tmp_path):
    ss.tl.score_genes(compared, compared.uns["programs"]["group2"], method="mean", key_added="p2")
    ss.tl.hits(compared, "p2", percentile=80)
    table = ss.tl.sample_hits(compared, "p2_hit", sample_key="sample", groupby="group", min_cells=3)
    ax = ss.pl.sample_hits(table, save=tmp_path / "h.png")
    order = [t.get_text() for t in ax.get_xticklabels()]
    means = table.groupby("group")["hit_fraction"].mean().sort_values(ascending=False)
    assert order == list(means.index) and order[0] == "group2"
    plt.close("all")


def test_plots_share_ax_and_return_fig(compared):
    """Every plot takes ``ax`` (one Axes per panel) and ``return_fig`` the same way."""
    ss.tl.score_genes(compared, compared.uns["programs"]["group1"], method="ucell")
    ss.tl.score_genes(compared, compared.uns["programs"]["group2"], method="mean", key_added="p2")
    ss.tl.hits(compared, "p2", percentile=80)
    figure, axes = plt.subplots(1, 2)
    drawn = ss.pl.compare_scorers(compared, ax=axes)
    assert list(drawn) == list(axes) and axes[0].get_title() == "F1 (logreg)"
    assert ss.pl.compare_scorers(compared, ax=axes, return_fig=True) is figure
    with pytest.raises(ValueError, match="one Axes per panel"):
        ss.pl.compare_scorers(compared, ax=axes[0])
    figure, ax = plt.subplots()
    assert ss.pl.score_distributions(compared, "ucell_score", "group", ax=ax)[0] is ax
    table = ss.tl.sample_hits(compared, "p2_hit", sample_key="sample", groupby="group", min_cells=3)
    assert ss.pl.sample_hits(table, ax=ax, return_fig=True) is figure
    plt.close("all")
