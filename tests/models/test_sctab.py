"""SSL-scTab: Lightning checkpoints of every kind, the activation read from the checkpoint, the exact fast path."""

from __future__ import annotations

import itertools
import pickle

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch
from scipy import sparse
from torch import nn

import sigscan as ss
from sigscan.cli import main
from sigscan.models._sctab import read_lightning_checkpoint

N_GENES = 400
UNITS = (32, 32, 16, 16, 8)


@pytest.fixture(scope="module")
def genes() -> pd.Index:
    return pd.Index([f"GENE{i}" for i in range(N_GENES)])


@pytest.fixture(scope="module")
def adata(genes) -> ad.AnnData:
    """10 cells × (the model genes shuffled + 4 others); cell 3 has no counts over the model's genes."""
    rng = np.random.default_rng(1)
    names = list(rng.permutation(genes)) + [f"OTHER{i}" for i in range(4)]
    counts = rng.poisson(rng.gamma(0.3, 2.0, size=len(names)), size=(10, len(names))).astype(np.float32)
    counts[3, :N_GENES] = 0
    return ad.AnnData(
        sparse.csr_matrix(counts), var=pd.DataFrame(index=names), obs=pd.DataFrame(index=list("abcdefghij"))
    )


def _mlp(sizes, activation, *, final_activation=False, random_state=0) -> nn.Sequential:
    """ssl_in_scg's MLP layout: Linear, activation, Dropout per hidden layer, then the last Linear."""
    torch.manual_seed(random_state)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2 or final_activation:
            layers += [activation(), nn.Dropout(0.1)]
    return nn.Sequential(*layers).eval()


def _write(folder, state, genes, hparams=None):
    folder.mkdir(parents=True, exist_ok=True)
    checkpoint = {"state_dict": state, "epoch": 3}
    if hparams is not None:
        checkpoint["hyper_parameters"] = hparams
    torch.save(checkpoint, folder / "last.ckpt")
    pd.DataFrame({"feature_id": [f"ENSG{i:011d}" for i in range(len(genes))], "feature_name": list(genes)}).to_parquet(
        folder / "var.parquet"
    )
    return folder


def _prefixed(prefix, module):
    return {f"{prefix}{key}": value for key, value in module.state_dict().items()}


def _embed_plain(module, adata, genes):
    """log1p(10,000 · x / Σ model genes) of the aligned counts, through a plain torch module."""
    counts = adata[:, list(genes)].X.toarray() if set(genes) <= set(adata.var_names) else None
    totals = counts.sum(axis=1, keepdims=True)
    x = np.log1p(counts / np.where(totals > 0, totals, 1) * 1e4)
    with torch.no_grad():
        return module(torch.as_tensor(x, dtype=torch.float32)).numpy()


@pytest.mark.parametrize("kind", ["masked", "byol", "barlow", "backbone"])
def test_ssl_encoders_load_and_embed(kind, genes, adata, tmp_path):
    encoder = _mlp([N_GENES, *UNITS], nn.SELU)
    other = _mlp([N_GENES, *UNITS], nn.SELU, random_state=5)  # the EMA target / decoder must not be picked up
    state = {
        "masked": {**_prefixed("encoder.", encoder), **_prefixed("decoder.0.", other)},
        "byol": {**_prefixed("inner_model.", encoder), **_prefixed("byol.target_encoder.net.", other)},
        "barlow": {**_prefixed("inner_model.", encoder), **_prefixed("barlow_twins.backbone.", encoder)},
        "backbone": _prefixed("backbone.", encoder),
    }[kind]
    model = ss.models.ScTabSSL(_write(tmp_path, state, genes))
    assert model.activation == "SELU" and model.activation_source.startswith("structure")
    data = adata.copy()
    ss.pp.embeddings(data, model, device="cpu", progress=False)
    np.testing.assert_allclose(data.obsm["X_sctab"], _embed_plain(encoder, adata, genes), rtol=1e-5, atol=1e-5)


def test_classifier_relu_embedding_after_classifier_14(genes, adata, tmp_path):
    classifier = _mlp([N_GENES, *UNITS, 7], nn.ReLU)
    assert len(classifier) == 16 and isinstance(classifier[13], nn.ReLU)
    model = ss.models.ScTabSSL(_write(tmp_path, _prefixed("classifier.", classifier), genes))
    assert model.activation == "ReLU" and model.prefix == "classifier."
    assert model.ignored_keys == ["classifier.15.bias", "classifier.15.weight"]
    data = adata.copy()
    ss.pp.embeddings(data, model, device="cpu", progress=False)
    np.testing.assert_allclose(data.obsm["X_sctab"], _embed_plain(classifier[:15], adata, genes), rtol=1e-5, atol=1e-5)


def test_pickled_hyper_parameters_load_safely(genes, adata, tmp_path):
    """Hyper-parameters that pickle classes: read without running pickled code; the activation comes from them."""
    encoder = _mlp([N_GENES, *UNITS], nn.ReLU)
    sentinel = tmp_path / "executed"

    class Payload:
        def __reduce__(self):
            return (open, (str(sentinel), "w"))

    hparams = {"activation": nn.ReLU, "optimizer": torch.optim.AdamW, "payload": Payload(), "units": list(UNITS)}
    folder = _write(tmp_path / "ckpt", _prefixed("encoder.", encoder), genes, hparams)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(folder / "last.ckpt", weights_only=True)
    checkpoint = read_lightning_checkpoint(folder / "last.ckpt")
    assert not sentinel.exists()
    assert "AdamW" in repr(checkpoint["hyper_parameters"]["optimizer"])
    model = ss.models.ScTabSSL(folder)
    assert (model.activation, model.activation_source) == ("ReLU", "hyper_parameters['activation']")
    data = adata.copy()
    ss.pp.embeddings(data, model, device="cpu", progress=False)
    np.testing.assert_allclose(data.obsm["X_sctab"], _embed_plain(encoder, adata, genes), rtol=1e-5, atol=1e-5)


def test_errors(genes, tmp_path):
    encoder = _mlp([N_GENES, *UNITS], nn.SELU)
    with pytest.raises(KeyError, match="inner_model"):
        ss.models.ScTabSSL(_write(tmp_path / "a", _prefixed("byol.target_encoder.net.", encoder), genes))
    with pytest.raises(ValueError, match="takes 400 genes"):
        ss.models.ScTabSSL(_write(tmp_path / "b", _prefixed("encoder.", encoder), genes[:-1]))
    folder = _write(tmp_path / "c", _prefixed("encoder.", encoder), genes)
    (folder / "var.parquet").unlink()
    with pytest.raises(FileNotFoundError, match="var="):
        ss.models.ScTabSSL(folder)
    model = ss.models.ScTabSSL(folder / "last.ckpt", var=pd.DataFrame({"feature_name": genes}))
    assert list(model.gene_order) == list(genes)
    with pytest.raises(ValueError, match="feature_name"):
        ss.models.ScTabSSL(folder, var=pd.DataFrame({"gene": genes}))
    with pytest.raises(ValueError, match="hyper_parameters"):
        ss.models.ScTabSSL(_write(tmp_path / "d", _prefixed("encoder.", encoder), genes, {"activation": "Swish"}))


@pytest.mark.parametrize("kind", ["ssl", "classifier"])
def test_round_trip(kind, genes, adata, tmp_path):
    model = ss.models.ScTabSSL.random(genes, units=UNITS, kind=kind, n_classes=5, random_state=2)
    loaded = ss.models.ScTabSSL(model.save(tmp_path))
    assert loaded.checksum == model.checksum and loaded.activation == model.activation
    a, b = adata.copy(), adata.copy()
    ss.pp.embeddings(a, model, device="cpu", progress=False)
    ss.pp.embeddings(b, loaded, device="cpu", progress=False)
    np.testing.assert_array_equal(a.obsm["X_sctab"], b.obsm["X_sctab"])


@pytest.mark.parametrize("method", ["ig", "ixg", "dl"])
@pytest.mark.parametrize("kind", ["ssl", "classifier"])
def test_fast_path_equals_captum(kind, method, genes, adata):
    model = ss.models.ScTabSSL.random(genes, units=UNITS, kind=kind, random_state=4)
    assert model.first_linear() is not None
    data = adata.copy()
    ss.pp.attributions(data, model, method=method, device="cpu", progress=False)
    ss.pp.attributions(data, model, method=method, device="cpu", progress=False, engine="captum", key_added="ref")
    fast, ref = data.layers[f"attr_sctab_{method}"].toarray(), data.layers["ref"].toarray()
    keep = ref.sum(axis=1) > 0
    for a, b in zip(fast[keep], ref[keep], strict=True):
        assert np.corrcoef(a, b)[0, 1] >= 0.9999
    np.testing.assert_allclose(fast, ref, atol=1e-3)
    sums = fast.sum(axis=1)
    np.testing.assert_allclose(sums[keep], 1000, rtol=1e-4)
    assert sums[3] == 0 and not keep[3]
    assert np.all(fast[data.X.toarray() == 0] == 0)
    again = adata.copy()
    ss.pp.attributions(again, model, method=method, device="cpu", progress=False)
    np.testing.assert_array_equal(again.layers[f"attr_sctab_{method}"].toarray(), fast)
    provenance = data.uns["sigscan"]["attributions"][f"attr_sctab_{method}"]
    assert provenance["engine"] == "fast" and provenance["activation"] == model.activation


def test_full_size_fast_path_matches_float64_captum(pbmc_small):
    """The published sizes (512-512-256-256-64) over 3,000 genes: the fast path against captum in float64."""
    from captum.attr import IntegratedGradients

    model = ss.models.ScTabSSL.random(pbmc_small.var_names, random_state=0)
    data = pbmc_small[:6].copy()
    ss.pp.attributions(data, model, device="cpu", progress=False)
    x = torch.as_tensor(model.prepare(data).toarray(), dtype=torch.float64)
    module = model.module.double()
    try:
        with torch.no_grad():
            w = module(x)
        attr = IntegratedGradients(lambda i, w: (module(i) * w).abs().sum(dim=1)).attribute(
            x, baselines=torch.zeros_like(x), additional_forward_args=(w,), n_steps=50, method="gausslegendre"
        )
    finally:
        module.float()
    expected = attr.abs().numpy()
    expected = expected / expected.sum(axis=1, keepdims=True) * 1000
    fast = data.layers["attr_sctab_ig"].toarray()
    for a, b in zip(fast, expected, strict=True):
        assert np.corrcoef(a, b)[0, 1] >= 0.9999
    np.testing.assert_allclose(fast, expected, atol=1e-2)


def test_cli(genes, adata, tmp_path):
    folder = ss.models.ScTabSSL.random(genes, units=UNITS, random_state=1).save(tmp_path / "model")
    counts = tmp_path / "counts.h5ad"
    adata.write_h5ad(counts)
    out = tmp_path / "out.h5ad"
    assert main(["attributions", str(counts), "--model", f"sctab:{folder}", "--method", "ixg", "--out", str(out)]) == 0
    expected = adata.copy()
    ss.pp.attributions(expected, ss.models.ScTabSSL(folder), method="ixg", device="cpu", progress=False)
    np.testing.assert_allclose(
        ad.read_h5ad(out).layers["attr_sctab_ixg"].toarray(), expected.layers["attr_sctab_ixg"].toarray(), atol=1e-5
    )
