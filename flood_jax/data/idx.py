"""The MNIST family's original files: IDX (gzipped or not), and KMNIST's ``.npz``."""

from __future__ import annotations

import numpy as np

from flood_jax.data.catalog import IDX_FILES, KMNIST_NPZ, describe_files
from flood_jax.data.files import Garbled, find, missing, read_bytes


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
  arrays = []
  paths = [find(name, root, (f, f + ".gz", f.replace("-idx", ".idx"))) for f in IDX_FILES]
  if name == "kmnist" and None in paths:
    npz = [find(name, root, (f,)) for f in KMNIST_NPZ]
    if None not in npz:
      arrays = [_read_npz(p) for p in npz if p is not None]
  if not arrays:
    for stem, path in zip(IDX_FILES, paths, strict=True):
      if path is None:
        raise missing(name, root, f"{stem}.gz or {stem}")
      arrays.append(_read_idx(path))
  x_train, y_train, x_test, y_test = arrays
  for x, y, label in ((x_train, y_train, "training"), (x_test, y_test, "test")):
    if x.ndim != 3 or y.ndim != 1:
      raise ValueError(
        f"the {name!r} {label} files in {root!r} hold arrays of shape {x.shape} and {y.shape};"
        f" expected images (n, height, width) and labels (n,), from {describe_files(name)}."
      )
  return x_train[..., None], y_train.astype(np.int32), x_test[..., None], y_test.astype(np.int32)
