"""The docs cover the public API, the README and tutorials use only public names, and every tutorial's notebook is
its jupytext script, executed, with outputs."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).parents[1]
NAMESPACES = [
    "sigscan",
    "sigscan.pp",
    "sigscan.tl",
    "sigscan.pl",
    "sigscan.models",
    "sigscan.datasets",
    "sigscan.atlas",
]
TUTORIALS = sorted(p for p in (ROOT / "docs" / "tutorials").glob("*.py") if not p.name.startswith("_"))
#: an import of, or attribute access to, a private sigscan module (``sigscan.tl._presets``, ``ss.tl._presets``)
PRIVATE = re.compile(r"\b(sigscan|ss)(\.[A-Za-z]\w*)*\._[a-z]\w*")


def api_entries() -> set[str]:
    """Names listed in docs/api.md's autosummary blocks, as ``sigscan.<name>``."""
    text = (ROOT / "docs" / "api.md").read_text()
    return {f"sigscan.{line.strip()}" for line in text.splitlines() if re.fullmatch(r"   [A-Za-z][\w.]*", line)}


def public_names() -> list[str]:
    names = []
    for space in NAMESPACES:
        module = importlib.import_module(space)
        for name in module.__all__:
            if not inspect.ismodule(getattr(module, name)):
                names.append(f"{space}.{name}")
    return names


@pytest.mark.parametrize("name", public_names())
def test_every_public_name_has_an_api_entry(name):
    entries = api_entries()
    short = name.replace("sigscan.atlas.Atlas", "sigscan.Atlas")
    assert short in entries, f"{name} is public but docs/api.md has no autosummary entry for it"


def test_api_entries_exist():
    for entry in api_entries():
        module, _, attribute = entry.rpartition(".")
        assert hasattr(importlib.import_module(module), attribute), f"docs/api.md lists {entry}, which does not exist"


def python_blocks(markdown: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", markdown, flags=re.S)


def test_readme_code_parses_and_uses_public_names():
    readme = (ROOT / "README.md").read_text()
    blocks = python_blocks(readme)
    assert blocks
    for block in blocks:
        ast.parse(block)
    assert not PRIVATE.search(readme), PRIVATE.search(readme)
    for tutorial in TUTORIALS:
        assert f"docs/tutorials/{tutorial.stem}.ipynb" in readme, f"the README does not link {tutorial.stem}"


@pytest.mark.parametrize("path", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_uses_public_names(path):
    match = PRIVATE.search(path.read_text())
    assert match is None, f"{path.name} reaches into a private module: {match.group(0)}"


@pytest.mark.parametrize("path", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_notebook_is_executed_script(path):
    import jupytext

    script = jupytext.read(path)
    notebook = nbformat.read(path.with_suffix(".ipynb"), as_version=4)
    code = [c.source for c in script.cells if c.cell_type == "code"]
    executed = [c for c in notebook.cells if c.cell_type == "code"]
    assert [c.source for c in executed] == code, (
        f"{path.stem}.ipynb is out of date: run `make tutorials TUTORIALS_ARGS=--write`"
    )
    assert all(c.execution_count is not None for c in executed), f"{path.stem}.ipynb has cells that were not run"
    errors = [o for c in executed for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{path.stem}.ipynb holds an error output"
    assert any(c.outputs for c in executed)


def test_tutorials_are_in_the_docs():
    index = (ROOT / "docs" / "tutorials" / "index.md").read_text()
    for tutorial in TUTORIALS:
        assert re.search(rf"^{tutorial.stem}$", index, flags=re.M), (
            f"docs/tutorials/index.md does not list {tutorial.stem}"
        )
