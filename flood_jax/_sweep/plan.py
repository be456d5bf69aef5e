"""The plan of a sweep: how many models each device trains per call, and the memory it takes.

:func:`make_plan` decides the chunk size (models per device per call) the
way :func:`flood_jax.sweep` runs it:

- ``chunk_size`` given: kept (checked against the memory limit, if there is one);
- a memory limit (``memory_limit=`` bytes, or on an accelerator the device's
  ``memory_stats()["bytes_limit"]`` less 10%): the most models per device
  whose compiled program fits it, from XLA's memory analysis
  (:mod:`flood_jax._sweep.memory`), evened out over the calls;
- on a CPU without a limit: the CPU preferences measured in
  ``benchmarks/sweep.py`` (:func:`flood_jax._sweep.layout.auto_chunk_size`),
  unchanged.

:class:`Plan` is what the public ``fj.plan`` (:func:`flood_jax._sweep.api.plan`) returns: the
same planning, without training.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from flood_jax._cache import register
from flood_jax._sweep import memory
from flood_jax._sweep.compiled import AXIS, Program
from flood_jax._sweep.memory import format_bytes


@dataclasses.dataclass(frozen=True)
class Plan:
  """How a sweep runs on its devices, and what it holds in memory on each.

  Attributes:
    chunk_size: models per device trained together (vmapped) in one call.
    num_devices: devices the sweep axis is sharded over.
    calls: compiled calls one after another (``ceil(models / (chunk_size * num_devices))``).
    num_models: models in the sweep (points of the grid).
    bytes_per_device: the planned peak bytes on each device during a call
      (XLA's memory analysis of the program that runs: data, models,
      temporaries); ``None`` when nothing was measured (``fj.sweep`` on a CPU
      without a limit measures nothing; ``fj.plan`` always measures).
    memory_limit: the bytes a device may hold that the plan was fitted to
      (``memory_limit=``, or the device's limit less a margin); ``None``
      without a limit (a CPU).
    platform: the devices' platform (``"cpu"``, ``"gpu"``, ``"tpu"``).
    chosen_by: ``"chunk_size"`` (given), ``"memory"`` (the most that fit) or
      ``"cpu"`` (the CPU's measured preferences; a device without a limit).
    parts: ``bytes_per_device`` by part: ``data`` (the training and
      evaluation arrays, one copy per device), ``models`` (the chunk's
      parameters, model and optimizer state: the carry), ``work``
      (temporaries: activations, gradients, evaluation batches; and outputs).
    per_model_bytes: the fitted bytes one more model per device adds.
    fixed_bytes: the fitted bytes of a chunk that do not grow with it.
    measured: XLA's peak bytes per chunk size it compiled, ``{k: bytes}``.
    seconds_per_epoch: the estimated wall time of one epoch of every model
      (all the calls, before any pruning), from one call's models timed for
      a few epochs (``fj.plan(..., timed=True)``); ``None`` if not timed.
    first_epoch_seconds: the timed run's wall time to the end of its first
      epoch: compiling included, about what a sweep's first call adds.
    epochs: the sweep's epochs (for the estimate of the whole run).
  """

  chunk_size: int
  num_devices: int
  calls: int
  num_models: int
  bytes_per_device: int | None = None
  memory_limit: int | None = None
  platform: str = "cpu"
  chosen_by: str = "cpu"
  parts: dict[str, int] = dataclasses.field(default_factory=dict, compare=False)
  per_model_bytes: int | None = dataclasses.field(default=None, compare=False)
  fixed_bytes: int | None = dataclasses.field(default=None, compare=False)
  measured: dict[int, int] = dataclasses.field(default_factory=dict, compare=False)
  seconds_per_epoch: float | None = dataclasses.field(default=None, compare=False)
  first_epoch_seconds: float | None = dataclasses.field(default=None, compare=False)
  epochs: int | None = dataclasses.field(default=None, compare=False)

  @property
  def models_per_call(self) -> int:
    """Models trained in one call, over all devices."""
    return self.chunk_size * self.num_devices

  def __str__(self) -> str:
    devices = f"{self.num_devices} {self.platform} device{'s' if self.num_devices != 1 else ''}"
    lines = [
      f"plan: {self.num_models} models on {devices}: {self.chunk_size} per device per call,"
      f" {self.models_per_call} per call, {self.calls} call{'s' if self.calls != 1 else ''}"
      f" (chunk size chosen by {_CHOSEN_BY[self.chosen_by]})"
    ]
    if self.bytes_per_device is None:
      lines.append("  memory per device: not measured")
    else:
      limit = (
        f" of {format_bytes(self.memory_limit)} allowed"
        if self.memory_limit is not None
        else " (no limit)"
      )
      lines.append(f"  memory per device: {format_bytes(self.bytes_per_device)} planned{limit}")
      for name, what in _PARTS.items():
        if name in self.parts:
          lines.append(f"    {name:<7}{format_bytes(self.parts[name]):>11}  {what}")
    if self.per_model_bytes is not None and self.fixed_bytes is not None:
      sizes = ", ".join(str(k) for k in sorted(self.measured))
      lines.append(
        f"  fit: {format_bytes(self.fixed_bytes)} + {format_bytes(self.per_model_bytes)}"
        f" per model (XLA's memory analysis at chunk sizes {sizes})"
      )
    if "batches" in self.parts:  # a stream: each call's models read it once per epoch
      lines.append(
        f"  stream: read {self.calls} time{'s' if self.calls != 1 else ''} per epoch, once"
        " per call (the models that fit the devices at once)"
      )
    if self.seconds_per_epoch is not None and self.first_epoch_seconds is not None:
      whole = ""
      if self.epochs is not None:
        total = self.first_epoch_seconds + self.seconds_per_epoch * self.epochs
        whole = f"; {self.epochs} epochs: about {_duration(total)} in all"
      lines.append(
        f"  time: about {_duration(self.seconds_per_epoch)} per epoch of all {self.num_models}"
        f" models, after {_duration(self.first_epoch_seconds)} to compile and run a first"
        f" epoch{whole} (one call's models timed on this machine)"
      )
    return "\n".join(lines)


def _duration(seconds: float) -> str:
  if seconds < 1:
    return f"{seconds * 1000:.0f} ms" if seconds < 0.1 else f"{seconds:.2f} s"
  if seconds < 120:
    return f"{seconds:.1f} s"
  return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


_CHOSEN_BY = {
  "chunk_size": "chunk_size=",
  "memory": "the memory limit",
  "cpu": "the CPU's measured preferences",
}
_PARTS = {
  "data": "training and evaluation data (one copy per device)",
  "batches": "a stream's blocks of batches in flight (ahead of the step)",
  "models": "parameters, model and optimizer state of the chunk",
  "work": "temporaries: activations, gradients, evaluation batches; outputs",
}


_USAGES: dict[Any, memory.Usage] = {}
_USAGES_SIZE = 64
register(_USAGES.clear)


class RunUsage:
  """``usage(k)``: XLA's memory analysis of a call of ``k`` models on one device.

  ``train`` is the sweep's :class:`~flood_jax._sweep.spec.TrainSpec`, ``call`` the
  :class:`~flood_jax._sweep.program.CallPlan` of its calls (its chunk size is replaced by
  ``k``), ``data`` the arrays the call reads (their shapes and dtypes are what counts). The
  program is lowered as the sweep lowers its own on a one-device mesh (every input's sharding
  included) and compiled, never run. Its usage is remembered, so ``fj.sweep`` after ``fj.plan``
  with the same arguments compiles nothing more for it; the executables this planning
  compiled are kept in :attr:`compiled` (by ``k``), so a one-device sweep can run the one it
  chose instead of compiling it again.
  """

  def __init__(self, train: Any, call: Any, device: Any, data: Any, num_seeds: int):
    self.train, self.call, self.num_seeds = train, call, num_seeds
    self.mesh = Mesh(np.asarray([device]), (AXIS,))
    replicated = NamedSharding(self.mesh, P())
    self.data = jax.tree.map(
      lambda a: jax.ShapeDtypeStruct(np.shape(a), a.dtype, sharding=replicated), tuple(data)
    )
    self.compiled: dict[int, Any] = {}
    try:
      self.key = (train, call, device, str(self.data), num_seeds)
      hash(self.key)
    except TypeError:
      self.key = None

  def __call__(self, k: int) -> memory.Usage:
    key = self.key
    if key is not None and (key, k) in _USAGES:
      return _USAGES[key, k]
    self.compiled[k] = self.lower(k).compile()
    used = memory.usage(self.compiled[k])
    if key is not None:
      if len(_USAGES) >= _USAGES_SIZE:
        _USAGES.pop(next(iter(_USAGES)))
      _USAGES[key, k] = used
    return used

  def lower(self, k: int) -> Any:
    """The training call of ``k`` models, lowered from abstract inputs."""
    program = Program(self.train, dataclasses.replace(self.call, chunk_size=k), self.mesh)
    models = NamedSharding(self.mesh, P(AXIS))
    spec = lambda shape, dtype: jax.ShapeDtypeStruct(shape, dtype, sharding=models)
    levels = spec((k,), jnp.float32)
    hparams = spec((k, len(self.train.hyperparams)), jnp.float32)
    slot_seeds = spec((1, min(k, self.num_seeds)), jnp.int32)
    model_slot = spec((k,), jnp.int32)
    data = self.data
    with jax.threefry_partitionable(False):
      shapes = jax.eval_shape(program._init, levels, hparams, slot_seeds, model_slot, data)
      carry = jax.tree.map(lambda a: spec(a.shape, a.dtype), shapes)
      first_epoch = jax.ShapeDtypeStruct((), jnp.int32)
      return program._run.lower(carry, levels, slot_seeds, model_slot, first_epoch, data)


def make_plan(
  measure_usage: Callable[[int], memory.Usage],
  *,
  num_models: int,
  num_devices: int,
  platform: str,
  preferred_chunk: int,
  chunk_size: int | None,
  memory_limit: int | None,
  device_limit: int | None,
  data_bytes: int,
  batch_size: int,
  eval_batch_size: int,
  measure: bool,
  data_part: str = "data",
) -> Plan:
  """The plan of a sweep, deciding its chunk size (see the module's docstring).

  Args:
    measure_usage: ``measure_usage(k)``, XLA's memory analysis of the
      program of ``k`` models on one device (:class:`RunUsage`); called only
      when a limit needs it or with ``measure``.
    num_models: models in the sweep.
    num_devices: devices the sweep axis is sharded over.
    platform: their platform.
    preferred_chunk: the chunk size without a memory limit (today's layout:
      the CPU's preferences, evened out over the calls).
    chunk_size: the user's ``chunk_size``, or ``None``.
    memory_limit: the user's ``memory_limit`` in bytes, or ``None``.
    device_limit: the device's usable bytes (:func:`memory.device_limit`), or ``None``.
    data_bytes: bytes of the data arrays on each device.
    batch_size, eval_batch_size: for the one-line error when a model does not fit.
    measure: measure the chosen chunk's bytes even without a limit (``fj.plan``).
  """
  limit = memory_limit if memory_limit is not None else device_limit
  per_device = math.ceil(num_models / num_devices)

  def refuse(one: memory.Usage, usable: int) -> ValueError:
    return ValueError(_too_big(one, usable, data_bytes, batch_size, eval_batch_size, memory_limit))

  fit: memory.Fit | None = None
  measured: dict[int, memory.Usage] = {}
  if chunk_size is not None:
    chosen_by, chunk = "chunk_size", chunk_size
    if limit is not None or measure:
      measured[chunk] = measure_usage(chunk)
      if limit is not None and measured[chunk].peak > limit:
        if chunk == 1:
          raise refuse(measured[1], limit)
        raise ValueError(
          f"chunk_size={chunk} needs {format_bytes(measured[chunk].peak)} per device but"
          f" {format_bytes(limit)} are allowed{_limit_source(memory_limit)}; use a"
          " smaller chunk_size, or leave it out to fit the most models per device."
        )
  elif limit is not None:
    choice = memory.choose_chunk(measure_usage, limit, per_device, refuse=refuse)
    chosen_by, chunk, measured = "memory", choice.chunk_size, choice.measured
    if len(measured) > 1:  # one point (all the models fit at once) makes no line
      fit = choice.fit
  else:
    chosen_by, chunk = "cpu", preferred_chunk
    if measure:
      measured[chunk] = measure_usage(chunk)
  calls = math.ceil(num_models / (chunk * num_devices))
  used = measured.get(chunk)
  parts: dict[str, int] = {}
  if used is not None:
    parts = {
      data_part: data_bytes,
      "models": max(used.arguments - data_bytes, 0),
      "work": used.temporaries + used.outputs - used.aliased,
    }
  return Plan(
    chunk_size=chunk,
    num_devices=num_devices,
    calls=calls,
    num_models=num_models,
    bytes_per_device=None if used is None else used.peak,
    memory_limit=limit,
    platform=platform,
    chosen_by=chosen_by,
    parts=parts,
    per_model_bytes=None if fit is None else math.ceil(fit.per_model),
    fixed_bytes=None if fit is None else math.ceil(fit.fixed),
    measured={k: u.peak for k, u in sorted(measured.items())},
  )


def _limit_source(memory_limit: int | None) -> str:
  if memory_limit is None:
    return " (the device's memory less 10%)"
  return f" (memory_limit={memory_limit})"


def _too_big(
  one: memory.Usage,
  usable: int,
  data_bytes: int,
  batch_size: int,
  eval_batch_size: int,
  memory_limit: int | None,
) -> str:
  models = max(one.arguments - data_bytes, 0)
  work = one.temporaries + one.outputs - one.aliased
  return (
    f"one model does not fit on a device: it needs {format_bytes(one.peak)} per device"
    f" (data {format_bytes(data_bytes)}, model state {format_bytes(models)}, work"
    f" {format_bytes(work)} at batch_size={batch_size}, eval_batch_size={eval_batch_size})"
    f" and {format_bytes(usable)} are available{_limit_source(memory_limit)}; use a smaller"
    " batch_size or eval_batch_size, fewer models per call (chunk_size=1), a smaller"
    " train_eval_size or model, or a device with more memory."
  )


def data_nbytes(arrays: Sequence[Any]) -> int:
  """Bytes of the arrays one device holds (each a full copy)."""
  return int(sum(np.prod(np.shape(a)) * np.dtype(a.dtype).itemsize for a in arrays))
