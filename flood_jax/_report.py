"""A :class:`~flood_jax.SweepResult` as tables: its rows, its readable summary, its repr.

:meth:`SweepResult.table`, :meth:`~SweepResult.summary` and ``repr`` delegate
here; what the columns mean is in their docstrings.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
  from flood_jax._result import SweepResult

# A metric's name in the table's keys and the summary's header (classification's: val_acc).
_SHORT = {"accuracy": "acc"}


def _short(name: str) -> str:
  return _SHORT.get(name, name)


def _columns(result: SweepResult) -> list[tuple[str, str, int]]:
  """The summary's per-seed columns: the table's key, the header and the decimals shown.

  For classification: val_acc, best_val_acc, test_acc, test_acc_es, train_loss, test_loss,
  flooded; for another task the selection metric's, each metric's test value, and the losses.
  """
  s = _short(result.selection)
  return [
    (f"val_{s}", f"val {s}", 4),
    (f"best_val_{s}", f"best val {s}", 4),
    *((f"test_{_short(m)}", f"test {_short(m)}", 4) for m in result.metric_names),
    (f"test_{s}_es", f"test {s} (ES)", 4),
    ("train_loss", "train loss", 4),
    ("test_loss", "test loss", 4),
    ("flooded", "flooded", 2),
  ]


def _paired_columns(result: SweepResult) -> list[tuple[str, str]]:
  """The paired differences from b = 0: each metric's on the test set, then the test loss."""
  return [(f"d_test_{_short(m)}", f"test_{m}") for m in result.metric_names] + [
    ("d_test_loss", "test_loss")
  ]


def table(result: SweepResult) -> list[dict[str, Any]]:
  """One row per configuration (see :meth:`SweepResult.table`)."""
  test_es = result.at_stopping(f"test_{result.selection}", "best_val")
  diverged = result.diverged()
  epochs, pruned_at = result.epochs, result.pruned_at
  assert epochs is not None and pruned_at is not None  # __post_init__ always sets them
  zero = np.flatnonzero(np.asarray(result.flood_levels) == result._no_flooding)
  never = result.never_flooded()
  rows = []
  for config, index in zip(result.configurations(), np.ndindex(*result.config_shape), strict=True):
    row: dict[str, Any] = dict(config)
    # The last evaluation a configuration had: the end, or its rung.
    last = int(np.searchsorted(epochs, pruned_at[index])) if pruned_at[index] else -1
    ok = ~diverged[index] & np.isfinite(result.history["val_loss"][index][:, last])
    # Paired by seed against b = 0 at the same hyperparameters.
    base = (int(zero[0]), *index[1:]) if zero.size else None
    row.update(_paired(result, index, base, ok, last))
    row.update(_means(result, index, ok, last, test_es))
    row["never_flooded"] = bool(row[result.level_name] in never)
    row["diverged"] = int(np.sum(diverged[index]))
    row["pruned_at"] = int(pruned_at[index])
    rows.append(row)
  return rows


def _paired(
  result: SweepResult, index: tuple[int, ...], base: tuple[int, ...] | None, ok: Any, last: int
) -> dict[str, float]:
  """``d_test_acc`` and ``d_test_loss`` (with ``_std``): differences from ``base``, by seed.

  (One per metric of the task, then the loss.)
  """
  row: dict[str, float] = {}
  history = result.history
  for name, metric in _paired_columns(result):
    if base is None:
      row[name] = row[name + "_std"] = math.nan
      continue
    pair = ok & np.isfinite(history["val_loss"][base][:, last])
    diff = (history[metric][index][:, last] - history[metric][base][:, last])[pair]
    row[name] = float(np.mean(diff)) if diff.size else math.nan
    row[name + "_std"] = float(np.std(diff)) if diff.size else math.nan
  return row


def _means(
  result: SweepResult, index: tuple[int, ...], ok: Any, last: int, test_es: np.ndarray
) -> dict[str, float]:
  """Mean and std over the seeds ``ok`` of the key metrics at evaluation ``last``."""
  row: dict[str, float] = {}
  history = result.history
  s, key = _short(result.selection), result.selection_key
  for name, values in [
    (f"val_{s}", history[key][index][:, last]),
    (f"best_val_{s}", _best_over_epochs(history[key][index], result.mode)),
    *((f"test_{_short(m)}", history[f"test_{m}"][index][:, last]) for m in result.metric_names),
    (f"test_{s}_es", test_es[index]),
    ("train_loss", history["train_loss"][index][:, last]),
    ("test_loss", history["test_loss"][index][:, last]),
    ("flooded", history["flooded_fraction"][index][:, last]),
  ]:
    kept = values[ok]
    row[name] = float(np.mean(kept)) if kept.size else math.nan
    row[name + "_std"] = float(np.std(kept)) if kept.size else math.nan
  return row


def _best_over_epochs(values: np.ndarray, mode: str) -> np.ndarray:
  """The best (``mode``) of each run's evaluations, NaN where none is a number (no warning)."""
  signed = values if mode == "max" else -values
  best = np.max(np.where(np.isnan(signed), -np.inf, signed), axis=-1)
  best = np.where(np.isneginf(best), np.nan, best)
  return best if mode == "max" else -best


def summary(result: SweepResult) -> str:
  """A readable table (see :meth:`SweepResult.summary`)."""
  try:
    best: dict[str, float] | None = result.best()
  except ValueError:
    best = None
  pbt = None
  if result.lineage is not None and best is not None:  # PBT: its lines; * marks the slot
    pbt, best = pbt_lines(result, best), result.configurations()[int(best["member"])]
  rows = table(result)
  show = {
    "diverged": any(row["diverged"] for row in rows),
    "pruned": bool(np.any(result.pruned_at)),
    "paired": len(result.flood_levels) > 1
    and any(np.isfinite(row[_paired_columns(result)[0][0]]) for row in rows),
  }
  header = _header(result, show)
  lines = [_cells(result, row, best, show) for row in rows]
  widths = [max(len(h), *(len(c[j]) for c in lines)) for j, h in enumerate(header)]
  out = [
    "  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True)),
    "  ".join("-" * w for w in widths),
  ]
  out += [
    "  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True)).rstrip() for cells in lines
  ]
  never = never_flooded_line(result)
  if never:
    out.append(never)
  out += pbt or [_best_line(result, best)]
  versus = versus_line(result)
  if versus:
    out.append(versus)
  return "\n".join(out)


def _header(result: SweepResult, show: dict[str, bool]) -> list[str]:
  """The summary's column names."""
  header = [
    "gamma" if result.level_name == "gamma" else "level",
    *result.hyperparams,
    *(title for _, title, _ in _columns(result)),
  ]
  if show["paired"]:
    baseline = "gamma=1" if result.level_name == "gamma" else "b=0"
    header += [f"Δ {key[2:].replace('_', ' ')} vs {baseline}" for key, _ in _paired_columns(result)]
  if show["diverged"]:
    header.append("diverged")
  if show["pruned"]:
    header.append("pruned")
  return header


def _cells(
  result: SweepResult, row: dict[str, Any], best: dict[str, float] | None, show: dict[str, bool]
) -> list[str]:
  """One row of the summary, as text cells (the best configuration's level marked ``*``)."""
  seeds = len(result.seeds)
  mark = "*" if best is not None and all(row[k] == v for k, v in best.items()) else " "
  cells = [f"{row[result.level_name]:.4g}{mark}"]
  cells += [f"{row[name]:.4g}" for name in result.hyperparams]
  for key, _, digits in _columns(result):
    if seeds > 1:
      cells.append(f"{row[key]:.{digits}f} ± {row[key + '_std']:.{digits}f}")
    else:
      cells.append(f"{row[key]:.{digits}f}")
  if show["paired"]:
    for key, _ in _paired_columns(result):
      if row[result.level_name] == result._no_flooding:
        cells.append("")
      elif not np.isfinite(row[key]):  # no pair: b = 0 pruned earlier, or diverged
        cells.append("n/a")
      elif seeds > 1:
        cells.append(f"{row[key]:+.4f} ± {row[key + '_std']:.4f}")
      else:
        cells.append(f"{row[key]:+.4f}")
  if show["diverged"]:
    cells.append(f"{row['diverged']}/{seeds}")
  if show["pruned"]:
    cells.append(f"epoch {row['pruned_at']}" if row["pruned_at"] else "")
  return cells


def never_flooded_line(result: SweepResult) -> str | None:
  """``b = 0.01, 0.02 never flooded: the same models as b = 0`` (``None`` when all flooded)."""
  never = result.never_flooded()
  if not never:
    return None
  name = "gamma" if result.level_name == "gamma" else "b"
  levels = ", ".join(f"{b:.4g}" for b in never)
  baseline = result._no_flooding_level()
  same = (
    f"the same models as {name} = {baseline:.4g}"
    if baseline is not None
    else f"the same models as {name} = 0 would train (plain descent)"
  )
  return f"{name} = {levels} never flooded: {same}."


def _best_line(result: SweepResult, best: dict[str, float] | None) -> str:
  """The summary's line naming the best configuration, by both rules."""
  if best is None:
    return "best configuration: none, every configuration diverged."
  seeds = len(result.seeds)
  by = f"final val {_short(result.selection)}"
  if not result.hyperparams:
    level = result.level_name
    return (
      f"best {level.replace('_', ' ')} ({by}, mean over"
      f" {seeds} seed(s)): {best[level]:.4g}; by early stopping:"
      f" {result.best('best_val')[level]:.4g}"
    )
  return (
    f"best configuration ({by}, mean over {seeds} seed(s)):"
    f" {show_config(best)}; by early stopping: {show_config(result.best('best_val'))}"
  )


def versus_line(result: SweepResult) -> str | None:
  """The summary's line saying whether the winner is distinguishable from ``b = 0``."""
  if len(result.seeds) < 2:
    return None
  try:
    best = result.best()
  except ValueError:
    return None
  baseline = "gamma = 1" if result.level_name == "gamma" else "b = 0"
  metric = f"validation {result.selection}"
  if best[result.level_name] == result._no_flooding:
    return f"no flooding ({baseline}) has the best {metric}."
  row = result.versus_no_flooding()
  if row is None or not np.isfinite(row["p"]):
    return None
  verdict = "better than" if row["p"] < 0.05 else "not distinguishable from"
  return (
    f"{show_config(best)} vs {baseline}: {metric} {row['diff']:+.4f} ±"
    f" {row['std']:.4f} over {row['seeds']} seeds (paired t-test, p = {row['p']:.2g}):"
    f" {verdict} {baseline} at the 5% level."
  )


def describe(result: SweepResult) -> str:
  """``repr(result)``: the axes' sizes, the epochs and the best configuration."""
  try:
    best = show_config(result.best())
  except ValueError:
    best = "none (all diverged)"
  shape = ", ".join(
    f"{name}s={n}" if name != "flood_level" else f"levels={n}"
    for name, n in zip(result.axes, result.history["val_loss"].shape, strict=False)
  )
  return f"SweepResult({shape}, epochs={result.num_epochs}, best={best})"


def show_config(config: dict[str, float]) -> str:
  """``b = 0.1, learning_rate = 0.01``: a configuration for a line of text."""
  return ", ".join(f"{'b' if k == 'flood_level' else k} = {v:.4g}" for k, v in config.items())


def pbt_lines(result: Any, best: dict[str, Any]) -> list[str]:
  """The summary's lines for a PBT sweep: the winner and its level trajectory, and how the
  population's levels ended (rows of the table are the members' starting slots)."""
  name = result.level_name
  schedule = result.level_schedule(best["member"], best["seed"])
  path = " -> ".join(f"{v:g}" for v in schedule.values)
  boundaries = ", ".join(str(b // max(int(result.config["pbt"]["steps_per_epoch"]), 1))
                         for b in schedule.boundaries)  # fmt: skip
  final = np.asarray(result.history[name])[..., -1]
  hparams = "".join(f", {k} {v:g}" for k, v in best.items() if k in result.hyperparams)
  return [
    f"PBT (rows: the members' starting slots; * the winner's): the winner is member"
    f" {best['member']} of seed {best['seed']}, ending at {name} {best[name]:g}{hparams};"
    f" its {name} went {path} (boundaries after epochs {boundaries}).",
    f"PBT: the members' final {name}s, over all seeds: median {np.median(final):g},"
    f" range [{final.min():g}, {final.max():g}]; weights copied"
    f" {int((result.lineage != _own(result.lineage)).sum())} times.",
  ]


def _own(lineage: np.ndarray) -> np.ndarray:
  """Each member's own flat index (among its seed's configurations), shaped as ``lineage``."""
  configs = int(np.prod(lineage.shape[:-2]))
  own = np.arange(configs).reshape(lineage.shape[:-2])
  return np.broadcast_to(own[..., None, None], lineage.shape)
