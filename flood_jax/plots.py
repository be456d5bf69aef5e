"""Plots of a sweep: loss curves, accuracy against the flood level, flooded fraction.

Each function takes a :class:`flood_jax.SweepResult` and a path, writes a PNG
and returns the path. Figures are drawn with Matplotlib's Agg canvas directly
(no ``pyplot``), so they need no display and leave the user's Matplotlib
backend and open figures alone.

Curves show the mean over seeds with a band of one standard deviation. A
level keeps its colour in every plot (its position in the grid on the
``viridis`` colour map). A sweep with hyperparameter axes is drawn at its
best configuration's hyperparameters
(:meth:`flood_jax.SweepResult.at_best_hyperparams`), named in the title.

Examples:
  >>> import flood_jax as fj
  >>> from flood_jax import plots
  >>> result = fj.SweepResult.load("runs/mnist1d")  # doctest: +SKIP
  >>> plots.plot_curves(result, "curves.png")  # doctest: +SKIP
  'curves.png'
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import cast

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from flood_jax._checks import directory as check_directory
from flood_jax._result import SweepResult, _shortest

__all__ = [
  "default_curve_levels",
  "plot_accuracy_vs_level",
  "plot_curves",
  "plot_flooded_fraction",
  "plot_level_trajectories",
  "plot_overview",
]

PathLike = str | os.PathLike[str]

_DPI = 100
# Smallest value drawn on a log axis: a band reaching below it is cut there.
_LOG_FLOOR = 1e-4


def default_curve_levels(result: SweepResult, max_levels: int = 4) -> list[float]:
  """Levels worth showing as curves: the smallest, the best, and some spread.

  Picks the smallest level (usually ``b = 0``, no flooding), the best level
  (:attr:`SweepResult.best_flood_level`) and the largest, then fills up to
  ``max_levels`` with the level farthest from those already chosen.

  Args:
    result: the sweep.
    max_levels: at most this many levels.

  Returns:
    The chosen levels in increasing order.
  """
  result = result.at_best_hyperparams()  # levels x seeds at the best hyperparameters
  levels = np.asarray(result.flood_levels)
  order = np.argsort(levels)
  best = result.index(result.best_flood_level)[0]
  chosen = list(dict.fromkeys([int(order[0]), best, int(order[-1])]))
  ranks = {int(i): r for r, i in enumerate(order)}  # spread by grid position
  while len(chosen) < min(max_levels, len(levels)):
    rest = [i for i in range(len(levels)) if i not in chosen]
    chosen.append(max(rest, key=lambda i: min(abs(ranks[i] - ranks[c]) for c in chosen)))
  return sorted(_shortest(levels[i]) for i in chosen[:max_levels])


def plot_curves(
  result: SweepResult,
  path: PathLike,
  levels: Sequence[float] | None = None,
  *,
  title: str | None = None,
  dpi: int = _DPI,
) -> PathLike:
  """Training loss and test loss per epoch, for a few flood levels.

  Two panels on log axes: the (unflooded) training loss on the whole
  training set, with each level ``b`` drawn as a dotted line in its colour,
  and the test loss. Without flooding the training loss heads to zero and the
  test loss rises again after its minimum; with a good level the training
  loss floats around ``b`` and the test loss turns down again (the epoch-wise
  double descent of Ishida et al., 2020, Fig. 1).

  Args:
    result: the sweep.
    path: where to write the PNG.
    levels: the levels to draw (each must be in the sweep); default
      :func:`default_curve_levels`.
    title: figure title; default names the data set, model and seeds.
    dpi: resolution in dots per inch (figures are 4.2 inches high).

  Returns:
    ``path``.

  Raises:
    ValueError: a level that is not in the sweep.
  """
  result = result.at_best_hyperparams()  # levels x seeds at the best hyperparameters
  indices = _level_indices(result, levels)
  fig, (ax_train, ax_test) = _figure(1, 2, width=11.0)
  for index in indices:
    _draw_curve(ax_train, result, "train_loss", index, draw_level=True)
    _draw_curve(ax_test, result, "test_loss", index)
  ax_train.set_title("training loss (unflooded)")
  ax_test.set_title("test loss")
  for ax in (ax_train, ax_test):
    _style_loss_axis(ax, result)
  ax_test.legend(title=_legend_title(result, indices), fontsize="small")
  _suptitle(fig, title or _describe(result, "loss per epoch"))
  return _save(fig, path, dpi)


def plot_accuracy_vs_level(
  result: SweepResult,
  path: PathLike,
  *,
  title: str | None = None,
  dpi: int = _DPI,
) -> PathLike:
  """Final test and validation accuracy against the flood level.

  Mean over seeds with error bars (one standard deviation); the best level
  (by final validation accuracy) is marked with a dashed vertical line. For a
  task selected by another metric (``fj.Regression()``: the loss), that
  metric's test and validation values.

  Args:
    result: the sweep.
    path: where to write the PNG.
    title: figure title; default names the data set, model and seeds.
    dpi: resolution in dots per inch (figures are 4.2 inches high).

  Returns:
    ``path``.
  """
  result = result.at_best_hyperparams()  # levels x seeds at the best hyperparameters
  fig, (ax,) = _figure(1, 1, width=6.5)
  _draw_accuracy(ax, result)
  ax.set_title("")  # the figure's title says it
  _suptitle(fig, title or _describe(result, f"final {_selected(result)} vs flood level"))
  return _save(fig, path, dpi)


def plot_flooded_fraction(
  result: SweepResult,
  path: PathLike,
  levels: Sequence[float] | None = None,
  *,
  title: str | None = None,
  dpi: int = _DPI,
) -> PathLike:
  """Fraction of each epoch's mini-batches that were flooded (ascent steps).

  Args:
    result: the sweep.
    path: where to write the PNG.
    levels: the levels to draw; default every level above zero (``b = 0``
      never floods).
    title: figure title; default names the data set, model and seeds.
    dpi: resolution in dots per inch (figures are 4.2 inches high).

  Returns:
    ``path``.

  Raises:
    ValueError: a level that is not in the sweep.
  """
  result = result.at_best_hyperparams()  # levels x seeds at the best hyperparameters
  if levels is None:
    positive = [_shortest(b) for b in result.flood_levels if b > 0]
    levels = positive or [_shortest(b) for b in result.flood_levels]
  indices = _level_indices(result, levels)
  fig, (ax,) = _figure(1, 1, width=7.0)
  for index in indices:
    _draw_curve(ax, result, "flooded_fraction", index)
  ax.set_xlabel("epoch")
  ax.set_ylabel("flooded fraction of mini-batches")
  ax.set_ylim(-0.02, 1.02)
  ax.grid(alpha=0.3)
  ax.legend(
    title=_legend_title(result, indices), fontsize="small", ncols=2 if len(indices) > 6 else 1
  )
  _suptitle(fig, title or _describe(result, "flooded fraction per epoch"))
  return _save(fig, path, dpi)


def plot_level_trajectories(
  result: SweepResult,
  path: PathLike,
  *,
  title: str | None = None,
  dpi: int = _DPI,
) -> PathLike:
  """A PBT sweep's members: each one's flood level over the epochs, coloured by its final
  validation score (``fj.sweep(..., pbt=fj.PBT(...))``; every seed's members drawn).

  Args:
    result: a PBT sweep (its ``history`` holds the level each member trained with).
    path: where to write the PNG.
    title: figure title; default names the data set, model and seeds.
    dpi: resolution in dots per inch.

  Returns:
    ``path``.

  Raises:
    ValueError: ``result`` is not a PBT sweep.
  """
  import matplotlib
  from matplotlib import cm, colors

  name = result.level_name
  if result.lineage is None or name not in result.history:
    raise ValueError("plot_level_trajectories needs a PBT sweep: fj.sweep(..., pbt=fj.PBT(...)).")
  epochs = np.asarray(result.epochs)
  levels = np.asarray(result.history[name], np.float64).reshape(-1, len(epochs))
  score = np.asarray(result.val_score(), np.float64).reshape(-1)  # (members,), as levels
  finite = score[np.isfinite(score)]
  norm = colors.Normalize(*(finite.min(), finite.max()) if finite.size else (0.0, 1.0))
  cmap = matplotlib.colormaps["viridis"]
  fig, (ax,) = _figure(1, 1, width=7.0)
  rng = np.random.default_rng(0)  # a small vertical jitter, so members on one level part
  spread = 0.004 * max(float(np.nanmax(levels) - np.nanmin(levels)), 1e-3)
  for member in np.argsort(np.nan_to_num(score, nan=-np.inf)):  # best drawn last (on top)
    color = "lightgrey" if not np.isfinite(score[member]) else cmap(norm(score[member]))
    jitter = rng.normal(0.0, spread)
    ax.step(epochs, levels[member] + jitter, where="pre", color=color, lw=1.2, alpha=0.85)
  for boundary in range(
    int(result.config["pbt"]["interval"]), int(epochs[-1]), int(result.config["pbt"]["interval"])
  ):
    ax.axvline(boundary, color="black", lw=0.5, alpha=0.2)
  fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax,
               label=f"final validation {result.selection}")  # fmt: skip
  ax.set_xlabel("epoch")
  ax.set_ylabel("flood level" if name == "flood_level" else name)
  ax.grid(alpha=0.3)
  _suptitle(fig, title or _describe(result, "PBT: each member's level over the epochs"))
  return _save(fig, path, dpi)


def plot_overview(
  result: SweepResult,
  path: PathLike,
  levels: Sequence[float] | None = None,
  *,
  title: str | None = None,
  dpi: int = _DPI,
) -> PathLike:
  """One figure of three panels: training loss, test loss, accuracy vs level.

  The panels of :func:`plot_curves` and :func:`plot_accuracy_vs_level` side
  by side: what flooding does to the curves, and which level wins.

  Args:
    result: the sweep.
    path: where to write the PNG.
    levels: the levels drawn as curves; default :func:`default_curve_levels`.
    title: figure title; default names the data set, model and seeds.
    dpi: resolution in dots per inch (figures are 4.2 inches high).

  Returns:
    ``path``.

  Raises:
    ValueError: a level that is not in the sweep.
  """
  result = result.at_best_hyperparams()  # levels x seeds at the best hyperparameters
  indices = _level_indices(result, levels)
  fig, (ax_train, ax_test, ax_acc) = _figure(1, 3, width=15.0)
  for index in indices:
    _draw_curve(ax_train, result, "train_loss", index, draw_level=True)
    _draw_curve(ax_test, result, "test_loss", index)
  ax_train.set_title("training loss (unflooded)")
  ax_test.set_title("test loss")
  for ax in (ax_train, ax_test):
    _style_loss_axis(ax, result)
  ax_test.legend(title=_legend_title(result, indices), fontsize="small")
  _draw_accuracy(ax_acc, result)
  _suptitle(fig, title or _describe(result, "flooding sweep"))
  return _save(fig, path, dpi)


# -- drawing helpers ----------------------------------------------------------


def _figure(rows: int, cols: int, width: float) -> tuple[Figure, list[Axes]]:
  fig = Figure(figsize=(width, 4.2), layout="constrained")
  FigureCanvasAgg(fig)
  axes = fig.subplots(rows, cols, squeeze=False)
  return fig, list(axes.ravel())


def _suptitle(fig: Figure, text: str) -> None:
  """The figure's title, wrapped onto as many lines as its width needs (never cut off)."""
  import textwrap

  # 'large' (12 pt) text averages about 0.55 em a character: ~11 characters an inch.
  width_chars = max(20, int(fig.get_figwidth() * 72 / (12 * 0.55)) - 4)
  fig.suptitle(textwrap.fill(text, width=width_chars), fontsize="large")


def _legend_title(result: SweepResult, indices: Sequence[int]) -> str:
  """ "flood level", saying which levels are left out when not all are drawn."""
  total = len(result.flood_levels)
  if len(indices) == total:
    return "flood level"
  left_out = [i for i in range(total) if i not in set(indices)]
  if len(left_out) > 4:  # too many to name: the entries below say which are drawn
    return f"flood level ({len(indices)} of {total} drawn)"
  missing = ", ".join(f"{_shortest(result.flood_levels[i]):g}" for i in left_out)
  return f"flood level ({len(indices)} of {total};\nnot drawn: b = {missing})"


def _save(fig: Figure, path: PathLike, dpi: int) -> PathLike:
  """Writes the figure to ``path`` whole or not at all (a full disk leaves no half a PNG)."""
  name = os.fspath(path)
  directory = os.path.dirname(name)
  if directory:
    check_directory("the plot's folder", directory)
    os.makedirs(directory, exist_ok=True)
  if os.path.isdir(name):
    raise ValueError(f"{name} is a directory; give a file name for the plot, e.g. {name}/plot.png.")
  extension = os.path.splitext(name)[1][1:]
  if not extension:  # matplotlib adds its default format's to the name
    fig.savefig(path, dpi=dpi)
    return path
  tmp = f"{name}.tmp"
  try:
    fig.savefig(tmp, dpi=dpi, format=extension)
    os.replace(tmp, name)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  return path


def _level_indices(result: SweepResult, levels: Sequence[float] | None) -> list[int]:
  """Indices into ``result.flood_levels`` of ``levels``, matched to float32."""
  if levels is None:
    levels = default_curve_levels(result)
  grid = np.asarray(result.flood_levels, np.float64)
  indices = []
  for level in levels:
    match = np.flatnonzero(np.isclose(grid, float(level), rtol=1e-5, atol=1e-7))
    if match.size == 0:
      known = ", ".join(f"{b:.4g}" for b in grid)
      raise ValueError(f"flood level {level} is not in the sweep; its levels are: {known}.")
    indices.append(int(match[0]))
  return list(dict.fromkeys(indices))


def _color(result: SweepResult, index: int):
  from matplotlib import colormaps

  grid = np.asarray(result.flood_levels)
  rank = int(np.sum(grid < grid[index]))
  position = rank / max(len(grid) - 1, 1)
  return colormaps["viridis"](0.9 * position)  # skip the pale yellow end


def _label(result: SweepResult, index: int) -> str:
  level = _shortest(result.flood_levels[index])
  notes = [
    note
    for note, applies in [
      ("no flooding", level == 0),
      ("best", index == result.index(result.best_flood_level)[0]),
    ]
    if applies
  ]
  return f"b = {level:.4g}" + (f" ({', '.join(notes)})" if notes else "")


def _draw_curve(
  ax: Axes, result: SweepResult, metric: str, index: int, draw_level: bool = False
) -> None:
  """Mean over seeds of ``metric`` per epoch, with a one-std band."""
  runs = np.asarray(result.history[metric][index], np.float64)  # (seeds, epochs)
  mean, std = runs.mean(axis=0), runs.std(axis=0)
  epochs = cast(np.ndarray, result.epochs)  # set by SweepResult.__post_init__
  color = _color(result, index)
  ax.plot(epochs, mean, color=color, lw=1.6, label=_label(result, index))
  if runs.shape[0] > 1:
    low = mean - std
    if metric.endswith("loss"):
      low = np.maximum(low, _LOG_FLOOR)
    ax.fill_between(epochs, low, mean + std, color=color, alpha=0.2, lw=0)
  level = float(result.flood_levels[index])
  if draw_level and level > 0:
    ax.axhline(level, color=color, lw=1.0, ls=":")


def _selected(result: SweepResult) -> str:
  """The selection metric in words: ``accuracy`` (classification), ``loss``, a metric's name."""
  return result.selection


def _style_loss_axis(ax: Axes, result: SweepResult) -> None:
  """A log axis when the curves span more than a decade, else a linear one."""
  values = np.concatenate(
    [np.asarray(line.get_ydata()) for line in ax.get_lines() if np.size(line.get_ydata()) > 2]
    or [np.ones(1)]
  )
  values = values[np.isfinite(values) & (values > 0)]
  log = values.size > 0 and values.max() > 10 * values.min()
  if log:
    ax.set_yscale("log")
  ax.set_xlabel("epoch")
  classification = result.selection_key == "val_accuracy"
  ax.set_ylabel(
    ("cross-entropy loss" if classification else "loss") + (" (log scale)" if log else "")
  )
  ax.grid(alpha=0.3, which="both")


def _draw_accuracy(ax: Axes, result: SweepResult) -> None:
  """Final test and validation accuracy (the selection metric) vs level, mean +/- std over seeds."""
  levels = np.asarray(result.flood_levels, np.float64)
  order = np.argsort(levels)
  selected = _selected(result)
  for metric, name, marker, color in [
    (f"test_{selected}", "test", "o", "tab:blue"),
    (f"val_{selected}", "validation", "s", "tab:orange"),
  ]:
    final = np.asarray(result.history[metric][..., -1], np.float64)  # (levels, seeds)
    mean, std = final.mean(axis=1)[order], final.std(axis=1)[order]
    ax.errorbar(
      levels[order],
      mean,
      yerr=std,
      marker=marker,
      ms=4,
      capsize=3,
      lw=1.4,
      color=color,
      label=f"{name} {selected}",
    )
    ax.fill_between(levels[order], mean - std, mean + std, color=color, alpha=0.12, lw=0)
  best = result.best_flood_level
  ax.axvline(
    best, color="black", ls="--", lw=1.0, label=f"best level b = {best:.4g} (by validation)"
  )
  ax.set_xlabel("flood level b")
  ax.set_ylabel(f"final {selected} (mean ± std, {_seeds(result)})")
  ax.set_title(f"final {selected} vs flood level")
  ax.grid(alpha=0.3)
  ax.legend(fontsize="small")


def _describe(result: SweepResult, what: str) -> str:
  """A title: what, then the data set, model and seeds when the config has them."""
  command = result.config.get("cli", {}) if isinstance(result.config, dict) else {}
  parts = [str(command[k]) for k in ("dataset", "model") if command.get(k)]
  if command.get("model") == "mlp" and command.get("hidden") and command.get("depth"):
    parts[-1] += f" ({command['depth']} x {command['hidden']} wide)"
  selected = result.config.get("selected", {}) if isinstance(result.config, dict) else {}
  parts += [f"{name} {value:.4g}" for name, value in selected.items()]
  parts.append(_seeds(result))
  parts.append(f"{result.num_epochs} epochs")
  return f"{what}: " + ", ".join(parts)


def _seeds(result: SweepResult) -> str:
  return f"{len(result.seeds)} seed{'s' if len(result.seeds) != 1 else ''}"
