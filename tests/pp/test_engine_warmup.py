"""The background warm-up of the fast path's kernels: invisible in results and in the user's random state."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import torch
from scipy import sparse

import sigscan as ss
from sigscan._engine import _warmup

_FRESH_PROCESS = """
import sys
import numpy as np
from scipy import sparse
import sigscan as ss

adata = ss.datasets.pbmc3k()[:40].copy()
model = ss.models.SCimilarity.random(adata.var_names[:400], hidden_dim=(32,), latent_dim=8, random_state=3)
for method in ("ig", "ixg"):  # the first call of this process, then the next
    ss.pp.attributions(adata, model, method=method, n_steps=8, progress=False)
    sparse.save_npz(f"{sys.argv[1]}/{method}.npz", adata.layers["attr_scimilarity_" + method].tocsr())
"""


def _attributions(method: str) -> sparse.csr_matrix:
    adata = ss.datasets.pbmc3k()[:40].copy()
    model = ss.models.SCimilarity.random(adata.var_names[:400], hidden_dim=(32,), latent_dim=8, random_state=3)
    ss.pp.attributions(adata, model, method=method, n_steps=8, progress=False)
    return adata.layers[f"attr_scimilarity_{method}"].tocsr()


def test_warmup_leaves_random_state_and_results_unchanged():
    before = _attributions("ig")
    torch_state, numpy_state = torch.random.get_rng_state(), np.random.get_state()
    _warmup.run()
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    assert all(np.array_equal(a, b) for a, b in zip(np.random.get_state(), numpy_state, strict=True))
    after = _attributions("ig")
    assert np.array_equal(before.indptr, after.indptr) and np.array_equal(before.indices, after.indices)
    np.testing.assert_array_equal(before.data, after.data)


def test_first_call_of_a_fresh_process_gives_the_same_results(tmp_path):
    """A fresh process whose first call meets the warm-up still running (or just finished) gives identical values."""
    subprocess.run([sys.executable, "-c", _FRESH_PROCESS, str(tmp_path)], check=True, timeout=600)
    for method in ("ig", "ixg"):
        fresh, here = sparse.load_npz(tmp_path / f"{method}.npz").tocsr(), _attributions(method)
        assert np.array_equal(fresh.indices, here.indices)
        np.testing.assert_array_equal(fresh.data, here.data)
