"""Sphinx configuration of the lash documentation (built with -W by tests/test_docs.py)."""

from __future__ import annotations

import sys
from importlib.metadata import version as _version
from pathlib import Path

# The local extensions: the hook reference, the API reference, the CLI help and the HTTP API
# reference are generated.
sys.path.insert(0, str(Path(__file__).parent / "_ext"))

project = "lash"
author = "The lash developers"
copyright = "The lash developers"
release = _version("lash-sdk")
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "lash_api",
    "lash_cli",
    "lash_hooks",
    "lash_openapi",
]

# Bundled extensions only, and nothing that reaches the network (no intersphinx).
exclude_patterns = ["_build", "examples"]
templates_path: list[str] = []

# Hook docstrings and the API are written in reST field lists; types read better unqualified.
add_module_names = False
python_use_unqualified_type_names = True
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_typehints_format = "short"
autodoc_default_options = {"member-order": "bysource"}

# furo: a wide content column (alabaster's held about 70 columns of code), a light and a dark
# scheme; _static/lash.css sets the code size so a 100-column block fits without scrolling.
html_theme = "furo"
html_title = f"lash {release}"
html_static_path = ["_static"]
html_css_files = ["lash.css"]

# Every reference to lash's public API (``lash.<name>``) must resolve: a typo or a name missing
# from ``lash.__all__`` fails the build. References to other libraries (no intersphinx, so they
# cannot resolve) and to private modules are exempt.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(?!lash\.).*"),
    (r"py:.*", r"lash\._.*"),
]
