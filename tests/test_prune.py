"""Successive halving inside a sweep (``fj.sweep(..., prune=fj.Halving(...))``)."""

import math
import os
import pathlib
import re
import subprocess
import sys

import jax
import numpy as np
import optax
import pytest
from helpers import SmallMLP, _Interrupt, _toy_dataset, assert_bitwise_equal

import flood_jax as fj
from flood_jax import _sweep
from flood_jax._sweep.compiled import Program

# Levels the training loss reaches within the first epochs, so the configurations part
# before the rungs (at epoch 2, b = 0.2 would still be bitwise b = 0: a tie).
LEVELS = [0.0, 0.4, 0.6]
LRS = [0.02, 0.1]
SEEDS = [0, 3]
HALVING = fj.Halving(min_epochs=2, factor=2)
KW = dict(
  optimizer=optax.inject_hyperparams(optax.sgd)(learning_rate=0.05, momentum=0.9),
  hyperparams={"learning_rate": LRS},
  epochs=8,
  batch_size=20,
  eval_every=1,
  chunk_size=2,
  progress=False,
)


@pytest.fixture(scope="module")
def data():
  return _toy_dataset()


@pytest.fixture(scope="module")
def unpruned(data):
  return fj.sweep(SmallMLP(), data, flood_levels=LEVELS, seeds=SEEDS, **KW)


@pytest.fixture(scope="module")
def pruned(data):
  return fj.sweep(SmallMLP(), data, flood_levels=LEVELS, seeds=SEEDS, prune=HALVING, **KW)


def expected_pruned_at(result: fj.SweepResult, halving: fj.Halving) -> np.ndarray:
  """The rule, applied to an unpruned sweep's history: per configuration, its rung or 0."""
  val = result.history["val_accuracy"]
  shape = val.shape[:-2]
  alive = np.arange(math.prod(shape))
  pruned_at = np.zeros(len(alive), np.int64)
  for rung in halving.rungs(result.num_epochs):
    at = int(np.flatnonzero(result.epochs == rung)[0])
    scores = val[..., at].mean(-1).reshape(-1)[alive]
    keep = math.ceil(len(alive) / halving.factor)
    threshold = np.sort(scores)[::-1][keep - 1]
    kept = alive[scores >= threshold]  # the best `keep`, and any that tie with the last
    pruned_at[np.setdiff1d(alive, kept)] = rung
    alive = kept
  return pruned_at.reshape(shape)


def test_rungs_and_bad_halving():
  assert fj.Halving(min_epochs=10).rungs(100) == (10, 30, 90)
  assert fj.Halving(min_epochs=4, factor=2).rungs(16) == (4, 8)
  assert fj.Halving(min_epochs=5).survivors_per_rung(27, 100) == [9, 3, 1]
  for kwargs in [
    dict(min_epochs=0),
    dict(min_epochs=2.5),
    dict(min_epochs=3, factor=1),
    dict(min_epochs=True),
  ]:
    with pytest.raises(ValueError, match="Halving"):
      fj.Halving(**kwargs)


def test_bad_prune_arguments(data):
  with pytest.raises(ValueError, match="never prunes"):
    fj.sweep(SmallMLP(), data, flood_levels=LEVELS, prune=fj.Halving(8), **KW)
  with pytest.raises(TypeError, match=r"fj\.Halving"):
    fj.sweep(SmallMLP(), data, flood_levels=LEVELS, prune=3, **KW)


def test_survivors_equal_the_unpruned_sweep_bitwise(pruned, unpruned):
  np.testing.assert_array_equal(pruned.pruned_at, expected_pruned_at(unpruned, HALVING))
  assert pruned.pruned_at.shape == (len(LEVELS), len(LRS))
  assert sorted(np.unique(pruned.pruned_at)) == [0, 2, 4]
  assert np.sum(pruned.pruned_at == 0) == 2  # 6 configurations -> 3 -> 2
  np.testing.assert_array_equal(pruned.epochs, unpruned.epochs)
  for index in np.ndindex(pruned.pruned_at.shape):
    rung = pruned.pruned_at[index]
    stop = len(pruned.epochs) if rung == 0 else rung
    for name in pruned.history:
      np.testing.assert_array_equal(
        pruned.history[name][index][:, :stop], unpruned.history[name][index][:, :stop]
      )
      assert np.all(np.isnan(pruned.history[name][index][:, stop:]))
    if rung == 0:  # trained to the end: the same parameters, bit for bit
      for a, b in zip(
        jax.tree.leaves(pruned.final_params), jax.tree.leaves(unpruned.final_params), strict=True
      ):
        np.testing.assert_array_equal(a[index], b[index])


def test_best_never_picks_a_pruned_configuration(pruned):
  for rule in ("final", "best_val"):
    best = pruned.best(rule)
    where = pruned.index(best["flood_level"], learning_rate=best["learning_rate"])
    assert pruned.pruned_at[where] == 0
  assert not pruned.diverged().any()
  text = pruned.summary()
  assert "pruned" in text.splitlines()[0] and "epoch 2" in text and "epoch 4" in text
  chosen = pruned.select(learning_rate=LRS[0])
  np.testing.assert_array_equal(chosen.pruned_at, pruned.pruned_at[:, 0])


def test_save_and_load_keep_pruned_at(pruned, tmp_path):
  pruned.save(tmp_path, with_params=False)
  np.testing.assert_array_equal(fj.SweepResult.load(tmp_path).pruned_at, pruned.pruned_at)


def test_pruning_runs_fewer_calls(data, monkeypatch):
  """The survivors are re-packed: later segments run fewer chunk-epochs."""
  ran = []
  run = Program.run
  monkeypatch.setattr(
    Program, "run", lambda self, *args: ran.append(self.plan.epochs_per_call) or run(self, *args)
  )
  one_device = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("models",))
  fj.sweep(
    SmallMLP(), data, flood_levels=LEVELS, seeds=SEEDS, prune=HALVING, **dict(KW, mesh=one_device)
  )
  # 12 models in calls of 2: 6 calls to epoch 2, then 6 models (3 calls) to
  # epoch 4, then 4 models (2 calls) to epoch 8; unpruned: 6 calls x 8 epochs.
  assert sum(ran) == 6 * 2 + 3 * 2 + 2 * 4


def test_configurations_that_tie_at_a_rung_are_kept_together(data):
  """Levels the loss has not reached by the rung are bitwise b = 0 there: kept or cut together."""
  levels = [0.0, 0.05, 0.1, 0.6]  # by epoch 2 only b = 0.6 has flooded
  kw = dict(KW, hyperparams=None, optimizer=optax.sgd(0.05, momentum=0.9))
  full = fj.sweep(SmallMLP(), data, flood_levels=levels, seeds=SEEDS, **kw)
  pruned = fj.sweep(SmallMLP(), data, flood_levels=levels, seeds=SEEDS, prune=HALVING, **kw)
  at = int(np.flatnonzero(full.epochs == 2)[0])
  early = full.history["val_accuracy"][:3, :, : at + 1]
  assert np.array_equal(early[0], early[1]) and np.array_equal(early[0], early[2])
  # ceil(4 / 2) = 2 to keep, but the three unflooded levels tie: all three stay or go.
  cut = pruned.pruned_at[:3] == 2
  assert cut.all() or not cut.any(), pruned.pruned_at
  np.testing.assert_array_equal(pruned.pruned_at, expected_pruned_at(full, HALVING))


@pytest.mark.parametrize("after", [2, 5])
def test_resumed_pruned_sweep_equals_uninterrupted(data, tmp_path, monkeypatch, after):
  one_device = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("models",))
  kw = dict(
    KW,
    epochs_per_call=2,
    eval_every=3,
    mesh=one_device,
    hyperparams=None,
    optimizer=optax.adam(1e-2),
  )
  run = lambda d: fj.sweep(
    SmallMLP(batch_norm=True),
    data,
    flood_levels=[0.0, 0.1, 0.2, 0.3],
    seeds=[0],
    prune=HALVING,
    checkpoint_dir=d,
    **kw,
  )
  monkeypatch.setattr(_sweep.checkpoint, "EVERY_S", 0.0)  # save after every call
  full = run(tmp_path / "a")
  assert set(full.epochs.tolist()) >= {2, 3, 4, 6, 8}  # the rungs are evaluated
  with monkeypatch.context() as patch:
    # 4 configurations in calls of 2: after 2 updates, in the first segment's
    # second call; after 5, past both rungs, in the last segment.
    patch.setattr(_sweep.driver, "_progress_bar", lambda *args: _Interrupt(after=after))
    with pytest.raises(KeyboardInterrupt):
      run(tmp_path / "b")
  assert any(name.startswith("done_") for name in os.listdir(tmp_path / "b"))
  resumed = run(tmp_path / "b")
  assert_bitwise_equal(resumed, full)
  np.testing.assert_array_equal(resumed.pruned_at, full.pruned_at)
  with pytest.raises(ValueError, match="differs in: prune"):
    fj.sweep(
      SmallMLP(batch_norm=True),
      data,
      flood_levels=[0.0, 0.1, 0.2, 0.3],
      seeds=[0],
      prune=fj.Halving(2, 3),
      checkpoint_dir=tmp_path / "b",
      **kw,
    )


def test_readme_pruning_example_runs_in_a_fresh_interpreter():
  root = pathlib.Path(__file__).resolve().parents[1]
  section = (root / "README.md").read_text().split("**Pruning.**", 1)[1].split("\n## ", 1)[0]
  code = re.findall(r"```python\n(.*?)```", section, flags=re.S)[0]
  # What the example shows: at every rung the configurations cut scored below every one
  # kept (a cut decided by real differences, not by ties in grid order), and some levels
  # had flooded before the first rung.
  check = """
import numpy as np
full = fj.sweep(result.model, ds, flood_levels=result.flood_levels.tolist(),
                seeds=result.seeds.tolist(), optimizer=optax.adam(1e-2), epochs=27,
                batch_size=50, eval_every=1, progress=False)
np.testing.assert_array_equal(result.pruned_at, np.asarray(eval(EXPECTED)))
for rung in (6, 18):
  alive = (result.pruned_at == 0) | (result.pruned_at >= rung)
  score = full.history["val_accuracy"][:, :, rung - 1].mean(axis=1)
  cut = result.pruned_at == rung
  assert cut.any() and score[cut].max() < score[alive & ~cut].min(), (rung, score, result.pruned_at)
first = full.history["flooded_fraction"][1:, :, :6].max(axis=(1, 2))
assert (first > 0).sum() >= 4, first
print("CHECKED")
"""
  expected = re.search(r"print\(result\.pruned_at\)  # (\[[ 0-9]+\])", code)
  assert expected, "the example's comment gives pruned_at"
  expected_list = repr([int(v) for v in expected.group(1)[1:-1].split()])
  code += check.replace("EXPECTED", repr(expected_list))
  proc = subprocess.run(
    [sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=root
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "pruned" in proc.stdout and "epoch 6" in proc.stdout and "CHECKED" in proc.stdout


def test_nnx_survivors_with_dropout_keep_their_random_streams(data):
  """An NNX model's random streams (typed keys) pass through the re-packing intact."""
  from flax import nnx

  class Net(nnx.Module):
    def __init__(self, rngs):
      self.hidden = nnx.Linear(2, 16, rngs=rngs)
      self.norm = nnx.BatchNorm(16, rngs=rngs)
      self.drop = nnx.Dropout(0.2, rngs=rngs)
      self.out = nnx.Linear(16, 2, rngs=rngs)

    def __call__(self, x):
      return self.out(self.drop(nnx.relu(self.norm(self.hidden(x)))))

  run = lambda prune: fj.sweep(
    lambda rngs: Net(rngs),
    data,
    # Levels the loss reaches in the first epochs, so that they part before the rung
    # (levels not reached yet are bitwise b = 0 there, would tie and all be kept).
    flood_levels=[0.0, 0.5, 0.7, 0.9],
    seeds=[1],
    optimizer=optax.adam(1e-2),
    epochs=4,
    batch_size=20,
    eval_every=1,
    chunk_size=2,
    progress=False,
    prune=prune,
  )
  full, pruned = run(None), run(HALVING)
  np.testing.assert_array_equal(pruned.pruned_at, expected_pruned_at(full, HALVING))
  survivors = np.flatnonzero(pruned.pruned_at == 0)
  assert len(survivors) == 2  # 4 levels, one rung at epoch 2
  for name in full.history:
    np.testing.assert_array_equal(pruned.history[name][survivors], full.history[name][survivors])
  jax.tree.map(
    lambda a, b: np.testing.assert_array_equal(a[survivors], b[survivors]),
    (pruned.final_params, pruned.final_batch_stats),
    (full.final_params, full.final_batch_stats),
  )


def test_trend_score_ranks_by_the_forecast_at_the_last_epoch(data, unpruned):
  """``score="trend"``: a line through the rung's second half, read at the last epoch."""
  halving = fj.Halving(min_epochs=4, factor=2, score="trend")
  pruned = fj.sweep(SmallMLP(), data, flood_levels=LEVELS, seeds=SEEDS, prune=halving, **KW)
  val, epochs = unpruned.history["val_accuracy"], unpruned.epochs
  alive = np.arange(math.prod(unpruned.config_shape))
  expected = np.zeros(len(alive), np.int64)
  for rung in halving.rungs(unpruned.num_epochs):
    window = (epochs > rung / 2) & (epochs <= rung)
    flat = val.reshape(len(alive), len(SEEDS), -1)[..., window]
    forecast = np.array(
      [
        [np.polyval(np.polyfit(epochs[window], series, 1), unpruned.num_epochs) for series in seeds]
        for seeds in flat
      ]
    ).mean(axis=1)[alive]
    keep = math.ceil(len(alive) / halving.factor)
    kept = alive[forecast >= np.sort(forecast)[::-1][keep - 1] - 1e-12]
    expected[np.setdiff1d(alive, kept)] = rung
    alive = kept
  np.testing.assert_array_equal(pruned.pruned_at.reshape(-1), expected)
  assert np.any(pruned.pruned_at)
  with pytest.raises(ValueError, match="score"):
    fj.Halving(4, 2, score="loss")
