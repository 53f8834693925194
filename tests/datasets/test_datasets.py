"""Bundled real data: the figures documented in shared/data/README.md."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

import sigscan as ss


def _assert_raw_counts(adata):
    assert sparse.isspmatrix_csr(adata.X)
    assert adata.X.dtype == np.float32
    data = adata.X.data
    assert data.min() > 0
    np.testing.assert_array_equal(data, np.round(data))


def test_pbmc3k(pbmc3k):
    assert pbmc3k.shape == (2700, 32738)
    _assert_raw_counts(pbmc3k)
    assert int(pbmc3k.X.sum(dtype=np.float64)) == 6_390_631
    assert pbmc3k.obs["cell_type"].value_counts().to_dict() == {
        "CD4 T cells": 1144,
        "CD14+ Monocytes": 480,
        "B cells": 342,
        "CD8 T cells": 316,
        "NK cells": 154,
        "FCGR3A+ Monocytes": 150,
        "unknown": 62,
        "Dendritic cells": 37,
        "Megakaryocytes": 15,
    }
    assert int(pbmc3k.obs["passed_tutorial_qc"].sum()) == 2638
    assert (pbmc3k.obs["cell_type"][pbmc3k.obs["passed_tutorial_qc"]] != "unknown").all()
    assert pbmc3k.var_names.is_unique
    assert pbmc3k.var.loc["CD3E", "gene_ids"].startswith("ENSG")
    assert "MS4A1" in pbmc3k.var_names


def test_kang_ifnb():
    adata = ss.datasets.kang_ifnb()
    assert adata.shape == (1556, 1267)
    _assert_raw_counts(adata)
    obs = adata.obs
    assert obs["condition"].value_counts().to_dict() == {"stim": 806, "ctrl": 750}
    assert obs["donor"].astype(str).value_counts().to_dict() == {"101": 954, "107": 602}
    assert obs["sample"].value_counts().to_dict() == {"stim101": 500, "ctrl101": 454, "stim107": 306, "ctrl107": 296}
    assert obs["cell_type"].value_counts().to_dict() == {
        "CD14+ Monocytes": 400,
        "CD4 T cells": 400,
        "B cells": 298,
        "FCGR3A+ Monocytes": 249,
        "CD8 T cells": 209,
    }
    assert adata.obs_names.is_unique and adata.var_names.is_unique
    assert adata.var["gene_ids"].astype(str).str.startswith("ENSG").all()
    # the interferon program is visible: mean ISG15 counts 0.28 (ctrl) vs 47.0 (stim)
    isg15 = adata[:, "ISG15"].X.toarray().ravel()
    stim = (obs["condition"] == "stim").to_numpy()
    assert isg15[~stim].mean() == pytest.approx(0.28, abs=0.01)
    assert isg15[stim].mean() == pytest.approx(47.0, abs=0.1)


def test_datasets_are_fresh_copies():
    a = ss.datasets.kang_ifnb()
    a.X.data[:] = 0
    assert ss.datasets.kang_ifnb().X.sum() > 0


def test_toy():
    adata = ss.datasets.toy(n_cells=120, n_genes=60, n_groups=3, program_size=5, random_state=2)
    assert adata.shape == (120, 60)
    _assert_raw_counts(adata)
    assert adata.uns["programs"]["group1"] == [f"PROG1_{i}" for i in range(5)]
    # each group over-expresses its own program
    for group, genes in adata.uns["programs"].items():
        inside = (adata.obs["group"] == group).to_numpy()
        program = adata[:, genes].X.toarray().mean(axis=1)
        assert program[inside].mean() > 2 * program[~inside].mean()
    again = ss.datasets.toy(n_cells=120, n_genes=60, n_groups=3, program_size=5, random_state=2)
    np.testing.assert_array_equal(again.X.toarray(), adata.X.toarray())
    with pytest.raises(ValueError, match="must not exceed n_genes"):
        ss.datasets.toy(n_genes=10, n_groups=3, program_size=5)
