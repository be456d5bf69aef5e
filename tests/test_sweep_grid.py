"""Optimizer hyperparameters on the sweep's grid: a hyperparameter axis equals
separate sweeps, the result names and reads its axes, diverged models are
never chosen, bad grids are refused in one line; NNX state resumes bitwise."""

import json

import jax
import numpy as np
import optax
import pytest
from helpers import _Interrupt, _plain_model, _toy, assert_bitwise_equal, make_nnx

import flood_jax as fj
from flood_jax import _sweep


@pytest.fixture(scope="module")
def data():
  return _toy()


KW = dict(epochs=5, batch_size=16, progress=False, chunk_size=2, eval_every=1)
SGD = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1, momentum=0.9)
LRS = [0.03, 0.3]


@pytest.fixture(scope="module")
def lr_grid(data):
  return fj.sweep(
    _plain_model(),
    data,
    flood_levels=[0.0, 0.2],
    seeds=[0, 4],
    optimizer=SGD,
    hyperparams={"learning_rate": LRS},
    **KW,
  )


def test_a_hyperparameter_axis_equals_separate_sweeps(data, lr_grid):
  assert lr_grid.axes == ("flood_level", "learning_rate", "seed")
  assert lr_grid.history["test_loss"].shape == (2, 2, 2, 5)
  assert lr_grid.final_params["w1"].shape == (2, 2, 2, 4, 16)
  for j, lr in enumerate(LRS):
    alone = fj.sweep(
      _plain_model(),
      data,
      flood_levels=[0.0, 0.2],
      seeds=[0, 4],
      optimizer=optax.inject_hyperparams(optax.sgd)(learning_rate=lr, momentum=0.9),
      **KW,
    )
    for name in alone.history:
      np.testing.assert_array_equal(lr_grid.history[name][:, j], alone.history[name])
    jax.tree.map(
      lambda a, b: np.testing.assert_array_equal(a[:, j], b),  # noqa: B023 (called now)
      lr_grid.final_params,
      alone.final_params,
    )
  # The learning rate matters: the two columns differ.
  assert not np.allclose(lr_grid.history["train_loss"][:, 0], lr_grid.history["train_loss"][:, 1])


def test_two_hyperparameters_keep_the_given_order(data):
  adamw = optax.inject_hyperparams(optax.adamw)(learning_rate=1e-2, weight_decay=1e-4)
  result = fj.sweep(
    _plain_model(),
    data,
    flood_levels=[0.0],
    seeds=[1],
    optimizer=adamw,
    hyperparams={"weight_decay": [0.0, 0.5, 5.0], "learning_rate": [1e-2, 3e-2]},
    **KW,
  )
  assert result.axes == ("flood_level", "weight_decay", "learning_rate", "seed")
  assert result.history["val_loss"].shape == (1, 3, 2, 1, 5)
  # Stronger decay shrinks the weights, whatever the learning rate.
  norms = np.sqrt((np.asarray(result.final_params["w1"]) ** 2).sum((-1, -2)))[0, :, :, 0]
  assert np.all(norms[2] < norms[0])


def test_best_configuration_and_tables(lr_grid, tmp_path):
  scores = lr_grid.history["val_accuracy"][..., -1].mean(-1)  # (levels, lrs)
  i, j = np.unravel_index(np.argmax(scores), scores.shape)
  best = lr_grid.best()
  assert best == {
    "flood_level": pytest.approx([0.0, 0.2][i]),
    "learning_rate": pytest.approx(LRS[j]),
  }
  assert lr_grid.best_flood_level == best["flood_level"]
  rows = lr_grid.table()
  assert [v for r in rows for v in (r["flood_level"], r["learning_rate"])] == pytest.approx(
    [0.0, 0.03, 0.0, 0.3, 0.2, 0.03, 0.2, 0.3]
  )
  text = lr_grid.summary()
  assert "learning_rate" in text.splitlines()[0] and "best configuration" in text
  assert sum("*" in line for line in text.splitlines()[2:-1]) == 1
  selected = lr_grid.select(learning_rate=LRS[1])
  assert selected.axes == ("flood_level", "seed")
  np.testing.assert_array_equal(selected.history["val_loss"], lr_grid.history["val_loss"][:, 1])
  assert lr_grid.at_best_hyperparams().hyperparams == {}
  with pytest.raises(ValueError, match="not in the sweep"):
    lr_grid.select(learning_rate=0.5)
  lr_grid.save(tmp_path)
  raw = json.loads((tmp_path / "results.json").read_text())
  assert raw["axes"] == ["flood_level", "learning_rate", "seed"]
  assert raw["best"]["learning_rate"] == pytest.approx(best["learning_rate"])
  loaded = fj.SweepResult.load(tmp_path)
  assert loaded.axes == lr_grid.axes and loaded.best() == pytest.approx(best)


def test_diverged_models_are_never_chosen(data):
  result = fj.sweep(
    _plain_model(),
    data,
    flood_levels=[0.0],
    seeds=[0],
    optimizer=SGD,
    hyperparams={"learning_rate": [0.1, 1e12]},
    **KW,
  )
  assert np.isnan(result.history["val_loss"][0, 1, 0, -1])
  assert result.best()["learning_rate"] == pytest.approx(0.1)
  assert "diverged" in result.summary().splitlines()[0]


def test_a_sweep_where_every_model_diverged_says_so():
  nan = np.full((2, 1, 3), np.nan)
  history = {m: nan.copy() for m in ("train_loss", "val_loss", "test_loss", "flooded_fraction")}
  history.update(val_accuracy=np.full((2, 1, 3), 0.5), test_accuracy=np.full((2, 1, 3), 0.5))
  result = fj.SweepResult(flood_levels=np.array([0.0, 0.1]), seeds=np.array([0]), history=history)
  with pytest.raises(ValueError, match="every configuration of the sweep diverged"):
    _ = result.best_flood_level
  text = result.summary()
  assert "every configuration diverged" in text and "1/1" in text
  assert "all diverged" in repr(result)


def test_bad_hyperparameter_grids_are_refused(data):
  model = _plain_model()
  with pytest.raises(
    ValueError, match=r"exposes no hyperparameter 'lr'.*\['learning_rate', 'momentum'\]"
  ):
    fj.sweep(model, data, flood_levels=[0.0], optimizer=SGD, hyperparams={"lr": [0.1]}, **KW)
  with pytest.raises(ValueError, match=r"optax\.inject_hyperparams"):
    fj.sweep(
      model,
      data,
      flood_levels=[0.0],
      optimizer=optax.sgd(0.1),
      hyperparams={"learning_rate": [0.1]},
      **KW,
    )
  scheduled = optax.inject_hyperparams(optax.sgd)(learning_rate=optax.linear_schedule(0.1, 0.0, 10))
  with pytest.raises(ValueError, match="is a schedule"):
    fj.sweep(
      model,
      data,
      flood_levels=[0.0],
      optimizer=scheduled,
      hyperparams={"learning_rate": [0.1]},
      **KW,
    )
  with pytest.raises(ValueError, match="non-empty list of numbers"):
    fj.sweep(
      model, data, flood_levels=[0.0], optimizer=SGD, hyperparams={"learning_rate": []}, **KW
    )
  with pytest.raises(ValueError, match="cannot name 'seed'"):
    fj.sweep(model, data, flood_levels=[0.0], optimizer=SGD, hyperparams={"seed": [1]}, **KW)


def test_nnx_with_dropout_and_hyperparams_resumes_bitwise(data, tmp_path, monkeypatch):
  """The carry holds NNX random streams (typed keys): they survive a checkpoint."""
  run = lambda d: fj.sweep(
    make_nnx,
    data,
    flood_levels=[0.0, 0.3],
    seeds=[0],
    optimizer=SGD,
    hyperparams={"learning_rate": [0.05, 0.2]},
    checkpoint_dir=d,
    epochs=6,
    batch_size=16,
    progress=False,
    chunk_size=2,
    epochs_per_call=2,
    mesh=jax.sharding.Mesh(np.array(jax.devices()[:1]), ("models",)),
  )
  monkeypatch.setattr(_sweep.checkpoint, "EVERY_S", 0.0)
  full = run(tmp_path / "a")
  with monkeypatch.context() as patch:
    patch.setattr(_sweep.driver, "_progress_bar", lambda *args: _Interrupt(after=5))
    with pytest.raises(KeyboardInterrupt):
      run(tmp_path / "b")
  assert (tmp_path / "b" / "current").is_dir()
  resumed = run(tmp_path / "b")
  assert_bitwise_equal(resumed, full)


@pytest.mark.parametrize(
  "kwargs,match",
  [
    (dict(flood_levels=["a"]), r"flood_levels must be a non-empty list of numbers.*\['a'\]"),
    (dict(flood_levels=[None, 0.1]), r"flood_levels must be .*\[None, 0\.1\]"),
    (dict(flood_levels=[True, False]), r"flood_levels must be .*\[True, False\]"),
    (dict(flood_levels=[[0.1], 0.2]), r"flood_levels must be .*\[\[0\.1\], 0\.2\]"),
    (dict(flood_levels="0.1"), r"flood_levels must be .*'0\.1'"),
    (dict(hyperparams={"learning_rate": [True]}), r"hyperparams\['learning_rate'\] must be"),
    (dict(hyperparams={"learning_rate": ["0.1"]}), r"hyperparams\['learning_rate'\] must be"),
  ],
)
def test_levels_and_values_that_are_no_numbers_are_one_line(data, kwargs, match):
  args = dict(KW, flood_levels=[0.0], optimizer=SGD) | kwargs
  with pytest.raises(ValueError, match=match):
    fj.sweep(_plain_model(), data, **args)


@pytest.mark.parametrize("gamma", [[True], ["0.5"], [None], 0.5])
def test_gammas_that_are_no_numbers_are_one_line(data, gamma):
  with pytest.raises(ValueError, match=r"^gamma must be a non-empty list of numbers"):
    fj.sweep(_plain_model(), data, objective="adaflood", gamma=gamma, **dict(KW, optimizer=SGD))
