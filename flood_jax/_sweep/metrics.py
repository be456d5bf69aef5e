"""The metrics of a sweep, by name: what one evaluation computes and what the history keeps.

An evaluation of one model (:func:`flood_jax._sweep.program.evaluate_one`) computes, per split
of the evaluation set (training subsample, validation, test), the mean loss and each of the
task's metrics, in the task's order: :func:`evaluated`. The history keeps the task's
``history_keys``: those but the training split's metrics, then the epoch's flooded fraction.
:func:`reported_columns` picks them out of an evaluation by name, so the two orders are
written once each and cannot drift apart. For :class:`~flood_jax.Classification` they are
``train_loss, train_accuracy, val_loss, ...`` and the history's ``train_loss, val_loss,
val_accuracy, test_loss, test_accuracy, flooded_fraction``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
  from flood_jax._task import Task

SPLITS = ("train", "val", "test")
# The history's columns after the evaluated ones: what the training epoch itself measured.
TRAINED = ("flooded_fraction",)


def evaluated(task: Task) -> tuple[str, ...]:
  """What one evaluation computes, in order: per split, ``<split>_loss``, ``<split>_<metric>``."""
  return tuple(f"{split}_{name}" for split in SPLITS for name in ("loss", *task.metric_names))


def reported(task: Task) -> tuple[str, ...]:
  """The history's evaluated keys (the task's history keys but the flooded fraction)."""
  keys = tuple(k for k in task.history_keys if k not in TRAINED)
  assert (*keys, *TRAINED) == task.history_keys, "the history's evaluated metrics come first"
  return keys


def reported_columns(task: Task) -> tuple[int, ...]:
  """Positions in an evaluation of the history's evaluated metrics (a constant of the program)."""
  names = evaluated(task)
  return tuple(names.index(m) for m in reported(task))


def column(task: Task, name: str) -> int:
  """The history column of metric ``name`` (the last axis of the engine's history arrays)."""
  return task.history_keys.index(name)


def empty_history(task: Task, num_models: int, epochs: int) -> np.ndarray:
  """``(models, epochs, metrics)`` of NaN: nothing evaluated yet."""
  return np.full((num_models, epochs, len(task.history_keys)), np.nan, np.float32)
