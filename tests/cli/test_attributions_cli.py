"""``sigscan attributions IN --model KIND:DIR --method M --out OUT`` (SPEC 6), run in-process."""

from __future__ import annotations

import re

import anndata as ad
import numpy as np
import pytest

import sigscan as ss
from sigscan.cli import main


@pytest.fixture
def files(scimilarity_model, pbmc_small, tmp_path):
    counts = tmp_path / "counts.h5ad"
    pbmc_small.write_h5ad(counts)
    model_dir = scimilarity_model.save(tmp_path / "scimilarity")
    expected = pbmc_small.copy()
    ss.pp.attributions(expected, scimilarity_model, method="ixg", device="cpu", progress=False)
    return counts, model_dir, expected


def _one_error_line(capsys, pattern):
    """One error line on stderr, starting a line of its own (a progress bar may precede it on backed input)."""
    lines = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in lines if "error" in line]
    assert len(errors) == 1, lines
    assert lines[-1] == errors[0]
    assert errors[0].startswith("sigscan attributions: error: "), errors[0]
    assert re.search(pattern, errors[0]), errors[0]
    assert all(line.startswith("attributions (") for line in lines[:-1]), lines


def test_h5ad_out(files, tmp_path, capsys):
    counts, model_dir, expected = files
    out = tmp_path / "out.h5ad"
    code = main(
        ["attributions", str(counts), "--model", f"scimilarity:{model_dir}", "--method", "ixg", "--out", str(out)]
    )
    assert code == 0
    assert f"wrote {out}" in capsys.readouterr().out
    result = ad.read_h5ad(out)
    np.testing.assert_array_equal(
        result.layers["attr_scimilarity_ixg"].toarray(), expected.layers["attr_scimilarity_ixg"].toarray()
    )
    np.testing.assert_array_equal(result.X.toarray(), expected.X.toarray())  # a copy of IN with the layer
    assert result.uns["sigscan"]["attributions"]["attr_scimilarity_ixg"]["head"] == "prenorm"


def test_zarr_out(files, tmp_path):
    counts, model_dir, expected = files
    out = tmp_path / "out.zarr"
    args = ["attributions", str(counts), "--model", f"scimilarity:{model_dir}", "--method", "ixg", "--out", str(out)]
    assert main([*args, "--batch-size", "16"]) == 0
    stored = ad.read_zarr(out)
    # other batches than the fixture's: equal up to float32 rounding (which genes of a batch take the dense product
    # depends on the batch)
    np.testing.assert_allclose(
        stored.X.toarray(), expected.layers["attr_scimilarity_ixg"].toarray(), rtol=1e-5, atol=1e-4
    )
    assert list(stored.obs_names) == list(expected.obs_names)
    # running again on a finished store reuses it
    assert main([*args, "--batch-size", "16"]) == 0
    # other settings on the same store are refused with one line
    assert main([*args, "--batch-size", "16", "--head", "reference"]) == 2


def test_scvi_model_and_options(scvi_dir, scvi_model, scvi_adata, tmp_path):
    counts = tmp_path / "counts.h5ad"
    adata = scvi_adata.copy()
    adata.layers["raw"] = adata.X.copy()
    adata.X = adata.X * 0.5  # not counts: the command must read --layer
    adata.write_h5ad(counts)
    out = tmp_path / "out.h5ad"
    argv = ["attributions", str(counts), "--model", f"scvi:{scvi_dir}", "--method", "ig", "--n-steps", "4"]
    assert main([*argv, "--layer", "raw", "--key-added", "ig4", "--out", str(out)]) == 0
    expected = scvi_adata.copy()
    ss.pp.attributions(expected, scvi_model, method="ig", n_steps=4, device="cpu", progress=False)
    np.testing.assert_allclose(
        ad.read_h5ad(out).layers["ig4"].toarray(), expected.layers["attr_scvi_ig"].toarray(), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        ({"input": "missing.h5ad", "exit": 1}, r"does not exist"),  # I/O errors exit 1 (issue 9)
        ({"model": "scimilarity"}, r"use KIND:DIR"),
        ({"model": "bert:{dir}"}, r"use KIND:DIR with KIND one of scimilarity, scvi"),
        ({"model": "scimilarity:{tmp}/nowhere", "exit": 1}, r"missing encoder.ckpt"),
        ({"out": "out.csv"}, r"use a .h5ad, .zarr or .h5mu path"),
        ({"out": "out.h5mu"}, r"use the same format \(.h5ad\) or a .zarr store"),
        ({"extra": ["--layer", "nope"]}, r"Layer 'nope' not found"),
        ({"extra": ["--n-steps", "0"], "method": "ig"}, r"n_steps must be a positive integer"),
        ({"extra": ["--device", "tpu"]}, r"Unknown device"),
    ],
    ids=[
        "missing_input",
        "model_without_dir",
        "unknown_model_kind",
        "missing_model_folder",
        "bad_out_suffix",
        "out_format_differs",
        "missing_layer",
        "zero_steps",
        "unknown_device",
    ],
)
def test_bad_input_exits_2_with_one_line(files, tmp_path, capsys, change, pattern):
    counts, model_dir, _ = files
    argv = [
        "attributions",
        str(tmp_path / change["input"]) if "input" in change else str(counts),
        "--model",
        change.get("model", "scimilarity:{dir}").format(dir=model_dir, tmp=tmp_path),
        "--method",
        change.get("method", "ixg"),
        "--out",
        str(tmp_path / change.get("out", "out.h5ad")),
        *change.get("extra", []),
    ]
    assert main(argv) == change.get("exit", 2)
    _one_error_line(capsys, pattern)
    assert not (tmp_path / "out.h5ad").exists()


def test_log_normalised_input_exits_2(scimilarity_model, pbmc_small, tmp_path, capsys):
    adata = pbmc_small.copy()
    adata.X.data = np.log1p(adata.X.data)
    path = tmp_path / "lognorm.h5ad"
    adata.write_h5ad(path)
    model_dir = scimilarity_model.save(tmp_path / "m")
    argv = ["attributions", str(path), "--model", f"scimilarity:{model_dir}", "--out", str(tmp_path / "o.h5ad")]
    assert main([*argv, "--method", "ixg"]) == 2
    _one_error_line(capsys, r"log-normalised.*--layer")  # the CLI names its flag
    assert main([*argv, "--method", "ixg", "--out", str(tmp_path / "o.zarr")]) == 2  # backed input, per batch
    _one_error_line(capsys, r"log-normalised")


def test_h5mu_in_and_out(scimilarity_model, pbmc_small, tmp_path, capsys):
    mudata = pytest.importorskip("mudata")
    protein = ad.AnnData(np.ones((pbmc_small.n_obs, 2), dtype=np.float32), obs=pbmc_small.obs[[]])
    mudata.MuData({"rna": pbmc_small, "prot": protein}).write(tmp_path / "in.h5mu")
    model_dir = scimilarity_model.save(tmp_path / "m")
    argv = ["attributions", str(tmp_path / "in.h5mu"), "--model", f"scimilarity:{model_dir}", "--method", "ixg"]
    assert main([*argv, "--out", str(tmp_path / "out.h5mu")]) == 0
    result = mudata.read_h5mu(tmp_path / "out.h5mu")
    expected = pbmc_small.copy()
    ss.pp.attributions(expected, scimilarity_model, method="ixg", device="cpu", progress=False)
    np.testing.assert_array_equal(
        result.mod["rna"].layers["attr_scimilarity_ixg"].toarray(), expected.layers["attr_scimilarity_ixg"].toarray()
    )
    assert main([*argv, "--out", str(tmp_path / "out.h5ad")]) == 2
    _one_error_line(capsys, r"use the same format \(.h5mu\)")


def test_help_and_bad_choice(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["attributions", "--help"])
    assert exit_info.value.code == 0
    assert "--method" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["attributions", "x.h5ad", "--model", "scimilarity:m", "--method", "shap", "--out", "o.h5ad"])
    assert exit_info.value.code == 2
