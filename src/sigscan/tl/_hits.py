"""Hits per sample (the MS1 workflow, SPEC 3): cells above a score cut-off, then the hit fraction of each sample."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from anndata import AnnData


def _cutoff_quantile(percentile: float | None, quantile: float | None, value: float | None) -> tuple[str, float]:
    given = {k: v for k, v in {"percentile": percentile, "quantile": quantile, "value": value}.items() if v is not None}
    if len(given) > 1:
        raise ValueError(f"Pass only one of percentile=, quantile= or value= (got {', '.join(given)}).")
    if not given:
        return "percentile", 90.0
    kind, number = next(iter(given.items()))
    number = float(number)
    if kind == "percentile" and not 0 <= number <= 100:
        raise ValueError(f"percentile must be between 0 and 100, not {number}.")
    if kind == "quantile" and not 0 <= number <= 1:
        raise ValueError(f"quantile must be between 0 and 1, not {number}.")
    return kind, number


def hits(
    data: AnnData | pd.DataFrame,
    key: str,
    *,
    percentile: float | None = None,
    quantile: float | None = None,
    value: float | None = None,
    groupby: str | None = None,
    key_added: str | None = None,
    copy: bool = False,
) -> AnnData | pd.DataFrame | None:
    """Mark cells whose score is above a cut-off, optionally within each group.

    Parameters
    ----------
    data
        An AnnData (its ``obs`` is used and written to) or a DataFrame of cells (e.g. the result of an atlas query:
        metadata columns plus a score column).
    key
        Column with the score.
    percentile, quantile, value
        The cut-off, one of: a percentile of the scores (default ``percentile=90``: the top 10% are hits), the same
        as a quantile in [0, 1], or a fixed score value. Percentiles are computed within each group when
        ``groupby`` is given. Hits are cells with a score strictly above the cut-off; missing scores are never hits.
    groupby
        Column whose groups get their own cut-off (e.g. cell type).
    key_added
        Column for the boolean hit calls (default ``f"{{key}}_hit"``).
    copy
        For AnnData: return a copy instead of writing into ``data``.

    Returns
    -------
    For a DataFrame: a new DataFrame with the ``key_added`` column (the input is not modified). For AnnData:
    ``None`` (or the copy), with ``obs[key_added]`` and the cut-offs in ``uns["sigscan"]["hits"][key_added]``.

    Examples
    --------
    >>> import pandas as pd
    >>> import sigscan as ss
    >>> cells = pd.DataFrame({"score": [0.1, 0.5, 0.9, 0.2], "cell_type": ["a", "a", "b", "b"]})
    >>> ss.tl.hits(cells, "score", percentile=50, groupby="cell_type")["score_hit"].tolist()
    [False, True, True, False]
    """
    from anndata import AnnData

    is_anndata = isinstance(data, AnnData)
    if not is_anndata and not isinstance(data, pd.DataFrame):
        raise TypeError("data must be an AnnData or a pandas DataFrame of cells.")
    obs = data.obs if is_anndata else data
    if key not in obs:
        raise KeyError(f"Score column {key!r} not found; available: {', '.join(map(str, obs.columns))}.")
    if groupby is not None and groupby not in obs:
        raise KeyError(f"groupby={groupby!r} not found; available: {', '.join(map(str, obs.columns))}.")
    kind, number = _cutoff_quantile(percentile, quantile, value)
    scores = pd.to_numeric(obs[key], errors="coerce").to_numpy(dtype=np.float64)
    if np.isnan(scores).all():
        raise ValueError(f"Column {key!r} holds no numeric scores.")
    q = number / 100.0 if kind == "percentile" else number
    cutoffs: dict[str, float] = {}
    is_hit = np.zeros(scores.size, dtype=bool)
    if groupby is None:
        groups = [("all", np.ones(scores.size, dtype=bool))]
    else:
        labels = obs[groupby]
        groups = [(str(g), (labels == g).to_numpy()) for g in labels.dropna().unique()]
    for name, mask in groups:
        values = scores[mask]
        if kind == "value":
            cutoff = number
        elif np.isfinite(values).any():
            cutoff = float(np.nanquantile(values, q))
        else:
            continue
        cutoffs[name] = cutoff
        is_hit[mask] = values > cutoff
    key_added = key_added or f"{key}_hit"
    if not is_anndata:
        out = data.copy()
        out[key_added] = is_hit
        return out
    adata = data.copy() if copy else data
    adata.obs[key_added] = is_hit
    record: dict[str, Any] = {"key": key, "cutoff_kind": kind, "cutoff": number, "cutoffs": cutoffs}
    if groupby is not None:
        record["groupby"] = groupby
    adata.uns.setdefault("sigscan", {}).setdefault("hits", {})[key_added] = record
    return adata if copy else None


def sample_hits(
    obs: AnnData | pd.DataFrame,
    hit_key: str,
    *,
    sample_key: str,
    groupby: str | None = None,
    min_cells: int = 25,
    min_samples: int = 3,
    sample_columns: Sequence[str] = (),
) -> pd.DataFrame:
    """Fraction of hit cells per sample (and group).

    Parameters
    ----------
    obs
        Cells: a DataFrame (e.g. ``adata.obs`` or an atlas query result) or an AnnData (its ``obs``).
    hit_key
        Boolean column of hit calls (see :func:`hits`).
    sample_key
        Column naming each cell's sample (donor, patient, …).
    groupby
        Column with the groups compared (e.g. cell type); ``None``: all cells form one group.
    min_cells
        Samples with fewer cells in a group are left out of that group.
    min_samples
        Groups with fewer samples left are dropped.
    sample_columns
        Sample-level columns carried over (e.g. ``"condition"``); each must be constant within a sample.

    Returns
    -------
    One row per kept group × sample: ``groupby`` (if given), ``sample_key``, ``sample_columns``, ``n_cells``,
    ``n_hits``, ``hit_fraction``. ``attrs["sigscan"]`` records the keys for :func:`sigscan.pl.sample_hits`.

    Examples
    --------
    >>> import sigscan as ss
    >>> adata = ss.datasets.toy(n_cells=300)
    >>> ss.tl.score_genes(adata, adata.uns["programs"]["group0"], method="mean", key_added="program0")
    >>> ss.tl.hits(adata, "program0", percentile=80)
    >>> table = ss.tl.sample_hits(adata, "program0_hit", sample_key="sample", groupby="group", min_cells=5)
    >>> list(table.columns)
    ['group', 'sample', 'n_cells', 'n_hits', 'hit_fraction']
    """
    from anndata import AnnData

    frame = obs.obs if isinstance(obs, AnnData) else obs
    if not isinstance(frame, pd.DataFrame):
        raise TypeError("obs must be a pandas DataFrame of cells or an AnnData.")
    needed = [hit_key, sample_key, *([groupby] if groupby else []), *sample_columns]
    absent = [c for c in needed if c not in frame]
    if absent:
        raise KeyError(f"Columns {absent} not found; available: {', '.join(map(str, frame.columns))}.")
    calls = frame[hit_key]
    if calls.dtype != bool:
        if not calls.dropna().isin([True, False, 0, 1]).all():
            raise ValueError(f"Column {hit_key!r} must hold boolean hit calls; run ss.tl.hits first.")
        calls = calls.fillna(False).astype(bool)
    keys = ([groupby] if groupby else []) + [sample_key]
    cells = pd.DataFrame({k: frame[k].astype(str).where(frame[k].notna()) for k in keys})
    cells["_hit"] = calls.to_numpy()
    cells = cells.dropna(subset=keys)
    table = cells.groupby(keys, observed=True, sort=True)["_hit"].agg(n_cells="size", n_hits="sum").reset_index()
    table["n_hits"] = table["n_hits"].astype(np.int64)
    table["hit_fraction"] = table["n_hits"] / table["n_cells"]
    table = table[table["n_cells"] >= min_cells]
    if groupby:
        n_samples = table.groupby(groupby)[sample_key].transform("size")
        table = table[n_samples >= min_samples]
    elif table.shape[0] < min_samples:
        table = table.iloc[:0]
    for column in sample_columns:
        per_sample = frame.groupby(frame[sample_key].astype(str), observed=True)[column].nunique(dropna=False)
        varying = per_sample[per_sample > 1].index.tolist()
        if varying:
            raise ValueError(f"sample_columns: {column!r} is not constant within samples {varying[:5]}.")
        mapping = frame.drop_duplicates(sample_key).set_index(frame.drop_duplicates(sample_key)[sample_key].astype(str))
        table.insert(len(keys), column, table[sample_key].map(mapping[column]).to_numpy())
    table = table.reset_index(drop=True)
    table.attrs["sigscan"] = {"sample_key": sample_key, "groupby": groupby, "hit_key": hit_key}
    return table
