"""What ``flood-jax sweep`` prints and writes: the line that describes the sweep, the
lines that judge flooding, and the files in ``--out``."""

from __future__ import annotations

import os
from typing import Any

from flood_jax._result_io import save_params, write_history_csv
from flood_jax.cli.common import one_line
from flood_jax.cli.sweep_config import DEFAULTS, HYPERPARAMS, SweepConfig


def describe(config: SweepConfig) -> str:
  """The model, the optimizer, the training and the grid, e.g. ``mlp (hidden 8, depth 1),
  sgd lr 0.1 momentum 0.9; 2 levels x 2 seeds``."""
  details = [
    f"{k} {getattr(config, k)}" for k in ("hidden", "depth") if getattr(config, k) is not None
  ]
  model = config.model + (f" ({', '.join(details)})" if details else "")
  optimizer = f"{config.optimizer} lr {_g(config.lr)}"
  if config.momentum:
    optimizer += f" momentum {config.momentum:g}"
  if config.weight_decay:
    optimizer += f" weight decay {_g(config.weight_decay)}"
  training = f", {config.objective}" if config.objective != DEFAULTS.objective else ""
  training += ", random crops and flips" if config.augment else ""
  axes = [f"{len(config.levels)} levels"]
  axes += [
    f"{len(getattr(config, key))} {key.replace('_', ' ')}"
    for key in HYPERPARAMS
    if isinstance(getattr(config, key), tuple)
  ]
  grid = " x ".join([*axes, f"{len(config.seeds)} seeds"])
  return f"{model}, {optimizer}{training}; {grid}"


def flooding_effect(result: Any) -> str | None:
  """One line comparing the best level with no flooding (b = 0), if both were swept.

  With a grid of hyperparameters, both at the best configuration's values.
  """
  import numpy as np

  if not has_best(result) or result.lineage is not None:  # PBT: no level is a row's
    return None
  result = result.at_best_hyperparams()
  levels = np.asarray(result.flood_levels)
  best = result.best_flood_level
  if best == 0 or not np.any(levels == 0):
    return None
  i, j = result.index(best)[0], int(np.flatnonzero(levels == 0)[0])
  loss = result.history["test_loss"][..., -1].mean(axis=1)
  line = f"test loss {loss[i]:.4f} vs {loss[j]:.4f}"
  if result.selection != "loss":  # the selection metric first (classification: accuracy)
    value = result.history[f"test_{result.selection}"][..., -1].mean(axis=1)
    line = (
      f"final test {result.selection} {value[i]:.4f} vs {value[j]:.4f} without flooding, {line}"
    )
  else:
    line = f"final {line} without flooding"
  return f"at the best level, b = {best:g}: {line}"


def loss_verdict(result: Any) -> str | None:
  """One line: at how many levels the final test loss is below b = 0's, and how surely.

  Paired by seed at the best configuration's hyperparameters; "surely" is a
  one-sided paired t-test at the 5% level. ``None`` without ``b = 0``, with
  one seed, or when every configuration diverged.
  """
  import numpy as np

  from flood_jax._result import paired_p

  if not has_best(result) or len(result.seeds) < 2 or result.lineage is not None:
    return None  # (PBT: its members change level, so no row is a level's models)
  result = result.at_best_hyperparams()
  levels = np.asarray(result.flood_levels)
  if not np.any(levels == 0) or len(levels) < 2:
    return None
  loss = np.asarray(result.history["test_loss"][..., -1], np.float64)  # (levels, seeds)
  diff = loss[levels != 0] - loss[levels == 0][0]
  lower = int(np.sum(diff.mean(axis=1) < 0))
  surely = sum(paired_p(-d[np.isfinite(d)]) < 0.05 for d in diff)
  n = len(diff)
  return (
    f"test loss vs b = 0: lower at {lower} of {n} levels, and by more than seed noise"
    f" (paired t-test over {len(result.seeds)} seeds, p < 0.05) at {surely} of {n}"
  )


def has_best(result: Any) -> bool:
  """Whether the sweep has a best configuration (not every one diverged)."""
  try:
    result.best()
  except ValueError:
    return False
  return True


def write_outputs(result: Any, out: str, plot: bool = True) -> list[str]:
  """results.json, params.npz, history.csv and the plots; returns their paths.

  No plots if every configuration diverged: they mark the best one.

  Raises:
    NotWritten: a file could not be written (e.g. a full disk).
  """
  from flood_jax import plots

  written: list[str] = []

  def write(name: str, fn: Any) -> None:
    try:
      written.append(os.fspath(fn()))
    except OSError as err:  # e.g. ENOSPC: said as one line, with what was written
      names = [os.path.basename(p) for p in written]
      raise NotWritten(name, err.strerror or one_line(err), names) from None

  write("results.json", lambda: result.save(out, with_params=False))
  if result.final_params is not None:
    write("params.npz", lambda: save_params(result, out))
  write("history.csv", lambda: write_history_csv(result, os.path.join(out, "history.csv")))
  if plot and has_best(result):
    for name, plot_fn in [
      ("curves", plots.plot_curves),
      ("accuracy_vs_level", plots.plot_accuracy_vs_level),
      ("flooded_fraction", plots.plot_flooded_fraction),
      ("overview", plots.plot_overview),
    ]:
      write(f"{name}.png", lambda p=plot_fn, n=name: p(result, os.path.join(out, f"{n}.png")))
  return written


class NotWritten(Exception):
  """An output file that could not be written (``name``), why, and those written before it."""

  def __init__(self, name: str, reason: str, written: list[str]):
    super().__init__(f"could not write {name}: {reason}")
    self.name, self.reason, self.written = name, reason, written


def _g(value: float | tuple[float, ...]) -> str:
  """A number, or a comma list of them, in ``:g`` format."""
  values = value if isinstance(value, tuple) else [value]
  return ",".join(f"{v:g}" for v in values)
