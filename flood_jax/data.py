"""Data sets for flooding experiments, returned as :class:`flood_jax.Dataset`.

One entry point, :func:`load`, with the names in :data:`DATASETS`:

* Built in, offline, generated in a second or less:

  - ``two_gaussians``, ``sinusoid``, ``spiral``: the synthetic binary data sets
    of the flooding paper (Ishida et al., 2020, Sec. 4.1), generated as in the
    official code (``takashiishida/flooding``, folder ``synthetic/``).
  - ``mnist1d``: MNIST-1D (Greydanus, 2020), built locally by the ``mnist1d``
    package (never downloaded).
  - ``digits``: scikit-learn's 8x8 hand-written digits (ships with sklearn).
  - ``diabetes``: scikit-learn's diabetes regression set (ships with sklearn):
    10 features, a float target; for ``fj.Regression()``.

* Benchmark image sets, through the optional extra
  ``pip install "flood_jax[datasets]"``: ``mnist``, ``fashion_mnist``,
  ``kmnist``, ``cifar10``, ``cifar100``, ``svhn``. They are read with Hugging
  Face ``datasets`` rather than TensorFlow Datasets because ``datasets`` does
  not pull in TensorFlow (a multi-GB dependency whose pinned versions conflict
  with JAX's), hands back NumPy-convertible data directly, and caches in a
  standard place (``~/.cache/huggingface``, or ``cache_dir``). They need a
  network connection the first time; later loads read the local cache.

* The same image sets from their original distribution files in a local
  folder, with no network and no extra: ``load(name, data_dir=DIR)`` reads
  the IDX files of the MNIST family (gzipped or not; KMNIST's ``.npz`` too),
  the CIFAR python batches and the SVHN ``.mat`` files (see
  :data:`LOCAL_FILES`), with the paper's split: 80:20 of the original training
  set, the published test set.

Every set has a train, a validation (for choosing the flood level) and a test
split. ``label_noise=r`` replaces exactly ``round(r * n)`` labels of the
training split and, separately, of the validation split, chosen at random,
with a different class drawn uniformly (for two classes: the other one). The
test split is always clean. All randomness comes from
``numpy.random.default_rng(seed)``; NumPy's and Python's global random states
are left as they were.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import gzip
import importlib.util
import inspect
import os
import pickle
import random
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from flood_jax._checks import int_at_least, is_integer, is_number, number_in, true_or_false
from flood_jax._dataset import Dataset

__all__ = ["DATASETS", "IMAGE_SETS", "LOCAL_FILES", "ImageSpec", "load", "random_crop_flip"]


@dataclasses.dataclass(frozen=True)
class ImageSpec:
  """Where a benchmark image set lives on the Hugging Face Hub, and its format.

  Attributes:
    hub_id: repository id on the Hub.
    config: configuration name passed to ``datasets.load_dataset`` (or None).
    image_column: column holding the images (``datasets.Image`` feature).
    label_column: column holding the integer class labels.
    num_classes: number of classes.
    mean: per-channel mean of the training images scaled to [0, 1].
    std: per-channel standard deviation of the same.
  """

  hub_id: str
  config: str | None
  image_column: str
  label_column: str
  num_classes: int
  mean: tuple[float, ...]
  std: tuple[float, ...]

  @property
  def channels(self) -> int:
    """Number of colour channels (1: grey, 3: RGB)."""
    return len(self.mean)


#: The benchmark image sets: Hub location, columns, classes, normalization.
IMAGE_SETS: dict[str, ImageSpec] = {
  "mnist": ImageSpec("ylecun/mnist", None, "image", "label", 10, (0.1307,), (0.3081,)),
  "fashion_mnist": ImageSpec(
    "zalando-datasets/fashion_mnist", None, "image", "label", 10, (0.2860,), (0.3530,)
  ),
  "kmnist": ImageSpec("tanganke/kmnist", None, "image", "label", 10, (0.1904,), (0.3475,)),
  "cifar10": ImageSpec(
    "uoft-cs/cifar10", None, "img", "label", 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
  ),
  "cifar100": ImageSpec(
    "uoft-cs/cifar100",
    None,
    "img",
    "fine_label",
    100,
    (0.5071, 0.4865, 0.4409),
    (0.2673, 0.2564, 0.2762),
  ),
  "svhn": ImageSpec(
    "ufldl-stanford/svhn",
    "cropped_digits",
    "image",
    "label",
    10,
    (0.4377, 0.4438, 0.4728),
    (0.1980, 0.2010, 0.1970),
  ),
}

#: Names accepted by :func:`load`.
DATASETS: tuple[str, ...] = (
  "two_gaussians",
  "sinusoid",
  "spiral",
  "mnist1d",
  "digits",
  "diabetes",
  *IMAGE_SETS,
)


def load(name: str, **options: Any) -> Dataset:
  """Loads a data set by name.

  Options by data set (defaults in brackets):

  * ``two_gaussians``: ``n_train`` [100], ``n_val`` [100], ``n_test``
    [10000], ``dim`` [10], ``label_noise`` [0.0], ``seed`` [0]. Class 0 is
    ``N(0, I)``, class 1 is ``N(1, I)`` in ``dim`` dimensions; balanced.
  * ``sinusoid``: ``n_train``, ``n_val``, ``n_test``, ``label_noise``,
    ``seed`` as above. ``x`` uniform in the disk of radius 2; label 1 where
    ``1.5 * x1 + sin(1.5 * x2) > 0``.
  * ``spiral``: the same, plus ``noise`` [1.0], the standard deviation of the
    Gaussian noise added to each coordinate (the official code's default).
    Two interleaved spirals, balanced.
  * ``mnist1d``: ``n_val`` [1000], ``n_train`` [all the rest: 3000],
    ``label_noise``, ``seed``. 40 features, 10 classes, 1000 test examples.
  * ``digits``: ``val_fraction`` [0.2], ``test_fraction`` [0.2],
    ``label_noise``, ``seed``. 64 features in [0, 1], 10 classes.
  * ``diabetes``: ``val_fraction`` [0.2], ``test_fraction`` [0.2], ``seed``.
    442 patients, 10 features, a float32 target (disease progression after a
    year), features and target standardized with the training split's mean
    and standard deviation; a regression (``task=fj.Regression()``).
  * ``mnist``, ``fashion_mnist``, ``kmnist``, ``cifar10``, ``cifar100``,
    ``svhn``: ``n_val`` [10% of the training split from the Hub, 20% from
    ``data_dir``], ``n_train`` [the rest], ``n_test`` [all], ``flatten``
    [False], ``pixels`` [False: float32, scaled and standardized per channel;
    True: the pixels as uint8, a quarter of the memory on every device, to be
    scaled there by :class:`flood_jax.models.FromPixels`], ``label_noise``,
    ``seed``, ``data_dir`` [None; or a folder with
    the original files, :data:`LOCAL_FILES`: no network, no extra],
    ``cache_dir`` [Hugging Face's default], ``hf_path`` [None: download from
    the Hub; or a directory written by ``DatasetDict.save_to_disk``]. The Hub
    needs ``pip install "flood_jax[datasets]"`` and, the first time, a network.

  Args:
    name: one of :data:`DATASETS` (case and ``-``/``_`` are not significant).
    **options: the data set's options listed above; any other raises.

  Returns:
    A :class:`flood_jax.Dataset` with float32 inputs and int32 labels (float32
    targets for ``diabetes``).

  Raises:
    ValueError: unknown name, unknown option, an option out of range, or a
      missing or garbled file in ``data_dir``.
    ImportError: an image set was asked for from the Hub without the
      ``datasets`` extra.
    ConnectionError: an image set was asked for from the Hub with no network
      (the message names ``data_dir``, the offline way).

  Examples:
    >>> from flood_jax import data
    >>> ds = data.load("two_gaussians", label_noise=0.1, seed=0)
    >>> ds
    Dataset(name='two_gaussians', train=100, val=100, test=10000, input_shape=(10,), num_classes=2)
    >>> data.load("spiral", n_train=50).x_train.shape
    (50, 2)
  """
  key = None
  if isinstance(name, str):
    key = name.strip().lower().replace("-", "_")
  if key not in _BUILDERS:
    raise ValueError(f"unknown data set {name!r}; known data sets: {', '.join(DATASETS)}.")
  builder = _BUILDERS[key]
  accepted = _option_names(builder)
  unknown = [k for k in options if k not in accepted]
  if unknown:
    hints = [difflib.get_close_matches(k, accepted, n=1) for k in unknown]
    hint = "".join(
      f" (did you mean {h[0]!r} for {k!r}?)" for k, h in zip(unknown, hints, strict=False) if h
    )
    raise ValueError(
      f"unknown option{'s' if len(unknown) > 1 else ''}"
      f" {', '.join(map(repr, unknown))} for data set {key!r}{hint}; it"
      f" takes: {', '.join(accepted)}."
    )
  return builder(**options)


def _option_names(builder: Callable[..., Dataset]) -> list[str]:
  params = inspect.signature(builder).parameters.values()
  return [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]


# --------------------------------------------------------------------------
# Checks shared by the builders (each raises a one-line ValueError).


def _check_noise(label_noise: Any) -> float:
  if not is_number(label_noise):
    raise ValueError(f"label_noise must be a number, got {label_noise!r}.")
  if not 0.0 <= float(label_noise) < 1.0:
    raise ValueError(f"label_noise must be in [0, 1) (a fraction of labels), got {label_noise}.")
  return float(label_noise)


def _check_seed(seed: Any) -> int:
  if not is_integer(seed):
    raise ValueError(f"seed must be a non-negative integer, got {seed!r}.")
  if seed < 0:
    raise ValueError(f"seed must be a non-negative integer, got {seed}.")
  return int(seed)


def _split_sizes(
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


def _with_noise(
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
    x_train=x_train,
    y_train=_corrupt(y_train, label_noise, num_classes, rng),
    x_val=x_val,
    y_val=_corrupt(y_val, label_noise, num_classes, rng),
    x_test=x_test,
    y_test=y_test,
    num_classes=num_classes,
    name=name,
  )


# --------------------------------------------------------------------------
# The paper's synthetic sets.

_Sampler = Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray]]


def _synthetic(
  name: str, sample: _Sampler, n_train: int, n_val: int, n_test: int, label_noise: float, seed: int
) -> Dataset:
  n_train = int_at_least("n_train", n_train, 2)
  n_val = int_at_least("n_val", n_val, 1)
  n_test = int_at_least("n_test", n_test, 1)
  label_noise = _check_noise(label_noise)
  # One independent stream per split and one for the noise: the test set does
  # not change with n_train, and the clean data not with label_noise.
  train_rng, val_rng, test_rng, noise_rng = np.random.default_rng(_check_seed(seed)).spawn(4)
  x_train, y_train = sample(train_rng, n_train)
  x_val, y_val = sample(val_rng, n_val)
  x_test, y_test = sample(test_rng, n_test)
  return _with_noise(
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


def _two_gaussians(
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


def _sinusoid(
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


def _spiral(
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


def _mnist1d(
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
  label_noise = _check_noise(label_noise)
  split_rng, noise_rng = np.random.default_rng(_check_seed(seed)).spawn(2)
  # Checked before the (one second) generation; 4000 is the package default.
  _split_sizes(4000, n_val, n_train, default_val=1000)

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
  n_val, n_train = _split_sizes(len(y), n_val, n_train, default_val=1000)
  order = split_rng.permutation(len(y))
  val, train = order[:n_val], order[n_val : n_val + n_train]
  mean, std = x[train].mean(), x[train].std()

  def scale(a: np.ndarray) -> np.ndarray:
    return ((a - mean) / std).astype(np.float32)

  return _with_noise(
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


def _digits(
  *, val_fraction: float = 0.2, test_fraction: float = 0.2, label_noise: float = 0.0, seed: int = 0
) -> Dataset:
  """scikit-learn's digits: 1797 8x8 images, pixels / 16, flattened to 64."""
  val_fraction = number_in("val_fraction", val_fraction, 0.0, 1.0, low_open=True, high_open=True)
  test_fraction = number_in("test_fraction", test_fraction, 0.0, 1.0, low_open=True, high_open=True)
  label_noise = _check_noise(label_noise)
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
  split_rng, noise_rng = np.random.default_rng(_check_seed(seed)).spawn(2)
  order = split_rng.permutation(n)
  test, val, train = order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]
  return _with_noise(
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


def _diabetes(*, val_fraction: float = 0.2, test_fraction: float = 0.2, seed: int = 0) -> Dataset:
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
  order = np.random.default_rng(_check_seed(seed)).permutation(n)
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
    x_train=x_train,
    y_train=y_train,
    x_val=x_val,
    y_val=y_val,
    x_test=x_test,
    y_test=y_test,
    name="diabetes",
  )


# --------------------------------------------------------------------------
# Benchmark image sets through Hugging Face `datasets`.


def _load_image_set(
  name: str,
  *,
  n_val: int | None = None,
  n_train: int | None = None,
  n_test: int | None = None,
  flatten: bool = False,
  pixels: bool = False,
  label_noise: float = 0.0,
  seed: int = 0,
  data_dir: str | os.PathLike | None = None,
  cache_dir: str | os.PathLike | None = None,
  hf_path: str | os.PathLike | None = None,
) -> Dataset:
  """Reads an image set from ``data_dir``, or downloads it (or reads the cache or ``hf_path``)."""
  spec = IMAGE_SETS[name]
  # Check everything that can be checked before a possibly long download.
  _check_noise(label_noise)
  _check_seed(seed)
  for option, value, minimum in (
    ("n_val", n_val, 1),
    ("n_train", n_train, 2),
    ("n_test", n_test, 1),
  ):
    if value is not None:
      int_at_least(option, value, minimum)
  true_or_false("flatten", flatten)
  true_or_false("pixels", pixels)
  given = [
    k
    for k, v in (("data_dir", data_dir), ("hf_path", hf_path), ("cache_dir", cache_dir))
    if v is not None
  ]
  if len(given) > 1:
    raise ValueError(
      f"give data_dir (the original files), hf_path (a saved Hugging Face copy) or"
      f" cache_dir (where to cache a download), not both {given[0]} and {given[1]}."
    )
  if data_dir is not None:
    x_train, y_train, x_test, y_test = _read_local(name, data_dir)
    return _from_arrays(
      spec,
      x_train,
      y_train,
      x_test,
      y_test,
      name=name,
      n_val=n_val,
      n_train=n_train,
      n_test=n_test,
      flatten=flatten,
      pixels=pixels,
      label_noise=label_noise,
      seed=seed,
      default_val_fraction=0.2,
    )
  missing_extra = ImportError(
    f'loading {name!r} needs the optional extra: pip install "flood_jax[datasets]"'
  )
  if not all(_importable(m) for m in ("datasets", "huggingface_hub", "PIL")):
    raise missing_extra
  if hf_path is None:  # before importing datasets (seconds): offline, fail fast
    _check_hub_reachable(name, spec)
  try:
    import datasets
    import PIL.Image  # noqa: F401 (checks Pillow is there)
  except ImportError as err:
    raise missing_extra from err
  if hf_path is not None:
    dataset_dict = datasets.load_from_disk(os.fspath(hf_path))
  else:
    try:
      dataset_dict = datasets.load_dataset(
        spec.hub_id, spec.config, cache_dir=None if cache_dir is None else os.fspath(cache_dir)
      )
    except ConnectionError as err:
      raise _offline_error(name, spec, err, offline=True) from None
  return _from_hf(
    dataset_dict,
    spec,
    name=name,
    n_val=n_val,
    n_train=n_train,
    n_test=n_test,
    flatten=flatten,
    pixels=pixels,
    label_noise=label_noise,
    seed=seed,
  )


def _offline_error(
  name: str, spec: ImageSpec, err: BaseException, offline: bool
) -> ConnectionError:
  reason = " ".join(str(err).split())[:120] or type(err).__name__
  cached = (
    "HF_HUB_OFFLINE=1 is set and no copy is cached"
    if offline
    else "with a copy cached earlier, set HF_HUB_OFFLINE=1"
  )
  return ConnectionError(
    f"cannot reach the Hugging Face Hub for {name!r} ({spec.hub_id}: {reason}); offline, read"
    f" the original files from a folder with --data-dir DIR (data_dir=DIR in"
    f" flood_jax.data.load): {_describe_files(name)} ({cached})."
  )


def _importable(module: str) -> bool:
  try:
    return importlib.util.find_spec(module) is not None
  except (ImportError, ValueError):
    return False


def _check_hub_reachable(name: str, spec: ImageSpec, timeout: float = 5.0) -> None:
  """Fails in seconds when the Hub cannot be reached, instead of the download's retries.

  Skipped under ``HF_HUB_OFFLINE=1`` (the cache is read then). An answer from
  the Hub, even an error status, counts as reachable: the download reports it.
  """
  from huggingface_hub import HfApi, constants
  from huggingface_hub.errors import HfHubHTTPError

  if constants.HF_HUB_OFFLINE:
    return
  try:
    HfApi().dataset_info(spec.hub_id, timeout=timeout)
  except HfHubHTTPError:
    return
  except Exception as err:  # transport errors of any HTTP backend
    raise _offline_error(name, spec, err, offline=False) from None


def _split_indices(
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
  n_val, n_train = _split_sizes(n_train_all, n_val, n_train, default_val=default_val)
  n_test = n_test_all if n_test is None else int_at_least("n_test", n_test, 1)
  if n_test > n_test_all:
    raise ValueError(f"n_test={n_test} is more than the {n_test_all} test examples.")
  split_rng, test_rng, noise_rng = np.random.default_rng(_check_seed(seed)).spawn(3)
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


def _normalize(x: np.ndarray, spec: ImageSpec, flatten: bool, pixels: bool = False) -> np.ndarray:
  """uint8 ``(n, h, w, c)`` pixels to float32, scaled to [0, 1] and standardized per channel.

  With ``pixels`` they stay uint8 (a quarter of the bytes; :class:`flood_jax.models.FromPixels`
  scales them on the device).
  """
  if pixels:
    x = np.ascontiguousarray(x, np.uint8)
    return x.reshape(len(x), -1) if flatten else x
  mean = np.asarray(spec.mean, np.float32)
  std = np.asarray(spec.std, np.float32)
  x = (x.astype(np.float32) / np.float32(255.0) - mean) / std
  return x.reshape(len(x), -1) if flatten else x


def _from_hf(
  dataset_dict: Any,
  spec: ImageSpec,
  *,
  name: str,
  n_val: int | None = None,
  n_train: int | None = None,
  n_test: int | None = None,
  flatten: bool = False,
  pixels: bool = False,
  label_noise: float = 0.0,
  seed: int = 0,
) -> Dataset:
  """Converts a ``datasets.DatasetDict`` with train and test splits.

  Validation examples (``n_val``, default 10%) are drawn at random from the
  training split, then ``n_train`` training examples (default: all the rest)
  and ``n_test`` test examples (default: all). Pixels are scaled to [0, 1]
  and normalized per channel with ``spec.mean`` and ``spec.std``; inputs have
  shape ``(n, height, width, channels)`` (grey images get a channel axis), or
  ``(n, height * width * channels)`` with ``flatten=True``.
  """
  label_noise = _check_noise(label_noise)
  missing = [s for s in ("train", "test") if s not in dataset_dict]
  if missing:
    raise ValueError(
      f"the {name!r} data has no {' or '.join(missing)} split; it has {list(dataset_dict)}."
    )
  train_split, test_split = dataset_dict["train"], dataset_dict["test"]
  for split_name, split in (("train", train_split), ("test", test_split)):
    absent = [c for c in (spec.image_column, spec.label_column) if c not in split.column_names]
    if absent:
      raise ValueError(
        f"the {name!r} {split_name} split has no column"
        f" {', '.join(map(repr, absent))}; its columns are"
        f" {split.column_names}."
      )
  val_idx, train_idx, test_idx, noise_rng = _split_indices(
    len(train_split),
    len(test_split),
    n_val=n_val,
    n_train=n_train,
    n_test=n_test,
    seed=seed,
    default_val=max(1, round(0.1 * len(train_split))),
  )
  train_labels = _labels(train_split, spec.label_column)
  test_labels = _labels(test_split, spec.label_column)

  def inputs(split: Any, idx: np.ndarray) -> np.ndarray:
    return _normalize(_images(split, idx, spec), spec, flatten, pixels)

  return _with_noise(
    label_noise,
    spec.num_classes,
    noise_rng,
    name=name,
    x_train=inputs(train_split, train_idx),
    y_train=train_labels[train_idx],
    x_val=inputs(train_split, val_idx),
    y_val=train_labels[val_idx],
    x_test=inputs(test_split, test_idx),
    y_test=test_labels[test_idx],
  )


def _from_arrays(
  spec: ImageSpec,
  x_train_all: np.ndarray,
  y_train_all: np.ndarray,
  x_test_all: np.ndarray,
  y_test_all: np.ndarray,
  *,
  name: str,
  n_val: int | None,
  n_train: int | None,
  n_test: int | None,
  flatten: bool,
  pixels: bool = False,
  label_noise: float,
  seed: int,
  default_val_fraction: float,
) -> Dataset:
  """The split of :func:`_from_hf` on uint8 ``(n, h, w, c)`` images read from files."""
  label_noise = _check_noise(label_noise)
  n_all = len(y_train_all)
  val_idx, train_idx, test_idx, noise_rng = _split_indices(
    n_all,
    len(y_test_all),
    n_val=n_val,
    n_train=n_train,
    n_test=n_test,
    seed=seed,
    default_val=max(1, round(default_val_fraction * n_all)),
  )
  return _with_noise(
    label_noise,
    spec.num_classes,
    noise_rng,
    name=name,
    x_train=_normalize(x_train_all[train_idx], spec, flatten, pixels),
    y_train=y_train_all[train_idx],
    x_val=_normalize(x_train_all[val_idx], spec, flatten, pixels),
    y_val=y_train_all[val_idx],
    x_test=_normalize(x_test_all[test_idx], spec, flatten, pixels),
    y_test=y_test_all[test_idx],
  )


def _labels(split: Any, column: str) -> np.ndarray:
  batch = split.with_format("numpy", columns=[column])[:]
  return np.asarray(batch[column]).astype(np.int32)


def _images(
  split: Any, idx: Sequence[int] | np.ndarray, spec: ImageSpec, batch_size: int = 1024
) -> np.ndarray:
  """Decodes the images at ``idx`` to uint8 ``(n, height, width, channels)``."""
  mode = "L" if spec.channels == 1 else "RGB"
  subset = split.select(idx).select_columns([spec.image_column]).with_format(None)
  out: np.ndarray | None = None
  row = 0
  for batch in subset.iter(batch_size=batch_size):
    for image in batch[spec.image_column]:
      if hasattr(image, "convert") and image.mode != mode:
        image = image.convert(mode)
      a = np.asarray(image, dtype=np.uint8)
      if a.ndim == 2:
        a = a[:, :, None]
      if out is None:
        out = np.empty((len(idx), *a.shape), np.uint8)
      if a.shape != out.shape[1:]:
        raise ValueError(
          f"images differ in shape: {a.shape} after {out.shape[1:]}; this"
          " loader needs images of one size."
        )
      out[row] = a
      row += 1
  assert out is not None and row == len(idx)
  return out


# --------------------------------------------------------------------------
# The same image sets from their original distribution files (data_dir=).

_IDX_FILES = (
  "train-images-idx3-ubyte",
  "train-labels-idx1-ubyte",
  "t10k-images-idx3-ubyte",
  "t10k-labels-idx1-ubyte",
)
_KMNIST_NPZ = (
  "kmnist-train-imgs.npz",
  "kmnist-train-labels.npz",
  "kmnist-test-imgs.npz",
  "kmnist-test-labels.npz",
)
_CIFAR10_FILES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")

#: The original files :func:`load` reads with ``data_dir=DIR``, and where to get them.
#: ``files`` are looked for in ``DIR`` and in the sub-folders ``folders`` (the
#: layouts the official archives and torchvision leave on disk).
LOCAL_FILES: dict[str, dict[str, Any]] = {
  "mnist": dict(
    files=tuple(f"{f}.gz" for f in _IDX_FILES),
    folders=("raw", "MNIST/raw"),
    source="https://yann.lecun.com/exdb/mnist/ (mirror: https://ossci-datasets.s3.amazonaws.com/mnist/)",
  ),
  "fashion_mnist": dict(
    files=tuple(f"{f}.gz" for f in _IDX_FILES),
    folders=("raw", "FashionMNIST/raw"),
    source="https://github.com/zalandoresearch/fashion-mnist",
  ),
  "kmnist": dict(
    files=tuple(f"{f}.gz" for f in _IDX_FILES),
    folders=("raw", "KMNIST/raw"),
    source="https://github.com/rois-codh/kmnist (the MNIST-format files, or the four .npz: "
    + ", ".join(_KMNIST_NPZ)
    + ")",
  ),
  "cifar10": dict(
    files=_CIFAR10_FILES,
    folders=("cifar-10-batches-py",),
    source="https://www.cs.toronto.edu/~kriz/cifar.html (cifar-10-python.tar.gz, extracted)",
  ),
  "cifar100": dict(
    files=("train", "test"),
    folders=("cifar-100-python",),
    source="https://www.cs.toronto.edu/~kriz/cifar.html (cifar-100-python.tar.gz, extracted)",
  ),
  "svhn": dict(
    files=("train_32x32.mat", "test_32x32.mat"),
    folders=("svhn",),
    source="http://ufldl.stanford.edu/housenumbers/ (format 2, cropped digits)",
  ),
}


def _describe_files(name: str) -> str:
  info = LOCAL_FILES[name]
  files = ", ".join(info["files"])
  gz = " (or not gzipped)" if name in ("mnist", "fashion_mnist", "kmnist") else ""
  return f"the files {files}{gz}, from {info['source']}"


class _Garbled(Exception):
  """``(path, problem)``: a file that is there but cannot be read as its format."""


def _read_local(name: str, data_dir: str | os.PathLike) -> tuple[np.ndarray, ...]:
  """``(x_train, y_train, x_test, y_test)``: uint8 ``(n, h, w, c)`` images, int32 labels."""
  if not isinstance(data_dir, (str, os.PathLike)):
    raise ValueError(f"data_dir must be a folder path, got {data_dir!r}.")
  root = os.path.expanduser(os.fspath(data_dir))
  if not os.path.isdir(root):
    raise ValueError(
      f"data_dir {root!r} is not a folder; for {name!r} it should hold {_describe_files(name)}."
    )
  readers = {
    "mnist": _read_mnist_family,
    "fashion_mnist": _read_mnist_family,
    "kmnist": _read_mnist_family,
    "cifar10": _read_cifar,
    "cifar100": _read_cifar,
    "svhn": _read_svhn,
  }
  try:
    arrays = readers[name](name, root)
  except _Garbled as err:
    path, problem = err.args
    raise ValueError(
      f"cannot read {path!r} as the original {name!r} data ({problem}); expected"
      f" {_describe_files(name)}."
    ) from None
  x_train, y_train, x_test, y_test = arrays
  num_classes = IMAGE_SETS[name].num_classes
  for split, x, y in (("training", x_train, y_train), ("test", x_test, y_test)):
    if len(x) != len(y) or len(y) == 0:
      raise ValueError(
        f"the {name!r} {split} files in {root!r} hold {len(x)} images and {len(y)} labels;"
        f" expected as many of each, from {_describe_files(name)}."
      )
    if y.min() < 0 or y.max() >= num_classes:
      raise ValueError(
        f"the {name!r} {split} labels in {root!r} run from {y.min()} to {y.max()}, not 0 to"
        f" {num_classes - 1}; expected {_describe_files(name)}."
      )
  return x_train, y_train, x_test, y_test


def _find(name: str, root: str, candidates: Sequence[str]) -> str | None:
  """The first of ``candidates`` in ``root`` or one of the set's sub-folders."""
  for folder in ("", *LOCAL_FILES[name]["folders"]):
    for candidate in candidates:
      path = os.path.join(root, folder, candidate)
      if os.path.isfile(path):
        return path
  return None


def _missing(name: str, root: str, what: str) -> ValueError:
  folders = ", ".join(f"{f}/" for f in LOCAL_FILES[name]["folders"])
  return ValueError(
    f"no {what} in data_dir {root!r} (nor in its sub-folders {folders}); for {name!r} it"
    f" should hold {_describe_files(name)}."
  )


def _read_bytes(path: str) -> bytes:
  try:
    if path.endswith(".gz"):
      with gzip.open(path, "rb") as f:
        return f.read()
    with open(path, "rb") as f:
      return f.read()
  except (OSError, EOFError) as err:  # gzip.BadGzipFile, truncated archives
    raise _Garbled(path, f"{type(err).__name__}: {err}") from None


def _read_idx(path: str) -> np.ndarray:
  """An IDX file of unsigned bytes (``0x0000 08 NDIM``, big-endian sizes, the data)."""
  raw = _read_bytes(path)
  if len(raw) < 4 or raw[:3] != b"\x00\x00\x08" or raw[3] < 1:
    raise _Garbled(path, "no IDX header of unsigned bytes (magic 0x0000 08 NDIM)")
  ndim = raw[3]
  if len(raw) < 4 + 4 * ndim:
    raise _Garbled(path, "the IDX header is cut short")
  dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
  size = int(np.prod(dims))
  if len(raw) - 4 - 4 * ndim != size:
    raise _Garbled(
      path, f"{len(raw) - 4 - 4 * ndim} bytes of data where the header {dims} says {size}"
    )
  return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _read_npz(path: str) -> np.ndarray:
  try:
    with np.load(path, allow_pickle=False) as archive:
      return np.asarray(archive[archive.files[0]])
  except Exception as err:  # zip, pickle and key errors alike
    raise _Garbled(path, f"{type(err).__name__}: {err}") from None


def _read_mnist_family(name: str, root: str) -> tuple[np.ndarray, ...]:
  arrays = []
  paths = [_find(name, root, (f, f + ".gz", f.replace("-idx", ".idx"))) for f in _IDX_FILES]
  if name == "kmnist" and None in paths:
    npz = [_find(name, root, (f,)) for f in _KMNIST_NPZ]
    if None not in npz:
      arrays = [_read_npz(p) for p in npz if p is not None]
  if not arrays:
    for stem, path in zip(_IDX_FILES, paths, strict=True):
      if path is None:
        raise _missing(name, root, f"{stem}.gz or {stem}")
      arrays.append(_read_idx(path))
  x_train, y_train, x_test, y_test = arrays
  for x, y, label in ((x_train, y_train, "training"), (x_test, y_test, "test")):
    if x.ndim != 3 or y.ndim != 1:
      raise ValueError(
        f"the {name!r} {label} files in {root!r} hold arrays of shape {x.shape} and {y.shape};"
        f" expected images (n, height, width) and labels (n,), from {_describe_files(name)}."
      )
  return x_train[..., None], y_train.astype(np.int32), x_test[..., None], y_test.astype(np.int32)


class _ArrayUnpickler(pickle.Unpickler):
  """Reads pickles of dicts, lists and NumPy arrays only: no other code can run."""

  _ALLOWED = frozenset(
    (module, attr)
    for module in ("numpy.core.multiarray", "numpy._core.multiarray")
    for attr in ("_reconstruct", "scalar")
  ) | {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),  # bytes in protocol-2 pickles written by Python 3
  }

  def find_class(self, module: str, name: str) -> Any:
    if (module, name) in self._ALLOWED:
      return super().find_class(module, name)
    raise pickle.UnpicklingError(f"the pickle refers to {module}.{name}, not only arrays")


def _read_cifar_batch(path: str, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
  try:
    with open(path, "rb") as f:
      batch = _ArrayUnpickler(f, encoding="bytes").load()
    batch = {k.encode() if isinstance(k, str) else k: v for k, v in batch.items()}
    data = np.asarray(batch[b"data"], np.uint8)
    labels = np.asarray(batch[label_key], np.int64)
  except Exception as err:  # unpickling fails in many ways
    raise _Garbled(path, f"not a CIFAR python batch: {type(err).__name__}: {err}") from None
  if data.ndim != 2 or data.shape[1] != 3072:
    raise _Garbled(path, f"data of shape {data.shape}, not (n, 3072)")
  # Rows are 1024 red, 1024 green, 1024 blue values, each 32 x 32 row-major.
  return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels.astype(np.int32)


def _read_cifar(name: str, root: str) -> tuple[np.ndarray, ...]:
  label_key = b"labels" if name == "cifar10" else b"fine_labels"
  train_files = LOCAL_FILES[name]["files"][:-1]
  parts = []
  for file in LOCAL_FILES[name]["files"]:
    path = _find(name, root, (file,))
    if path is None:
      raise _missing(name, root, file)
    parts.append(_read_cifar_batch(path, label_key))
  train, (x_test, y_test) = parts[: len(train_files)], parts[-1]
  x_train = np.concatenate([x for x, _ in train])
  y_train = np.concatenate([y for _, y in train])
  return x_train, y_train, x_test, y_test


def _read_svhn(name: str, root: str) -> tuple[np.ndarray, ...]:
  from scipy import io as scipy_io

  arrays = []
  for file in LOCAL_FILES[name]["files"]:
    path = _find(name, root, (file,))
    if path is None:
      raise _missing(name, root, file)
    try:
      mat = scipy_io.loadmat(path)
      x, y = np.asarray(mat["X"]), np.asarray(mat["y"]).reshape(-1)
    except Exception as err:  # scipy's MatReadError, KeyError, ...
      raise _Garbled(path, f"not an SVHN .mat file: {type(err).__name__}: {err}") from None
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.shape[3] != len(y):
      raise _Garbled(path, f"X of shape {x.shape} and y of {len(y)}, not (32, 32, 3, n) and n")
    # Stored as (height, width, channel, n); label 10 is the digit 0.
    arrays += [
      np.ascontiguousarray(x.transpose(3, 0, 1, 2)).astype(np.uint8),
      (y % 10).astype(np.int32),
    ]
  return tuple(arrays)


_BUILDERS: dict[str, Callable[..., Dataset]] = {
  "two_gaussians": _two_gaussians,
  "sinusoid": _sinusoid,
  "spiral": _spiral,
  "mnist1d": _mnist1d,
  "digits": _digits,
  "diabetes": _diabetes,
  **{name: functools.partial(_load_image_set, name) for name in IMAGE_SETS},
}


# On-device augmentation for fj.sweep(..., augment=fn).


def random_crop_flip(
  padding: int = 4,
  flip: bool = True,
  *,
  image_shape: Sequence[int] | None = None,
) -> Callable[[jax.Array, jax.Array], jax.Array]:
  """Returns the standard random crop and flip augmentation for image batches.

  The returned ``augment(key, x)`` pads every image of ``x`` with ``padding``
  zeros on each side of its height and width, crops it back to its original
  size at an offset drawn uniformly from the ``(2 * padding + 1) ** 2``
  possible ones, and, with ``flip=True``, mirrors it left-right with
  probability 1/2. Offsets and flips are independent per image. It is pure
  JAX (``jax.lax.dynamic_slice`` under ``jax.vmap``, a ``jnp.where`` for the
  flips), so it can run inside ``jax.jit``, ``jax.vmap`` and ``jax.lax.scan``,
  as ``fj.sweep(..., augment=fn)`` does; it keeps the batch's shape and dtype.

  Images are ``(batch, height, width, channels)``, the layout of the image
  sets of :func:`load` (grey images have a channel axis of 1). For the
  flattened ``(batch, height * width * channels)`` layout of
  ``load(..., flatten=True)``, pass ``image_shape=(height, width, channels)``:
  each batch is reshaped to images, augmented and flattened back. The padding
  is zeros of the batch as given: on :func:`load`'s normalized images, zero is
  the per-channel mean of the training images.

  Args:
    padding: pixels of zero padding on each side; the largest shift of a crop.
      0 turns cropping off.
    flip: whether to mirror images left-right with probability 1/2.
    image_shape: ``(height, width, channels)`` of flattened inputs; None (the
      default) for 4-D ``(batch, height, width, channels)`` inputs.

  Returns:
    A function ``augment(key, x) -> x`` of a PRNG key and a batch, returning
    the augmented batch, of the same shape and dtype.

  Raises:
    ValueError: for a negative or non-integer ``padding``, a non-boolean
      ``flip`` or a malformed ``image_shape``; ``augment`` raises it for a
      batch of the wrong shape.

  Examples:
    >>> import jax
    >>> import jax.numpy as jnp
    >>> from flood_jax.data import random_crop_flip
    >>> augment = random_crop_flip(padding=4)
    >>> x = jnp.ones((8, 32, 32, 3))
    >>> y = augment(jax.random.key(0), x)
    >>> y.shape, y.dtype
    ((8, 32, 32, 3), dtype('float32'))
    >>> flat = random_crop_flip(image_shape=(28, 28, 1))
    >>> flat(jax.random.key(1), jnp.ones((8, 784))).shape
    (8, 784)

  References:
    He, Zhang, Ren and Sun. Deep residual learning for image recognition.
    CVPR 2016, Sec. 4.2 (4-pixel padding, random 32x32 crops, horizontal
    flips on CIFAR-10). https://arxiv.org/abs/1512.03385
  """
  if not is_integer(padding) or padding < 0:
    raise ValueError(
      f"padding must be a non-negative integer (pixels per side, 0 for no"
      f" cropping), got {padding!r}."
    )
  padding = int(padding)
  flip = true_or_false("flip", flip)
  if image_shape is not None:
    shape = tuple(image_shape) if isinstance(image_shape, (tuple, list)) else ()
    if len(shape) != 3 or any(not is_integer(d) or d < 1 for d in shape):
      raise ValueError(
        f"image_shape must be (height, width, channels), three positive"
        f" integers, got {image_shape!r}."
      )
    image_shape = tuple(int(d) for d in shape)

  def augment(key: jax.Array, x: jax.Array) -> jax.Array:
    x = jnp.asarray(x)
    if image_shape is not None:
      size = int(np.prod(image_shape))
      if x.ndim != 2 or x.shape[1] != size:
        raise ValueError(
          f"expected a flattened batch (batch, {size}) for image_shape="
          f"{image_shape}, got shape {x.shape}; give image_shape=None for"
          " (batch, height, width, channels) batches."
        )
      return _crop_flip(key, x.reshape(len(x), *image_shape), padding, flip).reshape(x.shape)
    if x.ndim != 4:
      raise ValueError(
        f"expected a batch of images (batch, height, width, channels), got"
        f" shape {x.shape}; add a channel axis to grey images, or pass"
        " image_shape=(height, width, channels) for flattened ones."
      )
    return _crop_flip(key, x, padding, flip)

  return augment


def _crop_flip(key: jax.Array, x: jax.Array, padding: int, flip: bool) -> jax.Array:
  """Random crops (``padding`` > 0) and flips of ``(n, h, w, c)`` images."""
  n, h, w, c = x.shape
  crop_key, flip_key = jax.random.split(key)
  if padding:
    padded = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    offsets = jax.random.randint(crop_key, (n, 2), 0, 2 * padding + 1)
    x = jax.vmap(lambda image, o: jax.lax.dynamic_slice(image, (o[0], o[1], 0), (h, w, c)))(
      padded, offsets
    )
  if flip:
    mirror = jax.random.bernoulli(flip_key, 0.5, (n,))
    x = jnp.where(mirror[:, None, None, None], x[:, :, ::-1, :], x)
  return x
