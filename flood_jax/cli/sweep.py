"""``flood-jax sweep``: train a grid of flood levels and seeds with
:func:`flood_jax.sweep`, print the table and write results, curves and plots
to ``--out``::

  flood-jax sweep                                  # MNIST-1D, the defaults
  flood-jax sweep --dataset spiral --label-noise 0.1 --levels 0:0.3:7 --out runs/spiral
  flood-jax sweep --out runs/spiral ... --resume   # after an interruption
  flood-jax sweep --dataset spiral --lr 0.03,0.1,0.3 --objective iflood

The options are resolved into a config (:data:`CONFIG_KEYS`), saved in
``OUT/checkpoint/command.json`` while the sweep runs and compared on
``--resume``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import shlex
import shutil
import sys
import textwrap
import time
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from flood_jax._checks import claim_directory, directory, release_directory
from flood_jax._result_io import save_params, write_history_csv
from flood_jax._sweep.checkpoint import CheckpointError, CheckpointSaveError
from flood_jax.cli import hosts as hosts_cli
from flood_jax.cli import tracking as tracking_cli
from flood_jax.cli.args import (
  OPTIMIZERS,
  fraction,
  memory_size,
  non_negative_float_list,
  parse_levels,
  parse_pbt,
  parse_prune,
  parse_seeds,
  positive_float_list,
  positive_int,
  snake_name,
)
from flood_jax.cli.common import (
  OUT_ROOT,
  PROG,
  Command,
  UsageError,
  add_compile_cache_arguments,
  default_devices,
  fail,
  one_line,
  request_cpu_devices,
  use_compile_cache,
  write_json,
)

if TYPE_CHECKING:
  from flood_jax._optimizers import Decay


@dataclasses.dataclass(frozen=True)
class SweepDefaults:
  """The defaults of ``flood-jax sweep``: MNIST-1D with the paper's MLP.

  Chosen so that ``flood-jax sweep`` alone finishes in about two minutes on
  an idle 2-core CPU and shows what flooding does: without it the training
  loss goes to zero and the test loss climbs; with it the test loss comes
  down again. Three seeds rather than two, and four levels rather than six
  (the same 12 models), so that its conclusion (the test loss lower at every
  level, beyond seed noise; accuracy not told apart from ``b = 0``) has the
  power of a paired test and does not turn on one machine's round-off.
  """

  dataset: str = "mnist1d"
  model: str = "mlp"
  hidden: int = 500  # MLP width (the paper's); --hidden sets the CNN's too.
  depth: int = 2  # MLP hidden layers.
  levels: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2)
  seeds: int = 3
  epochs: int = 150
  batch_size: int = 100
  optimizer: str = "sgd"
  sgd_lr: float = 0.1
  adam_lr: float = 1e-3
  momentum: float = 0.9
  weight_decay: float = 0.0
  objective: str = "flood"
  augment: bool = False
  label_noise: float = 0.0
  out_root: str = OUT_ROOT  # --out defaults to runs/sweep-DATASET-TIMESTAMP.


DEFAULTS = SweepDefaults()

# Options recorded in the config (and compared on --resume), in order.
CONFIG_KEYS = (
  "dataset",
  "model",
  "hidden",
  "depth",
  "levels",
  "seeds",
  "epochs",
  "batch_size",
  "optimizer",
  "lr",
  "momentum",
  "weight_decay",
  "objective",
  "augment",
  "label_noise",
  "data_dir",
  "eval_every",
  "chunk_size",
  "devices",
  "out",
  "prune",
  "pbt",
  "log",
  "log_dir",
  "memory_limit",
  "stream",
)

# Options that take a comma list: one value is a fixed setting of the
# optimizer, several are an axis of the grid, by optax hyperparameter name.
_HYPERPARAMS = {"lr": "learning_rate", "weight_decay": "weight_decay"}
_OBJECTIVES = ("flood", "iflood")
# The form of --weight-decay per --optimizer (flood_jax._optimizers): AdamW's
# decoupled decay for adam; for sgd, L2 (added to the gradient before the momentum).
DECAY: dict[str, Decay] = {"adam": "decoupled", "sgd": "l2"}

# Built-in regression sets: swept with fj.Regression() and the MLP (one output per target),
# with defaults of their own where an option is not given.
_REGRESSION_SETS = ("diabetes",)
_REGRESSION_DEFAULTS = {"optimizer": "adam", "adam_lr": 3e-3, "batch_size": 16, "hidden": 128}


def _check_regression(dataset: str, model: str, given: dict[str, Any]) -> None:
  """A regression set takes the MLP, and no label noise (its targets are not labels)."""
  if model != "mlp":
    raise UsageError(f"{dataset} is a regression set, swept with --model mlp; not {model}")
  if given.get("label_noise"):
    raise UsageError(f"--label-noise applies to the classification sets, not {dataset}")


def _format_levels(levels: Sequence[float]) -> str:
  return ",".join(f"{b:g}" for b in levels)


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
    f"Defaults: MNIST-1D and the paper's MLP ({DEFAULTS.hidden} wide, BatchNorm), with"
    f" {DEFAULTS.depth} hidden layers rather than the official code's 4 so that"
    f" it takes about two minutes on a 2-core CPU; levels"
    f" {_format_levels(DEFAULTS.levels)}; {DEFAULTS.seeds} seeds;"
    f" {DEFAULTS.epochs} epochs; batch size {DEFAULTS.batch_size}; SGD (lr"
    f" {DEFAULTS.sgd_lr:g}, momentum {DEFAULTS.momentum:g}).",
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
  """The options of ``flood-jax sweep``; a default of None means "see help"."""
  d = DEFAULTS
  data = parser.add_argument_group("data and model")
  data.add_argument(
    "--dataset",
    type=snake_name,
    metavar="NAME",
    help=f"data set, one of {', '.join(_datasets())} (default: {d.dataset}); diabetes is a"
    " regression, swept with fj.Regression() and the mlp (by default with adam, lr 3e-3,"
    " batch size 16, hidden 128)",
  )
  data.add_argument(
    "--label-noise",
    type=fraction,
    metavar="P",
    help="fraction of training and validation labels replaced by a wrong"
    f" class; the test set stays clean (default: {d.label_noise:g})",
  )
  data.add_argument(
    "--data-dir",
    metavar="DIR",
    help="image data sets: read the original files from DIR (MNIST family:"
    " the IDX files; cifar10: cifar-10-batches-py/; cifar100:"
    " cifar-100-python/; svhn: the .mat files), offline, with the paper's"
    " 80:20 split (default: download from the Hugging Face Hub)",
  )
  data.add_argument(
    "--model",
    type=snake_name,
    metavar="NAME",
    help=f"model, one of {', '.join(_models())} (default: {d.model})",
  )
  data.add_argument(
    "--hidden",
    type=positive_int,
    metavar="WIDTH",
    help=f"hidden width of the mlp or cnn (default: {d.hidden} for the mlp,"
    " the model's own for the cnn)",
  )
  data.add_argument(
    "--depth",
    type=positive_int,
    metavar="LAYERS",
    help=f"hidden layers of the mlp (default: {d.depth})",
  )
  data.add_argument(
    "--augment",
    action="store_true",
    default=None,
    help="augment the training images with random crops (4 pixels of"
    " padding) and horizontal flips; image data sets only",
  )
  data.add_argument(
    "--stream",
    action="store_true",
    default=None,
    help="feed the training set from the host in batches through fj.Stream (a grain"
    " MapDataset of the examples, shuffled per epoch) instead of keeping it on the"
    " devices: one batch order shared by every seed, train loss from the steps",
  )

  grid = parser.add_argument_group("sweep")
  grid.add_argument(
    "--levels",
    type=parse_levels,
    metavar="LEVELS",
    help="flood levels: START:STOP:COUNT (COUNT levels from START to STOP"
    " inclusive, like numpy.linspace) or a comma list such as 0,0.02,0.05;"
    " any finite numbers (a negative one: --levels=-1,0)"
    f" (default: {_format_levels(d.levels)})",
  )
  grid.add_argument(
    "--objective",
    choices=_OBJECTIVES,
    type=str.lower,
    help="flood: flood the mini-batch loss, |J - b| + b (Ishida et al., 2020);"
    " iflood: flood each example's loss (Xie et al., 2022)"
    f" (default: {d.objective})",
  )
  grid.add_argument(
    "--seeds",
    type=parse_seeds,
    metavar="SEEDS",
    help=f"a count N (seeds 0..N-1) or a comma list such as 0,5,7 (default: {d.seeds})",
  )
  grid.add_argument(
    "--epochs",
    type=positive_int,
    metavar="N",
    help=f"training epochs per model (default: {d.epochs})",
  )
  grid.add_argument(
    "--batch-size",
    type=positive_int,
    metavar="B",
    help=f"mini-batch size (default: {d.batch_size})",
  )

  opt = parser.add_argument_group("optimizer")
  opt.add_argument(
    "--optimizer",
    choices=OPTIMIZERS,
    type=str.lower,
    help=f"sgd (with momentum) or adam (default: {d.optimizer})",
  )
  opt.add_argument(
    "--lr",
    type=positive_float_list,
    metavar="LR[,LR...]",
    help="learning rate; a comma list sweeps it as an axis of the grid"
    f" (default: {d.sgd_lr:g} for sgd, {d.adam_lr:g} for adam)",
  )
  opt.add_argument(
    "--momentum",
    type=fraction,
    metavar="M",
    help=f"SGD momentum, sgd only (default: {d.momentum:g})",
  )
  opt.add_argument(
    "--weight-decay",
    type=non_negative_float_list,
    metavar="WD[,WD...]",
    help="weight decay: decoupled for adam (AdamW), L2 for sgd (added to the"
    " gradient before the momentum, as torch.optim.SGD); a comma list sweeps it"
    " as an axis of the grid"
    f" (default: {d.weight_decay:g})",
  )

  running = parser.add_argument_group("running")
  running.add_argument(
    "--out",
    metavar="DIR",
    help="directory for results, plots and the checkpoint: a new or empty one, or one"
    " flood-jax sweep wrote (never the user's own files)"
    f" (default: {d.out_root}/sweep-DATASET-YYYYmmdd-HHMMSS)",
  )
  running.add_argument(
    "--resume",
    action="store_true",
    help="continue the interrupted sweep in --out from its checkpoint",
  )
  running.add_argument(
    "--chunk-size",
    type=positive_int,
    metavar="K",
    help="models trained together per device (default: chosen from the"
    " model's size and the platform)",
  )
  running.add_argument(
    "--memory-limit",
    type=memory_size,
    metavar="SIZE",
    help="bytes each device may hold, e.g. 16GB (10**9) or 8GiB (2**30): the"
    " default --chunk-size is then the most models per device that fit, from"
    " XLA's memory analysis (default: on a GPU or TPU its memory less 10%%; on"
    " a CPU the measured layout)",
  )
  running.add_argument(
    "--dry-run",
    action="store_true",
    help="print the plan (models per device and per call, calls, memory per"
    " device by part, seconds per epoch from a few timed epochs of the first"
    " call's models) and exit without keeping or writing anything",
  )
  running.add_argument(
    "--devices",
    type=positive_int,
    metavar="N",
    help="devices to shard the sweep over; on a CPU, the number of XLA CPU"
    " devices to create, which must happen before JAX starts (default: all;"
    " on a CPU one per core); with several processes, each process's CPU"
    " devices, and the sweep spans all processes' devices",
  )
  running.add_argument(
    "--eval-every",
    type=positive_int,
    metavar="N",
    help="evaluate every N epochs and after the last (default: as often as"
    " costs about 10%% of training, at least 5 times a run)",
  )
  running.add_argument(
    "--prune",
    type=parse_prune,
    metavar="MIN_EPOCHS[,FACTOR[,SCORE]]",
    help="successive halving: after MIN_EPOCHS * FACTOR**k epochs keep only"
    " the best 1/FACTOR of the configurations (by mean validation accuracy"
    " over seeds; SCORE 'trend': by its forecast at the last epoch, fairer to"
    " flooding, which helps late; ties kept together) and stop the rest"
    " (default FACTOR: 3; default: no pruning), e.g. 12,2,trend",
  )
  running.add_argument(
    "--pbt",
    type=parse_pbt,
    metavar="INTERVAL[,FRACTION]",
    help="population-based training of the level: every INTERVAL epochs, per seed, the"
    " worst FRACTION of the configurations (default 0.25) copy one of the best FRACTION"
    " and go on at its level (and learning rate) times 0.8 or 1.25; not with --prune",
  )
  tracking_cli.add_arguments(running)
  add_compile_cache_arguments(running)
  running.add_argument("--no-progress", action="store_true", help="do not show a progress bar")
  running.add_argument(
    "--no-plots",
    action="store_true",
    help="write results.json, history.csv and params.npz but no plots",
  )
  hosts_cli.add_arguments(parser)


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
  """``flood-jax sweep``: returns the exit code."""
  given = _given(args)
  config: dict[str, Any] | None = None
  try:
    if hosts_cli.requested(args) and "out" not in given:
      raise UsageError(
        "several processes write to one directory: give --out DIR,"
        " the same on every host (shared storage)"
      )
    config = _sweep_config(given, resume=args.resume)
    request_cpu_devices(config["devices"] or default_devices())
    hosts_cli.join(args)  # before JAX starts; all processes have checked --out
    use_compile_cache(args)
    return _sweep_and_write(config, args, argv)
  except CheckpointSaveError as err:
    # Training had started: everything finished stays in the checkpoint.
    print(
      f"{PROG}: error: saving the checkpoint failed ({err.cause}); {err.kept} kept in"
      f" {err.directory}; free space there (or make it writable), then run:"
      f" {_resume_command(config, given, argv)}",
      file=sys.stderr,
    )
    return 1
  except CheckpointError as err:  # e.g. another sweep holds the directory
    return fail(one_line(err))
  except UsageError as err:
    if config is not None:  # bad input wrote nothing: no empty --out left behind
      release_directory(config["out"])
    return fail(str(err))
  except KeyboardInterrupt:
    print(_interrupted_message(config, given, argv), file=sys.stderr)
    return 130


def _given(args: argparse.Namespace) -> dict[str, Any]:
  """The options given on the command line, by config key.

  A single ``--lr`` or ``--weight-decay`` value is kept as a number (a fixed
  setting, as in a config without a grid); several stay a list (an axis).
  """
  given: dict[str, Any] = {}
  for key in CONFIG_KEYS:
    value = getattr(args, key)
    if value is None:
      continue
    if key in _HYPERPARAMS and len(value) == 1:
      value = value[0]
    given[key] = value
  return given


def _sweep_config(given: dict[str, Any], resume: bool) -> dict[str, Any]:
  """The sweep's settings: the defaults, or the interrupted sweep's, and ``given``.

  Raises:
    UsageError: a bad or inconsistent option, or a ``--out`` that does not
      fit ``--resume``.
  """
  out = given.get("out")
  if resume:
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
    # Checkpoints written before --objective and --augment existed lack them.
    saved = {
      "objective": DEFAULTS.objective,
      "augment": DEFAULTS.augment,
      "eval_every": None,
      "log": None,
      "log_dir": None,
      "data_dir": None,
      "memory_limit": None,
      "stream": False,
      **_saved_config(saved_path),
    }
    changed = [
      f"--{k.replace('_', '-')} {_show(v)} (was {_show(saved.get(k))})"
      for k, v in given.items()
      if k != "out" and v != saved.get(k)
    ]
    if changed:
      raise UsageError(
        f"--resume: options differ from the interrupted sweep in {out}:"
        f" {'; '.join(changed)}; leave them out to resume, or choose another --out"
      )
    return dict(saved, out=out)
  return _resolve(given)


def _check_directories(given: dict[str, Any], claim: bool = False) -> None:
  """A file where a directory is meant is one line; with ``claim``, so is an ``--out``
  that holds files this command did not write (nothing of the user's is overwritten)."""
  try:
    for key in ("out", "log_dir", "data_dir"):
      if given.get(key) is not None:
        directory(f"--{key.replace('_', '-')}", given[key])
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


def _resolve(given: dict[str, Any]) -> dict[str, Any]:
  """Fills in defaults and checks that the options fit together."""
  d = DEFAULTS
  dataset = given.get("dataset", d.dataset)
  if dataset not in _datasets():
    raise UsageError(f"unknown data set {dataset!r}; known: {', '.join(_datasets())}")
  model = given.get("model", d.model)
  if model not in _models():
    raise UsageError(f"unknown model {model!r}; known: {', '.join(_models())}")
  if dataset in _REGRESSION_SETS:
    _check_regression(dataset, model, given)
  if "depth" in given and model != "mlp":
    raise UsageError(f"--depth applies to --model mlp only, not {model}")
  if "hidden" in given and model not in ("mlp", "cnn"):
    raise UsageError(f"--hidden applies to --model mlp or cnn only, not {model}")
  # A regression set starts from settings that fit it (SGD at lr 0.1 diverges on diabetes).
  own = _REGRESSION_DEFAULTS if dataset in _REGRESSION_SETS else {}
  optimizer = given.get("optimizer", own.get("optimizer", d.optimizer))
  if "momentum" in given and optimizer != "sgd":
    raise UsageError("--momentum applies to --optimizer sgd only")
  if given.get("augment") and dataset not in _image_sets():
    raise UsageError(
      f"--augment (random crops and flips) applies to the image data sets"
      f" ({', '.join(_image_sets())}) only, not {dataset}"
    )
  if given.get("data_dir") is not None and dataset not in _image_sets():
    raise UsageError(
      f"--data-dir (the original files) applies to the image data sets"
      f" ({', '.join(_image_sets())}) only; {dataset} is built in"
    )
  out = given.get("out") or os.path.join(
    d.out_root, f"sweep-{dataset}-{time.strftime('%Y%m%d-%H%M%S')}"
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
  seeds = given.get("seeds", list(range(d.seeds)))
  return {
    "dataset": dataset,
    "model": model,
    "hidden": given.get("hidden", own.get("hidden", d.hidden) if model == "mlp" else None),
    "depth": given.get("depth", d.depth) if model == "mlp" else None,
    "levels": list(given.get("levels", d.levels)),
    "seeds": seeds,
    "epochs": given.get("epochs", d.epochs),
    "batch_size": given.get("batch_size", own.get("batch_size", d.batch_size)),
    "optimizer": optimizer,
    "lr": given.get(
      "lr", own.get(f"{optimizer}_lr", d.sgd_lr if optimizer == "sgd" else d.adam_lr)
    ),
    "momentum": given.get("momentum", d.momentum) if optimizer == "sgd" else None,
    "weight_decay": given.get("weight_decay", d.weight_decay),
    "objective": given.get("objective", d.objective),
    "augment": given.get("augment", d.augment),
    "label_noise": given.get("label_noise", d.label_noise),
    "data_dir": given.get("data_dir"),
    "eval_every": given.get("eval_every"),
    "chunk_size": given.get("chunk_size"),
    "devices": given.get("devices"),
    "out": out,
    "prune": given.get("prune"),
    "pbt": given.get("pbt"),
    "log": given.get("log"),
    "log_dir": given.get("log_dir"),
    "memory_limit": given.get("memory_limit"),
    "stream": bool(given.get("stream", False)),
  }


def _sweep_and_write(config: dict[str, Any], args: argparse.Namespace, argv: Sequence[str]) -> int:
  """Loads the data, runs the sweep, prints the table and writes the files."""
  import jax
  import numpy as np
  from jax.sharding import Mesh

  import flood_jax as fj
  from flood_jax import data as data_lib
  from flood_jax import models
  from flood_jax._sweep import count_params

  out = config["out"]
  checkpoint = os.path.join(out, "checkpoint")
  processes = jax.process_count()
  main = jax.process_index() == 0  # process 0 alone prints and writes
  say = print if main else (lambda *a, **k: None)
  regression = config["dataset"] in _REGRESSION_SETS
  try:
    local = {"data_dir": config["data_dir"]} if config.get("data_dir") else {}
    if not regression:
      local["label_noise"] = config["label_noise"]
    data = data_lib.load(config["dataset"], **local)
    kwargs = {k: config[k] for k in ("hidden", "depth") if config[k] is not None}
    # A regression's model has one output per target value.
    outputs = int(np.prod(np.shape(data.y_train)[1:])) if regression else data.num_classes
    assert outputs is not None  # Dataset infers num_classes for integer labels
    model = models.get_model(config["model"], outputs, **kwargs)
    if not args.dry_run and main:  # the first file written into --out: its marker
      claim_directory("--out", out, f"{PROG} sweep", ours=args.resume)
    if args.resume:
      tracking_cli.check_state(checkpoint)
    loggers = tracking_cli.make_loggers(config.get("log"), config.get("log_dir") or out)
  except (ValueError, TypeError, ImportError, ConnectionError) as err:
    raise UsageError(one_line(err)) from None

  devices = jax.devices()
  hyperparams = _swept_hyperparams(config)
  num_models = math.prod(
    [len(config["levels"]), len(config["seeds"]), *(len(v) for v in hyperparams.values())]
  )
  count = min(config["devices"] or len(devices), len(devices))
  if processes > 1:  # --devices counts each process's; the sweep spans all
    count = len(devices)
  mesh = Mesh(np.asarray(devices[:count]), ("models",))
  try:  # builds the model once: a model that does not fit the data fails here
    count_params(model, data)
  except (ValueError, TypeError) as err:
    raise UsageError(one_line(err)) from None
  say(
    f"{PROG} sweep: {data.name} ({data.num_train} train, {len(data.y_val)} val,"
    f" {len(data.y_test)} test), {_describe_model(config)},"
    f" {_describe_optimizer(config)}{_describe_training(config)};"
    f" {_describe_grid(config)} = {num_models} models, {config['epochs']}"
    f" epochs, batch size {config['batch_size']}; {count}"
    f" {devices[0].platform} device{'s' if count != 1 else ''}"
    + (f" on {processes} processes" if processes > 1 else "")
    + (
      f" (asked for {config['devices']}; JAX had already started with {len(devices)})"
      if count < (config["devices"] or 0) and devices[0].platform == "cpu"
      else ""
    ),
    flush=True,
  )
  if config.get("stream"):
    try:
      data = fj.Stream.from_dataset(data)
    except ImportError as err:
      raise UsageError(one_line(err)) from None
  if args.dry_run:
    return _dry_run(model, data, _sweep_arguments(config, hyperparams, mesh, regression), say)
  created = not os.path.exists(checkpoint)  # only this run's own may be cleaned up
  try:
    os.makedirs(checkpoint, exist_ok=True)
  except OSError as err:
    raise UsageError(f"cannot write to --out {out}: {err.strerror}") from None
  if not args.resume and main:
    write_json(os.path.join(checkpoint, "command.json"), {"config": config})
  try:
    with _warnings_as_lines():
      result = fj.sweep(
        model,
        data,
        **_sweep_arguments(config, hyperparams, mesh, regression),
        checkpoint_dir=checkpoint,
        progress=not args.no_progress,
        loggers=loggers,
      )
  except (ValueError, TypeError) as err:
    # Bad input trained nothing: leave no checkpoint behind, but never one
    # that holds training (a ValueError need not be bad input).
    if created and main and _untrained(checkpoint):
      shutil.rmtree(checkpoint, ignore_errors=True)
      release_directory(out)
    raise UsageError(one_line(err)) from None
  except CheckpointError:
    raise  # said by run(): not a lost process
  except RuntimeError as err:
    if processes == 1:
      raise
    # Another process died (fj.sweep says so): how to continue.
    print(f"{PROG}: error: {one_line(err)}", file=sys.stderr)
    print(
      f"{PROG}: to continue, run the same command with --resume on {processes} processes",
      file=sys.stderr,
    )
    return 1

  if not main:
    return 0
  print()
  print(result.summary())
  for line in (_flooding_effect(result), _test_loss_verdict(result)):
    if line:
      print(line)
  print(f"sweep time: {result.wall_time:.1f} s")
  command = shlex.join([PROG, *argv])
  result.config = {**result.config, "cli": config, "command": command}
  try:
    written = _write_outputs(result, out, plot=not args.no_plots)
  except _NotWritten as err:  # e.g. a full disk: the checkpoint keeps the whole sweep
    done = f" ({', '.join(err.written)} written)" if err.written else ""
    print(
      f"{PROG}: error: could not write {err.name} to {out}: {err.reason}{done}; nothing else"
      f" is lost, the trained sweep stays in {checkpoint}: free space (or make {out}"
      f" writable), then run: {_resume_command(config, _given(args), argv)}",
      file=sys.stderr,
    )
    return 1
  shutil.rmtree(checkpoint, ignore_errors=True)  # everything is in `out` now
  print(f"wrote to {out}/: {', '.join(os.path.basename(p) for p in written)}")
  return 0


def _sweep_arguments(
  config: dict[str, Any], hyperparams: Any, mesh: Any, regression: bool
) -> dict[str, Any]:
  """What the options say of the sweep itself: ``fj.sweep``'s and ``fj.plan``'s arguments."""
  import flood_jax as fj
  from flood_jax import data as data_lib

  return dict(
    flood_levels=config["levels"],
    seeds=config["seeds"],
    optimizer=_optimizer(config),
    hyperparams=hyperparams or None,
    objective=config["objective"],
    augment=data_lib.random_crop_flip(padding=4) if config["augment"] else None,
    epochs=config["epochs"],
    batch_size=config["batch_size"],
    eval_every=config.get("eval_every"),
    chunk_size=config["chunk_size"],
    mesh=mesh,
    prune=fj.Halving(*config["prune"]) if config.get("prune") else None,
    pbt=fj.PBT(*config["pbt"]) if config.get("pbt") else None,
    memory_limit=config.get("memory_limit"),
    task=fj.Regression() if regression else None,
  )


def _dry_run(model: Any, data: Any, arguments: dict[str, Any], say: Any) -> int:
  """``--dry-run``: prints ``fj.plan`` for the sweep the options describe; trains nothing."""
  import flood_jax as fj

  try:
    plan = fj.plan(model, data, timed=True, **arguments)
  except (ValueError, TypeError) as err:
    raise UsageError(one_line(err)) from None
  say(plan)
  say("dry run: nothing trained or written")
  return 0


def _write_outputs(result: Any, out: str, plot: bool = True) -> list[str]:
  """results.json, params.npz, history.csv and the plots; returns their paths.

  No plots if every configuration diverged: they mark the best one.
  """
  from flood_jax import plots

  written: list[str] = []

  def write(name: str, fn: Any) -> None:
    try:
      written.append(os.fspath(fn()))
    except OSError as err:  # e.g. ENOSPC: said as one line, with what was written
      names = [os.path.basename(p) for p in written]
      raise _NotWritten(name, err.strerror or one_line(err), names) from None

  write("results.json", lambda: result.save(out, with_params=False))
  if result.final_params is not None:
    write("params.npz", lambda: save_params(result, out))
  write("history.csv", lambda: write_history_csv(result, os.path.join(out, "history.csv")))
  if plot and _has_best(result):
    for name, plot_fn in [
      ("curves", plots.plot_curves),
      ("accuracy_vs_level", plots.plot_accuracy_vs_level),
      ("flooded_fraction", plots.plot_flooded_fraction),
      ("overview", plots.plot_overview),
    ]:
      write(f"{name}.png", lambda p=plot_fn, n=name: p(result, os.path.join(out, f"{n}.png")))
  return written


class _NotWritten(Exception):
  """An output file that could not be written (``name``), why, and those written before it."""

  def __init__(self, name: str, reason: str, written: list[str]):
    super().__init__(f"could not write {name}: {reason}")
    self.name, self.reason, self.written = name, reason, written


def _swept_hyperparams(config: dict[str, Any]) -> dict[str, list[float]]:
  """The hyperparameter axes: ``{optax name: values}`` for each option given a list."""
  return {name: config[key] for key, name in _HYPERPARAMS.items() if isinstance(config[key], list)}


def _optimizer(config: dict[str, Any]):
  """The optimizer; with a grid of hyperparameters, ``optax.inject_hyperparams``'s.

  Without a grid the settings are compiled in. With one, the learning rate
  and the weight decay are injected hyperparameters, started at their first
  values; :func:`flood_jax.sweep` sets them per model. The weight decay is
  decoupled for adam (AdamW) and L2 for sgd (:data:`DECAY`).
  """
  from flood_jax._optimizers import optimizer

  start = {
    key: config[key][0] if isinstance(config[key], list) else config[key] for key in _HYPERPARAMS
  }
  return optimizer(
    config["optimizer"],
    start["lr"],
    decay=DECAY[config["optimizer"]],
    weight_decay=start["weight_decay"],
    momentum=config["momentum"] or None,
    inject=bool(_swept_hyperparams(config)),
  )


def _flooding_effect(result: Any) -> str | None:
  """One line comparing the best level with no flooding (b = 0), if both were swept.

  With a grid of hyperparameters, both at the best configuration's values.
  """
  import numpy as np

  if not _has_best(result):
    return None
  result = result.at_best_hyperparams()
  levels = np.asarray(result.flood_levels)
  best = result.best_flood_level
  if best == 0 or not np.any(levels == 0):
    return None
  i, j = result.index(best)[0], int(np.flatnonzero(levels == 0)[0])
  loss = result.history["test_loss"][..., -1].mean(axis=1)
  line = f"test loss {loss[i]:.4f} vs {loss[j]:.4f}"
  if result.selection != "loss":  # the selection metric first (classification: accuracy)
    value = result.history[f"test_{result.selection}"][..., -1].mean(axis=1)
    line = (
      f"final test {result.selection} {value[i]:.4f} vs {value[j]:.4f} without flooding, {line}"
    )
  else:
    line = f"final {line} without flooding"
  return f"at the best level, b = {best:g}: {line}"


def _test_loss_verdict(result: Any) -> str | None:
  """One line: at how many levels the final test loss is below b = 0's, and how surely.

  Paired by seed at the best configuration's hyperparameters; "surely" is a
  one-sided paired t-test at the 5% level. ``None`` without ``b = 0``, with
  one seed, or when every configuration diverged.
  """
  import numpy as np

  from flood_jax._result import paired_p

  if not _has_best(result) or len(result.seeds) < 2:
    return None
  result = result.at_best_hyperparams()
  levels = np.asarray(result.flood_levels)
  if not np.any(levels == 0) or len(levels) < 2:
    return None
  loss = np.asarray(result.history["test_loss"][..., -1], np.float64)  # (levels, seeds)
  diff = loss[levels != 0] - loss[levels == 0][0]
  lower = int(np.sum(diff.mean(axis=1) < 0))
  surely = sum(paired_p(-d[np.isfinite(d)]) < 0.05 for d in diff)
  n = len(diff)
  return (
    f"test loss vs b = 0: lower at {lower} of {n} levels, and by more than seed noise"
    f" (paired t-test over {len(result.seeds)} seeds, p < 0.05) at {surely} of {n}"
  )


def _has_best(result: Any) -> bool:
  """Whether the sweep has a best configuration (not every one diverged)."""
  try:
    result.best()
  except ValueError:
    return False
  return True


def _interrupted_message(
  config: dict[str, Any] | None, given: dict[str, Any], argv: Sequence[str]
) -> str:
  """What to print on Ctrl-C: how to resume, if there is anything to resume."""
  if config is None or not os.path.isdir(os.path.join(config["out"], "checkpoint")):
    return f"{PROG}: interrupted before the sweep started; nothing to resume"
  return (
    f"{PROG}: interrupted; progress is saved, to resume run: {_resume_command(config, given, argv)}"
  )


def _resume_command(
  config: dict[str, Any] | None, given: dict[str, Any], argv: Sequence[str]
) -> str:
  """The command line that resumes this sweep: the same one, with ``--out`` and ``--resume``."""
  words = [PROG, *argv]
  if "out" not in given and config is not None:
    words += ["--out", config["out"]]
  if "--resume" not in words:
    words.append("--resume")
  return shlex.join(words)


@contextlib.contextmanager
def _warnings_as_lines():
  """Prints the sweep's own warnings (at chance, a damaged checkpoint, a level that never
  floods) as one line each."""
  from flood_jax._chance import AtChanceWarning
  from flood_jax._sweep.checkpoint import CheckpointWarning
  from flood_jax._task import NeverFloodsWarning, NoGradientWarning

  ours = (AtChanceWarning, CheckpointWarning, NeverFloodsWarning, NoGradientWarning)
  with warnings.catch_warnings():
    for category in ours:
      warnings.simplefilter("always", category)
    show = warnings.showwarning

    def one_line(message, category, filename, lineno, file=None, line=None):
      if issubclass(category, ours):
        print(f"{PROG}: warning: {message}", file=sys.stderr, flush=True)
      else:
        show(message, category, filename, lineno, file, line)

    warnings.showwarning = one_line
    yield


def _untrained(checkpoint: str) -> bool:
  """Whether a checkpoint directory holds no training yet (only what is written before it)."""
  try:
    names = set(os.listdir(checkpoint))
  except OSError:
    return False
  return names <= {"command.json", "sweep.json", "sweep.json.tmp", "sweep.lock"}


# -- small helpers ----------------------------------------------------------------


def _datasets() -> tuple[str, ...]:
  from flood_jax.data import DATASETS

  return DATASETS


def _image_sets() -> tuple[str, ...]:
  from flood_jax.data import IMAGE_SETS

  return tuple(IMAGE_SETS)


def _models() -> tuple[str, ...]:
  from flood_jax.models import MODELS

  return tuple(MODELS)


def _describe_model(config: dict[str, Any]) -> str:
  details = [f"{k} {config[k]}" for k in ("hidden", "depth") if config[k] is not None]
  return config["model"] + (f" ({', '.join(details)})" if details else "")


def _describe_optimizer(config: dict[str, Any]) -> str:
  text = f"{config['optimizer']} lr {_g(config['lr'])}"
  if config["momentum"]:
    text += f" momentum {config['momentum']:g}"
  if config["weight_decay"]:
    text += f" weight decay {_g(config['weight_decay'])}"
  return text


def _describe_training(config: dict[str, Any]) -> str:
  """The objective and augmentation when not the defaults, e.g. ``", iflood"``."""
  text = f", {config['objective']}" if config["objective"] != DEFAULTS.objective else ""
  return text + (", random crops and flips" if config["augment"] else "")


def _describe_grid(config: dict[str, Any]) -> str:
  """The axes of the grid and their sizes, e.g. ``"2 levels x 3 lr x 2 seeds"``."""
  axes = [f"{len(config['levels'])} levels"]
  axes += [
    f"{len(config[key])} {key.replace('_', ' ')}"
    for key in _HYPERPARAMS
    if isinstance(config[key], list)
  ]
  return " x ".join([*axes, f"{len(config['seeds'])} seeds"])


def _show(value: Any) -> str:
  if isinstance(value, list):
    return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
  return str(value)


def _g(value: float | list[float]) -> str:
  """A number, or a comma list of them, in ``:g`` format."""
  values = value if isinstance(value, list) else [value]
  return ",".join(f"{v:g}" for v in values)


COMMAND = Command(
  help="train a grid of flood levels and seeds at once; print and save the results",
  description=DESCRIPTION,
  add_arguments=add_arguments,
  run=run,
)
