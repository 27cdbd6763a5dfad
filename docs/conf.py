"""Sphinx configuration of fastpong's documentation site: MyST pages, Furo, one executed notebook.

Build: pip install ".[docs]" && sphinx-build -n -W --keep-going -b html docs docs/_build/html
"""

import re
from importlib.metadata import version as _installed_version

project = "fastpong"
author = "the fastpong authors"
# The installed package is what autodoc reads, so its version is the one the pages describe.
release = _installed_version("fastpong")
version = release

extensions = [
    "myst_nb",  # MyST markdown pages and the .ipynb notebook (it includes myst_parser)
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
]

# pong-from-pixels.md is the jupytext source of the committed, executed pong-from-pixels.ipynb:
# the site renders the .ipynb, so the .md twin must stay out of the build (one page, one name).
exclude_patterns = ["_build", "pong-from-pixels.md", "Thumbs.db", ".DS_Store"]

# The notebook is shown as committed: running it here would take minutes and need the ROMs.
nb_execution_mode = "off"
# Its last output is an HTML <video>; keep raw HTML outputs as they are.
nb_render_markdown_format = "commonmark"

myst_enable_extensions = ["colon_fence", "deflist"]
# Headings up to ### get anchors, so pages can link to a section: [text](training.md#resuming).
myst_heading_anchors = 3

# The docstrings are plain prose with a few NumPy-style sections (plot_runs, VideoWriter). Google
# style stays off: it would read an attribute's docstring "Rows of the frame: ..." as a type.
napoleon_google_docstring = False
napoleon_numpy_docstring = True

autodoc_member_order = "bysource"
# No "Bases:" lines: the bases are pybind11's and private ones, which say nothing to a reader.
autodoc_default_options = {"members": True}
# The compiled module's signatures come from pybind11 docstrings; numpy types there are not
# objects Sphinx can link to, so nitpicky mode would flag every one of them.
nitpick_ignore_regex = [
    # pybind11's base class and the compiled module's private bases, which are not documented.
    (r"py:class", r"(pybind11_builtins|fastpong\._core)\..*"),
    # What train() takes from a caller that owns its process (the CLI); not public.
    (r"py:class", r"fastpong\.(train|training\.run)\.StopSignals"),
    (r"py:.*", r"(numpy|np|numpy\.typing|collections\.abc|typing|os|pathlib|matplotlib)\..*"),
    (r"py:.*", r"(ndarray|array_like|optional|callable|Path|Figure)"),
]

html_theme = "furo"
html_title = "fastpong"
html_static_path = ["_static"]
html_css_files = ["wide-content.css"]
# No copyright line: the project states its license (MIT) in pyproject.toml, not an owner.
html_show_copyright = False


# Napoleon reads an attribute's docstring "Rows of the frame kept by the crop: ..." as
# "type: description" and turns the words before the colon into a type to link. fastpong's
# attribute docstrings are prose, so they are kept as written: saved before napoleon runs
# (priority 500) and put back after it.
_ATTRIBUTE_KINDS = {"attribute", "data", "property"}
_saved_docstrings: dict[str, list[str]] = {}


def _save_attribute_docstring(app, what, name, obj, options, lines):
    if what in _ATTRIBUTE_KINDS:
        _saved_docstrings[name] = list(lines)


def _restore_attribute_docstring(app, what, name, obj, options, lines):
    if what in _ATTRIBUTE_KINDS and name in _saved_docstrings:
        lines[:] = _saved_docstrings.pop(name)


# pybind11 writes the instance into a method's signature, `(self: fastpong._core.EpisodeBuffer, x: ...)`;
# autodoc leaves `self` out of Python methods, so it is dropped here too, for the same look.
_PYBIND_SELF = re.compile(r"^\(self(: [\w.]+)?(, )?")


def _drop_pybind_self(app, what, name, obj, options, signature, return_annotation):
    if signature and signature.startswith("(self"):
        signature = _PYBIND_SELF.sub("(", signature)
    return signature, return_annotation


def setup(app):
    app.connect("autodoc-process-signature", _drop_pybind_self)
    app.connect("autodoc-process-docstring", _save_attribute_docstring, priority=400)
    app.connect("autodoc-process-docstring", _restore_attribute_docstring, priority=600)
