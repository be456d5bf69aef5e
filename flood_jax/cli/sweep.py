"""``flood-jax sweep``: train a grid of flood levels and seeds with
:func:`flood_jax.sweep`, print the table and write results, curves and plots
to ``--out``::

  flood-jax sweep                                  # MNIST-1D, the defaults
  flood-jax sweep --dataset spiral --label-noise 0.1 --levels 0:0.3:7 --out runs/spiral
  flood-jax sweep --out runs/spiral ... --resume   # after an interruption
  flood-jax sweep --dataset spiral --lr 0.03,0.1,0.3 --objective iflood

The command's modules:

- ``sweep_config``: :class:`~flood_jax.cli.sweep_config.SweepConfig`, the
  settings (one field per option, its ``--help`` included), their checks, and
  ``fj.sweep``'s arguments;
- ``sweep_parser``: the parser, built from the config's fields;
- ``sweep_options``: the options given, checked and resolved into a config, or
  compared with the interrupted sweep's on ``--resume`` (``OUT/checkpoint/command.json``);
- ``sweep_report``: the lines it prints about the sweep and the files it writes;
- this module: the run itself (:func:`run`).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import shlex
import shutil
import sys
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from flood_jax._checks import claim_directory, release_directory
from flood_jax._result_io import write_history_csv
from flood_jax._sweep.checkpoint import CheckpointError, CheckpointSaveError
from flood_jax.cli import hosts as hosts_cli
from flood_jax.cli import tracking as tracking_cli
from flood_jax.cli.common import (
  PROG,
  Command,
  UsageError,
  default_devices,
  fail,
  one_line,
  request_cpu_devices,
  use_compile_cache,
)
from flood_jax.cli.sweep_config import DEFAULTS, FIELDS, SweepConfig, SweepDefaults
from flood_jax.cli.sweep_options import given_options, save_config, sweep_config
from flood_jax.cli.sweep_parser import DESCRIPTION, add_arguments
from flood_jax.cli.sweep_report import (
  NotWritten,
  describe,
  flooding_effect,
  loss_verdict,
  write_outputs,
)

__all__ = ["COMMAND", "CONFIG_KEYS", "DEFAULTS", "SweepDefaults", "run", "write_history_csv"]

CONFIG_KEYS = tuple(FIELDS)
"""The keys of the config in ``command.json`` and ``results.json``: the fields of
:class:`~flood_jax.cli.sweep_config.SweepConfig`, in order."""


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
  """``flood-jax sweep``: returns the exit code."""
  given = given_options(args)
  config: SweepConfig | None = None
  try:
    if hosts_cli.requested(args) and "out" not in given:
      raise UsageError(
        "several processes write to one directory: give --out DIR,"
        " the same on every host (shared storage)"
      )
    config = sweep_config(given, resume=args.resume)
    request_cpu_devices(config.devices or default_devices())
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
      release_directory(config.out)
    return fail(str(err))
  except KeyboardInterrupt:
    print(_interrupted_message(config, given, argv), file=sys.stderr)
    return 130


def _sweep_and_write(config: SweepConfig, args: argparse.Namespace, argv: Sequence[str]) -> int:
  """Loads the data, runs the sweep, prints the table and writes the files."""
  import jax

  processes = jax.process_count()
  main = jax.process_index() == 0  # process 0 alone prints and writes
  say = print if main else (lambda *a, **k: None)
  data, model, loggers = _load(config, args, main)
  mesh = _mesh(config, processes)
  say(_headline(config, data, mesh, processes), flush=True)
  if config.stream:
    try:
      data = _streamed(data)
    except ImportError as err:
      raise UsageError(one_line(err)) from None
  if args.dry_run:
    return _dry_run(model, data, config.sweep_arguments(mesh), say)
  result = _train(config, args, (model, data, mesh, loggers), main, processes)
  if isinstance(result, int):
    return result
  if not main:
    return 0
  return _report(result, config, args, argv)


def _load(config: SweepConfig, args: argparse.Namespace, main: bool) -> tuple[Any, Any, list[Any]]:
  """The data set, the model (checked against the data) and the trackers; claims ``--out``."""
  import numpy as np

  from flood_jax import data as data_lib
  from flood_jax import models
  from flood_jax._sweep import count_params

  try:
    local: dict[str, Any] = {"data_dir": config.data_dir} if config.data_dir else {}
    if not config.regression:
      local["label_noise"] = config.label_noise
    data = data_lib.load(config.dataset, **local)
    kwargs = {k: getattr(config, k) for k in ("hidden", "depth") if getattr(config, k) is not None}
    # A regression's model has one output per target value.
    regression = config.regression
    outputs = int(np.prod(np.shape(data.y_train)[1:])) if regression else data.num_classes
    assert outputs is not None  # Dataset infers num_classes for integer labels
    model = models.get_model(config.model, outputs, **kwargs)
    checkpoint = os.path.join(config.out, "checkpoint")
    if not args.dry_run and main:  # the first file written into --out: its marker
      claim_directory("--out", config.out, f"{PROG} sweep", ours=args.resume)
    if args.resume:
      tracking_cli.check_state(checkpoint)
    loggers = tracking_cli.make_loggers(config.log, config.log_dir or config.out)
  except (ValueError, TypeError, ImportError, ConnectionError) as err:
    raise UsageError(one_line(err)) from None
  try:  # builds the model once: a model that does not fit the data fails here
    count_params(model, data)
  except (ValueError, TypeError) as err:
    raise UsageError(one_line(err)) from None
  return data, model, loggers


def _mesh(config: SweepConfig, processes: int) -> Any:
  """The devices to shard over: ``--devices`` of them (with several processes, all)."""
  import jax
  import numpy as np
  from jax.sharding import Mesh

  devices = jax.devices()
  count = min(config.devices or len(devices), len(devices))
  if processes > 1:  # --devices counts each process's; the sweep spans all
    count = len(devices)
  return Mesh(np.asarray(devices[:count]), ("models",))


def _headline(config: SweepConfig, data: Any, mesh: Any, processes: int) -> str:
  """The line that says what is swept, on what, and how many models."""
  import jax

  devices = jax.devices()
  count = mesh.devices.size
  num_models = math.prod(
    [len(config.levels), len(config.seeds), *(len(v) for v in config.swept_hyperparams.values())]
  )
  return (
    f"{PROG} sweep: {data.name} ({data.num_train} train, {len(data.y_val)} val,"
    f" {len(data.y_test)} test), {describe(config)} = {num_models} models, {config.epochs}"
    f" epochs, batch size {config.batch_size}; {count}"
    f" {devices[0].platform} device{'s' if count != 1 else ''}"
    + (f" on {processes} processes" if processes > 1 else "")
    + (
      f" (asked for {config.devices}; JAX had already started with {len(devices)})"
      if count < (config.devices or 0) and devices[0].platform == "cpu"
      else ""
    )
  )


def _streamed(data: Any) -> Any:
  import flood_jax as fj

  return fj.Stream.from_dataset(data)


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


def _train(
  config: SweepConfig,
  args: argparse.Namespace,
  job: tuple[Any, Any, Any, list[Any]],
  main: bool,
  processes: int,
) -> Any:
  """Runs ``fj.sweep``, checkpointed in ``OUT/checkpoint``: its result, or an exit code."""
  import flood_jax as fj

  model, data, mesh, loggers = job
  checkpoint = os.path.join(config.out, "checkpoint")
  created = not os.path.exists(checkpoint)  # only this run's own may be cleaned up
  try:
    os.makedirs(checkpoint, exist_ok=True)
  except OSError as err:
    raise UsageError(f"cannot write to --out {config.out}: {err.strerror}") from None
  if not args.resume and main:
    save_config(config, checkpoint)
  try:
    with _warnings_as_lines():
      return fj.sweep(
        model,
        data,
        **config.sweep_arguments(mesh),
        checkpoint_dir=checkpoint,
        progress=not args.no_progress,
        loggers=loggers,
      )
  except (ValueError, TypeError) as err:
    # Bad input trained nothing: leave no checkpoint behind, but never one
    # that holds training (a ValueError need not be bad input).
    if created and main and _untrained(checkpoint):
      shutil.rmtree(checkpoint, ignore_errors=True)
      release_directory(config.out)
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


def _report(result: Any, config: SweepConfig, args: argparse.Namespace, argv: Sequence[str]) -> int:
  """Prints the table and its verdicts, writes the files and removes the checkpoint."""
  out = config.out
  print()
  print(result.summary())
  for line in (flooding_effect(result), loss_verdict(result)):
    if line:
      print(line)
  print(f"sweep time: {result.wall_time:.1f} s")
  command = shlex.join([PROG, *argv])
  result.config = {**result.config, "cli": config.to_json(), "command": command}
  try:
    written = write_outputs(result, out, plot=not args.no_plots)
  except NotWritten as err:  # e.g. a full disk: the checkpoint keeps the whole sweep
    done = f" ({', '.join(err.written)} written)" if err.written else ""
    print(
      f"{PROG}: error: could not write {err.name} to {out}: {err.reason}{done}; nothing else"
      f" is lost, the trained sweep stays in {os.path.join(out, 'checkpoint')}: free space"
      f" (or make {out} writable), then run:"
      f" {_resume_command(config, given_options(args), argv)}",
      file=sys.stderr,
    )
    return 1
  shutil.rmtree(os.path.join(out, "checkpoint"), ignore_errors=True)  # all is in `out` now
  print(f"wrote to {out}/: {', '.join(os.path.basename(p) for p in written)}")
  return 0


def _interrupted_message(
  config: SweepConfig | None, given: Mapping[str, Any], argv: Sequence[str]
) -> str:
  """What to print on Ctrl-C: how to resume, if there is anything to resume."""
  if config is None or not os.path.isdir(os.path.join(config.out, "checkpoint")):
    return f"{PROG}: interrupted before the sweep started; nothing to resume"
  return (
    f"{PROG}: interrupted; progress is saved, to resume run: {_resume_command(config, given, argv)}"
  )


def _resume_command(
  config: SweepConfig | None, given: Mapping[str, Any], argv: Sequence[str]
) -> str:
  """The command line that resumes this sweep: the same one, with ``--out`` and ``--resume``."""
  words = [PROG, *argv]
  if "out" not in given and config is not None:
    words += ["--out", config.out]
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


COMMAND = Command(
  help="train a grid of flood levels and seeds at once; print and save the results",
  description=DESCRIPTION,
  add_arguments=add_arguments,
  run=run,
)
