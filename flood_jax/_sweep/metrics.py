"""The metrics of a sweep, by name: what one evaluation computes and what the history keeps.

An evaluation of one model (:func:`flood_jax._sweep.program.evaluate_one`) computes, per split
of the evaluation set, the mean loss and accuracy: :data:`EVALUATED`, in that order. The history
keeps :data:`flood_jax._result.METRICS`: those but the training accuracy, then the epoch's
flooded fraction. :data:`REPORTED_COLUMNS` picks them out of an evaluation by name, so the two
orders are written once each and cannot drift apart.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from flood_jax._result import METRICS


class Evaluation(NamedTuple):
  """One model's evaluation: mean loss and accuracy per split (NaN for an empty split)."""

  train_loss: float
  train_accuracy: float
  val_loss: float
  val_accuracy: float
  test_loss: float
  test_accuracy: float


EVALUATED = Evaluation._fields
# The history's columns after the evaluated ones: what the training epoch itself measured.
TRAINED = ("flooded_fraction",)
REPORTED = tuple(m for m in METRICS if m not in TRAINED)
assert (*REPORTED, *TRAINED) == METRICS, "the history's evaluated metrics come first"
# Positions in an evaluation of the history's evaluated metrics (a constant of the program).
REPORTED_COLUMNS = tuple(EVALUATED.index(m) for m in REPORTED)


def column(name: str) -> int:
  """The history column of metric ``name`` (the last axis of the engine's history arrays)."""
  return METRICS.index(name)


def empty_history(num_models: int, epochs: int) -> np.ndarray:
  """``(models, epochs, metrics)`` of NaN: nothing evaluated yet."""
  return np.full((num_models, epochs, len(METRICS)), np.nan, np.float32)
