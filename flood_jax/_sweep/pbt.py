"""Population-based training of the flood level inside the sweep: :class:`PBT`.

A :class:`PBT` is a pruning policy (:mod:`flood_jax._sweep.prune`) that prunes nothing: its
rungs are the exploit boundaries, after ``interval``, ``2 * interval``, ... epochs (not after the
last). At each the driver keeps every model's whole carry on the host (as for Halving); the
policy ranks the configurations of each seed (one population per seed) by the task's selection
metric on validation and names, for each member of the bottom ``fraction``, a member of the top
``fraction`` whose carry it copies (:meth:`PBT.exploit`), and the level and swept
hyperparameters it goes on with. The level is a traced per-model input of the compiled program
and the hyperparameters live in the optimizer state, so nothing recompiles.

Every draw comes from a generator seeded by the population's seed and the boundary's epoch, and
reads only the (gathered) history: two equal sweeps, a resumed one, and every process of a
``jax.distributed`` sweep take the same decisions.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, NamedTuple

import jax
import numpy as np

from flood_jax._checks import is_integer
from flood_jax._sweep.metrics import column
from flood_jax._sweep.program import set_hyperparams
from flood_jax._task import Classification, Task

# Mixed into every generator's seed, so PBT's draws share no stream with anything else.
_SALT = 0x9B7F10


class Exploit(NamedTuple):
  """One boundary's decisions, over the models in flat (seed-major) order.

  ``source[i]`` is the flat model whose carry model ``i`` goes on from (``i`` itself when it
  keeps its own); ``levels``/``hparams`` are what every model trains with next.
  """

  source: np.ndarray  # (models,) int64
  levels: np.ndarray  # (models,) float32
  hparams: np.ndarray  # (models, hyperparameters) float32


@dataclasses.dataclass(frozen=True)
class PBT:
  r"""Population-based training of the flood level, for ``fj.sweep(..., pbt=...)``.

  After epochs ``interval``, ``2 * interval``, ... (not after the last), separately for each
  seed (the configurations that share a seed are one population, so seeds stay independent
  replicates), the members are ranked by the task's selection metric on the validation set
  at that epoch (classification: validation accuracy; a non-finite validation loss ranks
  last; ties are broken by a seeded draw, never by grid order). Each of the bottom
  :math:`k = \min(\lceil f n \rceil, \lfloor n/2 \rfloor)` of the :math:`n` members
  (:math:`f` = ``fraction``) copies the whole carry (parameters, model state, random state,
  optimizer state) of a member drawn uniformly from the top :math:`k`, and takes that
  member's flood level and swept hyperparameters (``hyperparams=``), each multiplied by a
  factor drawn from ``factors`` or, with probability ``resample``, drawn from the grid's
  values instead (Jaderberg et al.'s exploit "truncation" and explore "perturb"). A level of
  0 stays 0 unless resampled; AdaFlood's ``gamma`` is kept in [0, 1].

  Every draw comes from a generator seeded by the population's seed and the boundary, so
  two equal calls give bitwise equal results; ``fraction=0`` is the plain sweep, bitwise (with
  a fixed ``chunk_size``). The boundaries are evaluated epochs of the history. PBT does not
  compose with ``prune=`` (one error).

  Args:
    interval: epochs between exploit boundaries, a positive integer below the sweep's epochs.
    fraction: the share of each population replaced (and the share it copies from), in
      [0, 0.5].
    factors: a pair of positive numbers, the perturbation factors.
    resample: the probability, in [0, 1], of drawing a value from the grid instead.

  Examples:
    >>> import flood_jax as fj
    >>> fj.PBT(interval=6).rungs(epochs=24)
    (6, 12, 18)

  References:
    Jaderberg et al., `Population Based Training of Neural Networks
    <https://arxiv.org/abs/1711.09846>`_, 2017.
  """

  interval: int
  fraction: float = 0.25
  factors: tuple[float, float] = (0.8, 1.25)
  resample: float = 0.0

  def __post_init__(self):
    example = " e.g. fj.PBT(interval=5, fraction=0.25, factors=(0.8, 1.25))."
    if not is_integer(self.interval) or self.interval < 1:
      raise ValueError(f"PBT interval must be an integer >= 1, got {self.interval!r};{example}")
    if not _number(self.fraction) or not 0 <= self.fraction <= 0.5:
      raise ValueError(
        f"PBT fraction must be a number in [0, 0.5], got {self.fraction!r};{example}"
      )
    factors = self.factors
    if (
      not isinstance(factors, (tuple, list))
      or len(factors) != 2
      or not all(_number(f) and math.isfinite(f) and f > 0 for f in factors)
    ):
      raise ValueError(f"PBT factors must be a pair of positive numbers, got {factors!r};{example}")
    object.__setattr__(self, "factors", (float(factors[0]), float(factors[1])))
    if not _number(self.resample) or not 0 <= self.resample <= 1:
      raise ValueError(
        f"PBT resample must be a probability in [0, 1], got {self.resample!r};{example}"
      )

  def rungs(self, epochs: int) -> tuple[int, ...]:
    """The exploit boundaries: every ``interval`` epochs, before the last."""
    return tuple(range(int(self.interval), epochs, int(self.interval)))

  def check(self, epochs: int) -> tuple[int, ...]:
    """The boundaries of a sweep of ``epochs`` epochs; a one-line error if there are none."""
    rungs = self.rungs(epochs)
    if not rungs:
      raise ValueError(
        f"pbt=PBT(interval={self.interval}) never exploits a sweep of {epochs} epochs;"
        f" use interval < {epochs} (e.g. {max(1, epochs // 4)})."
      )
    return rungs

  def survivors(self, history, alive, grid, epoch, epochs, task=None):
    del history, grid, epoch, epochs, task
    return alive  # every member trains to the end

  def survivors_per_rung(self, num_configs: int, epochs: int) -> list[int]:
    return [num_configs] * len(self.rungs(epochs))

  def record(self) -> dict[str, Any]:
    return {
      "interval": int(self.interval),
      "fraction": float(self.fraction),
      "factors": [float(f) for f in self.factors],
      "resample": float(self.resample),
    }

  def replaced(self, n: int) -> int:
    """Members of a population of ``n`` replaced at each boundary."""
    return min(math.ceil(self.fraction * n - 1e-9), n // 2)

  def exploit(
    self,
    history: np.ndarray,
    grid: Any,
    epoch: int,
    levels: np.ndarray,
    hparams: np.ndarray,
    task: Task | None = None,
    level_range: tuple[float, float] | None = None,
  ) -> Exploit:
    """The decisions after ``epoch`` (from 1), from ``history`` ``(models, epochs, metrics)``.

    ``levels``/``hparams`` are what each model (flat order) trained with up to ``epoch``.
    """
    task = Classification() if task is None else task
    n, num_seeds = grid.num_configs, len(grid.seeds)
    source = np.arange(n * num_seeds)
    levels = np.array(levels, np.float32)
    hparams = np.array(hparams, np.float32)
    old_levels, old_hparams = levels.copy(), hparams.copy()
    k = self.replaced(n)
    if k == 0:
      return Exploit(source, levels, hparams)
    val_loss, selected = column(task, "val_loss"), column(task, task.selection_key)
    grid_values = [grid.flood_levels, *grid.hyperparams.values()]
    for s, seed in enumerate(grid.seeds):
      rows = s * n + np.arange(n)
      at = history[rows, epoch - 1]
      score = at[:, selected].astype(np.float64)
      if task.mode == "min":
        score = -score
      score = np.where(np.isfinite(at[:, val_loss]) & np.isfinite(score), score, -np.inf)
      rng = np.random.default_rng([_SALT, int(seed), int(epoch)])
      order = np.lexsort((rng.random(n), -score))  # best first, ties in a seeded order
      top, bottom = order[:k], order[n - k :]
      for member in bottom:
        src = int(top[rng.integers(k)])
        row, from_row = s * n + int(member), s * n + src
        source[row] = from_row
        values = [float(old_levels[from_row]), *(float(v) for v in old_hparams[from_row])]
        new = [
          self._explore(rng, v, options) for v, options in zip(values, grid_values, strict=True)
        ]
        if level_range is not None:
          new[0] = min(max(new[0], level_range[0]), level_range[1])
        levels[row] = new[0]
        hparams[row] = new[1:]
    return Exploit(source, levels, hparams)

  def _explore(self, rng: np.random.Generator, value: float, options: np.ndarray) -> float:
    if self.resample > 0 and rng.random() < self.resample:
      return float(options[rng.integers(len(options))])
    return value * self.factors[int(rng.integers(2))]


def _number(x: Any) -> bool:
  return isinstance(x, numbers.Real) and not isinstance(x, bool)


def hyperparam_leaves(structure: Any, names: tuple[str, ...]) -> list[list[int]]:
  """Per name in ``names``: the indices, among ``jax.tree.leaves(structure)`` (a carry), of
  the optimizer state's leaves that hold it."""
  leaves, treedef = jax.tree.flatten(structure)
  numbered = jax.tree.unflatten(treedef, [np.int64(i) for i in range(len(leaves))])
  marked = numbered._replace(
    opt_state=set_hyperparams(numbered.opt_state, names, np.arange(-1, -len(names) - 1, -1))  # pyright: ignore[reportArgumentType]
  )
  found = [int(x) for x in jax.tree.leaves(marked)]
  return [[i for i, x in enumerate(found) if x == -1 - j] for j in range(len(names))]
