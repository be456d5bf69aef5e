"""The plots: each writes a valid PNG of a hand-made sweep, without a display."""

import numpy as np
import pytest

import flood_jax as fj
from flood_jax import plots
from flood_jax._result import METRICS

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
LEVELS = np.array([0.0, 0.05, 0.1, 0.2, 0.4], np.float32)
EVERY_PLOT = [
  plots.plot_curves,
  plots.plot_accuracy_vs_level,
  plots.plot_flooded_fraction,
  plots.plot_overview,
]


def _sweep_result(levels=LEVELS, seeds=(0, 1, 2), epochs=30):
  """Curves shaped like a real sweep: flooding keeps the training loss at b."""
  rng = np.random.default_rng(0)
  t = np.arange(1, epochs + 1)
  shape = (len(levels), len(seeds), epochs)
  b = np.asarray(levels)[:, None, None]
  train = np.maximum(2.0 * np.exp(-t / 4.0), b) + 1e-3 + 0.01 * rng.random(shape)
  test = 0.8 + 0.02 * t * (b == 0) + 0.05 * rng.random(shape)
  val_acc = np.clip(0.7 + 0.3 * b - 0.5 * (b - 0.1) ** 2 + 0.01 * rng.standard_normal(shape), 0, 1)
  history = {
    "train_loss": train,
    "val_loss": test,
    "val_accuracy": val_acc,
    "test_loss": test,
    "test_accuracy": val_acc - 0.01,
    "flooded_fraction": np.where(b > 0, 0.5, 0.0) * np.ones(shape),
  }
  assert set(history) == set(METRICS)
  return fj.SweepResult(
    flood_levels=np.asarray(levels, np.float32),
    seeds=np.asarray(seeds),
    history=history,
    config={"cli": {"dataset": "toy", "model": "mlp"}},
  )


def _assert_png(path, min_bytes=10_000):
  with open(path, "rb") as f:
    content = f.read()
  assert content[:8] == PNG_SIGNATURE
  assert len(content) > min_bytes  # axes, curves and text, not a blank canvas


@pytest.mark.parametrize("plot", EVERY_PLOT)
def test_each_plot_writes_a_png_and_returns_its_path(plot, tmp_path):
  path = tmp_path / "sub" / "figure.png"  # the folder is made
  assert plot(_sweep_result(), path) == path
  _assert_png(path)


def test_a_single_seed_and_a_single_level_plot(tmp_path):
  result = _sweep_result(levels=[0.0], seeds=(0,), epochs=2)
  for plot in (
    plots.plot_curves,
    plots.plot_accuracy_vs_level,
    plots.plot_flooded_fraction,
    plots.plot_overview,
  ):
    _assert_png(plot(result, tmp_path / f"{plot.__name__}.png"), min_bytes=5_000)


def test_nan_in_the_history_still_plots(tmp_path):
  result = _sweep_result()
  result.history["test_loss"][1, 0, 5:] = np.nan  # e.g. a run that diverged
  _assert_png(plots.plot_curves(result, tmp_path / "curves.png"))


def test_default_curve_levels_are_none_best_and_spread():
  result = _sweep_result()
  chosen = plots.default_curve_levels(result)
  assert len(chosen) == 4 and chosen == sorted(chosen)
  assert {0.0, result.best_flood_level, 0.4} <= set(chosen)  # as given, not float32's 0.40000000596
  assert plots.default_curve_levels(_sweep_result(levels=[0.0, 0.1])) == pytest.approx([0.0, 0.1])


def test_chosen_levels_and_an_unknown_level(tmp_path):
  result = _sweep_result()
  _assert_png(plots.plot_curves(result, tmp_path / "a.png", levels=[0.0, 0.1]))
  with pytest.raises(ValueError, match="not in the sweep"):
    plots.plot_curves(result, tmp_path / "b.png", levels=[0.3])


def test_plots_leave_pyplot_alone(tmp_path):
  import matplotlib
  import matplotlib.pyplot as plt

  backend = matplotlib.get_backend()
  plots.plot_overview(_sweep_result(), tmp_path / "overview.png")
  assert plt.get_fignums() == []
  assert matplotlib.get_backend() == backend


def test_a_sweep_with_a_hyperparameter_axis_is_drawn_at_its_best_value(tmp_path):
  base = _sweep_result()
  # Second learning rate: same curves, 0.1 lower accuracy, so the first wins.
  history = {
    m: np.stack([v, v - (0.1 if "accuracy" in m else 0.0)], axis=1) for m, v in base.history.items()
  }
  result = fj.SweepResult(
    flood_levels=base.flood_levels,
    seeds=base.seeds,
    history=history,
    hyperparams={"learning_rate": np.array([0.01, 0.1], np.float32)},
    config=base.config,
  )
  assert result.best()["learning_rate"] == pytest.approx(0.01)
  assert plots.default_curve_levels(result) == plots.default_curve_levels(base)
  path = plots.plot_overview(result, str(tmp_path / "overview.png"))
  _assert_png(path)


def _drawn_figure(monkeypatch, plot, result, tmp_path, **kwargs):
  """The matplotlib Figure a plot function saves (captured at its save)."""
  saved = {}
  save = plots._save
  monkeypatch.setattr(
    plots, "_save", lambda fig, path, dpi: saved.setdefault("fig", fig) and save(fig, path, dpi)
  )
  plot(result, tmp_path / "plot.png", **kwargs)
  fig = saved["fig"]
  fig.canvas.draw()
  return fig


@pytest.mark.parametrize("plot", EVERY_PLOT)
def test_a_long_title_fits_its_figure(plot, tmp_path, monkeypatch):
  title = "final accuracy vs flood level: " + ", ".join(["a long data set name"] * 6)
  fig = _drawn_figure(monkeypatch, plot, _sweep_result(), tmp_path, title=title)
  box = fig._suptitle.get_window_extent()  # pyright: ignore[reportOptionalMemberAccess]
  assert box.x0 >= 0 and box.x1 <= fig.bbox.width, (box, fig.bbox)
  assert "\n" in fig._suptitle.get_text()  # pyright: ignore[reportOptionalMemberAccess]


def test_curves_of_some_levels_say_which_are_left_out(tmp_path, monkeypatch):
  levels = np.array([0.0, 0.05, 0.1, 0.15, 0.2, 0.3], np.float32)
  fig = _drawn_figure(monkeypatch, plots.plot_curves, _sweep_result(levels), tmp_path)
  titles = [ax.get_legend().get_title().get_text() for ax in fig.axes if ax.get_legend()]
  drawn = len(plots.default_curve_levels(_sweep_result(levels)))
  assert drawn < 6 and titles == [f"flood level ({drawn} of 6;\nnot drawn: b = 0.15, 0.2)"]
  all_levels = _drawn_figure(
    monkeypatch,
    plots.plot_curves,
    _sweep_result(levels),
    tmp_path,
    levels=[float(b) for b in levels],
  )
  assert [ax.get_legend().get_title().get_text() for ax in all_levels.axes if ax.get_legend()] == [
    "flood level"
  ]
  many = _sweep_result(np.linspace(0, 0.6, 30).astype(np.float32))
  fig = _drawn_figure(monkeypatch, plots.plot_curves, many, tmp_path)
  titles = [ax.get_legend().get_title().get_text() for ax in fig.axes if ax.get_legend()]
  assert titles == ["flood level (4 of 30 drawn)"]


def test_a_file_where_the_plot_folder_is_meant_is_one_line(tmp_path):
  note = tmp_path / "note.txt"
  note.write_text("mine")
  with pytest.raises(ValueError, match="is a file, not a directory") as raised:
    plots.plot_curves(_sweep_result(epochs=3), note / "curves.png")
  assert "\n" not in str(raised.value) and note.read_text() == "mine"
  with pytest.raises(ValueError, match="is a directory; give a file name"):
    plots.plot_curves(_sweep_result(epochs=3), tmp_path)


def test_a_full_disk_leaves_the_old_plot_whole(tmp_path, monkeypatch):
  import errno

  from matplotlib.figure import Figure

  path = tmp_path / "curves.png"
  plots.plot_curves(_sweep_result(epochs=3), path)
  before = path.read_bytes()
  save = Figure.savefig

  def full(self, fname, **kwargs):
    save(self, fname, **kwargs)  # the bytes land, then the disk is full
    with open(fname, "ab") as f:
      f.write(b"more")
    raise OSError(errno.ENOSPC, "No space left on device")

  monkeypatch.setattr(Figure, "savefig", full)
  with pytest.raises(OSError, match="No space left"):
    plots.plot_accuracy_vs_level(_sweep_result(epochs=3), path)
  assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["curves.png"]
