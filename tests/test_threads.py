"""The thread budget (affinity, cgroup quota, user override) and its application to numba, torch and BLAS."""

from __future__ import annotations

import os
import threading

import numba
import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_info

import sigscan as ss
from sigscan import _threads


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def proc(tmp_path):
    """A fake ``/proc/self/cgroup`` for a process in cgroup ``/app/job`` (v2) and ``/app`` (v1 cpu controller)."""
    path = tmp_path / "proc_cgroup"
    path.write_text("12:cpu,cpuacct:/app\n4:memory:/app\n0::/app/job\n")
    return path


def test_cgroup_v2_quota_is_the_tightest_of_the_cgroup_and_its_parents(tmp_path, proc):
    root = tmp_path / "cgroup"
    _write(root / "cpu.max", "max 100000\n")
    _write(root / "app" / "cpu.max", "150000 100000\n")  # 1.5 CPUs for the parent
    _write(root / "app" / "job" / "cpu.max", "max 100000\n")  # none of its own
    assert _threads.cgroup_cpu_limit(root, proc) == pytest.approx(1.5)
    _write(root / "app" / "job" / "cpu.max", "50000 100000\n")
    assert _threads.cgroup_cpu_limit(root, proc) == pytest.approx(0.5)


def test_cgroup_v1_quota(tmp_path, proc):
    root = tmp_path / "cgroup"
    _write(root / "cpu,cpuacct" / "cpu.cfs_quota_us", "-1\n")
    _write(root / "cpu,cpuacct" / "cpu.cfs_period_us", "100000\n")
    assert _threads.cgroup_cpu_limit(root, proc) is None  # -1: no quota
    _write(root / "cpu,cpuacct" / "app" / "cpu.cfs_quota_us", "300000\n")
    _write(root / "cpu,cpuacct" / "app" / "cpu.cfs_period_us", "100000\n")
    assert _threads.cgroup_cpu_limit(root, proc) == pytest.approx(3.0)


def test_no_cgroup_files_means_no_quota(tmp_path):
    assert _threads.cgroup_cpu_limit(tmp_path / "missing", tmp_path / "missing_proc") is None


def test_container_path_not_visible_reads_the_mount_root(tmp_path):
    proc = tmp_path / "proc_cgroup"
    proc.write_text("0::/docker/0123abcd\n")  # host path; the container sees its own cgroup at the root
    _write(tmp_path / "cgroup" / "cpu.max", "200000 100000\n")
    assert _threads.cgroup_cpu_limit(tmp_path / "cgroup", proc) == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("affinity", "cpu_max", "expected"),
    [(8, None, 8), (8, "150000 100000", 2), (8, "30000 100000", 1), (2, "800000 100000", 2)],
)
def test_available_cpus_is_affinity_capped_by_quota(tmp_path, monkeypatch, affinity, cpu_max, expected):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(affinity)), raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)  # the host's count must never be used
    proc = tmp_path / "proc_cgroup"
    proc.write_text("0::/\n")
    if cpu_max is not None:
        _write(tmp_path / "cgroup" / "cpu.max", cpu_max)
    assert _threads.available_cpus(tmp_path / "cgroup", proc) == expected


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"OMP_NUM_THREADS": "3"}, 3),
        ({"OMP_NUM_THREADS": "4,2"}, 4),  # OpenMP's per-level list: the outer level
        ({"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "3"}, 1),  # numba's own variable first
        ({"OMP_NUM_THREADS": "zero"}, None),
        ({"OMP_NUM_THREADS": "0"}, None),
    ],
)
def test_user_thread_setting(environ, expected):
    assert _threads.user_thread_setting(environ) == expected


def test_thread_budget_prefers_the_users_environment(monkeypatch):
    monkeypatch.setattr(_threads, "available_cpus", lambda: 6)
    monkeypatch.delenv("NUMBA_NUM_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert _threads.thread_budget() == 6
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert _threads.thread_budget() == 1


def _blas_threads() -> list[int]:
    return [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"]


def test_limit_threads_applies_and_restores_settings():
    torch_before, numba_before, blas_before = torch.get_num_threads(), numba.get_num_threads(), _blas_threads()
    with pytest.raises(RuntimeError, match="inside"), _threads.limit_threads(1) as n:
        assert n == 1
        assert torch.get_num_threads() == 1
        assert numba.get_num_threads() == 1
        assert all(threads == 1 for threads in _blas_threads())
        raise RuntimeError("inside")  # restored on errors too
    assert (torch.get_num_threads(), numba.get_num_threads(), _blas_threads()) == (
        torch_before,
        numba_before,
        blas_before,
    )


def test_limit_threads_never_raises_a_count_the_user_lowered():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with _threads.limit_threads(64):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(previous)


def test_attribution_run_uses_the_budget_and_restores_the_users_settings(pbmc_small, monkeypatch):
    model = ss.models.SCimilarity.random(pbmc_small.var_names[:400], hidden_dim=(32,), latent_dim=8)
    seen = []
    call = ss._engine.FastPath.__call__

    def spy(self, x, **kwargs):
        if threading.current_thread() is threading.main_thread():  # not the background warm-up's calls
            seen.append((torch.get_num_threads(), numba.get_num_threads()))
        return call(self, x, **kwargs)

    monkeypatch.setattr(ss._engine.FastPath, "__call__", spy)
    monkeypatch.setenv("NUMBA_NUM_THREADS", "1")  # the user's override
    before = torch.get_num_threads(), numba.get_num_threads()
    ss.pp.attributions(pbmc_small, model, method="ixg", progress=False)
    assert seen and all(threads == (1, 1) for threads in seen)
    assert (torch.get_num_threads(), numba.get_num_threads()) == before


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="numba's pool has one thread on this machine")
@pytest.mark.parametrize("method", ["ig", "ixg"])
def test_results_do_not_depend_on_the_thread_count(pbmc_small, method):
    model = ss.models.SCimilarity.random(pbmc_small.var_names[:400], hidden_dim=(32,), latent_dim=8)
    x = model.prepare(pbmc_small)
    engine = ss._engine.FastPath(model, normalize=method == "ig", device=torch.device("cpu"))

    def run(numba_threads: int, torch_threads: int) -> np.ndarray:
        with _threads.limit_threads(2):
            numba.set_num_threads(numba_threads)
            torch.set_num_threads(torch_threads)
            return engine(x, method=method, n_steps=8).data

    one = run(1, 1)
    # numba kernels: every output element is summed by one thread in a fixed order, so the split is invisible
    np.testing.assert_array_equal(run(2, 1), one)
    # torch/MKL may split a dot product across threads: equal up to float rounding only
    np.testing.assert_allclose(run(2, 2), one, rtol=1e-5, atol=1e-6 * np.abs(one).max())


def test_passive_waiting_leaves_the_environment_as_it_was(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.setenv("KMP_BLOCKTIME", "200")  # the user's choice: kept
    assert _threads.prefer_passive_waiting() == ["OMP_WAIT_POLICY"]
    assert "OMP_WAIT_POLICY" not in os.environ  # set only while the runtimes load: children see the user's env
    assert os.environ["KMP_BLOCKTIME"] == "200"
