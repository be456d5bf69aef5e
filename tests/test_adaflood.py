"""AdaFlood: per-example levels in the sweep (gamma swept like a level) and the fold
models of adaflood_levels (each never sees its own fold)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import SmallMLP, _toy_dataset, assert_bitwise_equal, xla_compiles

import flood_jax as fj
from flood_jax._sweep import cache as program_cache


@pytest.fixture(scope="module")
def data():
  return _toy_dataset(n=200, n_train=100, n_val=50, seed=1)


KW = dict(
  optimizer=optax.sgd(0.05, momentum=0.9),
  epochs=6,
  batch_size=20,
  eval_every=1,
  seeds=[0, 1],
  chunk_size=2,
  progress=False,
)


def _random_levels(n, seed=0):
  return np.random.default_rng(seed).uniform(0.0, 1.5, n).astype(np.float32)


def test_adaflood_level_formula_and_its_ends():
  losses = jnp.array([0.0, 0.1, 0.7, 3.0, 40.0])
  for gamma in [0.0, 0.3, 0.5, 0.9, 1.0]:
    expected = -np.log((1 - gamma) * np.exp(-np.asarray(losses, np.float64)) + gamma)
    np.testing.assert_allclose(
      fj._loss.adaflood_level(losses, gamma), expected, rtol=1e-6, atol=1e-7
    )
  np.testing.assert_array_equal(
    fj._loss.adaflood_level(losses, 0.0), losses
  )  # exact: the loss itself
  np.testing.assert_array_equal(fj._loss.adaflood_level(losses, 1.0), jnp.zeros_like(losses))
  # Corrections compose: g2 after g1 is 1 - (1 - g1)(1 - g2).
  g1, g2 = 0.3, 0.6
  np.testing.assert_allclose(
    fj._loss.adaflood_level(fj._loss.adaflood_level(losses, g1), g2),
    fj._loss.adaflood_level(losses, 1 - (1 - g1) * (1 - g2)),
    rtol=1e-5,
    atol=1e-6,
  )


def test_equal_per_example_levels_equal_iflood_bitwise(data):
  """Every example at level b (gamma = 0 keeps the levels as given) is iFlood at b."""
  b = 0.3
  ada = fj.sweep(
    SmallMLP(batch_norm=True),
    data,
    objective="adaflood",
    per_example_levels=np.full(data.num_train, b, np.float32),
    gamma=[0.0],
    **KW,
  )
  iflood = fj.sweep(SmallMLP(batch_norm=True), data, objective="iflood", flood_levels=[b], **KW)
  assert ada.axes == ("gamma", "seed") and iflood.axes == ("flood_level", "seed")
  assert np.all(iflood.history["flooded_fraction"][..., -1] > 0)  # b floods something
  assert_bitwise_equal(ada, iflood)


def test_gamma_one_is_plain_training_whatever_the_levels(data):
  ada = fj.sweep(
    SmallMLP(),
    data,
    objective="adaflood",
    per_example_levels=_random_levels(data.num_train),
    gamma=[1.0],
    **KW,
  )
  plain = fj.sweep(SmallMLP(), data, objective="iflood", flood_levels=[0.0], **KW)
  assert_bitwise_equal(ada, plain)
  assert np.all(ada.history["flooded_fraction"] == 0)
  # And the batch objective at b = 0 (flood's transform in the chain) agrees to round-off.
  flood = fj.sweep(SmallMLP(), data, flood_levels=[0.0], **KW)
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
    ada.final_params,
    flood.final_params,
  )


def test_gamma_axis_and_new_levels_compile_nothing(data, tmp_path):
  levels = _random_levels(data.num_train, seed=1)
  first = fj.sweep(
    SmallMLP(), data, objective="adaflood", per_example_levels=levels, gamma=[0.0, 0.5, 1.0], **KW
  )
  program = program_cache.last_program()
  with xla_compiles() as compiles:
    again = fj.sweep(
      SmallMLP(),
      data,
      objective="adaflood",
      per_example_levels=levels * 0.5,
      gamma=[0.0, 0.5, 1.0],
      **KW,
    )
  assert program_cache.last_program() is program
  assert compiles == []  # the levels are an input, not a constant
  assert first.history["val_loss"].shape == (3, 2, 6)
  # Other levels, other models (gamma = 1 ignores them).
  assert not np.array_equal(
    first.final_params["Dense_0"]["kernel"][0], again.final_params["Dense_0"]["kernel"][0]
  )
  np.testing.assert_array_equal(
    first.final_params["Dense_0"]["kernel"][2], again.final_params["Dense_0"]["kernel"][2]
  )
  assert set(first.best()) == {"gamma"}
  assert first.index(**first.best(), seed=1)[1] == 1
  summary = first.summary()
  assert "gamma" in summary.splitlines()[0] and "vs gamma=1" in summary
  assert first.config["objective"] == "adaflood"
  loaded = fj.SweepResult.load(first.save(tmp_path) and tmp_path)
  assert loaded.axes == first.axes and loaded.best() == first.best()


@pytest.mark.parametrize(
  "kwargs,match",
  [
    (dict(objective="adaflood", gamma=[0.5]), "per_example_levels"),
    (dict(objective="adaflood", per_example_levels=np.zeros(7)), r"shape \(n_train,\)"),
    (dict(objective="adaflood", per_example_levels=np.full(100, -1.0)), ">= 0"),
    (dict(objective="adaflood", per_example_levels=np.zeros(100), gamma=[1.5]), r"\[0, 1\]"),
    (
      dict(objective="adaflood", per_example_levels=np.zeros(100), flood_levels=[0.1]),
      "instead of flood_levels",
    ),
    (
      dict(objective="iflood", flood_levels=[0.1], per_example_levels=np.zeros(100)),
      "objective='adaflood'",
    ),
    (dict(flood_levels=[0.1], gamma=[0.5]), "objective='adaflood'"),
    (dict(objective="heldout", flood_levels=[0.0]), "objective must be one of"),
  ],
)
def test_bad_adaflood_arguments(data, kwargs, match):
  with pytest.raises(ValueError, match=match):
    fj.sweep(SmallMLP(), data, **dict(KW, **kwargs))


def test_fold_training_sets_exclude_their_fold():
  from flood_jax import _adaflood

  fold_of = _adaflood.fold_assignment(103, 4)
  assert sorted(np.bincount(fold_of).tolist()) == [25, 26, 26, 26]
  sets = _adaflood.fold_training_sets(fold_of, 4)
  assert sets.shape == (4, 103 - 26)
  for k in range(4):
    assert not np.any(fold_of[sets[k]] == k)
    assert len(set(sets[k].tolist())) == sets.shape[1]


def _fold_sweep(data, seeds=(0,)):
  from flood_jax import _adaflood

  return _adaflood.fold_models(
    SmallMLP(batch_norm=True),
    data,
    folds=2,
    seeds=seeds,
    optimizer=optax.sgd(0.05, momentum=0.9),
    epochs=4,
    batch_size=20,
    chunk_size=2,
  )


def test_a_fold_model_never_sees_its_fold(data):
  """Every step's gradient of fold k's model is blind to fold k's examples.

  Replacing fold 0's inputs and labels by noise leaves fold 0's model bit for
  bit (its gradients, its BatchNorm statistics, all its steps), while fold 1's
  model, which trains on them, changes.
  """
  result, fold_of = _fold_sweep(data)
  assert result.axes == ("fold", "seed")
  rng = np.random.default_rng(5)
  x, y = data.x_train.copy(), data.y_train.copy()
  in_fold = fold_of == 0
  x[in_fold] = rng.normal(size=x[in_fold].shape) * 10
  y[in_fold] = 1 - y[in_fold]
  changed = fj.Dataset(
    x_train=x,
    y_train=y,
    x_val=data.x_val,
    y_val=data.y_val,
    x_test=data.x_test,
    y_test=data.y_test,
    name="toy",
  )
  other, same_folds = _fold_sweep(changed)
  np.testing.assert_array_equal(fold_of, same_folds)
  for tree in ("final_params", "final_batch_stats"):
    jax.tree.map(
      lambda a, b: np.testing.assert_array_equal(a[0], b[0]),
      getattr(result, tree),
      getattr(other, tree),
    )
  kernel = lambda r: r.final_params["Dense_0"]["kernel"]
  assert not np.array_equal(kernel(result)[1], kernel(other)[1])


def test_adaflood_levels_are_held_out_losses_corrected_by_gamma(data):
  kw = dict(folds=2, optimizer=optax.sgd(0.05, momentum=0.9), epochs=4, batch_size=20, chunk_size=2)
  raw = fj.adaflood_levels(SmallMLP(batch_norm=True), data, gamma=0.0, **kw)
  assert raw.shape == (data.num_train,) and raw.dtype == np.float32
  result, fold_of = _fold_sweep(data)
  # The loss of each example under the model of its fold (evaluation mode), by hand.
  for i in [int(np.flatnonzero(fold_of == 0)[0]), int(np.flatnonzero(fold_of == 1)[0])]:
    k = fold_of[i]
    variables = {
      "params": jax.tree.map(lambda a, k=k: a[k, 0], result.final_params),
      "batch_stats": jax.tree.map(lambda a, k=k: a[k, 0], result.final_batch_stats),
    }
    logits = SmallMLP(batch_norm=True).apply(variables, data.x_train[i : i + 1], train=False)
    expected = optax.softmax_cross_entropy_with_integer_labels(logits, data.y_train[i : i + 1])
    np.testing.assert_allclose(raw[i], expected[0], rtol=1e-5, atol=1e-6)
  half = fj.adaflood_levels(SmallMLP(batch_norm=True), data, gamma=0.5, **kw)
  np.testing.assert_allclose(half, fj._loss.adaflood_level(raw, 0.5), rtol=1e-6)
  assert np.all(half <= raw + 1e-6) and np.all(half >= 0)
  np.testing.assert_array_equal(
    fj.adaflood_levels(SmallMLP(batch_norm=True), data, gamma=1.0, **kw), 0.0
  )
  with pytest.raises(ValueError, match="gamma"):
    fj.adaflood_levels(SmallMLP(), data, gamma=2.0, **kw)
  with pytest.raises(ValueError, match="folds"):
    fj.adaflood_levels(SmallMLP(), data, **dict(kw, folds=1))
  with pytest.raises(ValueError, match="fold model's training set"):
    fj.adaflood_levels(SmallMLP(), data, **dict(kw, batch_size=60))


def test_readme_adaflood_example_runs_in_a_fresh_interpreter():
  import pathlib
  import re
  import subprocess
  import sys

  root = pathlib.Path(__file__).resolve().parents[1]
  section = (root / "README.md").read_text().split("### AdaFlood", 1)[1].split("\n## ", 1)[0]
  code = re.findall(r"```python\n(.*?)```", section, flags=re.S)[0]
  proc = subprocess.run(
    [sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=root
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "('gamma', 'seed')" in proc.stdout and "vs gamma=1" in proc.stdout


def test_adaflood_levels_checkpoint_and_resume(data, tmp_path):
  """With checkpoint_dir the fold models are saved as they train; a second call reads them."""
  kw = dict(folds=2, optimizer=optax.sgd(0.05, momentum=0.9), epochs=4, batch_size=20, chunk_size=2)
  plain = fj.adaflood_levels(SmallMLP(batch_norm=True), data, gamma=0.0, **kw)
  first = fj.adaflood_levels(
    SmallMLP(batch_norm=True), data, gamma=0.0, checkpoint_dir=tmp_path, **kw
  )
  assert (tmp_path / "sweep.json").is_file() and (tmp_path / "done_00_00000").is_dir()
  again = fj.adaflood_levels(
    SmallMLP(batch_norm=True), data, gamma=0.0, checkpoint_dir=tmp_path, **kw
  )
  np.testing.assert_array_equal(first, plain)
  np.testing.assert_array_equal(again, plain)
  with pytest.raises(ValueError, match="differs in: epochs"):
    fj.adaflood_levels(
      SmallMLP(batch_norm=True), data, gamma=0.0, checkpoint_dir=tmp_path, **dict(kw, epochs=5)
    )
