"""hits and sample_hits (SPEC 3) on AnnData and on DataFrames such as atlas query results."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import sigscan as ss


@pytest.fixture
def cells() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 400
    frame = pd.DataFrame(
        {
            "score": rng.normal(size=n),
            "cell_type": rng.choice(["mono", "tcell"], size=n),
            "sample": rng.choice([f"s{i}" for i in range(8)], size=n),
        },
        index=[f"cell{i}" for i in range(n)],
    )
    frame["condition"] = np.where(frame["sample"].isin(["s0", "s1", "s2", "s3"]), "ctrl", "stim")
    return frame


def test_hits_percentile_quantile_value(cells):
    before = cells.copy()
    out = ss.tl.hits(cells, "score")
    pd.testing.assert_frame_equal(cells, before)  # input not modified
    assert out["score_hit"].sum() == 40  # top 10% (distinct values)
    cutoff = np.quantile(cells["score"], 0.9)
    assert (out["score_hit"] == (cells["score"] > cutoff)).all()
    same = ss.tl.hits(cells, "score", quantile=0.9, key_added="q")
    assert (same["q"] == out["score_hit"]).all()
    fixed = ss.tl.hits(cells, "score", value=0.0)
    assert (fixed["score_hit"] == (cells["score"] > 0)).all()
    with pytest.raises(ValueError, match="only one"):
        ss.tl.hits(cells, "score", percentile=90, value=1)
    with pytest.raises(KeyError, match="nope"):
        ss.tl.hits(cells, "nope")


def test_hits_within_groups_and_missing_scores(cells):
    cells.loc[cells.index[:5], "score"] = np.nan
    out = ss.tl.hits(cells, "score", percentile=75, groupby="cell_type")
    for _, part in out.groupby("cell_type"):
        cutoff = np.nanquantile(part["score"], 0.75)
        assert (part["score_hit"] == (part["score"] > cutoff)).all()
    assert not out["score_hit"].iloc[:5].any()


def test_hits_on_anndata_writes_obs_and_uns():
    adata = ss.datasets.toy(n_cells=100)
    adata.obs["s"] = np.arange(100, dtype=float)
    ss.tl.hits(adata, "s", percentile=90)
    assert adata.obs["s_hit"].sum() == 10
    assert adata.uns["sigscan"]["hits"]["s_hit"]["cutoffs"]["all"] == pytest.approx(89.1)


def test_sample_hits_fractions_and_filters(cells):
    marked = ss.tl.hits(cells, "score", percentile=50)
    table = ss.tl.sample_hits(
        marked, "score_hit", sample_key="sample", groupby="cell_type", min_cells=20, sample_columns=["condition"]
    )
    assert list(table.columns) == ["cell_type", "sample", "condition", "n_cells", "n_hits", "hit_fraction"]
    for _, row in table.iterrows():
        part = marked[(marked["cell_type"] == row["cell_type"]) & (marked["sample"] == row["sample"])]
        assert row["n_cells"] == len(part) and row["n_hits"] == part["score_hit"].sum()
        assert row["condition"] == part["condition"].iloc[0]
    assert (table["n_cells"] >= 20).all()
    # a group with too few samples left is dropped
    strict = ss.tl.sample_hits(
        marked, "score_hit", sample_key="sample", groupby="cell_type", min_cells=30, min_samples=8
    )
    counts = marked.groupby(["cell_type", "sample"]).size()
    expected = {g for g, n in (counts >= 30).groupby(level=0).sum().items() if n >= 8}
    assert set(strict["cell_type"]) == expected
    assert table.attrs["sigscan"]["groupby"] == "cell_type"
    with pytest.raises(ValueError, match="boolean"):
        ss.tl.sample_hits(marked, "score", sample_key="sample")
    with pytest.raises(ValueError, match="not constant"):
        ss.tl.sample_hits(marked, "score_hit", sample_key="sample", sample_columns=["cell_type"])
