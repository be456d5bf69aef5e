"""Sweeps across hosts: ``jax.distributed``, JAX's multi-controller runtime.

Every process runs the same program and calls :func:`flood_jax.sweep` with
the same arguments. The sweep axis is laid out over the *global* devices (all
processes'); each process puts on its own devices only its share: its copy of
the data, its models' levels and seeds, and (from the compiled program) their
initial states, so no process holds another's models. What travels between
processes is small: each call's metrics (``models x epochs x 6`` floats),
gathered so that every process returns the same history, and, unless
``gather_params=False``, the trained parameters once at the end of each call.

This module holds the few operations that differ between one process and
many; with one process each is the plain single-process operation, so the
driver has one code path:

>>> import jax, numpy as np
>>> from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
>>> from flood_jax._sweep import hosts
>>> sharding = NamedSharding(Mesh(np.array(jax.devices()[:1]), ("models",)), P("models"))
>>> x = hosts.put(np.arange(4.0, dtype=np.float32), sharding)
>>> hosts.to_host(x), hosts.local_indices(sharding, 4)
(array([0., 1., 2., 3.], dtype=float32), array([0, 1, 2, 3]))

References:
  JAX, `Multi-process environments
  <https://docs.jax.dev/en/latest/multi_process.html>`_.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding


def process_count() -> int:
  """Processes in this JAX program (1 without ``jax.distributed``)."""
  return jax.process_count()


def is_main() -> bool:
  """Whether this is process 0, the one that prints and writes files."""
  return jax.process_index() == 0


def put(value: Any, sharding: NamedSharding) -> Any:
  """Host arrays (the same on every process) onto ``sharding``'s devices.

  Each process transfers only the pieces its own devices hold.
  """
  if sharding.is_fully_addressable:
    return jax.device_put(value, sharding)

  def one(x):
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

  return jax.tree.map(one, value)


def put_keys(value: Any, sharding: NamedSharding) -> Any:
  """Like :func:`put`, for typed PRNG keys too (placed as raw data, then wrapped)."""
  if sharding.is_fully_addressable:
    return jax.device_put(value, sharding)

  def one(x):
    if _is_key(x):
      impl = jax.random.key_impl(x)
      return jax.random.wrap_key_data(put(np.asarray(jax.random.key_data(x)), sharding), impl=impl)
    return put(x, sharding)

  return jax.tree.map(one, value)


def to_host(x: jax.Array) -> Any:
  """The whole of a (possibly multi-process) array on this host, as NumPy.

  Typed PRNG keys come back as keys (of their gathered raw data). Under
  several processes every process must call it (it is a collective).
  """
  if getattr(x, "is_fully_addressable", True):
    return np.asarray(x)
  if _is_key(x):
    data = jnp.asarray(to_host(jax.random.key_data(x)))
    return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
  return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def local_rows(x: jax.Array) -> np.ndarray:
  """The rows (models) of a sweep-axis-sharded array that this process holds, in order."""
  pieces = {}
  for shard in x.addressable_shards:
    start = getattr(shard.index[0], "start", None) or 0
    pieces[start] = np.asarray(shard.data)
  return np.concatenate([pieces[s] for s in sorted(pieces)])


def _is_key(x: Any) -> bool:
  return jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def local_indices(sharding: NamedSharding, num_rows: int) -> np.ndarray:
  """Sorted indices of the rows of a ``(num_rows, ...)`` array on this process's devices."""
  rows = set()
  for index in sharding.addressable_devices_indices_map((num_rows,)).values():
    rows.update(range(num_rows)[index[0] if index else slice(None)])
  return np.array(sorted(rows), np.int64)


def agree(flag: bool) -> bool:
  """Process 0's ``flag``, on every process (a collective; ``flag`` with one process)."""
  if process_count() == 1:
    return flag
  return bool(multihost_utils.broadcast_one_to_all(np.asarray(flag)))


def lost_process(err: BaseException, checkpoint_dir: Any) -> RuntimeError:
  """The error a process raises when a collective fails: most likely another process died.

  JAX's coordination service notices a silent process after
  ``heartbeat_timeout_seconds`` and ends the others too; a collective in
  flight usually fails sooner (its connection drops).
  """
  lines = str(err).strip().splitlines()
  resume = (
    f"rerun the same sweep on {process_count()} processes to continue from"
    f" the checkpoint in {os.fspath(checkpoint_dir)}"
    if checkpoint_dir is not None
    else "pass checkpoint_dir so that a rerun can continue"
  )
  return RuntimeError(
    f"process {jax.process_index()} of {process_count()}: the sweep lost contact"
    f" with another process (most likely it died; see its log): "
    f"{lines[0] if lines else type(err).__name__}; {resume}."
  )


def check_every_process(devices: Sequence[Any]) -> None:
  """Raises unless ``devices`` include some of every process's (a sweep needs all of them)."""
  missing = sorted(set(range(process_count())) - {d.process_index for d in devices})
  if missing:
    raise ValueError(
      f"the mesh has no device of process(es) {missing}; under jax.distributed"
      " every process takes part in the sweep: build the mesh from jax.devices()"
      " (all processes'), or leave mesh=None."
    )


def barrier(name: str) -> None:
  """Waits until every process gets here (nothing with one process)."""
  if process_count() > 1:
    multihost_utils.sync_global_devices(name)
