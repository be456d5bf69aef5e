"""Builds the notebooks of this folder from their Jupytext scripts.

To edit a notebook, edit its script (quickstart.py, sweep.py, double_descent.py:
Jupytext percent format, ``# %%`` cells), never the .ipynb, then rebuild it with
``python notebooks/build_notebooks.py --keep-outputs NAME`` (prose or unchanged
code: the saved outputs stay) or ``--execute NAME`` (code changed: rerun it full
size), and commit the .py and the .ipynb together.

Each ``NAME.py`` is paired with ``NAME.ipynb`` (``formats: ipynb,py:percent``):
Jupytext reads the cells, and this script adds what the script does not hold.
The "Open in Colab" badge (prepended to the first markdown cell), then after that
cell the "About the outputs" cell (id ``provenance``) and the setup cell, which
installs flood_jax on Colab. The badge and the install both come from
``[project.urls] Repository`` in ``pyproject.toml``. Do not sync the .ipynb back
into the .py (``jupytext --sync``): the .py would then hold these cells twice.

  python notebooks/build_notebooks.py                 # write the .ipynb files, no outputs
  python notebooks/build_notebooks.py --keep-outputs  # keep each unchanged code cell's
                                                      # saved outputs (and provenance)
  python notebooks/build_notebooks.py --execute       # run them full size
                                                      # (FLOOD_JAX_SMALL unset), keep
                                                      # the outputs
  python notebooks/build_notebooks.py --execute quickstart   # just one

``--execute`` runs each notebook in a fresh ``python3`` kernel of this
interpreter (nbclient) and records the date, the machine and the wall time in
the provenance cell (``--note`` adds a word on the machine).

Every notebook reads ``FLOOD_JAX_SMALL=1`` from the environment to shrink its
sizes; ``tests/test_notebooks.py`` runs them that way on a CPU and checks that
each .ipynb holds the cells of its .py.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import os
import pathlib
import re
import sys
import textwrap
import time

try:
  import tomllib
except ImportError:  # Python 3.10: pytest brings tomli
  import tomli as tomllib

import jupytext
import nbformat
from nbformat import v4

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
NAMES = ("quickstart", "sweep", "double_descent")

# The markdown cell that says where the committed outputs come from; filled in
# by --execute (its id is fixed so the tests can find it).
PROVENANCE_ID = "provenance"

# Notebooks whose setup cell asks for one XLA CPU device per core (they shard).
CPU_DEVICES = ("sweep", "double_descent")
# The runtime Colab offers when it opens the notebook.
COLAB_ACCELERATOR = {"sweep": "TPU", "double_descent": "GPU"}
PAIRING = "ipynb,py:percent"


def repository_url() -> str:
  """``[project.urls] Repository`` from pyproject.toml, without a trailing slash."""
  with open(ROOT / "pyproject.toml", "rb") as f:
    return tomllib.load(f)["project"]["urls"]["Repository"].rstrip("/")


def colab_url(name: str, repo: str | None = None) -> str:
  """The Colab link of notebook ``name`` for a GitHub repository URL."""
  repo = repo or repository_url()
  match = re.fullmatch(r"https://github\.com/([^/]+/[^/]+?)(\.git)?", repo)
  if not match:
    raise ValueError(f"the Repository URL in pyproject.toml is not a GitHub URL: {repo}")
  return (
    f"https://colab.research.google.com/github/{match.group(1)}/blob/main/notebooks/{name}.ipynb"
  )


def _badge(name: str) -> str:
  return (
    f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
    f"({colab_url(name)})"
  )


def _setup(cpu_devices: bool) -> str:
  """The first code cell: install on Colab, import, print the devices."""
  devices = ""
  if cpu_devices:
    devices = """
        try:  # On a CPU: one XLA device per core, so the sweep shards over the cores.
            jax.config.update("jax_num_cpu_devices", os.cpu_count())  # no effect on GPU/TPU
        except (AttributeError, RuntimeError):  # old JAX, or JAX already started
            pass"""
  return textwrap.dedent(f"""\
        import os, sys, time

        if "google.colab" in sys.modules:  # On Colab: install flood_jax from GitHub.
            import subprocess
            subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                            "git+{repository_url()}"], check=True)

        import jax{devices}
        import flood_jax as fj

        # FLOOD_JAX_SMALL=1 shrinks every size (the tests run the notebook that way).
        SMALL = os.environ.get("FLOOD_JAX_SMALL", "") not in ("", "0")
        PROGRESS = "google.colab" in sys.modules  # progress bars need ipywidgets
        T0 = time.perf_counter()
        print("JAX", jax.__version__, "| devices:", jax.devices())
        print("small run" if SMALL else "full-size run")""")


def _provenance_placeholder() -> str:
  return textwrap.dedent("""\
        **About the outputs.** Not executed yet: run
        `python notebooks/build_notebooks.py --execute` to fill them in.""")


def script(name: str) -> nbformat.NotebookNode:
  """The cells of ``notebooks/NAME.py`` as Jupytext reads them."""
  path = HERE / f"{name}.py"
  nb = jupytext.read(path)
  if any(
    "colab-badge.svg" in c.source or c.source.startswith("**About the outputs.**") for c in nb.cells
  ):
    raise ValueError(
      f"{path.name} holds the cells this script adds (was it synced"
      " from the .ipynb?): remove the badge and the provenance and"
      " setup cells from it"
    )
  if not nb.cells or nb.cells[0].cell_type != "markdown":
    raise ValueError(f"{path.name} must start with a markdown cell (the title)")
  return nb


def build(name: str) -> nbformat.NotebookNode:
  """The notebook ``name`` without outputs: its script plus badge, provenance, setup."""
  source = script(name)
  title, *rest = source.cells
  cells = [
    v4.new_markdown_cell(f"{_badge(name)}\n\n{title.source}", metadata=title.metadata),
    v4.new_markdown_cell(_provenance_placeholder()),
    v4.new_code_cell(_setup(cpu_devices=name in CPU_DEVICES)),
  ]
  for cell in rest:
    if cell.cell_type == "code":
      cells.append(v4.new_code_cell(cell.source, metadata=cell.metadata))
    else:
      cells.append(v4.new_markdown_cell(cell.source, metadata=cell.metadata))
  for i, cell in enumerate(cells):
    cell.id = PROVENANCE_ID if i == 1 else f"{name}-{i:02d}"
  nb = v4.new_notebook(cells=cells)
  nb.metadata = {
    "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
    "language_info": {"name": "python"},
    "colab": {"provenance": []},
    "jupytext": {"formats": source.metadata.get("jupytext", {}).get("formats", PAIRING)},
  }
  if name in COLAB_ACCELERATOR:
    nb.metadata["accelerator"] = COLAB_ACCELERATOR[name]
  return nb


def _machine(note: str = "") -> str:
  """The machine the notebooks ran on, in words (JAX's platform as the kernel saw it)."""
  try:
    import jax

    device = jax.devices()[0].platform.upper()
  except Exception:
    device = "CPU"
  from flood_jax._devices import describe_cpu

  return f"a {describe_cpu()} machine ({device}{', ' + note if note else ''})"


def execute(nb: nbformat.NotebookNode, name: str, timeout: int = 1800, note: str = "") -> float:
  """Runs ``nb`` full size in a fresh kernel, in place; returns the wall time."""
  from nbclient import NotebookClient

  env_small = os.environ.pop("FLOOD_JAX_SMALL", None)
  os.environ.setdefault("JUPYTER_PLATFORM_DIRS", "1")
  try:
    client = NotebookClient(
      nb,
      timeout=timeout,
      kernel_name="python3",
      record_timing=False,
      resources={"metadata": {"path": str(HERE)}},
    )
    start = time.perf_counter()
    client.execute()
    wall = time.perf_counter() - start
  finally:
    if env_small is not None:
      os.environ["FLOOD_JAX_SMALL"] = env_small
  today = datetime.date.today().isoformat()
  for cell in nb.cells:
    if cell.get("id") == PROVENANCE_ID:
      cell.source = textwrap.dedent(f"""\
          **About the outputs.** The outputs saved in this notebook come from a
          full-size run (`FLOOD_JAX_SMALL` unset) on {_machine(note)}, executed on
          {today} with `python notebooks/build_notebooks.py --execute {name}`
          (nbclient); the whole notebook took {wall:.0f} s of wall time there.
          On a Colab GPU or TPU runtime it runs faster. The tests run it with
          `FLOOD_JAX_SMALL=1`, which shrinks every size.""")
  return wall


def keep_outputs(nb: nbformat.NotebookNode, saved: nbformat.NotebookNode) -> list[str]:
  """Gives ``nb`` the provenance and outputs saved in ``saved``, in place.

  Each code cell takes the outputs of a saved code cell with exactly the same
  source (saved cells in order, each used once). Returns the ids of the code
  cells left without outputs (new or changed: they need ``--execute``).
  """
  by_source = collections.defaultdict(collections.deque)
  for old in saved.cells:
    if old.cell_type == "code":
      by_source[old.source].append(old)
  missing = []
  for cell in nb.cells:
    if cell.cell_type == "code":
      if by_source[cell.source]:
        old = by_source[cell.source].popleft()
        cell.outputs, cell.execution_count = old.outputs, old.execution_count
      else:
        missing.append(cell.id)
    elif cell.id == PROVENANCE_ID:
      cell.source = next(
        (c.source for c in saved.cells if c.get("id") == PROVENANCE_ID), cell.source
      )
  return missing


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("names", nargs="*", default=list(NAMES), help="notebooks to write")
  parser.add_argument(
    "--execute", action="store_true", help="run them full size and save the outputs"
  )
  parser.add_argument(
    "--note",
    default="",
    help="a word on the machine for the provenance cell, e.g. 'shared with other jobs'",
  )
  parser.add_argument(
    "--keep-outputs",
    action="store_true",
    help="keep the saved outputs of the code cells whose source is"
    " unchanged (changed cells get none: then use --execute)",
  )
  args = parser.parse_args(argv)
  if args.execute and args.keep_outputs:
    parser.error("--execute and --keep-outputs exclude each other")
  status = 0
  for name in args.names:
    if name not in NAMES:
      parser.error(f"unknown notebook {name!r}; known: {', '.join(NAMES)}")
    try:
      nb = build(name)
    except ValueError as error:
      parser.error(str(error))
    path = HERE / f"{name}.ipynb"
    if args.keep_outputs and path.exists():
      missing = keep_outputs(nb, nbformat.read(path, as_version=4))
      if missing:
        status = 1
        print(
          f"{name}: code cells {', '.join(missing)} changed and have no outputs:"
          f" run with --execute {name}",
          file=sys.stderr,
        )
    if args.execute:
      wall = execute(nb, name, note=args.note)
      print(f"{name}: executed in {wall:.0f} s", flush=True)
    nbformat.validate(nb)
    nbformat.write(nb, path)
    print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size / 1024:.0f} KiB)")
  return status


if __name__ == "__main__":
  sys.exit(main())
