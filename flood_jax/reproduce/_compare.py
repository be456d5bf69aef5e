"""What the protocols compare: the level chosen per seed by validation, and the
records of one setting's comparison (flooding against none; flooding, iFlood and
AdaFlood; the grid, Halving and PBT) with their paired tests and JSON."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from flood_jax._result import SweepResult, _shortest
from flood_jax._result import paired_p as _paired_p
from flood_jax.reproduce._setting import Setting

METHODS = ("flood", "iflood", "adaflood")
PBT_METHODS = ("grid", "halving", "pbt")


@dataclasses.dataclass
class Comparison:
  """Flooding against no flooding for one setting, per seed."""

  setting: Setting
  no_flood: np.ndarray  # test accuracy at b = 0, last epoch, per seed
  no_flood_es: np.ndarray  # ... at b = 0, best-validation epoch
  flood: np.ndarray  # at the level chosen by final val acc
  flood_es: np.ndarray  # at the level chosen by best val acc, that epoch
  chosen: np.ndarray  # chosen level per seed (no early stopping)
  chosen_es: np.ndarray  # chosen level per seed (early stopping)
  # Levels whose models never flooded: the very models of b = 0, not chosen per seed.
  never_flooded: tuple[float, ...] = ()

  def p_value(self, early_stopping: bool) -> float:
    """One-sided paired t-test that flooding raises test accuracy."""
    flood = self.flood_es if early_stopping else self.flood
    base = self.no_flood_es if early_stopping else self.no_flood
    return _paired_p(flood - base)

  def to_dict(self) -> dict[str, Any]:
    out: dict[str, Any] = dataclasses.asdict(self.setting)
    for name in ("no_flood", "no_flood_es", "flood", "flood_es", "chosen", "chosen_es"):
      out[name] = np.asarray(getattr(self, name)).tolist()
    out["never_flooded"] = list(self.never_flooded)
    out["p_value"] = self.p_value(False)
    out["p_value_es"] = self.p_value(True)
    return out

  def never_flooded_note(self) -> str | None:
    """One line naming the levels that never flooded, if any."""
    if not self.never_flooded:
      return None
    return f"{self.setting.label}: {never_flooded_line(self.never_flooded)} (not chosen per seed)"


def compare(result: SweepResult, setting: Setting) -> Comparison:
  """Chooses the level per seed by validation and reads the test accuracies.

  A level that never flooded (:func:`never_flooded`) trained the very models
  of ``b = 0``: it is not chosen, and the comparison names it.
  """
  levels = np.asarray(result.flood_levels)
  if not np.any(levels == 0.0):
    raise ValueError("the sweep's levels must include 0.0, the no-flooding baseline.")
  base = int(np.flatnonzero(levels == 0.0)[0])
  never = never_flooded(result)
  flood, flood_es, chosen, chosen_es = choose_per_seed(result, skip=never)
  return Comparison(
    setting=setting,
    no_flood=result.history["test_accuracy"][..., -1][base],
    no_flood_es=result.at_stopping("test_accuracy", "best_val")[base],
    flood=flood,
    flood_es=flood_es,
    chosen=chosen,
    chosen_es=chosen_es,
    never_flooded=tuple(never),
  )


def never_flooded(result: SweepResult) -> list[float]:
  """The levels other than 0 whose models never flooded, on any epoch or seed.

  Their training loss stayed above ``b`` throughout, so every step was plain
  descent: they trained the very models of ``b = 0``. Read from the
  history's ``flooded_fraction`` (0 on every evaluated epoch of every model).

  Examples:
    >>> import numpy as np
    >>> from flood_jax import reproduce
    >>> from flood_jax._result import METRICS, SweepResult
    >>> history = {m: np.zeros((3, 2, 4), np.float32) for m in METRICS}
    >>> history["flooded_fraction"][2, 1, 3] = 0.25  # b = 0.1 flooded once
    >>> result = SweepResult(np.float32([0, 0.01, 0.1]), np.arange(2), history)
    >>> reproduce.never_flooded(result)
    [0.01]
  """
  flooded = result.history.get("flooded_fraction")
  if flooded is None:
    return []
  levels = np.asarray(result.flood_levels)
  flooded = np.asarray(flooded, np.float64).reshape(len(levels), -1)
  never = []
  for level, fractions in zip(levels, flooded, strict=True):
    seen = fractions[np.isfinite(fractions)]
    if level != 0 and seen.size and not np.any(seen > 0):
      never.append(float(_shortest(level)))
  return never


def never_flooded_line(levels: Sequence[float]) -> str:
  """``"b = 0.01, 0.02 never flooded: the same models as b = 0"``."""
  return f"b = {', '.join(f'{b:g}' for b in levels)} never flooded: the same models as b = 0"


def choose_per_seed(
  result: SweepResult, skip: Sequence[float] = ()
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """Per seed, the level chosen by validation and the test accuracy there.

  Returns ``(test, test_es, chosen, chosen_es)``: without early stopping (last
  epoch) and with it (best-validation epoch); ties go to the first level.
  ``skip``: levels not to choose (those that never flooded: b = 0's models).
  """
  seeds = np.arange(len(result.seeds))
  levels = np.asarray(result.flood_levels)
  skipped = np.isin(levels, np.asarray(skip, levels.dtype))[:, None]
  pick = _argmax_first(np.where(skipped, np.nan, result.val_score("final")))
  pick_es = _argmax_first(np.where(skipped, np.nan, result.val_score("best_val")))
  test_final = result.history["test_accuracy"][..., -1]
  test_es = result.at_stopping("test_accuracy", "best_val")
  return test_final[pick, seeds], test_es[pick_es, seeds], levels[pick], levels[pick_es]


def _argmax_first(scores: np.ndarray) -> np.ndarray:
  """Per seed (column), the first level with the highest score (ties: smaller b)."""
  return np.argmax(np.nan_to_num(scores, nan=-np.inf), axis=0)


@dataclasses.dataclass
class MethodsComparison:
  """Flooding, iFlood and AdaFlood against no flooding for one setting, per seed.

  Each method's level (``b``, or ``gamma`` for AdaFlood) is chosen per seed by
  validation accuracy, at the last epoch and with early stopping (``_es``).
  """

  setting: Setting
  no_flood: np.ndarray  # test accuracy at b = 0, last epoch, per seed
  no_flood_es: np.ndarray
  test: dict[str, np.ndarray]  # method -> test accuracy at its chosen level
  test_es: dict[str, np.ndarray]
  chosen: dict[str, np.ndarray]  # method -> chosen b (gamma for AdaFlood), per seed
  chosen_es: dict[str, np.ndarray]
  seconds: dict[str, float]  # method -> wall time of its sweep ("folds": the fold models)
  num_models: dict[str, int]
  heldout_loss: dict[str, float | None] = dataclasses.field(default_factory=dict)

  def p_value(self, method: str, against: str = "none", early_stopping: bool = False) -> float:
    """One-sided paired t-test across seeds that ``method`` beats ``against`` ("none": b = 0)."""
    test = self.test_es if early_stopping else self.test
    base = (
      (self.no_flood_es if early_stopping else self.no_flood)
      if against == "none"
      else test[against]
    )
    return _paired_p(test[method] - base)

  def to_dict(self) -> dict[str, Any]:
    out: dict[str, Any] = dataclasses.asdict(self.setting)
    out["no_flood"] = self.no_flood.tolist()
    out["no_flood_es"] = self.no_flood_es.tolist()
    for name in ("test", "test_es", "chosen", "chosen_es"):
      out[name] = {k: np.asarray(v).tolist() for k, v in getattr(self, name).items()}
    out["seconds"], out["num_models"] = self.seconds, self.num_models
    out["heldout_loss"] = self.heldout_loss  # mean over clean and flipped training labels
    out["p_values"] = {
      f"{m}>{a}{'_es' if es else ''}": self.p_value(m, a, es)
      for es in (False, True)
      for m, a in [
        ("flood", "none"),
        ("iflood", "none"),
        ("adaflood", "none"),
        ("adaflood", "flood"),
        ("adaflood", "iflood"),
      ]
    }
    return out


@dataclasses.dataclass
class PBTComparison:
  """PBT's chosen member against the grid's and Halving's chosen level, for one setting.

  Per seed, each method's choice is the run with the best final validation accuracy
  among that seed's (ties: the first; Halving's pruned runs are never chosen), read at the
  last epoch: ``test``/``loss`` map a method to its test accuracy/loss per seed,
  ``chosen`` to the level (PBT: the one the winner ended with), ``model_epochs`` to the
  epochs it trained over all its models, ``seconds`` to its sweep's wall time.
  """

  setting: Setting
  test: dict[str, np.ndarray]
  loss: dict[str, np.ndarray]
  chosen: dict[str, np.ndarray]
  model_epochs: dict[str, int]
  seconds: dict[str, float]

  def p_value(self, against: str, metric: str = "accuracy") -> float:
    """One-sided paired t-test across seeds that PBT beats ``against``: a higher test
    accuracy, or (``metric="loss"``) a lower test loss."""
    if metric == "loss":
      return _paired_p(self.loss[against] - self.loss["pbt"])
    return _paired_p(self.test["pbt"] - self.test[against])

  def to_dict(self) -> dict[str, Any]:
    out: dict[str, Any] = dataclasses.asdict(self.setting)
    for name in ("test", "loss", "chosen"):
      out[name] = {k: np.asarray(v).tolist() for k, v in getattr(self, name).items()}
    out["model_epochs"], out["seconds"] = self.model_epochs, self.seconds
    out["p_values"] = {
      f"pbt>{a}_{m}": self.p_value(a, m) for m in ("accuracy", "loss") for a in ("grid", "halving")
    }
    return out


def choose_member_per_seed(result: SweepResult) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Per seed, the run with the best final validation score: ``(test accuracy, test loss,
  level)`` at the last epoch (the level a PBT member ended with; ties: the first run)."""
  seeds = len(result.seeds)
  scores = result.val_score("final").reshape(-1, seeds)
  pick = _argmax_first(scores)
  columns = np.arange(seeds)

  def final(key: str) -> np.ndarray:
    return np.asarray(result.history[key])[..., -1].reshape(-1, seeds)[pick, columns]

  if result.level_name in result.history:  # PBT: the level each member trained with
    level = final(result.level_name)
  else:
    levels = np.array([c[result.level_name] for c in result.configurations()], np.float64)
    level = levels[pick]
  return final("test_accuracy"), final("test_loss"), level


def model_epochs(result: SweepResult) -> int:
  """Epochs trained over all models: a pruned configuration's stop where Halving stopped it."""
  pruned_at = np.asarray(result.pruned_at)
  per_config = np.where(pruned_at > 0, pruned_at, result.num_epochs)
  return int(per_config.sum()) * len(result.seeds)
