"""`sigscan demo`: the main job runs end to end on bundled data and its model cache is reused."""

from __future__ import annotations

import json
import os

import anndata as ad
import numpy as np

from sigscan.cli import main


def test_demo_writes_report_and_reuses_cached_model(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SIGSCAN_CACHE", os.fspath(tmp_path / "cache"))
    out = tmp_path / "demo"
    assert main(["demo", "--out", os.fspath(out), "--max-epochs", "3"]) == 0
    assert "report.md" in capsys.readouterr().out
    for name in ("report.md", "umap_scores.png", "violins_scores.png", "pbmc3k_attributions.h5ad", "summary.json"):
        assert (out / name).stat().st_size > 0, name
    report = (out / "report.md").read_text()
    assert "PANGLAODB_B_CELLS" in report and "![umap_scores.png]" in report

    adata = ad.read_h5ad(out / "pbmc3k_attributions.h5ad")
    sums = np.asarray(adata.layers["attr_scvi_ig"].sum(axis=1)).ravel()
    np.testing.assert_allclose(sums[sums > 0], 1000, rtol=1e-4)
    # even a 3-epoch model ranks the B-cell signature highest in B cells
    means = adata.obs.groupby("cell_type", observed=True)["PANGLAODB_B_CELLS"].mean()
    assert means.idxmax() == "B cells"

    first = json.loads((out / "summary.json").read_text())["timings_s"]["model"]
    assert main(["demo", "--out", os.fspath(tmp_path / "again"), "--max-epochs", "3"]) == 0
    second = json.loads((tmp_path / "again" / "summary.json").read_text())["timings_s"]["model"]
    assert second < first  # loaded from the cache, not retrained
