"""The paper's synthetic experiments (Sec. 4.1): :func:`synthetic` and its presets."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from flood_jax import data as data_lib
from flood_jax import models as models_lib
from flood_jax.reproduce._compare import Comparison
from flood_jax.reproduce._flooding import _run_protocol
from flood_jax.reproduce._setting import LoggerFactory, Setting, _grid

SYNTHETIC_SETS = ("two_gaussians", "sinusoid", "spiral")


# The paper's synthetic protocol: about 80 hours on a 2-core CPU (measured
# 94 ms per model-epoch for the 4x500 MLP with a 10,000-example test set).
SYNTHETIC_PAPER: dict[str, Any] = dict(
  noise_rates=(0.0, 0.01, 0.05, 0.1),
  flood_levels=tuple(np.round(np.arange(0, 0.501, 0.01), 2)),
  seeds=5,
  epochs=500,
  n_test=10_000,
)


# The same settings cut to about 30 minutes on a 2-core CPU: the paper's noise
# rates, every 5th level, 100 epochs, a 1,000-example test set.
SYNTHETIC_CPU: dict[str, Any] = dict(
  noise_rates=(0.01, 0.05, 0.1),
  flood_levels=tuple(np.round(np.arange(0, 0.501, 0.05), 2)),
  seeds=5,
  epochs=100,
  n_test=1000,
)


PRESETS = {"cpu": SYNTHETIC_CPU, "paper": SYNTHETIC_PAPER}


def synthetic(
  out_dir: str,
  *,
  datasets: Sequence[str] = SYNTHETIC_SETS,
  noise_rates: Sequence[float] = SYNTHETIC_PAPER["noise_rates"],
  optimizers: Sequence[str] = ("sgd", "adam"),
  flood_levels: Sequence[float] = SYNTHETIC_PAPER["flood_levels"],
  seeds: int = SYNTHETIC_PAPER["seeds"],
  epochs: int = SYNTHETIC_PAPER["epochs"],
  n_train: int = 100,
  n_val: int = 100,
  n_test: int = SYNTHETIC_PAPER["n_test"],
  hidden: int = 500,
  depth: int = 4,
  batch_size: int = 200,
  eval_every: int = 2,
  progress: bool = True,
  loggers: LoggerFactory | None = None,
) -> list[Comparison]:
  """The paper's synthetic experiments; writes a table, JSON and figures to ``out_dir``.

  Defaults are :data:`SYNTHETIC_PAPER` and follow the official code
  (``synthetic/demo_synth.py``): batch size
  200 (so with 100 training examples, one full-batch step per epoch), 500
  epochs, the 4x500 BatchNorm MLP. Pass smaller values to fit a time budget;
  what was run is recorded in ``reproduce.json``.
  """
  settings = _grid(datasets, noise_rates, optimizers)
  model = models_lib.MLP(num_classes=2, hidden=hidden, depth=depth)

  def load(setting: Setting):
    return data_lib.load(
      setting.dataset,
      n_train=n_train,
      n_val=n_val,
      n_test=n_test,
      label_noise=setting.label_noise,
      seed=0,
    )

  return _run_protocol(
    "synthetic",
    out_dir,
    settings,
    load,
    lambda s, d: model,
    flood_levels,
    seeds,
    epochs,
    min(batch_size, n_train),
    progress,
    loggers=loggers,
    eval_every=eval_every,
    extra_config=dict(
      n_train=n_train,
      n_val=n_val,
      n_test=n_test,
      hidden=hidden,
      depth=depth,
      batch_size=batch_size,
      eval_every=eval_every,
    ),
  )
