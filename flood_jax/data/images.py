"""The benchmark image sets' builder: from the original files in ``data_dir`` or from the Hub."""

from __future__ import annotations

import os

import numpy as np

from flood_jax._checks import int_at_least, true_or_false
from flood_jax._dataset import Dataset
from flood_jax.data import cifar, hub, idx, svhn
from flood_jax.data.catalog import IMAGE_SETS, ImageSpec, describe_files, normalize
from flood_jax.data.files import Garbled
from flood_jax.data.splits import check_noise, check_seed, split_indices, with_noise


def load_image_set(
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
  check_noise(label_noise)
  check_seed(seed)
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
    x_train, y_train, x_test, y_test = read_local(name, data_dir)
    return from_arrays(
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
  return hub.load_from_hub(
    name,
    cache_dir=cache_dir,
    hf_path=hf_path,
    n_val=n_val,
    n_train=n_train,
    n_test=n_test,
    flatten=flatten,
    pixels=pixels,
    label_noise=label_noise,
    seed=seed,
  )


def from_arrays(
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
  """The split of :func:`hub.from_hf` on uint8 ``(n, h, w, c)`` images read from files."""
  label_noise = check_noise(label_noise)
  n_all = len(y_train_all)
  val_idx, train_idx, test_idx, noise_rng = split_indices(
    n_all,
    len(y_test_all),
    n_val=n_val,
    n_train=n_train,
    n_test=n_test,
    seed=seed,
    default_val=max(1, round(default_val_fraction * n_all)),
  )
  return with_noise(
    label_noise,
    spec.num_classes,
    noise_rng,
    name=name,
    x_train=normalize(x_train_all[train_idx], spec, flatten, pixels),
    y_train=y_train_all[train_idx],
    x_val=normalize(x_train_all[val_idx], spec, flatten, pixels),
    y_val=y_train_all[val_idx],
    x_test=normalize(x_test_all[test_idx], spec, flatten, pixels),
    y_test=y_test_all[test_idx],
  )


def read_local(name: str, data_dir: str | os.PathLike) -> tuple[np.ndarray, ...]:
  """``(x_train, y_train, x_test, y_test)``: uint8 ``(n, h, w, c)`` images, int32 labels."""
  if not isinstance(data_dir, (str, os.PathLike)):
    raise ValueError(f"data_dir must be a folder path, got {data_dir!r}.")
  root = os.path.expanduser(os.fspath(data_dir))
  if not os.path.isdir(root):
    raise ValueError(
      f"data_dir {root!r} is not a folder; for {name!r} it should hold {describe_files(name)}."
    )
  readers = {
    "mnist": idx.read_mnist_family,
    "fashion_mnist": idx.read_mnist_family,
    "kmnist": idx.read_mnist_family,
    "cifar10": cifar.read_cifar,
    "cifar100": cifar.read_cifar,
    "svhn": svhn.read_svhn,
  }
  try:
    arrays = readers[name](name, root)
  except Garbled as err:
    path, problem = err.args
    raise ValueError(
      f"cannot read {path!r} as the original {name!r} data ({problem}); expected"
      f" {describe_files(name)}."
    ) from None
  x_train, y_train, x_test, y_test = arrays
  # Each file was checked by its reader (pixels, labels, counts); only emptiness is left.
  for split, y in (("training", y_train), ("test", y_test)):
    if len(y) == 0:
      raise ValueError(
        f"the {name!r} {split} files in {root!r} hold no examples; expected {describe_files(name)}."
      )
  return x_train, y_train, x_test, y_test
