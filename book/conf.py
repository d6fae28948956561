"""The course as a web book: Sphinx with myst-nb (the engine of Jupyter Book 1) and the Sphinx book theme.

Why this stack (issue 15): it is pure Python (pip installs it beside the course, no Node.js), it builds with no
network (Jupyter Book 2's MyST engine fetches its site theme at build time), it executes notebooks through
jupyter-cache (a rebuild re-executes only the notebooks whose code changed), and autodoc gives the fmlearn
API reference from the package's docstrings. Equations are typeset in the browser by MathJax 3.2.2, the version
JupyterLab bundles, so a page shows each equation as the notebook does; its SVG output needs no web font, and
the one script (tex-svg-full.js, from the pip package django-static-mathjax, Apache-2.0) ships with the book:
a page opened from disk with the network off renders every equation. (Issue 22: docutils' own LaTeX-to-MathML
converter stacked the subscript of an accented symbol under it, as in the dot of alpha_t.)

Build: ``make book`` (default budget, cache in build/book/.jupyter_cache) or ``make book-quick``
(FMLEARN_QUICK=1, build/book-quick). The source folder is the repository root; this folder holds the
configuration, the front page and the API reference.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE / "_ext"))
sys.path.insert(0, str(ROOT))

project = "fmlearn — flow matching, explained and checked"
author = "the fmlearn authors"
copyright = "2026, the fmlearn authors (MIT)"

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "fmlearn_book",
]

root_doc = "book/index"
include_patterns = ["book/*.md", "chapters/*.ipynb", "exercises/*.ipynb"]
exclude_patterns = ["build", ".venv", "**/.ipynb_checkpoints", "solutions", "tests", "benchmarks"]

# -- MyST and notebooks ------------------------------------------------------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3
QUICK = os.environ.get("FMLEARN_QUICK", "") not in ("", "0")
BUILD = Path(os.environ.get("FMLEARN_BOOK_BUILD", ROOT / "build" / ("book-quick" if QUICK else "book")))
nb_execution_mode = os.environ.get("FMLEARN_BOOK_EXECUTE", "cache")  # "off" renders the notebooks as they are
nb_execution_cache_path = str(BUILD / ".jupyter_cache")
nb_execution_timeout = 3600
nb_execution_raise_on_error = True  # a chapter that fails its own checks fails the build (exercises: see _ext)
nb_execution_show_tb = True
nb_merge_streams = True
nb_render_markdown_format = "myst"  # Markdown outputs (display(Markdown(...))) get their $...$ maths too
# An explorer offers a live widget and a self-contained HTML slider: on the web page, show the HTML (the widget
# needs a kernel, and its JavaScript would come from a CDN).
# A figure comes as image/png beside an <img alt> text/html (fmlearn.plotting): the book keeps the PNG as a file
# (pages stay light, the browser caches it) with the alt text from the output's metadata (book/_ext).
nb_mime_priority_overrides = [("html", "application/vnd.jupyter.widget-view+json", None),
                              ("html", "image/png", 0), ("html", "text/html", 1)]
nb_ipywidgets_js = {}  # no require.js / widget manager from a CDN
nb_render_image_options = {"align": "center"}

# -- Equations: MathJax 3 (SVG output), shipped with the book (book/_ext/fmlearn_book.py copies it to _static) ----
html_math_renderer = "mathjax"
mathjax_path = "mathjax/tex-svg-full.js"  # under _static: every TeX package included, nothing loaded later
mathjax3_config = {
    "svg": {"fontCache": "global"},  # each glyph's path once per page
    "options": {"menuOptions": {"settings": {"assistiveMml": True}}},  # hidden MathML for screen readers
}

# -- API reference --------------------------------------------------------------------------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False

# -- HTML -------------------------------------------------------------------------------------------------------
html_theme = "sphinx_book_theme"
html_title = "fmlearn: flow matching, explained and checked"
html_static_path = ["_static"]  # + _static/mathjax/ (book/_ext/fmlearn_book.py copies it from its pip package)
templates_path = ["_templates"]  # the theme's page without fontawesome.js (see _templates/layout.html)
html_css_files = ["fmlearn.css"]
html_theme_options = {
    "show_toc_level": 2,
    "use_download_button": True,
    "navbar_persistent": [],  # one search box: the sidebar's (the article header's button on a narrow page)
    "use_fullscreen_button": False,
    "home_page_in_toc": True,
    "navigation_with_keys": False,
}
html_context = {"default_mode": "light"}  # without it the theme logs a console error on every page
html_last_updated_fmt = None
html_copy_source = True
html_show_sourcelink = False
suppress_warnings = ["myst.header", "mystnb.unknown_mime_type"]
fmlearn_quick = QUICK
