"""The parser of ``flood-jax sweep``, built from :class:`~flood_jax.cli.sweep_config.SweepConfig`.

Each field of the config is an option ``--NAME`` whose help, type and group
its metadata give; the options that only steer this run (``--resume``,
``--dry-run``, ...) are here. :data:`HELP_ORDER` keeps ``--help`` in the order
it has always had; a field it does not name comes last in its group.
"""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Callable
from typing import Any

from flood_jax.cli import hosts as hosts_cli
from flood_jax.cli.common import add_compile_cache_arguments
from flood_jax.cli.sweep_config import DEFAULTS, FIELDS, flag

_d = DEFAULTS

DESCRIPTION = f"""\
Train one model per (flood level, seed) pair, all at once, and compare them.
--lr or --weight-decay with several values adds an axis to the grid: one
model per (flood level, learning rate, weight decay, seed). The weight decay
is decoupled for --optimizer adam (AdamW) and L2 for sgd (added to the
gradient before the momentum; see flood_jax._optimizers).

Prints a table (per configuration: final and best validation accuracy, final
test accuracy, training and test loss, flooded fraction; mean ± std over
seeds), names the best one by validation accuracy, and writes to --out:
results.json (config, levels, seeds, best configuration, final metrics,
per-epoch history), history.csv (one row per configuration, seed and epoch),
params.npz (the trained parameters: 13 MB for the defaults) and plots (curves.png,
accuracy_vs_level.png, flooded_fraction.png, overview.png; at the best
learning rate and weight decay). While it runs, progress is checkpointed in
OUT/checkpoint: after an interruption, run the same command with --resume.

{
  textwrap.fill(
    f"Defaults: MNIST-1D and the paper's MLP ({_d.hidden} wide, BatchNorm), with"
    f" {_d.depth} hidden layers rather than the official code's 4 so that"
    f" it takes about two minutes on a 2-core CPU; levels"
    f" {','.join(f'{b:g}' for b in _d.levels)}; {_d.seeds} seeds;"
    f" {_d.epochs} epochs; batch size {_d.batch_size}; SGD (lr"
    f" {_d.sgd_lr:g}, momentum {_d.momentum:g}).",
    width=79,
  )
}

examples:
  flood-jax sweep
  flood-jax sweep --dataset spiral --label-noise 0.1 --levels 0:0.3:7 --seeds 3 --out runs/spiral
  flood-jax sweep --out runs/spiral --resume
  flood-jax sweep --dataset spiral --lr 0.03,0.1,0.3 --weight-decay 0,5e-4 --objective iflood
  flood-jax sweep --dataset cifar10 --model resnet20 --augment --levels 0,0.02,0.05
"""


def _switch(name: str, help: str) -> Callable[[Any], None]:
  return lambda group: group.add_argument(name, action="store_true", help=help)


# The options of this run alone, not of the sweep (not in the config).
_RUN_OPTIONS: dict[str, Callable[[Any], None]] = {
  "--resume": _switch("--resume", "continue the interrupted sweep in --out from its checkpoint"),
  "--dry-run": _switch(
    "--dry-run",
    "print the plan (models per device and per call, calls, memory per"
    " device by part, seconds per epoch from a few timed epochs of the first"
    " call's models) and exit without keeping or writing anything",
  ),
  "--compile-cache": add_compile_cache_arguments,
  "--no-progress": _switch("--no-progress", "do not show a progress bar"),
  "--no-plots": _switch(
    "--no-plots", "write results.json, history.csv and params.npz but no plots"
  ),
}

HELP_ORDER = {
  "data and model": (
    "dataset",
    "label_noise",
    "data_dir",
    "model",
    "hidden",
    "depth",
    "augment",
    "stream",
  ),
  "sweep": ("levels", "objective", "seeds", "epochs", "batch_size"),
  "optimizer": ("optimizer", "lr", "momentum", "weight_decay"),
  "running": (
    "out",
    "--resume",
    "chunk_size",
    "memory_limit",
    "--dry-run",
    "devices",
    "eval_every",
    "prune",
    "pbt",
    "log",
    "log_dir",
    "--compile-cache",
    "--no-progress",
    "--no-plots",
  ),
}
"""The options of ``--help`` by group: config fields by name, the others by flag."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
  """The options of ``flood-jax sweep``: each one not given is None (the config's default)."""
  titles = {**HELP_ORDER, **{f.metadata["group"]: () for f in FIELDS.values()}}
  for title in titles:
    names = HELP_ORDER.get(title, ())
    group = parser.add_argument_group(title)
    later = [n for n, f in FIELDS.items() if f.metadata["group"] == title and n not in names]
    for name in [*names, *later]:
      if name in _RUN_OPTIONS:
        _RUN_OPTIONS[name](group)
      else:
        _add_field(group, name)
  hosts_cli.add_arguments(parser)


def _add_field(group: Any, name: str) -> None:
  meta = FIELDS[name].metadata
  text = meta["help"]
  help = text() if callable(text) else text
  group.add_argument(flag(name), default=None, help=help, **meta["parse"])
