"""What every builder shares: option checks, splits carved at random, label noise."""

from __future__ import annotations

from typing import Any

import numpy as np

from flood_jax._checks import int_at_least, is_integer, is_number
from flood_jax._dataset import Dataset


def check_noise(label_noise: Any) -> float:
  if not is_number(label_noise):
    raise ValueError(f"label_noise must be a number, got {label_noise!r}.")
  if not 0.0 <= float(label_noise) < 1.0:
    raise ValueError(f"label_noise must be in [0, 1) (a fraction of labels), got {label_noise}.")
  return float(label_noise)


def check_seed(seed: Any) -> int:
  if not is_integer(seed):
    raise ValueError(f"seed must be a non-negative integer, got {seed!r}.")
  if seed < 0:
    raise ValueError(f"seed must be a non-negative integer, got {seed}.")
  return int(seed)


def split_sizes(
  n_total: int, n_val: int | None, n_train: int | None, default_val: int
) -> tuple[int, int]:
  """Validates the validation and training sizes carved from ``n_total``."""
  n_val = default_val if n_val is None else int_at_least("n_val", n_val, 1)
  if n_val > n_total - 2:
    raise ValueError(
      f"n_val={n_val} is too large: the training split has {n_total}"
      f" examples and at least 2 must stay for training, so n_val <="
      f" {n_total - 2}."
    )
  rest = n_total - n_val
  n_train = rest if n_train is None else int_at_least("n_train", n_train, 2)
  if n_train > rest:
    raise ValueError(
      f"n_train={n_train} is more than the {rest} training examples left"
      f" after taking n_val={n_val} for validation."
    )
  return n_val, n_train


def _corrupt(y: np.ndarray, rate: float, num_classes: int, rng: np.random.Generator) -> np.ndarray:
  """Gives exactly ``round(rate * len(y))`` labels a different class."""
  y = np.array(y, dtype=np.int32)
  n_flip = round(rate * len(y))
  if n_flip == 0:
    return y
  idx = rng.choice(len(y), size=n_flip, replace=False)
  shift = rng.integers(1, num_classes, size=n_flip)  # never 0: always changes
  y[idx] = (y[idx] + shift) % num_classes
  return y


def read_only(a: np.ndarray) -> np.ndarray:
  """``a``, an array a builder made, read-only with its bases: ``Dataset`` keeps it uncopied.

  (A flattened or reshaped image set is a view of the builder's array; ``Dataset`` copies
  a view of a writable array, which another could still change.)
  """
  base = a
  while isinstance(base, np.ndarray):
    base.flags.writeable = False
    base = base.base
  return a


def with_noise(
  label_noise: float,
  num_classes: int,
  rng: np.random.Generator,
  *,
  name: str,
  x_train: np.ndarray,
  y_train: np.ndarray,
  x_val: np.ndarray,
  y_val: np.ndarray,
  x_test: np.ndarray,
  y_test: np.ndarray,
) -> Dataset:
  """Builds a ``Dataset``, corrupting the train and validation labels."""
  return Dataset(
    x_train=read_only(x_train),
    y_train=_corrupt(y_train, label_noise, num_classes, rng),
    x_val=read_only(x_val),
    y_val=_corrupt(y_val, label_noise, num_classes, rng),
    x_test=read_only(x_test),
    y_test=y_test,
    num_classes=num_classes,
    name=name,
  )


def split_indices(
  n_train_all: int,
  n_test_all: int,
  *,
  n_val: int | None,
  n_train: int | None,
  n_test: int | None,
  seed: int,
  default_val: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.random.Generator]:
  """Sorted validation, training and test indices, and the label noise's generator."""
  n_val, n_train = split_sizes(n_train_all, n_val, n_train, default_val=default_val)
  n_test = n_test_all if n_test is None else int_at_least("n_test", n_test, 1)
  if n_test > n_test_all:
    raise ValueError(f"n_test={n_test} is more than the {n_test_all} test examples.")
  split_rng, test_rng, noise_rng = np.random.default_rng(check_seed(seed)).spawn(3)
  order = split_rng.permutation(n_train_all)
  # Sorted indices read the data in order; the order is irrelevant since
  # training shuffles.
  val_idx = np.sort(order[:n_val])
  train_idx = np.sort(order[n_val : n_val + n_train])
  test_idx = (
    np.arange(n_test)
    if n_test == n_test_all
    else np.sort(test_rng.choice(n_test_all, n_test, replace=False))
  )
  return val_idx, train_idx, test_idx, noise_rng
