"""Gene sets: bundled collections, GMT reading and matching against a dataset (SPEC 2)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import sigscan as ss
from sigscan._gene_sets import as_gene_list, as_gene_sets, match_genes


def test_hallmark():
    sets = ss.datasets.gene_sets("hallmark")
    assert len(sets) == 50
    assert len(set().union(*sets.values())) == 4384
    assert len(sets["HALLMARK_INTERFERON_ALPHA_RESPONSE"]) == 97
    assert len(sets["HALLMARK_INTERFERON_GAMMA_RESPONSE"]) == 200
    assert "WARS1" in sets["HALLMARK_INTERFERON_GAMMA_RESPONSE"]
    old = ss.datasets.gene_sets("hallmark_v7")
    assert set(old) == set(sets)
    assert "WARS" in old["HALLMARK_INTERFERON_GAMMA_RESPONSE"]


def test_tirosh_cell_cycle():
    sets = ss.datasets.gene_sets("tirosh_cell_cycle")
    assert list(sets) == ["TIROSH2016_S_PHASE", "TIROSH2016_G2M_PHASE"]
    assert len(sets["TIROSH2016_S_PHASE"]) == 43
    assert len(sets["TIROSH2016_G2M_PHASE"]) == 54
    assert sets["TIROSH2016_S_PHASE"][0] == "MCM5"


def test_panglaodb_immune():
    sets = ss.datasets.gene_sets("panglaodb_immune")
    assert len(sets) == 29
    # the README counts 1,134 raw tokens; one is "PTGDS " with a trailing space, the same gene as "PTGDS"
    genes = set().union(*sets.values())
    assert len(genes) == 1133
    assert "PTGDS" in genes and "PTGDS " not in genes
    assert len(sets["PANGLAODB_MONOCYTES"]) == 99
    assert all(name.startswith("PANGLAODB_") for name in sets)


def test_unknown_collection():
    with pytest.raises(KeyError, match="available: hallmark"):
        ss.datasets.gene_sets("kegg")


def test_read_gmt(tmp_path):
    path = tmp_path / "sets.gmt"
    path.write_text("A\tdesc\tG1\tG2\tG1\t\nB\thttp://x\tG3 \t G4\n\n")
    assert ss.read_gmt(path) == {"A": ["G1", "G2"], "B": ["G3", "G4"]}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("A desc G1 G2\n", r"sets.gmt:1 is not a GMT line.*tab-separated"),
        ("A\tdesc\tG1\nB\tdesc\nC\tdesc\tG2\n", r"sets.gmt:2 is not a GMT line"),
        ("A\tdesc\tG1\nB\tdesc\t\t\n", r"sets.gmt:2 .*gene set 'B' lists no genes"),
        ("A\tdesc\tG1\nA\tdesc\tG2\n", r"sets.gmt:2: gene set 'A' appears twice"),
        ("\n\n", r"holds no gene sets"),
    ],
)
def test_read_gmt_malformed(tmp_path, text, message):
    path = tmp_path / "sets.gmt"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        ss.read_gmt(path)


def test_read_gmt_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ss.read_gmt(tmp_path / "nope.gmt")


def test_as_gene_list(tmp_path):
    path = tmp_path / "sets.gmt"
    path.write_text("A\td\tG1\tG2\nB\td\tG3\n")
    assert as_gene_list(["G2", "G1", "G2"]) == ["G2", "G1"]
    assert as_gene_list(f"{path}:B") == ["G3"]
    with pytest.raises(ValueError, match=r"holds 2 sets; pick one with"):
        as_gene_list(path)
    with pytest.raises(KeyError, match="No set 'C'"):
        as_gene_list(f"{path}:C")
    assert as_gene_list("CD3E") == ["CD3E"]  # a single gene name passed as a string
    with pytest.raises(FileNotFoundError, match="does not exist"):
        as_gene_list("missing/sets.gmt")  # a path that does not exist is not taken for a gene name
    single = tmp_path / "one.gmt"
    single.write_text("ONLY\td\tG5\tG6\n")
    assert as_gene_list(single) == ["G5", "G6"]
    assert as_gene_sets(path) == {"A": ["G1", "G2"], "B": ["G3"]}
    assert as_gene_sets({"x": ("G1", "G1", "G4")}) == {"x": ["G1", "G4"]}
    with pytest.raises(TypeError, match="mapping"):
        as_gene_sets(["G1"])


VAR_NAMES = pd.Index(["CD3E", "MS4A1", "LYZ", "NKG7", "CD3E"])


def test_match_genes_positions():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # all present: no warning
        positions = match_genes(["LYZ", "CD3E", "LYZ"], VAR_NAMES)
    np.testing.assert_array_equal(positions, [2, 0])  # duplicates collapsed, first occurrence of a name


def test_match_genes_warns_once_for_absent_genes():
    with pytest.warns(UserWarning) as record:
        positions = match_genes(["LYZ", "FOO", "BAR", "NKG7"], VAR_NAMES, set_name="my set")
    assert len(record) == 1
    message = str(record[0].message)
    assert "2 of 4 genes of the my set are not in the data" in message
    assert "FOO, BAR" in message
    np.testing.assert_array_equal(positions, [2, 3])


def test_match_genes_lists_at_most_20_absent():
    with pytest.warns(UserWarning, match=r"25 of 26 genes.*MISSING19 …") as record:
        match_genes(["LYZ", *[f"MISSING{i}" for i in range(25)]], VAR_NAMES)
    assert len(record) == 1
    assert "MISSING20" not in str(record[0].message)


def test_match_genes_errors():
    with pytest.raises(ValueError, match="is empty"):
        match_genes([], VAR_NAMES)
    with pytest.raises(ValueError, match=r"None of the 2 genes.*ENSG00000000001.*identifier type"):
        match_genes(["ENSG00000000001", "ENSG00000000002"], VAR_NAMES)


def test_read_gene_sets_every_spec(tmp_path):
    gmt = tmp_path / "sets.gmt"
    gmt.write_text("T_CELLS\td\tCD3E\tCD4\nB_CELLS\td\tMS4A1\n")
    plain = tmp_path / "tcells.txt"
    plain.write_text("# T cells\nCD3E\nCD4\n\nCD3E\n")
    assert ss.read_gene_sets(["CD3E", "CD4"]) == {"genes": ["CD3E", "CD4"]}
    assert ss.read_gene_sets("CD3E") == {"genes": ["CD3E"]}
    assert ss.read_gene_sets("CD3E, CD4") == {"genes": ["CD3E", "CD4"]}
    assert ss.read_gene_sets(gmt) == {"T_CELLS": ["CD3E", "CD4"], "B_CELLS": ["MS4A1"]}
    assert ss.read_gene_sets(f"{gmt}:B_CELLS") == {"B_CELLS": ["MS4A1"]}
    assert ss.read_gene_sets(str(plain)) == {"tcells": ["CD3E", "CD4"]}
    assert ss.read_gene_sets({"t": str(plain), "b": ["MS4A1"]}) == {"t": ["CD3E", "CD4"], "b": ["MS4A1"]}


def test_read_gene_sets_unknown_set_lists_near_matches(tmp_path):
    gmt = tmp_path / "sets.gmt"
    gmt.write_text("T_CELLS\td\tCD3E\nB_CELLS\td\tMS4A1\n")
    with pytest.raises(KeyError, match=r"No set 'T_CELL'.*did you mean T_CELLS"):
        ss.read_gene_sets(f"{gmt}:T_CELL")


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"\xff\xfe\x00A\x00\t", r"not a UTF-8 text file"), (b"\x1f\x8b\x08\x00", r"gzip-compressed")],
)
def test_read_gene_sets_binary_file_names_file_and_problem(tmp_path, content, message):
    path = tmp_path / "sets.gmt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=rf"sets.gmt is {message}"):
        ss.read_gene_sets(path)


def test_score_genes_accepts_a_single_gene_name():
    adata = ss.datasets.pbmc3k()[:50].copy()
    ss.tl.score_genes(adata, "LYZ", method="mean")
    expected = ss.tl.score_genes(adata, ["LYZ"], method="mean", copy=True).obs["mean_score"]
    np.testing.assert_array_equal(adata.obs["mean_score"], expected)
