"""Finding and reading the original distribution files in a folder: what the formats share."""

from __future__ import annotations

import gzip
import os
from collections.abc import Sequence

import numpy as np

from flood_jax.data.catalog import LOCAL_FILES, describe_files


class Garbled(Exception):
  """``(path, problem)``: a file that is there but cannot be read as its format."""


def find(name: str, root: str, candidates: Sequence[str]) -> str | None:
  """The first of ``candidates`` in ``root`` or one of the set's sub-folders."""
  for folder in ("", *LOCAL_FILES[name]["folders"]):
    for candidate in candidates:
      path = os.path.join(root, folder, candidate)
      if os.path.isfile(path):
        return path
  return None


def missing(name: str, root: str, what: str) -> ValueError:
  folders = ", ".join(f"{f}/" for f in LOCAL_FILES[name]["folders"])
  return ValueError(
    f"no {what} in data_dir {root!r} (nor in its sub-folders {folders}); for {name!r} it"
    f" should hold {describe_files(name)}."
  )


def read_bytes(path: str) -> bytes:
  try:
    if path.endswith(".gz"):
      with gzip.open(path, "rb") as f:
        return f.read()
    with open(path, "rb") as f:
      return f.read()
  except (OSError, EOFError) as err:  # gzip.BadGzipFile, truncated archives
    raise Garbled(path, f"{type(err).__name__}: {err}") from None


# What every format holds, checked file by file so that the message names the
# file: pixels as unsigned bytes, whole-number labels of the set's classes, as
# many labels as images. A converted or re-saved copy that breaks one of these
# would otherwise train on wrong data without a word (float pixels in [0, 1]
# cast to bytes are all 0; labels out of range wrap onto other classes; a batch
# with one label too many shifts every label after it onto another image).


def check_pixels(path: str, x: np.ndarray) -> np.ndarray:
  """``x``, whose pixels the format stores as uint8 (0 to 255)."""
  if x.dtype != np.uint8:
    raise Garbled(
      path,
      f"pixels stored as {x.dtype}, not the format's uint8 (0 to 255); a converted copy"
      " would be read wrong, so use the original file",
    )
  return x


def check_labels(path: str, y: np.ndarray, first: int, last: int) -> np.ndarray:
  """``y`` as int32, once its labels are whole numbers from ``first`` to ``last``."""
  y = np.asarray(y)
  if y.dtype == np.bool_ or not (
    np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)
  ):
    raise Garbled(path, f"labels stored as {y.dtype}, not integers from {first} to {last}")
  if np.issubdtype(y.dtype, np.floating):
    whole = np.isfinite(y) & (y == np.round(y))
    if not whole.all():
      raise Garbled(path, f"a label {y[~whole][0]} that is not a whole number {first} to {last}")
  outside = (y < first) | (y > last)
  if outside.any():
    raise Garbled(
      path,
      f"{int(outside.sum())} label(s) outside {first} to {last} (the first: {y[outside][0]}"
      f" at position {int(np.argmax(outside))})",
    )
  return y.astype(np.int32)


def check_counts(path: str, n_images: int, n_labels: int, images_path: str | None = None) -> None:
  """One label per image (``path`` holds the labels, ``images_path`` the images if apart)."""
  if n_images != n_labels:
    of = f" of {os.path.basename(images_path)}" if images_path else ""
    raise Garbled(path, f"{n_labels} labels for the {n_images} images{of}; expected one each")
