"""compare_scorers: SPEC 2.1 pipeline, determinism, degenerate scores, PBMC3k sanity against shuffled gene labels."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

import sigscan as ss
from sigscan.tl import _classify
from sigscan.tl._presets import preset_options

FAST = {"ans": {"ctrl_size": 20}}


@pytest.fixture
def toy() -> ad.AnnData:
    return ss.datasets.toy(n_cells=240, n_genes=120, random_state=3)


def test_table_shape_columns_and_storage(toy, tmp_path):
    table = ss.tl.compare_scorers(
        toy, toy.uns["programs"], "group", methods=["ucell", "ans", "mean"], n_splits=4, method_options=FAST
    )
    assert list(table.columns) == [
        "method",
        "label",
        "gene_set",
        "classifier",
        "split",
        "f1",
        "n_genes",
        "n_thresholds",
        "reason",
        "runtime_s",
    ]
    # 3 methods x 3 labels x (4 logreg splits + 1 otsu)
    assert len(table) == 3 * 3 * 5
    assert table.groupby("method")["runtime_s"].nunique().eq(1).all()
    assert (table["f1"] > 0.5).mean() > 0.8
    assert set(table.loc[table["classifier"] == "otsu", "n_thresholds"]) <= {1, 2, 3}
    stored = toy.uns["sigscan"]["compare_scorers"]
    pd.testing.assert_frame_equal(stored, table)
    toy.write_h5ad(tmp_path / "out.h5ad")
    back = ad.read_h5ad(tmp_path / "out.h5ad").uns["sigscan"]["compare_scorers"]
    np.testing.assert_allclose(back["f1"].to_numpy(), table["f1"].to_numpy())
    assert back["method"].tolist() == table["method"].tolist()


def test_deterministic_for_a_seed(toy):
    kwargs = dict(methods=["jasmine", "scanpy"], n_splits=3)
    first = ss.tl.compare_scorers(toy, toy.uns["programs"], "group", **kwargs)
    second = ss.tl.compare_scorers(toy, toy.uns["programs"], "group", **kwargs)
    pd.testing.assert_frame_equal(first.drop(columns="runtime_s"), second.drop(columns="runtime_s"))
    other = ss.tl.compare_scorers(toy, toy.uns["programs"], "group", random_state=1, **kwargs)
    assert not np.array_equal(first["f1"].to_numpy(), other["f1"].to_numpy())


def test_degenerate_scores_give_zero_with_reason(toy):
    adata = ad.concat([toy, ad.AnnData(sparse.csr_matrix((toy.n_obs, 2), dtype=np.float32), obs=toy.obs)], axis=1)
    adata.var_names = [*toy.var_names, "ZERO1", "ZERO2"]
    adata.obs = toy.obs.copy()
    sets = {"group0": ["ZERO1", "ZERO2"], "group1": toy.uns["programs"]["group1"]}
    table = ss.tl.compare_scorers(
        adata, sets, "group", methods=["mean", "ucell", "ans"], n_splits=2, method_options=FAST
    )
    dead = table[table["label"] == "group0"]
    assert (dead["f1"] == 0).all()
    assert dead["reason"].str.len().gt(0).all()
    assert dead.loc[dead["method"] == "mean", "reason"].str.contains("constant").all()
    alive = table[table["label"] == "group1"]
    assert (alive["reason"] == "").all() and alive["f1"].mean() > 0.5


def test_otsu_picks_the_separating_threshold():
    rng = np.random.default_rng(0)
    scores = np.concatenate([rng.normal(0, 0.1, 300), rng.normal(1, 0.1, 300), rng.normal(3, 0.1, 50)])
    labels = np.arange(scores.size) >= 600
    [result] = list(_classify.otsu(scores, labels))
    assert result.f1 == pytest.approx(1.0) and result.n_thresholds >= 2
    [flat] = list(_classify.otsu(np.ones(20), labels[:20]))
    assert flat.f1 == 0 and "constant" in flat.reason
    [few] = list(_classify.otsu(np.array([0.0, 1.0] * 10), np.arange(20) % 2 == 0))
    assert few.reason == "" or few.f1 == 0


def test_cohens_d_pooled():
    a, b = np.array([3.0, 4.0, 5.0]), np.array([1.0, 2.0, 3.0])
    assert _classify.cohens_d(a, b) == pytest.approx(2.0)


def test_gmt_mapping_preset_and_errors(toy):
    sets = {f"SET_{g}": genes for g, genes in toy.uns["programs"].items()}
    mapping = {g: f"SET_{g}" for g in toy.uns["programs"]}
    table = ss.tl.compare_scorers(toy, mapping, "group", gmt=sets, methods=["mean"], n_splits=2, preset="paper")
    assert set(table["gene_set"]) == set(sets)
    assert preset_options("paper") == {"ans": {"ctrl_size": 50}, "jasmine": {"mode": "likelihood"}}
    with pytest.raises(ValueError, match="gmt="):
        ss.tl.compare_scorers(toy, mapping, "group", methods=["mean"])
    with pytest.raises(ValueError, match="not values of"):
        ss.tl.compare_scorers(toy, {"nope": ["PROG0_0"]}, "group", methods=["mean"])
    with pytest.raises(ValueError, match="Unknown scoring method"):
        ss.tl.compare_scorers(toy, toy.uns["programs"], "group", methods=["magic"])
    with pytest.raises(KeyError, match="No attribution layer"):
        ss.tl.compare_scorers(toy, toy.uns["programs"], "group", methods=["attribution"])
    with pytest.raises(ValueError, match="preset"):
        ss.tl.compare_scorers(toy, toy.uns["programs"], "group", methods=["mean"], preset="nature")


def test_pbmc3k_markers_beat_shuffled_gene_labels(pbmc_counts, pbmc_gene_sets):
    """Every method's F1 for B cells and NK cells clearly beats the same pipeline on shuffled gene labels."""
    adata = pbmc_counts.copy()
    model = ss.models.SCimilarity.random(adata.var_names, hidden_dim=(32,), latent_dim=8)
    ss.pp.attributions(adata, model, method="ig", n_steps=16, progress=False)
    labels = {label: ss.datasets.pbmc3k_signatures()[label] for label in ("B cells", "NK cells")}
    shuffled = adata.copy()
    shuffled.var_names = adata.var_names[np.random.default_rng(0).permutation(adata.n_vars)]
    kwargs = dict(gmt=pbmc_gene_sets, n_splits=3, preset="paper")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        real = ss.tl.compare_scorers(adata, labels, "cell_type", **kwargs)
        control = ss.tl.compare_scorers(shuffled, labels, "cell_type", **kwargs)
    real_f1 = real.groupby(["method", "label", "classifier"])["f1"].mean()
    control_f1 = control.groupby(["method", "label", "classifier"])["f1"].mean()
    assert set(real["method"]) == {"attribution", "ans", "jasmine", "ucell", "scanpy", "mean"}
    margin = real_f1 - control_f1
    assert (margin > 0.25).all(), margin[margin <= 0.25]
    assert (real_f1.xs("B cells", level="label") > 0.8).all()


def test_normalize_applies_to_expression_scorers_only(toy):
    toy.layers["attr_toy_ig"] = toy.X * 3
    table = ss.tl.compare_scorers(
        toy, toy.uns["programs"], "group", methods=["attribution", "mean"], normalize=True, n_splits=2
    )
    assert set(table["method"]) == {"attribution", "mean"} and (table["reason"] == "").all()
    params = toy.uns["sigscan"]["compare_scorers_params"]
    assert params["methods"] == ["attribution", "mean"]


def test_parallel_fits_equal_sklearn_on_every_split():
    """The logreg F1 per split is LogisticRegressionCV's (SPEC 2.1), whether the fits run here or on 2 processes."""

    from sklearn.metrics import f1_score
    from sklearn.model_selection import StratifiedShuffleSplit

    rng = np.random.default_rng(3)
    labels = rng.random(300) < 0.2
    problems = [(rng.normal(size=300) + shift * labels, labels) for shift in (0.0, 0.5, 3.0)]  # hard to easy
    options = {"n_splits": 4, "test_size": 0.2, "random_state": 114}
    serial = dict(_classify.logreg_many(problems, n_jobs=1, keys=[0, 1, 2], **options))
    parallel = dict(_classify.logreg_many(problems, n_jobs=2, keys=[0, 1, 2], **options))
    for key, (scores, y) in enumerate(problems):
        splitter = StratifiedShuffleSplit(n_splits=4, test_size=0.2, random_state=114)
        expected = []
        for train, test in splitter.split(scores[:, None], y):
            model = _sklearn_lrcv(scores[train], y[train])
            expected.append(f1_score(y[test], model.predict(scores[test, None]), zero_division=0.0))
        assert [r.f1 for r in serial[key]] == expected
        assert [r.f1 for r in parallel[key]] == expected


def test_logging_follows_scanpy_verbosity_and_mutes_scanpy(toy):
    import io

    import scanpy as sc

    from sigscan._logging import logger

    handler = logger.handlers[0]
    ours, theirs = io.StringIO(), io.StringIO()
    verbosity, logfile = sc.settings.verbosity, sc.settings.logfile
    stream = handler.setStream(ours)
    try:
        sc.settings.logfile = theirs
        sc.settings.verbosity = 3
        sc.tl.score_genes(toy, list(toy.var_names[:10]), ctrl_size=20, score_name="probe")
        assert "computing score" in theirs.getvalue()  # scanpy logs at this verbosity …
        theirs.truncate(0)
        theirs.seek(0)
        ss.tl.compare_scorers(
            toy, toy.uns["programs"], "group", methods=["scanpy"], n_splits=2, progress=False, n_jobs=1
        )
        assert "computing score" not in theirs.getvalue()  # … but not inside compare_scorers
        assert "comparing 1 scorers" in ours.getvalue() and "finished" in ours.getvalue()
        assert sc.settings.verbosity == 3
        ours.truncate(0)
        ours.seek(0)
        sc.settings.verbosity = 1
        ss.tl.compare_scorers(toy, toy.uns["programs"], "group", methods=["mean"], n_splits=2, progress=False, n_jobs=1)
        assert "comparing" not in ours.getvalue()
    finally:
        handler.setStream(stream)
        sc.settings.verbosity, sc.settings.logfile = verbosity, logfile


def _sklearn_lrcv(x, y):
    from sklearn.linear_model import LogisticRegressionCV
    from threadpoolctl import threadpool_limits

    with warnings.catch_warnings(), threadpool_limits(1):  # as compare_scorers runs it; faster on busy cores
        warnings.simplefilter("ignore")
        return LogisticRegressionCV(class_weight="balanced", random_state=114).fit(x[:, None], y)


def test_exact_replica_equals_logistic_regression_cv_bitwise_on_pbmc3k(pbmc_lognorm, pbmc_gene_sets):
    """SPEC 2.1's fit on real scores (PBMC3k, mean log expression of each label's signature): the replica's
    coefficient and intercept are LogisticRegressionCV's to the last bit, and so is the F1 on every split."""
    from sklearn.metrics import f1_score
    from sklearn.model_selection import StratifiedShuffleSplit

    assert _classify._replica_agrees(), "the exact replica is off here: every fit runs through scikit-learn (slow)"
    signatures = ss.datasets.pbmc3k_signatures()
    x = pbmc_lognorm.X
    problems, keys = [], []
    for label, set_name in signatures.items():
        genes = [g for g in pbmc_gene_sets[set_name] if g in pbmc_lognorm.var_names]
        columns = pbmc_lognorm.var_names.get_indexer(genes)
        problems.append((np.asarray(x[:, columns].mean(axis=1), dtype=np.float64).ravel(),
                         (pbmc_lognorm.obs["cell_type"] == label).to_numpy()))  # fmt: skip
        keys.append(label)
    options = {"n_splits": 1, "test_size": 0.2, "random_state": 114}
    fitted = dict(_classify.logreg_many(problems, n_jobs=1, keys=keys, **options))
    for key, (scores, labels) in zip(keys, problems, strict=True):
        splitter = StratifiedShuffleSplit(n_splits=1, test_size=0.2, random_state=114)
        for split, (train, test) in enumerate(splitter.split(scores[:, None], labels)):
            model = _sklearn_lrcv(scores[train], labels[train])
            replica = _classify._balanced_lrcv(np.ascontiguousarray(scores[train, None]), labels[train])
            assert replica == (model.coef_[0, 0], model.intercept_[0]), key
            expected = f1_score(labels[test], model.predict(scores[test, None]), zero_division=0.0)
            assert fitted[key][split].f1 == expected, key


def test_replica_off_or_small_classes_go_through_sklearn(monkeypatch):
    """With the replica off (another scikit-learn) or fewer than 5 training cells in a class, scikit-learn fits;
    the F1 values are the same either way, including a separable problem whose path runs to max_iter."""
    rng = np.random.default_rng(5)
    labels = rng.random(200) < 0.3
    few = np.zeros(200, dtype=bool)
    few[:5] = True  # 4 cells with the label in each training split: fewer than the 5 folds
    problems = [(rng.normal(size=200) + 0.8 * labels, labels), (rng.normal(size=200) + 20 * labels, labels)]
    problems.append((rng.normal(size=200) + 2 * few, few))
    options = {"n_splits": 3, "test_size": 0.2, "random_state": 114, "n_jobs": 1, "keys": [0, 1, 2]}
    fast = dict(_classify.logreg_many(problems, **options))
    monkeypatch.setattr(_classify, "_replica_agrees", lambda: False)
    slow = dict(_classify.logreg_many(problems, **options))
    assert fast == slow
    assert all(r.reason == "" for results in fast.values() for r in results)
