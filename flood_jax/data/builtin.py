"""The built-in sets, offline: the paper's synthetic sets, MNIST-1D, scikit-learn's digits and
diabetes."""

from __future__ import annotations

import random
from collections.abc import Callable

import numpy as np

from flood_jax._checks import int_at_least, number_in
from flood_jax._dataset import Dataset
from flood_jax.data.splits import check_noise, check_seed, read_only, split_sizes, with_noise

# --------------------------------------------------------------------------
# The paper's synthetic sets.

_Sampler = Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray]]


def _synthetic(
  name: str, sample: _Sampler, n_train: int, n_val: int, n_test: int, label_noise: float, seed: int
) -> Dataset:
  n_train = int_at_least("n_train", n_train, 2)
  n_val = int_at_least("n_val", n_val, 1)
  n_test = int_at_least("n_test", n_test, 1)
  label_noise = check_noise(label_noise)
  # One independent stream per split and one for the noise: the test set does
  # not change with n_train, and the clean data not with label_noise.
  train_rng, val_rng, test_rng, noise_rng = np.random.default_rng(check_seed(seed)).spawn(4)
  x_train, y_train = sample(train_rng, n_train)
  x_val, y_val = sample(val_rng, n_val)
  x_test, y_test = sample(test_rng, n_test)
  return with_noise(
    label_noise,
    2,
    noise_rng,
    name=name,
    x_train=x_train,
    y_train=y_train,
    x_val=x_val,
    y_val=y_val,
    x_test=x_test,
    y_test=y_test,
  )


def _shuffled(
  rng: np.random.Generator, x: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
  order = rng.permutation(len(y))
  return x[order], y[order]


def two_gaussians(
  *,
  n_train: int = 100,
  n_val: int = 100,
  n_test: int = 10_000,
  dim: int = 10,
  label_noise: float = 0.0,
  seed: int = 0,
) -> Dataset:
  """Two Gaussians: class 0 ~ N(0, I), class 1 ~ N(1, I) in ``dim`` dims."""
  dim = int_at_least("dim", dim, 1)

  def sample(rng: np.random.Generator, n: int):
    n1 = n // 2
    x = rng.standard_normal((n, dim))
    y = np.zeros(n, np.int32)
    y[n - n1 :] = 1
    x[y == 1] += 1.0
    return _shuffled(rng, x, y)

  return _synthetic("two_gaussians", sample, n_train, n_val, n_test, label_noise, seed)


def sinusoid(
  *,
  n_train: int = 100,
  n_val: int = 100,
  n_test: int = 10_000,
  label_noise: float = 0.0,
  seed: int = 0,
) -> Dataset:
  """Sinusoid: uniform in the radius-2 disk, y = [1.5 x1 + sin(1.5 x2) > 0]."""

  def sample(rng: np.random.Generator, n: int):
    radius = 2.0 * np.sqrt(rng.random(n))
    angle = 2.0 * np.pi * rng.random(n)
    x = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    y = (1.5 * x[:, 0] + np.sin(1.5 * x[:, 1]) > 0).astype(np.int32)
    return x, y

  return _synthetic("sinusoid", sample, n_train, n_val, n_test, label_noise, seed)


def spiral(
  *,
  n_train: int = 100,
  n_val: int = 100,
  n_test: int = 10_000,
  noise: float = 1.0,
  label_noise: float = 0.0,
  seed: int = 0,
) -> Dataset:
  """Two interleaved spirals, as in the official code.

  Per class, ``t`` runs evenly over ``[0, 4 pi]``; class 1 lies at radius
  ``t`` and class 0 at radius ``t + pi``, both at angle ``t``, plus Gaussian
  noise of standard deviation ``noise`` on each coordinate.
  """
  noise = number_in("noise", noise, 0.0, np.inf, high_open=True)

  def sample(rng: np.random.Generator, n: int):
    xs, ys = [], []
    for label, count, offset in ((1, n // 2, 0.0), (0, n - n // 2, np.pi)):
      t = np.linspace(0.0, 4.0 * np.pi, count)
      r = t + offset
      xs.append(np.stack([r * np.cos(t), r * np.sin(t)], axis=1))
      ys.append(np.full(count, label, np.int32))
    x = np.concatenate(xs) + noise * rng.standard_normal((n, 2))
    return _shuffled(rng, x, np.concatenate(ys))

  return _synthetic("spiral", sample, n_train, n_val, n_test, label_noise, seed)


# --------------------------------------------------------------------------
# MNIST-1D and scikit-learn's digits.


def mnist1d(
  *, n_val: int = 1000, n_train: int | None = None, label_noise: float = 0.0, seed: int = 0
) -> Dataset:
  """MNIST-1D, standardized with the training split's global mean and std.

  The standard MNIST-1D (the package's default arguments, its own seed 42:
  4000 training and 1000 test examples of length 40) is generated locally;
  ``seed`` picks the validation split carved from the 4000 and the label
  noise. Inputs are standardized with one mean and one standard deviation
  computed over all values of the training split (global, not per feature:
  it keeps the signals' shapes).
  """
  label_noise = check_noise(label_noise)
  split_rng, noise_rng = np.random.default_rng(check_seed(seed)).spawn(2)
  # Checked before the (one second) generation; 4000 is the package default.
  split_sizes(4000, n_val, n_train, default_val=1000)

  # Imported here: mnist1d pulls in matplotlib and requests.
  from mnist1d.data import get_dataset_args, make_dataset

  # make_dataset reseeds NumPy's and Python's global generators; undo that.
  numpy_state, python_state = np.random.get_state(), random.getstate()  # noqa: NPY002 (the global state is what we restore)
  try:
    raw = make_dataset(get_dataset_args())
  finally:
    np.random.set_state(numpy_state)  # noqa: NPY002
    random.setstate(python_state)

  x, y = np.asarray(raw["x"]), np.asarray(raw["y"])
  n_val, n_train = split_sizes(len(y), n_val, n_train, default_val=1000)
  order = split_rng.permutation(len(y))
  val, train = order[:n_val], order[n_val : n_val + n_train]
  mean, std = x[train].mean(), x[train].std()

  def scale(a: np.ndarray) -> np.ndarray:
    return ((a - mean) / std).astype(np.float32)

  return with_noise(
    label_noise,
    10,
    noise_rng,
    name="mnist1d",
    x_train=scale(x[train]),
    y_train=y[train],
    x_val=scale(x[val]),
    y_val=y[val],
    x_test=scale(np.asarray(raw["x_test"])),
    y_test=np.asarray(raw["y_test"]),
  )


def digits(
  *, val_fraction: float = 0.2, test_fraction: float = 0.2, label_noise: float = 0.0, seed: int = 0
) -> Dataset:
  """scikit-learn's digits: 1797 8x8 images, pixels / 16, flattened to 64."""
  val_fraction = number_in("val_fraction", val_fraction, 0.0, 1.0, low_open=True, high_open=True)
  test_fraction = number_in("test_fraction", test_fraction, 0.0, 1.0, low_open=True, high_open=True)
  label_noise = check_noise(label_noise)
  from sklearn.datasets import load_digits

  pixels, labels = load_digits(return_X_y=True)
  x = (np.asarray(pixels) / 16.0).astype(np.float32)
  y = np.asarray(labels).astype(np.int32)
  n = len(y)
  n_val, n_test = round(val_fraction * n), round(test_fraction * n)
  if min(n_val, n_test) < 1 or n - n_val - n_test < 2:
    raise ValueError(
      f"val_fraction={val_fraction} and test_fraction={test_fraction} leave"
      f" {n - n_val - n_test} of {n} examples for training and {n_val},"
      f" {n_test} for validation and test; each split needs examples."
    )
  split_rng, noise_rng = np.random.default_rng(check_seed(seed)).spawn(2)
  order = split_rng.permutation(n)
  test, val, train = order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]
  return with_noise(
    label_noise,
    10,
    noise_rng,
    name="digits",
    x_train=x[train],
    y_train=y[train],
    x_val=x[val],
    y_val=y[val],
    x_test=x[test],
    y_test=y[test],
  )


def diabetes(*, val_fraction: float = 0.2, test_fraction: float = 0.2, seed: int = 0) -> Dataset:
  r"""scikit-learn's diabetes regression set, standardized with the training split's statistics.

  The raw features :math:`x` (age, sex, body mass index, blood pressure, six
  serum measurements) and target :math:`t` (a measure of disease progression
  one year later) of 442 patients become :math:`(x - \mu_x) / \sigma_x` and
  :math:`(t - \mu_t) / \sigma_t`, with means and standard deviations of the
  training split only (so validation and test tell nothing to the scaling). A
  model predicting the training mean has a training MSE of 1.
  """
  val_fraction = number_in("val_fraction", val_fraction, 0.0, 1.0, low_open=True, high_open=True)
  test_fraction = number_in("test_fraction", test_fraction, 0.0, 1.0, low_open=True, high_open=True)
  from sklearn.datasets import load_diabetes

  features, target = load_diabetes(return_X_y=True, scaled=False)
  x, t = np.asarray(features, np.float64), np.asarray(target, np.float64)
  n = len(t)
  n_val, n_test = round(val_fraction * n), round(test_fraction * n)
  if min(n_val, n_test) < 1 or n - n_val - n_test < 2:
    raise ValueError(
      f"val_fraction={val_fraction} and test_fraction={test_fraction} leave"
      f" {n - n_val - n_test} of {n} examples for training and {n_val},"
      f" {n_test} for validation and test; each split needs examples."
    )
  order = np.random.default_rng(check_seed(seed)).permutation(n)
  test, val, train = order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]
  mean_x, std_x = x[train].mean(0), x[train].std(0)
  mean_t, std_t = t[train].mean(), t[train].std()

  def split(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return (
      ((x[rows] - mean_x) / std_x).astype(np.float32),
      ((t[rows] - mean_t) / std_t).astype(np.float32),
    )

  (x_train, y_train), (x_val, y_val), (x_test, y_test) = split(train), split(val), split(test)
  return Dataset(
    x_train=read_only(x_train),
    y_train=y_train,
    x_val=read_only(x_val),
    y_val=y_val,
    x_test=read_only(x_test),
    y_test=y_test,
    name="diabetes",
  )
