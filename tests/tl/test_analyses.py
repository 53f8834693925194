"""Tests of the paper's analyses (issue 13): oracles from scipy, hand loops and planted signals."""

from __future__ import annotations

import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from scipy import sparse, stats

import sigscan as ss
from sigscan.tl._analyses import _common, _ranks

#: the project's shared real data: ``../shared/data`` from the repository root (or above it, for worktrees)
SHARED_DATA = next(
    (p / "shared" / "data" for p in Path(__file__).resolve().parents[2:] if (p / "shared" / "data").is_dir()), None
)


def _shared(name: str) -> ad.AnnData:
    path = SHARED_DATA / name if SHARED_DATA is not None else None
    if path is None or not path.exists():
        pytest.skip(f"{name} not found in ../shared/data")
    adata = ad.read_h5ad(path)
    adata.X = adata.X.astype(np.float32)
    return adata


SETS = {
    "B cells": ["CD79A", "CD79B", "MS4A1", "CD19", "BANK1"],
    "NK cells": ["GNLY", "NKG7", "PRF1", "GZMB", "KLRD1"],
    "CD14+ Monocytes": ["CD14", "LYZ", "S100A8", "S100A9", "FCN1"],
}


@pytest.fixture(scope="module")
def pbmc_part() -> ad.AnnData:
    """600 labelled PBMC3k cells (raw counts in X)."""
    adata = ss.datasets.pbmc3k()
    adata = adata[adata.obs["cell_type"] != "unknown"]
    return adata[:600].copy()


@pytest.fixture(scope="module")
def with_attributions(_pbmc_small, scimilarity_model) -> ad.AnnData:
    """The 48-cell PBMC slice with a gradient × input attribution layer of the random SCimilarity model."""
    adata = _pbmc_small.copy()
    ss.pp.attributions(adata, scimilarity_model, method="ixg", device="cpu", progress=False)
    return adata


def _relabellings(detected: np.ndarray, n: int, seed: int) -> list[np.ndarray]:
    """Hand-written relabellings: permute the labels of the detected genes, the others keep theirs."""
    pool = np.flatnonzero(detected)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        perm = np.arange(detected.size)
        perm[pool] = pool[rng.permutation(pool.size)]
        out.append(perm)
    return out


def _log_norm(counts: sparse.spmatrix) -> np.ndarray:
    x = np.asarray(sparse.csr_matrix(counts).toarray(), dtype=np.float64)
    totals = x.sum(axis=1, keepdims=True)
    return np.log1p(np.divide(x * 1e4, totals, out=np.zeros_like(x), where=totals > 0))


# --- ranks and Spearman against scipy ----------------------------------------------------------------------------------


def test_row_percentiles_match_scipy_rankdata():
    x = np.array(
        [
            [5, 3, 3, 0, 1, 0],  # ties
            [0, 0, 0, 0, 0, 0],  # empty cell
            [0, 0, 7, 0, 0, 0],  # one gene
            [2, 2, 2, 2, 2, 2],  # all tied
            [-1, 0, 0.5, 4, 0, -3],  # negative values rank too
        ],
        dtype=np.float32,
    )
    matrix = sparse.csr_matrix(x)
    matrix.data[matrix.indptr[0] + 3] = 0  # an explicit stored zero (row 0, column 4) must stay unranked
    x[0, 4] = 0
    got = _ranks.row_percentiles(matrix).toarray()
    for i, row in enumerate(x):
        nonzero = np.flatnonzero(row)
        expected = np.zeros(row.size)
        if nonzero.size:
            expected[nonzero] = stats.rankdata(row[nonzero], method="average") / nonzero.size * 100
        np.testing.assert_allclose(got[i], expected)
    assert got[2, 2] == 100.0 and got[3].tolist() == [350 / 6] * 6


def test_row_percentiles_random_matrix_against_scipy():
    rng = np.random.default_rng(3)
    matrix = sparse.random(60, 40, density=0.3, format="csr", random_state=4, data_rvs=lambda n: rng.integers(1, 5, n))
    got = _ranks.row_percentiles(matrix)
    for i in range(60):
        row = matrix[i].toarray().ravel()
        nonzero = np.flatnonzero(row)
        if nonzero.size:
            np.testing.assert_allclose(
                got[i].toarray().ravel()[nonzero], stats.rankdata(row[nonzero]) / nonzero.size * 100
            )


def test_spearman_columns_match_scipy_with_ties_and_constants():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, size=(50, 3)).astype(float)  # many ties
    scores[:, 2] = 1.0  # constant
    metrics = np.column_stack([rng.normal(size=50), rng.integers(0, 3, 50)])
    rho = _common.spearman_columns(scores, metrics)
    for a in range(2):
        for b in range(2):
            assert rho[a, b] == pytest.approx(stats.spearmanr(scores[:, a], metrics[:, b]).statistic, abs=1e-12)
    assert np.isnan(rho[2]).all()


# --- qc_correlation ------------------------------------------------------------------------------------------------------


def test_qc_correlation_matches_hand_loop(pbmc_part, snapshot, assert_unchanged):
    adata = pbmc_part.copy()
    before = snapshot(adata)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = ss.tl.qc_correlation(adata, SETS, groupby="cell_type", methods=["mean"], n_shuffles=4, random_state=7)
    # inputs unchanged apart from the result in uns
    del adata.uns["sigscan"]
    assert_unchanged(adata, before)

    lognorm = _log_norm(pbmc_part.X)
    counts = pbmc_part.X.toarray()
    qc = {
        "total_counts": counts.sum(axis=1),
        "n_genes_by_counts": (counts > 0).sum(axis=1),
        "pct_counts_mt": 100 * counts[:, pbmc_part.var_names.str.startswith("MT-")].sum(axis=1) / counts.sum(axis=1),
    }
    perms = _relabellings(counts.any(axis=0), 4, 7)
    assert not counts.any(axis=0).all()  # undetected genes keep their labels
    labels = pbmc_part.obs["cell_type"].astype(str).to_numpy()
    for group, genes in SETS.items():
        columns = pbmc_part.var_names.get_indexer(genes)
        cells = labels == group
        for metric, values in qc.items():
            row = table[(table["group"] == group) & (table["qc"] == metric)]
            observed = stats.spearmanr(lognorm[cells][:, columns].mean(axis=1), values[cells]).statistic
            assert row.loc[row["kind"] == "gene_set", "spearman"].item() == pytest.approx(observed, abs=1e-9)
            shuffled = [
                abs(stats.spearmanr(lognorm[cells][:, perm[columns]].mean(axis=1), values[cells]).statistic)
                for perm in perms
            ]
            assert row.loc[row["kind"] == "shuffled", "abs_spearman"].item() == pytest.approx(
                np.nanmean(shuffled), abs=1e-9
            )


def test_qc_correlation_attribution_and_expression_side_by_side(with_attributions, snapshot, assert_unchanged):
    adata = with_attributions.copy()
    before = snapshot(adata)
    sets = {"B cells": SETS["B cells"], "NK cells": SETS["NK cells"]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = ss.tl.qc_correlation(
            adata, sets, groupby="cell_type", counts_layer="counts", n_shuffles=3, key_added="qc"
        )
    assert set(table["reads"]) == {"attribution", "expression"}
    assert set(table["kind"]) == {"gene_set", "shuffled"}
    assert table["abs_spearman"].dropna().between(0, 1).all()
    assert adata.uns["sigscan"]["qc"] is table
    assert adata.uns["sigscan"]["qc_params"]["n_shuffles"] == 3
    del adata.uns["sigscan"]["qc"], adata.uns["sigscan"]["qc_params"]
    assert_unchanged(adata, before)


def test_qc_correlation_gmt_mapping(pbmc_part):
    table = ss.tl.qc_correlation(
        pbmc_part.copy(),
        {"B cells": "PANGLAODB_B_CELLS"},
        groupby="cell_type",
        methods=["mean"],
        n_shuffles=0,
        gmt=ss.datasets.gene_sets("panglaodb_immune"),
    )
    assert set(table["gene_set"]) == {"PANGLAODB_B_CELLS"} and set(table["kind"]) == {"gene_set"}


def test_qc_correlation_errors(pbmc_part):
    adata = pbmc_part.copy()
    with pytest.raises(KeyError, match="groupby='celltype' is not an obs column; pass one of"):
        ss.tl.qc_correlation(adata, SETS, groupby="celltype", methods=["mean"])
    with pytest.raises(ValueError, match="key gene_sets by those values"):
        ss.tl.qc_correlation(adata, {"T regs": ["FOXP3"]}, groupby="cell_type", methods=["mean"])
    with pytest.raises(KeyError, match=r"run ss\.pp\.attributions"):
        ss.tl.qc_correlation(adata, SETS, groupby="cell_type")
    lognorm = adata.copy()
    sc.pp.normalize_total(lognorm)
    sc.pp.log1p(lognorm)
    with pytest.raises(ValueError, match="pass counts_layer="):
        ss.tl.qc_correlation(lognorm, SETS, groupby="cell_type", methods=["mean"])
    with pytest.raises(KeyError, match="Unknown QC metric"):
        ss.tl.qc_correlation(adata, SETS, groupby="cell_type", methods=["mean"], qc=["depth"])


# --- rank_percentiles ----------------------------------------------------------------------------------------------------


def test_rank_percentiles_match_brute_force(snapshot, assert_unchanged):
    rng = np.random.default_rng(1)
    x = rng.poisson(0.8, size=(40, 30)).astype(np.float32)
    x[0] = 0
    x[0, 5] = 3  # a cell with one gene
    adata = ad.AnnData(
        sparse.csr_matrix(x),
        obs=pd.DataFrame({"g": ["a"] * 20 + ["b"] * 20}, index=[f"c{i}" for i in range(40)]),
        var=pd.DataFrame(index=[f"G{j}" for j in range(30)]),
    )
    families = {"first": ["G0", "G1", "G2", "G5"], "second": ["G10", "G20", "G29"]}
    before = snapshot(adata)
    table = ss.tl.rank_percentiles(adata, families, groupby="g", n_shuffles=3, random_state=2)
    del adata.uns["sigscan"]
    assert_unchanged(adata, before)

    pct = np.full(x.shape, np.nan)
    for i, row in enumerate(x):
        nonzero = np.flatnonzero(row)
        pct[i, nonzero] = stats.rankdata(row[nonzero]) / nonzero.size * 100
    perms = _relabellings(x.any(axis=0), 3, 2)
    for group, cells in (("a", slice(0, 20)), ("b", slice(20, 40))):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            gene_means = np.nanmean(pct[cells], axis=0)
        for family, genes in families.items():
            columns = adata.var_names.get_indexer(genes)
            rows = table[(table["group"] == group) & (table["family"] == family)]
            expected = np.nanmean(gene_means[columns])
            assert rows.loc[rows["kind"] == "gene_set", "mean_percentile"].item() == pytest.approx(expected)
            baseline = np.nanmean([np.nanmean(gene_means[perm[columns]]) for perm in perms])
            assert rows.loc[rows["kind"] == "shuffled", "mean_percentile"].item() == pytest.approx(baseline)


def test_rank_percentiles_pbmc_families_and_attributions(with_attributions):
    adata = with_attributions.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = ss.tl.rank_percentiles(adata, list(_ranks.BUILTIN_FAMILIES), groupby="cell_type", n_top=10)
    assert set(table["family"]) == set(_ranks.BUILTIN_FAMILIES)
    assert set(table["reads"]) == {"attribution", "expression"}
    observed = table[table["kind"] == "gene_set"]
    assert observed["mean_percentile"].dropna().between(0, 100).all()
    genes = adata.uns["sigscan"]["rank_percentiles_genes"]
    assert {"gene", "mean_percentile", "n_cells_detected"} <= set(genes.columns)
    # expression: ribosomal genes rank above random genes in every PBMC type (the most abundant transcripts)
    expression = table.query("family == 'ribosomal' and reads == 'expression'")
    wide = expression.pivot(index="group", columns="kind", values="mean_percentile")
    assert (wide["gene_set"] > wide["shuffled"] + 10).all()


def test_builtin_families():
    tfs = _ranks.transcription_factors()
    assert len(tfs) == 1639 and len(set(tfs)) == 1639
    assert {"FOXP3", "SPI1", "PAX5", "TBX21", "GATA3"} <= set(tfs) and "ACTB" not in tfs
    names = pd.Index(["RPL13A", "RPS27A", "RPLP0", "RPS4Y1", "RPL3L", "RPS6KA1", "RPL13AP5", "MT-CO1", "MTOR"])
    assert _ranks._builtin("ribosomal", names) == ["RPL13A", "RPS27A", "RPLP0", "RPS4Y1", "RPL3L"]
    assert _ranks._builtin("mitochondrial", names) == ["MT-CO1"]


def test_rank_percentiles_errors(pbmc_part):
    with pytest.raises(KeyError, match="is not an obs column"):
        ss.tl.rank_percentiles(pbmc_part, ["ribosomal"], groupby="louvain")
    with pytest.raises(KeyError, match="Layer 'attr' not found"):
        ss.tl.rank_percentiles(pbmc_part, ["ribosomal"], groupby="cell_type", layers=["attr"])
    with pytest.raises(TypeError, match="gene_families must be"):
        ss.tl.rank_percentiles(pbmc_part, 3, groupby="cell_type")


# --- cell_cycle_contrast -------------------------------------------------------------------------------------------------


def _cycling(n_cells: int = 120, n_genes: int = 60, seed: int = 0) -> ad.AnnData:
    """Counts with a planted G2/M program (genes G0-G9 x6 in 'G2M' cells) and an S program (G10-G19 x4 in 'S')."""
    rng = np.random.default_rng(seed)
    phase = np.array(
        ["G1"] * (n_cells // 2) + ["S"] * (n_cells // 4) + ["G2M"] * (n_cells - n_cells // 2 - n_cells // 4)
    )
    rates = np.full((n_cells, n_genes), 2.0)
    rates[phase == "G2M", :10] *= 6
    rates[phase == "S", 10:20] *= 4
    counts = rng.poisson(rates).astype(np.float32)
    adata = ad.AnnData(
        sparse.csr_matrix(counts),
        obs=pd.DataFrame({"phase": phase}, index=[f"c{i}" for i in range(n_cells)]),
        var=pd.DataFrame(index=[f"G{j}" for j in range(n_genes)]),
    )
    adata.layers["attr_toy"] = sparse.csr_matrix(counts * rng.uniform(0.5, 1.5, counts.shape).astype(np.float32))
    return adata


def test_cell_cycle_contrast_matches_hand_computation(snapshot, assert_unchanged):
    adata = _cycling()
    g2m = [f"G{j}" for j in range(10)]
    s = [f"G{j}" for j in range(10, 20)]
    before = snapshot(adata)
    table = ss.tl.cell_cycle_contrast(adata, phase_key="phase", g2m_genes=g2m, s_genes=s, n_shuffles=5, random_state=3)
    del adata.uns["sigscan"]
    assert_unchanged(adata, before)

    matrices = {"attribution": adata.layers["attr_toy"].toarray(), "mean": _log_norm(adata.X)}
    phase = adata.obs["phase"].to_numpy()
    for method, values in matrices.items():
        perms = _relabellings(values.any(axis=0), 5, 3)
        for label, genes in (("G2M", g2m), ("S", s)):
            columns = adata.var_names.get_indexer(genes)
            inside = phase == label

            def fold(cols, values=values, inside=inside):
                score = values[:, cols].mean(axis=1)
                return np.log2(score[inside].mean() / score[~inside].mean())

            rows = table[(table["method"] == method) & (table["phase"] == label)]
            observed = rows.loc[rows["kind"] == "gene_set", "log2fc"].item()
            assert observed == pytest.approx(fold(columns))
            baseline = rows.loc[rows["kind"] == "shuffled", "log2fc"].item()
            assert baseline == pytest.approx(np.mean([fold(perm[columns]) for perm in perms]))
            assert observed > baseline + 0.4  # the planted programs are found


def test_cell_cycle_contrast_errors():
    adata = _cycling()
    adata.obs["no_g2m"] = np.where(adata.obs["phase"] == "G2M", "G1", adata.obs["phase"])
    with pytest.raises(ValueError, match="has no 'G2M' cells"):
        ss.tl.cell_cycle_contrast(adata, phase_key="no_g2m", methods=["mean"])
    with pytest.raises(KeyError, match="phase_key='cycle' is not an obs column"):
        ss.tl.cell_cycle_contrast(adata, phase_key="cycle", methods=["mean"])


def test_cell_cycle_contrast_pbmc_default_tirosh_sets(pbmc_part):
    adata = pbmc_part.copy()
    g2m, s = ss.datasets.gene_sets("tirosh_cell_cycle").values()
    scored = ad.AnnData(_log_norm(adata.X), obs=adata.obs[[]], var=adata.var[[]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sc.tl.score_genes_cell_cycle(scored, s_genes=s, g2m_genes=g2m)
        adata.obs["phase"] = scored.obs["phase"]
        table = ss.tl.cell_cycle_contrast(adata, phase_key="phase", methods=["mean"], n_shuffles=3)
    assert set(table["gene_set"]) == {"TIROSH2016_G2M_PHASE", "TIROSH2016_S_PHASE"}
    observed = table[table["kind"] == "gene_set"].set_index("phase")["log2fc"]
    assert observed["G2M"] > 0  # cells called G2M from these genes score higher on them


# --- factor_specificity --------------------------------------------------------------------------------------------------


def _planted(seed: int = 0) -> ad.AnnData:
    """Two batches with batch-specific gene effects; 'T reg'-like label cells carry a program on genes P0-P7."""
    rng = np.random.default_rng(seed)
    n_cells, n_genes = 240, 80
    batch = np.repeat(["study1", "study2"], n_cells // 2)
    label = np.where(rng.random(n_cells) < 0.25, "target", "other")
    rates = rng.gamma(2.0, 1.0, size=n_genes)[None, :].repeat(n_cells, axis=0)
    rates[batch == "study2", 40:60] *= 3  # a batch effect
    rates[label == "target", :8] *= 8  # the planted program
    counts = rng.poisson(rates).astype(np.float32)
    names = [f"P{j}" for j in range(8)] + [f"G{j}" for j in range(8, n_genes)]
    adata = ad.AnnData(
        sparse.csr_matrix(counts),
        obs=pd.DataFrame({"cell_type": label, "study": batch}, index=[f"c{i}" for i in range(n_cells)]),
        var=pd.DataFrame(index=names),
    )
    adata.layers["attr_toy"] = sparse.csr_matrix(counts * rng.uniform(0.5, 1.5, counts.shape).astype(np.float32))
    return adata


def test_factor_specificity_finds_planted_factor(snapshot, assert_unchanged):
    adata = _planted()
    before = snapshot(adata)
    table = ss.tl.factor_specificity(
        adata, "target", batch_key="study", grid={"n_factors": [3, 5], "random_state": [0, 1]}
    )
    del adata.uns["sigscan"]
    assert_unchanged(adata, before)
    assert len(table) == 8 and set(table["reads"]) == {"attribution", "expression"}
    assert table["passes"].all() and (table["min_t"] > 5).all()
    assert (table["n_comparisons"] == 4).all()  # study1/study2 label cells × study1/study2 others
    assert (table["n_tests"] == (3 + 5) * 2 * 4).all()
    # a label with no program has no specific factor
    shuffled = _planted()
    shuffled.obs["cell_type"] = np.random.default_rng(5).permutation(shuffled.obs["cell_type"].to_numpy())
    null = ss.tl.factor_specificity(shuffled, "target", batch_key="study", n_factors=5)
    assert not null["passes"].any()


def test_factor_specificity_ignores_cells_without_batch():
    adata = _planted()
    adata.obs["study"] = adata.obs["study"].astype(object)
    adata.obs.iloc[:10, adata.obs.columns.get_loc("study")] = None
    table = ss.tl.factor_specificity(adata, "target", batch_key="study", n_factors=3, reads=["expression"])
    assert table["n_comparisons"].item() == 4 and table["passes"].item()


def test_factor_specificity_best_factor_oracle():
    rng = np.random.default_rng(0)
    usage = rng.normal(size=(60, 3))
    labels = np.zeros(60, dtype=bool)
    labels[:20] = True
    usage[labels, 1] += 4
    batches = np.array(["a", "b"] * 30)
    from sigscan.tl._analyses import _factors

    tests = _factors.comparisons(labels, batches, 3)
    best = _factors.best_factor(usage, tests)
    assert best["factor"] == 1
    ts = [
        stats.ttest_ind(usage[i, 1], usage[o, 1], equal_var=False, alternative="greater").statistic for _, i, o in tests
    ]
    assert best["min_t"] == pytest.approx(min(ts))


def test_factor_specificity_kang_real_data():
    adata = ss.datasets.kang_ifnb()
    detected = np.asarray((adata.X > 0).sum(axis=0)).ravel()
    adata = adata[:, np.argsort(-detected)[:300]].copy()
    table = ss.tl.factor_specificity(adata, "B cells", batch_key="donor", n_factors=6, reads=["expression"])
    assert bool(table["passes"].item())
    summary = adata.uns["sigscan"]["factor_specificity_summary"]
    assert summary["pass_rate"].item() == 1.0


def test_factor_specificity_errors():
    adata = _planted()
    with pytest.raises(ValueError, match="label='Treg' is not a value"):
        ss.tl.factor_specificity(adata, "Treg", batch_key="study")
    with pytest.raises(KeyError, match="batch_key='donor' is not an obs column"):
        ss.tl.factor_specificity(adata, "target", batch_key="donor")
    with pytest.raises(ValueError, match="Unknown grid key"):
        ss.tl.factor_specificity(adata, "target", batch_key="study", grid={"seeds": [1]})
    with pytest.raises(KeyError, match="highly_variable_genes"):
        ss.tl.factor_specificity(adata, "target", batch_key="study", grid={"genes": ["highly_variable"]})


# --- other real datasets in ../shared/data (skipped when absent) ----------------------------------------------------------


def test_cell_cycle_contrast_fucci_imaging_labels():
    """Hsiao 2020 iPSCs: cells with high Geminin-GFP and low Cdt1-mCherry (S/G2/M by imaging) score higher on G2/M."""
    adata = _shared("hsiao2020_ipsc_fucci_101genes.h5ad")
    gfp, rfp = adata.obs["gfp.median.log10sum.adjust"], adata.obs["rfp.median.log10sum.adjust"]
    adata.obs["fucci"] = np.where((gfp > gfp.quantile(2 / 3)) & (rfp < rfp.quantile(1 / 3)), "G2M", "other")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = ss.tl.cell_cycle_contrast(adata, phase_key="fucci", methods=["mean"], s_label=None, n_shuffles=10)
    observed = table.loc[table["kind"] == "gene_set", "log2fc"].item()
    baseline = table.loc[table["kind"] == "shuffled", "log2fc"].item()
    assert observed > 0.05 and observed > baseline


def test_factor_specificity_cellbench_across_platforms():
    """CellBench: each genotype-called cell line has its own factor in CEL-seq2 and Drop-seq, within and across."""
    adata = _shared("tian2019_cellbench_3cl.h5ad")
    keep = (adata.obs["demuxlet_cls"] == "SNG").to_numpy()
    both = (adata.var["in_celseq2_csv"] & adata.var["in_dropseq_csv"]).to_numpy()
    adata = adata[keep, both]
    detected = np.asarray((adata.X > 0).sum(axis=0)).ravel()
    adata = adata[:, np.argsort(-detected)[:300]].copy()
    table = ss.tl.factor_specificity(
        adata, "H2228", batch_key="platform", groupby="cell_line_demuxlet", n_factors=4, reads=["expression"]
    )
    assert table["passes"].item() and table["n_comparisons"].item() == 4


def test_results_round_trip_through_h5ad(tmp_path):
    adata = _cycling()
    adata.obs["cell_type"] = np.where(np.arange(adata.n_obs) % 2 == 0, "type/a", "type b")  # '/' in a group name
    adata.obs["batch"] = np.where(np.arange(adata.n_obs) % 3 == 0, "b1", "b2")
    sets = {"type/a": ["G0", "G1", "G2"], "type b": ["G10", "G11"]}
    ss.tl.qc_correlation(adata, sets, groupby="cell_type", qc=["total_counts"], n_shuffles=2)
    ss.tl.rank_percentiles(adata, {"program": ["G0", "G1", "G2"]}, groupby="cell_type", n_shuffles=2)
    ss.tl.cell_cycle_contrast(adata, phase_key="phase", g2m_genes=["G0", "G1"], s_genes=["G10"], n_shuffles=2)
    ss.tl.factor_specificity(adata, "type/a", batch_key="batch", n_factors=2, reads=["expression"])
    adata.write_h5ad(tmp_path / "analysed.h5ad")
    back = ad.read_h5ad(tmp_path / "analysed.h5ad")
    for key in ("qc_correlation", "rank_percentiles", "rank_percentiles_genes", "cell_cycle", "factor_specificity"):
        pd.testing.assert_frame_equal(
            back.uns["sigscan"][key].reset_index(drop=True),
            adata.uns["sigscan"][key].reset_index(drop=True),
            check_dtype=False,
            check_index_type=False,
        )


def test_shuffle_count_must_be_a_non_negative_integer():
    with pytest.raises(ValueError, match="n_shuffles must be a non-negative integer"):
        ss.tl.cell_cycle_contrast(_cycling(), phase_key="phase", g2m_genes=["G0"], methods=["mean"], n_shuffles=-1)
    with pytest.raises(ValueError, match="n_shuffles must be a non-negative integer"):
        ss.tl.rank_percentiles(_cycling(), {"a": ["G0"]}, groupby="phase", n_shuffles=2.5)


def test_rank_percentiles_per_group_family():
    adata = _cycling()
    table = ss.tl.rank_percentiles(
        adata, {"own": {"G2M": ["G0", "G1"], "S": ["G10"]}}, groupby="phase", n_shuffles=0, layers=["X"]
    )
    assert table.set_index("group")["n_genes"].to_dict() == {"G2M": 2, "S": 1}
    assert set(table["kind"]) == {"gene_set"}
