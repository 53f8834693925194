"""The Examples blocks of the attribution engine's public functions run and print what they claim."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "sigscan._gene_sets",
    "sigscan.datasets._datasets",
    "sigscan.datasets._synthetic",
    "sigscan.models._scfoundation",
    "sigscan.models._scimilarity",
    "sigscan.models._sctab",
    "sigscan.models._torch",
    "sigscan.pl._concept_explorer",
    "sigscan.pl._concepts",
    "sigscan.pp._attributions",
    "sigscan.tl._concept_genes",
    "sigscan.tl._concepts",
    "sigscan.tl._enrichment",
]


@pytest.mark.parametrize("name", MODULES)
def test_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.attempted > 0
    assert result.failed == 0
