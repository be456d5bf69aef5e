"""Tiny data sets in the original distribution formats, for ``data.load(..., data_dir=...)``.

Example ``k`` of a split has label ``k % 10`` and its index written into its
first pixels (``k % 256`` and ``k // 256``, in every channel), so that a test
can tell which examples landed in which split.
"""

from __future__ import annotations

import gzip
import os
import pickle

import numpy as np


def images(n: int, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
  """``n`` uint8 images of ``shape`` (h, w) or (h, w, c) carrying their index."""
  x = np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)
  k = np.arange(n)
  x[:, 0, 0] = (k % 256)[:, None] if len(shape) == 3 else k % 256
  x[:, 0, 1] = (k // 256)[:, None] if len(shape) == 3 else k // 256
  return x


def labels(n: int) -> np.ndarray:
  return (np.arange(n) % 10).astype(np.uint8)


def index_of(x: np.ndarray, mean: float, std: float, shape: tuple[int, ...]) -> np.ndarray:
  """The indices carried by normalized images (``(n, ...)``, channel 0's mean and std)."""
  pixels = np.rint((x.reshape(len(x), *shape) * std + mean) * 255.0).astype(int)
  first = pixels[:, 0, 0] if len(shape) == 2 else pixels[:, 0, 0, 0]
  second = pixels[:, 0, 1] if len(shape) == 2 else pixels[:, 0, 1, 0]
  return first + 256 * second


def write_idx(path: str, array: np.ndarray) -> None:
  """An IDX file of unsigned bytes, gzipped if ``path`` ends in ``.gz``."""
  array = np.asarray(array, np.uint8)
  raw = b"\x00\x00\x08" + bytes([array.ndim])
  raw += b"".join(int(d).to_bytes(4, "big") for d in array.shape) + array.tobytes()
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "wb") as f:
    f.write(raw)


def write_mnist(folder: str, n_train: int = 50, n_test: int = 20, gz: bool = True) -> str:
  """The four MNIST IDX files (28 x 28) in ``folder``."""
  os.makedirs(folder, exist_ok=True)
  ext = ".gz" if gz else ""
  write_idx(os.path.join(folder, f"train-images-idx3-ubyte{ext}"), images(n_train, (28, 28)))
  write_idx(os.path.join(folder, f"train-labels-idx1-ubyte{ext}"), labels(n_train))
  write_idx(os.path.join(folder, f"t10k-images-idx3-ubyte{ext}"), images(n_test, (28, 28), 1))
  write_idx(os.path.join(folder, f"t10k-labels-idx1-ubyte{ext}"), labels(n_test))
  return folder


def write_kmnist_npz(folder: str, n_train: int = 50, n_test: int = 20) -> str:
  """KMNIST's four ``.npz`` files (each one array, ``arr_0``) in ``folder``."""
  os.makedirs(folder, exist_ok=True)
  for name, array in (
    ("kmnist-train-imgs.npz", images(n_train, (28, 28))),
    ("kmnist-train-labels.npz", labels(n_train)),
    ("kmnist-test-imgs.npz", images(n_test, (28, 28), 1)),
    ("kmnist-test-labels.npz", labels(n_test)),
  ):
    np.savez_compressed(os.path.join(folder, name), array)
  return folder


def _cifar_rows(x: np.ndarray) -> np.ndarray:
  """(n, 32, 32, 3) images to CIFAR's rows: 1024 red, 1024 green, 1024 blue values."""
  return x.transpose(0, 3, 1, 2).reshape(len(x), 3072)


def write_cifar10(root: str, per_batch: int = 10, n_test: int = 20) -> str:
  """``root/cifar-10-batches-py/`` with five training batches and the test batch."""
  folder = os.path.join(root, "cifar-10-batches-py")
  os.makedirs(folder, exist_ok=True)
  x, y = images(5 * per_batch, (32, 32, 3)), labels(5 * per_batch)
  batches = [
    (
      f"data_batch_{i + 1}",
      x[i * per_batch : (i + 1) * per_batch],
      y[i * per_batch : (i + 1) * per_batch],
    )
    for i in range(5)
  ]
  batches.append(("test_batch", images(n_test, (32, 32, 3), 1), labels(n_test)))
  for name, xb, yb in batches:
    with open(os.path.join(folder, name), "wb") as f:
      # As the originals: a dict with bytes keys, the labels a list.
      pickle.dump(
        {b"batch_label": name.encode(), b"data": _cifar_rows(xb), b"labels": yb.tolist()},
        f,
        protocol=2,
      )
  return root


def write_cifar100(root: str, n_train: int = 50, n_test: int = 20) -> str:
  """``root/cifar-100-python/`` with ``train`` and ``test`` (fine labels ``k % 100``)."""
  folder = os.path.join(root, "cifar-100-python")
  os.makedirs(folder, exist_ok=True)
  for name, n, seed in (("train", n_train, 0), ("test", n_test, 1)):
    k = np.arange(n)
    batch = {
      b"data": _cifar_rows(images(n, (32, 32, 3), seed)),
      b"fine_labels": (k % 100).tolist(),
      b"coarse_labels": (k % 20).tolist(),
    }
    with open(os.path.join(folder, name), "wb") as f:
      pickle.dump(batch, f, protocol=2)
  return root


def write_svhn(folder: str, n_train: int = 50, n_test: int = 20) -> str:
  """``train_32x32.mat``, ``test_32x32.mat``: X (32, 32, 3, n), y (n, 1) in 1..10 (10 is 0)."""
  from scipy import io as scipy_io

  os.makedirs(folder, exist_ok=True)
  for name, n, seed in (("train_32x32.mat", n_train, 0), ("test_32x32.mat", n_test, 1)):
    y = labels(n).astype(np.int64)
    y[y == 0] = 10
    scipy_io.savemat(
      os.path.join(folder, name),
      {"X": images(n, (32, 32, 3), seed).transpose(1, 2, 3, 0), "y": y[:, None]},
    )
  return folder


def read_cifar_batch(path: str) -> dict:
  with open(path, "rb") as f:
    return pickle.load(f, encoding="bytes")


def write_cifar_batch(path: str, batch: dict) -> None:
  """A CIFAR python batch (a dict with bytes keys), as the originals are pickled."""
  with open(path, "wb") as f:
    pickle.dump(batch, f, protocol=2)


def read_svhn(path: str) -> tuple[np.ndarray, np.ndarray]:
  """SVHN's ``(X, y)`` as stored: (32, 32, 3, n) and (n, 1)."""
  from scipy import io as scipy_io

  mat = scipy_io.loadmat(path)
  return mat["X"], mat["y"]


def write_svhn_mat(path: str, x: np.ndarray, y: np.ndarray) -> None:
  from scipy import io as scipy_io

  scipy_io.savemat(path, {"X": x, "y": y})
