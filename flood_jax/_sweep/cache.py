"""The program cache: a sweep that computes what an earlier one did reuses its compiled program.

Two lookups. First by the program's settings themselves (the same model, optimizer, loss
function and augmentation objects, and sizes): free. Then by what determines the computation:
the program of one model (init, a training step, an evaluation) is traced to a jaxpr, whose
text (operations, shapes, dtypes and the constants written into it, hyperparameter values
included) and captured arrays are hashed with what shapes the rest (the :class:`CallPlan` and
the mesh). So ``fj.sweep(..., optimizer=optax.sgd(0.01))`` called twice with freshly built but
equal arguments compiles once, while a changed hyperparameter, loss or model gets a program of
its own. Tracing one model costs a fraction of a second; compiling, seconds.
"""

from __future__ import annotations

import collections
from typing import Any

from jax.sharding import Mesh

from flood_jax._cache import register
from flood_jax._sweep.compiled import Program
from flood_jax._sweep.program import CallPlan
from flood_jax._sweep.spec import TrainSpec

_PROGRAMS: collections.OrderedDict[Any, Program] = collections.OrderedDict()
_BY_COMPUTATION: collections.OrderedDict[Any, Program] = collections.OrderedDict()
_CACHE_SIZE = 8


def get_program(train: TrainSpec, plan: CallPlan, mesh: Mesh) -> Program:
  """The compiled program for these settings, shared by every sweep that computes the same."""
  try:
    key = (train, plan, mesh)
    hash(key)
  except TypeError:
    key = None
  if key is not None and key in _PROGRAMS:
    _PROGRAMS.move_to_end(key)
    return _PROGRAMS[key]
  program = Program(train, plan, mesh)
  # Only compare computations when there is a program to compare with (the keys of cached
  # programs are computed then, once): a process's first sweep pays no tracing for it.
  if _BY_COMPUTATION or _PROGRAMS:
    for key_, cached in list(_PROGRAMS.items()):
      try:
        _by_computation(cached)
      except Exception:  # its model no longer traces (e.g. its module's globals are gone)
        del _PROGRAMS[key_]
    computation = program.computation_key()
    if computation in _BY_COMPUTATION:
      program = _BY_COMPUTATION[computation]
      _BY_COMPUTATION.move_to_end(computation)
    else:
      _remember(_BY_COMPUTATION, computation, program)
  if key is not None:
    _remember(_PROGRAMS, key, program)
  return program


register(_PROGRAMS.clear)
register(_BY_COMPUTATION.clear)


def last_program() -> Program:
  """The program most recently looked up (for tests and benchmarks)."""
  return next(reversed(_PROGRAMS.values()))


def _by_computation(program: Program) -> None:
  """Files a cached program under its computation key, if it is not yet."""
  if program.__dict__.get("_computation") is None:
    _remember(_BY_COMPUTATION, program.computation_key(), program)


def _remember(cache: collections.OrderedDict[Any, Program], key: Any, program: Program) -> None:
  cache[key] = program
  if len(cache) > _CACHE_SIZE:
    cache.popitem(last=False)
