"""Options to run a command on several hosts at once (``jax.distributed``).

Every host runs the same command; the processes join before JAX starts, the
sweep spans all their devices, and process 0 alone prints and writes files.
"""

from __future__ import annotations

import argparse
import re
import socket
import sys
import time
from typing import Any

from flood_jax import _launch
from flood_jax._checks import first_line
from flood_jax.cli.args import positive_int
from flood_jax.cli.common import PROG, UsageError


def _address(text: str) -> str:
  try:
    _launch.split_address(text)
  except ValueError:
    if re.fullmatch(r"\S+:\d+", text):
      raise argparse.ArgumentTypeError(
        f"the port must be 1 to 65535, got {text.rsplit(':', 1)[1]} in {text!r}"
      ) from None
    raise argparse.ArgumentTypeError(
      f"expected HOST:PORT (e.g. 10.0.0.1:1234), got {text!r}"
    ) from None
  return text


def _index(text: str) -> int:
  try:
    value = int(text)
  except ValueError:
    value = -1
  if value < 0:
    raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
  return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
  """``--distributed``, ``--coordinator``, ``--num-processes``, ``--process-id``."""
  group = parser.add_argument_group(
    "several hosts (jax.distributed; run the same command on every host)"
  )
  group.add_argument(
    "--distributed",
    action="store_true",
    help="join the other hosts' processes; JAX finds them on a TPU pod"
    " slice, under SLURM (srun) or Open MPI (mpirun)",
  )
  group.add_argument(
    "--coordinator",
    type=_address,
    metavar="HOST:PORT",
    help="anywhere else: process 0's address and a free port, the same on"
    " every host (with --num-processes and --process-id)",
  )
  group.add_argument(
    "--num-processes",
    type=positive_int,
    metavar="N",
    help="with --coordinator: how many processes take part",
  )
  group.add_argument(
    "--process-id",
    type=_index,
    metavar="I",
    help="with --coordinator: this process's index, 0 to N-1",
  )
  group.add_argument(
    "--join-timeout",
    type=positive_int,
    metavar="SECONDS",
    help="how long to wait for the coordinator and the other processes to join (default: 300)",
  )


def requested(args: Any) -> bool:
  """Whether the command line asks to join several processes."""
  return bool(
    args.distributed
    or args.coordinator
    or args.num_processes is not None
    or args.process_id is not None
  )


def join(args: Any) -> None:
  """Joins the other processes (``jax.distributed.initialize``) if asked; before JAX starts.

  Raises:
    UsageError: an incomplete or inconsistent set of options, or a failed join.
  """
  if not requested(args):
    if getattr(args, "join_timeout", None) is not None:
      raise UsageError("--join-timeout applies with --distributed or --coordinator only")
    return
  _check_options(args)
  timeout = getattr(args, "join_timeout", None) or _launch.JOIN_TIMEOUT_S
  where = (
    f"at {args.coordinator} as process {args.process_id} of {args.num_processes}"
    if args.coordinator
    else "(JAX finds the cluster)"
  )
  if args.coordinator:
    try:
      _launch.check_coordinator(args.coordinator, args.process_id or 0)
    except ValueError as err:
      raise UsageError(str(err).rstrip(".")) from None
  # Joining waits for every process: say so, or a lone process looks hung.
  print(
    f"{PROG}: joining the other processes {where}; waiting up to {timeout} s for them",
    file=sys.stderr,
    flush=True,
  )
  deadline = time.monotonic() + timeout
  if args.coordinator and args.process_id != 0:
    _wait_for_coordinator(args.coordinator, timeout)
  try:
    _launch.initialize(
      args.coordinator,
      args.num_processes,
      args.process_id,
      join_timeout_seconds=max(1.0, deadline - time.monotonic()),
      # JAX's join ends in a C++ abort when it times out: the process ends with this first.
      timeout_line=f"{PROG}: error: could not join the other processes {where} within"
      f" {timeout:g} s: {_join_hint(args)}",
    )
  except (ValueError, RuntimeError) as err:
    raise UsageError(
      "could not join the other processes (jax.distributed.initialize):"
      f" {first_line(err)}"
      + (
        ""
        if args.coordinator
        else "; outside a TPU pod, SLURM or Open MPI, give"
        " --coordinator HOST:PORT --num-processes N --process-id I"
      )
    ) from None


def _check_options(args: Any) -> None:
  """The host options fit together (one line each where they do not)."""
  explicit = [args.coordinator, args.num_processes, args.process_id]
  if args.distributed and any(v is not None for v in explicit):
    raise UsageError(
      "--distributed lets JAX find the cluster; --coordinator, --num-processes"
      " and --process-id name it yourself: give one or the other, not both"
    )
  if any(v is not None for v in explicit) and any(v is None for v in explicit):
    raise UsageError(
      "--coordinator, --num-processes and --process-id go together; give all"
      " three, or --distributed alone to let JAX find the cluster"
    )
  if args.process_id is not None and args.process_id >= args.num_processes:
    raise UsageError(
      f"--process-id {args.process_id} is out of range for --num-processes"
      f" {args.num_processes} (0 to {args.num_processes - 1})"
    )


def _join_hint(args: Any) -> str:
  """What to do when the processes did not all join in time."""
  if not args.coordinator:
    return (
      "the processes JAX found did not all join; outside a TPU pod, SLURM or Open MPI, give"
      " --coordinator HOST:PORT --num-processes N --process-id I"
    )
  if args.process_id == 0:
    return (
      f"the other {args.num_processes - 1} process(es) did not all join; start each with the"
      " same --coordinator and --num-processes and its own --process-id, or wait longer"
      " with --join-timeout"
    )
  return (
    "the coordinator answered but the processes did not all join; start each with the same"
    " --coordinator and --num-processes and its own --process-id, or wait longer with"
    " --join-timeout"
  )


def _wait_for_coordinator(address: str, timeout: float) -> None:
  """Waits until process 0's coordinator accepts connections; a one-line error after ``timeout``.

  JAX itself would wait as long, then abort the process from C++ with a
  stack trace; a refused connection is retried, so the processes may start
  in any order.
  """
  host, port = _launch.split_address(address)
  deadline = time.monotonic() + timeout
  while True:
    try:
      with socket.create_connection((host, port), timeout=min(2.0, timeout)):
        return
    except OSError as err:
      if time.monotonic() >= deadline:
        raise UsageError(
          f"no coordinator answered at {address} within {timeout:g} s"
          f" ({err.strerror or type(err).__name__}); start process 0 (--process-id 0)"
          " with the same --coordinator, or wait longer with --join-timeout"
        ) from None
    time.sleep(0.5)
