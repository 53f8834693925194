"""``sigscan concepts IN --model KIND:DIR --n-concepts N --k K --gmt SETS --out DIR``, run in-process."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import sigscan as ss
from sigscan.cli import main
from sigscan.pl._concept_explorer import read_payload


@pytest.fixture
def files(scimilarity_model, pbmc_small, tmp_path):
    counts = tmp_path / "counts.h5ad"
    pbmc_small.write_h5ad(counts)
    return counts, scimilarity_model.save(tmp_path / "scimilarity")


def test_writes_anndata_genes_and_enrichment(files, scimilarity_model, pbmc_small, tmp_path, capsys):
    counts, model_dir = files
    out = tmp_path / "out"
    args = ["concepts", str(counts), "--model", f"scimilarity:{model_dir}", "--n-concepts", "6", "--k", "2"]
    args += ["--n-epochs", "3", "--n-cells", "5", "--n-top", "20", "--gmt", "panglaodb_immune", "--out", str(out)]
    assert main([*args, "--device", "cpu", "--groupby", "cell_type"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == [
        "concept_enrichment.csv",
        "concept_explorer.html",
        "concept_genes.csv",
        "concepts.h5ad",
    ]
    explorer = read_payload(out / "concept_explorer.html")  # drawn on a UMAP of the embeddings, groups ranked
    assert explorer["n_cells"] == pbmc_small.n_obs and explorer["basis"] == "X_umap"
    assert explorer["groups"]["key"] == "cell_type" and explorer["enrichment"] is not None
    result = ad.read_h5ad(out / "concepts.h5ad")
    assert result.obsm["concepts"].shape == (pbmc_small.n_obs, 6)
    assert result.obsm["concepts"].getnnz(axis=1).max() <= 2
    # the same calls in Python give the same concepts (deterministic on CPU)
    expected = pbmc_small.copy()
    ss.pp.embeddings(expected, scimilarity_model, device="cpu", progress=False)
    ss.tl.concepts(expected, use_rep="X_scimilarity", n_concepts=6, k=2, n_epochs=3, device="cpu")
    np.testing.assert_array_equal(result.obsm["concepts"].toarray(), expected.obsm["concepts"].toarray())
    enrichment = pd.read_csv(out / "concept_enrichment.csv")
    assert {"concept", "gene_set", "overlap", "p", "fdr"} <= set(enrichment.columns)
    genes = pd.read_csv(out / "concept_genes.csv")
    assert list(genes.columns) == ["concept", "gene", "score", "frac_cells", "rank"]


@pytest.mark.parametrize(
    ("extra", "pattern", "status"),
    [
        (["--k", "6"], r"--k 6: use 1 <= --k < --n-concepts \(6\)", 2),
        (["--gmt", "nosuch"], r"--gmt nosuch: no such file", 1),  # a missing file is an I/O error: status 1
        (["--model", "scimilarity"], r"--model", 2),
        (["--groupby", "louvain"], r"--groupby louvain: not a column", 2),
    ],
)
def test_bad_input_is_one_line(files, tmp_path, capsys, extra, pattern, status):
    counts, model_dir = files
    args = ["concepts", str(counts), "--model", f"scimilarity:{model_dir}", "--n-concepts", "6", "--k", "2"]
    out = tmp_path / "out"
    code = main([*args, *extra, "--out", str(out)])
    assert code == status
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("sigscan concepts: error: ")
    import re

    assert re.search(pattern, err[-1]), err[-1]
    assert not out.exists()
