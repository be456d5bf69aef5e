"""Population-based training of the flood level in a sweep (``fj.sweep(..., pbt=fj.PBT(...))``)."""

import dataclasses
import json
import os

import jax
import numpy as np
import optax
import pytest
from helpers import SmallMLP, _Interrupt, _toy_dataset, assert_bitwise_equal

import flood_jax as fj
from flood_jax import _sweep
from flood_jax._sweep import driver
from flood_jax._sweep.pbt import hyperparam_leaves

# Levels the training loss reaches within the first epochs, so the members part before the
# first boundary (as in test_prune).
LEVELS = [0.0, 0.4, 0.6]
LRS = [0.02, 0.1]
SEEDS = [0, 3]
FACTORS = (0.8, 1.25)
PBT = fj.PBT(interval=2, fraction=0.5, factors=FACTORS)
KW = dict(
  optimizer=optax.inject_hyperparams(optax.sgd)(learning_rate=0.05, momentum=0.9),
  hyperparams={"learning_rate": LRS},
  epochs=6,
  batch_size=20,
  eval_every=1,
  chunk_size=2,
  progress=False,
)


@pytest.fixture(scope="module")
def data():
  return _toy_dataset()


def run(data, **kw):
  return fj.sweep(SmallMLP(), data, flood_levels=LEVELS, seeds=SEEDS, **dict(KW, **kw))


@pytest.fixture(scope="module")
def explored(data):
  """A PBT sweep, and at each boundary the carries before and after the exploit step."""
  seen = []
  original = driver._Loop.exploit

  def exploit(self, policy, stop):
    before = [np.copy(x) for x in self.state.carries]
    original(self, policy, stop)
    hparams = hyperparam_leaves(self.programs.carry_structure, ("learning_rate",))[0]
    seen.append((stop, before, [np.copy(x) for x in self.state.carries], hparams))

  driver._Loop.exploit = exploit
  try:
    result = run(data, pbt=PBT)
  finally:
    driver._Loop.exploit = original
  return result, seen


def test_fraction_zero_is_the_plain_sweep_bitwise(data):
  plain = run(data)
  zero = run(data, pbt=fj.PBT(interval=2, fraction=0.0))
  assert_bitwise_equal(zero, plain)
  assert set(zero.history) == {*plain.history, "flood_level", "learning_rate"}
  own = np.arange(len(LEVELS) * len(LRS)).reshape(len(LEVELS), len(LRS), 1, 1)
  np.testing.assert_array_equal(zero.lineage, np.broadcast_to(own, (3, 2, 2, 2)))


def test_two_equal_calls_are_bitwise_equal(data, explored):
  result, _ = explored
  again = run(data, pbt=PBT)
  assert_bitwise_equal(again, result)
  np.testing.assert_array_equal(again.lineage, result.lineage)
  assert result.lineage.shape == (3, 2, 2, 2)  # levels, lrs, seeds, boundaries (after 2, 4)
  assert (result.lineage != np.arange(6).reshape(3, 2, 1, 1)).any()  # some copied


def _flat(result, name, boundary_index):
  """``history[name]`` at the epoch of the boundary, (seeds, configurations)."""
  at = int(np.flatnonzero(result.epochs == 2 * (boundary_index + 1))[0])
  values = result.history[name][..., at]
  return np.moveaxis(values, -1, 0).reshape(len(SEEDS), -1)


def test_levels_change_only_at_boundaries_by_the_factors(explored):
  result, _ = explored
  assert list(result.epochs) == [1, 2, 3, 4, 5, 6]
  for name, grid in [("flood_level", LEVELS), ("learning_rate", LRS)]:
    values = np.moveaxis(result.history[name], -2, 0).reshape(len(SEEDS), -1, 6)
    changed = values[..., 1:] != values[..., :-1]  # (seeds, configs, epochs - 1)
    # Epoch e (index e - 1) differs from e - 1 only when e - 1 is a boundary (2 or 4).
    assert not changed[..., [0, 2, 4]].any()
    assert changed.any()
    np.testing.assert_array_equal(values[..., 0], np.broadcast_to(_start(grid, name), (2, 6)))
    for k in range(2):
      lineage = np.moveaxis(result.lineage[..., k], -1, 0).reshape(len(SEEDS), -1)
      old = _flat(result, name, k)
      new = values[..., 2 * k + 2]  # epoch 2k + 3: the next segment's value
      for s in range(len(SEEDS)):
        for c in range(6):
          source = lineage[s, c]
          if source == c:
            assert new[s, c] == old[s, c]
          else:
            options = [np.float32(np.float64(old[s, source]) * f) for f in FACTORS]
            assert new[s, c] in options, (name, s, c, new[s, c], options)


def _start(grid, name):
  """The grid's starting value of each configuration, flat (levels outermost)."""
  levels, lrs = np.meshgrid(np.float32(LEVELS), np.float32(LRS), indexing="ij")
  return (levels if name == "flood_level" else lrs).reshape(-1)


def _sources(result, k):
  """Flat (seed-major) model each model went on from at boundary ``k``."""
  lineage = np.moveaxis(result.lineage[..., k], -1, 0).reshape(-1)
  return lineage + 6 * (np.arange(len(lineage)) // 6)


def test_a_copied_member_carries_its_sources_state_bitwise(explored):
  result, seen = explored
  assert [stop for stop, *_ in seen] == [2, 4]
  for k, (_, before, after, hparams) in enumerate(seen):
    source = _sources(result, k)
    copied = np.flatnonzero(source != np.arange(len(source)))
    assert len(copied) == 3 * len(SEEDS)  # the worst half of each population of 6
    kept = np.setdiff1d(np.arange(len(source)), copied)
    assert len(hparams) == 1  # the learning rate's leaf in the optimizer state
    for i, (old, new) in enumerate(zip(before, after, strict=True)):
      np.testing.assert_array_equal(new[kept], old[kept])  # the others untouched
      if i in hparams:  # the explored learning rate, as the history says
        lr = np.moveaxis(result.history["learning_rate"][..., 2 * k + 2], -1, 0).reshape(-1)
        np.testing.assert_array_equal(new, lr.astype(new.dtype))
      else:  # parameters, momentum, step count, random state: the source's, bit for bit
        np.testing.assert_array_equal(new[copied], old[source[copied]])


def test_lineage_points_from_worse_to_better_members(explored):
  result, _ = explored
  for k in range(2):
    score = _flat(result, "val_accuracy", k).reshape(-1)
    source = _sources(result, k)
    copied = np.flatnonzero(source != np.arange(len(source)))
    assert np.all(score[source[copied]] >= score[copied])
    # Sources are in the top half, copiers in the bottom half of their population.
    for s in range(len(SEEDS)):
      mine = copied[copied // 6 == s]
      others = np.setdiff1d(np.arange(6 * s, 6 * s + 6), mine)
      assert score[mine].max() <= score[others].min()


def test_best_names_a_member_and_its_level_schedule(explored, data):
  result, _ = explored
  best = result.best()
  assert set(best) == {"flood_level", "learning_rate", "member", "seed"}
  where = result.index(**best)
  assert best["flood_level"] == pytest.approx(float(result.history["flood_level"][where][-1]))
  schedule = result.level_schedule()
  steps = data.num_train // KW["batch_size"]
  assert schedule.boundaries == (2 * steps, 4 * steps)
  levels = result.history["flood_level"][where]
  for epoch in range(1, 7):
    assert float(schedule((epoch - 1) * steps)) == pytest.approx(float(levels[epoch - 1]))
  fj.flood(schedule)  # a schedule fj.flood takes
  assert "PBT" in result.summary() and result.config["pbt"]["interval"] == 2
  # The command line's verdicts compare a level's row with b = 0's: no row is a level's here.
  from flood_jax.cli.sweep_report import flooding_effect, loss_verdict

  moved = dict(result.history, flood_level=result.history["flood_level"] * 1.1 + 0.01)
  off_grid = dataclasses.replace(result, history=moved)  # the winner ends off the grid
  assert off_grid.best()["flood_level"] not in LEVELS
  for pbt_result in (result, off_grid):
    assert flooding_effect(pbt_result) is None and loss_verdict(pbt_result) is None


@pytest.mark.parametrize(
  ("kwargs", "error", "match"),
  [
    (dict(interval=0), ValueError, "PBT interval must be an integer >= 1"),
    (dict(interval=2, fraction=0.6), ValueError, r"fraction must be a number in \[0, 0.5\]"),
    (dict(interval=2, factors=(0.8,)), ValueError, "factors must be a pair of positive"),
    (dict(interval=2, factors=(0.8, -1.0)), ValueError, "factors must be a pair of positive"),
    (dict(interval=2, resample=2.0), ValueError, "resample must be a probability"),
  ],
)
def test_bad_pbt_arguments_are_one_line(kwargs, error, match):
  with pytest.raises(error, match=match) as info:
    fj.PBT(**kwargs)
  assert "\n" not in str(info.value)


def test_bad_pbt_in_a_sweep_is_one_line(data):
  with pytest.raises(ValueError, match="never exploits a sweep of 6 epochs"):
    run(data, pbt=fj.PBT(6))
  with pytest.raises(ValueError, match="pbt= and prune= do not compose"):
    run(data, pbt=fj.PBT(2), prune=fj.Halving(2))
  with pytest.raises(TypeError, match=r"pbt must be fj\.PBT"):
    run(data, pbt=2)


@pytest.mark.parametrize("after", [3, 6])
def test_resumed_pbt_sweep_equals_uninterrupted(data, tmp_path, monkeypatch, after):
  one_device = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("models",))
  kw = dict(KW, epochs_per_call=1, eval_every=3, mesh=one_device, hyperparams=None,
            optimizer=optax.adam(1e-2), epochs=4)  # fmt: skip
  sweep = lambda d: fj.sweep(
    SmallMLP(batch_norm=True), data, flood_levels=[0.1, 0.2, 0.3, 0.4], seeds=[0],
    pbt=fj.PBT(2, 0.5), checkpoint_dir=d, **kw,
  )  # fmt: skip
  monkeypatch.setattr(_sweep.checkpoint, "EVERY_S", 0.0)  # save after every call
  full = sweep(tmp_path / "a")
  assert (full.lineage != np.arange(4).reshape(4, 1, 1)).any()
  with monkeypatch.context() as patch:
    # 4 members in calls of 2, one epoch per update: after 3 updates, in the first segment;
    # after 6, past the boundary.
    patch.setattr(_sweep.driver, "_progress_bar", lambda *args: _Interrupt(after=after))
    with pytest.raises(KeyboardInterrupt):
      sweep(tmp_path / "b")
  assert any(name.startswith("done_") for name in os.listdir(tmp_path / "b"))
  resumed = sweep(tmp_path / "b")
  assert_bitwise_equal(resumed, full)
  np.testing.assert_array_equal(resumed.lineage, full.lineage)
  with pytest.raises(ValueError, match="differs in: pbt"):
    fj.sweep(SmallMLP(batch_norm=True), data, flood_levels=[0.1, 0.2, 0.3, 0.4], seeds=[0],
             pbt=fj.PBT(2, 0.25), checkpoint_dir=tmp_path / "b", **kw)  # fmt: skip


@pytest.mark.slow
@pytest.mark.skipif(
  not os.environ.get("FLOOD_JAX_PBT_MULTIHOST"),
  reason="three processes, about 45 s on a shared 2-core machine: FLOOD_JAX_PBT_MULTIHOST=1",
)
def test_pbt_on_two_processes_equals_one_process_with_the_same_devices(tmp_path):
  from test_multihost import SPEC, _check_ok, _results
  from test_multihost import _run as run_processes

  # 3 members x 2 seeds, one boundary after epoch 2 (the worst member of each seed copies).
  spec = dict(SPEC, flood_levels=[0.1, 0.2, 0.4], pbt=[2, 0.34])
  _check_ok(run_processes(spec, tmp_path / "two", 2, 2))
  _check_ok(run_processes(spec, tmp_path / "one", 1, 4))
  first, second = _results(tmp_path / "two", 2)
  (alone,) = _results(tmp_path / "one", 1)
  assert set(first) == set(alone) and "lineage" in alone and "history/flood_level" in alone
  for name in alone:
    if name != "info":
      np.testing.assert_array_equal(first[name], second[name], err_msg=name)
      np.testing.assert_array_equal(first[name], alone[name], err_msg=name)
  assert (alone["lineage"] != np.arange(3).reshape(3, 1, 1)).any()


TINY_CLI = [
  "sweep", "--dataset", "two_gaussians", "--label-noise", "0.1", "--seeds", "2", "--epochs", "4",
  "--batch-size", "20", "--hidden", "8", "--depth", "1", "--devices", "1", "--no-progress",
]  # fmt: skip


def test_cli_pbt_runs_and_records_it(tmp_path, capsys):
  from flood_jax import cli

  out_dir = tmp_path / "pbt"
  # With b = 0 in the grid: no "at the best level" line (no row is one level's models).
  code = cli.main([*TINY_CLI, "--levels", "0,0.2,0.4,0.6", "--pbt", "2,0.5", "--out", str(out_dir)])
  out, err = capsys.readouterr()
  assert code == 0, err
  results = json.loads((out_dir / "results.json").read_text())
  assert results["config"]["pbt"]["interval"] == 2 and results["config"]["pbt"]["fraction"] == 0.5
  assert "flood_level" in results["history"] and "PBT" in out
  assert "at the best level" not in out
  assert cli.main([*TINY_CLI, "--pbt", "2,0.9"]) != 0
  assert "FRACTION in [0, 0.5]" in capsys.readouterr().err


def test_trackers_log_the_level_each_member_trains_with(data):
  class Recorder:
    def __init__(self):
      self.calls = []

    def log(self, run, step, metrics):
      self.calls.append((run.index, step, dict(metrics)))

  recorder = Recorder()
  result = run(data, pbt=PBT, loggers=[recorder])
  levels = np.moveaxis(result.history["flood_level"], -2, 0).reshape(-1, 6)  # flat models
  lrs = np.moveaxis(result.history["learning_rate"], -2, 0).reshape(-1, 6)
  assert len(recorder.calls) == 12 * 6
  for model, step, metrics in recorder.calls:
    assert metrics["flood_level"] == pytest.approx(float(levels[model, step - 1]))
    assert metrics["learning_rate"] == pytest.approx(float(lrs[model, step - 1]))
    assert "val_accuracy" in metrics


def test_level_trajectory_plot(explored, tmp_path):
  from flood_jax import plots

  result, _ = explored
  path = plots.plot_level_trajectories(result, tmp_path / "levels.png")
  assert os.path.getsize(path) > 1000
  with pytest.raises(ValueError, match="needs a PBT sweep"):
    plots.plot_level_trajectories(dataclasses.replace(result, lineage=None), tmp_path / "x.png")


def test_save_and_load_keep_the_lineage(explored, tmp_path):
  result, _ = explored
  result.save(tmp_path, with_params=False)
  loaded = fj.SweepResult.load(tmp_path)
  assert loaded.lineage is not None and loaded.lineage.dtype == np.int64
  np.testing.assert_array_equal(loaded.lineage, result.lineage)
  # so a PBT sweep read back names the same member and level schedule
  assert loaded.best() == result.best()
  assert loaded.level_schedule() == result.level_schedule()
