"""CIFAR-10 and CIFAR-100's original files: the python batches (pickled dicts of arrays)."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np

from flood_jax.data.catalog import IMAGE_SETS, LOCAL_FILES
from flood_jax.data.files import Garbled, check_counts, check_labels, check_pixels, find, missing


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


def _read_cifar_batch(path: str, label_key: bytes, last: int) -> tuple[np.ndarray, np.ndarray]:
  try:
    with open(path, "rb") as f:
      batch = _ArrayUnpickler(f, encoding="bytes").load()
    batch = {k.encode() if isinstance(k, str) else k: v for k, v in batch.items()}
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[label_key])
  except Exception as err:  # unpickling fails in many ways
    raise Garbled(path, f"not a CIFAR python batch: {type(err).__name__}: {err}") from None
  if data.ndim != 2 or data.shape[1] != 3072:
    raise Garbled(path, f"data of shape {data.shape}, not (n, 3072)")
  if labels.ndim != 1:
    raise Garbled(path, f"labels of shape {labels.shape}, not a list of n")
  check_counts(path, len(data), len(labels))
  data, labels = check_pixels(path, data), check_labels(path, labels, 0, last)
  # Rows are 1024 red, 1024 green, 1024 blue values, each 32 x 32 row-major.
  return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def read_cifar(name: str, root: str) -> tuple[np.ndarray, ...]:
  """``(x_train, y_train, x_test, y_test)`` from the python batches, each checked on its own."""
  label_key = b"labels" if name == "cifar10" else b"fine_labels"
  last = IMAGE_SETS[name].num_classes - 1
  train_files = LOCAL_FILES[name]["files"][:-1]
  parts = []
  for file in LOCAL_FILES[name]["files"]:
    path = find(name, root, (file,))
    if path is None:
      raise missing(name, root, file)
    parts.append(_read_cifar_batch(path, label_key, last))
  train, (x_test, y_test) = parts[: len(train_files)], parts[-1]
  x_train = np.concatenate([x for x, _ in train])
  y_train = np.concatenate([y for _, y in train])
  return x_train, y_train, x_test, y_test
