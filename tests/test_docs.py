"""The documentation: every public name is in the API reference, and the guides' code runs."""

import pathlib
import re
import subprocess
import sys

import pytest

import flood_jax

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _python_blocks(text: str) -> list[str]:
  return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


# The guides that show Python code (the others show shell commands only).
GUIDES = [p for p in sorted((DOCS / "guides").glob("*.md")) if _python_blocks(p.read_text())]


def _documented_names(reference: str) -> set[str]:
  """Names that the autodoc directives of ``docs/api.rst`` document, fully qualified."""
  names, module = set(), ""
  for kind, name in re.findall(r"^\.\. (currentmodule|auto\w+):: (\S+)", reference, flags=re.M):
    if kind == "currentmodule":
      module = name
    elif kind == "automodule" or "." in name:
      names.add(name)
    else:
      names.add(f"{module}.{name}")
  return names


def test_every_public_name_is_in_the_api_reference():
  public = {f"flood_jax.{name}" for name in flood_jax.__all__}
  public |= {"flood_jax.data", "flood_jax.models", "flood_jax.plots"}
  missing = public - _documented_names((DOCS / "api.rst").read_text())
  assert not missing, f"add these to docs/api.rst: {sorted(missing)}"


def test_the_reference_check_sees_a_missing_name():
  reference = (
    ".. currentmodule:: flood_jax\n\n.. autofunction:: flood\n\n.. automodule:: flood_jax.data\n"
  )
  assert _documented_names(reference) == {"flood_jax.flood", "flood_jax.data"}


@pytest.mark.parametrize("guide", GUIDES, ids=lambda path: path.stem)
def test_guide_code_runs_in_a_fresh_interpreter(guide, tmp_path):
  code = "\n".join(_python_blocks(guide.read_text()))
  proc = subprocess.run(
    [sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=tmp_path
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
