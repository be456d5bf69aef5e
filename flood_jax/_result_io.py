"""A :class:`~flood_jax.SweepResult` on disk: ``results.json``, ``params.npz``, ``history.csv``.

:meth:`SweepResult.to_dict`, :meth:`~SweepResult.save` and
:meth:`~SweepResult.load` delegate here. float32 values are written as their
shortest decimals (``0.003``, not ``0.0030000000261``); NaN and infinities as
``null`` (strict JSON has no spelling for them), which reads back as NaN.
"""

from __future__ import annotations

import csv
import json
import math
import os
from typing import TYPE_CHECKING, Any

import jax
import numpy as np

from flood_jax._checks import atomic_write, first_line
from flood_jax._checks import directory as check_directory

if TYPE_CHECKING:
  from flood_jax._result import SweepResult

# The history's keys under classification (the sweep's keys before tasks), in the order the
# files write them; flood_jax._result.METRICS.
METRICS = (
  "train_loss",
  "val_loss",
  "val_accuracy",
  "test_loss",
  "test_accuracy",
  "flooded_fraction",
)

# What a results.json without a "selection" entry was chosen by.
CLASSIFICATION_SELECTION = ("val_accuracy", "max")


def to_dict(result: SweepResult) -> dict[str, Any]:
  """Metrics and settings as JSON-ready Python values (no parameters)."""
  try:
    best: dict[str, float] | None = result.best()
    best_es: dict[str, float] | None = result.best("best_val")
  except ValueError:
    best = best_es = None
  epochs, pruned_at = result.epochs, result.pruned_at
  assert epochs is not None and pruned_at is not None  # __post_init__ always sets them
  level_name = result.level_name
  return {
    "axes": list(result.axes),
    "flood_levels": [shortest(b) for b in result.flood_levels],
    "hyperparams": {k: [shortest(v) for v in vs] for k, vs in result.hyperparams.items()},
    "seeds": [int(s) for s in result.seeds],
    "best": best,
    "best_early_stopping": best_es,
    "best_flood_level": None if best is None else best[level_name],
    "best_flood_level_early_stopping": None if best_es is None else best_es[level_name],
    "wall_time": result.wall_time,
    "epochs": [int(e) for e in epochs],
    "config": result.config,
    "final": {k: shortest_list(result.history[k][..., -1]) for k in _metric_order(result)},
    "table": result.table(),
    "history": {k: shortest_list(v) for k, v in result.history.items()},
    "pruned_at": pruned_at.tolist(),
    # (a PBT sweep's: whose weights each member went on from at each boundary)
    **({} if result.lineage is None else {"lineage": np.asarray(result.lineage).tolist()}),
    # (classification's files keep their format: only another selection is written)
    **(
      {}
      if (result.selection_key, result.mode) == CLASSIFICATION_SELECTION
      else {"selection": {"key": result.selection_key, "mode": result.mode}}
    ),
  }


def _metric_order(result: SweepResult) -> tuple[str, ...]:
  """The history's keys: classification's in their fixed order, another task's as given."""
  return METRICS if set(result.history) == set(METRICS) else tuple(result.history)


def save(result: SweepResult, directory: str | os.PathLike[str], with_params: bool = True) -> str:
  """Writes ``results.json`` and, with ``with_params``, ``params.npz``; returns the JSON's path.

  Each file is written whole or not at all (a full disk leaves the old file, or none).

  Raises:
    ValueError: ``directory`` is a file.
  """
  check_directory("the directory to save to", directory)
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(directory, "results.json")
  with atomic_write(path) as f:
    json.dump(json_safe(to_dict(result)), f, indent=1)
  if with_params:
    save_params(result, directory)
  return path


def save_params(result: SweepResult, directory: str | os.PathLike[str]) -> str | None:
  """Writes the trained parameters to ``directory/params.npz``, whole or not at all.

  Returns its path, or ``None`` when the result holds no parameters.
  """
  if result.final_params is None:
    return None
  leaves = jax.tree_util.tree_leaves_with_path(
    {"params": result.final_params, "batch_stats": result.final_batch_stats}
  )
  # Any: the checker matches **arrays against savez's allow_pickle: bool too.
  arrays: dict[str, Any] = {jax.tree_util.keystr(k): np.asarray(v) for k, v in leaves}
  path = os.path.join(directory, "params.npz")
  tmp = path + ".tmp"
  try:
    with open(tmp, "wb") as f:  # (a file object: savez would add ".npz" to the name)
      np.savez(f, **arrays)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  return path


def load(cls: type[SweepResult], directory: str | os.PathLike[str]) -> SweepResult:
  """Reads the metrics written by :func:`save` into a ``cls`` (parameters are not restored)."""
  """Reads the metrics written by :func:`save` into a ``cls`` (parameters are not restored).

  Raises:
    FileNotFoundError: no ``results.json`` in ``directory``.
    ValueError: ``results.json`` is damaged (truncated, not ours, or its
      entries do not fit together): one line naming it.
  """
  if os.path.isfile(directory):
    hint = (
      f"give its directory, {os.path.dirname(directory) or '.'}"
      if os.path.basename(directory) == "results.json"
      else "give the directory that holds results.json"
    )
    raise ValueError(f"{directory} is a file, not a directory; {hint}.")
  path = os.path.join(directory, "results.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"no results.json in {directory}; run a sweep with it as --out first.")
  try:
    with open(path) as f:
      raw = json.load(f)
    if not isinstance(raw, dict):
      raise ValueError(f"a {type(raw).__name__}, not an object")
    key, mode = CLASSIFICATION_SELECTION
    selection = raw.get("selection", {"key": key, "mode": mode})
    _check_shapes(raw)
    return cls(
      flood_levels=np.asarray(raw["flood_levels"], np.float32),
      seeds=np.asarray(raw["seeds"], np.int64),
      history={
        # null (a NaN when saved) reads back as NaN.
        k: np.array(v, dtype=np.float64)
        for k, v in raw["history"].items()
      },
      config=raw.get("config", {}),
      wall_time=raw.get("wall_time", math.nan),
      hyperparams={k: np.asarray(v, np.float32) for k, v in raw.get("hyperparams", {}).items()},
      epochs=raw.get("epochs"),
      pruned_at=raw.get("pruned_at"),
      lineage=None if raw.get("lineage") is None else np.asarray(raw["lineage"], np.int64),
      level_name=raw.get("axes", ["flood_level"])[0],
      selection_key=selection["key"],
      mode=selection["mode"],
    )
  except (ValueError, KeyError, TypeError, AttributeError, IndexError) as err:
    what = f"no {err} entry" if isinstance(err, KeyError) else first_line(err)
    raise ValueError(
      f"{path} is damaged ({what}); restore it, or delete it and run the sweep again."
    ) from None


def _check_shapes(raw: dict[str, Any]) -> None:
  """``ValueError`` unless every curve has one row per configuration and seed, and one
  entry per evaluated epoch."""
  sizes = [
    len(raw["flood_levels"]),
    *(len(v) for v in raw.get("hyperparams", {}).values()),
    len(raw["seeds"]),
  ]
  evals = raw.get("epochs")
  for name, values in raw["history"].items():
    shape = np.shape(values)
    if list(shape[:-1]) != sizes or (evals is not None and shape[-1:] != (len(evals),)):
      raise ValueError(
        f"history {name!r} has shape {shape}, not (configurations and seeds {sizes},"
        f" evaluations {len(evals) if evals is not None else '?'})"
      )


def write_history_csv(result: Any, path: str) -> str:
  """Writes the per-epoch history in long format: one row per configuration, seed, epoch.

  Columns: the axes of ``result`` (``flood_level``, one per swept
  hyperparameter such as ``learning_rate``, ``seed``), ``epoch`` (from 1),
  then one per metric of ``result.history``.

  Args:
    result: a :class:`flood_jax.SweepResult`.
    path: the CSV file to write.

  Returns:
    ``path``.
  """
  metrics = list(result.history)
  values = [result.flood_levels, *result.hyperparams.values()]
  with atomic_write(path, newline="") as f:
    writer = csv.writer(f)
    writer.writerow([*result.axes, "epoch", *metrics])
    for index in np.ndindex(*result.config_shape):
      configuration = [f"{shortest(v[i]):.6g}" for v, i in zip(values, index, strict=True)]
      for j, seed in enumerate(result.seeds):
        for entry, epoch in enumerate(result.epochs):
          writer.writerow(
            [
              *configuration,
              int(seed),
              int(epoch),
              *(repr(shortest(result.history[m][(*index, j, entry)])) for m in metrics),
            ]
          )
  return path


def shortest(value: Any) -> float:
  """A float32 value as the shortest decimal that reads back (0.003, not 0.0030000000261).

  NaN and infinities pass through. Other dtypes are returned as plain floats.
  """
  value = np.asarray(value)
  if value.dtype == np.float32:
    scalar = value[()]
    if not np.isfinite(scalar):
      return float(scalar)
    return float(np.format_float_positional(scalar, unique=True, trim="-"))
  return float(value)


def shortest_list(values: Any) -> Any:
  """``values.tolist()`` with every float32 written as its shortest decimal (nested lists)."""
  values = np.asarray(values)
  if values.dtype != np.float32:
    return values.tolist()
  if values.ndim == 0:
    return shortest(values)
  return [shortest_list(v) for v in values]


def json_safe(value: Any) -> Any:
  """NaN and infinities become None: strict JSON has no spelling for them."""
  if isinstance(value, float):
    return value if math.isfinite(value) else None
  if isinstance(value, dict):
    return {str(k): json_safe(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [json_safe(v) for v in value]
  return value
