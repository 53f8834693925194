"""``ss.tl.compare_scorers``: how well each scorer's score identifies each labelled cell type (SPEC 2.1)."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .._docs import doc_adata, doc_params
from .._gene_sets import as_gene_list, as_gene_sets
from .._logging import logger, muted_scanpy, timed
from . import _classify
from ._presets import preset_options
from ._score_genes import doc_normalize, match_gene_sets, scoring_data
from ._scorers import get_scorer
from ._scorers._data import DEFAULT_BATCH_SIZE

if TYPE_CHECKING:
    from anndata import AnnData

DEFAULT_METHODS = ("attribution", "ans", "jasmine", "ucell", "scanpy", "mean")

COLUMNS = [
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


def resolve_label_sets(
    gene_sets: Mapping[str, Any], gmt: str | os.PathLike | Mapping[str, Sequence[str]] | None
) -> tuple[dict[str, str], dict[str, list[str]]]:
    """``label → set name`` and ``set name → genes`` from label → genes, or label → set name plus ``gmt``."""
    if not isinstance(gene_sets, Mapping) or not gene_sets:
        raise ValueError("gene_sets must be a non-empty mapping of groupby label → gene set (or → set name with gmt=).")
    collection = as_gene_sets(gmt) if gmt is not None else None
    label_to_set: dict[str, str] = {}
    sets: dict[str, list[str]] = {}
    for label, value in gene_sets.items():
        if isinstance(value, str) and not os.path.isfile(value) and ":" not in value:
            if collection is None:
                raise ValueError(
                    f"Label {label!r} maps to the set name {value!r}: pass gmt= (a GMT path or a mapping of sets) "
                    "to look it up, or map the label to a list of genes."
                )
            if value not in collection:
                raise KeyError(f"No set {value!r} in gmt; available: {', '.join(list(collection)[:10])}….")
            label_to_set[str(label)] = value
            sets[value] = collection[value]
        else:
            label_to_set[str(label)] = str(label)
            sets[str(label)] = as_gene_list(value)
    return label_to_set, sets


def _score_all(
    scorer: Any, data: Any, columns: Mapping[str, np.ndarray], options: Mapping[str, Any]
) -> tuple[np.ndarray, dict[str, str]]:
    """Scores of all sets; a set the method cannot score (e.g. ANS without valid controls) gets NaN and a reason."""
    try:
        return scorer(data, list(columns.values()), **options), {}
    except ValueError as error:
        if str(error).startswith("Unknown option"):
            raise
        logger.warning("%s could not score every set at once (%s); scoring them one by one", scorer.name, error)
    scores = np.full((data.shape[0], len(columns)), np.nan)
    failures: dict[str, str] = {}
    for k, (name, cols) in enumerate(columns.items()):
        try:
            scores[:, k] = scorer(data, [cols], **options)[:, 0]
        except ValueError as error:
            failures[name] = f"scoring failed: {error}"
    return scores, failures


@doc_params(adata=doc_adata, normalize=doc_normalize)
def compare_scorers(
    adata: AnnData,
    gene_sets: Mapping[str, Any],
    groupby: str,
    *,
    methods: Sequence[str] = DEFAULT_METHODS,
    classifiers: Sequence[Literal["logreg", "otsu"]] = _classify.CLASSIFIERS,
    n_splits: int = 25,
    test_size: float = 0.2,
    random_state: int = 114,
    preset: Literal["paper"] | None = None,
    gmt: str | os.PathLike | Mapping[str, Sequence[str]] | None = None,
    expression_layer: str | None = None,
    normalize: bool | Literal["auto"] = "auto",
    target_sum: float = 1e4,
    attribution_layer: str | None = None,
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    n_jobs: int | None = None,
    progress: bool = True,
    key_added: str = "compare_scorers",
) -> pd.DataFrame:
    """Compare gene-set scorers by how well one score identifies a cell type (the SIGnature paper's benchmark).

    For every label of ``groupby`` that has a gene set, the target is "the cell has that label" and the single
    feature is that set's score, from each method:

    - ``logreg``: ``StratifiedShuffleSplit(n_splits, test_size, random_state)``; on each split
      ``LogisticRegressionCV(class_weight="balanced", random_state=random_state)`` is fitted on the training part and
      F1 measured on the test part.
    - ``otsu``: multi-Otsu thresholds (1, 2 or 3, the number maximising Cohen's d between the top and second-highest
      groups); cells in the top group are called; F1 on all cells (``split`` 0).

    Degenerate scores (constant, non-finite, too few distinct values) give F1 = 0 with the reason recorded, never an
    error. Cells whose ``groupby`` value is missing are left out of the evaluation.

    Parameters
    ----------
    {adata}
    gene_sets
        ``label → genes`` (a list), or ``label → set name`` with ``gmt=``. Labels must be categories of ``groupby``.
        Two labels may share one set.
    groupby
        ``obs`` column with the labels (e.g. cell type).
    methods
        Scorers to compare (see :func:`sigscan.tl.score_genes`).
    classifiers
        ``"logreg"`` and/or ``"otsu"``.
    n_splits, test_size, random_state
        Shuffle splits for ``logreg`` (``random_state`` also seeds the logistic regression).
    preset
        ``"paper"``: the paper's settings (ANS ``ctrl_size=50``, JASMINE ``mode="likelihood"``); ``method_options``
        override them.
    gmt
        A GMT path or a mapping of sets, when ``gene_sets`` maps labels to set names.
    expression_layer
        Layer the expression scorers read (``None`` = ``X``): log-normalised expression, or counts (see
        ``normalize``).
    {normalize}
    target_sum
        Total per cell when normalising on the fly.
    attribution_layer
        Attribution layer for ``"attribution"`` (``None``: the single one present).
    method_options
        Per-method options, e.g. ``{{"ucell": {{"max_rank": 1000}}}}``.
    batch_size
        Cells per chunk when scoring.
    n_jobs
        Processes for the logistic regressions (``None``: one per CPU; ``1``: in this process). Each method scores
        every set once; the ``n_splits`` fits per method × label are the costly part. The F1 values do not depend on
        ``n_jobs``.
    progress
        Show a progress bar over the scoring and classification work.
    key_added
        Key in ``adata.uns["sigscan"]`` for the table (its parameters go to ``f"{{key_added}}_params"``).

    Returns
    -------
    Tidy table, one row per method × label × classifier × split: ``method``, ``label``, ``gene_set``,
    ``classifier``, ``split``, ``f1``, ``n_genes`` (set genes found in the data), ``n_thresholds`` (Otsu),
    ``reason`` (why F1 was set to 0, else ""), ``runtime_s`` (the method's scoring time for all sets). Also stored in
    ``adata.uns["sigscan"][key_added]`` (h5ad-serialisable).

    Examples
    --------
    >>> import sigscan as ss
    >>> adata = ss.datasets.toy(n_cells=200, n_genes=100)
    >>> df = ss.tl.compare_scorers(adata, adata.uns["programs"], "group", methods=["ucell", "mean"], n_splits=3)
    >>> sorted(df["classifier"].unique())
    ['logreg', 'otsu']
    """
    if groupby not in adata.obs:
        raise KeyError(f"groupby={groupby!r} is not an obs column; available: {', '.join(map(str, adata.obs))}.")
    unknown = sorted(set(classifiers) - set(_classify.CLASSIFIERS))
    if unknown or not classifiers:
        raise ValueError(f"Unknown classifier(s) {unknown}; use one or both of {list(_classify.CLASSIFIERS)}.")
    if not methods:
        raise ValueError("methods is empty; pass at least one scoring method.")
    if not 0 < test_size < 1:
        raise ValueError(f"test_size must be between 0 and 1, not {test_size}.")
    scorers = [get_scorer(method) for method in methods]
    options = preset_options(preset)
    for method, extra in (method_options or {}).items():
        get_scorer(method)
        options.setdefault(method, {}).update(extra)

    label_to_set, sets = resolve_label_sets(gene_sets, gmt)
    groups = adata.obs[groupby]
    present = set(map(str, groups.dropna().unique()))
    missing = [label for label in label_to_set if label not in present]
    if missing:
        raise ValueError(
            f"Labels {missing} are not values of obs[{groupby!r}] (values: {', '.join(sorted(present)[:12])}); "
            "map gene sets to existing labels."
        )
    columns = match_gene_sets(sets, adata.var_names)
    evaluated = groups.notna().to_numpy()
    group_values = groups.astype(str).to_numpy()[evaluated]

    if "logreg" in classifiers and n_splits < 1:
        raise ValueError(
            f"n_splits={n_splits}: the logreg classifier needs at least 1 shuffle split; pass n_splits= of 1 or more (the "
            "paper uses 25), or classifiers=['otsu'] to skip it."
        )

    set_index = {name: k for k, name in enumerate(columns)}
    n_logreg = n_splits if "logreg" in classifiers else 0
    n_units = len(scorers) * (1 + len(label_to_set) * (n_logreg + ("otsu" in classifiers)))
    results: dict[tuple[int, str], list[tuple[str, _classify.Result]]] = {}
    with (
        timed(f"comparing {len(methods)} scorers on {len(label_to_set)} labels of {groupby!r}"),
        tqdm(total=n_units, disable=not progress, desc="comparing scorers", unit="fit") as bar,
    ):
        # 1. every method scores every set once (scanpy's own per-call messages muted)
        all_scores, all_failures, runtimes = [], [], []
        with muted_scanpy():
            for scorer in scorers:
                bar.set_postfix_str(f"scoring: {scorer.name}")
                layer = attribution_layer if scorer.reads == "attribution" else expression_layer
                data = scoring_data(
                    adata,
                    scorer,
                    layer=layer,
                    normalize=normalize if scorer.reads == "expression" else False,
                    target_sum=target_sum,
                    batch_size=batch_size,
                    argument="attribution_layer" if scorer.reads == "attribution" else "expression_layer",
                )
                start = time.perf_counter()
                scores, failures = _score_all(scorer, data, columns, options.get(scorer.name, {}))
                runtimes.append(time.perf_counter() - start)
                all_scores.append(scores)
                all_failures.append(failures)
                bar.update(1)
        for scorer, runtime in zip(scorers, runtimes, strict=True):
            logger.info("    %s: %.3f s for %d set(s)", scorer.name, runtime, len(columns))

        # 2. classify: Otsu here, the logistic regressions (scorer × label × split) on n_jobs processes
        bar.set_postfix_str("classifying")
        tasks = []
        for m in range(len(scorers)):
            for label, set_name in label_to_set.items():
                score = all_scores[m][evaluated, set_index[set_name]]
                if set_name in all_failures[m]:
                    score = np.full(score.shape, np.nan)
                labels = group_values == label
                results[m, label] = []
                if "otsu" in classifiers:
                    results[m, label] += [("otsu", r) for r in _classify.otsu(score, labels)]
                    bar.update(1)
                if n_logreg:
                    tasks.append(((m, label), score, labels))
        for key, fitted in _classify.logreg_many(
            [(score, labels) for _, score, labels in tasks],
            n_splits=n_splits,
            test_size=test_size,
            random_state=random_state,
            n_jobs=n_jobs,
            keys=[key for key, _, _ in tasks],
        ):
            results[key] = [("logreg", r) for r in fitted] + results[key]
            bar.update(n_splits)

    rows: list[dict[str, Any]] = []
    for m, scorer in enumerate(scorers):
        for label, set_name in label_to_set.items():
            failure = all_failures[m].get(set_name)
            for classifier, result in results[m, label]:
                if failure is not None:
                    result = _classify.Result(result.split, 0.0, failure)
                rows.append(
                    {
                        "method": scorer.name,
                        "label": label,
                        "gene_set": set_name,
                        "classifier": classifier,
                        "split": result.split,
                        "f1": result.f1,
                        "n_genes": int(columns[set_name].size),
                        "n_thresholds": result.n_thresholds,
                        "reason": result.reason,
                        "runtime_s": runtimes[m],
                    }
                )
    table = pd.DataFrame(rows, columns=COLUMNS)
    table = table.astype(
        {"method": str, "label": str, "gene_set": str, "classifier": str, "reason": str, "split": np.int64}
    )
    store = adata.uns.setdefault("sigscan", {})
    store[key_added] = table
    store[f"{key_added}_params"] = {
        "groupby": groupby,
        "methods": list(methods),
        "classifiers": list(classifiers),
        "n_splits": int(n_splits),
        "test_size": float(test_size),
        "random_state": int(random_state),
        "preset": preset or "none",
        "expression_layer": expression_layer or "X",
        "label_to_set": dict(label_to_set),
    }
    return table
