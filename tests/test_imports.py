"""The package's modules import alone, and its runtime import graph has no cycle.

The graph has a node per module of ``flood_jax`` (a package is its ``__init__``) and an edge
``a -> b`` for each ``import``/``from`` statement in ``a`` that names ``b``, wherever it stands: at
the top or deferred into a function (a deferred import still runs, later, and hiding a cycle
there is what this test forbids). Statements under ``if TYPE_CHECKING:`` never run and are left
out (their ``else:`` branch is kept). Imports of other packages are not nodes.

How a statement names ``b``:

- ``import flood_jax.x.y`` (with or without ``as``): ``flood_jax.x.y`` (``import flood_jax``:
  the package's ``__init__``, whose names the module then reads);
- ``from M import n`` (``M`` absolute or relative): ``M.n`` when ``M.n`` is a module of the
  package (``from flood_jax import data`` needs ``flood_jax/data`` only: Python hands over the
  submodule even while ``flood_jax/__init__`` is part-way through), else ``M`` itself, whose body
  must have run up to where it defines ``n`` (``from flood_jax import sweep``,
  ``from flood_jax._sweep import count_params`` are edges to those ``__init__``\\ s);
- ``from M import *``: ``M``.

Python runs a package's ``__init__`` before any module in it, so an import of
``flood_jax._sweep.pbt`` from ``flood_jax._result`` also needs ``flood_jax._sweep`` (whose
``__init__`` imports the API, the driver and, through them, ``_result`` again): that is an edge
``_result -> flood_jax._sweep``. A package that holds the importing module itself is no edge
(``flood_jax`` for every module, ``flood_jax._sweep`` for ``flood_jax._sweep.driver``): it has
necessarily started before the module runs, and a sibling import from a package part-way
through its ``__init__`` is the ordinary state of a package. The fresh-process test below
imports each module alone, so an order in which an import would still break shows there.
"""

import ast
import pathlib
import subprocess
import sys

import flood_jax

ROOT = pathlib.Path(flood_jax.__file__).parent


def _modules():
  """``{module name: path}`` for every module of the package."""
  out = {}
  for path in sorted(ROOT.rglob("*.py")):
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    if parts[-1] == "__init__":
      parts = parts[:-1]
    out[".".join(parts)] = path
  return out


def _is_type_checking(test):
  return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
    isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
  )


def _runtime_imports(tree):
  """The ``Import``/``ImportFrom`` nodes of a module that can run (none under TYPE_CHECKING)."""
  found = []

  def walk(node):
    if isinstance(node, ast.If) and _is_type_checking(node.test):
      for child in node.orelse:
        walk(child)
      return
    if isinstance(node, (ast.Import, ast.ImportFrom)):
      found.append(node)
    for child in ast.iter_child_nodes(node):
      walk(child)

  walk(tree)
  return found


def _targets(name, path, node, modules):
  """The modules of the package that one import statement in module ``name`` needs."""
  if isinstance(node, ast.Import):
    return {alias.name for alias in node.names if alias.name in modules}
  base = node.module or ""
  if node.level:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for _ in range(node.level - 1):
      package = package.rpartition(".")[0]
    base = f"{package}.{base}" if base else package
  if base not in modules:
    return set()
  return {f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names}


def _packages(name):
  """The packages above module ``name``: ``a.b.c`` -> ``{a, a.b}``."""
  parts = name.split(".")
  return {".".join(parts[:i]) for i in range(1, len(parts))}


def _edges(name, path, tree, modules):
  """The modules of the package that module ``name`` (parsed: ``tree``) needs at run time."""
  inside = _packages(name) | ({name} if path.name == "__init__.py" else set())
  edges = set()
  for node in _runtime_imports(tree):
    for target in _targets(name, path, node, modules):
      edges |= {target} | (_packages(target) - inside)
  return edges - {name}


def import_graph():
  """``{module: set of the package's modules it imports at run time}``."""
  modules = _modules()
  return {
    name: _edges(name, path, ast.parse(path.read_text(), filename=str(path)), modules)
    for name, path in modules.items()
  }


def find_cycle(graph):
  """One cycle of ``graph`` as a list of nodes whose last imports the first, or None."""
  state = dict.fromkeys(graph, 0)  # 0 unseen, 1 on the path, 2 done
  path = []

  def visit(node):
    state[node] = 1
    path.append(node)
    for nxt in sorted(graph[node]):
      if state[nxt] == 1:
        return path[path.index(nxt) :]
      if state[nxt] == 0 and (cycle := visit(nxt)):
        return cycle
    path.pop()
    state[node] = 2
    return None

  for node in sorted(graph):
    if state[node] == 0 and (cycle := visit(node)):
      return cycle
  return None


def test_find_cycle_reports_a_cycle():
  assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c"]
  assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_graph_reads_deferred_relative_and_package_imports_not_type_only_ones():
  source = (
    "from typing import TYPE_CHECKING\n"
    "if TYPE_CHECKING:\n  from flood_jax import _result\n"
    "def f():\n  from . import _loss\n  from flood_jax import sweep, data\n"
    "  from flood_jax._sweep.pbt import PBT\n  import flood_jax._sweep.prune\n"
  )
  modules = _modules()
  edges = _edges("flood_jax._x", ROOT / "_x.py", ast.parse(source), modules)
  assert edges == {
    *("flood_jax._loss", "flood_jax", "flood_jax.data", "flood_jax._sweep"),
    *("flood_jax._sweep.pbt", "flood_jax._sweep.prune"),
  }
  # Inside flood_jax._sweep, its own __init__ has started: no edge to it.
  inner = "from flood_jax._sweep.pbt import PBT\nfrom . import prune\n"
  edges = _edges("flood_jax._sweep.x", ROOT / "_sweep/x.py", ast.parse(inner), modules)
  assert edges == {"flood_jax._sweep.pbt", "flood_jax._sweep.prune"}


def test_no_runtime_import_cycle():
  cycle = find_cycle(import_graph())
  assert cycle is None, "runtime import cycle: " + " -> ".join([*cycle, cycle[0]])


_IMPORT_EACH = """
import importlib, sys
import flood_jax  # (its dependencies, from their own bytecode)
# Every module re-runs the package's code: compiled once, to a folder outside the tree.
sys.pycache_prefix, sys.dont_write_bytecode = sys.argv[1], False
failed = []
for name in sys.argv[2:]:
  for loaded in [m for m in sys.modules if m == "flood_jax" or m.startswith("flood_jax.")]:
    del sys.modules[loaded]
  try:
    importlib.import_module(name)
  except Exception as error:
    failed.append(f"{name}: {type(error).__name__}: {error}")
print("\\n".join(failed))
sys.exit(1 if failed else 0)
"""


def test_each_module_imports_alone_in_a_fresh_process(tmp_path):
  done = subprocess.run(
    [sys.executable, "-W", "error", "-c", _IMPORT_EACH, str(tmp_path), *sorted(_modules())],
    capture_output=True,
    text=True,
    cwd=ROOT.parent,
    timeout=300,
  )
  assert done.returncode == 0, done.stdout + done.stderr
