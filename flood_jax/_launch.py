"""Starting a multi-process JAX program: ``jax.distributed`` joins and a local launcher.

:func:`initialize` joins this process (JAX detects a TPU pod, SLURM or Open MPI, or all three
of coordinator, process count and id are given). :func:`run_local_processes` starts several
processes on this machine that join each other (a stand-in for a cluster, for tests and
benchmarks), and :func:`initialize_from_env` is what such a process calls. The sweep's
multi-process runtime itself (placing, gathering, agreeing) is :mod:`flood_jax._sweep.hosts`.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence

import jax

# jax.distributed.initialize's default heartbeat timeout: a process that stops
# answering for this long takes the others down.
HEARTBEAT_TIMEOUT_S = 100
# How long a process waits for the others (and the coordinator) to join
# before it gives up (jax.distributed.initialize's default).
JOIN_TIMEOUT_S = 300
# JAX aborts the process from C++ (a stack trace, exit -6) when its join times out; its
# timeout is set this much later than ours, so that ours fires first and says so in a line.
ABORT_GRACE_S = 10
# The exit status of a process whose join timed out (the command line's for bad input).
JOIN_FAILED_EXIT = 2


def split_address(address: str) -> tuple[str, int]:
  """``(host, port)`` of ``HOST:PORT`` (an IPv6 host in brackets, ``[::1]:1234``).

  Raises:
    ValueError: not of that form, or a port outside 1 to 65535 (one line).
  """
  match = re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[^\s:\[\]]+):(\d+)", address)
  if match is None:
    raise ValueError(
      f"the coordinator's address must be HOST:PORT (e.g. 10.0.0.1:1234), got {address!r}."
    )
  host, port = match.group(1).strip("[]"), int(match.group(2))
  if not 1 <= port <= 65535:
    raise ValueError(
      f"the coordinator's port must be 1 to 65535, got {port} in {address!r}; pick a free port."
    )
  return host, port


def check_coordinator(address: str, process_id: int) -> None:
  """One-line errors, before JAX starts, for a coordinator that cannot be one.

  Every process: an address of the wrong form or a port out of range, a host that does not
  resolve. Process 0, which starts the coordination service on the port: a port in use.
  """
  host, port = split_address(address)
  try:
    socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
  except socket.gaierror as err:
    raise ValueError(
      f"the coordinator's host {host!r} (in {address}) does not resolve ({err.strerror});"
      " give process 0's host name or IP address."
    ) from None
  if process_id != 0:
    return
  # JAX's coordination service listens on the port on every interface.
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
      probe.bind(("", port))
    except OSError as err:
      raise ValueError(
        f"process 0 cannot start the coordinator on port {port} ({address}):"
        f" {err.strerror}; pick a free port for every process's coordinator address."
      ) from None


@contextlib.contextmanager
def _watchdog(seconds: float, line: str) -> Iterator[None]:
  """Ends the process with ``line`` (stderr) and :data:`JOIN_FAILED_EXIT` if the body is
  still running after ``seconds``: a join that waits in C++, which only an abort ends."""

  def give_up() -> None:
    with contextlib.suppress(Exception):
      sys.stdout.flush()
      print(line, file=sys.stderr, flush=True)
    os._exit(JOIN_FAILED_EXIT)

  timer = threading.Timer(seconds, give_up)
  timer.daemon = True
  timer.start()
  try:
    yield
  finally:
    timer.cancel()


def initialize(
  coordinator: str | None = None,
  num_processes: int | None = None,
  process_id: int | None = None,
  *,
  heartbeat_timeout_seconds: int = HEARTBEAT_TIMEOUT_S,
  join_timeout_seconds: float = JOIN_TIMEOUT_S,
  timeout_line: str | None = None,
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
      processes to join. JAX then aborts the process from C++, so it ends here
      first: ``timeout_line`` on stderr, exit status :data:`JOIN_FAILED_EXIT`.
    timeout_line: what a join that timed out prints (default: a line that
      says so).

  Raises:
    ValueError: incomplete or inconsistent arguments, a coordinator address
      that cannot be one (:func:`check_coordinator`), before JAX starts.
  """
  given = [coordinator is not None, num_processes is not None, process_id is not None]
  if any(given) and not all(given):
    raise ValueError(
      "give all of coordinator, num_processes and process_id (explicit"
      " launch), or none of them (JAX detects a TPU pod, SLURM or Open MPI)."
    )
  if num_processes is not None and process_id is not None and not 0 <= process_id < num_processes:
    raise ValueError(f"process_id must be in [0, {num_processes}), got {process_id}.")
  if coordinator is not None and process_id is not None:
    check_coordinator(coordinator, process_id)
  where = f" at {coordinator} (process {process_id} of {num_processes})" if coordinator else ""
  line = timeout_line or (
    f"flood_jax: error: the processes did not all join{where} within"
    f" {join_timeout_seconds:g} s; start every process (with the same coordinator and"
    " number of processes, a process id of its own), or wait longer."
  )
  platforms = (
    os.environ.get("JAX_PLATFORMS", "") or getattr(jax.config, "jax_platforms", None) or ""
  )
  collectives = getattr(jax.config, "jax_cpu_collectives_implementation", None)
  if platforms in ("", "cpu") and collectives in (None, "", "none"):
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  with _watchdog(join_timeout_seconds, line):
    jax.distributed.initialize(
      coordinator,
      num_processes,
      process_id,
      initialization_timeout=math.ceil(join_timeout_seconds) + ABORT_GRACE_S,
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
