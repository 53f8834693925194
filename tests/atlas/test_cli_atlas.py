import warnings

import numpy as np
import pandas as pd
import pytest

import sigscan as ss
from sigscan.cli import main

LAYER = "attr_scimilarity_ixg"


@pytest.fixture
def inputs(tmp_path, pbmc, kang):
    paths = []
    for name, data in (("pbmc", pbmc), ("kang", kang)):
        path = tmp_path / f"{name}.h5ad"
        data.write_h5ad(path)
        paths.append(str(path))
    return paths


def test_cli_round_trip(tmp_path, capsys, model, pbmc, kang, gene_set, inputs):
    genes_file = tmp_path / "genes.txt"
    genes_file.write_text("\n".join(model.gene_order) + "\n")
    atlas_dir = str(tmp_path / "atlas")
    assert main(["atlas", "build", atlas_dir, inputs[0], "--gene-order", str(genes_file)]) == 0
    assert main(["atlas", "add", atlas_dir, inputs[1], "--name", "kang_study"]) == 0
    assert ss.Atlas(atlas_dir).shard_names == ["pbmc", "kang_study"]

    capsys.readouterr()
    assert main(["atlas", "info", atlas_dir]) == 0
    out = capsys.readouterr().out
    assert "pbmc" in out and "kang_study" in out and "440 cells" in out

    set_file = tmp_path / "set.txt"
    set_file.write_text("\n".join(gene_set) + "\n")
    out_csv = tmp_path / "scores.csv"
    assert main(["atlas", "score", atlas_dir, "--genes", str(set_file), "--out", str(out_csv)]) == 0
    scores = pd.read_csv(out_csv, index_col=0)
    expected = []
    for data in (pbmc, kang):
        data = data.copy()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ss.tl.attribution_score(data, gene_set, layer=LAYER)
        expected.append(data.obs["attribution_score"].to_numpy())
    np.testing.assert_allclose(scores["score"].to_numpy(), np.concatenate(expected), rtol=1e-6)
    assert scores.index.tolist() == pbmc.obs_names.tolist() + kang.obs_names.tolist()
    assert "cell_type" in scores.columns

    gmt = tmp_path / "sets.gmt"
    gmt.write_text("FIRST\tx\t" + "\t".join(gene_set[:5]) + "\nALL\tx\t" + "\t".join(gene_set) + "\n")
    out_gmt = tmp_path / "scores_gmt.csv"
    assert main(["atlas", "score", atlas_dir, "--genes", f"{gmt}:ALL", "--out", str(out_gmt), "--filter",
                 "cell_type == 'B cells'", "--columns", "cell_type"]) == 0  # fmt: skip
    filtered = pd.read_csv(out_gmt, index_col=0)
    assert list(filtered.columns) == ["cell_type", "score"] and set(filtered["cell_type"]) == {"B cells"}
    np.testing.assert_allclose(filtered["score"].to_numpy(), scores.loc[filtered.index, "score"].to_numpy(), rtol=1e-6)

    capsys.readouterr()
    assert main(["atlas", "verify", atlas_dir]) == 0
    assert "all 2 shards verified" in capsys.readouterr().out


def test_cli_errors(tmp_path, capsys, inputs):
    atlas_dir = str(tmp_path / "atlas")
    assert main(["atlas", "build", atlas_dir, inputs[0]]) == 2
    assert "--gene-order" in capsys.readouterr().err
    assert main(["atlas", "info", str(tmp_path / "nothing")]) == 1  # a missing input: an I/O error
    assert "not an atlas" in capsys.readouterr().err
    assert main(["atlas", "build", atlas_dir, str(tmp_path / "missing.h5ad"), "--gene-order", inputs[0]]) == 1
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["atlas", "--help"])


def test_cli_verify_reports_damage(tmp_path, capsys, model, pbmc):
    atlas = ss.Atlas.create(tmp_path / "atlas", model=model)
    atlas.add(pbmc[:50], name="damaged")
    chunk = tmp_path / "atlas" / atlas.manifest.shards[0].path / "X" / "indices" / "0"
    chunk.write_bytes(b"\0" * chunk.stat().st_size)
    assert main(["atlas", "verify", str(tmp_path / "atlas")]) == 1
    assert "damaged" in capsys.readouterr().err


def test_cli_failed_build_leaves_no_atlas(tmp_path, capsys, model, inputs):
    genes = tmp_path / "genes.txt"
    genes.write_text("\n".join(map(str, model.gene_order)) + "\n")
    atlas_dir = tmp_path / "atlas"
    argv = ["atlas", "build", str(atlas_dir), inputs[0], "--gene-order", str(genes), "--layer", "attr_not_there"]
    assert main(argv) == 2
    assert "attr_not_there" in capsys.readouterr().err
    assert not atlas_dir.exists()
