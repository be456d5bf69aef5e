"""SVHN's original files: format 2 (cropped digits), MATLAB ``.mat``."""

from __future__ import annotations

import numpy as np

from flood_jax.data.catalog import LOCAL_FILES
from flood_jax.data.files import Garbled, check_counts, check_labels, check_pixels, find, missing


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
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3):
      raise Garbled(path, f"X of shape {x.shape}, not (32, 32, 3, n)")
    check_counts(path, x.shape[3], len(y))
    # Stored as (height, width, channel, n) uint8; labels 1 to 10, 10 the digit 0.
    arrays += [
      np.ascontiguousarray(check_pixels(path, x).transpose(3, 0, 1, 2)),
      check_labels(path, y, 1, 10) % 10,
    ]
  return tuple(arrays)
