"""Successive halving inside a sweep: rungs, survivors, and re-packing them into fewer chunks.

Every model of a sweep runs in lockstep, so successive halving (Jamieson and
Talwalkar, 2016) needs no scheduler: the driver runs every chunk up to a rung,
this module ranks the configurations there and keeps the best ``1/factor``,
and the survivors' carries are gathered and packed into fewer chunks of the
same ``chunk_size``, so the later epochs cost less. A model's arithmetic does
not depend on where in a chunk it sits or on what else is there (the engine's
contract for a fixed ``chunk_size``), so a survivor ends bitwise where it
would have ended in the unpruned sweep.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from flood_jax._result import METRICS
from flood_jax._sweep import checkpoint
from flood_jax._sweep.grid import Grid
from flood_jax._sweep.layout import seed_slots

_VAL_LOSS, _VAL_ACCURACY = METRICS.index("val_loss"), METRICS.index("val_accuracy")


@dataclasses.dataclass(frozen=True)
class Halving:
  r"""Successive halving of a sweep's configurations, for ``fj.sweep(..., prune=...)``.

  Rungs fall after :math:`r_k = m \cdot \eta^k` epochs (``m = min_epochs``,
  :math:`\eta` = ``factor``, :math:`k = 0, 1, \dots`, while :math:`r_k <`
  ``epochs``). At a rung, each configuration still training (a flood level
  with one value of each hyperparameter; its seeds are kept or dropped
  together) is scored by its mean validation accuracy over seeds at that
  epoch, and the best :math:`\lceil n / \eta \rceil` of the :math:`n` are
  kept (at least one; a configuration with a non-finite validation loss
  scores lowest; ties go to the first in the grid's order). The rest stop
  training there. With :math:`n_0 = C` configurations, :math:`n_{k+1} =
  \lceil n_k / \eta \rceil` and :math:`S` seeds, the sweep trains

  .. math:: S \sum_k n_k (r_k - r_{k-1}), \quad r_{-1} = 0,

  model-epochs (the last :math:`r` being ``epochs``) instead of :math:`S C
  \cdot` ``epochs``: 11 levels for 100 epochs with ``Halving(10)`` train
  :math:`11 \cdot 10 + 4 \cdot 20 + 2 \cdot 60 + 1 \cdot 10 = 320` of 1,100
  epochs per seed (29%). The ranking reads one epoch's validation accuracy,
  so a small validation set makes it noisy: choose ``min_epochs`` where the
  levels have parted (``benchmarks/RESULTS.md`` measures how often it
  changes the chosen level).

  Args:
    min_epochs: epochs before the first rung, a positive integer below the
      sweep's ``epochs``.
    factor: the survivors' share at each rung is ``1/factor``; an integer
      >= 2.

  Examples:
    >>> import flood_jax as fj
    >>> fj.Halving(min_epochs=10, factor=3).rungs(epochs=100)
    (10, 30, 90)

  References:
    Jamieson and Talwalkar, `Non-stochastic Best Arm Identification and
    Hyperparameter Optimization <https://arxiv.org/abs/1502.07943>`_,
    AISTATS 2016.

    Li et al., `A System for Massively Parallel Hyperparameter Tuning
    <https://arxiv.org/abs/1810.05934>`_ (ASHA), MLSys 2020.
  """

  min_epochs: int
  factor: int = 3

  def __post_init__(self):
    for name, value, low in [("min_epochs", self.min_epochs, 1), ("factor", self.factor, 2)]:
      if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(
          f"Halving {name} must be an integer >= {low}, got {value!r}; e.g."
          " fj.Halving(min_epochs=10, factor=3)."
        )

  def rungs(self, epochs: int) -> tuple[int, ...]:
    """The epochs (from 1) that end a rung: ``min_epochs * factor**k``, below ``epochs``."""
    out = []
    rung = int(self.min_epochs)
    while rung < epochs:
      out.append(rung)
      rung *= int(self.factor)
    return tuple(out)

  def check(self, epochs: int) -> tuple[int, ...]:
    """The rungs of a sweep of ``epochs`` epochs; a one-line error if there are none."""
    rungs = self.rungs(epochs)
    if not rungs:
      raise ValueError(
        f"prune=Halving(min_epochs={self.min_epochs}) never prunes a sweep of"
        f" {epochs} epochs; use min_epochs < {epochs} (e.g. {max(1, epochs // 9)})."
      )
    return rungs

  def survivors_per_rung(self, num_configs: int, epochs: int) -> list[int]:
    """Configurations still training after each rung, ``[len(rungs)]``."""
    out, n = [], num_configs
    for _ in self.rungs(epochs):
      n = max(1, math.ceil(n / self.factor))
      out.append(n)
    return out


def select(scores: np.ndarray, factor: int) -> np.ndarray:
  """Indices (sorted) of the ``ceil(n / factor)`` best ``scores``.

  Higher is better, NaN lowest, ties go to the first.
  """
  keep = max(1, math.ceil(len(scores) / factor))
  ranked = np.argsort(-np.nan_to_num(scores, nan=-np.inf), kind="stable")
  return np.sort(ranked[:keep])


def config_scores(
  history: np.ndarray, alive_configs: np.ndarray, num_configs: int, num_seeds: int, epoch: int
) -> np.ndarray:
  """Mean validation accuracy over seeds at ``epoch`` (from 1) of each alive configuration.

  ``history`` is ``(models, epochs, metrics)`` in the grid's seed-major flat
  order. A configuration with a seed whose validation loss is not finite
  scores NaN.
  """
  rows = alive_configs[None, :] + num_configs * np.arange(num_seeds)[:, None]  # (seeds, n)
  at = history[rows, epoch - 1]
  acc = np.where(np.isfinite(at[..., _VAL_LOSS]), at[..., _VAL_ACCURACY], np.nan)
  return acc.mean(axis=0)


def run_pruned(
  halving: Halving,
  *,
  grid: Grid,
  program_for: Callable[[int], Any],
  mesh: Mesh,
  data: Any,
  num_devices: int,
  chunk_size: int,
  epochs: int,
  epochs_per_call: int,
  store: checkpoint.CheckpointStore | None,
  bar: Any,
  tracking: Any = None,
) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
  """Trains the sweep segment by segment, pruning at every rung.

  Between rungs, every alive model runs in calls of ``chunk_size`` models per
  device (padded with copies of the last), each model's carry kept on the
  host between segments. At a rung the survivors are re-packed in the grid's
  flat order, so fewer calls run.

  Returns:
    ``history`` ``(models, epochs, metrics)`` (NaN after a model's rung),
    the leaves of ``(params, model state)`` stacked over models (a pruned
    model's at its rung), and ``pruned_at`` ``(configs,)``: the epoch a
    configuration was pruned after, 0 if it trained to the end.
  """
  num_configs, num_seeds = grid.num_configs, len(grid.seeds)
  flat_levels, flat_hparams, flat_seeds = grid.flat()
  group = chunk_size * num_devices
  sharded = NamedSharding(mesh, P("models"))
  structure = program_for(epochs_per_call).carry_structure
  like = jax.tree.leaves(structure)
  stops = [*halving.rungs(epochs), epochs]

  history = np.full((grid.num_models, epochs, len(METRICS)), np.nan, np.float32)
  pruned_at = np.zeros(num_configs, np.int64)
  alive_configs = np.arange(num_configs)
  leaves: list[np.ndarray] | None = None  # per carry leaf, (models, ...) on the host
  segment, call_start = 0, 0
  saved = store.load_tree("halving") if store is not None else None
  if saved is not None:
    segment, call_start = int(saved["segment"]), int(saved["call"])
    history, pruned_at = np.asarray(saved["history"]), np.asarray(saved["pruned_at"])
    alive_configs = np.asarray(saved["alive"]).astype(np.int64)
    if "leaves" in saved:
      leaves = [np.asarray(x) for x in checkpoint._tree_to_leaves(saved["leaves"])]
    if tracking is not None:  # what a new logger has not seen
      tracking.log(np.arange(grid.num_models), 0, history)
    for s in range(segment):  # the progress already made
      alive = _num_alive(halving, num_configs, epochs, s) * num_seeds
      bar.update(math.ceil(alive / group) * (stops[s] - (stops[s - 1] if s else 0)))

  def save(segment: int, call: int) -> None:
    assert store is not None
    tree = {
      "segment": np.asarray(segment, np.int32),
      "call": np.asarray(call, np.int32),
      "history": history,
      "pruned_at": pruned_at,
      "alive": alive_configs,
    }
    if leaves is not None:
      tree["leaves"] = {str(i): x for i, x in enumerate(leaves)}
    store.save_tree("halving", tree)

  while segment < len(stops):
    first = stops[segment - 1] if segment else 0
    stop = stops[segment]
    models = (alive_configs[None, :] + num_configs * np.arange(num_seeds)[:, None]).ravel()
    num_calls = math.ceil(len(models) / group)
    if call_start:
      bar.update(call_start * (stop - first))
    for call in range(call_start, num_calls):
      index = models[call * group : (call + 1) * group]
      index = np.concatenate([index, np.full(group - len(index), index[-1])])
      slot_seeds, model_slot = seed_slots(flat_seeds[index], num_devices)
      levels, hparams, slot_seeds, model_slot = jax.device_put(
        (flat_levels[index], flat_hparams[index], slot_seeds, model_slot), sharded
      )
      program = program_for(epochs_per_call)
      if first == 0:
        carry = program.init(levels, hparams, slot_seeds, model_slot, data)
      else:
        assert leaves is not None  # the first segment filled them
        carry = jax.tree.unflatten(
          jax.tree.structure(structure),
          checkpoint._tree_to_leaves({str(i): x[index] for i, x in enumerate(leaves)}, like),
        )
        carry = jax.device_put(carry, sharded)
      epoch = first
      while epoch < stop:
        length = min(epochs_per_call, stop - epoch)
        carry, metrics = program_for(length).run(
          carry, levels, slot_seeds, model_slot, np.int32(epoch), data
        )
        metrics = np.asarray(metrics)[: len(models) - call * group]
        real = index[: len(metrics)]
        history[real, epoch : epoch + length] = metrics
        if tracking is not None:
          tracking.log(real, epoch, metrics)
        epoch += length
        bar.update(length)
      real = index[: min(group, len(models) - call * group)]
      done = [np.asarray(checkpoint.raw_key_data(x)) for x in jax.tree.leaves(carry)]
      if leaves is None:
        leaves = [np.zeros((grid.num_models, *x.shape[1:]), x.dtype) for x in done]
      for stacked, x in zip(leaves, done, strict=True):
        stacked[real] = x[: len(real)]
      if store is not None and call + 1 < num_calls and store.due():
        save(segment, call + 1)
    call_start = 0
    if stop < epochs:
      scores = config_scores(history, alive_configs, num_configs, num_seeds, stop)
      kept = alive_configs[select(scores, halving.factor)]
      pruned_at[np.setdiff1d(alive_configs, kept)] = stop
      alive_configs = kept
    segment += 1
    if store is not None:
      save(segment, 0)
  # The result keeps (params, model state): the first two parts of the carry.
  num_kept = len(jax.tree.leaves(structure[:2]))
  assert leaves is not None
  return history, leaves[:num_kept], pruned_at


def _num_alive(halving: Halving, num_configs: int, epochs: int, segment: int) -> int:
  return [num_configs, *halving.survivors_per_rung(num_configs, epochs)][segment]
