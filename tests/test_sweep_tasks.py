"""Sweeps of tasks other than classification: fj.sweep(..., task=...) end to end.

A regression and a model of pytree, integer inputs each give inside a sweep exactly what they
give alone (a fixed chunk_size: the same compiled program); their numbers do not depend on the
chunk size, the number of devices or an interruption; the best configuration, pruning, the
summary and the saved files follow the task's selection metric and direction; every bad task
is one line before training.
"""

import json
import os
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import flood_jax as fj
from flood_jax import _sweep
from tests.helpers import _Interrupt, assert_bitwise_equal

KW = dict(optimizer=optax.sgd(0.05, momentum=0.9), epochs=4, batch_size=32, progress=False)
LEVELS, SEEDS = [0.0, 0.3, 0.6], [0, 1]


class Regressor(nn.Module):
  @nn.compact
  def __call__(self, x, train):
    return nn.Dense(1)(nn.relu(nn.Dense(8)(x)))


@pytest.fixture(scope="module")
def diabetes():
  return fj.data.load("diabetes")


@pytest.fixture(scope="module")
def grid(diabetes):
  return fj.sweep(
    Regressor(), diabetes, flood_levels=LEVELS, seeds=SEEDS, chunk_size=2,
    task=fj.Regression(), **KW,
  )  # fmt: skip


def test_a_regression_reports_its_metrics_and_selects_by_the_lowest_validation_loss(grid):
  assert tuple(grid.history) == fj.Regression().history_keys
  assert "val_accuracy" not in grid.history
  assert (grid.selection_key, grid.mode) == ("val_loss", "min")
  mean = grid.history["val_loss"][..., -1].mean(-1)
  assert grid.best_flood_level == LEVELS[int(np.argmin(mean))]
  np.testing.assert_allclose(grid.history["val_mse"], grid.history["val_loss"], rtol=1e-6)
  assert np.all(grid.history["test_mae"] > 0)
  assert grid.config["task"] == "Regression()"


def test_a_regression_inside_the_sweep_equals_it_alone(diabetes, grid):
  alone = fj.sweep(
    Regressor(), diabetes, flood_levels=[0.3], seeds=[1], chunk_size=2, task=fj.Regression(), **KW
  )
  for name in grid.history:
    np.testing.assert_array_equal(alone.history[name][0, 0], grid.history[name][1, 1])
  jax.tree.map(
    lambda a, b: np.testing.assert_array_equal(a[0, 0], b[1, 1]), alone.final_params,
    grid.final_params,
  )  # fmt: skip


def test_a_regression_does_not_depend_on_the_chunk_size(diabetes, grid):
  whole = fj.sweep(
    Regressor(), diabetes, flood_levels=LEVELS, seeds=SEEDS, chunk_size=6,
    task=fj.Regression(), **KW,
  )  # fmt: skip
  for name in grid.history:
    np.testing.assert_allclose(whole.history[name], grid.history[name], rtol=1e-5, atol=1e-6)


def test_a_resumed_regression_ends_bitwise_as_uninterrupted(diabetes, tmp_path, monkeypatch):
  one_device = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("models",))
  kw = dict(KW, epochs=6, epochs_per_call=2, chunk_size=2, mesh=one_device)
  run = lambda d: fj.sweep(
    Regressor(), diabetes, flood_levels=LEVELS, seeds=[0], checkpoint_dir=d,
    task=fj.Regression(), **kw,
  )  # fmt: skip
  monkeypatch.setattr(_sweep.checkpoint, "EVERY_S", 0.0)  # save after every call
  full = run(tmp_path / "a")
  with monkeypatch.context() as patch:
    patch.setattr(_sweep.driver, "_progress_bar", lambda *args: _Interrupt(after=4))
    with pytest.raises(KeyboardInterrupt):
      run(tmp_path / "b")  # stops in the second chunk, mid-run
  resumed = run(tmp_path / "b")
  assert_bitwise_equal(resumed, full)


# -- a model of token ids and a mask (a pytree of integer and uint8 inputs) ------------------


def _tokens(n=240, length=6, seed=0, n_train=120, n_val=60):
  rng = np.random.default_rng(seed)
  ids = rng.integers(0, 10, size=(n, length)).astype(np.int32)
  mask = (rng.random((n, length)) < 0.8).astype(np.uint8)
  labels = ((ids == 3) & (mask == 1)).any(1).astype(np.int32)
  x = {"ids": ids, "mask": mask}
  part = lambda a, b: {k: v[a:b] for k, v in x.items()}
  return fj.Dataset(
    x_train=part(0, n_train), y_train=labels[:n_train],
    x_val=part(n_train, n_train + n_val), y_val=labels[n_train : n_train + n_val],
    x_test=part(n_train + n_val, n), y_test=labels[n_train + n_val :],
  )  # fmt: skip


def _bag_of_embeddings():
  def init(key, x):
    k1, k2 = jax.random.split(key)
    return {"emb": jax.random.normal(k1, (10, 8)) * 0.3, "w": jax.random.normal(k2, (8, 2)) * 0.3}

  def apply(params, x, train):
    # The inputs reach the model as given: integer ids, a uint8 mask.
    assert x["ids"].dtype == jnp.int32 and x["mask"].dtype == jnp.uint8
    mask = x["mask"].astype(jnp.float32)[..., None]
    # One-hot rows times the table, a masked sum over the fixed length: on a CPU a gather's
    # gradient (a scatter-add) and a division by a per-example count (a masked mean) round
    # off differently with the chunk's other models, so inside-equals-alone is not bitwise.
    emb = jax.nn.one_hot(x["ids"], 10) @ params["emb"]
    h = (emb * mask).sum(1) / x["ids"].shape[1]
    return jnp.tanh(h) @ params["w"]

  return fj.Model(init=init, apply=apply)


def test_a_token_model_inside_the_sweep_equals_it_alone():
  data = _tokens()
  kw = dict(KW, batch_size=16, optimizer=optax.sgd(0.5, momentum=0.9))
  # (level 0.2, seed 1) sits first in its chunk, as alone: the same place in the same program.
  grid = fj.sweep(
    _bag_of_embeddings(), data, flood_levels=[0.2, 0.0], seeds=[0, 1], chunk_size=2, **kw
  )
  alone = fj.sweep(_bag_of_embeddings(), data, flood_levels=[0.2], seeds=[1], chunk_size=2, **kw)
  for name in grid.history:
    np.testing.assert_array_equal(alone.history[name][0, 0], grid.history[name][0, 1])
  jax.tree.map(
    lambda a, b: np.testing.assert_array_equal(a[0, 0], b[0, 1]), alone.final_params,
    grid.final_params,
  )  # fmt: skip
  assert grid.history["val_accuracy"][..., -1].mean() > 0.5


_DEVICES_SCRIPT = """
import json, sys
sys.path.insert(0, {root!r})
import jax, numpy as np, optax
import flood_jax as fj
from tests.test_sweep_tasks import KW, LEVELS, SEEDS, Regressor
data = fj.data.load("diabetes")
out = {{}}
for count in (1, 2):
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:count]), ("models",))
  result = fj.sweep(Regressor(), data, flood_levels=LEVELS, seeds=SEEDS, chunk_size=1,
                    mesh=mesh, task=fj.Regression(), **KW)
  out[count] = {{k: v.tolist() for k, v in result.history.items()}}
print(json.dumps(out))
"""


def test_a_regression_does_not_depend_on_the_number_of_devices():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  proc = subprocess.run(
    [sys.executable, "-c", _DEVICES_SCRIPT.format(root=root)],
    env=env, capture_output=True, text=True, timeout=600,
  )  # fmt: skip
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  for name in out["1"]:
    np.testing.assert_allclose(out["2"][name], out["1"][name], rtol=1e-6, atol=1e-7)


# -- the selection: best(), early stopping, pruning, the summary and files ------------------


def _result(selection_key, mode):
  # Three levels, two seeds, three evaluations; val_r rises with the level, the loss falls.
  r = np.array([[0.1, 0.2, 0.3], [0.2, 0.5, 0.4], [0.3, 0.4, 0.9]])[:, None, :].repeat(2, 1)
  loss = 1.0 - r
  history = {
    "train_loss": loss, "val_loss": loss, "val_r": r, "test_loss": loss, "test_r": r,
    "flooded_fraction": np.zeros_like(r),
  }  # fmt: skip
  levels = np.array([0.0, 0.1, 0.2], np.float32)
  return fj.SweepResult(levels, np.arange(2), history, selection_key=selection_key, mode=mode)


def test_best_follows_the_selection_metric_and_its_direction():
  highest_r = _result("val_r", "max")
  assert highest_r.best() == {"flood_level": 0.2}
  assert highest_r.best("best_val") == {"flood_level": 0.2}
  np.testing.assert_array_equal(highest_r.stopping_epoch("best_val")[:, 0], [2, 1, 2])
  lowest_r = _result("val_r", "min")
  assert lowest_r.best() == {"flood_level": 0.0}
  np.testing.assert_array_equal(lowest_r.stopping_epoch("best_val")[:, 0], [0, 0, 0])
  lowest_loss = _result("val_loss", "min")
  assert lowest_loss.best() == {"flood_level": 0.2}
  np.testing.assert_allclose(lowest_loss.val_score("best_val")[:, 0], [0.7, 0.5, 0.1])
  assert "val r" in highest_r.summary() and "Δ test r vs b=0" in highest_r.summary()


def test_versus_no_flooding_takes_the_sign_of_better_from_the_mode():
  r = np.array([[0.70, 0.71, 0.69], [0.60, 0.58, 0.61]])[..., None]  # (levels, seeds, 1)
  history = {"train_loss": r, "val_loss": r, "val_mse": r, "test_loss": r, "test_mse": r,
             "flooded_fraction": 0 * r}  # fmt: skip
  result = fj.SweepResult(np.array([0.0, 0.1], np.float32), np.arange(3), history,
                          selection_key="val_loss", mode="min")  # fmt: skip
  row = result.versus_no_flooding()
  assert row is not None and row["config"] == {"flood_level": 0.1}
  assert row["diff"] < 0 and row["p"] < 0.05  # lower is better: a lower loss is a win
  assert "validation loss" in result.summary().splitlines()[-1]


def test_a_task_selected_by_a_metric_with_mode_max_sweeps_and_saves(diabetes, tmp_path):
  task = fj.Task(
    fj.Regression().loss, metrics={"neg_mae": lambda out, y: -jnp.abs(out[:, 0] - y)},
    select="neg_mae", mode="max",
  )  # fmt: skip
  result = fj.sweep(Regressor(), diabetes, flood_levels=LEVELS, seeds=SEEDS, task=task, **KW)
  assert (result.selection_key, result.mode) == ("val_neg_mae", "max")
  mean = result.history["val_neg_mae"][..., -1].mean(-1)
  assert result.best_flood_level == LEVELS[int(np.argmax(mean))]
  result.save(tmp_path, with_params=False)
  saved = json.loads((tmp_path / "results.json").read_text())
  assert saved["selection"] == {"key": "val_neg_mae", "mode": "max"}
  loaded = fj.SweepResult.load(tmp_path)
  assert (loaded.selection_key, loaded.mode) == ("val_neg_mae", "max")
  assert loaded.summary() == result.summary()


def test_a_classification_file_has_no_selection_and_loads_as_classification(tmp_path):
  result = _result("val_r", "max")
  history = {k.replace("_r", "_accuracy"): v for k, v in result.history.items()}
  classification = fj.SweepResult(result.flood_levels, result.seeds, history)
  classification.save(tmp_path, with_params=False)
  assert "selection" not in json.loads((tmp_path / "results.json").read_text())
  loaded = fj.SweepResult.load(tmp_path)
  assert (loaded.selection_key, loaded.mode) == ("val_accuracy", "max")


def test_halving_keeps_the_lowest_validation_loss_of_a_regression(diabetes):
  levels = [0.0, 0.3, 0.6, 2.0]
  result = fj.sweep(
    Regressor(), diabetes, flood_levels=levels, seeds=SEEDS, task=fj.Regression(),
    prune=fj.Halving(min_epochs=2, factor=4), **KW,
  )  # fmt: skip
  rung = int(np.searchsorted(result.epochs, 2))
  at_rung = result.history["val_loss"][:, :, rung].mean(-1)
  # The lowest validation loss trains on (with the levels that tie with it: not flooded yet).
  np.testing.assert_array_equal(result.pruned_at == 0, at_rung == at_rung.min())
  assert result.pruned_at[-1] == 2 and at_rung[-1] > at_rung.min()  # b = 2 floods: stopped


def test_adaflood_levels_of_a_regression_are_its_held_out_squared_errors(diabetes):
  levels = fj.adaflood_levels(
    Regressor(), diabetes, folds=2, gamma=0.0, task=fj.Regression(), **dict(KW, epochs=2)
  )
  assert levels.shape == (diabetes.num_train,) and np.all(np.isfinite(levels))
  assert np.all(levels >= 0)


# -- bad tasks: one line each, before training -------------------------------------------


def _per_example_of_wrong_shape(out, y):
  return (out - y[:, None]) ** 2  # (batch, 1): not reduced


@pytest.mark.parametrize(
  "kwargs, error, message",
  [
    (dict(task="regression"), TypeError, "task must be fj.Classification()"),
    (dict(task=fj.Regression(), loss_fn=lambda o, y: o), ValueError, "give the loss once"),
    (dict(), ValueError, "Classification needs integer class labels"),
    (dict(task=fj.Task(_per_example_of_wrong_shape)), ValueError, "one value per example"),
    (
      dict(task=fj.Task(fj.Regression().loss, metrics={"m": lambda o, y: o.sum()})),
      ValueError,
      "metric 'm' returns shape ()",
    ),
  ],
  ids=["not_a_task", "task_and_loss_fn", "labels_not_integers", "loss_shape", "metric_shape"],
)
def test_a_bad_task_is_one_line_before_training(diabetes, kwargs, error, message):
  with pytest.raises(error, match=None) as raised:
    fj.sweep(Regressor(), diabetes, flood_levels=[0.0], **KW, **kwargs)
  text = str(raised.value)
  assert message in text and "\n" not in text, text


def test_a_regression_model_of_the_wrong_width_is_one_line(diabetes):
  class Wide(nn.Module):
    @nn.compact
    def __call__(self, x, train):
      return nn.Dense(3)(x)

  with pytest.raises(ValueError, match="Regression needs outputs of the targets' shape") as err:
    fj.sweep(Wide(), diabetes, flood_levels=[0.0], task=fj.Regression(), **KW)
  assert "\n" not in str(err.value)


def test_a_result_with_an_unknown_selection_is_one_line():
  with pytest.raises(ValueError, match="selection_key 'val_nope' is not a key"):
    _result("val_nope", "max")
  with pytest.raises(ValueError, match="mode must be 'min'"):
    _result("val_r", "up")
