"""``ss.models.TorchEncoder``: any torch module; fast path when its first operation is a Linear (SPEC 1.2, 1.3)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import sigscan as ss


def _sequential(n_genes, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Dropout(0.1), nn.Linear(n_genes, 32), nn.Tanh(), nn.Linear(32, 6))


class _Branchy(nn.Module):
    """Not a Sequential: its first operation is a (non-zero-preserving) affine rescaling, so only captum applies."""

    def __init__(self, n_genes):
        super().__init__()
        torch.manual_seed(1)
        self.scale = nn.Parameter(torch.rand(n_genes) + 0.5)
        self.body = nn.Sequential(nn.Linear(n_genes, 16), nn.ReLU(), nn.Linear(16, 4))

    def forward(self, x):
        return self.body(x * self.scale)


@pytest.fixture
def genes(pbmc_small):
    return list(pbmc_small.var_names[:800])


def _layer(adata, model, **kwargs):
    ss.pp.attributions(adata, model, key_added="attr", device="cpu", progress=False, **kwargs)
    return adata.layers["attr"], adata.uns["sigscan"]["attributions"]["attr"]


@pytest.mark.parametrize("method", ["ig", "dl", "ixg"])
@pytest.mark.parametrize("l2_normalize", [False, True])
def test_fast_path_equals_captum(genes, pbmc_small, method, l2_normalize, assert_attributions_close):
    model = ss.models.TorchEncoder(_sequential(len(genes)), genes, preprocess="log1p", l2_normalize=l2_normalize)
    fast, info = _layer(pbmc_small.copy(), model, method=method, n_steps=20, engine="fast")
    reference, _ = _layer(pbmc_small.copy(), model, method=method, n_steps=20, engine="captum")
    assert info["head"] == ("prenorm" if l2_normalize and method != "ig" else "reference")
    assert_attributions_close(fast, reference)


def test_tanh_deeplift_is_not_gradient_times_input(genes, pbmc_small):
    model = ss.models.TorchEncoder(_sequential(len(genes)), genes, preprocess="log1p")
    dl, _ = _layer(pbmc_small.copy(), model, method="dl")
    ixg, _ = _layer(pbmc_small.copy(), model, method="ixg")
    assert np.abs((dl - ixg).toarray()).max() > 1.0


def test_non_linear_first_operation_uses_captum(genes, pbmc_small):
    model = ss.models.TorchEncoder(_Branchy(len(genes)), genes, preprocess="log1p")
    assert model.first_linear() is None
    layer, info = _layer(pbmc_small.copy(), model, method="ig", n_steps=10)
    assert info["engine"] == "captum"
    np.testing.assert_allclose(layer.sum(axis=1), 1000, rtol=1e-4)
    with pytest.raises(ValueError, match="engine='captum'"):
        _layer(pbmc_small.copy(), model, method="ig", engine="fast")


def test_first_linear_found_after_dropout(genes):
    module = _sequential(len(genes))
    split = ss.models.TorchEncoder(module, genes).first_linear()
    assert split.weight is module[1].weight
    assert [type(m) for m in split.rest] == [nn.Tanh, nn.Linear]
    assert ss.models.TorchEncoder(nn.Sequential(nn.ReLU(), nn.Linear(len(genes), 2)), genes).first_linear() is None


@pytest.mark.parametrize("preprocess", ["log1p_cp10k", "log1p", "none"])
def test_preprocess_options(genes, pbmc_small, preprocess):
    model = ss.models.TorchEncoder(_sequential(len(genes)), genes, preprocess=preprocess)
    x = model.prepare(pbmc_small).toarray()
    counts = pbmc_small[:, genes].X.toarray()
    if preprocess == "log1p_cp10k":
        expected = np.log1p(counts / counts.sum(axis=1, keepdims=True) * 1e4)
    elif preprocess == "log1p":
        expected = np.log1p(counts)
    else:
        expected = counts
    np.testing.assert_allclose(x, expected, rtol=1e-5, atol=1e-6)
    assert model.requires_counts == (preprocess != "none")


def test_preprocess_none_accepts_non_integer_input(genes, pbmc_small):
    model = ss.models.TorchEncoder(_sequential(len(genes)), genes, preprocess="none")
    adata = pbmc_small.copy()
    adata.X.data = np.log1p(adata.X.data)
    layer, _ = _layer(adata, model, method="ixg")
    assert layer.nnz > 0
    counting = ss.models.TorchEncoder(_sequential(len(genes)), genes, preprocess="log1p")
    with pytest.raises(ValueError, match="log-normalised"):
        _layer(adata, counting, method="ixg")


def test_bad_preprocess_and_embedding_dim(genes):
    with pytest.raises(ValueError, match="Unknown preprocess 'cp10k'"):
        ss.models.TorchEncoder(_sequential(len(genes)), genes, preprocess="cp10k")
    model = ss.models.TorchEncoder(_sequential(len(genes)), genes, name="mine")
    assert model.embedding_dim == 6
    assert model.min_gene_overlap == 400
    assert model.name == "mine"
