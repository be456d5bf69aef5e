"""The notebooks: they run top to bottom at small size, and their Colab links agree.

Each notebook is executed with nbclient on the CPU with ``FLOOD_JAX_SMALL=1``
in the kernel's environment, from a copy in a temporary folder (the committed
outputs, those of a full-size run, are never touched); any cell error fails
the test. Each notebook's source is its Jupytext script ``notebooks/NAME.py``;
``notebooks/build_notebooks.py`` writes the .ipynb from it, and a test checks
that the two are in sync.
"""

import importlib.util
import os
import pathlib
import re
import sys

import pytest

# jupyter_core warns (DeprecationWarning) about its paths unless this is set;
# set it before nbclient imports jupyter_core. It only picks the platformdirs
# locations, which the kernel spec lookup below does not depend on.
os.environ.setdefault("JUPYTER_PLATFORM_DIRS", "1")

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
jupytext = pytest.importorskip("jupytext")

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
NAMES = ("quickstart", "sweep", "double_descent")


def _generator():
  spec = importlib.util.spec_from_file_location("build_notebooks", NOTEBOOKS / "build_notebooks.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _read(name):
  return nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)


def _repository_url():
  if sys.version_info >= (3, 11):
    import tomllib
  else:
    import tomli as tomllib
  with open(ROOT / "pyproject.toml", "rb") as f:
    return tomllib.load(f)["project"]["urls"]["Repository"].rstrip("/")


def test_every_notebook_is_here():
  found = sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))
  assert found == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_colab_badge_and_install_use_the_repository_url(name):
  repo = _repository_url()
  owner_repo = re.fullmatch(r"https://github\.com/(.+?)(\.git)?", repo).group(1)
  expected = (
    f"https://colab.research.google.com/github/{owner_repo}/blob/main/notebooks/{name}.ipynb"
  )
  nb = _read(name)
  first = nb.cells[0]
  assert first.cell_type == "markdown"
  assert first.source.startswith("[![Open In Colab]"), first.source[:200]
  assert f"]({expected})" in first.source
  # Every Colab link anywhere in the notebook is that one.
  text = "\n".join(cell.source for cell in nb.cells)
  links = re.findall(r"https://colab\.research\.google\.com/github/[^\s)\"']+", text)
  assert links and set(links) == {expected}
  # The first code cell installs from the same repository, on Colab only.
  code = next(cell for cell in nb.cells if cell.cell_type == "code")
  assert f'"git+{repo}"' in code.source
  assert 'if "google.colab" in sys.modules:' in code.source
  assert "jax.devices()" in code.source


@pytest.mark.parametrize("name", NAMES)
def test_notebook_matches_its_script(name):
  """The .ipynb holds the cells Jupytext reads from NAME.py, plus the builder's.

  The builder adds the Colab badge to the first markdown cell, then the
  provenance and setup cells after it; the provenance text is the run's own.
  """
  generator = _generator()
  script = jupytext.read(NOTEBOOKS / f"{name}.py")
  committed = _read(name)
  hint = (
    f"notebooks/{name}.ipynb is out of date with notebooks/{name}.py: run"
    f" python notebooks/build_notebooks.py --keep-outputs {name} (or --execute {name})"
  )

  def sources(cells):
    return [(c.cell_type, c.source) for c in cells]

  def without_provenance(nb):
    return sources(c for c in nb.cells if c.get("id") != generator.PROVENANCE_ID)

  # Pairing, declared on both sides.
  assert script.metadata["jupytext"]["formats"] == "ipynb,py:percent"
  assert committed.metadata["jupytext"]["formats"] == "ipynb,py:percent"
  # The script's cells, verbatim and in order, around the builder's additions.
  first, provenance, setup, *rest = committed.cells
  assert provenance.get("id") == generator.PROVENANCE_ID
  assert setup.cell_type == "code" and 'if "google.colab" in sys.modules:' in setup.source
  badge = generator._badge(name)
  assert sources([first, *rest]) == [
    ("markdown", f"{badge}\n\n{script.cells[0].source}"),
    *sources(script.cells[1:]),
  ], hint
  # And exactly what the builder writes (the provenance text aside).
  built = generator.build(name)
  assert without_provenance(committed) == without_provenance(built), hint
  assert [c.get("id") for c in committed.cells] == [c.get("id") for c in built.cells]


@pytest.mark.parametrize("name", NAMES)
def test_committed_outputs_are_a_full_size_run(name):
  nb = _read(name)
  size = (NOTEBOOKS / f"{name}.ipynb").stat().st_size
  assert size < 1_000_000, f"{name}.ipynb is {size} bytes"
  code = [c for c in nb.cells if c.cell_type == "code"]
  assert all(c.outputs for c in code), "a code cell has no outputs: run --execute"
  assert not any(o.get("output_type") == "error" for c in code for o in c.outputs)
  setup_text = "".join(o.get("text", "") for o in code[0].outputs)
  assert "full-size run" in setup_text
  provenance = next(c for c in nb.cells if c.get("id") == "provenance")
  assert "Not executed yet" not in provenance.source


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_at_small_size(name, tmp_path, monkeypatch):
  monkeypatch.setenv("FLOOD_JAX_SMALL", "1")  # the kernel inherits the environment
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  monkeypatch.delenv("XLA_FLAGS", raising=False)
  nb = _read(name)
  for cell in nb.cells:  # start from a clean copy
    if cell.cell_type == "code":
      cell.outputs, cell.execution_count = [], None
  # Which interpreter runs the kernel: it must be this one (the venv's).
  nb.cells.append(nbformat.v4.new_code_cell("import sys; print(sys.executable, sys.prefix)"))
  client = nbclient.NotebookClient(
    nb,
    timeout=600,
    kernel_name="python3",
    record_timing=False,
    resources={"metadata": {"path": str(tmp_path)}},
  )
  client.execute()  # raises CellExecutionError on the first failing cell
  nbformat.write(nb, tmp_path / f"{name}.ipynb")  # the copy, for a look after a failure

  code = [c for c in nb.cells if c.cell_type == "code"]
  setup_text = "".join(o.get("text", "") for o in code[0].outputs)
  assert "small run" in setup_text and "devices:" in setup_text
  executable, prefix = "".join(o.get("text", "") for o in code[-1].outputs).split()
  assert (executable, prefix) == (sys.executable, sys.prefix)
  errors = [o for c in code for o in c.outputs if o.get("output_type") == "error"]
  assert not errors
