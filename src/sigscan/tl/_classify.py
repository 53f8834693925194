"""Classifiers that turn one score into "is this cell of the label?" calls, for :func:`compare_scorers`."""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Result:
    """One F1 value: ``split`` is the shuffle-split index (0 for Otsu), ``reason`` why F1 was set to 0 (or "")."""

    split: int
    f1: float
    reason: str = ""
    n_thresholds: int = 0


def degenerate_reason(scores: np.ndarray, labels: np.ndarray) -> str:
    """Why a score cannot classify (empty string when it can)."""
    if not np.all(np.isfinite(scores)):
        return f"{int((~np.isfinite(scores)).sum())} non-finite scores"
    if np.unique(scores).size < 2:
        return "constant score"
    n_positive = int(labels.sum())
    if n_positive < 2 or labels.size - n_positive < 2:
        return f"too few cells in a class ({n_positive} with the label, {labels.size - n_positive} without)"
    return ""


def logreg(
    scores: np.ndarray, labels: np.ndarray, *, n_splits: int, test_size: float, random_state: int
) -> Iterator[Result]:
    """F1 of ``LogisticRegressionCV(class_weight="balanced")`` on each ``StratifiedShuffleSplit`` split."""
    from threadpoolctl import threadpool_limits

    reason = degenerate_reason(scores, labels)
    if reason:
        yield from (Result(split, 0.0, reason) for split in range(n_splits))
        return
    # one-feature fits are tiny: multi-threaded BLAS only adds overhead (measured 10x slower on 2 busy cores)
    with threadpool_limits(1):
        yield from _logreg_splits(scores, labels, n_splits=n_splits, test_size=test_size, random_state=random_state)


def _logreg_list(scores: np.ndarray, labels: np.ndarray, n_splits: int, test_size: float, random_state: int):
    return list(logreg(scores, labels, n_splits=n_splits, test_size=test_size, random_state=random_state))


def logreg_many(
    problems: list[tuple[np.ndarray, np.ndarray]],
    *,
    n_splits: int,
    test_size: float,
    random_state: int,
    n_jobs: int | None,
    keys: list[Any],
) -> Iterator[tuple[Any, list[Result]]]:
    """:func:`logreg` on every ``(scores, labels)`` problem, on ``n_jobs`` processes; yields ``(key, results)``.

    Each fit is ``LogisticRegressionCV(class_weight="balanced")`` (SPEC 2.1), computed by :func:`_balanced_lrcv`
    (the same arithmetic without the estimator's per-call overhead, checked bit for bit against scikit-learn once
    per process) or by scikit-learn itself, so the F1 values do not depend on ``n_jobs``. (An exact Newton fit of the
    two-parameter problem differs from L-BFGS's ``tol=1e-4`` stopping point enough to flip cells near the threshold:
    not the same F1 on every split.)
    """
    if n_jobs is None:
        n_jobs = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    n_jobs = max(1, min(int(n_jobs), len(problems)))
    if n_jobs == 1:
        for key, (scores, labels) in zip(keys, problems, strict=True):
            yield key, _logreg_list(scores, labels, n_splits, test_size, random_state)
        return
    from joblib import Parallel, delayed

    parallel = Parallel(n_jobs=n_jobs, backend="loky", return_as="generator")
    fitted = parallel(
        delayed(_logreg_list)(scores, labels, n_splits, test_size, random_state) for scores, labels in problems
    )
    yield from zip(keys, fitted, strict=True)


def _logreg_splits(
    scores: np.ndarray, labels: np.ndarray, *, n_splits: int, test_size: float, random_state: int
) -> Iterator[Result]:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.metrics import f1_score
    from sklearn.model_selection import StratifiedShuffleSplit

    features = np.ascontiguousarray(scores, dtype=np.float64).reshape(-1, 1)
    splitter = StratifiedShuffleSplit(n_splits=n_splits, test_size=test_size, random_state=random_state)
    replica = _replica_agrees()
    for split, (train, test) in enumerate(splitter.split(features, labels)):
        reason = degenerate_reason(scores[train], labels[train])
        if reason:
            yield Result(split, 0.0, f"training split: {reason}")
            continue
        n_positive = int(labels[train].sum())
        if replica and min(n_positive, train.size - n_positive) >= _CV_FOLDS:
            coef, intercept = _balanced_lrcv(features[train], labels[train])
            predicted = features[test, 0] * coef + intercept > 0  # LogisticRegression.predict for one feature
            yield Result(split, float(f1_score(labels[test], predicted, zero_division=0.0)))
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", ConvergenceWarning)
            try:
                model = LogisticRegressionCV(class_weight="balanced", random_state=random_state)
                model.fit(features[train], labels[train])
            except ValueError as error:
                yield Result(split, 0.0, f"logistic regression failed: {error}")
                continue
        yield Result(split, float(f1_score(labels[test], model.predict(features[test]), zero_division=0.0)))


#: LogisticRegressionCV's defaults that :func:`_balanced_lrcv` reproduces: 5 stratified folds, 10 Cs, L-BFGS-B
_CV_FOLDS = 5
_CS = np.logspace(-4, 4, 10)
_LBFGS = {"m": 10, "factr": 64 * np.finfo(float).eps / np.finfo(float).eps, "pgtol": 1e-4, "maxiter": 100, "maxls": 50}


def _lbfgs_path(x: np.ndarray, y: np.ndarray, weight: np.ndarray, cs: Any, w0: np.ndarray) -> list[np.ndarray]:
    """``sklearn.linear_model._logistic._logistic_regression_path`` (binary, L2, L-BFGS, one feature) for ``cs``.

    The same arithmetic in the same order: scikit-learn's own half-binomial loss kernel, its loss and gradient
    assembly (``LinearModelLoss.loss_gradient``), and SciPy's ``setulb`` driven as ``scipy.optimize.minimize``
    drives it, warm-started along ``cs``. ``x`` is the ``(n, 1)`` C-contiguous feature column.
    """
    from scipy.optimize import _lbfgsb
    from sklearn._loss.loss import HalfBinomialLoss

    kernel = HalfBinomialLoss().closs
    m, n = _LBFGS["m"], 2
    sw_sum = np.sum(weight)
    xt, column = x.T, x[:, 0]
    raw, loss_out, grad_out = np.empty_like(y), np.empty_like(y), np.empty_like(y)
    path = []
    for c in cs:
        l2 = 1.0 / (c * float(sw_sum))
        w = np.array(w0, dtype=np.float64)
        f = np.array(0.0, dtype=np.float64)
        g = np.zeros(n, dtype=np.float64)
        bound, nbd = np.zeros(n, dtype=np.float64), np.zeros(n, dtype=np.int32)
        wa = np.zeros(2 * m * n + 5 * n + 11 * m * m + 8 * m, dtype=np.float64)
        iwa, task, ln_task = np.zeros(3 * n, dtype=np.int32), np.zeros(2, np.int32), np.zeros(2, np.int32)
        lsave, isave, dsave = np.zeros(4, np.int32), np.zeros(44, np.int32), np.zeros(29, np.float64)
        iterations = 0
        while True:
            g = g.astype(np.float64)
            _lbfgsb.setulb(
                m, w, bound, bound, nbd, f, g, _LBFGS["factr"], _LBFGS["pgtol"], wa, iwa, task, lsave, isave, dsave,
                _LBFGS["maxls"], ln_task,
            )  # fmt: skip
            if task[0] == 3:  # evaluate loss and gradient at w
                weight0 = float(w[0])
                np.multiply(column, weight0, out=raw)  # X @ weights: one product per row
                raw += w[1]
                kernel.loss_gradient(
                    y_true=y, raw_prediction=raw, sample_weight=weight, loss_out=loss_out, gradient_out=grad_out,
                    n_threads=1,
                )  # fmt: skip
                f = float(loss_out.sum() / sw_sum)
                f += float(0.5 * l2 * (weight0 * weight0))
                grad_out /= sw_sum
                g = np.empty(n, dtype=np.float64)
                g[:1] = xt @ grad_out + l2 * w[:1]
                g[-1] = grad_out.sum()
            elif task[0] == 1:  # new iterate
                iterations += 1
                if iterations >= _LBFGS["maxiter"]:
                    task[0], task[1] = 5, 504
            else:
                break
        w0 = w
        path.append(w)
    return path


def _balanced_lrcv(x: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """``LogisticRegressionCV(class_weight="balanced").fit(x, labels)``'s ``(coef, intercept)`` for one feature.

    The estimator's own computation (folds, balanced weights, the C path per fold, accuracy per C, the best C by
    summed accuracy, the refit warm-started from the folds' mean) without its per-call validation and dispatch,
    which cost 85% of its time on a one-feature problem. Needs at least ``_CV_FOLDS`` cells in each class.
    """
    from sklearn.model_selection import StratifiedKFold

    index = labels.astype(np.intp)
    weight = labels.size / (2 * np.bincount(index, minlength=2).astype(np.float64))
    y, weight = labels.astype(np.float64), weight[index]
    paths, scores = [], np.empty((_CV_FOLDS, _CS.size))
    for fold, (train, test) in enumerate(StratifiedKFold(_CV_FOLDS).split(x, labels)):
        path = _lbfgs_path(x[train], y[train], weight[train], _CS, np.zeros(2))
        paths.append(path)
        held_out, truth = x[test, 0], labels[test]
        for i, w in enumerate(path):
            scores[fold, i] = np.mean((held_out * w[0] + w[1] > 0) == truth)
    best = int(np.argmax(scores.sum(axis=0)))
    start = np.mean(np.array([path[best] for path in paths]), axis=0)
    (w,) = _lbfgs_path(x, y, weight, [_CS[best]], start)
    return float(w[0]), float(w[1])


@functools.cache
def _replica_agrees() -> bool:
    """Whether :func:`_balanced_lrcv` gives scikit-learn's coefficients bit for bit here (checked once per process).

    It uses private scikit-learn and SciPy functions, so another version may differ; then every fit runs through
    ``LogisticRegressionCV`` itself.
    """
    from sklearn.linear_model import LogisticRegressionCV
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    labels = rng.random(240) < 0.25
    try:
        for shift in (0.3, 1.5, 6.0):  # hard, medium, easy
            x = np.ascontiguousarray((rng.normal(size=240) + shift * labels)[:, None])
            with warnings.catch_warnings(), threadpool_limits(1):
                warnings.simplefilter("ignore")
                model = LogisticRegressionCV(class_weight="balanced").fit(x, labels)
            if _balanced_lrcv(x, labels) != (float(model.coef_[0, 0]), float(model.intercept_[0])):
                return False
    except (ImportError, AttributeError, TypeError, ValueError):
        return False
    return True


def cohens_d(a: np.ndarray, b: np.ndarray) -> float:
    """Cohen's d of ``a`` over ``b`` with the pooled standard deviation (ddof=1); NaN when undefined."""
    if a.size < 2 or b.size < 2:
        return float("nan")
    pooled = ((a.size - 1) * a.var(ddof=1) + (b.size - 1) * b.var(ddof=1)) / (a.size + b.size - 2)
    difference = a.mean() - b.mean()
    if pooled <= 0:
        return float("inf") if difference > 0 else float("nan")
    return float(difference / np.sqrt(pooled))


def otsu_hits(scores: np.ndarray, *, max_thresholds: int = 3) -> tuple[np.ndarray | None, int, str]:
    """Cells in the top multi-Otsu group (SPEC 2.1).

    The number of thresholds (1..``max_thresholds``) is the one with the largest Cohen's d between the top and the
    second-highest groups. Returns ``(hits, n_thresholds, "")``, or ``(None, 0, reason)`` when no threshold works.
    """
    from skimage.filters import threshold_multiotsu

    best: tuple[float, np.ndarray, int] | None = None
    failures = []
    for n in range(1, max_thresholds + 1):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                thresholds = threshold_multiotsu(scores, classes=n + 1)
        except ValueError as error:
            failures.append(f"{n}: {error}")
            continue
        groups = np.digitize(scores, thresholds)
        d = cohens_d(scores[groups == n], scores[groups == n - 1])
        if np.isnan(d):
            failures.append(f"{n}: a group has fewer than 2 cells")
            continue
        if best is None or d > best[0]:
            best = (d, groups == n, n)
    if best is None:
        return None, 0, "no valid multi-Otsu split (" + "; ".join(failures) + ")"
    return best[1], best[2], ""


def otsu(scores: np.ndarray, labels: np.ndarray) -> Iterator[Result]:
    """F1 of the multi-Otsu top group (SPEC 2.1) against the labels, on all cells."""
    from sklearn.metrics import f1_score

    reason = degenerate_reason(scores, labels)
    if reason:
        yield Result(0, 0.0, reason)
        return
    hits, n, reason = otsu_hits(scores)
    if hits is None:
        yield Result(0, 0.0, reason)
        return
    yield Result(0, float(f1_score(labels, hits, zero_division=0.0)), "", n)


CLASSIFIERS = ("logreg", "otsu")
