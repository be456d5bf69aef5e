"""The benchmark image sets through Hugging Face ``datasets``: the Hub, its cache, a saved copy."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from flood_jax._dataset import Dataset
from flood_jax.data.catalog import IMAGE_SETS, ImageSpec, describe_files, normalize
from flood_jax.data.splits import check_noise, split_indices, with_noise


def load_from_hub(
  name: str,
  *,
  cache_dir: str | os.PathLike | None,
  hf_path: str | os.PathLike | None,
  **split: Any,
) -> Dataset:
  """Downloads ``name`` (or reads the cache or ``hf_path``) and splits it as :func:`from_hf`."""
  spec = IMAGE_SETS[name]
  missing_extra = ImportError(
    f'loading {name!r} needs the optional extra: pip install "flood_jax[datasets]"'
  )
  if not all(importable(m) for m in ("datasets", "huggingface_hub", "PIL")):
    raise missing_extra
  if hf_path is None:  # before importing datasets (seconds): offline, fail fast
    check_hub_reachable(name, spec)
  try:
    import datasets
    import PIL.Image  # noqa: F401 (checks Pillow is there)
  except ImportError as err:
    raise missing_extra from err
  if hf_path is not None:
    dataset_dict = datasets.load_from_disk(os.fspath(hf_path))
  else:
    try:
      dataset_dict = datasets.load_dataset(
        spec.hub_id, spec.config, cache_dir=None if cache_dir is None else os.fspath(cache_dir)
      )
    except ConnectionError as err:
      raise offline_error(name, spec, err, offline=True) from None
  return from_hf(
    dataset_dict,
    spec,
    name=name,
    **split,
  )


def offline_error(name: str, spec: ImageSpec, err: BaseException, offline: bool) -> ConnectionError:
  reason = " ".join(str(err).split())[:120] or type(err).__name__
  cached = (
    "HF_HUB_OFFLINE=1 is set and no copy is cached"
    if offline
    else "with a copy cached earlier, set HF_HUB_OFFLINE=1"
  )
  return ConnectionError(
    f"cannot reach the Hugging Face Hub for {name!r} ({spec.hub_id}: {reason}); offline, read"
    f" the original files from a folder with --data-dir DIR (data_dir=DIR in"
    f" flood_jax.data.load): {describe_files(name)} ({cached})."
  )


def importable(module: str) -> bool:
  try:
    return importlib.util.find_spec(module) is not None
  except (ImportError, ValueError):
    return False


def check_hub_reachable(name: str, spec: ImageSpec, timeout: float = 5.0) -> None:
  """Fails in seconds when the Hub cannot be reached, instead of the download's retries.

  Skipped under ``HF_HUB_OFFLINE=1`` (the cache is read then). An answer from
  the Hub, even an error status, counts as reachable: the download reports it.
  """
  from huggingface_hub import HfApi, constants
  from huggingface_hub.errors import HfHubHTTPError

  if constants.HF_HUB_OFFLINE:
    return
  try:
    HfApi().dataset_info(spec.hub_id, timeout=timeout)
  except HfHubHTTPError:
    return
  except Exception as err:  # transport errors of any HTTP backend
    raise offline_error(name, spec, err, offline=False) from None


def from_hf(
  dataset_dict: Any,
  spec: ImageSpec,
  *,
  name: str,
  n_val: int | None = None,
  n_train: int | None = None,
  n_test: int | None = None,
  flatten: bool = False,
  pixels: bool = False,
  label_noise: float = 0.0,
  seed: int = 0,
) -> Dataset:
  """Converts a ``datasets.DatasetDict`` with train and test splits.

  Validation examples (``n_val``, default 10%) are drawn at random from the
  training split, then ``n_train`` training examples (default: all the rest)
  and ``n_test`` test examples (default: all). Pixels are scaled to [0, 1]
  and normalized per channel with ``spec.mean`` and ``spec.std``; inputs have
  shape ``(n, height, width, channels)`` (grey images get a channel axis), or
  ``(n, height * width * channels)`` with ``flatten=True``.
  """
  label_noise = check_noise(label_noise)
  missing = [s for s in ("train", "test") if s not in dataset_dict]
  if missing:
    raise ValueError(
      f"the {name!r} data has no {' or '.join(missing)} split; it has {list(dataset_dict)}."
    )
  train_split, test_split = dataset_dict["train"], dataset_dict["test"]
  for split_name, split in (("train", train_split), ("test", test_split)):
    absent = [c for c in (spec.image_column, spec.label_column) if c not in split.column_names]
    if absent:
      raise ValueError(
        f"the {name!r} {split_name} split has no column"
        f" {', '.join(map(repr, absent))}; its columns are"
        f" {split.column_names}."
      )
  val_idx, train_idx, test_idx, noise_rng = split_indices(
    len(train_split),
    len(test_split),
    n_val=n_val,
    n_train=n_train,
    n_test=n_test,
    seed=seed,
    default_val=max(1, round(0.1 * len(train_split))),
  )
  train_labels = _labels(train_split, spec, name, "train")
  test_labels = _labels(test_split, spec, name, "test")

  def inputs(split: Any, idx: np.ndarray) -> np.ndarray:
    return normalize(_images(split, idx, spec), spec, flatten, pixels)

  return with_noise(
    label_noise,
    spec.num_classes,
    noise_rng,
    name=name,
    x_train=inputs(train_split, train_idx),
    y_train=train_labels[train_idx],
    x_val=inputs(train_split, val_idx),
    y_val=train_labels[val_idx],
    x_test=inputs(test_split, test_idx),
    y_test=test_labels[test_idx],
  )


def _labels(split: Any, spec: ImageSpec, name: str, split_name: str) -> np.ndarray:
  """The split's labels as int32, once they are whole numbers of the set's classes."""
  column = spec.label_column
  y = np.asarray(split.with_format("numpy", columns=[column])[:][column])
  last = spec.num_classes - 1
  numeric = y.dtype != np.bool_ and np.issubdtype(y.dtype, np.number)
  bad = not numeric or bool(((y < 0) | (y > last) | (y != np.round(y))).any())
  if bad:
    raise ValueError(
      f"the {name!r} {split_name} split's column {column!r} holds labels other than the"
      f" whole numbers 0 to {last} ({y.dtype}, {y[:5].tolist()}...); give a copy of"
      f" {spec.hub_id} whose {column!r} keeps its classes."
    )
  return y.astype(np.int32)


def _images(
  split: Any, idx: Sequence[int] | np.ndarray, spec: ImageSpec, batch_size: int = 1024
) -> np.ndarray:
  """Decodes the images at ``idx`` to uint8 ``(n, height, width, channels)``."""
  mode = "L" if spec.channels == 1 else "RGB"
  subset = split.select(idx).select_columns([spec.image_column]).with_format(None)
  out: np.ndarray | None = None
  row = 0
  for batch in subset.iter(batch_size=batch_size):
    for image in batch[spec.image_column]:
      if hasattr(image, "convert") and image.mode != mode:
        image = image.convert(mode)
      a = np.asarray(image, dtype=np.uint8)
      if a.ndim == 2:
        a = a[:, :, None]
      if out is None:
        out = np.empty((len(idx), *a.shape), np.uint8)
      if a.shape != out.shape[1:]:
        raise ValueError(
          f"images differ in shape: {a.shape} after {out.shape[1:]}; this"
          " loader needs images of one size."
        )
      out[row] = a
      row += 1
  assert out is not None and row == len(idx)
  return out
