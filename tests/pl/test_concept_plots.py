"""pl.concepts and pl.concept_genes: what they draw, where the data comes from, the shared plot options."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest

import sigscan as ss
from sigscan.pl._concepts import concept_order, group_activations


def test_group_activations_and_order(planted_concepts):
    adata, _, _ = planted_concepts
    mean, fraction = group_activations(adata, "program")
    dense = adata.obsm["concepts"].toarray()
    for group in mean.index:
        cells = (adata.obs["program"] == group).to_numpy()
        np.testing.assert_allclose(mean.loc[group].to_numpy(), dense[cells].mean(0, dtype=np.float64), rtol=1e-6)
        np.testing.assert_allclose(fraction.loc[group].to_numpy(), (dense[cells] > 0).mean(0))
    order = concept_order(mean)
    best = mean.to_numpy().argmax(axis=0)[order]
    assert list(best) == sorted(best)  # grouped by their best group
    assert set(order) == set(np.flatnonzero(dense.max(0) > 0))


def test_concepts_dot_plot(planted_concepts, tmp_path):
    adata, _, _ = planted_concepts
    ax = ss.pl.concepts(adata, "program", save=tmp_path / "dots.png")
    assert [t.get_text() for t in ax.get_yticklabels()] == list(adata.obs["program"].cat.categories)
    assert (tmp_path / "dots.png").stat().st_size > 1000
    figure = ss.pl.concepts(adata, "program", concepts=[0, 1], return_fig=True)
    assert len(figure.axes[0].get_xticklabels()) == 2
    with pytest.raises(KeyError, match="groupby"):
        ss.pl.concepts(adata, "missing")
    plt.close("all")


def test_concept_genes_bars_with_enrichment(planted_concepts, tmp_path):
    adata, _, _ = planted_concepts
    ss.tl.concept_enrichment(adata, adata.uns["programs"], n_top=10)
    table = adata.uns["sigscan"]["concepts_enrichment"]
    concept = int(table.loc[table["fdr"].idxmin(), "concept"])
    _, ax = plt.subplots()
    out = ss.pl.concept_genes(adata, concept, n_top=10, ax=ax, save=tmp_path / "bars.png")
    assert out is ax and len(ax.patches) == 10
    labels = [t.get_text() for t in ax.get_yticklabels()]
    table_genes = adata.uns["sigscan"]["concepts_genes"]
    expected = table_genes[table_genes["concept"] == concept].sort_values("rank")["gene"].head(10).tolist()
    assert labels == expected
    assert any("PROGRAM" in t.get_text() for t in ax.texts)  # the best hit is annotated
    with pytest.raises(ValueError, match="concept must be"):
        ss.pl.concept_genes(adata, 99)
    plt.close("all")
