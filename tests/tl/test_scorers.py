"""Each scorer against hand-computed values, oracles and reference packages."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from scipy import sparse
from scipy.stats import rankdata

import sigscan as ss
from sigscan.tl._scorers import SCORERS, ScoringData
from sigscan.tl._scorers._ans import ans_weights

SET = ["G0", "G2", "G3"]


def _score(adata, genes, method, **kwargs):
    ss.tl.score_genes(adata, genes, method=method, key_added="s", normalize=False, **kwargs)
    return adata.obs["s"].to_numpy()


# ---------------------------------------------------------------- UCell


def test_ucell_hand_computed(tiny):
    # c0: ranks G0=1, G2=2.5 (tie with G1), G3 unexpressed=4 -> U=1.5, 1-1.5/6; all-zero cell -> 0
    # c2: G0 (value 1) is 4th -> 4, G2 zero -> 4, G3 top -> 1 -> U=3 -> 0.5
    scores = _score(tiny, SET, "ucell", max_rank=4)
    np.testing.assert_allclose(scores[:3], [0.75, 0.0, 0.5])
    # capping: a tied group beyond max_rank counts as max_rank
    np.testing.assert_allclose(_score(tiny, ["G0", "G2"], "ucell", max_rank=2)[0], 1.0)


def test_ucell_equals_pyucell_tiny_and_pbmc(tiny, pbmc_lognorm, pbmc_gene_sets):
    pyucell = pytest.importorskip("pyucell")
    for adata, genes, max_rank in [
        (tiny, SET, 4),
        (pbmc_lognorm[:600].copy(), pbmc_gene_sets["PANGLAODB_NK_CELLS"], 1500),
    ]:
        genes = [g for g in genes if g in adata.var_names]
        ours = _score(adata, genes, "ucell", max_rank=max_rank)
        pyucell.compute_ucell_scores(adata, {"ref": genes}, max_rank=max_rank, missing_genes="skip", n_jobs=1)
        reference = adata.obs["ref_UCell"].to_numpy(dtype=float)
        assert np.corrcoef(ours, reference)[0, 1] >= 0.999
        np.testing.assert_allclose(ours, reference, atol=1e-5)


# ---------------------------------------------------------------- JASMINE


def _jasmine_oracle(x: np.ndarray, columns: list[int], mode: str) -> np.ndarray:
    """A cell-by-cell transcription of the R original's formulas."""
    n_total = x.shape[1]
    rank_part, enrichment = [], []
    in_set = np.zeros(n_total, dtype=bool)
    in_set[columns] = True
    for row in x:
        expressed = row != 0
        ranks = rankdata(row[expressed])
        sig_ranks = ranks[in_set[expressed]]
        rank_part.append(sig_ranks.mean() / expressed.sum() if sig_ranks.size else 0.0)
        a = float((expressed & in_set).sum())
        b = in_set.sum() - a or 1.0
        c = float((expressed & ~in_set).sum()) or 1.0
        d = n_total - (c + a) - b
        enrichment.append(a * (c + d) / (c * (a + b)) if mode == "likelihood" else a * d / (b * c))

    def minmax(v):
        v = np.asarray(v)
        return (v - v.min()) / (v.max() - v.min()) if v.max() > v.min() else np.zeros_like(v)

    return (minmax(rank_part) + minmax(enrichment)) / 2


def test_jasmine_hand_computed(tiny):
    # rank parts: c0 (4 + 2.5)/2 / 4 = 0.8125, c1 0, c2 (1 + 4)/2 / 4 = 0.625, c3 1/1 = 1, c4 3.5/6
    rank = np.array([0.8125, 0.0, 0.625, 1.0, 3.5 / 6])
    # likelihood: c0 a=2 b=1 c=2 d=1 -> 1; c1 0; c2 1; c3 a=1 b=2 c=1 d=2 -> 1; c4 a=3 b=1 c=3 d=-1 -> 0.5
    likelihood = np.array([1.0, 0.0, 1.0, 1.0, 0.5])
    expected = (rank / rank.max() + likelihood) / 2
    np.testing.assert_allclose(_score(tiny, SET, "jasmine", mode="likelihood"), expected)


@pytest.mark.parametrize("mode", ["likelihood", "oddsratio"])
def test_jasmine_matches_r_formulas_and_is_in_unit_interval(mode, pbmc_lognorm, pbmc_gene_sets):
    adata = pbmc_lognorm[:300].copy()
    genes = [g for g in pbmc_gene_sets["PANGLAODB_B_CELLS"] if g in adata.var_names]
    scores = _score(adata, genes, "jasmine", mode=mode)
    assert scores.min() >= 0 and scores.max() <= 1
    columns = list(adata.var_names.get_indexer(genes))
    np.testing.assert_allclose(scores, _jasmine_oracle(adata.X.toarray(), columns, mode), atol=1e-10)


def test_jasmine_rejects_unknown_mode(tiny):
    with pytest.raises(ValueError, match="mode"):
        _score(tiny, SET, "jasmine", mode="ratio")


# ---------------------------------------------------------------- AUCell


def _aucell_oracle(x: np.ndarray, columns: list[int], n_up: int) -> np.ndarray:
    out = []
    thresholds = np.arange(1, len(columns) + 1)
    thresholds = thresholds[thresholds < n_up]
    max_auc = np.sum(np.diff(np.append(thresholds, n_up)) * thresholds)
    for row in x:
        ranks = rankdata(-row, method="ordinal")[columns]
        hit = np.sort(ranks[ranks <= n_up])
        steps = np.diff(np.append(hit, n_up))
        out.append(np.sum(steps * (np.arange(hit.size) + 1)) / max_auc)
    return np.array(out)


def test_aucell_hand_computed_and_oracle(tiny):
    # c0 ordinal ranks: G0=1, G1=2, G2=3, G4=4, G3=5 -> recovered {1, 3} in top 3: area 2*1 + 0*2 = 2; max 1+2 = 3
    scores = _score(tiny, SET, "aucell", n_up=3)
    assert scores[0] == pytest.approx(2 / 3)
    assert scores[1] == pytest.approx(_aucell_oracle(np.zeros((1, 6)), [0, 2, 3], 3)[0])
    np.testing.assert_allclose(scores, _aucell_oracle(tiny.X.toarray(), [0, 2, 3], 3))


def test_aucell_oracle_on_counts_with_ties(pbmc_lognorm, pbmc_gene_sets):
    adata = pbmc_lognorm[:150, :3000].copy()
    genes = [g for g in pbmc_gene_sets["PANGLAODB_MONOCYTES"] if g in adata.var_names]
    scores = _score(adata, genes, "aucell")
    n_up = int(np.ceil(0.05 * adata.n_vars))
    columns = list(adata.var_names.get_indexer(genes))
    np.testing.assert_allclose(scores, _aucell_oracle(adata.X.toarray(), columns, n_up), atol=1e-12)


# ---------------------------------------------------------------- ANS


def test_ans_hand_computed_window():
    means = np.array([0.1, 0.2, 0.3, 0.4, 0.45, 0.6, 0.7, 0.8])
    spread = np.linspace(0.1, 0.9, 8)
    x = np.vstack([means * (1 + spread), means * (1 - spread)]).astype(np.float64)
    adata = ad.AnnData(sparse.csr_matrix(x.astype(np.float32)), var=pd.DataFrame(index=[f"g{j}" for j in range(8)]))
    # g0 (lowest) and g7 (highest) have no valid window and are dropped; g4 (0.45) gets the window {g3, g5}
    # (reference means 0.2 0.3 0.4 0.6 0.7 -> window means 0.25 0.35 0.5 0.65)
    scores = _score(adata, ["g0", "g4", "g7"], "ans", ctrl_size=2)
    x32 = adata.X.toarray().astype(np.float64)
    np.testing.assert_allclose(scores, x32[:, 4] - (x32[:, 3] + x32[:, 5]) / 2, rtol=1e-6)


def test_ans_signature_equal_to_controls_scores_zero():
    rng = np.random.default_rng(0)
    n_cells = 40
    low = rng.gamma(1.0, 0.1, size=(n_cells, 100))
    high = 5 + rng.gamma(1.0, 1.0, size=(n_cells, 100))
    profile = rng.gamma(2.0, 0.5, size=(n_cells, 1))
    block = np.repeat(profile, 100, axis=1)  # 100 reference genes with the signature's exact expression
    signature = np.repeat(profile, 5, axis=1)
    x = np.hstack([low, block, high, signature]).astype(np.float32)
    adata = ad.AnnData(sparse.csr_matrix(x))
    adata.var_names = [f"g{j}" for j in range(x.shape[1])]
    scores = _score(adata, [f"g{j}" for j in range(300, 305)], "ans", ctrl_size=50)
    np.testing.assert_allclose(scores, 0.0, atol=1e-6)
    assert np.ptp(_score(adata, ["g300", "g0"], "ans", ctrl_size=50)) > 0  # a different signature does not


def test_ans_shift_of_signature_genes_shifts_score(pbmc_lognorm, pbmc_gene_sets):
    adata = pbmc_lognorm[:200].copy()
    genes = [g for g in pbmc_gene_sets["PANGLAODB_NK_CELLS"] if g in adata.var_names]
    data = ScoringData(adata)
    columns = adata.var_names.get_indexer(genes)
    weights = ans_weights(data.gene_means(), columns, ctrl_size=100)
    kept = np.flatnonzero(weights > 0)
    assert weights[kept].sum() == pytest.approx(1.0) and weights[weights < 0].sum() == pytest.approx(-1.0)
    x = adata.X.toarray().astype(np.float64)
    shifted = x.copy()
    shifted[:, kept] += 0.7
    np.testing.assert_allclose(shifted @ weights - x @ weights, 0.7)
    # and the public scorer equals that linear form
    np.testing.assert_allclose(_score(adata, genes, "ans"), x @ weights, atol=1e-5)


def test_ans_all_genes_at_the_extremes_raise(tiny):
    with pytest.raises(ValueError, match="ctrl_size"):
        _score(tiny, SET, "ans", ctrl_size=100)


# ---------------------------------------------------------------- scanpy, mean, attribution


def test_scanpy_path_identical_to_scanpy(pbmc_lognorm, pbmc_gene_sets):
    adata = pbmc_lognorm[:500].copy()
    genes = [g for g in pbmc_gene_sets["PANGLAODB_B_CELLS"] if g in adata.var_names]
    ours = _score(adata, genes, "scanpy")
    sc.tl.score_genes(adata, genes, score_name="reference")
    np.testing.assert_array_equal(ours, adata.obs["reference"].to_numpy())


def test_mean_hand_computed(tiny):
    np.testing.assert_allclose(_score(tiny, SET, "mean"), [8 / 3, 0, 5 / 3, 2 / 3, 1])


def test_attribution_routes_through_attribution_score(tiny):
    tiny.layers["attr_toy_ig"] = tiny.X * 2
    tiny.uns["sigscan"] = {"attributions": {"attr_toy_ig": {}}}
    ss.tl.attribution_score(tiny, SET, key_added="reference")
    np.testing.assert_allclose(_score(tiny, SET, "attribution"), tiny.obs["reference"], rtol=1e-6)
    np.testing.assert_allclose(_score(tiny, SET, "attribution", agg="sum"), tiny.obs["reference"] * 3, rtol=1e-6)


# ---------------------------------------------------------------- shared behaviour


@pytest.mark.parametrize("method", [m for m in SCORERS if m != "attribution"])
def test_chunked_on_the_fly_normalisation_equals_prenormalised(method, pbmc_lognorm, pbmc_gene_sets):
    adata = pbmc_lognorm[:300].copy()
    genes = [g for g in pbmc_gene_sets["PANGLAODB_MONOCYTES"] if g in adata.var_names]
    counts_before = adata.layers["counts"].copy()
    x_before = adata.X.copy()
    ss.tl.score_genes(adata, genes, method=method, key_added="pre", normalize=False)
    ss.tl.score_genes(adata, genes, method=method, layer="counts", key_added="fly", batch_size=37)
    assert adata.uns["sigscan"]["score_genes"]["fly"]["normalized_on_the_fly"]
    np.testing.assert_allclose(adata.obs["fly"], adata.obs["pre"], rtol=1e-4, atol=1e-5)
    # X and layers untouched, still sparse
    assert sparse.issparse(adata.X) and (adata.X != x_before).nnz == 0
    assert (adata.layers["counts"] != counts_before).nnz == 0


def test_gene_set_inputs_and_errors(tiny, tmp_path):
    gmt = tmp_path / "sets.gmt"
    gmt.write_text("A\tx\tG0\tG2\tG3\nB\tx\tG1\tG5\n")
    ss.tl.score_genes(tiny, gmt, method="mean", normalize=False)
    assert {"A_mean", "B_mean"} <= set(tiny.obs.columns)
    ss.tl.score_genes(tiny, f"{gmt}:A", method="mean", normalize=False, key_added="a")
    np.testing.assert_allclose(tiny.obs["a"], tiny.obs["A_mean"])
    ss.tl.score_genes(tiny, {"A": SET}, method="mean", normalize=False, key_added="p")
    np.testing.assert_allclose(tiny.obs["p_A"], tiny.obs["A_mean"])
    with pytest.warns(UserWarning, match="1 of 4 genes") as record:
        ss.tl.score_genes(tiny, [*SET, "ABSENT"], method="mean", normalize=False, key_added="w")
    assert len([w for w in record if "not in the data" in str(w.message)]) == 1
    np.testing.assert_allclose(tiny.obs["w"], tiny.obs["A_mean"])
    with pytest.raises(ValueError, match="empty"):
        ss.tl.score_genes(tiny, [], method="mean")
    with pytest.raises(ValueError, match="None of the"):
        ss.tl.score_genes(tiny, ["ABSENT"], method="mean")
    with pytest.raises(ValueError, match="Unknown scoring method 'foo'; available"):
        ss.tl.score_genes(tiny, SET, method="foo")
    with pytest.raises(ValueError, match="Unknown option"):
        ss.tl.score_genes(tiny, SET, method="ucell", ctrl_size=3)


def test_copy_returns_new_object(tiny):
    out = ss.tl.score_genes(tiny, SET, method="ucell", copy=True, normalize=False)
    assert "ucell_score" in out.obs and "ucell_score" not in tiny.obs


def test_auto_normalize_detects_counts(pbmc_counts):
    adata = pbmc_counts[:100].copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ss.tl.score_genes(adata, ["LYZ", "CD14"], method="mean")
    assert adata.uns["sigscan"]["score_genes"]["mean_score"]["normalized_on_the_fly"]
    assert adata.obs["mean_score"].max() < 12  # log scale, not raw counts


@pytest.mark.parametrize("method", ["ucell", "jasmine", "aucell", "mean", "ans"])
def test_stored_zeros_and_unsorted_indices_are_handled(method, tiny):
    reference = _score(tiny.copy(), SET, method, **({"ctrl_size": 2} if method == "ans" else {}))
    messy = tiny.copy()
    x = messy.X.tocoo()
    # add explicit zeros and shuffle the entry order inside rows
    rows = np.concatenate([x.row, [0, 2, 3]])
    cols = np.concatenate([x.col, [3, 2, 1]])
    vals = np.concatenate([x.data, [0.0, 0.0, 0.0]]).astype(np.float32)
    order = np.random.default_rng(0).permutation(rows.size)
    matrix = sparse.csr_matrix((vals[order], (rows[order], cols[order])), shape=x.shape)
    matrix.has_sorted_indices = False
    messy.X = matrix
    stored = messy.X.copy()
    scores = _score(messy, SET, method, **({"ctrl_size": 2} if method == "ans" else {}))
    np.testing.assert_allclose(scores, reference, atol=1e-12)
    assert messy.X.nnz == stored.nnz  # the stored matrix keeps its explicit zeros


def test_register_scorer_adds_a_method_to_score_genes_and_the_listing():
    def total(data, gene_sets, *, scale=1.0):
        out = np.zeros((data.shape[0], len(gene_sets)))
        for lo, hi, chunk in data.chunks():
            for k, columns in enumerate(gene_sets):
                out[lo:hi, k] = scale * np.asarray(chunk[:, columns].sum(axis=1)).ravel()
        return out

    adata = ss.datasets.toy(n_cells=60, n_genes=40)
    genes = adata.uns["programs"]["group0"]
    try:
        scorer = ss.tl.register_scorer("total_test", total, summary="sum over the set")
        assert isinstance(scorer, ss.tl.Scorer)
        listing = ss.tl.scorers()
        assert (
            listing.loc["total_test", "options"] == {"scale": 1.0}
            and listing.loc["total_test", "reads"] == "expression"
        )
        ss.tl.score_genes(adata, genes, method="total_test", scale=2.0)
        ss.tl.score_genes(adata, genes, method="mean", key_added="mean")
        # the mean scorer averages the same normalised values: total / n_genes / 2 == mean
        np.testing.assert_allclose(adata.obs["total_test_score"] / (2 * len(genes)), adata.obs["mean"], rtol=1e-6)
        with pytest.raises(ValueError, match="exists already; pass overwrite=True"):
            ss.tl.register_scorer("total_test", total)
        with pytest.raises(TypeError, match="takes 1 positional"):
            ss.tl.register_scorer("bad", lambda data: data, overwrite=True)
    finally:
        SCORERS.pop("total_test", None)
    assert "total_test" not in ss.tl.scorers().index
