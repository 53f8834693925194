"""``benchmarks/gpu.py --device cpu --quick``: the GPU table's code path runs on CPU and writes sane figures."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from sigscan import _engine

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def gpu_benchmark(monkeypatch):
    """benchmarks/gpu.py as a module (its folder on ``sys.path`` for its sibling imports)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    monkeypatch.setattr(_engine, "TORCH_KERNELS_ON_CPU", False)  # restored after the run, which sets it
    spec = importlib.util.spec_from_file_location("gpu_benchmark", BENCHMARKS / "gpu.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gpu_benchmark", module)
    spec.loader.exec_module(module)
    return module


def _run(module, tmp_path, *extra: str) -> dict:
    out = tmp_path / "gpu.json"
    module.main(["--device", "cpu", "--quick", "--out", str(out), *extra])
    assert not (tmp_path / "gpu.json.partial").exists()
    return json.loads(out.read_text())


def _check_row(row: dict) -> None:
    methods = [key.removesuffix("_cells_per_s") for key in row if key.endswith("_cells_per_s")]
    assert methods, row
    for method in methods:
        assert row[f"{method}_cells_per_s"] > 0
        assert row[f"{method}_batch_size"] >= 1
        assert row[f"{method}_rows_sum_to_target"] is True


def test_quick_cpu_run_scimilarity(gpu_benchmark, tmp_path):
    """SCimilarity rows, bf16 against float32 and the SPEC goal, through the fast path's device branch."""
    result = _run(gpu_benchmark, tmp_path, "--scimilarity-only")
    assert result["quick"] is True
    assert result["machine"]["device"] == "cpu"
    rows = result["rows"]
    assert len(rows) == 2 and all(row["model"].startswith("SCimilarity") for row in rows)
    assert [row["precision"] for row in rows] == ["float32", "bf16"]
    assert set(rows[0]) >= {"ig_cells_per_s", "dl_cells_per_s", "ixg_cells_per_s"}
    for row in rows:
        _check_row(row)
    error = result["bf16_vs_float32"]
    assert 0 < error["max_abs_diff"] < 50
    assert 0.99 <= error["min_pearson"] <= error["median_pearson"] <= 1
    goal = result["goal"]
    assert goal["ig_cells_per_s"] == rows[0]["ig_cells_per_s"]
    assert goal["spec_goal_cells_per_s"] == 50_000
    assert goal["meets_goal"] is (goal["ig_cells_per_s"] >= 50_000)


@pytest.mark.slow
def test_quick_cpu_run_whole_table(gpu_benchmark, tmp_path):
    """Every row of the table: scVI (or why it is skipped), scGPT, scFoundation and SSL-scTab too."""
    rows = _run(gpu_benchmark, tmp_path)["rows"]
    names = [row["model"] for row in rows]
    for prefix in ("SCimilarity", "scVI", "scGPT", "scFoundation", "SSL-scTab"):
        assert any(name.startswith(prefix) for name in names), prefix
    for row in rows:
        if "skipped" in row:  # scVI without scvi-tools
            assert row["model"] == "scVI"
            continue
        _check_row(row)
