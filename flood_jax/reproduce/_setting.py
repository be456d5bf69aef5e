"""What every protocol shares: a setting (one row of a table), the paper's
optimizers, the grid of settings and a setting's folder name."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import optax

from flood_jax import _optimizers

# ``loggers=``: the loggers of one sweep, given a name for it (the setting's slug), so
# that each sweep of a protocol gets runs (and TensorBoard directories) of its own.
LoggerFactory = Callable[[str], Sequence[Any]]


@dataclasses.dataclass(frozen=True)
class Setting:
  """One row of a reproduction table: a data set, a noise rate, an optimizer."""

  dataset: str
  label_noise: float
  optimizer: str
  weight_decay: float = 0.0

  @property
  def label(self) -> str:
    text = f"{self.dataset}, noise {self.label_noise:g}, {self.optimizer}"
    if self.weight_decay:
      text += f", wd {self.weight_decay:g}"
    return text


def make_optimizer(
  name: str, learning_rate: float | None = None, weight_decay: float = 0.0
) -> optax.GradientTransformation:
  """The paper's optimizers: SGD (lr 0.01, momentum 0.9) or Adam (lr 0.001).

  Weight decay is L2, added to the gradient before the optimizer (as
  ``torch.optim.SGD``/``Adam``'s ``weight_decay`` in the paper's code; not
  AdamW): ``flood_jax._optimizers.optimizer`` with ``decay="l2"``.
  """
  if learning_rate is None:
    learning_rate = 0.01 if name == "sgd" else 0.001
  return _optimizers.optimizer(
    name,
    learning_rate,
    decay="l2",
    weight_decay=weight_decay,
    momentum=0.9 if name == "sgd" else None,
  )


def _grid(
  datasets: Sequence[str], noise_rates: Sequence[float], optimizers: Sequence[str]
) -> list[Setting]:
  """Every (data set, noise rate, optimizer) combination, in that order."""
  return [Setting(d, r, o) for d in datasets for r in noise_rates for o in optimizers]


def _slug(setting: Setting) -> str:
  """The setting's folder name: ``spiral_noise0.1_adam`` (``_wd1e-05`` with weight decay)."""
  text = f"{setting.dataset}_noise{setting.label_noise:g}_{setting.optimizer}"
  if setting.weight_decay:
    text += f"_wd{setting.weight_decay:g}"
  return text
