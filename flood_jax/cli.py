"""The ``flood-jax`` command line.

Subcommands live in :data:`COMMANDS`, a dict from name to a :class:`Command`
(its help, a function that adds its arguments to a parser, and a function
that runs it); adding a subcommand is adding an entry. ``flood-jax sweep``
trains a grid of flood levels and seeds with :func:`flood_jax.sweep`, prints
the table and writes results, curves and plots to ``--out``::

  flood-jax sweep                                  # MNIST-1D, the defaults
  flood-jax sweep --dataset spiral --label-noise 0.1 --levels 0:0.3:7 --out runs/spiral
  flood-jax sweep --out runs/spiral ... --resume   # after an interruption

Exit codes: 0 done, 2 bad arguments (one line on stderr), 130 interrupted.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import os
import shlex
import shutil
import sys
import textwrap
import time
from typing import Any, Callable, NoReturn, Optional, Sequence

PROG = "flood-jax"
_OPTIMIZERS = ("sgd", "adam")


@dataclasses.dataclass(frozen=True)
class SweepDefaults:
  """The defaults of ``flood-jax sweep``: MNIST-1D with the paper's MLP.

  Chosen so that ``flood-jax sweep`` alone finishes in about two minutes on
  an idle 2-core CPU (measured: 2 min 6 s) and shows what flooding does:
  without it the training loss goes to zero and the test loss climbs; with
  it the test loss comes down again.
  """

  dataset: str = "mnist1d"
  model: str = "mlp"
  hidden: int = 500  # MLP width (the paper's); --hidden sets the CNN's too.
  depth: int = 2  # MLP hidden layers.
  levels: tuple[float, ...] = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3)
  seeds: int = 2
  epochs: int = 150
  batch_size: int = 100
  optimizer: str = "sgd"
  sgd_lr: float = 0.1
  adam_lr: float = 1e-3
  momentum: float = 0.9
  weight_decay: float = 0.0
  label_noise: float = 0.0
  out_root: str = "runs"  # --out defaults to runs/sweep-DATASET-TIMESTAMP.


DEFAULTS = SweepDefaults()


@dataclasses.dataclass(frozen=True)
class Command:
  """A subcommand: its help, how to add its arguments, and how to run it.

  Attributes:
    help: one line for ``flood-jax --help``.
    description: the subcommand's ``--help`` text.
    add_arguments: adds the subcommand's arguments to its parser.
    run: runs it on the parsed arguments and the raw argument list (to print
      a command line back, e.g. how to resume); returns the exit code.
  """

  help: str
  description: str
  add_arguments: Callable[[argparse.ArgumentParser], None]
  run: Callable[[argparse.Namespace, Sequence[str]], int]


class UsageError(Exception):
  """Bad input from the user: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
  """An ``ArgumentParser`` whose errors are one line (and exit code 2)."""

  def error(self, message: str) -> NoReturn:
    self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def main(argv: Optional[Sequence[str]] = None) -> int:
  """Runs ``flood-jax`` with ``argv`` (default ``sys.argv[1:]``).

  Args:
    argv: the arguments after the program name.

  Returns:
    The exit code: 0 on success, 2 on bad arguments, 130 when interrupted.
  """
  argv = list(sys.argv[1:] if argv is None else argv)
  parser = build_parser()
  try:
    args = parser.parse_args(argv)
  except SystemExit as exit_:  # --help, or a usage error already printed
    return exit_.code if isinstance(exit_.code, int) else 2
  return COMMANDS[args.command].run(args, argv)


def build_parser() -> argparse.ArgumentParser:
  """The ``flood-jax`` parser with one subparser per entry of :data:`COMMANDS`."""
  parser = _Parser(
      prog=PROG,
      description="Flooding (Ishida et al., 2020) for JAX: train and compare flood levels.",
  )
  sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
  for name, command in COMMANDS.items():
    child = sub.add_parser(
        name, help=command.help, description=command.description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    command.add_arguments(child)
  return parser


# -- flood-jax sweep ----------------------------------------------------------

# Options recorded in the config (and compared on --resume), in order.
_CONFIG_KEYS = (
    "dataset", "model", "hidden", "depth", "levels", "seeds", "epochs",
    "batch_size", "optimizer", "lr", "momentum", "weight_decay", "label_noise",
    "chunk_size", "devices", "out",
)


def _format_levels(levels: Sequence[float]) -> str:
  return ",".join(f"{b:g}" for b in levels)


_SWEEP_DESCRIPTION = f"""\
Train one model per (flood level, seed) pair, all at once, and compare them.

Prints a table (per level: final and best validation accuracy, final test
accuracy, training and test loss, flooded fraction; mean ± std over seeds),
names the best level by validation accuracy, and writes to --out:
results.json (config, levels, seeds, best level, final metrics, per-epoch
history), history.csv (one row per level, seed and epoch), params.npz (the
trained parameters) and plots (curves.png, accuracy_vs_level.png,
flooded_fraction.png, overview.png). While it runs, progress is
checkpointed in OUT/checkpoint: after an interruption, run the same command
with --resume.

{textwrap.fill(
    f"Defaults: MNIST-1D and the paper's MLP ({DEFAULTS.hidden} wide, BatchNorm), with"
    f" {DEFAULTS.depth} hidden layers rather than the official code's 4 so that"
    f" it takes about two minutes on a 2-core CPU; levels"
    f" {_format_levels(DEFAULTS.levels)}; {DEFAULTS.seeds} seeds;"
    f" {DEFAULTS.epochs} epochs; batch size {DEFAULTS.batch_size}; SGD (lr"
    f" {DEFAULTS.sgd_lr:g}, momentum {DEFAULTS.momentum:g}).", width=79)}

examples:
  flood-jax sweep
  flood-jax sweep --dataset spiral --label-noise 0.1 --levels 0:0.3:7 --seeds 3 --out runs/spiral
  flood-jax sweep --out runs/spiral --resume
"""


def _add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
  """The options of ``flood-jax sweep``; a default of None means "see help"."""
  d = DEFAULTS
  data = parser.add_argument_group("data and model")
  data.add_argument(
      "--dataset", type=_name, metavar="NAME",
      help=f"data set, one of {', '.join(_datasets())} (default: {d.dataset})")
  data.add_argument(
      "--label-noise", type=_fraction, metavar="P",
      help="fraction of training and validation labels replaced by a wrong"
      f" class; the test set stays clean (default: {d.label_noise:g})")
  data.add_argument(
      "--model", type=_name, metavar="NAME",
      help=f"model, one of {', '.join(_models())} (default: {d.model})")
  data.add_argument(
      "--hidden", type=_positive_int, metavar="WIDTH",
      help=f"hidden width of the mlp or cnn (default: {d.hidden} for the mlp,"
      " the model's own for the cnn)")
  data.add_argument(
      "--depth", type=_positive_int, metavar="LAYERS",
      help=f"hidden layers of the mlp (default: {d.depth})")

  grid = parser.add_argument_group("sweep")
  grid.add_argument(
      "--levels", type=parse_levels, metavar="LEVELS",
      help="flood levels: START:STOP:COUNT (COUNT levels from START to STOP"
      " inclusive, like numpy.linspace) or a comma list such as 0,0.02,0.05"
      f" (default: {_format_levels(d.levels)})")
  grid.add_argument(
      "--seeds", type=parse_seeds, metavar="SEEDS",
      help="a count N (seeds 0..N-1) or a comma list such as 0,5,7"
      f" (default: {d.seeds})")
  grid.add_argument(
      "--epochs", type=_positive_int, metavar="N",
      help=f"training epochs per model (default: {d.epochs})")
  grid.add_argument(
      "--batch-size", type=_positive_int, metavar="B",
      help=f"mini-batch size (default: {d.batch_size})")

  opt = parser.add_argument_group("optimizer")
  opt.add_argument(
      "--optimizer", choices=_OPTIMIZERS, type=str.lower,
      help=f"sgd (with momentum) or adam (default: {d.optimizer})")
  opt.add_argument(
      "--lr", type=_positive_float, metavar="LR",
      help=f"learning rate (default: {d.sgd_lr:g} for sgd, {d.adam_lr:g} for adam)")
  opt.add_argument(
      "--momentum", type=_fraction, metavar="M",
      help=f"SGD momentum, sgd only (default: {d.momentum:g})")
  opt.add_argument(
      "--weight-decay", type=_non_negative_float, metavar="WD",
      help="decoupled weight decay: adamw for adam, add_decayed_weights before"
      f" sgd (default: {d.weight_decay:g})")

  run = parser.add_argument_group("running")
  run.add_argument(
      "--out", metavar="DIR",
      help="directory for results, plots and the checkpoint (default:"
      f" {d.out_root}/sweep-DATASET-YYYYmmdd-HHMMSS)")
  run.add_argument(
      "--resume", action="store_true",
      help="continue the interrupted sweep in --out from its checkpoint")
  run.add_argument(
      "--chunk-size", type=_positive_int, metavar="K",
      help="models trained together per device (default: chosen from the"
      " model's size and the platform)")
  run.add_argument(
      "--devices", type=_positive_int, metavar="N",
      help="devices to shard the sweep over; on a CPU, the number of XLA CPU"
      " devices to create, which must happen before JAX starts (default: all;"
      " on a CPU one per core)")
  run.add_argument(
      "--no-progress", action="store_true", help="do not show a progress bar")
  run.add_argument(
      "--no-plots", action="store_true",
      help="write results.json, history.csv and params.npz but no plots")


def _run_sweep(args: argparse.Namespace, argv: Sequence[str]) -> int:
  """``flood-jax sweep``: returns the exit code."""
  given = {k: getattr(args, k) for k in _CONFIG_KEYS if getattr(args, k) is not None}
  config: Optional[dict[str, Any]] = None
  try:
    config = _sweep_config(given, resume=args.resume)
    _request_cpu_devices(config["devices"] or _default_devices())
    return _sweep_and_write(config, args, argv)
  except UsageError as err:
    return _fail(str(err))
  except KeyboardInterrupt:
    print(_interrupted_message(config, given, argv), file=sys.stderr)
    return 130


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
    saved_path = os.path.join(out, "checkpoint", "command.json")
    if not os.path.exists(saved_path):
      finished = os.path.exists(os.path.join(out, "results.json"))
      raise UsageError(
          f"--resume: no checkpoint in {os.path.join(out, 'checkpoint')}"
          + ("; the sweep there has finished (results.json)" if finished else
             "; run without --resume to start a sweep")
      )
    with open(saved_path) as f:
      saved = json.load(f)["config"]
    changed = [
        f"--{k.replace('_', '-')} {_show(v)} (was {_show(saved.get(k))})"
        for k, v in given.items() if k != "out" and v != saved.get(k)
    ]
    if changed:
      raise UsageError(
          f"--resume: options differ from the interrupted sweep in {out}:"
          f" {'; '.join(changed)}; leave them out to resume, or choose another --out"
      )
    return dict(saved, out=out)
  return _resolve(given)


def _resolve(given: dict[str, Any]) -> dict[str, Any]:
  """Fills in defaults and checks that the options fit together."""
  d = DEFAULTS
  dataset = given.get("dataset", d.dataset)
  if dataset not in _datasets():
    raise UsageError(f"unknown data set {dataset!r}; known: {', '.join(_datasets())}")
  model = given.get("model", d.model)
  if model not in _models():
    raise UsageError(f"unknown model {model!r}; known: {', '.join(_models())}")
  if "depth" in given and model != "mlp":
    raise UsageError(f"--depth applies to --model mlp only, not {model}")
  if "hidden" in given and model not in ("mlp", "cnn"):
    raise UsageError(f"--hidden applies to --model mlp or cnn only, not {model}")
  optimizer = given.get("optimizer", d.optimizer)
  if "momentum" in given and optimizer != "sgd":
    raise UsageError("--momentum applies to --optimizer sgd only")
  out = given.get("out") or os.path.join(
      d.out_root, f"sweep-{dataset}-{time.strftime('%Y%m%d-%H%M%S')}")
  if os.path.exists(os.path.join(out, "checkpoint")):
    raise UsageError(
        f"{out} holds an interrupted sweep (checkpoint/); pass --resume to continue"
        " it, or choose another --out")
  if os.path.exists(os.path.join(out, "results.json")):
    raise UsageError(f"{out} already holds results (results.json); choose another --out")
  seeds = given.get("seeds", list(range(d.seeds)))
  return {
      "dataset": dataset,
      "model": model,
      "hidden": given.get("hidden", d.hidden if model == "mlp" else None),
      "depth": given.get("depth", d.depth) if model == "mlp" else None,
      "levels": list(given.get("levels", d.levels)),
      "seeds": seeds,
      "epochs": given.get("epochs", d.epochs),
      "batch_size": given.get("batch_size", d.batch_size),
      "optimizer": optimizer,
      "lr": given.get("lr", d.sgd_lr if optimizer == "sgd" else d.adam_lr),
      "momentum": given.get("momentum", d.momentum) if optimizer == "sgd" else None,
      "weight_decay": given.get("weight_decay", d.weight_decay),
      "label_noise": given.get("label_noise", d.label_noise),
      "chunk_size": given.get("chunk_size"),
      "devices": given.get("devices"),
      "out": out,
  }


def _sweep_and_write(config: dict[str, Any], args: argparse.Namespace,
                     argv: Sequence[str]) -> int:
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
  try:
    data = data_lib.load(config["dataset"], label_noise=config["label_noise"])
    kwargs = {k: config[k] for k in ("hidden", "depth") if config[k] is not None}
    model = models.get_model(config["model"], data.num_classes, **kwargs)
  except (ValueError, TypeError, ImportError) as err:
    raise UsageError(_one_line(err)) from None

  devices = jax.devices()
  num_models = len(config["levels"]) * len(config["seeds"])
  count = min(config["devices"] or len(devices), len(devices))
  mesh = Mesh(np.asarray(devices[:count]), ("models",))
  try:  # builds the model once: a model that does not fit the data fails here
    count_params(model, data)
  except (ValueError, TypeError) as err:
    raise UsageError(_one_line(err)) from None
  print(
      f"{PROG} sweep: {data.name} ({data.num_train} train, {len(data.y_val)} val,"
      f" {len(data.y_test)} test), {_describe_model(config)},"
      f" {_describe_optimizer(config)}; {len(config['levels'])} levels x"
      f" {len(config['seeds'])} seeds = {num_models} models, {config['epochs']}"
      f" epochs, batch size {config['batch_size']}; {count}"
      f" {devices[0].platform} device{'s' if count != 1 else ''}"
      + (f" (asked for {config['devices']}; JAX had already started with"
         f" {len(devices)})" if count < (config["devices"] or 0) and
         devices[0].platform == "cpu" else ""),
      flush=True,
  )
  try:
    os.makedirs(checkpoint, exist_ok=True)
  except OSError as err:
    raise UsageError(f"cannot write to --out {out}: {err.strerror}") from None
  if not args.resume:
    _write_json(os.path.join(checkpoint, "command.json"), {"config": config})
  try:
    result = fj.sweep(
        model, data, flood_levels=config["levels"], seeds=config["seeds"],
        optimizer=_optimizer(config), epochs=config["epochs"],
        batch_size=config["batch_size"], chunk_size=config["chunk_size"],
        mesh=mesh, checkpoint_dir=checkpoint, progress=not args.no_progress,
    )
  except (ValueError, TypeError) as err:
    if not args.resume:  # Bad input trained nothing: leave no checkpoint behind.
      shutil.rmtree(checkpoint, ignore_errors=True)
      _remove_if_empty(out)
    raise UsageError(_one_line(err)) from None

  print()
  print(result.summary())
  effect = _flooding_effect(result)
  if effect:
    print(effect)
  print(f"sweep time: {result.wall_time:.1f} s")
  command = shlex.join([PROG, *argv])
  result.config = {**result.config, "cli": config, "command": command}
  written = _write_outputs(result, out, plot=not args.no_plots)
  shutil.rmtree(checkpoint, ignore_errors=True)  # everything is in `out` now
  print(f"wrote to {out}/: {', '.join(os.path.basename(p) for p in written)}")
  return 0


def _write_outputs(result: Any, out: str, plot: bool = True) -> list[str]:
  """results.json, params.npz, history.csv and the plots; returns their paths."""
  from flood_jax import plots

  written = [result.save(out)]
  if os.path.exists(os.path.join(out, "params.npz")):
    written.append(os.path.join(out, "params.npz"))
  written.append(write_history_csv(result, os.path.join(out, "history.csv")))
  if not plot:
    return [os.fspath(p) for p in written]
  written.append(plots.plot_curves(result, os.path.join(out, "curves.png")))
  written.append(plots.plot_accuracy_vs_level(result, os.path.join(out, "accuracy_vs_level.png")))
  written.append(plots.plot_flooded_fraction(result, os.path.join(out, "flooded_fraction.png")))
  written.append(plots.plot_overview(result, os.path.join(out, "overview.png")))
  return [os.fspath(p) for p in written]


def write_history_csv(result: Any, path: str) -> str:
  """Writes the per-epoch history in long format: one row per level, seed, epoch.

  Columns: ``flood_level``, ``seed``, ``epoch`` (from 1), then one per metric
  of ``result.history``.

  Args:
    result: a :class:`flood_jax.SweepResult`.
    path: the CSV file to write.

  Returns:
    ``path``.
  """
  metrics = list(result.history)
  tmp = path + ".tmp"
  with open(tmp, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["flood_level", "seed", "epoch", *metrics])
    for i, level in enumerate(result.flood_levels):
      for j, seed in enumerate(result.seeds):
        for epoch in range(result.num_epochs):
          writer.writerow([
              f"{float(level):.6g}", int(seed), epoch + 1,
              *(repr(float(result.history[m][i, j, epoch])) for m in metrics),
          ])
  os.replace(tmp, path)
  return path


def _optimizer(config: dict[str, Any]):
  import optax

  lr, decay = config["lr"], config["weight_decay"]
  if config["optimizer"] == "adam":
    return optax.adamw(lr, weight_decay=decay) if decay else optax.adam(lr)
  sgd = optax.sgd(lr, momentum=config["momentum"] or None)
  return optax.chain(optax.add_decayed_weights(decay), sgd) if decay else sgd


def _flooding_effect(result: Any) -> Optional[str]:
  """One line comparing the best level with no flooding (b = 0), if both were swept."""
  import numpy as np

  levels = np.asarray(result.flood_levels)
  best = result.best_flood_level
  if best == 0 or not np.any(levels == 0):
    return None
  i, j = int(np.flatnonzero(levels == best)[0]), int(np.flatnonzero(levels == 0)[0])
  acc = result.history["test_accuracy"][..., -1].mean(axis=1)
  loss = result.history["test_loss"][..., -1].mean(axis=1)
  return (
      f"at the best level, b = {best:g}: final test accuracy {acc[i]:.4f} vs"
      f" {acc[j]:.4f} without flooding, test loss {loss[i]:.4f} vs {loss[j]:.4f}"
  )


def _interrupted_message(config: Optional[dict[str, Any]], given: dict[str, Any],
                         argv: Sequence[str]) -> str:
  if config is None or not os.path.isdir(os.path.join(config["out"], "checkpoint")):
    return f"{PROG}: interrupted before the sweep started; nothing to resume"
  words = [PROG, *argv]
  if "out" not in given:
    words += ["--out", config["out"]]
  if "--resume" not in words:
    words.append("--resume")
  return f"{PROG}: interrupted; progress is saved, to resume run: {shlex.join(words)}"


def _request_cpu_devices(count: int) -> None:
  """Asks XLA for ``count`` CPU devices, if JAX has not started and nothing else did.

  Leaves alone an ``XLA_FLAGS`` that already sets the device count, a
  ``JAX_PLATFORMS`` naming another platform and ``jax_num_cpu_devices``;
  after JAX's backend started it would have no effect, so it is skipped.
  """
  flags = os.environ.get("XLA_FLAGS", "")
  if "xla_force_host_platform_device_count" in flags:
    return
  platforms = [p.strip() for p in os.environ.get("JAX_PLATFORMS", "").split(",") if p.strip()]
  if any(p != "cpu" for p in platforms):
    return
  import jax

  if jax.config.jax_num_cpu_devices >= 0 or _backend_started():
    return
  os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={count}".strip()


def _backend_started() -> bool:
  try:
    from jax._src import xla_bridge  # Not public; no public check exists.

    return bool(xla_bridge.backends_are_initialized())
  except (ImportError, AttributeError):
    return False


def _default_devices() -> int:
  """The CPU cores this process may use."""
  if hasattr(os, "process_cpu_count"):
    return os.process_cpu_count() or 1
  if hasattr(os, "sched_getaffinity"):
    return len(os.sched_getaffinity(0)) or 1
  return os.cpu_count() or 1


# -- argument types -------------------------------------------------------------


def parse_levels(text: str) -> list[float]:
  """Parses ``--levels``: ``START:STOP:COUNT`` (inclusive) or a comma list.

  Args:
    text: e.g. ``"0:0.2:21"`` or ``"0,0.02,0.05"``.

  Returns:
    The levels, each ``>= 0``, distinct, in the order given.

  Raises:
    argparse.ArgumentTypeError: malformed, negative, not finite or repeated.

  Examples:
    >>> parse_levels("0:0.1:3")
    [0.0, 0.05, 0.1]
    >>> parse_levels("0, 0.02")
    [0.0, 0.02]
  """
  usage = "use START:STOP:COUNT such as 0:0.2:21, or a comma list such as 0,0.02,0.05"
  try:
    if ":" in text:
      start, stop, count = text.split(":")
      start, stop, count = float(start), float(stop), int(count)
      if count < 1:
        raise argparse.ArgumentTypeError(f"COUNT in {text!r} must be at least 1")
      step = 0.0 if count == 1 else (stop - start) / (count - 1)
      levels = [start + k * step for k in range(count)]
      levels[-1] = stop if count > 1 else start
    else:
      levels = [float(part) for part in text.split(",") if part.strip()]
  except ValueError:
    raise argparse.ArgumentTypeError(f"malformed levels {text!r}; {usage}") from None
  if not levels:
    raise argparse.ArgumentTypeError(f"no levels in {text!r}; {usage}")
  levels = [round(b, 12) + 0.0 for b in levels]  # 0.30000000000000004 -> 0.3
  for level in levels:
    if not math.isfinite(level) or level < 0:
      raise argparse.ArgumentTypeError(
          f"flood levels must be finite and >= 0 (b = 0 is no flooding), got {level:g}")
  if len(set(levels)) != len(levels):
    raise argparse.ArgumentTypeError(f"flood levels must be distinct, got {text!r}")
  return levels


def parse_seeds(text: str) -> list[int]:
  """Parses ``--seeds``: a count ``N`` (seeds ``0..N-1``) or a comma list.

  Args:
    text: e.g. ``"3"`` or ``"0,5,7"``.

  Returns:
    The seeds, distinct non-negative integers.

  Raises:
    argparse.ArgumentTypeError: malformed, negative or repeated seeds.

  Examples:
    >>> parse_seeds("3")
    [0, 1, 2]
    >>> parse_seeds("4,2")
    [4, 2]
  """
  try:
    if "," in text:
      seeds = [int(part) for part in text.split(",") if part.strip()]
    else:
      count = int(text)
      if count < 1:
        raise argparse.ArgumentTypeError(f"the seed count must be at least 1, got {count}")
      seeds = list(range(count))
  except ValueError:
    raise argparse.ArgumentTypeError(
        f"malformed seeds {text!r}; give a count such as 3 or a comma list such as 0,5,7"
    ) from None
  if not seeds or any(s < 0 or s >= 2**31 for s in seeds):
    raise argparse.ArgumentTypeError(f"seeds must be integers in [0, 2**31), got {text!r}")
  if len(set(seeds)) != len(seeds):
    raise argparse.ArgumentTypeError(f"seeds must be distinct, got {text!r}")
  return seeds


def _name(text: str) -> str:
  return text.strip().lower().replace("-", "_")


def _positive_int(text: str) -> int:
  try:
    value = int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
  if value < 1:
    raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
  return value


def _float(text: str) -> float:
  try:
    value = float(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
  if not math.isfinite(value):
    raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
  return value


def _positive_float(text: str) -> float:
  value = _float(text)
  if value <= 0:
    raise argparse.ArgumentTypeError(f"expected a number > 0, got {value:g}")
  return value


def _non_negative_float(text: str) -> float:
  value = _float(text)
  if value < 0:
    raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value:g}")
  return value


def _fraction(text: str) -> float:
  value = _float(text)
  if not 0 <= value < 1:
    raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {value:g}")
  return value


# -- small helpers ----------------------------------------------------------------


def _datasets() -> tuple[str, ...]:
  from flood_jax.data import DATASETS

  return DATASETS


def _models() -> tuple[str, ...]:
  from flood_jax.models import MODELS

  return tuple(MODELS)


def _describe_model(config: dict[str, Any]) -> str:
  details = [f"{k} {config[k]}" for k in ("hidden", "depth") if config[k] is not None]
  return config["model"] + (f" ({', '.join(details)})" if details else "")


def _describe_optimizer(config: dict[str, Any]) -> str:
  text = f"{config['optimizer']} lr {config['lr']:g}"
  if config["momentum"]:
    text += f" momentum {config['momentum']:g}"
  if config["weight_decay"]:
    text += f" weight decay {config['weight_decay']:g}"
  return text


def _show(value: Any) -> str:
  if isinstance(value, list):
    return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
  return str(value)


def _one_line(err: BaseException) -> str:
  lines = str(err).strip().splitlines()
  return lines[0] if lines else type(err).__name__


def _fail(message: str) -> int:
  print(f"{PROG}: error: {message}", file=sys.stderr)
  return 2


def _remove_if_empty(directory: str) -> None:
  try:
    os.rmdir(directory)
  except OSError:
    pass  # not empty, or gone


def _write_json(path: str, value: Any) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(value, f, indent=1)
  os.replace(tmp, path)


# -- flood-jax reproduce --------------------------------------------------------

_REPRODUCE_DESCRIPTION = textwrap.dedent("""\
    Reproduce the flooding paper's findings and write a Markdown table, JSON
    and figures to --out (default runs/reproduce-PROTOCOL):

      synthetic   two Gaussians, sinusoid, spiral; the paper's MLP (4 x 500,
                  BatchNorm); SGD and Adam; --preset paper: label noise
                  0/0.01/0.05/0.1, flood levels 0.00 to 0.50 by 0.01, 5 seeds,
                  500 epochs; --preset cpu (default): a 30-minute cut
      mnist1d     the same analysis on MNIST-1D (built in, offline)
      digits      ... on scikit-learn's digits (built in, offline)
      benchmark   the paper's image benchmarks (--dataset mnist, cifar10, ...):
                  needs pip install "flood_jax[datasets]", a network once, and
                  in practice an accelerator

    The flood level is chosen per seed by validation accuracy (with and
    without early stopping); a one-sided paired t-test across seeds says
    whether flooding raised test accuracy. Options left out keep the
    protocol's defaults; smaller values fit a time budget. An interrupted run
    resumes when the same command is run again.""")

_PROTOCOLS = ("synthetic", "mnist1d", "digits", "benchmark")


def _add_reproduce_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("protocol", choices=_PROTOCOLS, help="what to reproduce")
  parser.add_argument("--preset", choices=("cpu", "paper"), default="cpu",
                      help="synthetic: 'paper' is the paper's protocol (about 80 h on a"
                      " 2-core CPU); 'cpu' (default) cuts it to about 30 min: noise"
                      " 0.01/0.05/0.1, levels 0 to 0.5 by 0.05, 5 seeds, 100 epochs,"
                      " 1,000 test examples. Options given explicitly override it.")
  parser.add_argument("--dataset", type=_name, help="benchmark: mnist, fashion_mnist,"
                      " kmnist, cifar10, cifar100 or svhn; synthetic: a comma list")
  parser.add_argument("--out", help="output directory (default runs/reproduce-PROTOCOL)")
  parser.add_argument("--levels", type=parse_levels, help="flood levels (0 is added)")
  parser.add_argument("--seeds", type=_positive_int, help="number of seeds")
  parser.add_argument("--epochs", type=_positive_int, help="epochs per model")
  parser.add_argument("--noise", type=_fraction_list, help="label noise rates, comma list")
  parser.add_argument("--optimizers", type=_optimizer_list, help="sgd,adam or one of them")
  parser.add_argument("--n-test", type=_positive_int, help="synthetic: test examples")
  parser.add_argument("--hidden", type=_positive_int, help="MLP width")
  parser.add_argument("--depth", type=_positive_int, help="MLP hidden layers")
  parser.add_argument("--devices", type=_positive_int,
                      help="CPU only: XLA devices (default one per core)")
  parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _run_reproduce(args: argparse.Namespace, argv: Sequence[str]) -> int:
  """``flood-jax reproduce``: returns the exit code."""
  try:
    _request_cpu_devices(args.devices or _default_devices())
    from flood_jax import reproduce

    out = args.out or os.path.join(DEFAULTS.out_root, f"reproduce-{args.protocol}")
    options: dict[str, Any] = {"progress": not args.no_progress}
    for key, name in [("levels", "flood_levels"), ("seeds", "seeds"), ("epochs", "epochs"),
                      ("hidden", "hidden"), ("depth", "depth")]:
      if getattr(args, key) is not None:
        options[name] = getattr(args, key)
    if args.protocol != "synthetic" and args.preset != "cpu":
      raise UsageError("--preset applies to reproduce synthetic only")
    if args.protocol == "benchmark":
      if args.dataset is None:
        raise UsageError("reproduce benchmark needs --dataset (mnist, fashion_mnist,"
                         " kmnist, cifar10, cifar100 or svhn)")
      for key in ("noise", "n_test"):
        if getattr(args, key) is not None:
          raise UsageError(f"--{key.replace('_', '-')} does not apply to reproduce benchmark")
      model_options = {k: options.pop(k) for k in ("hidden", "depth") if k in options}
      if args.optimizers:
        if len(args.optimizers) != 1:
          raise UsageError("reproduce benchmark takes one optimizer")
        options["optimizer"] = args.optimizers[0]
      start = time.perf_counter()
      comparisons = reproduce.benchmark(out, dataset=args.dataset,
                                        model_options=model_options or None, **options)
    else:
      if args.noise is not None:
        options["noise_rates"] = args.noise
      if args.optimizers is not None:
        options["optimizers"] = args.optimizers
      if args.protocol == "synthetic":
        options = {**reproduce.PRESETS[args.preset], **options}
        if args.dataset is not None:
          options["datasets"] = tuple(args.dataset.split(","))
        if args.n_test is not None:
          options["n_test"] = args.n_test
        run = reproduce.synthetic
      else:
        if args.dataset is not None or args.n_test is not None:
          raise UsageError(f"--dataset and --n-test do not apply to reproduce {args.protocol}")
        options["datasets"] = (args.protocol,)
        run = reproduce.builtin
      start = time.perf_counter()
      comparisons = run(out, **options)
    print()
    print(reproduce.markdown_table(comparisons))
    print(f"\nwall time: {time.perf_counter() - start:.0f} s; wrote the table, reproduce.json"
          f" and figures to {out}/")
    return 0
  except UsageError as err:
    return _fail(str(err))
  except (ValueError, TypeError, ImportError) as err:
    return _fail(_one_line(err))
  except KeyboardInterrupt:
    command = shlex.join([PROG] + list(argv))
    print(f"\n{PROG}: interrupted; finished settings and the current sweep's checkpoint"
          f" are kept: run `{command}` again to resume.", file=sys.stderr)
    return 130


def _fraction_list(text: str) -> tuple[float, ...]:
  return tuple(_fraction(v) for v in text.split(","))


def _optimizer_list(text: str) -> tuple[str, ...]:
  names = tuple(v.strip().lower() for v in text.split(","))
  unknown = [n for n in names if n not in _OPTIMIZERS]
  if unknown:
    raise argparse.ArgumentTypeError(
        f"unknown optimizer {unknown[0]!r}; use {', '.join(_OPTIMIZERS)}")
  return names


COMMANDS: dict[str, Command] = {
    "sweep": Command(
        help="train a grid of flood levels and seeds at once; print and save the results",
        description=_SWEEP_DESCRIPTION,
        add_arguments=_add_sweep_arguments,
        run=_run_sweep,
    ),
    "reproduce": Command(
        help="reproduce the paper's findings: tables with paired tests, and figures",
        description=_REPRODUCE_DESCRIPTION,
        add_arguments=_add_reproduce_arguments,
        run=_run_reproduce,
    ),
}
"""The subcommands by name; a new subcommand is a new entry."""
