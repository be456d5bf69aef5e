"""AdaFlood: per-example levels in the sweep (gamma swept like a level) and the fold
models of adaflood_levels (each never sees its own fold)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import flood_jax as fj
from flood_jax._sweep import program as program_lib
from test_sweep import SmallMLP, _spiral_like, assert_bitwise_equal


@pytest.fixture(scope="module")
def data():
  x, y = _spiral_like(n=200, noise=0.1, seed=1)
  return fj.Dataset(x_train=x[:100], y_train=y[:100], x_val=x[100:150], y_val=y[100:150],
                    x_test=x[150:], y_test=y[150:], name="toy")


KW = dict(optimizer=optax.sgd(0.05, momentum=0.9), epochs=6, batch_size=20, eval_every=1,
          seeds=[0, 1], chunk_size=2, progress=False)


def _random_levels(n, seed=0):
  return np.random.default_rng(seed).uniform(0.0, 1.5, n).astype(np.float32)


def test_adaflood_level_formula_and_its_ends():
  l = jnp.array([0.0, 0.1, 0.7, 3.0, 40.0])
  for gamma in [0.0, 0.3, 0.5, 0.9, 1.0]:
    expected = -np.log((1 - gamma) * np.exp(-np.asarray(l, np.float64)) + gamma)
    np.testing.assert_allclose(fj._loss.adaflood_level(l, gamma), expected, rtol=1e-6,
                               atol=1e-7)
  np.testing.assert_array_equal(fj._loss.adaflood_level(l, 0.0), l)  # exact: the loss itself
  np.testing.assert_array_equal(fj._loss.adaflood_level(l, 1.0), jnp.zeros_like(l))
  # Corrections compose: g2 after g1 is 1 - (1 - g1)(1 - g2).
  g1, g2 = 0.3, 0.6
  np.testing.assert_allclose(
      fj._loss.adaflood_level(fj._loss.adaflood_level(l, g1), g2),
      fj._loss.adaflood_level(l, 1 - (1 - g1) * (1 - g2)), rtol=1e-5, atol=1e-6)


def test_equal_per_example_levels_equal_iflood_bitwise(data):
  """Every example at level b (gamma = 0 keeps the levels as given) is iFlood at b."""
  b = 0.3
  ada = fj.sweep(SmallMLP(batch_norm=True), data, objective="adaflood",
                 per_example_levels=np.full(data.num_train, b, np.float32), gamma=[0.0], **KW)
  iflood = fj.sweep(SmallMLP(batch_norm=True), data, objective="iflood", flood_levels=[b], **KW)
  assert ada.axes == ("gamma", "seed") and iflood.axes == ("flood_level", "seed")
  assert np.all(iflood.history["flooded_fraction"][..., -1] > 0)  # b floods something
  assert_bitwise_equal(ada, iflood)


def test_gamma_one_is_plain_training_whatever_the_levels(data):
  ada = fj.sweep(SmallMLP(), data, objective="adaflood",
                 per_example_levels=_random_levels(data.num_train), gamma=[1.0], **KW)
  plain = fj.sweep(SmallMLP(), data, objective="iflood", flood_levels=[0.0], **KW)
  assert_bitwise_equal(ada, plain)
  assert np.all(ada.history["flooded_fraction"] == 0)
  # And the batch objective at b = 0 (flood's transform in the chain) agrees to round-off.
  flood = fj.sweep(SmallMLP(), data, flood_levels=[0.0], **KW)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               ada.final_params, flood.final_params)


def test_gamma_axis_and_new_levels_compile_nothing(data):
  levels = _random_levels(data.num_train, seed=1)
  first = fj.sweep(SmallMLP(), data, objective="adaflood", per_example_levels=levels,
                   gamma=[0.0, 0.5, 1.0], **KW)
  program = next(reversed(program_lib._PROGRAMS.values()))
  compiled = program._run._cache_size()
  again = fj.sweep(SmallMLP(), data, objective="adaflood", per_example_levels=levels * 0.5,
                   gamma=[0.0, 0.5, 1.0], **KW)
  assert next(reversed(program_lib._PROGRAMS.values())) is program
  assert program._run._cache_size() == compiled  # the levels are an input, not a constant
  assert first.history["val_loss"].shape == (3, 2, 6)
  # Other levels, other models (gamma = 1 ignores them).
  assert not np.array_equal(first.final_params["Dense_0"]["kernel"][0],
                            again.final_params["Dense_0"]["kernel"][0])
  np.testing.assert_array_equal(first.final_params["Dense_0"]["kernel"][2],
                                again.final_params["Dense_0"]["kernel"][2])
  assert set(first.best()) == {"gamma"}
  summary = first.summary()
  assert "gamma" in summary.splitlines()[0] and "vs gamma=1" in summary
  assert first.config["objective"] == "adaflood"


@pytest.mark.parametrize("kwargs,match", [
    (dict(objective="adaflood", gamma=[0.5]), "per_example_levels"),
    (dict(objective="adaflood", per_example_levels=np.zeros(7)), r"shape \(n_train,\)"),
    (dict(objective="adaflood", per_example_levels=np.full(100, -1.0)), ">= 0"),
    (dict(objective="adaflood", per_example_levels=np.zeros(100), gamma=[1.5]), r"\[0, 1\]"),
    (dict(objective="adaflood", per_example_levels=np.zeros(100), flood_levels=[0.1]),
     "instead of flood_levels"),
    (dict(objective="iflood", flood_levels=[0.1], per_example_levels=np.zeros(100)),
     "objective='adaflood'"),
    (dict(flood_levels=[0.1], gamma=[0.5]), "objective='adaflood'"),
    (dict(objective="heldout", flood_levels=[0.0]), "objective must be one of"),
])
def test_bad_adaflood_arguments(data, kwargs, match):
  with pytest.raises(ValueError, match=match):
    fj.sweep(SmallMLP(), data, **dict(KW, **kwargs))
