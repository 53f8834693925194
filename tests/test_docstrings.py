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
    "sigscan.pl._downsampling",
    "sigscan.pp._attributions",
    "sigscan.pp._downsample",
    "sigscan.tl._downsampling",
    "sigscan.tl._robustness_report",
    "sigscan.tl._analyses._cell_cycle",
    "sigscan.tl._analyses._factors",
    "sigscan.tl._analyses._qc",
    "sigscan.tl._analyses._ranks",
    "sigscan.pl._analyses",
]


@pytest.mark.parametrize("name", MODULES)
def test_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.attempted > 0
    assert result.failed == 0
