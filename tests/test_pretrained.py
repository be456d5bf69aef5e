"""fj.Pretrained: every model of a sweep starts from the given weights; the seed draws the rest."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import flood_jax as fj
from flood_jax._sweep.adapters import adapt
from flood_jax._sweep.driver import AtChanceWarning

# Untrained models (a learning rate of 0) are at chance, and the sweep says so.
pytestmark = pytest.mark.filterwarnings(f"ignore::{AtChanceWarning.__module__}.AtChanceWarning")

RNG = np.random.default_rng(0)
X = RNG.normal(size=(48, 3)).astype(np.float32)
Y = (X[:, 0] > 0).astype(np.int32)
DATA = fj.Dataset(x_train=X[:32], y_train=Y[:32], x_val=X[32:40], y_val=Y[32:40], x_test=X[40:],
                  y_test=Y[40:])  # fmt: skip
# A learning rate of 0: the final parameters are the starting ones.
KW = dict(
  flood_levels=[0.0, 0.1],
  seeds=[0, 1, 2],
  optimizer=optax.sgd(0.0),
  epochs=1,
  batch_size=16,
  chunk_size=3,
  progress=False,
)


class LinenNet(nn.Module):
  @nn.compact
  def __call__(self, x, train: bool = False):
    h = nn.Dense(5, name="backbone")(x)
    h = nn.Dropout(0.2, deterministic=not train)(nn.relu(h))
    return nn.Dense(2, name="head")(h)


class NNXNet(nnx.Module):
  def __init__(self, rngs):
    self.backbone = nnx.Linear(3, 5, rngs=rngs)
    self.drop = nnx.Dropout(0.2, rngs=rngs)
    self.head = nnx.Linear(5, 2, rngs=rngs)

  def __call__(self, x):
    return self.head(self.drop(nnx.relu(self.backbone(x))))


def _plain_model():
  def init(key, x):
    k1, k2 = jax.random.split(key)
    return {
      "backbone": jax.random.normal(k1, (x.shape[-1], 5)),
      "head": jax.random.normal(k2, (5, 2)),
    }

  def apply(params, x, train, key=None):
    h = jax.nn.relu(x @ params["backbone"])
    if key is not None:
      h = h * jax.random.bernoulli(key, 0.8, h.shape)
    return h @ params["head"]

  return fj.Model(init, apply)


def _assert_backbone_given_head_drawn(backbone, head, given):
  """Every model (levels, seeds, ...) starts with ``given``; heads differ by seed only."""
  backbone, head, given = np.asarray(backbone), np.asarray(head), np.asarray(given)
  assert backbone.shape[:2] == (2, 3)
  for level in range(2):
    for seed in range(3):
      np.testing.assert_array_equal(backbone[level, seed], given)
    np.testing.assert_array_equal(head[level], head[0])  # the same seeds, the same heads
  assert not np.array_equal(head[0, 0], head[0, 1]) and not np.array_equal(head[0, 1], head[0, 2])


def test_linen_models_start_from_the_given_backbone():
  given = LinenNet().init(jax.random.key(42), jnp.zeros((1, 3)))["params"]["backbone"]
  result = fj.sweep(fj.Pretrained(LinenNet(), params={"backbone": given}), DATA, **KW)
  p = result.final_params
  _assert_backbone_given_head_drawn(p["backbone"]["kernel"], p["head"]["kernel"], given["kernel"])
  np.testing.assert_array_equal(p["backbone"]["bias"], np.broadcast_to(given["bias"], (2, 3, 5)))
  # Without the weights, the seed draws the backbone too: the graft is what made them equal.
  plain = fj.sweep(LinenNet(), DATA, **KW).final_params
  assert not np.array_equal(plain["backbone"]["kernel"][0, 0], given["kernel"])
  np.testing.assert_array_equal(plain["head"]["kernel"], p["head"]["kernel"])


def test_nnx_models_start_from_the_given_backbone():
  trained = NNXNet(nnx.Rngs(42))
  given = nnx.state(trained.backbone, nnx.Param)
  model = fj.Pretrained(NNXNet, params={"backbone": given})
  result = fj.sweep(model, DATA, **KW)
  p = result.final_params
  _assert_backbone_given_head_drawn(
    p["backbone"]["kernel"][...], p["head"]["kernel"][...], trained.backbone.kernel[...]
  )
  # A pure dict names the same parameters; the rebuilt module has the given backbone.
  pure = fj.Pretrained(NNXNet, params={"backbone": nnx.to_pure_dict(given)})
  params, _, _ = adapt(pure).init(jax.random.key(3), jnp.zeros((1, 3)))
  np.testing.assert_array_equal(params["backbone"]["kernel"][...], trained.backbone.kernel[...])
  module = result.nnx_model(flood_level=0.1, seed=2)
  np.testing.assert_array_equal(module.backbone.kernel[...], trained.backbone.kernel[...])
  np.testing.assert_array_equal(module.head.kernel[...], p["head"]["kernel"][...][1, 2])


def test_plain_models_start_from_the_given_backbone_and_cast_to_its_dtype():
  given = np.arange(15, dtype=np.float64).reshape(3, 5) / 10  # float64: cast to float32
  result = fj.sweep(fj.Pretrained(_plain_model(), params={"backbone": given}), DATA, **KW)
  p = result.final_params
  assert p["backbone"].dtype == np.float32
  _assert_backbone_given_head_drawn(p["backbone"], p["head"], given.astype(np.float32))


def test_model_state_is_grafted_too():
  class WithNorm(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
      h = nn.BatchNorm(use_running_average=not train, name="norm")(nn.Dense(4, name="body")(x))
      return nn.Dense(2, name="head")(h)

  stats = {"norm": {"mean": jnp.full(4, 0.5), "var": jnp.full(4, 2.0)}}
  model = fj.Pretrained(WithNorm(), params={"body": {"bias": jnp.ones(4)}}, model_state=stats)
  params, model_state, _ = adapt(model).init(jax.random.key(0), jnp.zeros((1, 3)))
  np.testing.assert_array_equal(model_state["norm"]["mean"], stats["norm"]["mean"])
  np.testing.assert_array_equal(params["body"]["bias"], jnp.ones(4))
  assert not np.all(params["body"]["kernel"] == 0)  # not given: drawn by the seed
  assert "Pretrained(" in adapt(model).describe()
  other = fj.Pretrained(WithNorm(), params={"body": {"bias": jnp.zeros(4)}}, model_state=stats)
  assert adapt(model).describe() != adapt(other).describe()  # a checkpoint tells them apart


@pytest.mark.parametrize(
  "params,error,match",
  [
    ({"encoder": {"kernel": jnp.zeros((3, 5))}}, ValueError, r"names 'encoder/kernel', which"),
    ({"backbone": {"kernel": jnp.zeros((3, 6))}}, ValueError, r"shape \(3, 6\) but the model's"),
  ],
)
def test_weights_that_do_not_fit_are_one_line(params, error, match):
  with pytest.raises(error, match=match) as info:
    fj.sweep(fj.Pretrained(LinenNet(), params=params), DATA, **KW)
  assert "\n" not in str(info.value)


def test_bad_pretrained_arguments():
  with pytest.raises(ValueError, match="holds no arrays"):
    fj.Pretrained(LinenNet(), params={})
  inner = fj.Pretrained(LinenNet(), params={"head": {"bias": jnp.zeros(2)}})
  with pytest.raises(TypeError, match="wraps a model once"):
    fj.Pretrained(inner, params={"head": {"bias": jnp.zeros(2)}})
  with pytest.raises(TypeError, match="NNX factory"):
    inner(nnx.Rngs(0))
