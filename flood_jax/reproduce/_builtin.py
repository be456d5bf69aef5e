"""The synthetic protocol's analysis on the offline benchmark sets: :func:`builtin`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flood_jax import data as data_lib
from flood_jax import models as models_lib
from flood_jax.reproduce._compare import Comparison
from flood_jax.reproduce._flooding import _run_protocol
from flood_jax.reproduce._setting import LoggerFactory, Setting, _grid


def builtin(
  out_dir: str,
  *,
  datasets: Sequence[str] = ("mnist1d",),
  noise_rates: Sequence[float] = (0.0,),
  optimizers: Sequence[str] = ("adam",),
  flood_levels: Sequence[float] = (0.0, 0.02, 0.05, 0.1, 0.2, 0.3),
  seeds: int = 3,
  epochs: int = 100,
  hidden: int = 500,
  depth: int = 4,
  batch_size: int = 100,
  eval_every: int = 1,
  progress: bool = True,
  loggers: LoggerFactory | None = None,
) -> list[Comparison]:
  """The same table on the offline benchmark sets (``mnist1d``, ``digits``)."""
  settings = _grid(datasets, noise_rates, optimizers)

  def load(setting: Setting):
    return data_lib.load(setting.dataset, label_noise=setting.label_noise, seed=0)

  def model(setting: Setting, ds) -> Any:
    return models_lib.MLP(num_classes=ds.num_classes, hidden=hidden, depth=depth)

  return _run_protocol(
    "builtin",
    out_dir,
    settings,
    load,
    model,
    flood_levels,
    seeds,
    epochs,
    batch_size,
    progress,
    loggers=loggers,
    eval_every=eval_every,
    extra_config=dict(hidden=hidden, depth=depth, batch_size=batch_size, eval_every=eval_every),
  )
