"""What the sweep trains: NNX factories and plain fj.Model pairs (same contract as
linen: inside a sweep equals alone), dropout and augmentation keys paired by
seed, iFlood, and one-line errors for models that do not fit."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from helpers import NNXNet, _plain_model, _toy, make_nnx

import flood_jax as fj


@pytest.fixture(scope="module")
def data():
  return _toy()


KW = dict(
  optimizer=optax.sgd(0.1, momentum=0.9), epochs=6, batch_size=16, progress=False, eval_every=1
)


def _assert_same_models(result, other, where, where_other):
  for name in result.history:
    np.testing.assert_array_equal(result.history[name][where], other.history[name][where_other])
  jax.tree.map(
    lambda a, b: np.testing.assert_array_equal(a[where], b[where_other]),
    result.final_params,
    other.final_params,
  )


@pytest.fixture(scope="module")
def nnx_grid(data):
  return fj.sweep(make_nnx, data, flood_levels=[0.0, 0.3], seeds=[0, 5], chunk_size=2, **KW)


def test_nnx_sweep_trains_params_and_batchnorm(nnx_grid):
  assert nnx_grid.axes == ("flood_level", "seed")
  assert nnx_grid.history["val_accuracy"].shape == (2, 2, 6)
  assert isinstance(nnx_grid.final_params, nnx.State)
  assert nnx_grid.final_params["hidden"]["kernel"][...].shape == (2, 2, 4, 16)
  stats = nnx_grid.final_batch_stats["norm"]["mean"][...]
  assert stats.shape == (2, 2, 16) and np.abs(stats).max() > 0  # trained
  assert nnx_grid.history["train_loss"][0, :, -1].max() < np.log(2)  # learned
  # The two seeds start from different initializations.
  kernel = nnx_grid.final_params["hidden"]["kernel"][...]
  assert not np.allclose(kernel[0, 0], kernel[0, 1])


def test_nnx_model_inside_sweep_equals_alone(data, nnx_grid):
  alone = fj.sweep(make_nnx, data, flood_levels=[0.3], seeds=[5], chunk_size=2, **KW)
  _assert_same_models(nnx_grid, alone, (1, 1), (0, 0))


def test_nnx_model_rebuilds_a_trained_module(data, nnx_grid):
  module = nnx_grid.nnx_model(flood_level=0.3, seed=5)
  assert isinstance(module, NNXNet)
  module.eval()
  logits = module(jnp.asarray(data.x_test))
  accuracy = float(np.mean(np.argmax(np.asarray(logits), -1) == data.y_test))
  np.testing.assert_allclose(accuracy, nnx_grid.history["test_accuracy"][1, 1, -1], atol=1e-6)
  with pytest.raises(ValueError, match="not in the sweep"):
    nnx_grid.nnx_model(flood_level=0.7, seed=5)


def test_dropout_masks_are_paired_across_levels_and_differ_across_seeds(nnx_grid, data):
  # Levels 0 and 1e-6 never flood here: paired models train identically,
  # dropout masks included.
  result = fj.sweep(make_nnx, data, flood_levels=[0.0, 1e-6], seeds=[0, 1], chunk_size=4, **KW)
  assert np.all(result.history["flooded_fraction"] == 0)
  np.testing.assert_array_equal(result.history["train_loss"][0], result.history["train_loss"][1])
  assert not np.allclose(result.history["train_loss"][0, 0], result.history["train_loss"][0, 1])


def test_plain_model_inside_sweep_equals_alone(data):
  model = _plain_model()
  grid = fj.sweep(model, data, flood_levels=[0.0, 0.25], seeds=[1, 2], chunk_size=2, **KW)
  assert grid.final_params["w1"].shape == (2, 2, 4, 16)
  assert grid.final_batch_stats is None
  assert grid.history["train_loss"][0, :, -1].max() < np.log(2)
  alone = fj.sweep(model, data, flood_levels=[0.25], seeds=[2], chunk_size=2, **KW)
  _assert_same_models(grid, alone, (1, 1), (0, 0))


def test_plain_model_dropout_key_is_per_step_and_paired(data):
  model = _plain_model(dropout=True)
  result = fj.sweep(model, data, flood_levels=[0.0, 1e-6], seeds=[0], chunk_size=2, **KW)
  np.testing.assert_array_equal(result.history["train_loss"][0], result.history["train_loss"][1])
  plain = fj.sweep(_plain_model(), data, flood_levels=[0.0], seeds=[0], chunk_size=2, **KW)
  assert not np.allclose(result.history["train_loss"][0, 0], plain.history["train_loss"][0, 0])


def test_identity_augmentation_equals_none_and_a_real_one_stays_paired(data):
  model = _plain_model()
  none = fj.sweep(model, data, flood_levels=[0.0, 1e-6], seeds=[0, 1], chunk_size=2, **KW)
  same = fj.sweep(
    model,
    data,
    flood_levels=[0.0, 1e-6],
    seeds=[0, 1],
    chunk_size=2,
    augment=lambda key, x: x,
    **KW,
  )
  for name in none.history:
    np.testing.assert_array_equal(none.history[name], same.history[name])

  def jitter(key, x):
    return x + 0.3 * jax.random.normal(key, x.shape)

  noisy = fj.sweep(
    model, data, flood_levels=[0.0, 1e-6], seeds=[0, 1], chunk_size=2, augment=jitter, **KW
  )
  assert not np.allclose(noisy.history["train_loss"], none.history["train_loss"])
  # Same seed, same augmentation keys: the two never-flooding levels agree.
  np.testing.assert_array_equal(noisy.history["train_loss"][0], noisy.history["train_loss"][1])
  assert not np.allclose(noisy.history["train_loss"][0, 0], noisy.history["train_loss"][0, 1])


def test_iflood_at_zero_equals_plain_training_and_floods_per_example(data):
  model = _plain_model()
  flood = fj.sweep(model, data, flood_levels=[0.0], seeds=[0], chunk_size=1, **KW)
  iflood = fj.sweep(
    model, data, flood_levels=[0.0, 0.4], seeds=[0], chunk_size=1, objective="iflood", **KW
  )
  for name in flood.history:
    np.testing.assert_allclose(
      iflood.history[name][0], flood.history[name][0], rtol=1e-5, atol=1e-6
    )
  assert iflood.config["objective"] == "iflood"
  # With b = 0.4 some examples sit below the level: a fraction strictly in (0, 1).
  fraction = iflood.history["flooded_fraction"][1, 0, -1]
  assert 0 < fraction < 1


class NoTrainArg(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.Dense(2)(x)


class ThreeOutputs(nn.Module):
  @nn.compact
  def __call__(self, x, train):
    return nn.Dense(2)(x)


def test_classification_checks_labels_whatever_the_loss(data):
  """Labels past the logits (a one-hot of them all zeros) and labels (n, 1): one line each."""
  three = _toy(classes=3)

  def one_hot_loss(logits, y):
    return optax.softmax_cross_entropy(logits, jax.nn.one_hot(y, logits.shape[-1]))

  for loss in (None, one_hot_loss):
    with pytest.raises(ValueError, match="outputs 2 logits but the data has 3 classes"):
      fj.sweep(ThreeOutputs(), three, flood_levels=[0.0], loss_fn=loss, **KW)
  column = fj.Dataset(
    **{f"x_{s}": getattr(data, f"x_{s}") for s in ("train", "val", "test")},
    **{f"y_{s}": getattr(data, f"y_{s}")[:, None] for s in ("train", "val", "test")},
  )
  with pytest.raises(ValueError, match="give labels of shape \\(n,\\)") as info:
    fj.sweep(_plain_model(), column, flood_levels=[0.0], **KW)
  assert "\n" not in str(info.value)


def test_errors_for_models_that_do_not_fit(data):
  three = _toy(classes=3)
  with pytest.raises(ValueError, match="outputs 2 logits but the data has 3 classes"):
    fj.sweep(ThreeOutputs(), three, flood_levels=[0.0], **KW)
  with pytest.raises(ValueError, match="outputs 2 logits"):
    fj.sweep(lambda rngs: NNXNet(rngs), three, flood_levels=[0.0], **KW)
  with pytest.raises(TypeError, match="give its __call__ a `train: bool` argument"):
    fj.sweep(NoTrainArg(), data, flood_levels=[0.0], **KW)
  with pytest.raises(TypeError, match="as a factory, not an instance"):
    fj.sweep(NNXNet(nnx.Rngs(0)), data, flood_levels=[0.0], **KW)
  with pytest.raises(TypeError, match="model must be a Flax linen module, an NNX factory"):
    fj.sweep("mlp", data, flood_levels=[0.0], **KW)
  bad = fj.Model(init=lambda key, x: {"w": jnp.zeros((4, 2))}, apply=lambda params, x: x)
  with pytest.raises(TypeError, match="apply\\(params, x, train\\)"):
    fj.sweep(bad, data, flood_levels=[0.0], **KW)
  with pytest.raises(ValueError, match="objective must be one of"):
    fj.sweep(_plain_model(), data, flood_levels=[0.0], objective="sam", **KW)
