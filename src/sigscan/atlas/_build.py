"""``Atlas.build``: attributions of many sources computed block by block (threads or a Dask cluster) into shards.

The unit of work is one **block** of rows of one source (a multiple of the attribution batch size, so the batches are
those of a single-process :func:`sigscan.pp.attributions` and the results are bit-identical). A block's attributions,
in the atlas gene order, are written by the task itself to ``.build/<source>-<fingerprint>/<lo>-<hi>.npz`` under the
atlas folder (aside, then renamed), so a finished block is never recomputed: a killed build started again skips the
blocks on disk. When every block of a source is on disk, the blocks are stacked into the source's shard through
:meth:`Atlas.add`'s writer and the block folder is deleted.

Workers load the model once: a model given as ``"KIND:DIR"`` is loaded by each worker from that folder, a model object
is scattered to the workers once; each worker keeps its engine (model in inference mode) for all its blocks.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import sparse
from tqdm.auto import tqdm

from .._logging import logger, timed
from .._soma import SomaRows, is_soma
from .._stream import iter_row_batches
from ._atlas import _check_name
from ._location import Location
from ._manifest import BUILD

if TYPE_CHECKING:
    from ..models import AttributionModel
    from ._atlas import Atlas

#: attribution batches per block when ``block_size`` is not given
BATCHES_PER_BLOCK = 16


class BuildError(RuntimeError):
    """Some blocks of an :meth:`Atlas.build` failed; the finished ones are kept and a new build resumes."""


# --- sources ---------------------------------------------------------------------------------------------------------


@dataclass
class Source:
    """One input of a build: where its counts are and how to read rows ``[lo, hi)`` (picklable)."""

    name: str
    kind: str  # "anndata", "file" or "soma"
    n_obs: int
    path: str | None = None
    layer: str | None = None
    soma: SomaRows | None = None
    #: in-memory counts (kind "anndata"); blocks are sent to workers as slices, never the whole matrix
    counts: Any = None

    def read(self, lo: int, hi: int) -> sparse.csr_matrix:
        """Counts of rows ``[lo, hi)`` (CSR float32, the source's gene columns)."""
        if self.kind == "soma":
            return self.soma[lo:hi]
        matrix = self.counts if self.kind == "anndata" else _open_counts(self.path, self.layer)
        return next(iter_row_batches(matrix[lo:hi], hi - lo))[2]

    def without_counts(self) -> Source:
        """The source without its in-memory matrix (what a remote task gets along with its block)."""
        return Source(self.name, self.kind, self.n_obs, self.path, self.layer, self.soma, None)


_HANDLES: dict[tuple[str, str | None], Any] = {}
_HANDLES_LOCK = threading.Lock()


def _open_counts(path: str, layer: str | None) -> Any:
    """The counts matrix of an .h5ad file or AnnData zarr store, opened once per process and sliced lazily."""
    import anndata as ad

    key = (path, layer)
    with _HANDLES_LOCK:
        if key not in _HANDLES:
            if os.path.isdir(path):
                import zarr

                handle = zarr.open_group(path, mode="r")
            else:
                import h5py

                handle = h5py.File(path, "r")
            element = handle["X"] if layer is None else handle["layers"][layer]
            _HANDLES[key] = ad.io.sparse_dataset(element) if hasattr(element, "keys") else element
        return _HANDLES[key]


def _read_var_obs(path: str) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """``var``, ``obs`` and the number of cells of an .h5ad file or AnnData zarr store, without reading X."""
    import anndata as ad

    if os.path.isdir(path):
        import zarr

        handle = zarr.open_group(path, mode="r")
    else:
        import h5py

        handle = h5py.File(path, "r")
    try:
        var, obs = ad.io.read_elem(handle["var"]), ad.io.read_elem(handle["obs"])
    finally:
        if hasattr(handle, "close"):
            handle.close()
    return var, obs, len(obs)


def _name_of(path: str) -> str:
    name = Path(str(path).rstrip("/")).name
    for suffix in (".h5ad", ".zarr", ".h5"):
        name = name.removesuffix(suffix)
    return name


def expand_sources(sources: Any) -> list[tuple[str, Any]]:
    """``(name, source)`` pairs from a mapping, one source, or a sequence (a folder expands to its h5ad/zarr files)."""
    if isinstance(sources, Mapping):
        pairs = []
        for key, value in sources.items():  # a folder of inputs expands to its files; a single input keeps its name
            inside = _folder_inputs(value)
            pairs.extend(inside if inside is not None else [(str(key), value)])
    else:
        items = [sources] if isinstance(sources, str | os.PathLike) or hasattr(sources, "obs") else list(sources)
        pairs = []
        for item in items:
            inside = _folder_inputs(item)
            if inside is not None:
                pairs.extend(inside)
            elif isinstance(item, str | os.PathLike):
                pairs.append((_name_of(str(item)), str(item)))
            else:
                raise TypeError(
                    "Pass AnnData objects and SOMA experiments as a mapping {name: source} so each shard has a name, "
                    f"not a bare {type(item).__name__}."
                )
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        repeated = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"Shard names repeat ({repeated}); pass sources as a mapping {{name: source}}.")
    return pairs


def _folder_inputs(item: Any) -> list[tuple[str, str]] | None:
    """``(name, path)`` of the h5ad files and zarr stores in a folder of inputs; ``None`` when ``item`` is not one."""
    if not (isinstance(item, str | os.PathLike) and os.path.isdir(item) and not _is_single_store(str(item))):
        return None
    inside = sorted(p for p in Path(item).iterdir() if p.suffix in (".h5ad", ".zarr"))
    if not inside:
        raise FileNotFoundError(f"{item} holds no .h5ad files or .zarr stores (and is not a SOMA experiment).")
    return [(_name_of(str(p)), str(p)) for p in inside]


def _is_single_store(path: str) -> bool:
    return (
        is_soma(path)
        or os.path.exists(os.path.join(path, ".zgroup"))
        or os.path.exists(os.path.join(path, "zarr.json"))
    )


# --- worker side -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    """The attribution settings of a build (everything :class:`AttributionSettings` resolves, with a fixed batch)."""

    method: str
    n_steps: int
    head: str
    engine: str
    device: str
    batch_size: int | None
    target_sum: float
    gene_symbols: str | None
    gene_ids: str | None

    def settings(self, model: AttributionModel, var: pd.DataFrame, device: str | None = None) -> Any:
        """The resolved :class:`~sigscan._engine.AttributionSettings` of ``model`` on ``var``."""
        from .._engine import AttributionSettings

        return AttributionSettings.resolve(
            model,
            var,
            method=self.method,
            n_steps=self.n_steps,
            head=self.head,
            engine=self.engine,
            device=device or self.device,
            batch_size=self.batch_size,
            target_sum=self.target_sum,
            gene_symbols=self.gene_symbols,
            gene_ids=self.gene_ids,
        )


@dataclass
class Block:
    """One task: rows ``[lo, hi)`` of a source, written to ``relpath`` under the atlas."""

    source: Source
    lo: int
    hi: int
    relpath: str
    #: the block's counts, for in-memory sources
    counts: sparse.csr_matrix | None = None

    @property
    def label(self) -> str:
        """The block as messages name it."""
        return f"{self.source.name}[{self.lo}:{self.hi}]"


class Runtime:
    """What a process keeps between blocks: each model's engine (opened once), and each source's gene alignment."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stack = contextlib.ExitStack()
        self._models: dict[str, AttributionModel] = {}
        self._engines: dict[tuple[int, str], Any] = {}
        self._settings: dict[tuple[int, str], Any] = {}

    def model(self, model: Any) -> AttributionModel:
        """The model: loaded once per process from ``"KIND:DIR"``, or the object itself."""
        if not isinstance(model, str):
            return model
        with self._lock:
            if model not in self._models:
                from .._model_spec import load_model

                self._models[model] = load_model(model)
            return self._models[model]

    def engine(self, model: AttributionModel, var: pd.DataFrame, source: str, options: Options) -> tuple[Any, Any]:
        """``(settings, engine)`` for a source; the model enters inference mode once and stays there."""
        with self._lock:
            key = (id(model), source)
            if key not in self._settings:
                self._settings[key] = options.settings(model, var)
            settings = self._settings[key]
            engine_key = (id(model), f"{settings.engine_name}:{settings.normalize}:{settings.device}")
            if engine_key not in self._engines:
                self._engines[engine_key] = self._stack.enter_context(settings.engine())
            return settings, self._engines[engine_key]

    def close(self) -> None:
        """Leave inference mode (restores the models' previous state) and forget the engines."""
        with self._lock:
            self._stack.close()
            self._stack = contextlib.ExitStack()
            self._engines.clear()
            self._settings.clear()


_WORKER_RUNTIME = Runtime()


def compute_block(
    block: Block,
    model: Any,
    var: pd.DataFrame,
    options: Options,
    url: str,
    storage_options: dict[str, Any] | None,
    runtime: Runtime | None = None,
) -> int:
    """Attribute one block and write it under the atlas; returns its number of non-zeros."""
    runtime = runtime or _WORKER_RUNTIME
    location = Location(url, storage_options)
    model = runtime.model(model)
    settings, engine = runtime.engine(model, var, block.source.name, options)
    counts = block.counts if block.counts is not None else block.source.read(block.lo, block.hi)
    if counts.shape != (block.hi - block.lo, len(var)):
        raise ValueError(f"block {block.label}: read {counts.shape} counts, expected {(block.hi - block.lo, len(var))}")
    parts = []
    for lo, hi, batch in iter_row_batches(counts, settings.batch_size):
        settings.check_counts(batch, where=f"source {block.source.name!r} rows {block.lo + lo}-{block.lo + hi}")
        attr = settings.attribute(engine, settings.model_input(batch))
        parts.append(attr.sorted_indices())  # model gene space = the atlas gene order
    matrix = sparse.vstack(parts, format="csr", dtype=np.float32) if parts else sparse.csr_matrix((0, model.n_genes))
    buffer = io.BytesIO()
    np.savez(
        buffer,
        data=matrix.data.astype("<f4", copy=False),
        indices=matrix.indices.astype("<i4", copy=False),
        indptr=matrix.indptr.astype("<i8", copy=False),
    )
    location.write_atomic(buffer.getvalue(), block.relpath)
    return int(matrix.nnz)


def _read_block(location: Location, relpath: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with np.load(io.BytesIO(location.read_bytes(relpath))) as arrays:
        return arrays["data"], arrays["indices"], arrays["indptr"]


# --- the build -------------------------------------------------------------------------------------------------------


@dataclass
class _Plan:
    """One source resolved on the client: its settings, obs, blocks, and where they go."""

    source: Source
    var: pd.DataFrame
    obs: pd.DataFrame  # the shard's rows only
    settings: Any
    folder: str
    blocks: list[Block]
    #: the shard's name and its rows [start, stop) of the source
    shard: str
    start: int
    stop: int


def _resolve_source(
    name: str,
    item: Any,
    *,
    layer: str | None,
    obs_columns: list[str] | None,
    soma_options: dict[str, Any],
) -> tuple[Source, pd.DataFrame, pd.DataFrame]:
    """The source, its var and its obs (only ``obs_columns``), without reading counts."""
    if is_soma(item):
        rows = SomaRows.open(item, **soma_options)
        return Source(name, "soma", rows.shape[0], soma=rows), rows.var(), rows.obs(obs_columns)
    if isinstance(item, str | os.PathLike):
        path = str(item)
        if not os.path.exists(path):
            raise FileNotFoundError(f"source {name!r}: {path} does not exist.")
        var, obs, n_obs = _read_var_obs(path)
        source = Source(name, "file", n_obs, path=path, layer=layer)
    elif hasattr(item, "obs") and hasattr(item, "var"):
        from .._engine import counts_matrix

        if hasattr(item, "mod"):
            raise TypeError(f"source {name!r}: pass the RNA modality of a MuData (mdata.mod['rna']), not the MuData.")
        counts = counts_matrix(item, layer)
        if sparse.issparse(counts) and counts.format != "csr":
            counts = counts.tocsr()
        var, obs = item.var, item.obs
        source = Source(name, "anndata", item.n_obs, layer=layer, counts=counts)
    else:
        raise TypeError(
            f"source {name!r}: expected an .h5ad/zarr path, an AnnData or a SOMA experiment, not {type(item).__name__}."
        )
    if obs_columns is not None:
        missing = [c for c in obs_columns if c not in obs.columns]
        if missing:
            raise KeyError(f"source {name!r}: obs columns {missing} not found; available: {list(obs.columns)}.")
        obs = obs[list(obs_columns)]
    return source, var, obs


def _fingerprint(settings: Any, obs: pd.DataFrame, var: pd.DataFrame, block_size: int) -> str:
    fingerprint = settings.fingerprint(obs.index, var.index, space="model", n_columns=settings.model.n_genes)
    fingerprint["block_size"] = block_size
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True, default=str).encode()).hexdigest()[:16]


def build(
    atlas: Atlas,
    sources: Any,
    model: AttributionModel,
    *,
    model_ref: AttributionModel | str,
    options: Options,
    block_size: int | None,
    client: Any,
    layer: str | None,
    obs_columns: Sequence[str] | None,
    soma_options: dict[str, Any],
    retries: int,
    progress: bool,
    cells_per_shard: int | None = None,
) -> None:
    """Compute every missing block, then commit each finished source as a shard (see :meth:`Atlas.build`)."""
    runtime = Runtime()
    model_object = model
    if list(map(str, model_object.gene_order)) != list(atlas.gene_order):
        raise ValueError(
            f"The atlas at {atlas.location} is for another gene order ({atlas.manifest.n_genes} genes) than "
            f"{model_object.name} ({model_object.n_genes} genes); build into a new atlas for this model."
        )
    columns = list(obs_columns) if obs_columns is not None else None
    plans: list[_Plan] = []
    # every source is resolved (genes aligned, settings checked) before any work starts
    for name, item in expand_sources(sources):
        _check_name(name)
        source, var, obs = _resolve_source(name, item, layer=layer, obs_columns=columns, soma_options=soma_options)
        settings = options.settings(model_object, var)
        if options.batch_size is None:  # resolved once here, so every worker runs the same batches
            options = replace(options, batch_size=settings.batch_size)
        if block_size is None:
            size = settings.batch_size * BATCHES_PER_BLOCK
        elif block_size < 1 or block_size % settings.batch_size:
            raise ValueError(
                f"block_size={block_size} must be a positive multiple of the attribution batch size "
                f"({settings.batch_size}), so blocks hold the batches of a single-process run; pass e.g. "
                f"block_size={settings.batch_size * max(1, (block_size or 1) // settings.batch_size)}."
            )
        else:
            size = block_size
        if cells_per_shard is not None and (cells_per_shard < 1 or cells_per_shard % size):
            raise ValueError(
                f"cells_per_shard={cells_per_shard} must be a positive multiple of block_size ({size}), so no block "
                "straddles two shards."
            )
        per_shard = cells_per_shard or max(source.n_obs, 1)
        ranges = [(a, min(a + per_shard, source.n_obs)) for a in range(0, source.n_obs, per_shard)] or [(0, 0)]
        for number, (start, stop) in enumerate(ranges):
            shard = name if len(ranges) == 1 else f"{name}-{number:05d}"
            part = obs.iloc[start:stop]
            if _already_built(atlas, shard, settings, len(part)):
                logger.info("shard %r is already in the atlas with these settings; skipped", shard)
                continue
            folder = f"{BUILD}/{shard}-{_fingerprint(settings, part, var, size)}"
            blocks = [
                Block(source.without_counts(), lo, hi, f"{folder}/{lo:012d}-{hi:012d}.npz")
                for lo in range(start, stop, size)
                for hi in [min(lo + size, stop)]
            ]
            plans.append(_Plan(source, var, part, settings, folder, blocks, shard, start, stop))

    location = atlas.location
    todo = []
    for plan in plans:
        location.makedirs(plan.folder)
        done = set(location.listdir(plan.folder))
        for block in plan.blocks:
            if os.path.basename(block.relpath) not in done:
                if plan.source.kind == "anndata":
                    block.counts = plan.source.counts[block.lo : block.hi]
                todo.append((plan, block))
    total = sum(p.stop - p.start for p in plans)
    finished = total - sum(b.hi - b.lo for _, b in todo)
    failures: dict[str, BaseException] = {}
    with (
        timed(f"building {len(plans)} shards: {len(todo)} blocks to compute ({total - finished} of {total} cells)"),
        tqdm(total=total, initial=finished, disable=not progress, unit="cells", desc="atlas build") as bar,
    ):
        try:
            if client is None:
                _run_local(todo, model_object, options, location, runtime, retries, bar, failures)
            else:
                _run_distributed(todo, model_ref, options, location, client, retries, bar, failures)
        finally:
            runtime.close()

    failed = {id(plan) for plan, block in todo if block.label in failures}
    for plan in plans:
        if id(plan) not in failed:
            _commit(atlas, plan)
    if failures:
        lines = [f"{label}: {type(error).__name__}: {error}" for label, error in failures.items()]
        raise BuildError(
            f"{len(failures)} blocks failed (rows given as source[start:stop]):\n  "
            + "\n  ".join(lines)
            + "\nFinished blocks are kept: fix the cause and run the same build again to compute only the rest."
        )


def _run_local(todo, model, options, location, runtime, retries, bar, failures) -> None:
    for plan, block in todo:
        for attempt in range(retries + 1):
            try:
                compute_block(block, model, plan.var, options, location.url, location.storage_options, runtime)
                break
            except Exception as error:
                if attempt == retries:
                    failures[block.label] = error
                else:
                    logger.warning("block %s failed (%s); retrying", block.label, error)
        bar.update(block.hi - block.lo)


def _run_distributed(todo, model, options, location, client, retries, bar, failures) -> None:
    from distributed import as_completed

    model_ref = model if isinstance(model, str) else client.scatter(model, broadcast=True, hash=False)
    var_refs: dict[str, Any] = {}
    futures = {}
    for plan, block in todo:
        name = plan.source.name
        if name not in var_refs:
            var_refs[name] = client.scatter(plan.var, broadcast=False, hash=False)
        future = client.submit(
            compute_block,
            block,
            model_ref,
            var_refs[name],
            options,
            location.url,
            location.storage_options,
            retries=retries,
            pure=False,
            key=f"sigscan-block-{name}-{block.lo}-{block.hi}-{os.urandom(4).hex()}",
        )
        futures[future] = block
    for future in as_completed(list(futures)):
        block = futures[future]
        if future.status == "error":
            failures[block.label] = future.exception()
        bar.update(block.hi - block.lo)
    if os.getpid() in client.run(os.getpid).values():
        # workers in this process (an in-process cluster) used the caller's model object: restore its state
        _WORKER_RUNTIME.close()


def _already_built(atlas: Atlas, name: str, settings: Any, n_cells: int) -> bool:
    if name not in atlas.manifest.names():
        return False
    entry = atlas.manifest.shard(name)
    want = settings.provenance()
    keys = ("weights_sha256", "method", "n_steps", "head", "target_sum", "engine")
    if entry.n_cells == n_cells and all(entry.provenance.get(k) == want[k] for k in keys):
        return True
    raise ValueError(
        f"The atlas already has a shard {name!r} made from other data or settings; remove it with "
        f"atlas.remove({name!r}) or give the source another name."
    )


def _commit(atlas: Atlas, plan: _Plan) -> None:
    """Stack a source's blocks into its shard (the writer of :meth:`Atlas.add`) and delete the blocks."""
    location = atlas.location
    data, indices, indptr = [], [], [np.zeros(1, np.int64)]
    offset = 0
    for block in plan.blocks:
        d, i, p = _read_block(location, block.relpath)
        data.append(d)
        indices.append(i)
        indptr.append(p[1:] + offset)
        offset += len(d)
    matrix = sparse.csr_matrix(
        (
            np.concatenate(data) if data else np.empty(0, np.float32),
            np.concatenate(indices) if indices else np.empty(0, np.int32),
            np.concatenate(indptr),
        ),
        shape=(plan.stop - plan.start, plan.settings.model.n_genes),
    )
    atlas.add_matrix(matrix, plan.obs, name=plan.shard, provenance=plan.settings.provenance())
    location.remove_tree(plan.folder)


def blocks_on_disk(location: Location) -> Iterable[str]:
    """Relative paths of the block files an unfinished build left (for messages and tests)."""
    if not location.exists(BUILD):
        return []
    return [f"{BUILD}/{d}/{f}" for d in location.listdir(BUILD) for f in location.listdir(BUILD, d)]
