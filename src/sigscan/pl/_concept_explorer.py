"""The concept explorer: one self-contained HTML page (data and script inline) to browse SAE concepts (SPEC 5.2).

The page is built from three parts shipped with sigscan (``_explorer/explorer.{html,css,js}``, hand-written vanilla
JavaScript, no bundle) and one JSON payload. Per-cell data (coordinates, activations, group codes) is quantised
(uint16 coordinates, uint8 activations per concept, delta-coded cell indices), gzip-compressed and base64-encoded in
that payload; the page decompresses it with the browser's ``DecompressionStream`` and draws all cells into one canvas
from precomputed colour buffers, so it stays responsive at 100,000 cells and opens offline.
"""

from __future__ import annotations

import base64
import gzip
import json
import math
import os
import re
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from .._gene_sets import GeneSetSpec, read_gene_sets
from .._utils import written_aside

#: genes kept per concept (the list the page shows and searches)
N_TOP_GENES = 50
#: enrichment rows kept per concept (smallest FDR first)
N_ENRICHMENT = 10
#: the largest number of groups ``groupby`` may have
MAX_GROUPS = 500
_INACTIVE = "#d4d4d4"
_FORMAT_VERSION = 1


def concept_explorer(
    adata: AnnData,
    path: str | os.PathLike,
    *,
    key: str = "concepts",
    basis: str = "umap",
    groupby: str | None = None,
    gene_sets: GeneSetSpec | None = None,
    max_cells: int | None = None,
) -> Path:
    """Write an interactive concept explorer: one self-contained HTML file that opens offline in a browser.

    The page shows the cells on ``basis`` coloured by the selected concept's activation (one canvas; responsive at
    100,000 cells), a list of concepts with their top genes, best groups and enrichment hits, and a search box for
    genes, concepts and gene sets. Clicking a gene lists the concepts it drives; selecting a concept recolours the
    scatter. Parts that were not computed (gene scores, enrichment, groups) are shown as "not computed".

    Parameters
    ----------
    adata
        Annotated data matrix with concept activations in ``obsm[key]`` (from :func:`sigscan.tl.concepts`) and a
        2-D embedding in ``obsm[f"X_{basis}"]``.
    path
        The HTML file to write (written aside and renamed into place; its folder is created if missing).
    key
        Key of the concepts: activations in ``obsm[key]``, parameters in ``uns["sigscan"][key]``, gene scores in
        ``varm[f"{key}_genes"]`` / ``uns["sigscan"][f"{key}_genes"]`` and enrichment in
        ``uns["sigscan"][f"{key}_enrichment"]``.
    basis
        Embedding to draw, ``obsm[f"X_{basis}"]`` (first two columns); ``"X_umap"`` works too.
    groupby
        Categorical ``obs`` column: each concept's best groups (highest mean activation) are listed, and the
        scatter can be coloured by it.
    gene_sets
        Gene sets (GMT path, mapping of name → genes, …; anything :func:`sigscan.read_gene_sets` reads): the
        search finds them, and a gene's panel lists the sets holding it.
    max_cells
        Draw at most this many cells (a fixed random subset, seed 0); statistics (activity, best groups) still use
        all cells. ``None`` draws all cells.

    Returns
    -------
    The path of the written file.

    Examples
    --------
    After ``ss.tl.concepts`` (and optionally ``ss.tl.concept_genes`` / ``ss.tl.concept_enrichment``) and
    ``sc.tl.umap``; here with made-up activations:

    >>> import tempfile
    >>> import numpy as np, anndata as ad
    >>> from scipy import sparse
    >>> import sigscan as ss
    >>> adata = ad.AnnData(np.ones((100, 5), dtype=np.float32))
    >>> adata.obsm["X_umap"] = np.random.default_rng(0).normal(size=(100, 2))
    >>> adata.obsm["concepts"] = sparse.random(100, 16, density=0.2, format="csr", dtype=np.float32, random_state=0)
    >>> path = ss.pl.concept_explorer(adata, f"{tempfile.mkdtemp()}/explorer.html")
    >>> path.name, path.stat().st_size < 100_000
    ('explorer.html', True)
    """
    payload = explorer_payload(adata, key=key, basis=basis, groupby=groupby, gene_sets=gene_sets, max_cells=max_cells)
    page = render_page(payload)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with written_aside(target) as tmp:
        tmp.write_bytes(page.encode("utf-8"))
    return target


# --------------------------------------------------------------------------------------------------------------------
# payload


def explorer_payload(
    adata: AnnData,
    *,
    key: str = "concepts",
    basis: str = "umap",
    groupby: str | None = None,
    gene_sets: GeneSetSpec | None = None,
    max_cells: int | None = None,
) -> dict[str, Any]:
    """The JSON-able dictionary the page reads (arguments as :func:`concept_explorer`)."""
    activations = _activations(adata, key)
    coordinates, basis_key = _coordinates(adata, basis)
    groups = _groups(adata, groupby)
    n_obs, n_concepts = activations.shape
    cells = _cells_to_draw(n_obs, max_cells)
    sigscan_uns = adata.uns.get("sigscan", {}) if isinstance(adata.uns.get("sigscan", {}), dict) else {}
    info = sigscan_uns.get(key, {}) if isinstance(sigscan_uns.get(key, {}), dict) else {}
    labels = _concept_labels(info, n_concepts)

    shown = activations[cells] if cells is not None else activations
    columns = shown.tocsc()
    columns.sort_indices()
    scale = _colour_scale(columns)
    quantised = np.zeros(columns.nnz, dtype=np.uint8)
    for c in range(n_concepts):
        lo, hi = columns.indptr[c], columns.indptr[c + 1]
        values = columns.data[lo:hi].astype(np.float64)
        quantised[lo:hi] = np.clip(np.rint(values / scale[c] * 255), 1, 255).astype(np.uint8)  # 0 = inactive
    deltas = np.empty(columns.nnz, dtype=np.uint32)
    for c in range(n_concepts):
        lo, hi = columns.indptr[c], columns.indptr[c + 1]
        rows = columns.indices[lo:hi].astype(np.int64)
        deltas[lo:hi] = np.diff(rows, prepend=0).astype(np.uint32)

    xy = np.asarray(coordinates[cells] if cells is not None else coordinates, dtype=np.float64)[:, :2]
    lower, upper = xy.min(axis=0), xy.max(axis=0)
    span = np.where(upper > lower, upper - lower, 1.0)
    coords_q = np.rint((xy - lower) / span * 65535).astype(np.uint16)

    arrays: dict[str, np.ndarray] = {
        "coords": coords_q.ravel(),
        "act_indptr": columns.indptr.astype(np.uint32),
        "act_cells": deltas,
        "act_values": quantised,
    }
    all_columns = activations.tocsc()
    stats = {
        "n_active": np.diff(all_columns.indptr).tolist(),
        "mean": _round(np.asarray(all_columns.sum(axis=0)).ravel() / max(n_obs, 1)),
        "max": _round(_column_max(all_columns)),
        "scale": [float(v) for v in scale],
    }

    group_block = None
    if groups is not None:
        codes, names, colours = groups
        arrays["group_codes"] = (codes[cells] if cells is not None else codes).astype(np.uint16)
        group_block = _group_block(activations, codes, names, colours, groupby)

    genes, top_genes = _top_genes(adata, sigscan_uns, key, labels)
    gene_index = {gene: i for i, gene in enumerate(genes)}
    set_block = None
    if gene_sets is not None:
        sets = read_gene_sets(gene_sets)
        members = []
        for genes_of_set in sets.values():
            members.append([gene_index[g] for g in genes_of_set if g in gene_index])
        set_block = {"names": list(sets), "sizes": [len(v) for v in sets.values()], "members": members}

    blob, layout = _pack(arrays)
    return {
        "version": _FORMAT_VERSION,
        "title": f"sigscan concept explorer: {key}",
        "key": key,
        "basis": basis_key,
        "n_obs": int(n_obs),
        "n_cells": len(coords_q),
        "n_concepts": int(n_concepts),
        "summary": _summary(info, n_obs, len(coords_q), n_concepts),
        "labels": labels,
        "stats": stats,
        "range": [float(lower[0]), float(upper[0]), float(lower[1]), float(upper[1])],
        "cmap": _colormap(),
        "inactive": _INACTIVE,
        "genes": genes,
        "top_genes": top_genes,
        "groups": group_block,
        "enrichment": _enrichment(sigscan_uns, key, labels),
        "gene_sets": set_block,
        "blob": blob,
        "layout": layout,
    }


def _activations(adata: AnnData, key: str) -> sparse.csr_matrix:
    if key not in adata.obsm:
        raise KeyError(
            f"No concept activations in adata.obsm[{key!r}]: run ss.tl.concepts(adata, ...) first "
            f"(or pass key= the key_added you used; obsm holds {sorted(adata.obsm)})."
        )
    matrix = adata.obsm[key]
    if isinstance(matrix, pd.DataFrame):
        matrix = matrix.to_numpy()
    matrix = sparse.csr_matrix(matrix)  # a copy-free view of CSR input; dense or other sparse formats converted
    if matrix.ndim != 2 or matrix.shape[1] == 0:
        raise ValueError(f"adata.obsm[{key!r}] must be cells × concepts; it has shape {matrix.shape}.")
    matrix = matrix.astype(np.float32)
    if not np.all(np.isfinite(matrix.data)):
        raise ValueError(f"adata.obsm[{key!r}] holds NaN or infinite activations; recompute it with ss.tl.concepts.")
    if matrix.nnz and matrix.data.min() < 0:
        raise ValueError(f"adata.obsm[{key!r}] holds negative activations; Top-K SAE activations are non-negative.")
    matrix.eliminate_zeros()
    return matrix


def _coordinates(adata: AnnData, basis: str) -> tuple[np.ndarray, str]:
    basis_key = basis if basis.startswith("X_") else f"X_{basis}"
    if basis_key not in adata.obsm:
        name = basis_key[2:]
        how = {
            "umap": "run sc.pp.neighbors(adata, use_rep=...) and sc.tl.umap(adata)",
            "tsne": "run sc.tl.tsne(adata)",
            "pca": "run sc.pp.pca(adata)",
        }.get(name, f"compute the {name} embedding into adata.obsm[{basis_key!r}]")
        raise KeyError(
            f"No embedding adata.obsm[{basis_key!r}] to draw the cells on: {how} first, or pass basis= one of "
            f"{sorted(k[2:] for k in adata.obsm if k.startswith('X_')) or 'the embeddings you computed'}."
        )
    values = adata.obsm[basis_key]
    values = values.toarray() if sparse.issparse(values) else np.asarray(values)
    if values.ndim != 2 or values.shape[1] < 2:
        raise ValueError(f"adata.obsm[{basis_key!r}] must have at least two columns; it has shape {values.shape}.")
    values = values[:, :2].astype(np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError(f"adata.obsm[{basis_key!r}] holds NaN or infinite coordinates; recompute the embedding.")
    return values, basis_key


def _groups(adata: AnnData, groupby: str | None) -> tuple[np.ndarray, list[str], list[str]] | None:
    if groupby is None:
        return None
    if groupby not in adata.obs:
        raise KeyError(
            f"groupby={groupby!r} is not a column of adata.obs; pass one of {list(adata.obs.columns)} or None."
        )
    column = adata.obs[groupby]
    if not isinstance(column.dtype, pd.CategoricalDtype):
        if pd.api.types.is_float_dtype(column) and column.nunique() > MAX_GROUPS:
            raise ValueError(f"obs[{groupby!r}] is continuous; groupby needs a categorical column (cell types, …).")
        column = column.astype("category")
    if len(column.cat.categories) > MAX_GROUPS:
        raise ValueError(
            f"obs[{groupby!r}] has {len(column.cat.categories)} groups (at most {MAX_GROUPS}); pass a coarser column."
        )
    names = [str(c) for c in column.cat.categories]
    codes = column.cat.codes.to_numpy().astype(np.int64)
    codes = np.where(codes < 0, 65535, codes)
    colours = adata.uns.get(f"{groupby}_colors")
    if colours is None or len(colours) != len(names):
        colours = _default_palette(len(names))
    return codes, names, [_hex(c) for c in colours]


def _default_palette(n: int) -> list[str]:
    from scanpy.plotting import palettes

    palette = palettes.default_20 if n <= 20 else palettes.default_102
    return [palette[i % len(palette)] for i in range(n)]


def _hex(colour: Any) -> str:
    from matplotlib.colors import to_hex

    return to_hex(colour)


def _cells_to_draw(n_obs: int, max_cells: int | None) -> np.ndarray | None:
    if max_cells is None or max_cells >= n_obs:
        return None
    if max_cells < 1:
        raise ValueError(f"max_cells must be at least 1 (or None for all cells), not {max_cells}.")
    return np.sort(np.random.default_rng(0).choice(n_obs, size=max_cells, replace=False))


def _colour_scale(columns: sparse.csc_matrix) -> np.ndarray:
    """Per concept, the activation drawn at the top of the colour scale.

    The 99th percentile of its non-zero activations (the maximum with fewer than 100 active cells), so one outlier
    does not wash out the rest; larger activations are drawn at the top colour.
    """
    scale = np.ones(columns.shape[1], dtype=np.float64)
    for c in range(columns.shape[1]):
        values = columns.data[columns.indptr[c] : columns.indptr[c + 1]].astype(np.float64)
        if len(values):
            top = np.quantile(values, 0.99) if len(values) >= 100 else values.max()
            scale[c] = top if top > 0 else 1.0
    return scale


def _column_max(columns: sparse.csc_matrix) -> np.ndarray:
    result = np.zeros(columns.shape[1], dtype=np.float64)
    counts = np.diff(columns.indptr)
    nonempty = counts > 0
    if columns.nnz:
        result[nonempty] = np.maximum.reduceat(columns.data.astype(np.float64), columns.indptr[:-1][nonempty])
    return result


def _round(values: Any, digits: int = 4) -> list[float | None]:
    """Floats rounded to ``digits`` significant digits (JSON-compact); NaN becomes ``None``."""
    out: list[float | None] = []
    for value in np.asarray(values, dtype=np.float64).ravel():
        if not math.isfinite(value):
            out.append(None)
        else:
            out.append(float(f"{value:.{digits}g}"))
    return out


def _concept_labels(info: dict, n_concepts: int) -> list[str]:
    for name in ("names", "concept_names", "labels"):
        values = info.get(name)
        if values is not None and len(values) == n_concepts:
            return [str(v) for v in values]
    return [f"C{i}" for i in range(n_concepts)]


def _concept_positions(values: pd.Series, labels: list[str]) -> np.ndarray:
    """Column positions of the concepts a tidy table names (integers, labels or ``"C12"``-like names); -1 if none."""
    n = len(labels)
    lookup = {label: i for i, label in enumerate(labels)}
    out = np.full(len(values), -1, dtype=np.int64)
    for row, value in enumerate(values.to_numpy()):
        if isinstance(value, int | np.integer) and 0 <= int(value) < n:
            out[row] = int(value)
            continue
        text = str(value)
        if text in lookup:
            out[row] = lookup[text]
            continue
        digits = re.search(r"(\d+)$", text)
        if digits and int(digits.group(1)) < n:
            out[row] = int(digits.group(1))
    return out


def _scalar(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return float(f"{value:.4g}") if math.isfinite(value) else None
    return None


#: the recorded values the page's header shows (in this order); the others appear in its tooltip
_HEADLINE = ("use_rep", "k", "variance_explained", "dead_fraction", "n_epochs")


def _summary(info: dict, n_obs: int, n_cells: int, n_concepts: int) -> list[list[Any]]:
    """``[name, value, shown in the header]`` rows: counts, then the scalar parameters and metrics in ``uns``."""
    rows: list[list[Any]] = [["cells", n_obs, True], ["concepts", n_concepts, True]]
    if n_cells < n_obs:
        rows.append(["cells drawn", n_cells, True])
    recorded: dict[str, Any] = {}
    params = info.get("params", {})
    for source in (params if isinstance(params, dict) else {}, info):
        for name, value in source.items():
            scalar = _scalar(value)
            if scalar is not None and name != "n_concepts":
                recorded[str(name)] = scalar
    order = [name for name in _HEADLINE if name in recorded] + [name for name in recorded if name not in _HEADLINE]
    rows += [[name, recorded[name], name in _HEADLINE] for name in order]
    return rows


def _group_block(
    activations: sparse.csr_matrix, codes: np.ndarray, names: list[str], colours: list[str], groupby: str | None
) -> dict[str, Any]:
    n_groups = len(names)
    valid = codes < n_groups
    indicator = sparse.csr_matrix(
        (np.ones(int(valid.sum())), (codes[valid], np.flatnonzero(valid))), shape=(n_groups, activations.shape[0])
    )
    counts = np.asarray(indicator.sum(axis=1)).ravel()
    sums = np.asarray((indicator @ activations).todense(), dtype=np.float64)
    means = sums / np.where(counts > 0, counts, 1)[:, None]
    return {
        "key": groupby,
        "names": names,
        "colors": colours,
        "counts": counts.astype(int).tolist(),
        # concepts × groups, so the page reads one row per concept
        "means": [_round(row) for row in means.T],
    }


def _top_genes(
    adata: AnnData, sigscan_uns: dict, key: str, labels: list[str]
) -> tuple[list[str], list[dict[str, list]] | None]:
    """Gene names and, per concept, its top genes (indices into the names, scores, fraction of cells)."""
    table = sigscan_uns.get(f"{key}_genes")
    per_concept: list[list[tuple[str, float, float | None]]] = [[] for _ in labels]
    if table is not None:
        frame = pd.DataFrame(table)
        missing = {"concept", "gene", "score"} - set(frame.columns)
        if missing:
            raise ValueError(
                f'uns["sigscan"][{key + "_genes"!r}] lacks the columns {sorted(missing)}; rerun ss.tl.concept_genes.'
            )
        frame = frame.assign(_position=_concept_positions(frame["concept"], labels))
        frame = frame[frame["_position"] >= 0]
        order = ["_position", "rank"] if "rank" in frame else ["_position"]
        if "rank" not in frame:
            frame = frame.sort_values(["_position", "score"], ascending=[True, False], kind="stable")
        else:
            frame = frame.sort_values(order, kind="stable")
        frac = frame["frac_cells"].to_numpy() if "frac_cells" in frame else np.full(len(frame), np.nan)
        for position, gene, score, fraction in zip(
            frame["_position"].to_numpy(), frame["gene"].astype(str), frame["score"].to_numpy(), frac, strict=True
        ):
            if len(per_concept[position]) < N_TOP_GENES:
                per_concept[position].append((gene, float(score), float(fraction)))
    elif f"{key}_genes" in adata.varm:
        scores = np.asarray(adata.varm[f"{key}_genes"], dtype=np.float64)
        if scores.shape != (adata.n_vars, len(labels)):
            raise ValueError(
                f"adata.varm[{key + '_genes'!r}] has shape {scores.shape}, expected genes × concepts "
                f"({adata.n_vars}, {len(labels)}); rerun ss.tl.concept_genes."
            )
        var_names = adata.var_names.astype(str)
        for c in range(len(labels)):
            column = np.where(np.isfinite(scores[:, c]), scores[:, c], -np.inf)
            top = np.argsort(-column, kind="stable")[:N_TOP_GENES]
            top = top[np.isfinite(column[top]) & (column[top] != 0)]
            per_concept[c] = [(var_names[g], float(column[g]), float("nan")) for g in top]
    else:
        return [], None
    genes = sorted({gene for entries in per_concept for gene, _, _ in entries})
    index = {gene: i for i, gene in enumerate(genes)}
    blocks = []
    for entries in per_concept:
        fractions = [f for _, _, f in entries]
        blocks.append(
            {
                "genes": [index[g] for g, _, _ in entries],
                "scores": _round([s for _, s, _ in entries]),
                "frac": _round(fractions, 3) if any(math.isfinite(f) for f in fractions) else None,
            }
        )
    return genes, blocks


def _enrichment(sigscan_uns: dict, key: str, labels: list[str]) -> list[list[dict[str, Any]]] | None:
    table = sigscan_uns.get(f"{key}_enrichment")
    if table is None:
        return None
    frame = pd.DataFrame(table)
    missing = {"concept", "gene_set"} - set(frame.columns)
    if missing:
        raise ValueError(
            f'uns["sigscan"][{key + "_enrichment"!r}] lacks the columns {sorted(missing)}; rerun '
            "ss.tl.concept_enrichment."
        )
    frame = frame.assign(_position=_concept_positions(frame["concept"], labels))
    frame = frame[frame["_position"] >= 0]
    if "overlap" in frame:
        frame = frame[frame["overlap"] > 0]  # a set sharing no gene with the concept is no hit
    sort_by = [c for c in ("fdr", "p") if c in frame]
    if sort_by:
        frame = frame.sort_values(sort_by, kind="stable")
    hits: list[list[dict[str, Any]]] = [[] for _ in labels]
    for row in frame.to_dict("records"):
        entries = hits[row["_position"]]
        if len(entries) >= N_ENRICHMENT:
            continue
        entry: dict[str, Any] = {"set": str(row["gene_set"])}
        for name in ("overlap", "set_size", "method"):
            if name in row:
                entry[name] = _scalar(row[name])
        for name in ("p", "fdr", "nes", "score"):
            if name in row:
                entry[name] = _round([row[name]], 3)[0]
        if "genes" in row:
            entry["genes"] = _gene_list(row["genes"])
        entries.append(entry)
    return hits


def _gene_list(value: Any) -> list[str]:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    if isinstance(value, str):
        return [g for g in re.split(r"[;,\s]+", value) if g]
    return [str(g) for g in value]


def _colormap() -> list[int]:
    """Viridis as 255 RGB triples (for quantised activations 1..255; 0 = inactive)."""
    from matplotlib import colormaps

    rgb = colormaps["viridis"](np.linspace(0.0, 1.0, 255))[:, :3]
    return np.rint(rgb * 255).astype(int).ravel().tolist()


def _pack(arrays: dict[str, np.ndarray]) -> tuple[str, dict[str, list]]:
    """One gzip-compressed, base64-encoded buffer of the arrays (4-byte aligned) and its layout."""
    parts: list[bytes] = []
    layout: dict[str, list] = {}
    offset = 0
    for name, array in arrays.items():
        array = np.ascontiguousarray(array)
        data = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
        layout[name] = [offset, str(array.dtype), int(array.size)]
        padding = (-len(data)) % 4
        parts.append(data + b"\0" * padding)
        offset += len(data) + padding
    compressed = gzip.compress(b"".join(parts), compresslevel=6, mtime=0)
    return base64.b64encode(compressed).decode("ascii"), layout


def decode_payload(payload: dict[str, Any]) -> dict[str, np.ndarray]:
    """The per-cell arrays of a payload, decoded as the page decodes them (for tests and notebooks)."""
    raw = gzip.decompress(base64.b64decode(payload["blob"]))
    out = {}
    for name, (offset, dtype, count) in payload["layout"].items():
        out[name] = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<"), count=count, offset=offset)
    return out


# --------------------------------------------------------------------------------------------------------------------
# page


def _asset(name: str) -> str:
    return resources.files("sigscan.pl").joinpath("_explorer", name).read_text(encoding="utf-8")


def _script_json(payload: dict[str, Any]) -> str:
    """JSON safe inside ``<script type="application/json">`` (no ``</`` or ``<!--`` can close or comment it)."""
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def render_page(payload: dict[str, Any]) -> str:
    """The HTML page for a payload."""
    import html

    template = _asset("explorer.html")
    head, _, tail = template.partition("__DATA__")
    head = head.replace("__TITLE__", html.escape(payload["title"])).replace("__CSS__", _asset("explorer.css"))
    tail = tail.replace("__JS__", _asset("explorer.js"))
    return head + _script_json(payload) + tail


def read_payload(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON payload embedded in an explorer HTML file."""
    text = Path(path).read_text(encoding="utf-8")
    match = re.search(r'<script type="application/json" id="sigscan-data">(.*?)</script>', text, flags=re.S)
    if match is None:
        raise ValueError(f"{path} is not a sigscan concept explorer page (no embedded data).")
    return json.loads(match.group(1))
