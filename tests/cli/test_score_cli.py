"""``sigscan score`` and ``sigscan compare``."""

from __future__ import annotations

import pandas as pd
import pytest

import sigscan as ss
from sigscan.cli import main


@pytest.fixture
def files(tmp_path):
    adata = ss.datasets.toy(n_cells=150, n_genes=80)
    programs = adata.uns.pop("programs")
    adata.write_h5ad(tmp_path / "toy.h5ad")
    gmt = tmp_path / "sets.gmt"
    gmt.write_text("".join(f"{g}\tsource\t" + "\t".join(genes) + "\n" for g, genes in programs.items()))
    genes = tmp_path / "genes.txt"
    genes.write_text("\n".join(programs["group0"]) + "\n")
    return tmp_path, programs


def test_score_csv_and_h5ad(files, capsys):
    path, programs = files
    assert (
        main(
            [
                "score",
                str(path / "toy.h5ad"),
                "--genes",
                str(path / "genes.txt"),
                "--method",
                "ucell",
                "--out",
                str(path / "s.csv"),
            ]
        )
        == 0
    )
    scores = pd.read_csv(path / "s.csv", index_col=0)
    assert list(scores.columns) == ["ucell_score"] and len(scores) == 150
    assert (
        main(
            [
                "score",
                str(path / "toy.h5ad"),
                "--gmt",
                str(path / "sets.gmt"),
                "--method",
                "ans",
                "--option",
                "ctrl_size=10",
                "--out",
                str(path / "s.h5ad"),
            ]
        )
        == 0
    )
    import anndata as ad

    out = ad.read_h5ad(path / "s.h5ad")
    assert {f"{g}_ans" for g in programs} <= set(out.obs.columns)


def test_score_bad_input_exits_2(files, capsys):
    path, _ = files
    assert main(["score", str(path / "toy.h5ad"), "--genes", "NOT_A_GENE", "--method", "mean"]) == 2
    assert "None of the 1 genes" in capsys.readouterr().err
    # a missing input is an I/O error: exit 1, one line naming the path (issue 9)
    assert main(["score", str(path / "missing.h5ad"), "--genes", "A", "--method", "mean"]) == 1
    assert "missing.h5ad does not exist" in capsys.readouterr().err


def test_compare_writes_table_and_figures(files):
    path, programs = files
    out = path / "cmp"
    assert (
        main(
            [
                "compare",
                str(path / "toy.h5ad"),
                "--gmt",
                str(path / "sets.gmt"),
                "--groupby",
                "group",
                "--methods",
                "ucell",
                "mean",
                "--n-splits",
                "2",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    table = pd.read_csv(out / "compare_scorers.csv")
    assert set(table["label"]) == set(programs) and set(table["method"]) == {"ucell", "mean"}
    assert (out / "compare_scorers_heatmap.png").exists() and (out / "compare_scorers_bar.png").exists()
    assert (
        main(
            [
                "compare",
                str(path / "toy.h5ad"),
                "--gmt",
                str(path / "sets.gmt"),
                "--groupby",
                "group",
                "--map",
                "group0=NOPE",
                "--out",
                str(out),
            ]
        )
        == 2
    )
