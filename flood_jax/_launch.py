"""Starting a multi-process JAX program: ``jax.distributed`` joins and a local launcher.

:func:`initialize` joins this process (JAX detects a TPU pod, SLURM or Open MPI, or all three
of coordinator, process count and id are given). :func:`run_local_processes` starts several
processes on this machine that join each other (a stand-in for a cluster, for tests and
benchmarks), and :func:`initialize_from_env` is what such a process calls. The sweep's
multi-process runtime itself (placing, gathering, agreeing) is :mod:`flood_jax._sweep.hosts`.
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

import jax

# jax.distributed.initialize's default heartbeat timeout: a process that stops
# answering for this long takes the others down.
HEARTBEAT_TIMEOUT_S = 100
# How long a process waits for the others (and the coordinator) to join
# before it gives up (jax.distributed.initialize's default).
JOIN_TIMEOUT_S = 300


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
