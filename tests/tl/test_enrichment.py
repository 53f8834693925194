"""tl.concept_enrichment: planted set first, hypergeometric / Mann–Whitney / BH against scipy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

import sigscan as ss
from sigscan.tl._enrichment import rank_sum_test


@pytest.fixture
def gene_sets(_planted):
    adata = _planted[0]
    rng = np.random.default_rng(1)
    sets = dict(adata.uns["programs"])
    for r in range(12):
        sets[f"RANDOM{r}"] = list(rng.choice(adata.var_names, 8, replace=False))
    return sets


@pytest.mark.parametrize("method", ["ora", "prerank"])
def test_planted_set_has_the_smallest_fdr(planted_concepts, gene_sets, method, tmp_path):
    adata, _, on = planted_concepts
    gmt = tmp_path / "sets.gmt"
    gmt.write_text("".join(f"{name}\tdesc\t" + "\t".join(genes) + "\n" for name, genes in gene_sets.items()))
    table = ss.tl.concept_enrichment(adata, gmt, n_top=10, method=method)
    assert list(table.columns) == [
        "concept",
        "gene_set",
        "overlap",
        "set_size",
        "effect",
        "p",
        "fdr",
        "method",
        "genes",
    ]
    assert adata.uns["sigscan"]["concepts_enrichment"] is table
    activations = adata.obsm["concepts"].toarray()
    for p in range(on.shape[1]):
        concept = int(np.argmax([roc_auc_score(on[:, p], activations[:, c]) for c in range(activations.shape[1])]))
        rows = table[table["concept"] == concept]
        best = rows.loc[rows["fdr"].idxmin()]
        assert best["gene_set"] == f"PROGRAM{p}"
        assert best["fdr"] < 0.01
        assert (rows.loc[rows["gene_set"] != best["gene_set"], "fdr"] > best["fdr"]).all()


def test_ora_matches_scipy(planted_concepts, gene_sets):
    adata, _, _ = planted_concepts
    table = ss.tl.concept_enrichment(adata, gene_sets, n_top=10)
    scores = adata.varm["concepts_genes"][:, 0].astype(np.float64)
    order = np.lexsort((np.arange(len(scores)), -scores))
    top = set(adata.var_names[order[scores[order] > 0][:10]])
    rows = table[table["concept"] == 0].set_index("gene_set")
    n = adata.n_vars
    for name, genes in gene_sets.items():
        inside = len(top & set(genes))
        # Fisher's exact test on the 2×2 table is the same one-sided hypergeometric test
        contingency = [[inside, len(top) - inside], [len(genes) - inside, n - len(top) - len(genes) + inside]]
        expected = stats.fisher_exact(contingency, alternative="greater").pvalue if inside else 1.0
        assert rows.loc[name, "overlap"] == inside
        assert rows.loc[name, "p"] == pytest.approx(expected, rel=1e-9)
    p = rows["p"].to_numpy()
    np.testing.assert_allclose(rows["fdr"], stats.false_discovery_control(p, method="bh"))


def test_background_is_the_model_genes(planted_concepts):
    adata, _, _ = planted_concepts
    adata.var["concepts_in_model"] = np.arange(adata.n_vars) >= 4  # as if the model lacked P0_0…P0_3
    table = ss.tl.concept_enrichment(adata, adata.uns["programs"], n_top=10, min_size=2)
    sizes = table.drop_duplicates("gene_set").set_index("gene_set")["set_size"]
    assert sizes["PROGRAM0"] == 4 and sizes["PROGRAM1"] == 8
    row = table[(table["concept"] == 0) & (table["gene_set"] == "PROGRAM1")].iloc[0]
    scores = adata.varm["concepts_genes"][4:, 0]
    top = np.argsort(-scores, kind="stable")[: min(10, int((scores > 0).sum()))]
    expected = stats.hypergeom.sf(row["overlap"] - 1, adata.n_vars - 4, 8, len(top)) if row["overlap"] else 1.0
    assert row["p"] == pytest.approx(expected, rel=1e-9)


def test_rank_sum_test_equals_scipy_mannwhitneyu():
    rng = np.random.default_rng(0)
    scores = np.round(rng.exponential(size=300), 1)  # many ties
    scores[:100] = 0.0
    members = [rng.choice(300, 12, replace=False), np.arange(290, 300), np.arange(0, 30)]
    auc, p = rank_sum_test(scores, members)
    for i, positions in enumerate(members):
        rest = np.setdiff1d(np.arange(300), positions)
        result = stats.mannwhitneyu(scores[positions], scores[rest], alternative="greater", method="asymptotic")
        assert p[i] == pytest.approx(result.pvalue, rel=1e-9)
        assert auc[i] == pytest.approx(result.statistic / (len(positions) * len(rest)))


def test_errors(planted_concepts, _planted):
    adata, _, _ = planted_concepts
    with pytest.raises(ValueError, match="identifier type"):
        ss.tl.concept_enrichment(adata, {"X": ["CD3E", "CD4", "CD8A", "LYZ", "MS4A1"]})
    with pytest.raises(ValueError, match="Unknown method"):
        ss.tl.concept_enrichment(adata, adata.uns["programs"], method="gsea")
    with pytest.raises(KeyError, match=r"run ss\.tl\.concept_genes"):
        ss.tl.concept_enrichment(_planted[0].copy(), adata.uns["programs"])
