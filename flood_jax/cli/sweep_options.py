"""From ``flood-jax sweep``'s options to its :class:`~flood_jax.cli.sweep_config.SweepConfig`:
the options given (:func:`given_options`), checked (:func:`check_options`) and
resolved (:func:`resolve`) for a new sweep in ``--out``, or compared with the
config of the interrupted sweep that ``--resume`` continues (saved in
``OUT/checkpoint/command.json``)."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Mapping
from typing import Any

from flood_jax._checks import claim_directory, directory
from flood_jax.cli.common import PROG, UsageError, one_line, write_json
from flood_jax.cli.sweep_config import (
  DEFAULTS,
  FIELDS,
  HYPERPARAMS,
  REGRESSION_DEFAULTS,
  REGRESSION_SETS,
  SweepConfig,
  datasets,
  flag,
  frozen,
  image_sets,
  models,
)

_d = DEFAULTS


def sweep_config(given: Mapping[str, Any], resume: bool) -> SweepConfig:
  """The sweep's settings: the defaults, or the interrupted sweep's, and ``given``.

  Raises:
    UsageError: a bad or inconsistent option, or a ``--out`` that does not
      fit ``--resume``.
  """
  if resume:
    return _resumed_config(given)
  check_options(given)
  dataset = given.get("dataset", DEFAULTS.dataset)
  out = given.get("out") or os.path.join(
    DEFAULTS.out_root, f"sweep-{dataset}-{time.strftime('%Y%m%d-%H%M%S')}"
  )
  _check_directories({**given, "out": out})
  if os.path.exists(os.path.join(out, "checkpoint")):
    raise UsageError(
      f"{out} holds an interrupted sweep (checkpoint/); pass --resume to continue"
      " it, or choose another --out"
    )
  if os.path.exists(os.path.join(out, "results.json")):
    raise UsageError(f"{out} already holds results (results.json); choose another --out")
  _check_directories({**given, "out": out}, claim=True)
  return resolve(given, out)


def save_config(config: SweepConfig, checkpoint: str) -> None:
  """Writes ``checkpoint/command.json``, which ``--resume`` reads."""
  write_json(os.path.join(checkpoint, "command.json"), {"config": config.to_json()})


def given_options(args: Any) -> dict[str, Any]:
  """The options given on the command line (not None), by field name, lists as tuples.

  A single ``--lr`` or ``--weight-decay`` value is kept as a number (a fixed
  setting, as in a config without a grid); several stay a tuple (an axis).
  """
  given: dict[str, Any] = {}
  for name in FIELDS:
    value = getattr(args, name)
    if value is None:
      continue
    if name in HYPERPARAMS and len(value) == 1:
      value = value[0]
    given[name] = frozen(value)
  return given


def check_options(given: Mapping[str, Any]) -> None:
  """The one place options are checked: :class:`UsageError` (one line) for an unknown
  name, or for options that do not fit together."""
  dataset, model = given.get("dataset", _d.dataset), given.get("model", _d.model)
  if dataset not in datasets():
    raise UsageError(f"unknown data set {dataset!r}; known: {', '.join(datasets())}")
  if model not in models():
    raise UsageError(f"unknown model {model!r}; known: {', '.join(models())}")
  if dataset in REGRESSION_SETS:  # the MLP, and no label noise (its targets are not labels)
    if model != "mlp":
      raise UsageError(f"{dataset} is a regression set, swept with --model mlp; not {model}")
    if given.get("label_noise"):
      raise UsageError(f"--label-noise applies to the classification sets, not {dataset}")
  if "depth" in given and model != "mlp":
    raise UsageError(f"--depth applies to --model mlp only, not {model}")
  if "hidden" in given and model not in ("mlp", "cnn"):
    raise UsageError(f"--hidden applies to --model mlp or cnn only, not {model}")
  if "momentum" in given and _optimizer_of(given) != "sgd":
    raise UsageError("--momentum applies to --optimizer sgd only")
  images = ", ".join(image_sets())
  if given.get("augment") and dataset not in image_sets():
    raise UsageError(
      f"--augment (random crops and flips) applies to the image data sets ({images}) only,"
      f" not {dataset}"
    )
  if given.get("data_dir") is not None and dataset not in image_sets():
    raise UsageError(
      f"--data-dir (the original files) applies to the image data sets ({images}) only;"
      f" {dataset} is built in"
    )


def resolve(given: Mapping[str, Any], out: str) -> SweepConfig:
  """The config of the options ``given`` (checked by :func:`check_options`), writing to ``out``.

  An option not given takes its default; a regression set starts from settings
  that fit it (SGD at lr 0.1 diverges on diabetes), and an option that does not
  apply to the model or the optimizer is None.
  """
  dataset, model = given.get("dataset", _d.dataset), given.get("model", _d.model)
  own = REGRESSION_DEFAULTS if dataset in REGRESSION_SETS else {}
  optimizer = _optimizer_of(given)
  lr = own.get(f"{optimizer}_lr", _d.sgd_lr if optimizer == "sgd" else _d.adam_lr)
  resolved = {
    "hidden": own.get("hidden", _d.hidden) if model == "mlp" else None,
    "depth": _d.depth if model == "mlp" else None,
    "batch_size": own.get("batch_size", _d.batch_size),
    "optimizer": optimizer,
    "lr": lr,
    "momentum": _d.momentum if optimizer == "sgd" else None,
    **given,
    "out": out,
  }
  return SweepConfig(**resolved)


def _optimizer_of(given: Mapping[str, Any]) -> str:
  own = REGRESSION_DEFAULTS if given.get("dataset", _d.dataset) in REGRESSION_SETS else {}
  return given.get("optimizer", own.get("optimizer", _d.optimizer))


def _resumed_config(given: Mapping[str, Any]) -> SweepConfig:
  """The interrupted sweep's config in ``--out``, if ``given`` agrees with it."""
  out = given.get("out")
  if out is None:
    raise UsageError("--resume needs --out DIR, the directory of the interrupted sweep")
  _check_directories(given)
  saved_path = os.path.join(out, "checkpoint", "command.json")
  if not os.path.exists(saved_path):
    finished = os.path.exists(os.path.join(out, "results.json"))
    raise UsageError(
      f"--resume: no checkpoint in {os.path.join(out, 'checkpoint')}"
      + (
        "; the sweep there has finished (results.json)"
        if finished
        else "; run without --resume to start a sweep"
      )
    )
  saved = SweepConfig.from_json(_saved_config(saved_path))
  changed = saved.differences(given)
  if changed:
    raise UsageError(
      f"--resume: options differ from the interrupted sweep in {out}:"
      f" {'; '.join(changed)}; leave them out to resume, or choose another --out"
    )
  return dataclasses.replace(saved, out=out)


def _check_directories(given: Mapping[str, Any], claim: bool = False) -> None:
  """A file where a directory is meant is one line; with ``claim``, so is an ``--out``
  that holds files this command did not write (nothing of the user's is overwritten)."""
  try:
    for name in ("out", "log_dir", "data_dir"):
      if given.get(name) is not None:
        directory(flag(name), given[name])
    if claim:
      claim_directory("--out", given["out"], f"{PROG} sweep", write=False)
  except ValueError as err:
    raise UsageError(str(err).rstrip(".")) from None


def _saved_config(path: str) -> dict[str, Any]:
  """The options in an interrupted sweep's ``checkpoint/command.json``; one line if damaged."""
  try:
    with open(path) as f:
      saved = json.load(f)
    config = saved.get("config") if isinstance(saved, dict) else None
    if not isinstance(config, dict):
      raise ValueError("no options object under 'config'")
  except ValueError as err:  # (JSONDecodeError is a ValueError)
    what = one_line(err)
    raise UsageError(
      f"--resume: {path} is damaged ({what}), so the interrupted sweep's options are"
      f" unknown; delete {os.path.dirname(path)} and run the sweep again without --resume"
    ) from None
  except OSError as err:
    raise UsageError(f"--resume: cannot read {path}: {err.strerror}") from None
  return config
