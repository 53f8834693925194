"""Classifiers that turn one score into "is this cell of the label?" calls, for :func:`compare_scorers`."""

from __future__ import annotations

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

    scikit-learn's ``LogisticRegressionCV`` itself runs every fit (SPEC 2.1), so the F1 values do not depend on
    ``n_jobs``. (An exact Newton fit of the two-parameter problem is 20x faster but differs from L-BFGS's
    ``tol=1e-4`` stopping point enough to flip cells near the threshold: not the same F1 on every split.)
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

    features = scores.reshape(-1, 1)
    splitter = StratifiedShuffleSplit(n_splits=n_splits, test_size=test_size, random_state=random_state)
    for split, (train, test) in enumerate(splitter.split(features, labels)):
        reason = degenerate_reason(scores[train], labels[train])
        if reason:
            yield Result(split, 0.0, f"training split: {reason}")
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
