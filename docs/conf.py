"""Sphinx configuration of pyshl's documentation.

    pip install -e ".[docs]" && sphinx-build -W docs docs/_build/html

The API reference is read from the installed package (its docstrings and
signatures), and the performance page's charts are drawn from the recorded
benchmark output (benchmarks/charts.py) at every build.  Nothing is fetched
from the network.
"""
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))
sys.path.insert(0, str(HERE.parent / "benchmarks"))

import pyshl  # noqa: E402  (the installed package: the API reference documents it)

project = "pyshl"
author = "the pyshl developers"
copyright = "the pyshl developers"
release = version = pyshl.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "pyshl_cli",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build", "_generated/*.md", "performance/results/*", "README.md"]
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]
# Code blocks are highlighted as Python 3 without a lexer guess.
highlight_language = "python3"

autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": True}
autodoc_typehints = "signature"
# NumPy's and the standard library's own members of subclasses are theirs to document.
autodoc_inherit_docstrings = False

html_theme = "alabaster"
html_title = "pyshl %s" % release
html_static_path = []
html_theme_options = {
    "description": "A fast, binary-compatible drop-in for ShareableList, with shared "
                   "NumPy arrays, atomics and locks",
    "fixed_sidebar": True,
}
html_sidebars = {"**": ["about.html", "navigation.html", "searchbox.html"]}


def draw_charts(app):
    """The performance page's charts, from the recorded benchmark output."""
    import charts
    charts.draw(HERE / "performance" / "results", HERE / "_generated" / "charts")


def setup(app):
    app.connect("builder-inited", draw_charts)
