"""Every public function and class has a short Examples block, and the Examples blocks run and print what they claim."""

from __future__ import annotations

import doctest
import importlib
import inspect
import re

import pytest

NAMESPACES = [
    "sigscan",
    "sigscan.pp",
    "sigscan.tl",
    "sigscan.pl",
    "sigscan.models",
    "sigscan.datasets",
    "sigscan.atlas",
]


def public_objects() -> dict[str, object]:
    """Every public function and class, by its public name (modules and constants left out)."""
    objects = {}
    for space in NAMESPACES:
        module = importlib.import_module(space)
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isfunction(obj) or inspect.isclass(obj):
                objects[f"{space}.{name}"] = obj
    return objects


PUBLIC = public_objects()
#: the private modules that define the public objects: their doctests run
MODULES = sorted({obj.__module__ for obj in PUBLIC.values()})


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_public_docstring_has_examples(name):
    doc = inspect.getdoc(PUBLIC[name]) or ""
    assert re.search(r"Examples\n--------\n(.*\n)*?>>>", doc), f"{name} has no Examples block"


@pytest.mark.parametrize("name", MODULES)
def test_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.attempted > 0
    assert result.failed == 0
