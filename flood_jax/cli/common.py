"""What the subcommands share: the program's name, the :class:`Command`
record, usage errors and one-line failures, JSON writing and the number of
XLA CPU devices (which must be set before JAX starts)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from flood_jax._checks import atomic_write
from flood_jax._checks import first_line as one_line  # noqa: F401 (the subcommands import it from here)

PROG = "flood-jax"
OUT_ROOT = "runs"  # where outputs go unless --out says otherwise


@dataclasses.dataclass(frozen=True)
class Command:
  """A subcommand: its help, how to add its arguments, and how to run it.

  Attributes:
    help: one line for ``flood-jax --help``.
    description: the subcommand's ``--help`` text.
    add_arguments: adds the subcommand's arguments to its parser.
    run: runs it on the parsed arguments and the raw argument list (to print
      a command line back, e.g. how to resume); returns the exit code.
  """

  help: str
  description: str
  add_arguments: Callable[[argparse.ArgumentParser], None]
  run: Callable[[argparse.Namespace, Sequence[str]], int]


class UsageError(Exception):
  """Bad input from the user: printed as one line, exit code 2."""


def fail(message: str) -> int:
  """Prints ``flood-jax: error: message`` to stderr; returns exit code 2."""
  print(f"{PROG}: error: {message}", file=sys.stderr)
  return 2


def write_json(path: str, value: Any) -> None:
  """Writes ``value`` to ``path`` as JSON, atomically (a temporary file, then a rename)."""
  with atomic_write(path) as f:
    json.dump(value, f, indent=1)


def add_compile_cache_arguments(group: Any) -> None:
  """``--compile-cache DIR`` and ``--no-compile-cache``."""
  group.add_argument(
    "--compile-cache",
    metavar="DIR",
    help="keep compiled programs here, so a repeated run skips compiling"
    " (default: $FLOOD_JAX_COMPILE_CACHE or ~/.cache/flood_jax/xla)",
  )
  group.add_argument(
    "--no-compile-cache", action="store_true", help="do not use JAX's persistent compilation cache"
  )


def use_compile_cache(args: Any) -> None:
  """Turns on JAX's persistent compilation cache unless ``--no-compile-cache``."""
  if getattr(args, "no_compile_cache", False):
    return
  from flood_jax._cache import enable_compile_cache

  try:
    enable_compile_cache(getattr(args, "compile_cache", None))
  except OSError as err:
    raise UsageError(f"--compile-cache: cannot use {err.filename}: {err.strerror}") from None


def request_cpu_devices(count: int) -> None:
  """Asks XLA for ``count`` CPU devices, if JAX has not started and the user chose none.

  Leaves alone an ``XLA_FLAGS`` that already sets the device count, a
  ``JAX_PLATFORMS`` naming another platform and a ``jax_num_cpu_devices``
  the user set; replaces the per-core count ``import flood_jax`` chose
  (:func:`flood_jax._devices.set_cpu_devices`).
  """
  from flood_jax import _devices

  _devices.set_cpu_devices(count)


def default_devices() -> int:
  """The CPU cores this process may use."""
  from flood_jax import _devices

  return _devices.cpu_cores()
