"""The atlas kernel compiled with the system's C compiler: built once in the background, loaded without a JIT, and
adding the same float64 products in the same order as numba (bit-identical sums)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from scipy import sparse

from sigscan.atlas import _compiled, _kernels
from sigscan.atlas._numba_kernels import range_sums

needs_compiler = pytest.mark.skipif(_compiled._compiler() is None, reason="no C compiler on this machine")


def _fresh_state(monkeypatch) -> None:
    monkeypatch.setattr(_compiled, "_function", None)
    monkeypatch.setattr(_compiled, "_tried", False)
    monkeypatch.setattr(_compiled, "_compiling", None)


def _built(monkeypatch, cache) -> object:
    """The compiled function, built into ``cache`` (what a first and a later process do)."""
    monkeypatch.setenv("SIGSCAN_CACHE", str(cache))
    monkeypatch.delenv("SIGSCAN_NO_COMPILE", raising=False)
    _fresh_state(monkeypatch)
    assert _compiled.kernel() is None  # not built yet: the build starts in the background
    _compiled._compiling.join(timeout=120)
    assert list(cache.glob("atlas-kernel-*.so")) and not list(cache.glob("*.tmp")) and not list(cache.glob("*.c"))
    _fresh_state(monkeypatch)
    function = _compiled.kernel()
    assert function is not None
    return function


@needs_compiler
@pytest.mark.parametrize("unit_weights", [False, True])
def test_compiled_kernel_equals_numba_bit_for_bit(tmp_path, monkeypatch, unit_weights):
    _built(monkeypatch, tmp_path)
    rng = np.random.default_rng(0)
    matrix = sparse.random(500, 300, density=0.1, format="csc", dtype=np.float32, random_state=rng)
    matrix.data *= 1e3
    data, indices, indptr = matrix.data, matrix.indices.astype(np.int32), matrix.indptr.astype(np.int64)
    columns = np.sort(rng.choice(300, 40, replace=False))
    weights = np.ones(len(columns)) if unit_weights else rng.uniform(0.5, 2, len(columns))
    starts, stops = indptr[columns], indptr[columns + 1]
    expected = np.zeros(500)
    assert range_sums(data, indices, starts, stops, weights, expected) == 0
    sums, bad = _compiled.range_sums(data, indices, starts, stops, weights, 500)
    np.testing.assert_array_equal(sums, expected)
    assert bad == 0
    # read-only memory (a memory-mapped shard) and out-of-range row numbers, counted and skipped as by numba
    broken = indices.copy()
    broken[starts[3]], broken[starts[3] + 1] = 10_000, -1
    broken.flags.writeable = data.flags.writeable = False
    reference = np.zeros(500)
    sums, bad = _compiled.range_sums(data, broken, starts, stops, weights, 500)
    assert bad == range_sums(data, broken, starts, stops, weights, reference) == 2
    np.testing.assert_array_equal(sums, reference)
    # the entry points prefer it, with the same results
    np.testing.assert_array_equal(_kernels.sum_column_ranges(data, indices, starts, stops, weights, 500)[0], expected)
    # other dtypes (shards written by other tools) are left to the other kernels
    assert _compiled.range_sums(data.astype(np.float64), indices, starts, stops, weights, 500) is None
    with pytest.raises(IndexError, match="outside the arrays"):
        _compiled.range_sums(data, indices, starts, stops + len(data), weights, 500)


@needs_compiler
def test_a_one_shot_process_leaves_the_library_and_a_damaged_one_is_rebuilt(tmp_path):
    env = {**os.environ, "SIGSCAN_CACHE": str(tmp_path)}
    env.pop("SIGSCAN_NO_COMPILE", None)
    code = "from sigscan.atlas import _compiled; print(_compiled.kernel() is None)"
    run = [sys.executable, "-c", code]
    assert subprocess.run(run, env=env, capture_output=True, text=True, check=True).stdout.strip() == "True"
    (library,) = tmp_path.glob("atlas-kernel-*.so")  # built before the process exited
    assert subprocess.run(run, env=env, capture_output=True, text=True, check=True).stdout.strip() == "False"
    library.write_bytes(b"not a library")
    assert subprocess.run(run, env=env, capture_output=True, text=True, check=True).stdout.strip() == "True"
    assert subprocess.run(run, env=env, capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_without_compiler_or_when_switched_off_the_other_kernels_serve(tmp_path, monkeypatch):
    monkeypatch.setenv("SIGSCAN_CACHE", str(tmp_path))
    monkeypatch.setenv("SIGSCAN_NO_COMPILE", "1")
    _fresh_state(monkeypatch)
    assert _compiled.kernel() is None and _compiled._compiling is None
    monkeypatch.delenv("SIGSCAN_NO_COMPILE")
    monkeypatch.setattr(_compiled, "_compiler", lambda: None)
    _fresh_state(monkeypatch)
    assert _compiled.kernel() is None and _compiled._compiling is None
    data = np.ones(4, np.float32)
    indices = np.arange(4, dtype=np.int32)
    assert _compiled.range_sums(data, indices, np.array([0]), np.array([4]), np.ones(1), 4) is None
    np.testing.assert_array_equal(
        _kernels.sum_column_ranges(data, indices, np.array([0]), np.array([4]), np.ones(1), 4)[0], np.ones(4)
    )


@needs_compiler
def test_a_library_that_cannot_be_built_or_loaded_is_not_tried_again(tmp_path, monkeypatch):
    monkeypatch.setenv("SIGSCAN_CACHE", str(tmp_path))
    monkeypatch.delenv("SIGSCAN_NO_COMPILE", raising=False)

    def unloadable(path):
        raise OSError(f"{path}: failed to map segment from shared object")  # as on a noexec mount

    monkeypatch.setattr(_compiled, "_load", unloadable)
    _fresh_state(monkeypatch)
    assert _compiled.kernel() is None
    _compiled._compiling.join(timeout=120)
    assert not list(tmp_path.glob("atlas-kernel-*.so")) and list(tmp_path.glob("*.unusable"))
    _fresh_state(monkeypatch)
    assert _compiled.kernel() is None and _compiled._compiling is None  # not built again
