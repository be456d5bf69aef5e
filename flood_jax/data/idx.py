"""The MNIST family's original files: IDX (gzipped or not), and KMNIST's ``.npz``."""

from __future__ import annotations

import numpy as np

from flood_jax.data.catalog import IDX_FILES, IMAGE_SETS, KMNIST_NPZ
from flood_jax.data.files import (
  Garbled,
  check_counts,
  check_labels,
  check_pixels,
  find,
  missing,
  read_bytes,
)


def _read_idx(path: str) -> np.ndarray:
  """An IDX file of unsigned bytes (``0x0000 08 NDIM``, big-endian sizes, the data)."""
  raw = read_bytes(path)
  if len(raw) < 4 or raw[:3] != b"\x00\x00\x08" or raw[3] < 1:
    raise Garbled(path, "no IDX header of unsigned bytes (magic 0x0000 08 NDIM)")
  ndim = raw[3]
  if len(raw) < 4 + 4 * ndim:
    raise Garbled(path, "the IDX header is cut short")
  dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
  size = int(np.prod(dims))
  if len(raw) - 4 - 4 * ndim != size:
    raise Garbled(
      path, f"{len(raw) - 4 - 4 * ndim} bytes of data where the header {dims} says {size}"
    )
  return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _read_npz(path: str) -> np.ndarray:
  try:
    with np.load(path, allow_pickle=False) as archive:
      return np.asarray(archive[archive.files[0]])
  except Exception as err:  # zip, pickle and key errors alike
    raise Garbled(path, f"{type(err).__name__}: {err}") from None


def read_mnist_family(name: str, root: str) -> tuple[np.ndarray, ...]:
  """``(x_train, y_train, x_test, y_test)`` from the IDX files (or KMNIST's ``.npz``)."""
  arrays: list[np.ndarray] = []
  paths = [find(name, root, (f, f + ".gz", f.replace("-idx", ".idx"))) for f in IDX_FILES]
  read: list[str] = []
  if name == "kmnist" and None in paths:
    npz = [find(name, root, (f,)) for f in KMNIST_NPZ]
    if None not in npz:
      read = [p for p in npz if p is not None]
      arrays = [_read_npz(p) for p in read]
  if not arrays:
    for stem, path in zip(IDX_FILES, paths, strict=True):
      if path is None:
        raise missing(name, root, f"{stem}.gz or {stem}")
      arrays.append(_read_idx(path))
      read.append(path)
  out = []
  last = IMAGE_SETS[name].num_classes - 1
  for i in (0, 2):  # training, test
    (x, y), (x_path, y_path) = arrays[i : i + 2], read[i : i + 2]
    if x.ndim != 3:
      raise Garbled(x_path, f"an array of shape {x.shape}, not images (n, height, width)")
    if y.ndim != 1:
      raise Garbled(y_path, f"an array of shape {y.shape}, not labels (n,)")
    check_counts(y_path, len(x), len(y), x_path)
    out += [check_pixels(x_path, x)[..., None], check_labels(y_path, y, 0, last)]
  return tuple(out)
