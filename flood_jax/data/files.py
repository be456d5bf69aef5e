"""Finding and reading the original distribution files in a folder: what the formats share."""

from __future__ import annotations

import gzip
import os
from collections.abc import Sequence

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
