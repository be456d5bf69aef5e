"""Helpers shared by the test modules: small models, toy data sets and checks.

Test modules import from here (``from helpers import ...``), never from one
another.
"""

import contextlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import flood_jax as fj

# -- linen models and the spiral-like toy set (2 features) -----------------------


class SmallMLP(nn.Module):
  width: int = 32
  batch_norm: bool = False

  @nn.compact
  def __call__(self, x, train: bool):
    x = nn.Dense(self.width)(x)
    if self.batch_norm:
      x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
    x = nn.Dense(self.width)(nn.relu(x))
    return nn.Dense(2)(nn.relu(x))


def _spiral_like(n=240, noise=0.1, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, 2)).astype(np.float32)
  y = (np.sin(2 * x[:, 0]) > x[:, 1]).astype(np.int32)
  flip = rng.random(n) < noise
  y = np.where(flip, 1 - y, y)
  return x, y


def _toy_dataset(n=240, n_train=120, n_val=60, seed=0) -> fj.Dataset:
  """The spiral-like toy set: ``n_train`` training, ``n_val`` validation, the rest test."""
  x, y = _spiral_like(n=n, seed=seed)
  stop = n_train + n_val
  return fj.Dataset(
    x_train=x[:n_train],
    y_train=y[:n_train],
    x_val=x[n_train:stop],
    y_val=y[n_train:stop],
    x_test=x[stop:],
    y_test=y[stop:],
    name="toy",
  )


# -- NNX and plain-JAX models, the 4-feature toy set --------------------------------


def _toy(n=160, seed=0, classes=2):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, 4)).astype(np.float32)
  y = (np.sin(2 * x[:, 0]) > x[:, 1]).astype(np.int32) + (x[:, 2] > 1) * (classes - 2)
  y = np.where(rng.random(n) < 0.1, (y + 1) % classes, y).astype(np.int32)
  a, b = n // 2, 3 * n // 4
  return fj.Dataset(
    x_train=x[:a],
    y_train=y[:a],
    x_val=x[a:b],
    y_val=y[a:b],
    x_test=x[b:],
    y_test=y[b:],
    num_classes=classes,
  )


class NNXNet(nnx.Module):
  def __init__(self, rngs, dropout=0.0, outputs=2):
    self.hidden = nnx.Linear(4, 16, rngs=rngs)
    self.norm = nnx.BatchNorm(16, momentum=0.9, rngs=rngs)
    self.drop = nnx.Dropout(dropout, rngs=rngs)
    self.out = nnx.Linear(16, outputs, rngs=rngs)

  def __call__(self, x):
    return self.out(self.drop(nnx.relu(self.norm(self.hidden(x)))))


def make_nnx(rngs):
  return NNXNet(rngs, dropout=0.2)


def _plain_model(dropout=False):
  def init(key, x):
    k1, k2 = jax.random.split(key)
    return {
      "w1": jax.random.normal(k1, (x.shape[-1], 16)) * 0.5,
      "b1": jnp.zeros(16),
      "w2": jax.random.normal(k2, (16, 2)) * 0.25,
    }

  def apply(params, x, train):
    return jax.nn.relu(x @ params["w1"] + params["b1"]) @ params["w2"]

  def apply_dropout(params, x, train, key=None):
    h = jax.nn.relu(x @ params["w1"] + params["b1"])
    if train:
      h = jnp.where(jax.random.bernoulli(key, 0.8, h.shape), h / 0.8, 0.0)
    return h @ params["w2"]

  return fj.Model(init=init, apply=apply_dropout if dropout else apply)


# -- checks and stand-ins ---------------------------------------------------------


def assert_bitwise_equal(result, other):
  """Histories, parameters and BatchNorm statistics equal, bit for bit."""
  for name in other.history:
    np.testing.assert_array_equal(result.history[name], other.history[name])
  jax.tree.map(np.testing.assert_array_equal, result.final_params, other.final_params)
  jax.tree.map(np.testing.assert_array_equal, result.final_batch_stats, other.final_batch_stats)


class _Interrupt:
  """A progress bar that presses Ctrl-C after a number of updates."""

  def __init__(self, after):
    self.after = after

  def update(self, n):
    self.after -= 1
    if self.after == 0:
      raise KeyboardInterrupt

  def close(self):
    pass


@contextlib.contextmanager
def xla_compiles():
  """Counts XLA's compilations inside the block (JAX's own events): yields a list of seconds."""
  seconds: list[float] = []

  def listen(event, duration, **_):
    if event == "/jax/core/compile/backend_compile_duration":
      seconds.append(duration)

  jax.monitoring.register_event_duration_secs_listener(listen)
  try:
    yield seconds
  finally:
    jax.monitoring.unregister_event_duration_listener(listen)
