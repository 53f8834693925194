"""``sigscan analyses IN --model KIND:DIR --gmt FILE --groupby COL --out DIR``: the robustness report."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

import sigscan as ss
from sigscan.cli import main
from sigscan.tl._robustness_report import ANALYSES


@pytest.fixture
def files(scimilarity_model, pbmc_small, tmp_path):
    counts = tmp_path / "counts.h5ad"
    # phases to exercise the cell-cycle section (its numbers are tested in tests/tl/test_analyses.py)
    pbmc_small.obs["phase"] = np.resize(["G1", "S", "G2M"], pbmc_small.n_obs)
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
    code = main([*args, "--phase-key", "phase", "--fractions", "0", "0.5"])
    assert code == 0
    assert f"wrote {out / 'report.html'}" in capsys.readouterr().out
    markdown = (out / "report.md").read_text()
    page = (out / "report.html").read_text()
    for name in ANALYSES:
        assert f"]({name}.png)" in markdown
        assert (out / f"{name}.png").stat().st_size > 0
        assert not pd.read_csv(out / f"{name}.csv").empty
    assert page.count('src="data:image/png;base64,') == len(ANALYSES)  # self-contained: figures inline
    assert "Not run" not in markdown
    table = pd.read_csv(out / "downsampling.csv")
    assert set(table["fraction"]) == {0.0, 0.5}
    assert (table.query("fraction == 0 and kind == 'ranking'")["spearman"] == 1.0).all()
    qc = pd.read_csv(out / "qc_correlation.csv")
    assert set(qc["group"]) == {"B cells", "NK cells", "CD14+ Monocytes"}
    assert set(qc["method"]) == {"attribution", "mean"}


def test_report_without_phases_says_why(pbmc_small, scimilarity_model, tmp_path):
    sets = {"B cells": ["CD79A", "MS4A1"], "NK cells": ["GNLY", "NKG7"]}
    page = ss.tl.robustness_report(
        pbmc_small,
        scimilarity_model,
        sets,
        groupby="cell_type",
        out=tmp_path,
        fractions=(0,),
        method="ixg",
        n_shuffles=0,
        analyses=["downsampling", "qc_correlation"],
    )
    assert page == tmp_path / "report.html"
    assert "attr_scimilarity_ixg" in pbmc_small.layers
    assert set(pbmc_small.uns["sigscan"]) >= {"downsampling", "qc_correlation"}
    with pytest.raises(ValueError, match=r"cell_cycle.*phase_key="):
        ss.tl.robustness_report(
            pbmc_small, scimilarity_model, sets, groupby="cell_type", out=tmp_path, analyses=["cell_cycle"]
        )
    assert "Not run" not in (tmp_path / "report.md").read_text()


@pytest.mark.parametrize(
    ("extra", "pattern"),
    [
        (["--groupby", "celltype"], r"--groupby 'celltype' is not an obs column"),
        (["--groupby", "cell_type", "--layer", "raw"], r"--layer 'raw' is not a layer"),
        (["--groupby", "cell_type", "--fractions", "0", "1"], r"--fractions 1\.0: each must be in \[0, 1\)"),
        (["--groupby", "cell_type", "--phase-key", "cycle"], r"--phase-key 'cycle' is not an obs column"),
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
