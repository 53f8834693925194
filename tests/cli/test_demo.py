"""`sigscan demo`: the main job runs end to end on bundled data and its model cache is reused."""

from __future__ import annotations

import json
import os

import anndata as ad
import numpy as np
import pandas as pd

from sigscan.cli import main


def test_demo_writes_report_and_reuses_cached_model(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SIGSCAN_CACHE", os.fspath(tmp_path / "cache"))
    out = tmp_path / "demo"
    args = ["--max-epochs", "3", "--n-splits", "2"]
    assert main(["demo", "--out", os.fspath(out), *args]) == 0
    assert "report.md" in capsys.readouterr().out
    files = [
        "report.md",
        "report.html",
        "summary.json",
        "umap_scores.png",
        "violins_scores.png",
        "compare_scorers.png",
        "compare_scorers.csv",
        "kang_sample_hits.png",
        "kang_sample_hits.csv",
        "pbmc3k_attributions.h5ad",
    ]
    for name in files:
        assert (out / name).stat().st_size > 0, name
    report = (out / "report.md").read_text()
    for section in ("scorer comparison", "hits per sample", "PANGLAODB_B_CELLS", "(compare_scorers.png)"):
        assert section in report
    page = (out / "report.html").read_text()  # one self-contained page: figures inline, nothing fetched
    assert page.count("data:image/png;base64,") == 4
    assert "http://" not in page and "https://" not in page
    assert "PANGLAODB_B_CELLS" in page

    comparison = pd.read_csv(out / "compare_scorers.csv")
    assert set(comparison["method"]) == {"attribution", "ans", "jasmine", "ucell", "scanpy", "mean"}
    assert set(comparison["classifier"]) == {"logreg", "otsu"}
    hits = pd.read_csv(out / "kang_sample_hits.csv")
    by_condition = hits.groupby("condition")["hit_fraction"].mean()
    assert by_condition["stim"] > by_condition["ctrl"]  # the interferon program marks stimulated cells

    adata = ad.read_h5ad(out / "pbmc3k_attributions.h5ad")
    sums = np.asarray(adata.layers["attr_scvi_ig"].sum(axis=1)).ravel()
    np.testing.assert_allclose(sums[sums > 0], 1000, rtol=1e-4)
    # even a 3-epoch model ranks the B-cell signature highest in B cells
    means = adata.obs.groupby("cell_type", observed=True)["PANGLAODB_B_CELLS"].mean()
    assert means.idxmax() == "B cells"

    first = json.loads((out / "summary.json").read_text())["timings_s"]["PBMC3k scVI model"]
    assert main(["demo", "--out", os.fspath(tmp_path / "again"), *args]) == 0
    second = json.loads((tmp_path / "again" / "summary.json").read_text())["timings_s"]["PBMC3k scVI model"]
    assert second < first  # loaded from the cache, not retrained
