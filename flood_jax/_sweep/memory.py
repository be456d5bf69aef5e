"""What a chunk of models needs in device memory, from XLA's own analysis.

Nothing here runs a model. A program for a chunk of ``k`` models per device
is lowered and compiled (not called), and XLA's buffer assignment says how
many bytes it holds at once: its arguments (the data and the models'
carry), its outputs, less the outputs written into donated arguments, and
its temporaries (activations, gradients, the evaluation batches)::

  peak(k) = arguments + outputs - aliased + temporaries

The chunk of all the models a device has to train is compiled first; if it
fits, that is the plan (one compilation). If not, a chunk of 2 is compiled
too, ``peak(k) = fixed + per_model * k`` is fitted through the two (a line on
or above every measured point), the largest ``k`` whose peak fits the usable
bytes is taken (evened out over the calls), and that ``k`` is compiled once
more to check it (if XLA says it does not fit, the line is refitted through
it too and ``k`` lowered).

The functions take explicit inputs (a ``measure(k)`` callable, the usable
bytes, the most models per device) so that any driver can call them.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable
from typing import Any

# Kept free on a device that reports its memory: XLA's allocator, cuDNN/cuBLAS
# workspaces and fragmentation need room beyond the buffers XLA plans.
DEVICE_MARGIN = 0.1
# The chunk size measured besides the largest (a chunk of one compiles an
# unbatched program, so the line is fitted on batched ones).
PROBES = (2,)


@dataclasses.dataclass(frozen=True)
class Usage:
  """XLA's memory analysis of one compiled program on one device, in bytes."""

  arguments: int
  outputs: int
  aliased: int
  temporaries: int

  @property
  def peak(self) -> int:
    """Bytes held at once: arguments, outputs not written into donated arguments, temporaries."""
    return self.arguments + self.outputs - self.aliased + self.temporaries


def usage(compiled: Any) -> Usage:
  """The :class:`Usage` of a ``jax.stages.Compiled`` (``jit(f).lower(...).compile()``)."""
  analysis = compiled.memory_analysis()
  if analysis is None:
    raise ValueError(
      "XLA gives no memory analysis on this platform; pass chunk_size= to choose the"
      " models per device yourself."
    )
  return Usage(
    arguments=int(analysis.argument_size_in_bytes),
    outputs=int(analysis.output_size_in_bytes),
    aliased=int(analysis.alias_size_in_bytes),
    temporaries=int(analysis.temp_size_in_bytes),
  )


@dataclasses.dataclass(frozen=True)
class Fit:
  """``peak(k) = fixed + per_model * k`` bytes, on or above every measured point."""

  fixed: float
  per_model: float

  def __call__(self, k: int) -> int:
    return math.ceil(self.fixed + self.per_model * k)

  def largest(self, usable: int, cap: int) -> int:
    """The largest ``k <= cap`` whose predicted peak fits ``usable`` bytes (0 if none)."""
    if self.per_model <= 0:
      return cap if self(1) <= usable else 0
    return max(0, min(cap, math.floor((usable - self.fixed) / self.per_model)))

  @classmethod
  def through(cls, peaks: dict[int, int]) -> Fit:
    """The least-squares slope over the measured chunk sizes, raised to lie above them all.

    Chunks of one are left out of the slope when there are batched ones (the
    unbatched program is smaller, not on the line).
    """
    batched = {k: v for k, v in peaks.items() if k > 1} or peaks
    ks = list(batched)
    if len(ks) == 1:
      # One point: all of it is counted per model (an upper bound for k >= that point).
      (k,) = ks
      return cls(0.0, batched[k] / k)
    mean_k = sum(ks) / len(ks)
    mean_v = sum(batched.values()) / len(ks)
    slope = sum((k - mean_k) * (batched[k] - mean_v) for k in ks) / sum(
      (k - mean_k) ** 2 for k in ks
    )
    slope = max(slope, 0.0)
    fixed = max(v - slope * k for k, v in batched.items())
    return cls(fixed, slope)


@dataclasses.dataclass(frozen=True)
class Choice:
  """The models per device chosen, and what XLA said about the chunk sizes it compiled."""

  chunk_size: int
  fit: Fit
  measured: dict[int, Usage]


def even_chunk(per_device: int, most: int) -> int:
  """At most ``most`` models per call, evened out over the calls ``per_device`` needs.

  12 models per device with ``most = 8``: two calls of 6, not 8 + 4 (and padding).
  """
  calls = math.ceil(per_device / min(most, per_device))
  return math.ceil(per_device / calls)


def choose_chunk(
  measure: Callable[[int], Usage],
  usable: int,
  per_device: int,
  *,
  refuse: Callable[[Usage, int], Exception],
  probes: tuple[int, ...] = PROBES,
) -> Choice:
  """The most models per device (evened out over calls) whose program fits ``usable`` bytes.

  Args:
    measure: ``measure(k)`` is the :class:`Usage` of the program of a chunk
      of ``k`` models on one device (e.g. ``usage(jax.jit(f).lower(...).compile())``:
      compiled, not run).
    usable: the bytes a device may hold.
    per_device: the models each device has to train (the largest chunk worth having).
    refuse: builds the error raised when one model does not fit, from its
      usage and ``usable``.
    probes: the chunk sizes measured when the largest does not fit.

  Returns:
    A :class:`Choice`; its ``measured`` holds the chosen chunk size's usage.
  """
  measured: dict[int, Usage] = {}

  def once(k: int) -> Usage:
    if k not in measured:
      measured[k] = measure(k)
    return measured[k]

  if once(per_device).peak <= usable:  # all of them at once: one compilation
    return Choice(per_device, Fit.through({per_device: measured[per_device].peak}), measured)
  for k in probes:
    once(min(k, per_device))
  cap = per_device - 1
  while True:
    fit = Fit.through({k: u.peak for k, u in measured.items()})
    most = fit.largest(usable, cap)
    if most < 1:
      if once(1).peak > usable:
        raise refuse(measured[1], usable)
      return Choice(1, fit, dict(measured))
    chunk = even_chunk(per_device, most)
    if once(chunk).peak <= usable:
      return Choice(chunk, fit, dict(measured))
    # XLA needs more than the line said at this size: the next fit goes
    # through this point too, and the chunk gets smaller.
    cap = chunk - 1


def device_limit(device: Any) -> int | None:
  """The bytes a device may hold for a sweep: its reported limit less a margin (None if unknown)."""
  try:
    stats = device.memory_stats()
  except Exception:  # some platforms raise instead of returning None
    return None
  if not stats or "bytes_limit" not in stats:
    return None
  return int(stats["bytes_limit"] * (1 - DEVICE_MARGIN))


_UNITS = {
  "": 1,
  "B": 1,
  "KB": 10**3,
  "MB": 10**6,
  "GB": 10**9,
  "TB": 10**12,
  "KIB": 2**10,
  "MIB": 2**20,
  "GIB": 2**30,
  "TIB": 2**40,
}


def parse_bytes(value: Any, name: str = "memory_limit") -> int:
  """Bytes from an integer or a string such as ``"16GB"`` (10**9) or ``"8GiB"`` (2**30)."""
  if isinstance(value, str):
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][0-9]+)?)\s*([A-Za-z]*)\s*", value)
    unit = match.group(2).upper() if match else ""
    if match is None or unit not in _UNITS:
      raise ValueError(
        f"{name} must be a number of bytes such as 16GB, 8GiB or 500MB, got {value!r}."
      )
    number = float(match.group(1)) * _UNITS[unit]
  elif isinstance(value, bool) or not isinstance(value, (int, float)):
    raise TypeError(f"{name} must be a number of bytes (e.g. 16 * 2**30), got {value!r}.")
  else:
    number = float(value)
  if not math.isfinite(number) or number < 1:
    raise ValueError(f"{name} must be a positive number of bytes, got {value!r}.")
  return int(number)


def format_bytes(n: float) -> str:
  """``n`` bytes in the largest binary unit that keeps the number at least 1, e.g. ``1.5 GiB``."""
  for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
    if abs(n) >= size:
      return f"{n / size:.3g} {unit}" if n / size < 100 else f"{n / size:.0f} {unit}"
  return f"{int(n)} B"
