"""SVHN's original files: format 2 (cropped digits), MATLAB ``.mat``."""

from __future__ import annotations

import numpy as np

from flood_jax.data.catalog import LOCAL_FILES
from flood_jax.data.files import Garbled, find, missing


def read_svhn(name: str, root: str) -> tuple[np.ndarray, ...]:
  from scipy import io as scipy_io

  arrays = []
  for file in LOCAL_FILES[name]["files"]:
    path = find(name, root, (file,))
    if path is None:
      raise missing(name, root, file)
    try:
      mat = scipy_io.loadmat(path)
      x, y = np.asarray(mat["X"]), np.asarray(mat["y"]).reshape(-1)
    except Exception as err:  # scipy's MatReadError, KeyError, ...
      raise Garbled(path, f"not an SVHN .mat file: {type(err).__name__}: {err}") from None
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.shape[3] != len(y):
      raise Garbled(path, f"X of shape {x.shape} and y of {len(y)}, not (32, 32, 3, n) and n")
    # Stored as (height, width, channel, n); label 10 is the digit 0.
    arrays += [
      np.ascontiguousarray(x.transpose(3, 0, 1, 2)).astype(np.uint8),
      (y % 10).astype(np.int32),
    ]
  return tuple(arrays)
