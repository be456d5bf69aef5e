"""``Dataset``: the train/validation/test arrays a sweep trains and evaluates on."""

from __future__ import annotations

import dataclasses

import numpy as np
from numpy.typing import ArrayLike


@dataclasses.dataclass(frozen=True)
class Dataset:
  """A classification data set: inputs and integer labels for three splits.

  Inputs are stored as float32 NumPy arrays of shape ``(n, *features)`` and
  labels as int32 arrays of shape ``(n,)`` with values in
  ``[0, num_classes)``. Construction checks the arrays and raises a one-line
  ``ValueError`` saying what is wrong.

  Attributes:
    x_train, y_train: training inputs and labels.
    x_val, y_val: validation inputs and labels (for choosing the flood level).
    x_test, y_test: test inputs and labels.
    num_classes: number of classes; inferred as ``max(label) + 1`` if omitted.
    name: a label for tables and plots.

  Examples:
    >>> import numpy as np
    >>> import flood_jax as fj
    >>> x, y = np.zeros((6, 2)), np.array([0, 1, 0, 1, 0, 1])
    >>> data = fj.Dataset(x_train=x, y_train=y, x_val=x, y_val=y,
    ...                   x_test=x, y_test=y)
    >>> data.num_classes, data.input_shape
    (2, (2,))
  """

  x_train: np.ndarray
  y_train: np.ndarray
  x_val: np.ndarray
  y_val: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  num_classes: int | None = None
  name: str = "dataset"

  def __post_init__(self) -> None:
    labels = {}
    for split in ("train", "val", "test"):
      x = _as_inputs(getattr(self, f"x_{split}"), f"x_{split}")
      y = _as_labels(getattr(self, f"y_{split}"), f"y_{split}")
      if x.shape[0] != y.shape[0]:
        raise ValueError(
          f"x_{split} has {x.shape[0]} examples but y_{split} has {y.shape[0]}; they must match."
        )
      if x.shape[0] == 0:
        raise ValueError(f"the {split} split is empty; give it examples.")
      object.__setattr__(self, f"x_{split}", x)
      object.__setattr__(self, f"y_{split}", y)
      labels[split] = y
    shapes = {s: getattr(self, f"x_{s}").shape[1:] for s in labels}
    if len(set(shapes.values())) != 1:
      raise ValueError(
        f"inputs differ in shape between splits: {shapes}; every split must"
        " have the same example shape."
      )
    highest = max(int(y.max()) for y in labels.values())
    num_classes = self.num_classes
    if num_classes is None:
      num_classes = max(highest + 1, 2)
    elif num_classes < 2:
      raise ValueError(f"num_classes must be at least 2, got {num_classes}.")
    for split, y in labels.items():
      if y.min() < 0 or y.max() >= num_classes:
        raise ValueError(
          f"y_{split} has labels in [{y.min()}, {y.max()}] but num_classes"
          f" is {num_classes}; labels must lie in [0, {num_classes})."
        )
    object.__setattr__(self, "num_classes", int(num_classes))

  @property
  def input_shape(self) -> tuple[int, ...]:
    """Shape of one input example."""
    return tuple(self.x_train.shape[1:])

  @property
  def num_train(self) -> int:
    """Number of training examples."""
    return int(self.x_train.shape[0])

  def __repr__(self) -> str:
    return (
      f"Dataset(name={self.name!r}, train={self.x_train.shape[0]},"
      f" val={self.x_val.shape[0]}, test={self.x_test.shape[0]},"
      f" input_shape={self.input_shape}, num_classes={self.num_classes})"
    )


def _as_inputs(x: ArrayLike, name: str) -> np.ndarray:
  x = np.asarray(x)
  if x.ndim < 2:
    raise ValueError(
      f"{name} must have shape (examples, features...), got {x.shape}; add"
      " a feature axis with x[:, None]."
    )
  if not np.issubdtype(x.dtype, np.number) and x.dtype != np.bool_:
    raise ValueError(f"{name} must be numeric, got dtype {x.dtype}.")
  x = x.astype(np.float32)
  if not np.all(np.isfinite(x)):
    bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
    raise ValueError(f"{name} has {bad} NaN or infinite values; clean or impute them first.")
  return x


def _as_labels(y: ArrayLike, name: str) -> np.ndarray:
  y = np.asarray(y)
  if y.ndim != 1:
    raise ValueError(
      f"{name} must be a 1-D array of integer class labels, got shape"
      f" {y.shape}; for one-hot labels pass y.argmax(-1)."
    )
  if np.issubdtype(y.dtype, np.floating):
    if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
      raise ValueError(f"{name} must hold integer class labels, got non-integers.")
  elif not np.issubdtype(y.dtype, np.integer) and y.dtype != np.bool_:
    raise ValueError(f"{name} must hold integer class labels, got dtype {y.dtype}.")
  # Labels are int32 on the device: a larger one would wrap around silently.
  if y.size and y.dtype != np.bool_ and (y.min() < -(2**31) or y.max() >= 2**31):
    raise ValueError(
      f"{name} holds labels outside int32 (from {y.min()} to {y.max()}); number"
      " the classes 0 to num_classes - 1."
    )
  return y.astype(np.int32)
