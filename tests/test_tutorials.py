"""Tutorials are plain scripts (jupytext percent format): each must run top to bottom."""

from __future__ import annotations

import os
import runpy
from pathlib import Path

import pytest

TUTORIALS = sorted((Path(__file__).parents[1] / "tutorials").glob("*.py"))


@pytest.mark.parametrize("path", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_runs(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SIGSCAN_CACHE", os.fspath(tmp_path / "cache"))
    runpy.run_path(os.fspath(path), run_name="__main__")
