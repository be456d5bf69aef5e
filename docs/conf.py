"""Sphinx configuration of the flood_jax documentation.

Build: ``pip install -e ".[docs]"``, then
``sphinx-build -W --keep-going -b html docs docs/_build/html``.
"""

from __future__ import annotations

import importlib
import pathlib
import shutil
import sys

DOCS = pathlib.Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))

import flood_jax  # noqa: E402

project = "flood_jax"
author = "flood_jax developers"
copyright = "2026, flood_jax developers"
release = flood_jax.__version__

extensions = [
  "sphinx.ext.autodoc",
  "sphinx.ext.napoleon",
  "sphinx.ext.mathjax",
  "sphinx.ext.viewcode",
  "sphinx_copybutton",
  "myst_nb",
]

# The notebooks are rendered with the outputs committed in notebooks/*.ipynb
# (full-size runs); they are never executed by the docs build.
nb_execution_mode = "off"
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3

# Google-style docstrings (Args:, Returns:, Examples:, References:), as Optax's.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
# Show the aliases by name, not their expansion (ArrayLike is a union of 8 types).
autodoc_type_aliases = {
  "ArrayLike": "jax.typing.ArrayLike",
  "FloodLevel": "float | jax.Array | optax.Schedule",
}

html_theme = "sphinx_book_theme"
html_title = "flood_jax"
html_theme_options = {
  "repository_url": "https://github.com/flood-jax/flood_jax",
  "use_repository_button": True,
  "show_toc_level": 2,
}

exclude_patterns = ["_build", "README.md"]
suppress_warnings = ["myst.header"]  # the notebooks' cells start at level-2 headings

# -- The notebooks: copied from notebooks/ (their one home) at each build ------
NOTEBOOKS = ("quickstart", "sweep", "double_descent")
_copies = DOCS / "notebooks"
_copies.mkdir(exist_ok=True)
for _name in NOTEBOOKS:
  shutil.copyfile(ROOT / "notebooks" / f"{_name}.ipynb", _copies / f"{_name}.ipynb")


# -- Every public name is in the API reference, or the build fails ------------
def public_names() -> list[str]:
  """``flood_jax.__all__`` plus the public modules, as ``flood_jax.NAME``."""
  names = [f"flood_jax.{name}" for name in flood_jax.__all__]
  for module in ("data", "models", "plots"):
    importlib.import_module(f"flood_jax.{module}")
    if f"flood_jax.{module}" not in names:
      names.append(f"flood_jax.{module}")
  return names


def _check_reference(app, env) -> None:
  documented = set(env.domaindata["py"]["objects"]) | set(env.domaindata["py"]["modules"])
  missing = [name for name in public_names() if name not in documented]
  if missing:
    from sphinx.util import logging

    logging.getLogger(__name__).warning(
      "public names missing from the API reference (docs/api.rst): %s", ", ".join(missing)
    )


def setup(app) -> None:
  app.connect("env-check-consistency", _check_reference)
