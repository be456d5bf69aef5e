"""When a sweep evaluates and returns to Python: :class:`EvalPlan`.

A sweep evaluates every ``eval_every`` epochs, after the last, and at a pruning policy's
rungs; it returns to Python (progress, checkpoint, trackers) every ``epochs_per_call`` epochs,
which divides the epochs and the rungs when chosen automatically, so one compiled program
serves every call.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from flood_jax._sweep.program import CallPlan


def auto_eval_every(num_eval: int, trained_per_epoch: int, epochs: int) -> int:
  """Epochs between evaluations so that evaluating costs about 10% of training.

  An evaluated example costs about a third of a trained one (a forward pass, against
  forward, backward and update), so evaluating ``num_eval`` examples every ``k`` epochs costs
  ``num_eval / (3 * k * trained_per_epoch)`` of training. ``k`` is the smallest that keeps
  this at 10%, but at most ``epochs // 5``, so a run is evaluated at least five times.
  """
  share = num_eval / (3 * max(trained_per_epoch, 1))
  return max(1, min(math.ceil(share / 0.1 - 1e-9), epochs // 5))


def evaluated_epochs(epochs: int, eval_every: int) -> np.ndarray:
  """Epochs (counted from 1) after which a sweep evaluates: every ``eval_every``-th and the last."""
  every = np.arange(eval_every, epochs + 1, eval_every)
  return np.unique(np.append(every, epochs)).astype(np.int64)


@dataclasses.dataclass(frozen=True)
class EvalPlan:
  """The sweep's schedule: evaluated epochs, rungs, and epochs per compiled call."""

  epochs: int
  eval_every: int
  eval_sizes: tuple[int, int, int]
  eval_batch_size: int
  rungs: tuple[int, ...]
  epochs_per_call: int
  chunk_size: int

  @classmethod
  def plan(
    cls,
    *,
    epochs: int,
    eval_every: int | None,
    eval_sizes: tuple[int, int, int],
    eval_batch_size: int,
    trained_per_epoch: int,
    rungs: tuple[int, ...],
    epochs_per_call: int | None,
    streamed: bool,
    chunk_size: int,
  ) -> EvalPlan:
    if eval_every is None:
      eval_every = auto_eval_every(sum(eval_sizes), trained_per_epoch, epochs)
    if epochs_per_call is None:
      # Results do not depend on it (tested); only the feedback does. A divisor of the
      # epochs, so every call runs the same program.
      target = math.ceil(epochs / 20) if streamed else epochs
      epochs_per_call = max(d for d in range(1, target + 1) if epochs % d == 0)
      # Calls end at the rungs: with a common divisor, one program serves all.
      epochs_per_call = math.gcd(epochs_per_call, *rungs)
    return cls(
      epochs=epochs,
      eval_every=eval_every,
      eval_sizes=eval_sizes,
      eval_batch_size=eval_batch_size,
      rungs=rungs,
      epochs_per_call=min(epochs_per_call, epochs),
      chunk_size=chunk_size,
    )

  @property
  def eval_epochs(self) -> np.ndarray:
    """The epochs (from 1) the history keeps: the evaluated ones and the rungs."""
    return np.union1d(evaluated_epochs(self.epochs, self.eval_every), self.rungs).astype(np.int64)

  @property
  def stops(self) -> tuple[int, ...]:
    """Where the segments of the run end: the rungs, then the last epoch."""
    return (*self.rungs, self.epochs)

  def call(self, length: int) -> CallPlan:
    """The shape of a compiled call of ``length`` epochs."""
    return CallPlan(
      epochs=self.epochs,
      epochs_per_call=length,
      eval_every=self.eval_every,
      eval_sizes=self.eval_sizes,
      eval_batch_size=self.eval_batch_size,
      chunk_size=self.chunk_size,
      also_evaluate=self.rungs,
    )

  def lengths(self, start: int, stop: int) -> list[int]:
    """The calls (their epochs) that take a chunk from epoch ``start`` to ``stop``."""
    out = []
    while start < stop:
      out.append(min(self.epochs_per_call, stop - start))
      start += out[-1]
    return out
