"""``ss.Atlas``: attributions of many datasets on disk, one CSC shard per dataset, queried a gene set at a time."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from scipy import sparse
from tqdm.auto import tqdm

from .._gene_sets import match_weighted_genes
from .._logging import logger, timed
from .._utils import sha256_strings
from ._input import map_to_gene_order, read_input
from ._kernels import EARLY_KERNEL_LOADING, start_loading
from ._location import Location, unique_token
from ._manifest import GENE_ORDER, MANIFEST, Manifest, ShardEntry, read_manifest, write_manifest
from ._shard import ShardError, ShardReader, compact_obs, shard_checksum, to_csc, write_shard

if TYPE_CHECKING:
    from anndata import AnnData

    from ..models import AttributionModel

ObsFilter = str | Callable[[pd.DataFrame], Any] | None
Backend = Literal["threads", "dask"]

SHARDS = "shards"
PARTIAL = ".partial"


class Atlas:
    """An on-disk attribution atlas: a manifest ``atlas.json`` and one AnnData-zarr shard per dataset.

    Each shard stores the attributions of one dataset as ``X`` in CSC float32 (cells × the model's genes), the
    cells' metadata as ``obs`` and the model's gene order as ``var``. Scoring a gene set reads only the selected
    gene columns of each shard, in parallel over shards.

    Parameters
    ----------
    path
        The atlas folder: a local path or an fsspec URL (``s3://…``, ``gs://…``, ``memory://…``).
    storage_options
        Passed to fsspec for URLs.

    Examples
    --------
    >>> import tempfile
    >>> import sigscan as ss
    >>> adata = ss.datasets.pbmc3k()[:60].copy()
    >>> model = ss.models.SCimilarity.random(adata.var_names, hidden_dim=(16,), latent_dim=4)
    >>> ss.pp.attributions(adata, model, method="ixg", progress=False)
    >>> atlas = ss.Atlas.create(tempfile.mkdtemp() + "/atlas", model=model)
    >>> atlas.add(adata, name="pbmc3k")
    >>> scores = atlas.score(["LYZ", "CD14", "S100A8"], columns=["cell_type"])
    >>> scores.shape
    (60, 2)
    """

    def __init__(self, path: str | os.PathLike, *, storage_options: dict[str, Any] | None = None):
        self.location = Location(path, storage_options)
        self.manifest = read_manifest(self.location)
        self._gene_order: pd.Index | None = None
        self._readers: dict[str, tuple[str, ShardReader]] = {}

    # --- creation ------------------------------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        *,
        gene_order: Sequence[str] | None = None,
        model: AttributionModel | None = None,
        storage_options: dict[str, Any] | None = None,
    ) -> Atlas:
        """Create an empty atlas for a model's gene order.

        Parameters
        ----------
        path
            New folder (local path or fsspec URL); an existing atlas there is an error.
        gene_order
            The model's genes in input order.
        model
            A :mod:`sigscan.models` wrapper: its gene order, name and weights checksum are recorded and every added
            dataset must come from it. Give exactly one of ``gene_order`` and ``model``.
        storage_options
            Passed to fsspec for URLs.

        Returns
        -------
        The new, empty atlas.
        """
        if (gene_order is None) == (model is None):
            raise ValueError("Pass exactly one of gene_order= (the model's genes) and model= (a sigscan model).")
        genes = [str(g) for g in (model.gene_order if model is not None else gene_order)]
        if not genes:
            raise ValueError("The gene order is empty.")
        if len(set(genes)) != len(genes):
            raise ValueError("The gene order holds duplicated genes; an atlas needs unique gene identifiers.")
        location = Location(path, storage_options)
        if location.exists(MANIFEST):
            raise FileExistsError(f"{location} already holds an atlas; open it with ss.Atlas({str(path)!r}).")
        location.makedirs(SHARDS)
        location.write_atomic(("\n".join(genes) + "\n").encode(), GENE_ORDER)
        manifest = Manifest(
            gene_order_sha256=sha256_strings(genes),
            n_genes=len(genes),
            model=model.name if model is not None else None,
            model_checksum=model.checksum if model is not None else None,
        )
        write_manifest(location, manifest)
        logger.info("created atlas %s for %d genes", location, len(genes))
        return cls(path, storage_options=storage_options)

    # --- properties ----------------------------------------------------------------------------------------------

    @property
    def gene_order(self) -> pd.Index:
        """The model's genes (the columns of every shard)."""
        if self._gene_order is None:
            if not self.location.exists(GENE_ORDER):
                raise FileNotFoundError(f"{self.location.join(GENE_ORDER)} is missing; the atlas is damaged.")
            genes = self.location.read_bytes(GENE_ORDER).decode().splitlines()
            if sha256_strings(genes) != self.manifest.gene_order_sha256:
                raise ValueError(f"{self.location.join(GENE_ORDER)} does not match the manifest's gene order hash.")
            self._gene_order = pd.Index(genes)
        return self._gene_order

    @property
    def shard_names(self) -> list[str]:
        """Names of the datasets in the atlas."""
        return self.manifest.names()

    @property
    def n_cells(self) -> int:
        """Total number of cells."""
        return sum(entry.n_cells for entry in self.manifest.shards)

    def __len__(self) -> int:
        return self.n_cells

    def __repr__(self) -> str:
        return (
            f"Atlas at {self.location} with {len(self.manifest.shards)} shards, {self.n_cells} cells × "
            f"{self.manifest.n_genes} genes (model {self.manifest.model}, method {self.manifest.method})"
        )

    def refresh(self) -> Atlas:
        """Re-read the manifest (to see shards another process added)."""
        self.manifest = read_manifest(self.location)
        return self

    # --- writing -------------------------------------------------------------------------------------------------

    def add(
        self,
        data: AnnData | str | os.PathLike,
        *,
        name: str,
        layer: str | None = None,
        obs_columns: Sequence[str] | None = None,
        overwrite: bool = False,
    ) -> None:
        """Add one dataset's attributions as a shard.

        The shard is written aside (``shards/<name>.<token>.zarr.partial``), renamed into place, and only then
        committed by atomically replacing ``atlas.json``; a crash at any point leaves the previous atlas intact.
        Adding the same data under the same name again does nothing.

        Parameters
        ----------
        data
            An AnnData with an attribution layer from :func:`sigscan.pp.attributions` (its columns are the data's
            genes, mapped to the atlas gene order by name), the path of such an ``.h5ad``, or the zarr store written by
            ``ss.pp.attributions(..., out=...)``.
        name
            Shard name (the dataset or study).
        layer
            The attribution layer; ``None`` uses the single attribution layer present.
        obs_columns
            Cell metadata columns to keep (default all).
        overwrite
            Replace an existing shard of that name holding other data (otherwise an error).
        """
        _check_name(name)
        self.refresh()
        source = read_input(data, layer, list(obs_columns) if obs_columns is not None else None)
        self._check_provenance(source.provenance, name, source.source)
        matrix = map_to_gene_order(source.matrix, source.genes, self.gene_order, name=name, source=source.source)
        with timed(f"adding shard {name!r}: {matrix.shape[0]} cells, {matrix.nnz} non-zeros"):
            arrays = to_csc(matrix, len(self.gene_order))
            del matrix
            obs = compact_obs(source.obs)
            checksum = None
            if name in self.manifest.names():
                existing = self.manifest.shard(name)
                checksum = shard_checksum(*arrays, obs.index)
                if existing.checksum == checksum:
                    logger.info("shard %r already holds this data; nothing to do", name)
                    return
                if not overwrite:
                    raise ValueError(
                        f"The atlas already has a shard {name!r} holding other data; pass overwrite=True to replace it "
                        "or choose another name."
                    )
            relpath = f"{SHARDS}/{name}.{unique_token()}.zarr"
            attrs = {"gene_order_sha256": self.manifest.gene_order_sha256, "name": name}
            uns = {"sigscan": {"atlas_shard": {"name": name, "source": source.source}}}
            if source.provenance:
                uns["sigscan"]["attributions"] = {"atlas": _jsonable(source.provenance)}
            partial = relpath + PARTIAL
            checksum = write_shard(self.location, partial, arrays, obs, self.gene_order, attrs, uns)
            self.location.rename(partial, relpath)
            entry = ShardEntry(
                name=name,
                path=relpath,
                n_cells=len(obs),
                nnz=int(arrays[0].shape[0]),
                checksum=checksum,
                provenance=_jsonable(source.provenance),
            )
            self._commit(entry, source.provenance)

    def _commit(self, entry: ShardEntry, provenance: dict[str, Any]) -> None:
        manifest = read_manifest(self.location)  # the latest one: other shards may have been added meanwhile
        old = [e for e in manifest.shards if e.name == entry.name]
        manifest.shards = [e for e in manifest.shards if e.name != entry.name] + [entry]
        if manifest.method is None and provenance.get("method"):
            manifest.method = provenance["method"]
        if manifest.model is None and provenance.get("model"):
            manifest.model = provenance["model"]
        if manifest.model_checksum is None and provenance.get("weights_sha256"):
            manifest.model_checksum = provenance["weights_sha256"]
        write_manifest(self.location, manifest)
        self.manifest = manifest
        for stale in old:
            self.location.remove_tree(stale.path)
            self._readers.pop(stale.name, None)

    def _check_provenance(self, provenance: dict[str, Any], name: str, source: str) -> None:
        m = self.manifest
        checks = [
            ("n_genes_model", m.n_genes, "a model with {got} genes; the atlas is for {want} genes"),
            ("model", m.model, "model {got!r}; the atlas is for model {want!r}"),
            ("weights_sha256", m.model_checksum, "other model weights (checksum {got:.12}…, atlas {want:.12}…)"),
            ("method", m.method, "method {got!r}; the atlas holds {want!r} attributions"),
        ]
        for key, want, text in checks:
            got = provenance.get(key)
            if want is not None and got is not None and got != want:
                raise ValueError(
                    f"Shard {name!r}: the attributions of {source} come from {text.format(got=got, want=want)}. "
                    "Scores across shards are only comparable for one model and method: create a separate atlas "
                    "for them."
                )

    def remove(self, name: str) -> None:
        """Remove a shard (the manifest is updated first, then the shard's files are deleted)."""
        self.refresh()
        entry = self.manifest.shard(name)
        manifest = read_manifest(self.location)
        manifest.shards = [e for e in manifest.shards if e.name != name]
        write_manifest(self.location, manifest)
        self.manifest = manifest
        self.location.remove_tree(entry.path)
        self._readers.pop(name, None)

    def cleanup(self) -> list[str]:
        """Delete shard folders the manifest does not reference (left behind by interrupted writes)."""
        referenced = {os.path.basename(e.path) for e in self.refresh().manifest.shards}
        removed = [n for n in self.location.listdir(SHARDS) if n not in referenced]
        for folder in removed:
            self.location.remove_tree(SHARDS, folder)
        return removed

    # --- reading -------------------------------------------------------------------------------------------------

    def _reader(self, entry: ShardEntry) -> ShardReader:
        cached = self._readers.get(entry.name)
        if cached is not None and cached[0] == entry.path:
            return cached[1]
        reader = _open_reader(self.location, entry, self.manifest)
        self._readers[entry.name] = (entry.path, reader)
        return reader

    def info(self) -> pd.DataFrame:
        """One row per shard: cells, non-zeros, density, checksum, and the model/method it was made with."""
        rows = [
            {
                "shard": e.name,
                "n_cells": e.n_cells,
                "nnz": e.nnz,
                "nnz_per_cell": e.nnz / max(e.n_cells, 1),
                "model": e.provenance.get("model", self.manifest.model),
                "method": e.provenance.get("method", self.manifest.method),
                "checksum": e.checksum[:16],
                "path": e.path,
            }
            for e in self.manifest.shards
        ]
        columns = ["shard", "n_cells", "nnz", "nnz_per_cell", "model", "method", "checksum", "path"]
        return pd.DataFrame(rows, columns=columns).set_index("shard")

    def verify(self, *, progress: bool = True) -> pd.DataFrame:
        """Check every shard against the manifest: it opens, its gene order, shape, non-zeros and checksum match.

        Returns
        -------
        One row per shard (``ok``, ``problem``); raises :class:`ValueError` naming the damaged shards if any.
        """
        self.refresh()
        rows = []
        for entry in tqdm(self.manifest.shards, disable=not progress, desc="verifying shards", unit="shard"):
            problem = ""
            try:
                reader = _open_reader(self.location, entry, self.manifest)
                if reader.var_names().tolist() != self.gene_order.tolist():
                    raise reader.error("var does not hold the atlas gene order")
                data, indices, indptr = reader.read_all()
                obs = reader.obs()
                if (
                    reader.n_cells != entry.n_cells
                    or len(data) != entry.nnz
                    or len(indptr) != self.manifest.n_genes + 1
                ):
                    raise reader.error(
                        f"shape {reader.shape} with {len(data)} non-zeros, manifest says {entry.n_cells} cells and "
                        f"{entry.nnz} non-zeros"
                    )
                if shard_checksum(data, indices, indptr, obs.index.astype(str)) != entry.checksum:
                    raise reader.error("its checksum does not match the manifest")
            except (ShardError, FileNotFoundError) as error:
                problem = str(error)
            rows.append({"shard": entry.name, "ok": not problem, "problem": problem})
        report = pd.DataFrame(rows, columns=["shard", "ok", "problem"]).set_index("shard")
        bad = report.index[~report["ok"]].tolist()
        if bad:
            raise ValueError(f"{len(bad)} damaged shards ({', '.join(bad)}): " + " | ".join(report.loc[bad, "problem"]))
        return report

    def _columns(self, genes: Any, weights: Sequence[float] | None) -> tuple[np.ndarray, np.ndarray | None]:
        return match_weighted_genes(genes, self.gene_order, weights)

    def score(
        self,
        genes: Sequence[str] | str | os.PathLike,
        *,
        agg: Literal["mean", "sum"] = "mean",
        weights: Sequence[float] | None = None,
        obs_filter: ObsFilter = None,
        columns: Sequence[str] | None = None,
        key: str = "score",
        shards: Sequence[str] | None = None,
        backend: Backend | Any = "threads",
        n_jobs: int | None = None,
        progress: bool = True,
    ) -> pd.DataFrame:
        """Score a gene set over every cell of the atlas (SIGnature's mean attribution, zeros counted).

        Equal to :func:`sigscan.tl.attribution_score` on the same data. Only the selected gene columns of each
        shard are read.

        Parameters
        ----------
        genes
            The gene set: identifiers of the atlas gene order, or a GMT path (``file.gmt`` or ``file.gmt:SET``).
            Genes absent from the gene order are dropped with one warning.
        agg
            ``"mean"`` or ``"sum"``.
        weights
            Per-gene weights aligned with ``genes``: the score is ``Σ wᵢaᵢ / Σ wᵢ``.
        obs_filter
            Which cells to return: a :meth:`pandas.DataFrame.query` string over the obs columns
            (``"disease == 'MS' and cell_type == 'monocyte'"``), or a callable taking one shard's obs DataFrame and
            returning a boolean mask. Applied per shard; a shard lacking a column used by a query string is skipped
            with a warning.
        columns
            obs columns to return besides the score (default all; ``[]`` for none).
        key
            Name of the score column.
        shards
            Restrict to these shards (default all).
        backend
            ``"threads"`` (default: a thread pool over shards), ``"dask"`` (one ``dask.delayed`` task per shard, run
            by the current dask scheduler) or a ``dask.distributed.Client`` (one submitted task per shard).
        n_jobs
            Threads for ``"threads"`` (default: CPU count).
        progress
            Show a progress bar over shards.

        Returns
        -------
        DataFrame indexed by cell name with the obs columns and ``key`` (float32), shards in manifest order.
        """
        if key in (columns or []):
            raise ValueError(f"key {key!r} is also requested as an obs column; choose another key.")
        gene_columns, w = self._columns(genes, weights)
        if agg not in ("mean", "sum"):
            raise ValueError(f"Unknown agg {agg!r}; use 'mean' or 'sum'.")
        entries = self._entries(shards)
        if sum(e.nnz for e in entries) >= EARLY_KERNEL_LOADING:
            start_loading(wait=True)  # large atlas: loading numba once costs less than the numpy path (see _kernels.py)
        task = _ScoreTask(gene_columns, w, agg, obs_filter, None if columns is None else list(columns), key)
        with timed(f"scoring {len(gene_columns)} genes over {len(entries)} shards ({self.n_cells} cells)"):
            scores, frame = self._map(task, entries, backend, n_jobs, progress)
        absent = [c for c in columns or [] if c not in frame.columns]
        if absent and entries:
            raise KeyError(f"obs columns {absent} are in no shard of the selection; available: {list(frame.columns)}.")
        frame[key] = np.concatenate(scores) if scores else np.empty(0, np.float32)
        start_loading()  # the fast kernels for the next queries (see _kernels.py)
        return frame

    def matrix(
        self,
        genes: Sequence[str] | str | os.PathLike,
        *,
        shards: Sequence[str] | None = None,
        obs_filter: ObsFilter = None,
    ) -> sparse.csr_matrix:
        """The cells × genes attribution slice (CSR float32), rows in the order of :meth:`score`'s output.

        Parameters
        ----------
        genes
            Genes (columns in this order, after dropping genes absent from the gene order).
        shards
            Restrict to these shards.
        obs_filter
            As in :meth:`score`.
        """
        gene_columns, _ = self._columns(genes, None)
        blocks = []
        for entry in self._entries(shards):
            reader = self._reader(entry)
            block = reader.read_columns(gene_columns).tocsr()
            mask = _filter_mask(reader, obs_filter)
            blocks.append(block if mask is None else block[mask])
        if not blocks:
            return sparse.csr_matrix((0, len(gene_columns)), dtype=np.float32)
        return sparse.vstack(blocks, format="csr", dtype=np.float32)

    def obs(self, *, columns: Sequence[str] | None = None, shards: Sequence[str] | None = None) -> pd.DataFrame:
        """Cell metadata of the atlas (rows in the order of :meth:`score`)."""
        frames = []
        for entry in self._entries(shards):
            obs = self._reader(entry).obs()
            frames.append(obs if columns is None else obs[[c for c in columns if c in obs.columns]])
        return _concat(frames)

    def _entries(self, shards: Sequence[str] | None) -> list[ShardEntry]:
        if shards is None:
            return list(self.manifest.shards)
        return [self.manifest.shard(name) for name in shards]

    def _map(
        self, task: _ScoreTask, entries: list[ShardEntry], backend: Any, n_jobs: int | None, progress: bool
    ) -> tuple[list[np.ndarray], pd.DataFrame]:
        """Run ``task`` on every shard; returns the per-shard scores and the stacked obs rows."""
        if not entries:
            return [], _concat([])
        if backend == "threads":
            workers = min(n_jobs or os.cpu_count() or 1, len(entries))
            readers = [self._reader(e) for e in entries]
            if task.obs_filter is None:
                # obs rows do not depend on the scores: stack them here while the pool reads and sums columns
                # (reads and sums release the GIL)
                task.with_obs = False
                with ThreadPoolExecutor(max_workers=workers) as pool:
                    pending = pool.map(task, readers)
                    frame = _concat([reader.obs(task.obs_columns) for reader in readers])
                    results = list(
                        tqdm(pending, total=len(readers), disable=not progress, desc="scoring", unit="shard")
                    )
                return [scores for scores, _ in results], frame
            with ThreadPoolExecutor(max_workers=workers) as pool:
                results = list(
                    tqdm(
                        pool.map(task, readers), total=len(readers), disable=not progress, desc="scoring", unit="shard"
                    )
                )
            return [scores for scores, _ in results], _concat([frame for _, frame in results])
        return self._map_dask(task, entries, backend)

    def _map_dask(
        self, task: _ScoreTask, entries: list[ShardEntry], backend: Any
    ) -> tuple[list[np.ndarray], pd.DataFrame]:
        url, options = self.location.url, self.location.storage_options
        manifest = self.manifest
        if backend == "dask":
            import dask

            delayed = [dask.delayed(_score_remote)(task, url, options, e, manifest) for e in entries]
            results = list(dask.compute(*delayed))
        elif hasattr(backend, "submit") and hasattr(backend, "gather"):
            futures = [backend.submit(_score_remote, task, url, options, e, manifest, pure=False) for e in entries]
            results = backend.gather(futures)
        else:
            raise ValueError(f"Unknown backend {backend!r}; use 'threads', 'dask' or a dask.distributed.Client.")
        return [scores for scores, _ in results], _concat([frame for _, frame in results])

    # --- building from counts ---------------------------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        path: str | os.PathLike,
        sources: Any,
        model: AttributionModel | str,
        *,
        method: str = "ig",
        client: Any = None,
        block_size: int | None = None,
        obs_columns: Sequence[str] | None = None,
        progress: bool = True,
        layer: str | None = None,
        n_steps: int = 50,
        batch_size: int | None = None,
        head: str = "auto",
        target_sum: float = 1000,
        device: str = "auto",
        engine: str = "auto",
        gene_symbols: str | None = None,
        gene_ids: str | None = None,
        measurement: str = "RNA",
        X_name: str = "raw",
        obs_value_filter: str | None = None,
        var_value_filter: str | None = None,
        retries: int = 1,
        cells_per_shard: int | None = None,
        storage_options: dict[str, Any] | None = None,
    ) -> Atlas:
        """Compute the attributions of many datasets and write them straight into the shards of an atlas.

        One task per block of rows of one source; with a ``dask.distributed.Client`` the tasks run on its workers
        (each loads the model once), otherwise in this process. Finished blocks are kept under
        ``<path>/.build/`` until their source's shard is committed, so a killed build started again computes only the
        missing blocks. The shards are identical to :func:`sigscan.pp.attributions` followed by :meth:`add` (one
        shard per source, named after it).

        Parameters
        ----------
        path
            The atlas folder; created for ``model`` when it holds no atlas yet. Workers write blocks there, so on a
            cluster it must be a path (or URL) every worker can reach.
        sources
            Raw counts: ``.h5ad`` files or AnnData zarr stores, a folder of them, or a mapping ``{name: source}``
            whose values may also be AnnData objects and TileDB-SOMA experiments (URI or open ``Experiment``).
            Shards are named by the mapping's keys or the file names.
        model
            A :mod:`sigscan.models` wrapper, or ``"KIND:DIR"`` (e.g. ``"scimilarity:./model"``) for workers to load it
            from a folder they can reach (cheaper than sending the weights).
        method, n_steps, head, target_sum, device, engine, gene_symbols, gene_ids
            As in :func:`sigscan.pp.attributions`.
        client
            A ``dask.distributed.Client``; ``None`` computes the blocks in this process. With GPUs, run one worker per
            device (e.g. ``dask_cuda.LocalCUDACluster``): ``device="auto"`` is resolved on each worker.
        block_size
            Rows per task: a multiple of the attribution batch size (default 16 batches).
        obs_columns
            Cell metadata columns to keep in the shards (default all).
        progress
            Show a progress bar over all cells of the build.
        layer
            Layer of AnnData and h5ad/zarr sources holding raw counts (``None``: ``X``).
        batch_size
            Attribution batch size (default as in :func:`sigscan.pp.attributions`, resolved here and used by every
            worker).
        measurement, X_name, obs_value_filter, var_value_filter
            For SOMA sources: measurement, X layer with raw counts, and value filters selecting cells and genes.
        retries
            Times a failed block is retried before it is reported (by source and rows) in a :class:`RuntimeError`;
            the blocks that finished are kept.
        cells_per_shard
            Split each source into shards of this many cells (a multiple of ``block_size``), named
            ``<name>-00000``, ``<name>-00001``, …: a shard is assembled in memory when its last block is done, so a source
            larger than memory (a Census query) needs it. Default: one shard per source.
        storage_options
            Passed to fsspec for URLs.

        Returns
        -------
        The atlas.

        Examples
        --------
        >>> import tempfile
        >>> import sigscan as ss
        >>> adata = ss.datasets.pbmc3k()[:60].copy()
        >>> model = ss.models.SCimilarity.random(adata.var_names, hidden_dim=(16,), latent_dim=4)
        >>> atlas = ss.Atlas.build(tempfile.mkdtemp() + "/atlas", {"pbmc": adata}, model, method="ixg", progress=False)
        >>> atlas.n_cells
        60
        """
        from .._model_spec import load_model
        from ._build import Options, build

        model_object = load_model(model) if isinstance(model, str) else model
        location = Location(path, storage_options)
        if location.exists(MANIFEST):
            atlas = cls(path, storage_options=storage_options)
        else:
            atlas = cls.create(path, model=model_object, storage_options=storage_options)
        options = Options(method, n_steps, head, engine, device, batch_size, target_sum, gene_symbols, gene_ids)
        soma_options = {
            "measurement": measurement,
            "X_name": X_name,
            "obs_value_filter": obs_value_filter,
            "var_value_filter": var_value_filter,
        }
        build(
            atlas,
            sources,
            model_object,
            model_ref=model,
            options=options,
            block_size=block_size,
            client=client,
            layer=layer,
            obs_columns=obs_columns,
            soma_options=soma_options,
            retries=retries,
            progress=progress,
            cells_per_shard=cells_per_shard,
        )
        return atlas.refresh()

    # --- import --------------------------------------------------------------------------------------------------

    @classmethod
    def from_signature_tiledb(
        cls,
        uri: str,
        gene_order: Sequence[str],
        obs: pd.DataFrame,
        *,
        path: str | os.PathLike,
        name: str = "signature",
        cells_per_shard: int = 100_000,
        method: str | None = None,
        attr_name: str = "vals",
        x_name: str = "x",
        y_name: str = "y",
        progress: bool = True,
    ) -> Atlas:
        """Import a SIGnature TileDB attribution array into a new atlas, streaming ``cells_per_shard`` cells at a time.

        Parameters
        ----------
        uri
            The TileDB array (written by ``SIGnature.create_tiledb``).
        gene_order
            The model's gene order (the array's ``y`` positions).
        obs
            Cell metadata, one row per cell of the array, in its ``x`` order.
        path
            The new atlas folder.
        name
            Shard name; with several shards, ``f"{name}-{i}"``.
        cells_per_shard
            Cells per shard (each shard is built in memory).
        method
            Attribution method to record (the TileDB array does not store it).
        attr_name, x_name, y_name
            Attribute and dimension names of the array.
        progress
            Show a progress bar.

        Returns
        -------
        The new atlas.

        Examples
        --------
        >>> import sigscan as ss
        >>> atlas = ss.Atlas.from_signature_tiledb(
        ...     "attributions.tdb", gene_order, obs, path="atlas"
        ... )  # doctest: +SKIP
        """
        from ._tiledb import from_signature_tiledb

        return from_signature_tiledb(
            uri,
            gene_order,
            obs,
            path=path,
            name=name,
            cells_per_shard=cells_per_shard,
            method=method,
            attr_name=attr_name,
            x_name=x_name,
            y_name=y_name,
            progress=progress,
        )

    def _add_arrays(
        self, matrix: sparse.csr_matrix, obs: pd.DataFrame, *, name: str, provenance: dict[str, Any]
    ) -> None:
        """Add a CSR matrix already in the atlas gene order (used by importers)."""
        import anndata as ad

        adata = ad.AnnData(X=None, obs=obs, var=pd.DataFrame(index=self.gene_order))
        adata.layers["attributions"] = matrix
        if provenance:
            adata.uns["sigscan"] = {"attributions": {"attributions": provenance}}
        self.add(adata, name=name, layer="attributions")


class _ScoreTask:
    """Score one shard (picklable, so it can run as a dask task)."""

    def __init__(
        self,
        columns: np.ndarray,
        weights: np.ndarray | None,
        agg: str,
        obs_filter: ObsFilter,
        obs_columns: list[str] | None,
        key: str,
    ):
        order = np.argsort(columns, kind="stable")  # ascending columns → ascending byte ranges
        self.columns = columns[order]
        w = np.ones(len(columns)) if weights is None else weights
        self.weights = np.asarray(w, dtype=np.float64)[order]
        self.denominator = self.weights.sum() if agg == "mean" else 1.0
        self.obs_filter, self.obs_columns, self.key = obs_filter, obs_columns, key
        #: whether the task also returns the shard's (filtered) obs rows
        self.with_obs = True

    def select(self, obs: pd.DataFrame) -> pd.DataFrame:
        """The requested obs columns (those the shard has)."""
        return obs if self.obs_columns is None else obs[[c for c in self.obs_columns if c in obs.columns]]

    def __call__(self, reader: ShardReader) -> tuple[np.ndarray, pd.DataFrame | None]:
        totals = reader.column_sums(self.columns, self.weights)
        scores = (totals / self.denominator).astype(np.float32)
        if not self.with_obs:
            return scores, None
        mask = _filter_mask(reader, self.obs_filter)
        frame = reader.obs(self.obs_columns) if mask is None else self.select(reader.obs())
        if mask is not None:
            frame, scores = frame[mask], scores[mask]
        return scores, frame


def _score_remote(
    task: _ScoreTask, url: str, options: dict[str, Any], entry: ShardEntry, manifest: Manifest
) -> tuple[np.ndarray, pd.DataFrame]:
    return task(_open_reader(Location(url, options), entry, manifest))


def _open_reader(location: Location, entry: ShardEntry, manifest: Manifest) -> ShardReader:
    if not location.exists(entry.path):
        raise ShardError(
            f"Shard {entry.name!r} is missing: {location.join(entry.path)} does not exist. Remove it from the atlas "
            f"with atlas.remove({entry.name!r}) and add the dataset again."
        )
    return ShardReader(location, entry.name, entry.path, manifest.gene_order_sha256, manifest.n_genes)


def _filter_mask(reader: ShardReader, obs_filter: ObsFilter) -> np.ndarray | None:
    if obs_filter is None:
        return None
    obs = reader.obs()
    if isinstance(obs_filter, str):
        try:
            mask = obs.eval(obs_filter)
        except pd.errors.UndefinedVariableError as error:
            logger.warning(
                "shard %r: obs_filter %r cannot be evaluated (%s); skipping the shard", reader.name, obs_filter, error
            )
            return np.zeros(len(obs), dtype=bool)
    elif callable(obs_filter):
        mask = obs_filter(obs)
    else:
        raise TypeError("obs_filter must be a pandas query string or a callable obs → boolean mask.")
    mask = np.asarray(mask)
    if mask.dtype != bool or mask.shape != (len(obs),):
        raise ValueError(
            f"obs_filter must give one boolean per cell of each shard (shard {reader.name!r}: got dtype {mask.dtype}, "
            f"shape {mask.shape}, expected ({len(obs)},))."
        )
    return mask


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Stack per-shard frames column by column (categoricals stay categorical with the union of categories).

    Cheaper than :func:`pandas.concat` for many rows: one :func:`numpy.concatenate` per column and for the index.
    A column missing from some shards is filled with missing values there.
    """
    if not frames:
        return pd.DataFrame(index=pd.Index([], dtype=object))
    frames = [f for f in frames if len(f)] or frames[:1]
    values = np.concatenate([f.index.to_numpy() for f in frames])
    index = pd.Index(values, dtype=object if values.dtype == object else None, copy=False)
    names = list(dict.fromkeys(c for f in frames for c in f.columns))
    columns = {}
    for name in names:
        parts = [f[name] if name in f.columns else pd.Series(pd.NA, index=f.index, dtype=object) for f in frames]
        if all(isinstance(p.dtype, pd.CategoricalDtype) for p in parts):
            columns[name] = pd.Categorical(pd.api.types.union_categoricals(parts, ignore_order=True))
        elif len({p.dtype for p in parts}) == 1 and not isinstance(parts[0].dtype, pd.api.extensions.ExtensionDtype):
            columns[name] = np.concatenate([p.to_numpy() for p in parts])
        else:
            columns[name] = pd.concat([p.reset_index(drop=True) for p in parts], ignore_index=True).to_numpy()
    return pd.DataFrame(columns, index=index, copy=False)


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name or any(c in name for c in '/\\:*?"<>|') or name.startswith("."):
        raise ValueError(f"Invalid shard name {name!r}: use letters, digits, '-', '_' or '.' (no slashes).")


def _jsonable(value: Any) -> Any:
    """Provenance as plain JSON types."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


__all__ = ["Atlas"]
