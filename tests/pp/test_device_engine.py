"""The fast path's device branch (torch kernels, prefetching, bf16, batch sizes from device memory), run on CPU.

The CUDA branch is the same torch code: ``_engine.TORCH_KERNELS_ON_CPU`` routes CPU runs through it, and CUDA-only
calls (streams, pinned memory, ``mem_get_info``) are behind ``device.type == "cuda"`` checks.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from scipy import sparse

import sigscan as ss
from sigscan import _engine
from sigscan._engine import _kernels, _torch_kernels, _transfer

CPU = torch.device("cpu")


@pytest.fixture
def torch_kernels(monkeypatch):
    """Route CPU runs of the fast path through its device branch."""
    monkeypatch.setattr(_engine, "TORCH_KERNELS_ON_CPU", True)


def _layer(adata, model, method, **kwargs):
    ss.pp.attributions(adata, model, method=method, key_added="attr", device="cpu", progress=False, **kwargs)
    return adata.layers["attr"], adata.uns["sigscan"]["attributions"]["attr"]


def _staged(x: sparse.csr_matrix) -> _torch_kernels.DeviceBatch:
    return _transfer.Stager(CPU).stage(x).wait()


def test_kernels_equal_numba(scimilarity_model, pbmc_small):
    x = scimilarity_model.prepare(pbmc_small).sorted_indices()  # device batches are in sorted CSR order
    weight_t = _engine.transposed_weight(scimilarity_model.first_linear().weight)
    by_gene = _kernels.GeneMajor.from_csr(x)
    dense_w = _kernels.dense_weights(by_gene, weight_t)
    batch = _staged(x)
    u = _torch_kernels.first_layer(batch, weight_t)
    expected_u = _kernels.sparse_dense_mm(by_gene, weight_t.numpy(), dense_w)
    np.testing.assert_allclose(u.numpy(), expected_u, rtol=1e-5, atol=1e-5)
    hidden = torch.randn(x.shape[0], weight_t.shape[1], generator=torch.Generator().manual_seed(0))
    dots = _torch_kernels.gene_dots(batch, hidden, weight_t).numpy()
    expected = _kernels.sampled_rowdot(by_gene, hidden.numpy(), weight_t.numpy(), dense_w)
    np.testing.assert_allclose(dots, expected, rtol=1e-5, atol=1e-5)
    # and the definition: the dense product read at the non-zeros
    rows = np.repeat(np.arange(x.shape[0]), np.diff(x.indptr))
    dense = (hidden.double() @ weight_t.double().T).numpy()
    np.testing.assert_allclose(dots, dense[rows, x.indices], rtol=1e-5, atol=1e-5)


def test_kernels_on_an_empty_batch():
    x = sparse.csr_matrix((3, 5), dtype=np.float32)
    weight_t = torch.ones(5, 4)
    batch = _staged(x)
    assert _torch_kernels.first_layer(batch, weight_t).shape == (3, 4)
    assert _torch_kernels.gene_dots(batch, torch.ones(3, 4), weight_t).shape == (0,)


@pytest.mark.parametrize("method", ["ig", "dl", "ixg"])
@pytest.mark.parametrize("model_and_data", ["scimilarity", "scvi"], indirect=True)
def test_device_branch_equals_numba_and_captum(model_and_data, method, monkeypatch, assert_attributions_close):
    model, adata = model_and_data
    kwargs = {"n_steps": 10, "batch_size": 20}  # several batches: the pipeline hands them out in order
    numba, _ = _layer(adata.copy(), model, method, engine="fast", **kwargs)
    captum, _ = _layer(adata.copy(), model, method, engine="captum", **kwargs)
    monkeypatch.setattr(_engine, "TORCH_KERNELS_ON_CPU", True)
    device, info = _layer(adata.copy(), model, method, engine="fast", **kwargs)
    assert info["engine"] == "fast" and info["precision"] == "float32"
    assert device.nnz > 0
    assert_attributions_close(device, numba)
    assert_attributions_close(device, captum)


def test_device_branch_unsorted_indices(scimilarity_model, pbmc_small, torch_kernels):
    """Batches with unsorted CSR indices are sorted before the device kernels read them."""
    x = scimilarity_model.prepare(pbmc_small)
    shuffled = x.copy()
    rng = np.random.default_rng(0)
    for i in range(x.shape[0]):
        lo, hi = x.indptr[i], x.indptr[i + 1]
        order = lo + rng.permutation(hi - lo)
        shuffled.indices[lo:hi], shuffled.data[lo:hi] = x.indices[order], x.data[order]
    shuffled.has_sorted_indices = False
    with _engine.inference_mode(scimilarity_model.module, CPU):
        path = _engine.FastPath(scimilarity_model, normalize=False, device=CPU)
        assert path.on_device
        a = path(x, method="ixg", n_steps=1)
        b = path(shuffled, method="ixg", n_steps=1)
    np.testing.assert_allclose(a.toarray(), b.toarray(), rtol=1e-5, atol=1e-7)


def test_prefetch_yields_the_same_batches_in_order():
    rng = np.random.default_rng(0)
    matrices = [
        sparse.random(n, 30, density=d, format="csr", dtype=np.float32, random_state=rng)
        for n, d in [(5, 0.3), (7, 0.0), (1, 1.0), (4, 0.5)]
    ]
    batches = [(10 * i, 10 * i + m.shape[0], m) for i, m in enumerate(matrices)]
    out = list(_transfer.prefetch(iter(batches), CPU))
    assert [(lo, hi) for lo, hi, _ in out] == [(lo, hi) for lo, hi, _ in batches]
    for (_, _, staged), (_, _, m) in zip(out, batches, strict=True):
        assert staged.ready is None
        assert staged.crow.dtype == torch.int32
        np.testing.assert_array_equal(staged.crow.numpy(), m.indptr)
        np.testing.assert_array_equal(staged.col.numpy(), m.indices)
        np.testing.assert_array_equal(staged.values.numpy(), m.data)
        np.testing.assert_array_equal(staged.csr().to_dense().numpy(), m.toarray())
    assert list(_transfer.prefetch(iter([]), CPU)) == []


def test_pending_values_round_trip():
    x = sparse.random(6, 9, density=0.4, format="csr", dtype=np.float32, random_state=1)
    batch = _staged(x)
    pending = _transfer.PendingValues(batch, batch.values * 2, _transfer.PinnedBuffers(CPU), 0)
    result = pending.result()
    np.testing.assert_array_equal(result.toarray(), 2 * x.toarray())


#: bf16 tolerance on the 1000-scaled rows of the small test model (64-64-16): (max |difference|, min per-cell Pearson).
#: Measured: IG 7.2 and 0.980 (10 steps, L2-normalised reference head), IxG 0.21 and 0.99995. A model this narrow
#: is the hard case: on the SPEC 7 model (1,024-1,024-128) IG differs by 0.27 at most, Pearson >= 0.9997.
BF16_TOLERANCE = {"ig": (15.0, 0.96), "ixg": (1.0, 0.9995)}


@pytest.mark.parametrize("method", ["ig", "ixg"])
def test_bf16_close_to_float32(scimilarity_model, pbmc_small, method, torch_kernels):
    """bf16 autocast of the dense network runs and stays within the documented tolerance of float32."""
    float32, info32 = _layer(pbmc_small.copy(), scimilarity_model, method, n_steps=10)
    bf16, info = _layer(pbmc_small.copy(), scimilarity_model, method, n_steps=10, precision="bf16")
    assert info32["precision"] == "float32" and info["precision"] == "bf16"
    a, b = float32.toarray(), bf16.toarray()
    assert float32.nnz == bf16.nnz
    assert not np.array_equal(a, b)  # the option does change the arithmetic
    max_diff, min_pearson = BF16_TOLERANCE[method]
    assert np.abs(a - b).max() <= max_diff
    assert min(np.corrcoef(row_a, row_b)[0, 1] for row_a, row_b in zip(a, b, strict=True)) >= min_pearson


def test_float32_default_is_unchanged(scimilarity_model, pbmc_small):
    default, _ = _layer(pbmc_small.copy(), scimilarity_model, "ixg")
    explicit, _ = _layer(pbmc_small.copy(), scimilarity_model, "ixg", precision="float32")
    np.testing.assert_array_equal(default.toarray(), explicit.toarray())


def test_precision_decided_in_one_place(scimilarity_model, pbmc_small):
    with pytest.raises(ValueError, match="Unknown precision 'fp8'"):
        _layer(pbmc_small.copy(), scimilarity_model, "ixg", precision="fp8")
    own = copy.copy(scimilarity_model)
    own.precision = "float32"  # a model that decides its own precision, as ScGPT and ScFoundation do
    with pytest.raises(ValueError, match=r"pass precision='bf16' to ss.models.SCimilarity"):
        _layer(pbmc_small.copy(), own, "ixg", precision="bf16")
    assert _engine.resolve_precision(own, None) == "float32"
    assert _engine.resolve_precision(scimilarity_model, None) == "float32"


def test_batch_size_from_free_device_memory(scimilarity_model, monkeypatch):
    """On CUDA the default batch fills half the free memory (a fake figure here), within 256–32,768 cells."""
    cuda = torch.device("cuda")
    per_cell = _engine.bytes_per_cell(scimilarity_model, "ig")
    widths = 64 + 64 + 16 + 16  # the test model's Linear widths, the embedding and the first layer
    assert per_cell == _transfer.IN_FLIGHT * (16 * scimilarity_model.n_genes + 32 * widths)
    for free, expected in [(0, 256), (2 * per_cell * 1000, 768), (10**15, 32_768)]:
        monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None, free=free: (free, 2 * free))
        assert _engine._default_batch_size(scimilarity_model, cuda, "ig") == expected
    assert _engine._default_batch_size(scimilarity_model, CPU, "ig") == 256
