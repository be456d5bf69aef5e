"""Whether a sweep learned anything: every model against a constant predictor.

A model that does not beat a predictor which ignores its input (for classification the
labels' shares, for a regression the targets' mean) learned nothing, and the "best" level
among such models is noise. :func:`warn_if_at_chance` says so after a sweep, in one line
(:class:`AtChanceWarning`), from the final validation numbers the result already holds.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from flood_jax._checks import user_stacklevel
from flood_jax._task import Classification, Task

if TYPE_CHECKING:
  from flood_jax._result import SweepResult

#: A loss within this fraction of the constant predictor's does not beat it.
TOLERANCE = 0.01
#: Every model's loss above this many times the constant predictor's: blown up, whatever its
#: accuracy says.
FAR_ABOVE = 10.0


class AtChanceWarning(UserWarning):
  """Every model of a sweep ended no better than a constant prediction: its best means nothing."""


def warn_if_at_chance(result: SweepResult, y_val: Any, task: Task) -> None:
  """Warns when no model of the sweep beats a constant predictor on the validation split.

  Said once, in one line, at the user's ``fj.sweep`` call, when the models that ended with a
  finite validation loss (the diverged ones :meth:`SweepResult.best` already reports) either

  - do not beat the constant predictor: no final validation loss below the task's
    :meth:`~flood_jax.Task.constant_loss` (less 1%) and, for classification, no final
    validation accuracy above the majority class's share (plus 1 point); or
  - all have a loss over 10 times the constant predictor's (a blown-up model whose accuracy
    edges past the majority share by luck).

  A task that cannot say its constant predictor's loss (a :class:`~flood_jax.Task` without
  ``constant_loss=``, a classification with its own loss) is judged by accuracy alone, or
  not at all.
  """
  y = np.asarray(y_val)
  if y.size == 0:
    return
  loss = np.asarray(result.history["val_loss"], np.float64)[..., -1]
  finite = loss[np.isfinite(loss)]
  if finite.size == 0:
    return  # every model diverged (or was pruned): result.best() says so
  constant = task.constant_loss(y)
  beats: list[bool] = []
  said: list[str] = []
  if constant is not None and np.isfinite(constant):
    beats.append(bool(np.any(finite < constant - TOLERANCE * abs(constant))))
    said.append(f"validation loss >= {constant:.3g}, a constant prediction's")
  if isinstance(task, Classification) and "val_accuracy" in result.history:
    _, counts = np.unique(y, return_counts=True)
    majority = float(counts.max() / counts.sum())
    accuracy = np.asarray(result.history["val_accuracy"], np.float64)[..., -1]
    accuracy = accuracy[np.isfinite(loss) & np.isfinite(accuracy)]
    beats.append(bool(np.any(accuracy > majority + TOLERANCE)))
    said.append(f"validation accuracy <= {majority:.3f}, the majority class's share")
  if beats and not any(beats):
    _warn(
      f"every model of the sweep ends at chance, no better than a constant prediction"
      f" ({' and '.join(said)}), so its best configuration means nothing; lower the learning"
      " rate, train longer, or check the model and data."
    )
  elif constant is not None and constant > 0 and np.all(finite > FAR_ABOVE * constant):
    _warn(
      f"every model of the sweep ends with a validation loss over {FAR_ABOVE:g}x a constant"
      f" prediction's ({float(finite.min()):.3g} at best against {constant:.3g}): they blew up,"
      " so its best configuration means nothing; lower the learning rate or check the model"
      " and data."
    )


def _warn(message: str) -> None:
  warnings.warn(message, AtChanceWarning, stacklevel=user_stacklevel())
