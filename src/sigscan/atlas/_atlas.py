"""``ss.Atlas``: attributions of many datasets on disk, one CSC shard per dataset, queried a gene set at a time."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from scipy import sparse
from tqdm.auto import tqdm

from .._gene_sets import as_gene_list, match_weighted_genes, set_weights
from .._logging import logger, timed
from .._utils import sha256_strings
from ._gene_index import GENE_INDEX, GeneIndex, encode_gene_index, index_problem
from ._input import map_to_gene_order, read_input
from ._integrity import (
    check_scores,
    check_slice,
    discard_if_empty,
    find_orphans,
    remove_path,
    removed_error,
    size_of,
    sweep_orphans,
    value_bound,
)
from ._kernels import prepare, query_done
from ._location import Location
from ._lock import Writer, atlas_lock
from ._manifest import GENE_ORDER, MANIFEST, PARTIAL, SHARDS, Manifest, ShardEntry, read_manifest, write_manifest
from ._obs import as_names_index, names_dtype
from ._shard import ShardError, ShardReader, compact_obs, shard_checksum, to_csc, write_shard

if TYPE_CHECKING:
    from anndata import AnnData

    from ..models import AttributionModel

ObsFilter = str | Callable[[pd.DataFrame], Any] | None
Backend = Literal["threads", "dask"]


class Atlas:
    """An on-disk attribution atlas: a manifest ``atlas.json`` and one AnnData-zarr shard per dataset.

    Each shard stores the attributions of one dataset as ``X`` in CSC float32 (cells × the model's genes), the
    cells' metadata as ``obs`` and the model's gene order as ``var``. Scoring a gene set reads only the selected
    gene columns of each shard, in parallel over shards, plus one small file per shard holding what else a query needs
    (column pointers, cell names, obs), and looks the genes up in a sorted index of the gene order: a fresh process's
    first query costs little more than later ones.

    Any number of processes may add and remove shards at once (commits are serialised by an OS lock on
    ``<atlas>/.lock``; on NFS the folder must be on a lock-capable mount; on object stores write from one process at a
    time). Queries read one manifest snapshot and check the columns they read: a missing chunk, inconsistent column
    pointers or a non-finite value is an error naming the shard (and the gene), never a silent wrong score.

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
        self._gene_index: GeneIndex | bool | None = False  # False: not opened yet
        self._readers: dict[str, tuple[str, ShardReader]] = {}

    # --- creation ------------------------------------------------------------------------------------------------

    @classmethod
    def exists(cls, path: str | os.PathLike, *, storage_options: dict[str, Any] | None = None) -> bool:
        """Whether ``path`` holds an atlas (its manifest).

        Examples
        --------
        >>> import tempfile, sigscan as ss
        >>> path = tempfile.mkdtemp() + "/atlas"
        >>> ss.Atlas.exists(path)
        False
        >>> _ = ss.Atlas.create(path, gene_order=["A", "B"])
        >>> ss.Atlas.exists(path)
        True
        """
        return Location(path, storage_options).exists(MANIFEST)

    def discard_if_empty(self, *, remove_folder: bool = False) -> bool:
        """Delete this atlas when it holds no shard, no running write and no finished build blocks.

        For tidying up after a failed first build (``sigscan atlas build`` does this): the atlas's files go, and with
        ``remove_folder=True`` the folder too. An atlas with anything to keep or resume is left as it is.
        Returns whether it was deleted.

        Examples
        --------
        >>> import tempfile, sigscan as ss
        >>> atlas = ss.Atlas.create(tempfile.mkdtemp() + "/atlas", gene_order=["A", "B"])
        >>> atlas.discard_if_empty(remove_folder=True)
        True
        """
        return discard_if_empty(self.location, remove_folder)

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
        exists = FileExistsError(f"{location} already holds an atlas; open it with ss.Atlas({str(path)!r}).")
        if location.exists(MANIFEST):
            raise exists
        fresh = not location.exists()
        manifest = Manifest(
            gene_order_sha256=sha256_strings(genes),
            n_genes=len(genes),
            model=model.name if model is not None else None,
            model_checksum=model.checksum if model is not None else None,
        )
        try:
            location.makedirs(SHARDS)
            with atlas_lock(location):
                if location.exists(MANIFEST):  # another process created it meanwhile
                    fresh = False
                    raise exists
                location.write_atomic(("\n".join(genes) + "\n").encode(), GENE_ORDER)
                index = encode_gene_index(genes, manifest.gene_order_sha256)
                if index is not None:
                    location.write_atomic(index.tobytes(), GENE_INDEX)
                write_manifest(location, manifest)
        except BaseException:  # a failed create leaves nothing behind
            if fresh:
                location.remove_tree()
            raise
        logger.info("created atlas %s for %d genes", location, len(genes))
        return cls(path, storage_options=storage_options)

    # --- properties ----------------------------------------------------------------------------------------------

    @property
    def gene_order(self) -> pd.Index:
        """The model's genes (the columns of every shard)."""
        if self._gene_order is None:
            if not self.location.exists(GENE_ORDER):
                raise FileNotFoundError(f"{self.location.join(GENE_ORDER)} is missing; the atlas is damaged.")
            raw = self.location.read_bytes(GENE_ORDER)
            genes = raw.decode().splitlines()
            # the file is "gene\n" per gene: its bytes with "\0" for "\n" are what sha256_strings hashes (one pass)
            simple = raw.endswith(b"\n") and b"\0" not in raw and b"\r" not in raw and raw.count(b"\n") == len(genes)
            digest = hashlib.sha256(raw.replace(b"\n", b"\0")).hexdigest() if simple else sha256_strings(genes)
            if digest != self.manifest.gene_order_sha256:
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

        The shard is written aside (``shards/<name>.<writer>.zarr.partial``, a name unique to this call), renamed
        into place, and only then committed by atomically replacing ``atlas.json`` under the atlas's lock file; a
        crash at any point leaves the previous atlas intact, and a failed call leaves nothing. Any number of
        processes may add and remove shards at once (on a local or network file system with locks; on object stores
        write from one process at a time). Adding the same data under the same name again does nothing.

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
        self._check_provenance(source.provenance, name, source.source)  # before mapping a large matrix
        matrix = map_to_gene_order(source.matrix, source.genes, self.gene_order, name=name, source=source.source)
        self.add_matrix(
            matrix, source.obs, name=name, provenance=source.provenance, overwrite=overwrite, source=source.source
        )

    def add_matrix(
        self,
        matrix: sparse.csr_matrix,
        obs: pd.DataFrame,
        *,
        name: str,
        provenance: dict[str, Any] | None = None,
        overwrite: bool = False,
        source: str = "the data",
    ) -> None:
        """Add a shard from a CSR attribution matrix that is already in the atlas gene order.

        The writer behind :meth:`add` (same guarantees: written aside, committed atomically under the lock,
        idempotent), for importers and builders that hold the matrix itself rather than an AnnData.

        Parameters
        ----------
        matrix
            Cells × ``len(atlas.gene_order)`` attributions (CSR), columns in :attr:`gene_order`.
        obs
            Cell metadata, one row per row of ``matrix``.
        name
            Shard name.
        provenance
            The ``pp.attributions`` provenance (model, method, weights checksum); checked against the atlas.
        overwrite
            Replace an existing shard of that name holding other data.
        source
            How to name the data in error messages.

        Examples
        --------
        >>> import tempfile, numpy as np, pandas as pd
        >>> from scipy import sparse
        >>> import sigscan as ss
        >>> atlas = ss.Atlas.create(tempfile.mkdtemp() + "/atlas", gene_order=["A", "B", "C"])
        >>> matrix = sparse.csr_matrix(np.array([[500.0, 500.0, 0.0], [0.0, 0.0, 1000.0]], dtype=np.float32))
        >>> atlas.add_matrix(matrix, pd.DataFrame(index=["c1", "c2"]), name="toy")
        >>> atlas.n_cells
        2
        """
        _check_name(name)
        provenance = provenance or {}
        if matrix.shape != (len(obs), len(self.gene_order)):
            raise ValueError(
                f"Shard {name!r}: the matrix is {matrix.shape[0]} × {matrix.shape[1]} but obs has {len(obs)} rows and "
                f"the atlas {len(self.gene_order)} genes; map the columns to atlas.gene_order first."
            )
        self._check_provenance(provenance, name, source)
        with timed(f"adding shard {name!r}: {matrix.shape[0]} cells, {matrix.nnz} non-zeros"):
            arrays = to_csc(sparse.csr_matrix(matrix), len(self.gene_order))
            del matrix
            obs = compact_obs(obs)
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
            attrs = {
                "gene_order_sha256": self.manifest.gene_order_sha256,
                "name": name,
                "max_abs": value_bound(arrays[0], name, source),
            }
            uns = {"sigscan": {"atlas_shard": {"name": name, "source": source}}}
            if provenance:
                uns["sigscan"]["attributions"] = {"atlas": _jsonable(provenance)}
            with Writer(self.location) as writer:
                relpath = f"{SHARDS}/{name}.{writer.token}.zarr"
                partial = relpath + PARTIAL
                try:
                    checksum = write_shard(self.location, partial, arrays, obs, self.gene_order, attrs, uns)
                    self.location.rename(partial, relpath)
                    entry = ShardEntry(
                        name=name,
                        path=relpath,
                        n_cells=len(obs),
                        nnz=int(arrays[0].shape[0]),
                        checksum=checksum,
                        provenance=_jsonable(provenance),
                    )
                    self._commit(entry, provenance, overwrite=overwrite, source=source)
                finally:
                    # failed, or the same data was committed by another writer meanwhile: leave nothing behind
                    if all(e.path != relpath for e in self.manifest.shards):
                        self.location.remove_tree(partial)
                        self.location.remove_tree(relpath)

    def _commit(
        self, entry: ShardEntry, provenance: dict[str, Any], *, overwrite: bool = True, source: str = "the data"
    ) -> bool:
        """Put ``entry`` in the manifest under the atlas lock; ``False`` when that shard already holds this data."""
        with atlas_lock(self.location):
            manifest = read_manifest(self.location)  # the latest one: other writers may have committed meanwhile
            old = [e for e in manifest.shards if e.name == entry.name]
            if old and old[0].checksum == entry.checksum:
                logger.info("shard %r already holds this data; nothing to do", entry.name)
                self.manifest = manifest
                return False
            if old and not overwrite:
                raise ValueError(
                    f"The atlas already has a shard {entry.name!r} holding other data (added by another process "
                    "meanwhile); pass overwrite=True to replace it or choose another name."
                )
            self._check_provenance(provenance, entry.name, source, manifest)
            manifest.shards = [e for e in manifest.shards if e.name != entry.name] + [entry]
            if manifest.method is None and provenance.get("method"):
                manifest.method = provenance["method"]
            if manifest.model is None and provenance.get("model"):
                manifest.model = provenance["model"]
            if manifest.model_checksum is None and provenance.get("weights_sha256"):
                manifest.model_checksum = provenance["weights_sha256"]
            write_manifest(self.location, manifest)
            self.manifest = manifest  # committed: nothing below may undo it
            _tidy(lambda: sweep_orphans(self.location, manifest))
        for stale in old:
            _tidy(lambda stale=stale: self.location.remove_tree(stale.path))
            self._readers.pop(stale.name, None)
        return True

    def _check_provenance(
        self, provenance: dict[str, Any], name: str, source: str, manifest: Manifest | None = None
    ) -> None:
        m = manifest or self.manifest
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
        """Remove a shard (the manifest is updated first, under the atlas lock, then the shard's files are deleted).

        Readers that opened the atlas before and read that shard afterwards get an error telling them to reopen it.
        """
        with atlas_lock(self.location):
            manifest = read_manifest(self.location)
            entry = manifest.shard(name)
            manifest.shards = [e for e in manifest.shards if e.name != name]
            write_manifest(self.location, manifest)
            self.manifest = manifest
            _tidy(lambda: sweep_orphans(self.location, manifest))
        _tidy(lambda: self.location.remove_tree(entry.path))
        self._readers.pop(name, None)

    # --- reading -------------------------------------------------------------------------------------------------

    def _reader(self, entry: ShardEntry) -> ShardReader:
        cached = self._readers.get(entry.name)
        if cached is not None and cached[0] == entry.path:
            return cached[1]
        reader = _open_reader(self.location, entry, self.manifest)
        self._readers[entry.name] = (entry.path, reader)
        return reader

    def _read(self, entry: ShardEntry, read: Callable[[ShardReader], Any]) -> Any:
        """``read(reader of entry)``; a shard removed by another process since the manifest was read says so."""
        return _guarded(self.location, entry, lambda: read(self._reader(entry)))

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

    def verify(self, *, repair: bool = False, progress: bool = True) -> pd.DataFrame:
        """Check every shard against the manifest, and look for leftovers of interrupted writes.

        A shard passes when it opens and its gene order, shape, non-zeros and checksum match the manifest, and its query
        header (the one-file copy of its column pointers, cell names and obs that queries read) agrees with its AnnData
        files. The gene index (``gene_index.bin``, for looking up gene sets) must match the gene order. A leftover
        (orphan) is a shard folder no manifest entry references and no running writer owns, or a temporary manifest
        file: what a killed ``add`` leaves behind. Orphans are also deleted by the next ``add`` or ``remove`` on a
        local atlas.

        Parameters
        ----------
        repair
            Delete the orphans and write the gene index again when it is damaged or missing (atlases created before
            it existed). Damaged shards are only reported: remove them with :meth:`remove` and add the datasets
            again. On object-store URLs, where writers in other processes cannot be seen, repair only when no other
            process writes to the atlas.
        progress
            Show a progress bar.

        Returns
        -------
        One row per shard, per orphan (its path) and for a damaged or rewritten gene index, with ``ok`` and
        ``problem``; raises :class:`ValueError` naming the damaged shards, a damaged gene index and the orphans left
        (with ``repair=True``, deleted orphans and a rewritten index are reported as ``ok``).

        Examples
        --------
        >>> report = atlas.verify(repair=True)  # doctest: +SKIP
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
                reader.names(full_check=True)
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
                if reader.has_names_copy and not reader.stored_index().equals(obs.index):
                    raise reader.error("the cell names in obs/_sigscan_names differ from obs/_index")
                header_problem = reader.header_problem(indptr)
                if header_problem:
                    raise reader.error(header_problem)
            except (ShardError, FileNotFoundError) as error:
                problem = str(error)
            rows.append({"shard": entry.name, "ok": not problem, "problem": problem})
        orphans, index_damage = [], None
        with atlas_lock(self.location, read_only=not repair):
            index_damage = index_problem(self.location, self.manifest.gene_order_sha256, self.manifest.n_genes)
            if index_damage is not None and repair:
                genes = self.gene_order.tolist()
                index = encode_gene_index(genes, self.manifest.gene_order_sha256)
                if index is not None:
                    self.location.write_atomic(index.tobytes(), GENE_INDEX)
                    self._gene_index = False
                    rows.append({"shard": GENE_INDEX, "ok": True, "problem": f"{index_damage}; written again"})
                index_damage = None
            elif index_damage is not None and index_damage != "missing":  # an atlas made before the index: no damage
                fix = "write it again with atlas.verify(repair=True)"
                rows.append({"shard": GENE_INDEX, "ok": False, "problem": f"{index_damage}; {fix}"})
            else:
                index_damage = None
            for relpath in find_orphans(self.location, read_manifest(self.location)):
                size = size_of(self.location, relpath)
                if repair:
                    remove_path(self.location, relpath)
                    logger.info("removed %s (%.1f MB), left by an interrupted write", relpath, size / 1e6)
                orphans.append(relpath)
                fix = "deleted" if repair else "delete it with atlas.verify(repair=True)"
                problem = f"left by an interrupted write ({size / 1e6:.1f} MB); {fix}"
                rows.append({"shard": relpath, "ok": repair, "problem": problem})
        report = pd.DataFrame(rows, columns=["shard", "ok", "problem"]).set_index("shard")
        bad = [name for name in report.index[~report["ok"]] if name not in orphans and name != GENE_INDEX]
        left = [] if repair else orphans
        messages = []
        if bad:
            messages.append(f"{len(bad)} damaged shards ({', '.join(bad)}): " + " | ".join(report.loc[bad, "problem"]))
        if index_damage:
            messages.append(f"the gene index is damaged: {index_damage}; write it again with atlas.verify(repair=True)")
        if left:
            messages.append(
                f"{len(left)} leftovers of interrupted writes ({', '.join(left)}), not part of the atlas: delete them "
                "with atlas.verify(repair=True) (`sigscan atlas verify --repair`)"
            )
        if messages:
            raise ValueError(". ".join(messages))
        return report

    def _columns(self, genes: Any, weights: Sequence[float] | None) -> tuple[np.ndarray, np.ndarray | None]:
        """Columns (and weights) of a gene set: through the gene index when it holds every gene, else pandas."""
        gene_list = as_gene_list(genes)
        if self._gene_index is False:
            self._gene_index = GeneIndex.open(self.location, self.manifest.gene_order_sha256, self.manifest.n_genes)
        if self._gene_index is not None and gene_list:
            columns = self._gene_index.columns(gene_list)
            if (columns >= 0).all():
                return columns, None if weights is None else set_weights(gene_list, weights, gene_list)
        # absent genes (warned about), an empty set (an error), or no usable index
        return match_weighted_genes(gene_list, self.gene_order, weights)

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
        prepare(sum(e.nnz for e in entries))  # a large query may wait for a fast kernel (see _kernels.py)
        task = _ScoreTask(gene_columns, w, agg, obs_filter, None if columns is None else list(columns), key)
        with timed(f"scoring {len(gene_columns)} genes over {len(entries)} shards ({self.n_cells} cells)"):
            scores, frame = self._map(task, entries, backend, n_jobs, progress)
        absent = [c for c in columns or [] if c not in frame.columns]
        if absent and entries:
            raise KeyError(f"obs columns {absent} are in no shard of the selection; available: {list(frame.columns)}.")
        frame[key] = np.concatenate(scores) if scores else np.empty(0, np.float32)
        query_done()  # from the second query of a process on, load the fast kernels for the next ones (_kernels.py)
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
            block, mask = self._read(
                entry, lambda reader: (_checked_columns(reader, gene_columns).tocsr(), _filter_mask(reader, obs_filter))
            )
            blocks.append(block if mask is None else block[mask])
        if not blocks:
            return sparse.csr_matrix((0, len(gene_columns)), dtype=np.float32)
        return sparse.vstack(blocks, format="csr", dtype=np.float32)

    def obs(self, *, columns: Sequence[str] | None = None, shards: Sequence[str] | None = None) -> pd.DataFrame:
        """Cell metadata of the atlas (rows in the order of :meth:`score`)."""
        frames = []
        for entry in self._entries(shards):
            obs = self._read(entry, lambda reader: reader.obs())
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
            readers = [self._read(e, lambda reader: reader) for e in entries]
            pairs = list(zip(entries, readers, strict=True))

            def run(pair: tuple[ShardEntry, ShardReader]) -> tuple[np.ndarray, pd.DataFrame | None]:
                return _guarded(self.location, pair[0], lambda: task(pair[1]))

            def shown(results: Any) -> Any:  # tqdm's first bar creates a multiprocessing lock (~10 ms): only if shown
                return tqdm(results, total=len(readers), desc="scoring", unit="shard") if progress else results

            if task.obs_filter is None:
                # obs rows do not depend on the scores: stack them here while the pool reads and sums columns
                # (reads and sums release the GIL)
                task.with_obs = False
                with ThreadPoolExecutor(max_workers=workers) as pool:
                    pending = pool.map(run, pairs)
                    frame = _concat([self._read(e, lambda reader: reader.obs(task.obs_columns)) for e in entries])
                    results = list(shown(pending))
                return [scores for scores, _ in results], frame
            with ThreadPoolExecutor(max_workers=workers) as pool:
                results = list(shown(pool.map(run, pairs)))
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
            Shards are named by the mapping's keys or the file names; a folder of inputs (also as a mapping value)
            expands to one shard per file, named after the file.
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
        check_scores(reader, totals, self.columns, self.weights)
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
    location = Location(url, options)
    return _guarded(location, entry, lambda: task(_open_reader(location, entry, manifest)))


def _tidy(delete: Callable[[], None]) -> None:
    """Run a deletion after a commit; a failure is logged (``verify`` reports what is left), never undoes the commit."""
    try:
        delete()
    except Exception as error:
        logger.warning(
            "could not delete a leftover (%s: %s); atlas.verify(repair=True) retries", type(error).__name__, error
        )


def _guarded(location: Location, entry: ShardEntry, read: Callable[[], Any]) -> Any:
    """``read()``; when it fails because another process removed the shard meanwhile, an error saying so."""
    try:
        return read()
    except ShardError as error:
        gone = removed_error(location, entry)
        if gone is None:
            raise
        raise gone from error


def _checked_columns(reader: ShardReader, columns: np.ndarray) -> sparse.csc_matrix:
    """The column slice, its values checked (non-finite or beyond the values written: an error naming the gene)."""
    block = reader.read_columns(columns)
    check_slice(reader, block.data, block.indices, block.indptr, np.asarray(columns))
    return block


def _open_reader(location: Location, entry: ShardEntry, manifest: Manifest) -> ShardReader:
    if not location.exists(entry.path):
        raise ShardError(
            f"Shard {entry.name!r} is missing: {location.join(entry.path)} does not exist. Remove it from the atlas "
            f"with atlas.remove({entry.name!r}) and add the dataset again."
        )
    reader = ShardReader(location, entry.name, entry.path, manifest.gene_order_sha256, manifest.n_genes)
    reader.expected_nnz = entry.nnz
    return reader


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
        return pd.DataFrame(index=pd.Index([], dtype=names_dtype()))
    frames = [f for f in frames if len(f)] or frames[:1]
    # cell names are Arrow-backed strings: appending them chains the shards' buffers (no Python string per cell)
    indexes = [as_names_index(f.index) for f in frames]
    index = (indexes[0].append(indexes[1:]) if len(indexes) > 1 else indexes[0]).rename(None)
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
