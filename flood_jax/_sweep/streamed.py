"""The calls of a sweep on a :class:`~flood_jax._sweep.stream.Stream`: epochs read from the host.

The driver (:mod:`flood_jax._sweep.driver`) runs a streamed sweep with the loop it runs an
in-memory one with: segments of calls of chunks, the checkpoint between calls, the trackers
and the progress bar. Only a call differs: where the in-memory call runs its epochs on the
data already on the devices, :meth:`StreamCalls.run` reads each epoch's batches from the
stream, stacked into blocks (:func:`~flood_jax._sweep.stream.blocks`) and put on the devices
ahead of need (:func:`~flood_jax._sweep.stream.prefetched`), runs them through
:meth:`~flood_jax._sweep.compiled.StepProgram.steps` (the one step of
:mod:`flood_jax._sweep.program`), and evaluates the validation and test batches when the
schedule says. A call ends at an epoch's end, so a checkpoint is always at one: a resumed
sweep restarts the interrupted epoch from its first batch. JAX dispatches a step without
waiting for it, so the loop waits for the step :data:`~flood_jax._sweep.stream.AHEAD` blocks
back before sending another: the devices are never more than that behind the host, and the
batches in memory stay bounded however slow the devices are.

The history's ``train_loss`` of a streamed sweep is the mean, over the epoch's steps, of each
mini-batch's plain (unflooded) loss before its step, in training mode: a stream has no fixed
subsample to evaluate, and the number comes free with the step.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from flood_jax._sweep import hosts, memory
from flood_jax._sweep.compiled import AXIS, StepProgram, carry_structure
from flood_jax._sweep.metrics import reported
from flood_jax._sweep.program import Carry
from flood_jax._sweep.schedule import EvalPlan
from flood_jax._sweep.spec import TrainSpec
from flood_jax._sweep.stream import AHEAD, Stream, block_size, blocks, prefetched
from flood_jax._task import Classification


@dataclasses.dataclass
class StreamCalls:
  """The calls of one chunk's models on a stream (see the module's docstring)."""

  program: StepProgram
  stream: Stream
  plan: EvalPlan
  eval_test: bool = True

  def __post_init__(self):
    self.train = self.program.train
    self.mesh = self.program.mesh
    self.classes = num_classes(self.train)
    self.k = block_size(self.stream.first_batch)

  def run(self, carry: Carry, levels, seeds, first_epoch: int, length: int):
    """``length`` epochs from ``first_epoch``: ``(carry, metrics (models, length, columns))``."""
    rows = []
    for epoch in range(first_epoch, first_epoch + length):
      carry, row = self.epoch(carry, levels, seeds, epoch)
      rows.append(row)
    return carry, np.stack(rows, axis=1)

  def epoch(self, carry: Carry, levels, seeds, epoch: int) -> tuple[Carry, np.ndarray]:
    """One epoch of the stream's batches, then (if due) the evaluation: a history row."""
    parts = []
    step = 0
    put = lambda block: hosts.put(block, self.program.replicated)
    for (xs, ys), count in prefetched(blocks(self.stream.epoch(epoch, self.classes), self.k), put):
      if len(parts) > AHEAD:  # the devices at most AHEAD blocks behind: memory stays bounded
        jax.block_until_ready(parts[-AHEAD - 1][0])
      carry, flooded, losses = self.program.steps(carry, levels, seeds, xs, ys, count, epoch,
                                                  step)  # fmt: skip
      parts.append((flooded, losses, count))
      step += count
    flooded = np.concatenate([hosts.to_host(f)[:, :c] for f, _, c in parts], axis=1)
    losses = np.concatenate([hosts.to_host(x)[:, :c] for _, x, c in parts], axis=1)
    values: dict[str, np.ndarray] = {}
    if self.due(epoch):
      values["train_loss"] = losses.mean(axis=1)
      for split in ("val", "test") if self.eval_test else ("val",):
        values.update(self.evaluate(carry, split))
    num_models = flooded.shape[0]
    nan = np.full(num_models, np.nan, np.float32)
    row = [values.get(key, nan) for key in reported(self.train.task)]
    row.append(flooded.mean(axis=1))
    return carry, np.stack(row, axis=-1).astype(np.float32)

  def due(self, epoch: int) -> bool:
    """Whether the schedule evaluates after ``epoch`` (from 0)."""
    plan = self.plan
    return (epoch + 1) % plan.eval_every == 0 or epoch == plan.epochs - 1 or epoch + 1 in plan.rungs

  def evaluate(self, carry: Carry, split: str) -> dict[str, np.ndarray]:
    """Per model, the mean over ``split``'s examples of its loss and each task metric."""
    batches = self.stream.evaluation(split, self.classes)
    if batches is None:
      return {}
    means = evaluate_means(self.program, carry, batches)
    if means is None:
      return {}
    return {f"{split}_{name}": column for name, column in means.items()}


def num_classes(train: TrainSpec) -> int | None:
  """The logits a classifier outputs per example (None for another task or output)."""
  if not isinstance(train.task, Classification):
    return None

  def forward(x):
    params, model_state, rng_state = train.adapter.init(jax.random.key(0), x)
    return train.adapter.apply(params, model_state, rng_state, x, train=False, key=None)[0]

  outputs = jax.eval_shape(forward, train.inputs.batch(2))
  shape = getattr(outputs, "shape", ())
  return int(shape[-1]) if len(shape) == 2 else None


def evaluate_means(program: StepProgram, carry: Carry, batches) -> dict[str, np.ndarray] | None:
  """Per model, the means over ``batches``' examples of the loss and each task metric
  (``{"loss": (models,), "accuracy": ...}``), or None without an example.

  The sums stay on the devices until the end. Batches smaller than the largest seen so far are
  padded to it (and masked), so batches of two sizes (a short last one) compile one program.
  """
  names = ("loss", *program.train.task.metric_names)
  num_models = jax.tree.leaves(carry.params)[0].shape[0]
  sums = hosts.put(np.zeros((num_models, len(names)), np.float32), program.sharding)
  replicated = program.replicated
  size = 0
  count = 0
  for x, y in batches:
    n = y.shape[0]
    size = max(size, n)
    mask = np.arange(size) < n
    x, y = jax.tree.map(lambda a, extra=size - n: _pad(a, extra), (x, y))
    x, y, mask = hosts.put((x, y, mask), replicated)
    sums = program.evaluate(sums, carry, x, y, mask)
    count += n
  if count == 0:
    return None
  means = hosts.to_host(sums) / count
  return {name: means[:, i] for i, name in enumerate(names)}


def _pad(a: np.ndarray, extra: int) -> np.ndarray:
  """``a`` with ``extra`` copies of its last row (masked out by the caller)."""
  return np.concatenate([a, np.repeat(a[-1:], extra, axis=0)]) if extra else a


class StreamUsage:
  """``usage(k)``: XLA's memory analysis of a block of steps of ``k`` models on one device.

  What a streamed sweep holds per device: its chunk's carry, the block being trained on and the
  blocks in flight (:data:`~flood_jax._sweep.stream.AHEAD` of them), and the step's temporaries.
  The blocks in flight are not arguments of the program, so they are added to its peak.
  """

  def __init__(self, train: TrainSpec, stream: Stream, device: Any):
    self.train = train
    self.mesh = Mesh(np.asarray([device]), (AXIS,))
    self.first = stream.first_batch
    self.k = block_size(self.first)
    self.block_bytes = int(sum(self.k * np.asarray(a).nbytes for a in jax.tree.leaves(self.first)))
    self.compiled: dict[int, Any] = {}

  @property
  def in_flight_bytes(self) -> int:
    return AHEAD * self.block_bytes

  def __call__(self, k: int) -> memory.Usage:
    program = StepProgram(self.train, self.mesh, k)
    models = NamedSharding(self.mesh, P(AXIS))
    replicated = NamedSharding(self.mesh, P())

    def spec(shape, dtype, sharding=models):
      return jax.ShapeDtypeStruct(shape, dtype, sharding=sharding)

    carry = jax.tree.map(lambda a: spec((k, *a.shape), a.dtype), tuple(carry_structure(self.train)))
    xs, ys = jax.tree.map(lambda a: spec((self.k, *a.shape), a.dtype, replicated), self.first)
    with jax.threefry_partitionable(False):
      scalar = jax.ShapeDtypeStruct((), jnp.int32)
      lowered = program._steps.lower(
        carry, spec((k,), jnp.float32), spec((k,), jnp.int32), xs, ys, scalar, scalar, scalar
      )
    self.compiled[k] = lowered.compile()
    used = memory.usage(self.compiled[k])
    extra = self.in_flight_bytes
    return dataclasses.replace(used, arguments=used.arguments + extra)
