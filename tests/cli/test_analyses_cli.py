"""``sigscan analyses IN --model KIND:DIR --gmt FILE --groupby COL --out DIR``: the robustness report."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from sigscan.cli import main


@pytest.fixture
def files(scimilarity_model, pbmc_small, tmp_path):
    counts = tmp_path / "counts.h5ad"
    pbmc_small.write_h5ad(counts)
    model_dir = scimilarity_model.save(tmp_path / "scimilarity")
    gmt = tmp_path / "markers.gmt"
    gmt.write_text(
        "B cells\tmarkers\tCD79A\tMS4A1\tCD79B\tCD19\n"
        "NK cells\tmarkers\tGNLY\tNKG7\tPRF1\tGZMB\n"
        "CD14+ Monocytes\tmarkers\tCD14\tLYZ\tS100A8\tS100A9\n"
    )
    return counts, model_dir, gmt


def _error(capsys, pattern):
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("sigscan analyses: error: "), err
    assert re.search(pattern, err), err


def test_analyses_writes_report(files, tmp_path, capsys):
    counts, model_dir, gmt = files
    out = tmp_path / "report"
    args = ["analyses", str(counts), "--model", f"scimilarity:{model_dir}", "--gmt", str(gmt)]
    args += ["--groupby", "cell_type", "--out", str(out), "--method", "ixg", "--n-shuffles", "2"]
    code = main([*args, "--analyses", "downsampling", "--fractions", "0", "0.5"])
    assert code == 0
    assert f"wrote {out / 'report.html'}" in capsys.readouterr().out
    markdown = (out / "report.md").read_text()
    assert "Downsampling" in markdown and "downsampling.png" in markdown
    assert (out / "downsampling.png").stat().st_size > 0
    page = (out / "report.html").read_text()
    assert "data:image/png;base64," in page and 'src="downsampling.png"' not in page
    table = pd.read_csv(out / "downsampling.csv")
    assert set(table["fraction"]) == {0.0, 0.5}
    assert (table.query("fraction == 0 and kind == 'ranking'")["spearman"] == 1.0).all()


@pytest.mark.parametrize(
    ("extra", "pattern"),
    [
        (["--groupby", "celltype"], r"--groupby 'celltype' is not an obs column"),
        (["--groupby", "cell_type", "--layer", "raw"], r"--layer 'raw' is not a layer"),
        (["--groupby", "cell_type", "--fractions", "0", "1"], r"--fractions 1\.0: each must be in \[0, 1\)"),
        (["--groupby", "cell_type", "--phase-key", "phase"], r"--phase-key 'phase' is not an obs column"),
    ],
)
def test_analyses_errors_name_flags(files, tmp_path, capsys, extra, pattern):
    counts, model_dir, gmt = files
    args = ["analyses", str(counts), "--model", f"scimilarity:{model_dir}", "--gmt", str(gmt), "--out", str(tmp_path)]
    assert main([*args, *extra]) == 2
    _error(capsys, pattern)


def test_analyses_bad_model_flag(files, tmp_path, capsys):
    counts, _, gmt = files
    args = ["analyses", str(counts), "--model", "nope:/x", "--gmt", str(gmt), "--groupby", "cell_type"]
    assert main([*args, "--out", str(tmp_path)]) == 2
    _error(capsys, r"--model 'nope:/x'")
