"""The grid of a sweep: flood levels x optimizer hyperparameters x seeds.

Every point of the grid is one model. The engine trains them as a flat list in
**seed-major** order: all configurations (a flood level with one value of each
hyperparameter, level outermost) of seed 0, then those of seed 1, and so on.
Models that share a seed, and with it the initialization, the order of
mini-batches, the dropout masks and the augmentation, then sit side by side.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from flood_jax._checks import number_list
from flood_jax._transform import check_flood_level

# Hyperparameters that must be positive: the command line refuses --lr <= 0 too.
_POSITIVE = ("learning_rate",)


def _listed(values: np.ndarray) -> str:
  return "[" + ", ".join(f"{float(v):g}" for v in values) + "]"


@dataclasses.dataclass(frozen=True)
class Grid:
  """Flood levels, hyperparameter values and seeds, and their flat order.

  Attributes:
    flood_levels: ``(levels,)`` float32.
    hyperparams: name -> ``(values,)`` float32, in the order given.
    seeds: ``(seeds,)`` int64.
  """

  flood_levels: np.ndarray
  hyperparams: dict[str, np.ndarray]
  seeds: np.ndarray

  @classmethod
  def build(
    cls,
    flood_levels: Sequence[float] | np.ndarray,
    hyperparams: Mapping[str, Sequence[float]] | None,
    seeds: Sequence[int] | np.ndarray,
  ) -> Grid:
    """Checks the three axes and builds the grid; one-line errors on bad input."""
    levels = number_list("flood_levels", flood_levels, "[0.0, 0.05, 0.1]")
    for level in levels:
      check_flood_level(float(level), name="every flood level")
    if len(np.unique(levels.astype(np.float32))) != levels.size:
      raise ValueError(
        f"flood_levels must be distinct (a repeated level trains the same models"
        f" twice), got {_listed(levels)}."
      )
    seed_array = np.asarray(seeds)
    if (
      seed_array.ndim != 1
      or seed_array.size == 0
      or not np.issubdtype(seed_array.dtype, np.integer)
    ):
      raise ValueError(f"seeds must be a non-empty list of integers, got {seeds!r}.")
    if len(set(seed_array.tolist())) != seed_array.size:
      raise ValueError(f"seeds must be distinct, got {seeds!r}.")
    if np.any(seed_array < 0) or np.any(seed_array >= 2**31):
      raise ValueError(f"seeds must lie in [0, 2**31), got {seeds!r}.")
    grids: dict[str, np.ndarray] = {}
    if hyperparams is not None:
      if not isinstance(hyperparams, Mapping):
        raise TypeError(
          "hyperparams must be a dict of name -> list of values, e.g."
          f" {{'learning_rate': [0.01, 0.1]}}; got {type(hyperparams).__name__}."
        )
      for name, values in hyperparams.items():
        if name in ("flood_level", "seed"):
          raise ValueError(
            f"hyperparams cannot name {name!r}: it is an axis of every sweep;"
            " pass flood_levels= or seeds= instead."
          )
        array = number_list(f"hyperparams[{name!r}]", values, "[0.01, 0.1]")
        if not np.all(np.isfinite(array)):
          raise ValueError(f"hyperparams[{name!r}] must be finite numbers, got {values!r}.")
        if len(np.unique(array.astype(np.float32))) != array.size:
          raise ValueError(
            f"hyperparams[{name!r}] must be distinct values (a repeated one trains the"
            f" same models twice), got {_listed(array)}."
          )
        if name in _POSITIVE and np.any(array <= 0):
          raise ValueError(
            f"hyperparams[{name!r}] must be positive (a {name} <= 0 does not descend),"
            f" got {_listed(array)}."
          )
        grids[str(name)] = array.astype(np.float32)
    return cls(levels.astype(np.float32), grids, seed_array.astype(np.int64))

  @property
  def axes(self) -> tuple[str, ...]:
    """Names of the axes: ``("flood_level", *hyperparameters, "seed")``."""
    return ("flood_level", *self.hyperparams, "seed")

  @property
  def config_shape(self) -> tuple[int, ...]:
    """``(levels, *values per hyperparameter)``: the configurations."""
    return (len(self.flood_levels), *(len(v) for v in self.hyperparams.values()))

  @property
  def shape(self) -> tuple[int, ...]:
    """``(levels, *values per hyperparameter, seeds)``."""
    return (*self.config_shape, len(self.seeds))

  @property
  def num_configs(self) -> int:
    return int(np.prod(self.config_shape))

  @property
  def num_models(self) -> int:
    return self.num_configs * len(self.seeds)

  def flat(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per model, in the flat order: levels ``(M,)``, hyperparameters ``(M, H)``, seeds ``(M,)``."""
    index = np.indices(self.config_shape).reshape(len(self.config_shape), -1)
    levels = self.flood_levels[index[0]]
    hparams = (
      np.stack(
        [values[index[i + 1]] for i, values in enumerate(self.hyperparams.values())],
        axis=-1,
      )
      if self.hyperparams
      else np.zeros((self.num_configs, 0), np.float32)
    )
    num_seeds = len(self.seeds)
    return (
      np.tile(levels, num_seeds).astype(np.float32),
      np.tile(hparams, (num_seeds, 1)).astype(np.float32),
      np.repeat(self.seeds, self.num_configs),
    )

  def unflatten(self, flat: Any) -> Any:
    """``(models, ...)`` in the flat order to ``(levels, *hyperparameters, seeds, ...)``."""
    seeds_first = flat.reshape((len(self.seeds), *self.config_shape, *flat.shape[1:]))
    # Weights left on the device stay there (jnp), host arrays stay NumPy.
    xp = jnp if isinstance(flat, jax.Array) else np
    return xp.moveaxis(seeds_first, 0, len(self.config_shape))

  def to_dict(self) -> dict[str, Any]:
    """The axes as JSON-ready lists (``hyperparams`` only when there are some)."""
    out: dict[str, Any] = {"flood_levels": [float(b) for b in self.flood_levels]}
    if self.hyperparams:
      out["hyperparams"] = {
        name: [float(v) for v in values] for name, values in self.hyperparams.items()
      }
    out["seeds"] = [int(s) for s in self.seeds]
    return out
