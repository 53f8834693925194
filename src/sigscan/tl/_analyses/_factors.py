"""``ss.tl.factor_specificity``: does an NMF factor mark one label in every within- and cross-batch comparison."""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import sparse, stats

from ..._attribution_layer import attribution_layer
from ..._docs import doc_adata, doc_params
from ..._gene_sets import read_gene_set
from ..._logging import timed
from ..._validation import looks_like_counts
from .._scorers._data import ScoringData
from . import _common

if TYPE_CHECKING:
    from anndata import AnnData

READS = ("attribution", "expression")
COLUMNS = [
    "reads",
    "layer",
    "run",
    "n_factors",
    "random_state",
    "genes",
    "n_genes",
    "factor",
    "min_t",
    "p_value",
    "worst_comparison",
    "n_comparisons",
    "n_tests",
    "threshold",
    "passes",
]


def comparisons(labels: np.ndarray, batches: np.ndarray, min_cells: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Every (label batch, other batch) pair, within and across batches: ``(name, label cells, other cells)``."""
    out = []
    for a, b in itertools.product(sorted({x for x in batches if x is not None}), repeat=2):
        inside = labels & (batches == a)
        outside = ~labels & (batches == b)
        if inside.sum() >= min_cells and outside.sum() >= min_cells:
            out.append((f"label in {a} vs others in {b}", inside, outside))
    return out


def best_factor(usage: np.ndarray, tests: Sequence[tuple[str, np.ndarray, np.ndarray]]) -> dict[str, Any]:
    """The factor with the highest minimum one-sided Welch t over the comparisons, its worst t and p."""
    t = np.empty((len(tests), usage.shape[1]))
    p = np.empty_like(t)
    for c, (_, inside, outside) in enumerate(tests):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            result = stats.ttest_ind(usage[inside], usage[outside], equal_var=False, alternative="greater", axis=0)
        t[c], p[c] = result.statistic, result.pvalue
    t = np.where(np.isfinite(t), t, -np.inf)
    p = np.where(np.isfinite(p), p, 1.0)
    min_t = t.min(axis=0)
    factor = int(np.argmax(min_t))
    worst = int(np.argmin(t[:, factor]))
    return {
        "factor": factor,
        "min_t": float(min_t[factor]),
        "p_value": float(p[:, factor].max()),
        "worst_comparison": tests[worst][0],
    }


def _matrix(adata: AnnData, reads: str, layer: str | None, expression_layer: str | None) -> tuple[Any, str]:
    """Cells × genes non-negative CSR input for NMF: attributions (negatives clipped at 0) or log-normalised data."""
    if reads == "attribution":
        name = attribution_layer(adata, layer)
        data = ScoringData(adata, name)
    else:
        data = ScoringData(adata, expression_layer)
        data.normalize = data.matrix is not None and looks_like_counts(data.matrix)
        name = expression_layer or "X"
    matrix = data.to_memory()  # a new matrix: the stored one is never touched
    if matrix.nnz and matrix.data.min() < 0:
        matrix.data = np.clip(matrix.data, 0, None)
        matrix.eliminate_zeros()
    return matrix, name


def _gene_subsets(adata: AnnData, genes: Mapping[str, Any] | Sequence[Any] | None) -> dict[str, np.ndarray]:
    """``name → column positions``: ``"all"``, ``"highly_variable"`` (``var["highly_variable"]``) or gene lists."""
    if genes is None:
        genes = {"all": "all"}
    elif not isinstance(genes, Mapping):
        genes = {str(g) if isinstance(g, str) else f"subset{k}": g for k, g in enumerate(genes)}
    out = {}
    for name, spec in genes.items():
        if isinstance(spec, str) and spec == "all":
            out[name] = np.arange(adata.n_vars)
        elif isinstance(spec, str) and spec == "highly_variable":
            if "highly_variable" not in adata.var:
                raise KeyError(
                    "grid genes 'highly_variable' needs var['highly_variable']: run "
                    "sc.pp.highly_variable_genes(adata) first, or pass a list of genes."
                )
            out[name] = np.flatnonzero(adata.var["highly_variable"].to_numpy(dtype=bool))
        else:
            from ..._gene_sets import match_genes

            out[name] = match_genes(read_gene_set(spec, name=name), adata.var_names, set_name=f"gene subset {name!r}")
    return out


@doc_params(adata=doc_adata)
def factor_specificity(
    adata: AnnData,
    label: str,
    *,
    batch_key: str,
    groupby: str = "cell_type",
    n_factors: int = 10,
    layer: str | None = None,
    random_state: int = 0,
    grid: Mapping[str, Sequence[Any]] | None = None,
    reads: Sequence[str] = READS,
    alpha: float = 0.05,
    min_cells: int = 3,
    max_iter: int = 400,
    expression_layer: str | None = None,
    key_added: str = "factor_specificity",
) -> pd.DataFrame:
    """Test whether one NMF factor marks ``label`` in every within- and cross-batch comparison (the paper's test).

    :class:`sklearn.decomposition.NMF` (``init="nndsvda"``) factorises the attributions and, side by side, the
    log-normalised expression (sparse input). For each factor, one-sided Welch t-tests
    (``ttest_ind(equal_var=False, alternative="greater")``) compare its usage in ``label`` cells of batch *a* with the
    other cells of batch *b*, for every pair (*a*, *b*) within and across batches. The factor with the highest minimum
    t is the label's factor; it passes when its worst comparison has ``p < alpha / n_tests``, Bonferroni over all the
    t-tests of the grid (runs × factors × comparisons, per representation). Over a ``grid`` the pass rate is the
    fraction of runs that pass.

    Parameters
    ----------
    {adata}
    label
        The value of ``obs[groupby]`` to test (e.g. ``"CD14+ Monocytes"``).
    batch_key
        ``obs`` column with the study / donor / batch of each cell.
    groupby
        ``obs`` column holding ``label``.
    n_factors
        Number of NMF factors (without ``grid``).
    layer
        Attribution layer (``None``: the single one present). Negative attributions are clipped at 0 for NMF.
    random_state
        NMF seed (without ``grid``).
    grid
        Runs to repeat, as a mapping with any of ``"n_factors"`` (list of ints), ``"random_state"`` (list of
        seeds) and ``"genes"`` (a list or mapping of gene subsets: ``"all"``, ``"highly_variable"`` (uses
        ``var["highly_variable"]``) or lists of genes); every combination is one run. E.g. the paper's
        ``{{"n_factors": range(5, 26, 5), "random_state": range(20), "genes": ["all", "highly_variable"]}}``.
    reads
        ``"attribution"`` and/or ``"expression"``.
    alpha
        Family-wise error rate of the Bonferroni bound.
    min_cells
        Fewest label (other) cells a batch needs to enter a comparison.
    max_iter
        NMF iterations.
    expression_layer
        Layer with expression (``None``: ``X``; counts are log-normalised).
    key_added
        Key in ``adata.uns["sigscan"]`` for the per-run table; pass rates go to ``f"{{key_added}}_summary"``.

    Returns
    -------
    Tidy table, one row per representation × run: ``reads``, ``layer``, ``run``, ``n_factors``, ``random_state``,
    ``genes`` (subset name), ``n_genes``, ``factor`` (index of the label's factor), ``min_t``, ``p_value`` (of the
    worst comparison), ``worst_comparison``, ``n_comparisons``, ``n_tests``, ``threshold`` (``alpha / n_tests``),
    ``passes``. ``X`` and the layers are not modified.

    Examples
    --------
    >>> import sigscan as ss
    >>> adata = ss.datasets.kang_ifnb()
    >>> table = ss.tl.factor_specificity(adata, "B cells", batch_key="donor", n_factors=5, reads=["expression"])
    >>> bool(table["passes"].iloc[0])
    True
    """
    groups = _common.check_groupby(adata, groupby)
    batches = _common.check_groupby(adata, batch_key, argument="batch_key")
    label = str(label)
    if label not in set(groups.dropna()):
        raise ValueError(
            f"label={label!r} is not a value of obs[{groupby!r}] (values: {', '.join(sorted(groups.dropna().unique())[:12])}); "
            "pass an existing label, or groupby= the column that holds it."
        )
    reads = [reads] if isinstance(reads, str) else list(reads)
    unknown = [r for r in reads if r not in READS]
    if unknown or not reads:
        raise ValueError(f"reads must name one or both of {list(READS)}, not {reads}.")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, not {alpha}.")
    is_label = (groups == label).to_numpy()
    tests = comparisons(is_label, batches.to_numpy(dtype=object), min_cells)
    if not tests:
        raise ValueError(
            f"No comparison has >= {min_cells} {label!r} cells and >= {min_cells} other cells in obs[{batch_key!r}]; "
            "pass a batch_key whose batches hold the label, or lower min_cells."
        )
    grid = dict(grid or {})
    extra = sorted(set(grid) - {"n_factors", "random_state", "genes"})
    if extra:
        raise ValueError(f"Unknown grid key(s) {extra}; use 'n_factors', 'random_state' and/or 'genes'.")
    factor_values = [int(k) for k in grid.get("n_factors", [n_factors])]
    if any(k < 1 for k in factor_values):
        raise ValueError(f"n_factors must be positive, not {factor_values}.")
    seeds = [int(s) for s in grid.get("random_state", [random_state])]
    subsets = _gene_subsets(adata, grid.get("genes"))
    runs = list(itertools.product(factor_values, seeds, subsets))
    n_tests = sum(k for k, _, _ in runs) * len(tests)
    threshold = alpha / n_tests

    from sklearn.decomposition import NMF

    rows: list[dict[str, Any]] = []
    with timed(f"NMF factor specificity of {label!r}: {len(runs)} run(s) × {len(reads)} representation(s)"):
        for kind in reads:
            matrix, name = _matrix(adata, kind, layer, expression_layer)
            for run, (k, seed, subset) in enumerate(runs):
                data = matrix[:, subsets[subset]] if subsets[subset].size < matrix.shape[1] else matrix
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    usage = NMF(n_components=k, init="nndsvda", random_state=seed, max_iter=max_iter).fit_transform(
                        sparse.csr_matrix(data, dtype=np.float64)
                    )
                best = best_factor(usage, tests)
                rows.append(
                    {
                        "reads": kind,
                        "layer": name,
                        "run": run,
                        "n_factors": k,
                        "random_state": seed,
                        "genes": subset,
                        "n_genes": int(subsets[subset].size),
                        **best,
                        "n_comparisons": len(tests),
                        "n_tests": n_tests,
                        "threshold": threshold,
                        "passes": bool(best["p_value"] < threshold),
                    }
                )
    table = pd.DataFrame(rows, columns=COLUMNS)
    summary = (
        table.groupby(["reads", "layer"], sort=False)["passes"]
        .agg(n_runs="size", n_pass="sum", pass_rate="mean")
        .reset_index()
    )
    adata.uns.setdefault("sigscan", {})[f"{key_added}_summary"] = summary
    params = {
        "label": label,
        "groupby": groupby,
        "batch_key": batch_key,
        "reads": reads,
        "n_runs": len(runs),
        "n_tests": int(n_tests),
        "alpha": float(alpha),
        "comparisons": [name for name, _, _ in tests],
    }
    return _common.store(adata, key_added, table, params)
