"""Sphinx configuration for sigscan (scverse style: sphinx-book-theme, myst-nb, autosummary)."""

import os
from importlib.metadata import version as _version
from pathlib import Path

HERE = Path(__file__).parent

project = "sigscan"
author = "sigscan developers"
copyright = "2026, sigscan developers"
release = _version("sigscan")
version = release

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
]

# API pages: one autosummary page per public function and class (docs/api.md lists them; tests/test_docs.py checks
# that every name in each `__all__` has one). The generated pages are build output, not committed.
autosummary_generate = True
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "inherited-members": False}
napoleon_numpy_docstring = True
napoleon_google_docstring = False
napoleon_use_rtype = True
napoleon_use_param = True

# Notebooks: rendered with the outputs committed beside them; CI executes the tutorials separately (`make tutorials`).
nb_execution_mode = "off"
nb_merge_streams = True
myst_enable_extensions = ["colon_fence", "dollarmath", "amsmath", "deflist"]
myst_heading_anchors = 3
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
# the jupytext twins of the notebooks are sources for people and diffs, not pages
exclude_patterns = ["_build", "_inv", "tutorials/*.py", "**.ipynb_checkpoints"]
templates_path = ["_templates"]

html_theme = "sphinx_book_theme"
html_title = "sigscan"
html_static_path = ["_static"]
html_theme_options = {
    "repository_url": "https://github.com/scverse/sigscan",
    "use_repository_button": True,
    "path_to_docs": "docs/",
    "navigation_with_keys": False,
}
nitpicky = False


# Intersphinx. The docs build runs offline (CI has no network), and an unreachable inventory is a warning, which -W
# turns into a failure. So a project is linked only when its inventory is available: a file docs/_inv/<name>.inv
# (objects.inv saved from the project's docs site), or the network when SIGSCAN_DOCS_ONLINE=1.
_INTERSPHINX = {
    "anndata": "https://anndata.readthedocs.io/en/stable/",
    "scanpy": "https://scanpy.readthedocs.io/en/stable/",
    "numpy": "https://numpy.org/doc/stable/",
    "pandas": "https://pandas.pydata.org/pandas-docs/stable/",
    "torch": "https://docs.pytorch.org/docs/stable/",
}


def _intersphinx_mapping(online: bool) -> dict[str, tuple[str, str | None]]:
    mapping = {}
    for name, url in _INTERSPHINX.items():
        local = HERE / "_inv" / f"{name}.inv"
        if local.exists():
            mapping[name] = (url, str(local))
        elif online:
            mapping[name] = (url, None)
    return mapping


intersphinx_mapping = _intersphinx_mapping(os.environ.get("SIGSCAN_DOCS_ONLINE") == "1")
