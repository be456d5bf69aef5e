"""Compiling a sweep's training call while its initialization compiles.

A sweep's first call compiles two programs, the initialization and the
training call, one after the other: the second waits for the first's carry.
Its shapes are known before (``Program.carry_structure``), so the training
call can be lowered and compiled in a thread while the main thread compiles
and runs the initialization. XLA compiles with Python's lock released, so on
a machine with two cores or more the two compilations overlap. The
compiled executable lands in ``jax.jit``'s own cache (``jit(f).lower(...)
.compile()`` fills it), so the call that follows compiles nothing; if the
ahead-of-time lowering differs from the call in any way, the call compiles
as it would have anyway.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import jax
from jax.sharding import NamedSharding


def compile_run_ahead(
  program: Any, rows: int, sharding: NamedSharding, *args: Any
) -> Callable[[], None]:
  """Starts compiling ``program.run`` for a carry of ``rows`` models; returns ``wait()``.

  Args:
    program: the sweep's :class:`flood_jax._sweep.program.Program`.
    rows: models per call (the carry's leading axis, over all devices).
    sharding: the carry's sharding (the sweep axis over the mesh).
    *args: the call's other arguments, as it will be called
      (``levels, slot_seeds, model_slot, first_epoch, data``).

  Returns:
    ``wait()``, to call before the first training call: it returns once the
    compilation is done (or failed: the call then compiles itself).
  """

  def carry_of(leaf: Any) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct((rows, *leaf.shape), leaf.dtype, sharding=sharding)

  def compile_() -> None:
    try:
      carry = jax.tree.map(carry_of, program.carry_structure)
      with jax.threefry_partitionable(False):
        program._run.lower(carry, *args).compile()
    except Exception:  # a difference shows as a compilation at the call, never as an error
      pass

  thread = threading.Thread(target=compile_, name="flood_jax-compile-ahead", daemon=True)
  thread.start()
  return thread.join
