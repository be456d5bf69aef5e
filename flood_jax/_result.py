"""``SweepResult``: what a sweep returns, with tables and saving to disk."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any

import jax
import numpy as np

METRICS = (
    "train_loss",
    "val_loss",
    "val_accuracy",
    "test_loss",
    "test_accuracy",
    "flooded_fraction",
)

_RULES = ("final", "best_val")


@dataclasses.dataclass
class SweepResult:
  """The outcome of :func:`flood_jax.sweep`.

  Attributes:
    flood_levels: the levels, shape ``(levels,)``.
    seeds: the seeds, shape ``(seeds,)``.
    history: per-epoch curves, each ``(levels, seeds, epochs)``: ``train_loss``
      (full training set, evaluation mode, *unflooded*), ``val_loss``,
      ``val_accuracy``, ``test_loss``, ``test_accuracy`` and
      ``flooded_fraction`` (fraction of the epoch's mini-batches whose loss was
      below the level, i.e. ascent steps).
    final_params: the trained parameters, every leaf with leading axes
      ``(levels, seeds)``; ``None`` after :meth:`load`.
    final_batch_stats: BatchNorm statistics likewise, or ``None``.
    config: the sweep's settings, for the record.
    wall_time: seconds the sweep took (training and evaluation).

  The best level (:attr:`best_flood_level`) maximizes the validation accuracy
  at the **final epoch**, averaged over seeds (ties go to the smaller level).
  :meth:`best` also offers the early-stopping rule (each run's epoch of best
  validation accuracy).
  """

  flood_levels: np.ndarray
  seeds: np.ndarray
  history: dict[str, np.ndarray]
  final_params: Any = None
  final_batch_stats: Any = None
  config: dict[str, Any] = dataclasses.field(default_factory=dict)
  wall_time: float = math.nan

  @property
  def num_epochs(self) -> int:
    return int(self.history["val_accuracy"].shape[-1])

  @property
  def best_flood_level(self) -> float:
    """Level with the highest final-epoch validation accuracy, mean over seeds."""
    return self.best()

  def best(self, rule: str = "final") -> float:
    """The best flood level by mean validation accuracy over seeds.

    Args:
      rule: ``"final"`` scores each run by its last epoch's validation
        accuracy; ``"best_val"`` by its best epoch's (early stopping).

    Returns:
      The winning level (ties: the smallest).
    """
    scores = self.val_score(rule).mean(axis=1)
    return float(self.flood_levels[int(np.nanargmax(scores))])

  def val_score(self, rule: str = "final") -> np.ndarray:
    """Validation accuracy per run, ``(levels, seeds)``, under an epoch ``rule``."""
    _check_rule(rule)
    val = self.history["val_accuracy"]
    if rule == "final":
      return val[..., -1]
    return np.nanmax(val, axis=-1)

  def stopping_epoch(self, rule: str = "final") -> np.ndarray:
    """Epoch index each run is read at, ``(levels, seeds)``, under ``rule``.

    ``"best_val"`` takes the first epoch of highest validation accuracy.
    """
    _check_rule(rule)
    val = self.history["val_accuracy"]
    if rule == "final":
      return np.full(val.shape[:2], val.shape[-1] - 1)
    return np.argmax(np.nan_to_num(val, nan=-np.inf), axis=-1)

  def at_stopping(self, metric: str, rule: str = "final") -> np.ndarray:
    """``metric`` read at each run's stopping epoch, ``(levels, seeds)``."""
    if metric not in self.history:
      raise ValueError(f"unknown metric {metric!r}; known: {sorted(self.history)}.")
    epoch = self.stopping_epoch(rule)
    return np.take_along_axis(self.history[metric], epoch[..., None], axis=-1)[..., 0]

  def table(self) -> list[dict[str, Any]]:
    """One row per level: mean and std over seeds of the key final metrics."""
    rows = []
    for i, level in enumerate(self.flood_levels):
      row: dict[str, Any] = {"flood_level": float(level)}
      for name, values in [
          ("val_acc", self.history["val_accuracy"][i, :, -1]),
          ("best_val_acc", np.nanmax(self.history["val_accuracy"][i], -1)),
          ("test_acc", self.history["test_accuracy"][i, :, -1]),
          ("test_acc_es", self.at_stopping("test_accuracy", "best_val")[i]),
          ("train_loss", self.history["train_loss"][i, :, -1]),
          ("test_loss", self.history["test_loss"][i, :, -1]),
          ("flooded", self.history["flooded_fraction"][i, :, -1]),
      ]:
        row[name] = float(np.mean(values))
        row[name + "_std"] = float(np.std(values))
      rows.append(row)
    return rows

  def summary(self) -> str:
    """A readable table: per level, mean +/- std over seeds of final metrics.

    Columns: final validation accuracy, best validation accuracy over epochs,
    final test accuracy, test accuracy at the best-validation epoch (early
    stopping), final (unflooded) training loss, final test loss and the last
    epoch's flooded fraction. The best level by final validation accuracy is
    marked with ``*``.
    """
    best = self.best_flood_level
    header = [
        "level", "val acc", "best val acc", "test acc", "test acc (ES)",
        "train loss", "test loss", "flooded",
    ]
    lines = []
    for row in self.table():
      mark = "*" if row["flood_level"] == best else " "
      cells = [f"{row['flood_level']:.4g}{mark}"]
      for key, digits in [
          ("val_acc", 4), ("best_val_acc", 4), ("test_acc", 4),
          ("test_acc_es", 4), ("train_loss", 4), ("test_loss", 4),
          ("flooded", 2),
      ]:
        if len(self.seeds) > 1:
          cells.append(f"{row[key]:.{digits}f} ± {row[key + '_std']:.{digits}f}")
        else:
          cells.append(f"{row[key]:.{digits}f}")
      lines.append(cells)
    widths = [max(len(h), *(len(c[j]) for c in lines)) for j, h in enumerate(header)]
    out = [
        "  ".join(h.rjust(w) for h, w in zip(header, widths)),
        "  ".join("-" * w for w in widths),
    ]
    out += ["  ".join(c.rjust(w) for c, w in zip(cells, widths)) for cells in lines]
    out.append(
        f"best flood level (final val acc, mean over {len(self.seeds)} seed(s)):"
        f" {best:.4g}; by early stopping: {self.best('best_val'):.4g}"
    )
    return "\n".join(out)

  def to_dict(self) -> dict[str, Any]:
    """Metrics and settings as JSON-ready Python values (no parameters)."""
    return {
        "flood_levels": [float(b) for b in self.flood_levels],
        "seeds": [int(s) for s in self.seeds],
        "best_flood_level": self.best_flood_level,
        "best_flood_level_early_stopping": self.best("best_val"),
        "wall_time": self.wall_time,
        "config": self.config,
        "final": {
            metric: self.history[metric][..., -1].tolist() for metric in METRICS
        },
        "table": self.table(),
        "history": {k: np.asarray(v).tolist() for k, v in self.history.items()},
    }

  def save(self, directory: str | os.PathLike[str], with_params: bool = True) -> str:
    """Writes ``results.json`` (metrics, settings) and ``params.npz`` to ``directory``.

    Args:
      directory: created if missing.
      with_params: also write the trained parameters (``params.npz``).

    Returns:
      The path of ``results.json``.
    """
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "results.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
      json.dump(_json_safe(self.to_dict()), f, indent=1)
    os.replace(tmp, path)
    if with_params and self.final_params is not None:
      leaves = jax.tree_util.tree_leaves_with_path(
          {"params": self.final_params, "batch_stats": self.final_batch_stats}
      )
      np.savez(
          os.path.join(directory, "params.npz"),
          **{jax.tree_util.keystr(k): np.asarray(v) for k, v in leaves},
      )
    return path

  @classmethod
  def load(cls, directory: str | os.PathLike[str]) -> "SweepResult":
    """Reads the metrics written by :meth:`save` (parameters are not restored)."""
    path = os.path.join(directory, "results.json")
    if not os.path.exists(path):
      raise FileNotFoundError(f"no results.json in {directory}; run a sweep with it as --out first.")
    with open(path) as f:
      raw = json.load(f)
    return cls(
        flood_levels=np.asarray(raw["flood_levels"], np.float32),
        seeds=np.asarray(raw["seeds"], np.int64),
        history={
            # null (a NaN when saved) reads back as NaN.
            k: np.array(v, dtype=np.float64) for k, v in raw["history"].items()
        },
        config=raw.get("config", {}),
        wall_time=raw.get("wall_time", math.nan),
    )

  def __repr__(self) -> str:
    return (
        f"SweepResult(levels={len(self.flood_levels)}, seeds={len(self.seeds)},"
        f" epochs={self.num_epochs}, best_flood_level={self.best_flood_level:.4g})"
    )


def _check_rule(rule: str) -> None:
  if rule not in _RULES:
    raise ValueError(f"unknown epoch rule {rule!r}; use one of {_RULES}.")


def _json_safe(value: Any) -> Any:
  """NaN and infinities become None: strict JSON has no spelling for them."""
  if isinstance(value, float):
    return value if math.isfinite(value) else None
  if isinstance(value, dict):
    return {str(k): _json_safe(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_json_safe(v) for v in value]
  return value


def stack_levels_seeds(flat: np.ndarray, levels: int, seeds: int) -> np.ndarray:
  """``(levels * seeds, ...)`` in seed-major order to ``(levels, seeds, ...)``."""
  return np.swapaxes(flat.reshape((seeds, levels) + flat.shape[1:]), 0, 1)
