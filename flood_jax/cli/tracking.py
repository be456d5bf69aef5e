"""``--log tensorboard|mlflow|wandb`` and ``--log-dir``: the command line's experiment trackers.

Where each tracker writes: its own settings first (``MLFLOW_TRACKING_URI``,
``MLFLOW_EXPERIMENT_NAME``; ``WANDB_DIR``, ``WANDB_MODE``, ``WANDB_PROJECT``),
else under ``--log-dir``, else under ``--out``: ``tensorboard/`` (event files,
one directory per model), ``mlflow.db`` (an MLflow sqlite store) and
``wandb/`` (W&B's run files; online unless ``WANDB_MODE=offline``).
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from typing import Any

from flood_jax._checks import directory as check_directory
from flood_jax._checks import first_line

TRACKERS = ("tensorboard", "mlflow", "wandb")
LOG_HELP = (
  "log every model's curves to an experiment tracker: tensorboard, mlflow or"
  ' wandb (repeat for several; needs pip install "flood_jax[tracking]"); written'
  " under --log-dir, else --out, unless the tracker's own settings"
  " (MLFLOW_TRACKING_URI, WANDB_DIR, WANDB_MODE, WANDB_PROJECT) say otherwise"
)
LOG_DIR_HELP = "where --log trackers write (default: --out)"


def add_arguments(group: Any) -> None:
  """``--log`` (repeatable) and ``--log-dir``."""
  group.add_argument("--log", action="append", choices=TRACKERS, metavar="TRACKER", help=LOG_HELP)
  group.add_argument("--log-dir", metavar="DIR", help=LOG_DIR_HELP)


def make_loggers(
  names: Sequence[str] | None, directory: str, group: str | None = None
) -> list[Any]:
  """The loggers ``names`` asks for, writing under ``directory``.

  Args:
    names: tracker names from :data:`TRACKERS` (repeats count once).
    directory: ``--log-dir`` or ``--out``.
    group: a name for the sweep's runs (``reproduce``: the setting), used
      as the TensorBoard subdirectory and the W&B group.

  Raises:
    ImportError: the ``tracking`` extra is not installed (one line naming it).
    ValueError: ``directory`` is a file.
  """
  import flood_jax as fj

  if names:
    check_directory("--log-dir", directory)

  out: list[Any] = []
  for name in dict.fromkeys(names or ()):
    if name == "tensorboard":
      path = os.path.join(directory, "tensorboard", *([group] if group else []))
      out.append(fj.loggers.TensorBoard(path))
    elif name == "mlflow":
      uri = os.environ.get("MLFLOW_TRACKING_URI") or (
        "sqlite:///" + os.path.abspath(os.path.join(directory, "mlflow.db"))
      )
      os.makedirs(directory, exist_ok=True)
      experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME") or "flood_jax"
      out.append(fj.loggers.MLflow(tracking_uri=uri, experiment=experiment))
    elif name == "wandb":
      kwargs = {"group": group} if group else {}
      out.append(
        fj.loggers.WandB(
          os.environ.get("WANDB_PROJECT") or "flood_jax",
          # Read here: W&B reads its environment once per process, at its first run.
          mode=os.environ.get("WANDB_MODE") or None,
          dir=os.environ.get("WANDB_DIR") or directory,
          **kwargs,
        )
      )
    else:
      raise argparse.ArgumentTypeError(f"unknown tracker {name!r}; use {', '.join(TRACKERS)}")
  return out


def check_state(checkpoint_dir: str) -> None:
  """``ValueError`` (one line) if the trackers' run ids in a checkpoint are damaged.

  ``checkpoint_dir/loggers.json`` (:mod:`flood_jax._sweep.tracking`) lets a
  resumed sweep log into the runs it started; a damaged one is named, with
  the fix, before the sweep reads it.
  """
  path = os.path.join(checkpoint_dir, "loggers.json")
  if not os.path.isfile(path):
    return
  try:
    with open(path) as f:
      state = json.load(f)
    if not isinstance(state, dict):
      raise ValueError(f"a {type(state).__name__}, not an object")
    kinds = {"sweep": str, "logged": list, "loggers": dict}
    for key, kind in kinds.items():
      if key in state and not isinstance(state[key], kind):
        raise ValueError(f"its {key!r} is not a {kind.__name__}")
    if not all(isinstance(n, int) for n in state.get("logged", ())):
      raise ValueError("its 'logged' holds other than integers")
  except ValueError as err:  # (JSONDecodeError is a ValueError)
    raise ValueError(
      f"{path} is damaged ({first_line(err)}); delete it to resume without the trackers'"
      " run ids (the trackers then start new runs)"
    ) from None
