"""Pruning policies: which configurations train on at each rung (Optuna's pruners' shape).

A :class:`Policy` names its rungs and, at each, the configurations that survive; the driver
runs one loop for every policy (:class:`NoPruning`, the default, has no rungs).

Every model of a sweep runs in lockstep, so successive halving (Jamieson and
Talwalkar, 2016) needs no scheduler: the driver runs every chunk up to a rung,
:class:`Halving` ranks the configurations there and keeps the best ``1/factor``,
and the survivors' carries are gathered and packed into fewer chunks of the
same ``chunk_size``, so the later epochs cost less. A model's arithmetic does
not depend on where in a chunk it sits or on what else is there (the engine's
contract for a fixed ``chunk_size``), so a survivor ends bitwise where it
would have ended in the unpruned sweep.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Protocol

import numpy as np

from flood_jax._checks import is_integer
from flood_jax._sweep.metrics import column
from flood_jax._task import Classification, Task

# How a configuration is ranked at a rung: its validation accuracy there (a task's selection
# metric, e.g. the validation loss of a regression, lower better), or a forecast of it.
SCORES = ("accuracy", "trend")


class Policy(Protocol):
  """Which configurations train on: rungs, and the survivors at each."""

  def rungs(self, epochs: int) -> tuple[int, ...]:
    """The epochs (from 1) after which :meth:`survivors` is asked."""
    ...

  def survivors_per_rung(self, num_configs: int, epochs: int) -> list[int]:
    """Configurations still training after each rung, if no two tie."""
    ...

  def survivors(
    self,
    history: np.ndarray,
    alive: np.ndarray,
    grid: Any,
    epoch: int,
    epochs: int,
    task: Task | None = None,
  ) -> np.ndarray:
    """The configurations of ``alive`` (sorted flat indices) that train on after ``epoch``.

    ``history`` is ``(models, epochs, metrics)`` in the grid's seed-major flat order, its
    metrics the ``task``'s history keys (``None``: classification's).
    """
    ...

  def record(self) -> dict[str, Any] | None:
    """The policy's settings for the sweep's record (``None``: nothing to record)."""
    ...


@dataclasses.dataclass(frozen=True)
class NoPruning:
  """The default policy: no rungs, every configuration trains to the end."""

  def rungs(self, epochs: int) -> tuple[int, ...]:
    del epochs
    return ()

  def survivors(self, history, alive, grid, epoch, epochs, task=None):
    del history, grid, epoch, epochs, task
    return alive

  def record(self) -> None:
    return None

  def survivors_per_rung(self, num_configs: int, epochs: int) -> list[int]:
    del num_configs, epochs
    return []


def check_policy(prune: Any, epochs: int, multi_process: bool = False) -> Policy:
  """``fj.sweep``'s ``prune=`` as a policy; one-line errors on bad input."""
  del multi_process  # every process ranks the same gathered history
  if prune is None:
    return NoPruning()
  if not isinstance(prune, Halving):
    raise TypeError(
      f"prune must be fj.Halving(min_epochs=..., factor=...), got {type(prune).__name__}."
    )
  prune.check(epochs)
  return prune


@dataclasses.dataclass(frozen=True)
class Halving:
  r"""Successive halving of a sweep's configurations, for ``fj.sweep(..., prune=...)``.

  Rungs fall after :math:`r_k = m \cdot \eta^k` epochs (``m = min_epochs``,
  :math:`\eta` = ``factor``, :math:`k = 0, 1, \dots`, while :math:`r_k <`
  ``epochs``). At a rung, each configuration still training (a flood level
  with one value of each hyperparameter; its seeds are kept or dropped
  together) is scored by its mean validation accuracy over seeds at that
  epoch (the task's selection metric, oriented by its ``mode``: a
  regression's lowest validation loss is best), and the best
  :math:`\lceil n / \eta \rceil` of the :math:`n` are kept (at least one; a
  configuration with a non-finite validation loss scores lowest; ties are
  kept together, see below). The rest stop training there. With
  :math:`n_0 = C` configurations, :math:`n_{k+1} = \lceil n_k / \eta \rceil` and
  :math:`S` seeds, the sweep trains

  .. math:: S \sum_k n_k (r_k - r_{k-1}), \quad r_{-1} = 0,

  model-epochs (the last :math:`r` being ``epochs``) instead of :math:`S C
  \cdot` ``epochs``: 11 levels for 100 epochs with ``Halving(10)`` train
  :math:`11 \cdot 10 + 4 \cdot 20 + 2 \cdot 60 + 1 \cdot 10 = 320` of 1,100
  epochs per seed (29%). Configurations that score exactly alike at a rung
  (e.g. levels the loss has not reached yet, which are bitwise ``b = 0``
  until then) are kept or cut together, so a rung can keep more than
  :math:`\lceil n / \eta \rceil`. The ranking reads one epoch's validation accuracy,
  so a small validation set makes it noisy: choose ``min_epochs`` where the
  levels have parted (``benchmarks/RESULTS.md`` measures how often it
  changes the chosen level).

  Flooding helps late (the test loss turns down again after the plain
  model's has risen), so a level that is still improving at a rung is cut
  by the plain score while it would win at the end. ``score="trend"`` ranks
  by a forecast instead: per seed, the least-squares line through the
  validation accuracies evaluated in :math:`(r_k / 2, r_k]`, read at the
  sweep's last epoch :math:`E`,

  .. math:: \hat a(E) = \bar a + \hat\beta\,(E - \bar t), \quad
     \hat\beta = \frac{\sum_j (t_j - \bar t)(a_j - \bar a)}{\sum_j (t_j - \bar t)^2},

  averaged over seeds (a single evaluation there: its accuracy). On the 18
  settings of the synthetic reproduction, ``Halving(12, 2, score="trend")``
  kept the unpruned choice (or one within its seed spread) in 15 of 18 at
  40% of the model-epochs; the plain score at ``Halving(10, 3)``, 14 of 18
  (``benchmarks/RESULTS.md``, section 7).

  Args:
    min_epochs: epochs before the first rung, a positive integer below the
      sweep's ``epochs``.
    factor: the survivors' share at each rung is ``1/factor``; an integer
      >= 2.
    score: ``"accuracy"`` (mean validation accuracy over seeds at the rung;
      for another task its selection metric) or ``"trend"`` (its forecast at
      the last epoch, see above).

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
  score: str = "accuracy"

  def __post_init__(self):
    for name, value, low in [("min_epochs", self.min_epochs, 1), ("factor", self.factor, 2)]:
      if not is_integer(value) or value < low:
        raise ValueError(
          f"Halving {name} must be an integer >= {low}, got {value!r}; e.g."
          " fj.Halving(min_epochs=10, factor=3)."
        )
    if self.score not in SCORES:
      raise ValueError(
        f"Halving score must be one of {SCORES}, got {self.score!r}; e.g."
        ' fj.Halving(min_epochs=12, factor=2, score="trend").'
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

  def survivors(
    self,
    history: np.ndarray,
    alive: np.ndarray,
    grid: Any,
    epoch: int,
    epochs: int,
    task: Task | None = None,
  ) -> np.ndarray:
    """The best ``ceil(n / factor)`` of the ``n`` alive configurations at ``epoch`` (ties kept)."""
    if epoch >= epochs:
      return alive
    scores = config_scores(
      history, alive, grid.num_configs, len(grid.seeds), epoch, self.score, epochs, task
    )
    return alive[select(scores, self.factor)]

  def record(self) -> dict[str, Any]:
    pruning: dict[str, Any] = {"min_epochs": int(self.min_epochs), "factor": int(self.factor)}
    if self.score != "accuracy":  # (absent for the plain score: older records match)
      pruning["score"] = self.score
    return pruning

  def survivors_per_rung(self, num_configs: int, epochs: int) -> list[int]:
    """Configurations still training after each rung, ``[len(rungs)]``."""
    out, n = [], num_configs
    for _ in self.rungs(epochs):
      n = max(1, math.ceil(n / self.factor))
      out.append(n)
    return out


def select(scores: np.ndarray, factor: int) -> np.ndarray:
  """Indices (sorted) of the ``ceil(n / factor)`` best ``scores``, ties kept together.

  Higher is better, NaN lowest. Configurations that score exactly the same as
  the last one kept are kept too (so identical configurations, e.g. levels
  that have not flooded yet, are never split by their order in the grid); the
  survivors can then be more than ``ceil(n / factor)``. If every score is
  NaN, the first ``ceil(n / factor)`` are kept.

  Examples:
    >>> import numpy as np
    >>> from flood_jax._sweep.prune import select
    >>> select(np.array([0.5, 0.9, 0.7, 0.7]), factor=3)  # keep 2; 0.7 ties
    array([1, 2, 3])
  """
  keep = max(1, math.ceil(len(scores) / factor))
  filled = np.nan_to_num(np.asarray(scores, np.float64), nan=-np.inf)
  ranked = np.argsort(-filled, kind="stable")
  threshold = filled[ranked[keep - 1]]
  if np.isneginf(threshold):
    return np.sort(ranked[:keep])
  return np.flatnonzero(filled >= threshold)


def config_scores(
  history: np.ndarray,
  alive_configs: np.ndarray,
  num_configs: int,
  num_seeds: int,
  epoch: int,
  score: str = "accuracy",
  last_epoch: int | None = None,
  task: Task | None = None,
) -> np.ndarray:
  """Each alive configuration's score at ``epoch`` (from 1): higher is better.

  ``history`` is ``(models, epochs, metrics)`` in the grid's seed-major flat
  order (NaN where an epoch was not evaluated), its metrics the ``task``'s
  history keys (``None``: classification's). ``score="accuracy"``: mean over
  seeds of the task's selection metric at ``epoch`` (classification: the
  validation accuracy), negated when lower is better (``mode="min"``);
  ``"trend"``: likewise of :func:`trend_forecast` at ``last_epoch``. A
  configuration with a seed whose validation loss is not finite at ``epoch``
  scores NaN.
  """
  task = Classification() if task is None else task
  val_loss, selected = column(task, "val_loss"), column(task, task.selection_key)
  rows = alive_configs[None, :] + num_configs * np.arange(num_seeds)[:, None]  # (seeds, n)
  at = history[rows, epoch - 1]
  ok = np.isfinite(at[..., val_loss])
  if score == "trend":
    assert last_epoch is not None
    acc = history[rows, :epoch, selected]  # (seeds, n, epoch)
    evaluated = np.flatnonzero(np.isfinite(acc).any(axis=(0, 1))) + 1
    value = trend_forecast(acc[..., evaluated - 1], evaluated, epoch, last_epoch)
  else:
    value = at[..., selected]
  if task.mode == "min":  # higher is better here
    value = -value
  return np.where(ok, value, np.nan).mean(axis=0)


def trend_forecast(acc: np.ndarray, epochs: np.ndarray, rung: int, last_epoch: int) -> np.ndarray:
  """Per series: the least-squares line through ``acc`` in ``(rung/2, rung]``, at ``last_epoch``.

  Args:
    acc: ``(..., evaluations)`` validation accuracies at ``epochs``.
    epochs: ``(evaluations,)`` the evaluated epochs (from 1), increasing.
    rung: the rung's epoch; ``last_epoch``: the sweep's last epoch.

  Returns:
    ``(...)`` float64 forecasts; with one evaluation in the window, its value.

  Examples:
    >>> import numpy as np
    >>> from flood_jax._sweep.prune import trend_forecast
    >>> round(float(trend_forecast(np.array([0.5, 0.6, 0.7, 0.8]), np.arange(1, 5), 4, 10)), 6)
    1.4
  """
  epochs = np.asarray(epochs)
  window = (epochs > rung / 2) & (epochs <= rung)
  t = epochs[window].astype(np.float64)
  y = np.asarray(acc, np.float64)[..., window]
  mean = y.mean(axis=-1)
  spread = float(((t - t.mean()) ** 2).sum())
  if spread == 0.0:
    return mean
  slope = ((t - t.mean()) * (y - mean[..., None])).sum(axis=-1) / spread
  return mean + slope * (float(last_epoch) - t.mean())
