"""The loggers of a sweep (``fj.sweep(..., loggers=[...])``), as the driver loops call them.

The driver hands :meth:`Tracking.log` each compiled call's metrics, which it
holds on the host anyway; this module picks the evaluated epochs, names the
runs, keeps the loggers' run ids and the last step logged per model in
``checkpoint_dir/loggers.json`` (written atomically after every call, so a
resumed sweep logs no step twice), and turns a logger's exception into one
warning, after which that logger is left out. Only process 0 logs.
"""

from __future__ import annotations

import json
import os
import secrets
import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from flood_jax import loggers as loggers_lib
from flood_jax._result import _json_safe
from flood_jax._sweep import hosts
from flood_jax._sweep.grid import Grid

STATE_FILE = "loggers.json"


def check_loggers(loggers: Any) -> list[Any]:
  """``loggers`` as a list; a one-line ``TypeError`` for anything but objects with ``log``."""
  if loggers is None:
    return []
  if isinstance(loggers, (str, bytes)) or not isinstance(loggers, Sequence):
    raise TypeError(
      "loggers must be a list, e.g. loggers=[fj.loggers.TensorBoard('runs/tb')],"
      f" got {type(loggers).__name__}."
    )
  for logger in loggers:
    if not callable(getattr(logger, "log", None)):
      raise TypeError(
        f"loggers[...] must be fj.loggers.TensorBoard, MLflow, WandB or an object with"
        f" log(run, step, metrics) (fj.loggers.Logger); got {type(logger).__name__}."
      )
  return list(loggers)


def runs_of(grid: Grid, level_name: str) -> list[loggers_lib.Run]:
  """One :class:`flood_jax.loggers.Run` per model, in the flat order."""
  flat_levels, flat_hparams, flat_seeds = grid.flat()
  runs = []
  for i in range(grid.num_models):
    config: dict[str, float | int] = {level_name: _short(flat_levels[i])}
    for k, name in enumerate(grid.hyperparams):
      config[name] = _short(flat_hparams[i, k])
    config["seed"] = int(flat_seeds[i])
    name = ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in config.items())
    runs.append(loggers_lib.Run(i, name, config))
  return runs


class Tracking:
  """The sweep's loggers, or nothing (no loggers, or not process 0)."""

  def __init__(
    self,
    loggers: Sequence[Any],
    *,
    grid: Grid,
    level_name: str,
    config: dict[str, Any],
    metrics: Sequence[str],
    eval_epochs: np.ndarray,
    checkpoint_dir: str | None,
  ):
    self.active = bool(loggers) and hosts.is_main()
    self._loggers: list[Any] = list(loggers) if self.active else []
    # PBT: name -> (models,) the value each model trains with now, logged beside its metrics.
    self.explored: dict[str, np.ndarray] = {}
    if not self.active:
      return
    self._metrics = tuple(metrics)
    self._evaluated = np.zeros(int(eval_epochs[-1]) + 1, bool)
    self._evaluated[eval_epochs] = True
    self._runs = runs_of(grid, level_name)
    self._path = None if checkpoint_dir is None else os.path.join(checkpoint_dir, STATE_FILE)
    saved = self._load()
    name = saved.get("sweep") or f"sweep-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
    self.sweep = loggers_lib.SweepInfo(
      name=name,
      config=_json_safe(config),
      metrics=self._metrics,
      epochs=tuple(int(e) for e in eval_epochs),
    )
    self._logged = np.zeros(grid.num_models, np.int64)
    if len(saved.get("logged", ())) == grid.num_models:
      self._logged[:] = saved["logged"]
    states = saved.get("loggers", {})
    self._keys = _keys(self._loggers)
    self._states: dict[str, Any] = {}
    for key, logger in list(zip(self._keys, self._loggers, strict=True)):
      state = self._call(logger, "start", self.sweep, self._runs, states.get(key))
      self._states[key] = state
    self._save()

  def log(self, models: np.ndarray, first_epoch: int, metrics: np.ndarray) -> None:
    """``metrics`` ``(len(models), epochs, metric)`` of the flat ``models`` from epoch
    ``first_epoch + 1`` on; padding (``models`` repeated or out of range) is skipped."""
    if not self._loggers:
      return
    seen = set()
    steps = np.arange(first_epoch + 1, first_epoch + 1 + metrics.shape[1])
    steps = steps[self._evaluated[steps]] if len(steps) else steps
    logged_any = False
    for row, model in enumerate(np.asarray(models).tolist()):
      if model in seen or model >= len(self._runs):
        continue
      seen.add(model)
      run = self._runs[model]
      for step in steps[steps > self._logged[model]].tolist():
        values = metrics[row, step - first_epoch - 1]
        if np.all(np.isnan(values)):  # not trained (yet): a pruned model, a resumed sweep
          continue
        record = dict(zip(self._metrics[: len(values)], values.tolist(), strict=True))
        record.update({name: _short(v[model]) for name, v in self.explored.items()})
        for logger in list(self._loggers):
          self._call(logger, "log", run, step, record)
        self._logged[model] = step
        logged_any = True
    if logged_any:
      for logger in list(self._loggers):
        self._call(logger, "flush")
      self._save()

  def finish(self, result: Any) -> None:
    """Each run's summary, then :meth:`close`."""
    if self._loggers:
      summaries = loggers_lib.run_summaries(result)
      for run, summary in zip(self._runs, summaries, strict=True):
        for logger in list(self._loggers):
          self._call(logger, "summarize", run, summary)
    self.close()

  def close(self) -> None:
    for logger in list(self._loggers):
      self._call(logger, "close")
    self._loggers = []

  def _call(self, logger: Any, method: str, *args: Any) -> Any:
    fn = getattr(logger, method, None)
    if fn is None:
      return None
    try:
      return fn(*args)
    except Exception as err:  # a tracker's failure must not stop the sweep
      self._loggers.remove(logger)
      first = str(err).strip().splitlines()[0] if str(err).strip() else ""
      warnings.warn(
        f"logger {logger!r} failed in {method}() ({type(err).__name__}: {first});"
        " the sweep goes on without it.",
        RuntimeWarning,
        stacklevel=2,
      )
      return None

  def _load(self) -> dict[str, Any]:
    if self._path is None or not os.path.exists(self._path):
      return {}
    with open(self._path) as f:
      return json.load(f)

  def _save(self) -> None:
    if self._path is None:
      return
    state = {
      "sweep": self.sweep.name,
      "loggers": {k: v for k, v in self._states.items() if v is not None},
      "logged": self._logged.tolist(),
    }
    tmp = self._path + ".tmp"
    with open(tmp, "w") as f:
      json.dump(state, f)
    os.replace(tmp, self._path)  # atomic: a kill leaves the old file or the new one


def _short(value: Any) -> float:
  """A float32 grid value as the shortest decimal that reads back: 0.1, not 0.10000000149."""
  return float(np.format_float_positional(np.float32(value), unique=True, trim="-"))


def _keys(loggers: Sequence[Any]) -> list[str]:
  """A key per logger for its saved state: its class name, numbered if repeated."""
  keys, counts = [], {}
  for logger in loggers:
    name = type(logger).__name__
    counts[name] = counts.get(name, 0) + 1
    keys.append(name if counts[name] == 1 else f"{name}#{counts[name]}")
  return keys
