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

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding

# jax.distributed.initialize's default heartbeat timeout: a process that stops
# answering for this long takes the others down.
HEARTBEAT_TIMEOUT_S = 100
# How long a process waits for the others (and the coordinator) to join
# before it gives up (jax.distributed.initialize's default).
JOIN_TIMEOUT_S = 300


def process_count() -> int:
  """Processes in this JAX program (1 without ``jax.distributed``)."""
  return jax.process_count()


def is_main() -> bool:
  """Whether this is process 0, the one that prints and writes files."""
  return jax.process_index() == 0


def initialize(
  coordinator: str | None = None,
  num_processes: int | None = None,
  process_id: int | None = None,
  *,
  heartbeat_timeout_seconds: int = HEARTBEAT_TIMEOUT_S,
  join_timeout_seconds: int = JOIN_TIMEOUT_S,
) -> None:
  """Joins this process to a multi-process JAX program (``jax.distributed.initialize``).

  With no arguments JAX detects the cluster (a TPU pod slice, SLURM, Open
  MPI); otherwise all three are given. On a CPU, collectives between
  processes go through gloo (JAX has no other CPU implementation). Must run
  before anything touches a device.

  Args:
    coordinator: ``HOST:PORT`` of process 0's coordination service.
    num_processes: how many processes take part.
    process_id: this process's index, ``0 <= process_id < num_processes``.
    heartbeat_timeout_seconds: how long a silent process is waited for
      before the others stop with an error.
    join_timeout_seconds: how long to wait for the coordinator and the other
      processes to join before raising an error.
  """
  given = [coordinator is not None, num_processes is not None, process_id is not None]
  if any(given) and not all(given):
    raise ValueError(
      "give all of coordinator, num_processes and process_id (explicit"
      " launch), or none of them (JAX detects a TPU pod, SLURM or Open MPI)."
    )
  if num_processes is not None and process_id is not None and not 0 <= process_id < num_processes:
    raise ValueError(f"process_id must be in [0, {num_processes}), got {process_id}.")
  platforms = (
    os.environ.get("JAX_PLATFORMS", "") or getattr(jax.config, "jax_platforms", None) or ""
  )
  collectives = getattr(jax.config, "jax_cpu_collectives_implementation", None)
  if platforms in ("", "cpu") and collectives in (None, "", "none"):
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(
    coordinator,
    num_processes,
    process_id,
    initialization_timeout=join_timeout_seconds,
    heartbeat_timeout_seconds=heartbeat_timeout_seconds,
  )


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


def free_port() -> int:
  """A TCP port on localhost that nothing listens on now."""
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def run_local_processes(
  args: Sequence[str],
  num_processes: int,
  devices_per_process: int,
  *,
  timeout: float,
  env: dict[str, str] | None = None,
  wait_for_all: bool = False,
) -> list[subprocess.CompletedProcess]:
  """Runs ``python args...`` as ``num_processes`` processes on this machine, joined.

  Each process gets ``devices_per_process`` CPU devices and the environment
  variables ``FLOOD_JAX_COORDINATOR``, ``FLOOD_JAX_NUM_PROCESSES`` and
  ``FLOOD_JAX_PROCESS_ID`` (a free localhost port), which the script passes
  to :func:`initialize` (one process is left alone: a plain JAX program);
  ``{coordinator}`` and ``{process_id}`` in ``args`` are replaced by them
  (and ``{process_id}`` in the values of ``env``).
  For tests and benchmarks: a stand-in for a cluster.
  All processes are killed after ``timeout`` seconds, or as soon as one fails
  unless ``wait_for_all`` (then the others end on their own, as they would
  on a cluster).

  Returns:
    Each process's completed run (stdout and stderr captured as text).
  """
  coordinator = f"127.0.0.1:{free_port()}"
  base = dict(os.environ if env is None else env)
  base.update(
    JAX_PLATFORMS="cpu",
    XLA_FLAGS=f"--xla_force_host_platform_device_count={devices_per_process}",
    FLOOD_JAX_COORDINATOR=coordinator if num_processes > 1 else "",
    FLOOD_JAX_NUM_PROCESSES=str(num_processes),
  )
  procs: list[subprocess.Popen] = []
  healthy = lambda p: wait_for_all or p.poll() in (None, 0)
  with contextlib.ExitStack() as stack:
    files = [
      (
        stack.enter_context(tempfile.TemporaryFile("w+")),
        stack.enter_context(tempfile.TemporaryFile("w+")),
      )
      for _ in range(num_processes)
    ]
    try:
      for i, (out, err) in enumerate(files):
        argv = [
          a.replace("{coordinator}", coordinator).replace("{process_id}", str(i)) for a in args
        ]
        env_i = {k: v.replace("{process_id}", str(i)) for k, v in base.items()}
        procs.append(
          subprocess.Popen(
            [sys.executable, *argv],
            env=dict(env_i, FLOOD_JAX_PROCESS_ID=str(i)),
            stdout=out,
            stderr=err,
            text=True,
          )
        )
      deadline = time.monotonic() + timeout
      # Poll all: one that fails takes the others down at once.
      while any(p.poll() is None for p in procs):
        if time.monotonic() > deadline or not all(healthy(p) for p in procs):
          break
        time.sleep(0.05)
    finally:
      for proc in procs:
        if proc.poll() is None:
          proc.kill()
        proc.wait()
    results = []
    for proc, (out, err) in zip(procs, files, strict=True):
      out.seek(0)
      err.seek(0)
      results.append(
        subprocess.CompletedProcess(proc.args, proc.returncode, out.read(), err.read())
      )
  return results


def initialize_from_env() -> bool:
  """:func:`initialize` from ``FLOOD_JAX_COORDINATOR`` & co., if set.

  See :func:`run_local_processes`. Returns whether it joined.
  """
  coordinator = os.environ.get("FLOOD_JAX_COORDINATOR")
  if not coordinator:
    return False
  initialize(
    coordinator,
    int(os.environ["FLOOD_JAX_NUM_PROCESSES"]),
    int(os.environ["FLOOD_JAX_PROCESS_ID"]),
    heartbeat_timeout_seconds=int(os.environ.get("FLOOD_JAX_HEARTBEAT_S", HEARTBEAT_TIMEOUT_S)),
  )
  return True
