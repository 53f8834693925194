"""Shared fixtures: small slices of the bundled PBMC3k, a random SCimilarity-architecture model, a trained scVI model.

Session-scoped objects are shared between tests and must not be modified; tests take ``.copy()`` of AnnData fixtures.
"""

from __future__ import annotations

import copy
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

import sigscan as ss

#: genes of the SCimilarity test model that PBMC3k does not have (zero-filled on input)
N_ABSENT_MODEL_GENES = 50


@pytest.fixture(scope="session")
def pbmc3k() -> ad.AnnData:
    """The bundled PBMC3k (read once; never modify it)."""
    return ss.datasets.pbmc3k()


@pytest.fixture(scope="session")
def _pbmc_small(pbmc3k):
    """48 cells of mixed types × the 3,000 most-detected genes (raw counts, CSR float32)."""
    detected = np.asarray((pbmc3k.X > 0).sum(axis=0)).ravel()
    genes = np.sort(np.argsort(-detected, kind="stable")[:3000])
    labelled = pbmc3k.obs["cell_type"].astype(str).to_numpy()
    rng = np.random.default_rng(0)
    cells = []
    for cell_type in sorted(set(labelled) - {"unknown"}):
        where = np.flatnonzero(labelled == cell_type)
        cells.extend(rng.choice(where, size=min(6, len(where)), replace=False))
    adata = pbmc3k[np.sort(cells), genes].copy()
    adata.layers["counts"] = adata.X.copy()
    return adata


@pytest.fixture
def pbmc_small(_pbmc_small):
    """A fresh copy of the 48-cell PBMC3k slice (X and layers['counts'] hold raw counts)."""
    return _pbmc_small.copy()


@pytest.fixture(scope="session")
def scimilarity_genes(_pbmc_small) -> list[str]:
    """Model genes: 1,500 of the slice's genes in shuffled order plus genes PBMC3k lacks."""
    rng = np.random.default_rng(1)
    present = list(rng.permutation(_pbmc_small.var_names.to_numpy())[:1500])
    return present + [f"ABSENT{i}" for i in range(N_ABSENT_MODEL_GENES)]


@pytest.fixture(scope="session")
def scimilarity_model(scimilarity_genes):
    """SCimilarity-architecture model with random weights (hidden 64-64, latent 16)."""
    return ss.models.SCimilarity.random(scimilarity_genes, hidden_dim=(64, 64), latent_dim=16, random_state=0)


@pytest.fixture(scope="session")
def _scvi_data(pbmc3k):
    """300 PBMC3k cells × the 400 most-detected genes, raw counts."""
    detected = np.asarray((pbmc3k.X > 0).sum(axis=0)).ravel()
    genes = np.sort(np.argsort(-detected, kind="stable")[:400])
    return pbmc3k[:300, genes].copy()


@pytest.fixture(scope="session")
def trained_scvi(_scvi_data):
    """A small scvi.model.SCVI trained for 2 epochs (n_hidden 32, n_latent 8)."""
    scvi = pytest.importorskip("scvi")
    scvi.settings.seed = 0
    scvi.settings.dl_num_workers = 0
    adata = _scvi_data.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scvi.model.SCVI.setup_anndata(adata)
        model = scvi.model.SCVI(adata, n_hidden=32, n_latent=8, n_layers=2)
        model.train(max_epochs=2, accelerator="cpu", batch_size=128, enable_progress_bar=False, logger=False)
    return model


@pytest.fixture(scope="session")
def scvi_model(trained_scvi):
    """The trained scVI model wrapped for attributions."""
    return ss.models.SCVI(trained_scvi)


@pytest.fixture(scope="session")
def scvi_dir(trained_scvi, tmp_path_factory):
    """The trained scVI model saved to a folder (without its AnnData)."""
    path = tmp_path_factory.mktemp("scvi") / "model"
    trained_scvi.save(str(path), save_anndata=False)
    return path


@pytest.fixture
def scvi_adata(_scvi_data):
    """A fresh copy of the data the scVI model was trained on (48 cells, to keep attributions fast)."""
    return _scvi_data[:48].copy()


@pytest.fixture
def model_and_data(request, scimilarity_model, scvi_model, pbmc_small, scvi_adata):
    """Parametrize indirectly with ``"scimilarity"`` or ``"scvi"``: (model, matching AnnData)."""
    if request.param == "scimilarity":
        return scimilarity_model, pbmc_small
    return scvi_model, scvi_adata


# --- helpers exposed as fixtures (the tests run with --import-mode=importlib) -----------------------------------------


def _assert_attributions_close(fast: sparse.spmatrix, reference: sparse.spmatrix) -> None:
    """SPEC 1.3 tolerance on 1000-scaled values: per-cell Pearson >= 0.9999 and max |difference| <= 1e-3."""
    a = sparse.csr_matrix(fast).toarray().astype(np.float64)
    b = sparse.csr_matrix(reference).toarray().astype(np.float64)
    assert a.shape == b.shape
    max_diff = np.abs(a - b).max()
    assert max_diff <= 1e-3, f"max |difference| {max_diff:g} > 1e-3"
    for i in range(a.shape[0]):
        if not a[i].any() and not b[i].any():
            continue
        r = np.corrcoef(a[i], b[i])[0, 1]
        assert r >= 0.9999, f"cell {i}: Pearson {r:.6f} < 0.9999"


@pytest.fixture
def assert_attributions_close():
    """``assert_attributions_close(fast, reference)``: the SPEC 1.3 exactness check."""
    return _assert_attributions_close


def _snapshot(adata) -> dict:
    def grab(matrix):
        return matrix.copy() if matrix is not None else None

    return {
        "X": grab(adata.X),
        "layers": {key: grab(value) for key, value in adata.layers.items()},
        "obs": adata.obs.copy(),
        "var": adata.var.copy(),
        "uns": copy.deepcopy(dict(adata.uns)),
        "obsm": set(adata.obsm.keys()),
    }


def _same_matrix(a, b) -> bool:
    if sparse.issparse(a) != sparse.issparse(b):
        return False
    if sparse.issparse(a):
        a, b = a.tocsr(), b.tocsr()
        return (
            a.shape == b.shape
            and a.dtype == b.dtype
            and np.array_equal(a.indptr, b.indptr)
            and np.array_equal(a.indices, b.indices)
            and np.array_equal(a.data, b.data, equal_nan=True)
        )
    return a.dtype == b.dtype and np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True)


def _assert_unchanged(adata, snapshot: dict) -> None:
    after = _snapshot(adata)
    assert _same_matrix(snapshot["X"], after["X"]), "X changed"
    assert snapshot["layers"].keys() == after["layers"].keys(), "layers added or removed"
    for key in snapshot["layers"]:
        assert _same_matrix(snapshot["layers"][key], after["layers"][key]), f"layer {key!r} changed"
    pd.testing.assert_frame_equal(snapshot["obs"], after["obs"])
    pd.testing.assert_frame_equal(snapshot["var"], after["var"])
    assert snapshot["uns"].keys() == after["uns"].keys(), "uns keys changed"
    assert snapshot["obsm"] == after["obsm"]


@pytest.fixture
def snapshot():
    """``snapshot(adata)`` → a deep copy of X, layers, obs, var, uns to compare with ``assert_unchanged``."""
    return _snapshot


@pytest.fixture
def assert_unchanged():
    """``assert_unchanged(adata, snapshot)``: X, layers, obs, var and uns are as they were."""
    return _assert_unchanged


# --- concepts (issue 12): planted gene programs fed through a known linear encoder ------------------------------------

#: planted programs: 4 programs of 8 genes, among 60 genes
PLANTED_PROGRAMS, PLANTED_SIZE = 4, 8


@pytest.fixture(scope="session")
def _planted():
    """400 cells; each has one of 4 gene programs switched on (8 genes, +10 counts) or none; a known linear encoder.

    Returns ``(adata, model, on)`` with ``on`` the cells × programs indicator; ``adata.uns["programs"]`` maps
    ``PROGRAM{p}`` to its genes.
    """
    import torch

    rng = np.random.default_rng(0)
    n_cells, n_genes, d = 400, 60, 12
    names = [f"P{p}_{i}" for p in range(PLANTED_PROGRAMS) for i in range(PLANTED_SIZE)]
    names += [f"G{i}" for i in range(n_genes - len(names))]
    which = rng.integers(0, PLANTED_PROGRAMS + 1, n_cells)  # PLANTED_PROGRAMS: no program
    on = which[:, None] == np.arange(PLANTED_PROGRAMS)[None]
    means = np.tile(rng.gamma(2.0, 0.25, n_genes), (n_cells, 1))
    for p in range(PLANTED_PROGRAMS):
        means[np.ix_(on[:, p], np.arange(p * PLANTED_SIZE, (p + 1) * PLANTED_SIZE))] += 10.0
    counts = rng.poisson(means).astype(np.float32)
    adata = ad.AnnData(
        sparse.csr_matrix(counts),
        obs=pd.DataFrame(
            {"program": pd.Categorical([f"PROGRAM{w}" if w < PLANTED_PROGRAMS else "none" for w in which])},
            index=[f"cell{i}" for i in range(n_cells)],
        ),
        var=pd.DataFrame(index=names),
    )
    adata.uns["programs"] = {
        f"PROGRAM{p}": names[p * PLANTED_SIZE : (p + 1) * PLANTED_SIZE] for p in range(PLANTED_PROGRAMS)
    }
    # the encoder maps each program's genes near one direction of its own, the other genes to random directions
    weight = rng.normal(0.0, 1.0 / np.sqrt(d), size=(d, n_genes))
    for p in range(PLANTED_PROGRAMS):
        direction = rng.normal(size=d)
        columns = slice(p * PLANTED_SIZE, (p + 1) * PLANTED_SIZE)
        weight[:, columns] = direction[:, None] / np.linalg.norm(direction) + 0.3 * weight[:, columns]
    encoder = torch.nn.Sequential(torch.nn.Linear(n_genes, d))
    with torch.no_grad():
        encoder[0].weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
        encoder[0].bias.zero_()
    model = ss.models.TorchEncoder(encoder, names, preprocess="log1p", name="linear")
    return adata, model, on


@pytest.fixture
def planted(_planted):
    """``(adata copy, model, on)`` of the planted-program data (see ``_planted``)."""
    adata, model, on = _planted
    return adata.copy(), model, on


#: SAE settings the planted-program tests train with
PLANTED_SAE = {"n_concepts": 8, "k": 2, "n_epochs": 30, "batch_size": 64, "learning_rate": 1e-2, "device": "cpu"}


@pytest.fixture(scope="session")
def _planted_concepts(_planted):
    """The planted data with ``tl.concepts`` (8 concepts, k=2) and counterfactual ``tl.concept_genes`` run."""
    adata, model, on = _planted
    adata = adata.copy()
    ss.tl.concepts(adata, model, **PLANTED_SAE)
    ss.tl.concept_genes(adata, model, n_cells=60, progress=False)
    return adata, model, on


@pytest.fixture
def planted_concepts(_planted_concepts):
    """``(adata copy, model, on)`` with concepts and their genes (see ``_planted_concepts``)."""
    adata, model, on = _planted_concepts
    return adata.copy(), model, on


@pytest.fixture
def planted_sae():
    """The SAE keyword arguments of the planted-program tests."""
    return dict(PLANTED_SAE)
