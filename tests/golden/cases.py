"""The reference sweeps of the golden fixtures: every model kind, objective, pruning and resume.

``python -m tests.golden.record`` runs them and writes ``sweeps.npz`` and ``sweeps.json`` beside
this file; ``tests/test_golden.py`` runs them again and asserts every array is ``np.array_equal``
to the recorded one and every program's computation key is the same. They were recorded on the
engine before its reshape into one loop (issue 17), so the reshape provably moved no number.

Each case returns a flat ``{name: array}`` (histories, final parameters and model state, the
pruning record, AdaFlood's levels) and the computation keys of the programs it ran (read from
the checkpoint fingerprint, which names the traced one-model program).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import numpy as np
import optax
from flax import nnx

import flood_jax as fj
from flood_jax import _sweep


def dataset(n_train: int = 96) -> fj.Dataset:
  rng = np.random.default_rng(7)
  x = rng.normal(size=(n_train + 64, 4)).astype(np.float32)
  y = (np.argmax(x[:, :3] + 0.3 * rng.normal(size=(len(x), 3)), -1)).astype(np.int32)
  return fj.Dataset(
    x_train=x[:n_train],
    y_train=y[:n_train],
    x_val=x[n_train : n_train + 32],
    y_val=y[n_train : n_train + 32],
    x_test=x[n_train + 32 :],
    y_test=y[n_train + 32 :],
  )


class BatchNormMLP(nn.Module):
  @nn.compact
  def __call__(self, x, train):
    x = nn.Dense(16)(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
    return nn.Dense(3)(nn.relu(x))


class DropoutNet(nnx.Module):
  def __init__(self, rngs):
    self.hidden = nnx.Linear(4, 16, rngs=rngs)
    self.drop = nnx.Dropout(0.3, rngs=rngs)
    self.out = nnx.Linear(16, 3, rngs=rngs)

  def __call__(self, x):
    return self.out(self.drop(nnx.relu(self.hidden(x))))


def _plain_init(key, x):
  k1, k2 = jax.random.split(key)
  return {
    "w1": jax.random.normal(k1, (x.shape[-1], 16)) * 0.5,
    "w2": jax.random.normal(k2, (16, 3)) * 0.5,
  }


def _plain_apply(params, x, train, key=None):
  h = jax.nn.relu(x @ params["w1"])
  if train and key is not None:
    h = h * jax.random.bernoulli(key, 0.8, h.shape) / 0.8
  return h @ params["w2"]


PLAIN = fj.Model(init=_plain_init, apply=_plain_apply)


def _jitter(key, x):
  return x + 0.1 * jax.random.normal(key, x.shape)


class _StopAfter(fj.loggers.Logger):
  """Presses Ctrl-C after ``calls`` compiled calls (a tracker is flushed after each)."""

  def __init__(self, calls: int):
    self.calls = calls

  def log(self, run, step, metrics):
    del run, step, metrics

  def flush(self):
    self.calls -= 1
    if self.calls == 0:
      raise KeyboardInterrupt


def _flat(result: fj.SweepResult) -> dict[str, np.ndarray]:
  out = {f"history/{k}": np.asarray(v) for k, v in result.history.items()}
  for prefix, tree in [("params", result.final_params), ("state", result.final_batch_stats)]:
    if tree is None:
      continue
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
      out[f"{prefix}/{jax.tree_util.keystr(path)}"] = np.asarray(leaf)
  if result.pruned_at is not None:
    out["pruned_at"] = np.asarray(result.pruned_at)
  out["epochs"] = np.asarray(result.epochs)
  return out


def _computation(directory: str) -> str:
  with open(os.path.join(directory, "sweep.json")) as f:
    return json.load(f)["computation"]


def _run(model, data, *, interrupt_after: int | None = None, **kw) -> tuple[dict, list[str]]:
  """The sweep with a checkpoint (for its computation key), interrupted and resumed if asked."""
  one_device = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("models",))
  kw = dict(progress=False, mesh=one_device, **kw)
  with tempfile.TemporaryDirectory() as tmp:
    directory = os.path.join(tmp, "ckpt")
    if interrupt_after is not None:
      saved = _sweep.checkpoint.EVERY_S
      _sweep.checkpoint.EVERY_S = 0.0  # save the call in progress after every call
      try:
        try:
          fj.sweep(
            model, data, checkpoint_dir=directory, loggers=[_StopAfter(interrupt_after)], **kw
          )
        except KeyboardInterrupt:
          pass
        else:
          raise AssertionError("the interrupting logger did not stop the sweep")
        result = fj.sweep(model, data, checkpoint_dir=directory, **kw)
      finally:
        _sweep.checkpoint.EVERY_S = saved
    else:
      result = fj.sweep(model, data, checkpoint_dir=directory, **kw)
    return _flat(result), [_computation(directory)]


def linen_batchnorm(data):
  return _run(
    BatchNormMLP(),
    data,
    flood_levels=[0.0, 0.3, 0.8],
    seeds=[0, 1],
    optimizer=optax.sgd(0.05, momentum=0.9),
    epochs=4,
    batch_size=16,
    chunk_size=2,
    epochs_per_call=2,
    augment=_jitter,
  )


def nnx_dropout(data):
  return _run(
    lambda rngs: DropoutNet(rngs),
    data,
    flood_levels=[0.0, 0.5],
    seeds=[3, 4],
    optimizer=optax.adam(1e-2),
    epochs=5,
    batch_size=24,
    chunk_size=4,
    eval_every=2,
  )


def plain_model_with_key(data):
  return _run(
    PLAIN,
    data,
    flood_levels=[0.0, 0.4],
    seeds=[0, 1, 2],
    optimizer=optax.sgd(0.1),
    epochs=3,
    batch_size=32,
    chunk_size=3,
    train_eval_size=40,
    eval_test=False,
  )


def hyperparams(data):
  return _run(
    BatchNormMLP(),
    data,
    flood_levels=[0.0, 0.5],
    seeds=[0],
    optimizer=optax.inject_hyperparams(optax.sgd)(learning_rate=0.1, momentum=0.5),
    hyperparams={"learning_rate": [0.02, 0.1], "momentum": [0.0, 0.9]},
    epochs=3,
    batch_size=16,
    chunk_size=4,
  )


def iflood(data):
  return _run(
    PLAIN,
    data,
    objective="iflood",
    flood_levels=[0.0, 0.6],
    seeds=[0, 1],
    optimizer=optax.sgd(0.1),
    epochs=4,
    batch_size=16,
    chunk_size=2,
  )


def adaflood(data):
  levels = np.random.default_rng(1).uniform(0.0, 1.5, data.num_train).astype(np.float32)
  return _run(
    PLAIN,
    data,
    objective="adaflood",
    per_example_levels=levels,
    gamma=[0.0, 0.5],
    seeds=[0, 1],
    optimizer=optax.sgd(0.1),
    epochs=3,
    batch_size=16,
    chunk_size=2,
  )


def fold_models(data):
  levels = fj.adaflood_levels(
    BatchNormMLP(),
    data,
    folds=3,
    optimizer=optax.sgd(0.05),
    epochs=3,
    batch_size=16,
    seeds=[5],
    chunk_size=3,
    progress=False,
  )
  return {"levels": np.asarray(levels)}, []


def halving(data):
  return _run(
    PLAIN,
    data,
    flood_levels=[0.0, 0.2, 0.5, 0.9, 1.3],
    seeds=[0, 1],
    optimizer=optax.sgd(0.1),
    epochs=6,
    batch_size=16,
    chunk_size=2,
    epochs_per_call=1,
    prune=fj.Halving(min_epochs=2, factor=2),
  )


def halving_trend(data):
  return _run(
    BatchNormMLP(),
    data,
    flood_levels=[0.0, 0.3, 0.6, 1.0],
    seeds=[0],
    optimizer=optax.sgd(0.05),
    epochs=8,
    batch_size=16,
    chunk_size=2,
    epochs_per_call=2,
    prune=fj.Halving(min_epochs=2, factor=2, score="trend"),
  )


def resumed_mid_call(data):
  # 2 calls of 2 models, 3 chunks of 2 epochs each: stopped after 4 of 6 compiled calls.
  return _run(
    BatchNormMLP(),
    data,
    interrupt_after=4,
    flood_levels=[0.0, 0.3, 0.8, 1.2],
    seeds=[0],
    optimizer=optax.adam(1e-2),
    epochs=6,
    batch_size=16,
    chunk_size=2,
    epochs_per_call=2,
  )


def resumed_in_pruned_segment(data):
  return _run(
    PLAIN,
    data,
    interrupt_after=5,
    flood_levels=[0.0, 0.2, 0.5, 0.9, 1.3],
    seeds=[0, 1],
    optimizer=optax.sgd(0.1),
    epochs=6,
    batch_size=16,
    chunk_size=2,
    epochs_per_call=1,
    prune=fj.Halving(min_epochs=2, factor=2),
  )


CASES: dict[str, Callable[[fj.Dataset], tuple[dict[str, Any], list[str]]]] = {
  f.__name__: f
  for f in [
    linen_batchnorm,
    nnx_dropout,
    plain_model_with_key,
    hyperparams,
    iflood,
    adaflood,
    fold_models,
    halving,
    halving_trend,
    resumed_mid_call,
    resumed_in_pruned_segment,
  ]
}

# What the bitwise comparison needs to hold: the same libraries (XLA's arithmetic can change
# between releases) and the same kind of CPU (XLA's CPU code depends on its vector unit). On
# another, the fixtures are recorded again with an engine known to be good.
VERSIONED = ("jax", "jaxlib", "flax", "optax", "numpy")


def machine() -> dict[str, str]:
  from importlib.metadata import version

  from flood_jax._devices import describe_cpu

  out = {name: version(name) for name in VERSIONED}
  out["cpu"] = describe_cpu().split(" ", 1)[1]  # without the core count
  return out


def machine_folder(recorded: dict[str, str]) -> str:
  """The folder under ``tests/golden/`` of one CPU kind's fixtures: ``amd-epyc-x86-64-avx2``."""
  return re.sub(r"[^a-z0-9]+", "-", recorded["cpu"].lower()).strip("-")
