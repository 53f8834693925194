"""``ss.tl.downsampling_stability`` and its plot: Spearman and overlap against scipy and brute force."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from scipy import stats

import sigscan as ss
from sigscan.tl._downsampling import compare_rankings, group_means, top_overlap


def test_compare_rankings_matches_scipy_and_hand_loop():
    rng = np.random.default_rng(0)
    reference = rng.integers(0, 6, size=40).astype(float)  # many ties
    values = reference + rng.normal(0, 1.5, size=40)
    values[:5] = 0.0
    spearman, overlap, shuffled_spearman, shuffled_overlap = compare_rankings(
        reference, values, n_top=10, n_shuffles=7, rng=np.random.default_rng(5)
    )
    assert spearman == pytest.approx(stats.spearmanr(reference, values).statistic, abs=1e-12)
    top_a = set(np.argsort(-reference, kind="stable")[:10])
    top_b = set(np.argsort(-values, kind="stable")[:10])
    assert overlap == len(top_a & top_b) / 10
    hand_rng = np.random.default_rng(5)
    hand_spearman, hand_overlap = [], []
    for _ in range(7):
        shuffled = values[hand_rng.permutation(values.size)]
        hand_spearman.append(stats.spearmanr(reference, shuffled).statistic)
        hand_overlap.append(top_overlap(reference, shuffled, 10))
    assert shuffled_spearman == pytest.approx(np.mean(hand_spearman), abs=1e-12)
    assert shuffled_overlap == pytest.approx(np.mean(hand_overlap), abs=1e-12)


def test_group_means_brute_force(pbmc_small):
    labels = pbmc_small.obs["cell_type"].astype(str).to_numpy(dtype=object)
    groups = ["B cells", "NK cells"]
    means = group_means(pbmc_small.X, labels, groups)
    dense = pbmc_small.X.toarray()
    for k, group in enumerate(groups):
        np.testing.assert_allclose(means[k], dense[labels == group].mean(axis=0), rtol=1e-6)


def test_downsampling_stability(pbmc_small, scimilarity_model, snapshot, assert_unchanged):
    state = snapshot(pbmc_small)
    groups = ["B cells", "CD14+ Monocytes"]
    table = ss.tl.downsampling_stability(
        pbmc_small,
        scimilarity_model,
        fractions=(0, 0.5, 0.9),
        groupby="cell_type",
        groups=groups,
        method="ixg",
        n_top=20,
        n_shuffles=3,
    )
    # only uns["sigscan"] is added
    assert set(pbmc_small.uns) - set(state["uns"]) == {"sigscan"}
    pbmc_small.uns.pop("sigscan")
    assert_unchanged(pbmc_small, state)

    assert set(table["group"]) == set(groups)
    assert len(table) == 2 * 3 * 2 * 2  # groups × fractions × methods × (ranking, shuffled)
    real = table[table["kind"] == "ranking"]
    at_zero = real[real["fraction"] == 0]
    assert (at_zero["spearman"] == 1.0).all() and (at_zero["top_overlap"] == 1.0).all()
    # thinning degrades the ranking, and the shuffled baseline sits near chance
    for reads in ("attribution", "expression"):
        part = real[(real["reads"] == reads)].groupby("fraction")["spearman"].mean()
        assert part[0.9] < part[0.5] < 1.0
    assert table.loc[table["kind"] == "shuffled", "spearman"].abs().max() < 0.2
    assert (table["n_genes"] > 0).all()
    assert (table.loc[table["group"] == "B cells", "n_cells"] == 6).all()


def test_downsampling_stability_one_group_and_plot(pbmc_small, scimilarity_model):
    table = ss.tl.downsampling_stability(
        pbmc_small, scimilarity_model, fractions=(0.5,), method="ixg", n_shuffles=0, key_added="ds"
    )
    assert set(table["group"]) == {"all"} and set(table["fraction"]) == {0.5}
    assert set(table["kind"]) == {"ranking"}
    assert pbmc_small.uns["sigscan"]["ds_params"]["groupby"] == "none"
    axes = ss.pl.downsampling_stability(pbmc_small, key="ds")
    assert len(axes) == 2 and axes[0].get_lines()
    plt.close("all")
    with pytest.raises(KeyError, match=r"run ss\.tl\.downsampling_stability"):
        ss.pl.downsampling_stability(pbmc_small)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"fractions": (0, 1.0)}, ValueError, r"outside \[0, 1\)"),
        ({"fractions": ()}, ValueError, "fractions is empty"),
        ({"groupby": "celltype"}, KeyError, "not an obs column"),
        ({"groupby": "cell_type", "groups": ["T"]}, ValueError, "not values of obs"),
        ({"groups": ["B cells"]}, ValueError, "groups= needs groupby="),
        ({"n_top": 0}, ValueError, "n_top"),
    ],
)
def test_downsampling_stability_errors(pbmc_small, scimilarity_model, kwargs, error, match):
    with pytest.raises(error, match=match):
        ss.tl.downsampling_stability(pbmc_small, scimilarity_model, method="ixg", **kwargs)
