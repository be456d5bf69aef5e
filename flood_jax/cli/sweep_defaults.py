"""The defaults and fixed choices of ``flood-jax sweep`` (:mod:`flood_jax.cli.sweep_config`
types its options; these are the values an option takes when it is not given)."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from flood_jax.cli.common import OUT_ROOT

if TYPE_CHECKING:
  from flood_jax._optimizers import Decay


@dataclasses.dataclass(frozen=True)
class SweepDefaults:
  """The defaults of ``flood-jax sweep``: MNIST-1D with the paper's MLP.

  Chosen so that ``flood-jax sweep`` alone finishes in about two minutes on
  an idle 2-core CPU and shows what flooding does: without it the training
  loss goes to zero and the test loss climbs; with it the test loss comes
  down again. Three seeds rather than two, and four levels rather than six
  (the same 12 models), so that its conclusion (the test loss lower at every
  level, beyond seed noise; accuracy not told apart from ``b = 0``) has the
  power of a paired test and does not turn on one machine's round-off.
  """

  dataset: str = "mnist1d"
  model: str = "mlp"
  hidden: int = 500  # MLP width (the paper's); --hidden sets the CNN's too.
  depth: int = 2  # MLP hidden layers.
  levels: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2)
  seeds: int = 3
  epochs: int = 150
  batch_size: int = 100
  optimizer: str = "sgd"
  sgd_lr: float = 0.1
  adam_lr: float = 1e-3
  momentum: float = 0.9
  weight_decay: float = 0.0
  objective: str = "flood"
  augment: bool = False
  label_noise: float = 0.0
  out_root: str = OUT_ROOT  # --out defaults to runs/sweep-DATASET-TIMESTAMP.


DEFAULTS = SweepDefaults()

OBJECTIVES = ("flood", "iflood")
# The form of --weight-decay per --optimizer (flood_jax._optimizers): AdamW's
# decoupled decay for adam; for sgd, L2 (added to the gradient before the momentum).
DECAY: dict[str, Decay] = {"adam": "decoupled", "sgd": "l2"}
# Options that take a comma list: one value is a fixed setting of the
# optimizer, several are an axis of the grid, by optax hyperparameter name.
HYPERPARAMS = {"lr": "learning_rate", "weight_decay": "weight_decay"}
# Built-in regression sets: swept with fj.Regression() and the MLP (one output per target),
# with defaults of their own where an option is not given.
REGRESSION_SETS = ("diabetes",)
REGRESSION_DEFAULTS = {"optimizer": "adam", "adam_lr": 3e-3, "batch_size": 16, "hidden": 128}
