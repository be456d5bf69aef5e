"""The benchmark image sets: where each lives (the Hub, its original files) and its format."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np


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


IDX_FILES = (
  "train-images-idx3-ubyte",
  "train-labels-idx1-ubyte",
  "t10k-images-idx3-ubyte",
  "t10k-labels-idx1-ubyte",
)
KMNIST_NPZ = (
  "kmnist-train-imgs.npz",
  "kmnist-train-labels.npz",
  "kmnist-test-imgs.npz",
  "kmnist-test-labels.npz",
)
CIFAR10_FILES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")

#: The original files :func:`load` reads with ``data_dir=DIR``, and where to get them.
#: ``files`` are looked for in ``DIR`` and in the sub-folders ``folders`` (the
#: layouts the official archives and torchvision leave on disk).
LOCAL_FILES: dict[str, dict[str, Any]] = {
  "mnist": dict(
    files=tuple(f"{f}.gz" for f in IDX_FILES),
    folders=("raw", "MNIST/raw"),
    source="https://yann.lecun.com/exdb/mnist/ (mirror: https://ossci-datasets.s3.amazonaws.com/mnist/)",
  ),
  "fashion_mnist": dict(
    files=tuple(f"{f}.gz" for f in IDX_FILES),
    folders=("raw", "FashionMNIST/raw"),
    source="https://github.com/zalandoresearch/fashion-mnist",
  ),
  "kmnist": dict(
    files=tuple(f"{f}.gz" for f in IDX_FILES),
    folders=("raw", "KMNIST/raw"),
    source="https://github.com/rois-codh/kmnist (the MNIST-format files, or the four .npz: "
    + ", ".join(KMNIST_NPZ)
    + ")",
  ),
  "cifar10": dict(
    files=CIFAR10_FILES,
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


def describe_files(name: str) -> str:
  info = LOCAL_FILES[name]
  files = ", ".join(info["files"])
  gz = " (or not gzipped)" if name in ("mnist", "fashion_mnist", "kmnist") else ""
  return f"the files {files}{gz}, from {info['source']}"


def normalize(x: np.ndarray, spec: ImageSpec, flatten: bool, pixels: bool = False) -> np.ndarray:
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
