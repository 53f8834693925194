"""The files a first query reads instead of many small ones: the shards' query headers and the atlas gene index.

Oracles: the AnnData files of the same shard (anndata's own reader), pandas matching of the gene order, and the atlas
read without the header / index (as written before they existed).
"""

from __future__ import annotations

import logging
import shutil
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import sigscan as ss
from sigscan._gene_sets import match_weighted_genes
from sigscan.atlas._gene_index import GENE_INDEX
from sigscan.atlas._header import HEADER

LAYER = "attr_scimilarity_ixg"


@pytest.fixture
def mixed(pbmc):
    """PBMC cells whose obs has every kind of column a shard may hold."""
    adata = pbmc[:120].copy()
    rng = np.random.default_rng(0)
    adata.obs["stage"] = pd.Categorical(
        rng.choice(["lo", "mid", "hi"], adata.n_obs), categories=["lo", "mid", "hi"], ordered=True
    )
    adata.obs["depth"] = rng.normal(size=adata.n_obs).astype(np.float32)
    adata.obs["n_genes"] = rng.integers(0, 5000, adata.n_obs)
    adata.obs["flag"] = rng.random(adata.n_obs) < 0.3
    adata.obs["barcode"] = [f"bc{i}-{rng.integers(1e6)}" for i in range(adata.n_obs)]  # unique strings: object
    adata.obs["batch"] = pd.Categorical(rng.integers(0, 3, adata.n_obs))  # integer categories
    adata.obs["donor"] = pd.Categorical(rng.choice(["d1", "d2", None], adata.n_obs))  # missing values (code -1)
    return adata


def _shard(atlas: ss.Atlas, name: str) -> Path:
    return Path(atlas.location.join(atlas.manifest.shard(name).path))


def test_query_header_equals_the_anndata_files(tmp_path, mixed, kang, model, gene_set):
    atlas = ss.Atlas.create(tmp_path / "atlas", model=model)
    atlas.add(mixed, name="mixed")
    atlas.add(kang, name="kang")
    fresh = ss.Atlas(tmp_path / "atlas")
    reader = fresh._reader(fresh.manifest.shard("mixed"))
    assert reader.header is not None
    # anndata reads the shard without a warning about the header (a valid zarr node it ignores)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stored = ad.read_zarr(_shard(atlas, "mixed"))
    header_obs = reader.obs()
    assert list(header_obs.columns) == list(stored.obs.columns)
    pd.testing.assert_frame_equal(header_obs, stored.obs, check_index_type=False)
    assert header_obs.index.tolist() == mixed.obs_names.tolist()
    np.testing.assert_array_equal(reader.indptr, stored.X.indptr)
    # columns the header holds and columns it leaves to the AnnData files, asked for together
    subset = fresh.score(gene_set, columns=["barcode", "stage", "batch"], shards=["mixed"], progress=False)
    assert list(subset.columns) == ["barcode", "stage", "batch", "score"]
    expected_subset = stored.obs[["barcode", "stage", "batch"]]
    assert subset.index.tolist() == expected_subset.index.tolist()
    assert (
        subset.drop(columns="score").astype(str).to_numpy().tolist() == expected_subset.astype(str).to_numpy().tolist()
    )
    assert fresh.verify(progress=False)["ok"].all()  # the header agrees with the AnnData files in full
    # the same answers as shards without headers (as written before headers existed), bit for bit
    full = fresh.score(gene_set, progress=False)
    for entry in atlas.manifest.shards:
        shutil.rmtree(Path(atlas.location.join(entry.path, HEADER)))
    old = ss.Atlas(tmp_path / "atlas")
    assert old._reader(old.manifest.shard("mixed")).header is None
    pd.testing.assert_frame_equal(old.score(gene_set, progress=False), full)
    pd.testing.assert_frame_equal(old.obs(), fresh.obs())
    assert old.verify(progress=False)["ok"].all()


def test_verify_finds_a_header_that_differs_from_the_anndata_files(tmp_path, pbmc, model, gene_set):
    from sigscan.atlas._header import QueryHeader

    atlas = ss.Atlas.create(tmp_path / "atlas", model=model)
    atlas.add(pbmc, name="pbmc")
    assert atlas.verify(progress=False)["ok"].all()
    packed = QueryHeader.read(atlas.location, atlas.manifest.shard("pbmc").path)._packed
    offset, dtype, length = packed._layout["obs/cell_type"]
    path = _shard(atlas, "pbmc") / HEADER / "0"
    raw = bytearray(path.read_bytes())
    codes = np.frombuffer(raw, dtype=dtype, count=length, offset=packed._start + offset).copy()
    codes[0] = (codes[0] + 1) % codes.max()  # another valid category: a query cannot tell
    raw[packed._start + offset : packed._start + offset + codes.nbytes] = codes.tobytes()
    del packed
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"damaged shards \(pbmc\).*query header's obs column 'cell_type' differs"):
        ss.Atlas(tmp_path / "atlas").verify(progress=False)


@pytest.fixture
def indexed(tmp_path, pbmc, model):
    atlas = ss.Atlas.create(tmp_path / "atlas", model=model)
    atlas.add(pbmc, name="pbmc")
    return atlas


def _gene_sets(genes: pd.Index) -> list[list[str]]:
    rng = np.random.default_rng(1)
    sets = [list(rng.choice(genes, size, replace=False)) for size in (1, 5, 99, 500)]
    sets.append([*genes[:3], "NOT_A_GENE", "", "Ärger", "X" * 200, "CD3E\0"])  # absent, odd, too long
    sets.append([max(genes), min(genes), genes[-1], genes[0]])  # both ends of the sorted and of the gene order
    return sets


def test_gene_index_finds_the_columns_pandas_finds(indexed):
    fresh = ss.Atlas(indexed.location.root)
    genes = fresh.gene_order
    assert Path(indexed.location.join(GENE_INDEX)).exists()
    for gene_set in _gene_sets(genes):
        weights = np.linspace(1, 2, len(gene_set))
        for w in (None, weights):
            with warnings.catch_warnings(record=True) as by_index:
                warnings.simplefilter("always")
                columns, kept = fresh._columns(gene_set, w)
            with warnings.catch_warnings(record=True) as by_pandas:
                warnings.simplefilter("always")
                expected_columns, expected_kept = match_weighted_genes(gene_set, genes, w)
            np.testing.assert_array_equal(columns, expected_columns)
            np.testing.assert_array_equal(kept, expected_kept)
            assert [str(x.message) for x in by_index] == [str(x.message) for x in by_pandas]
    assert fresh._gene_order is not None  # the set with absent genes went through pandas (for its warning)
    one = ss.Atlas(indexed.location.root)
    one._columns(list(genes[:50]), None)
    assert one._gene_order is None  # every gene found through the index: the gene order file was not read


def test_damaged_or_missing_gene_index_falls_back_and_verify_repairs_it(indexed, gene_set, caplog):
    expected = indexed.score(gene_set, progress=False)
    path = Path(indexed.location.join(GENE_INDEX))
    raw = bytearray(path.read_bytes())
    raw[-9] ^= 0xFF  # a flipped byte among the columns
    path.write_bytes(bytes(raw))
    with caplog.at_level(logging.WARNING, logger="sigscan"):
        scores = ss.Atlas(indexed.location.root).score(gene_set, progress=False)
    pd.testing.assert_frame_equal(scores, expected)  # the gene order file served
    assert "not using the gene index" in caplog.text and "CRC-32 mismatch" in caplog.text
    with pytest.raises(ValueError, match=r"gene index is damaged.*verify\(repair=True\)"):
        ss.Atlas(indexed.location.root).verify(progress=False)
    report = ss.Atlas(indexed.location.root).verify(repair=True, progress=False)
    assert report.loc[GENE_INDEX, "ok"] and "written again" in report.loc[GENE_INDEX, "problem"]
    assert ss.Atlas(indexed.location.root).verify(progress=False)["ok"].all()
    # an atlas created before the index existed: no damage; repair adds it
    path.unlink()
    assert GENE_INDEX not in ss.Atlas(indexed.location.root).verify(progress=False).index
    pd.testing.assert_frame_equal(ss.Atlas(indexed.location.root).score(gene_set, progress=False), expected)
    ss.Atlas(indexed.location.root).verify(repair=True, progress=False)
    assert path.exists()
