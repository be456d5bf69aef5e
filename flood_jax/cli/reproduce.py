"""``flood-jax reproduce``: the flooding paper's findings, via
:mod:`flood_jax.reproduce` (which does the work; this module turns options
into its arguments)."""

from __future__ import annotations

import argparse
import dataclasses
import glob
import os
import shlex
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from typing import Any

from flood_jax._checks import NotWrittenError, release_directory
from flood_jax._sweep.checkpoint import CheckpointError, CheckpointSaveError
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
from flood_jax.cli.reproduce_config import ReproduceConfig

DESCRIPTION = textwrap.dedent("""\
    Reproduce the flooding paper's findings and write a Markdown table, JSON
    and figures to --out (default runs/reproduce-PROTOCOL):

      synthetic   two Gaussians, sinusoid, spiral; the paper's MLP (4 x 500,
                  BatchNorm); SGD and Adam; --preset paper: label noise
                  0/0.01/0.05/0.1, flood levels 0.00 to 0.50 by 0.01, 5 seeds,
                  500 epochs; --preset cpu (default): a 30-minute cut
      mnist1d     the same analysis on MNIST-1D (built in, offline)
      digits      ... on scikit-learn's digits (built in, offline)
      adaflood    flooding vs iFlood vs AdaFlood (per-example levels from
                  held-out fold models) on the synthetic sets with label noise
                  0.05/0.1, Adam, 5 seeds, 100 epochs (8 min 56 s measured
                  alone on a 2-core CPU, REPRODUCTION.md section 4); --dataset
                  mnist1d for MNIST-1D
      benchmark   the paper's image benchmarks (--dataset mnist, cifar10, ...),
                  from the original files in --data-dir DIR (the paper's 80:20
                  split; no network) or else from the Hugging Face Hub
                  (pip install "flood_jax[datasets]", a network once): with
                  and without weight decay 1e-5, Adam, batch size 200;
                  --preset paper: flood levels 0.00 to 0.10 by 0.01, 3 seeds,
                  500 epochs (an accelerator's job); --preset cpu (default):
                  levels 0/0.01/0.02/0.05/0.1, 4 seeds, 20 epochs, all of
                  the data (MNIST's MLP: about 30 min estimated on an idle
                  2-core CPU; 53 min measured per weight decay on a heavily
                  shared one)
      pbt         population-based training of the flood level (--pbt
                  INTERVAL[,FRACTION], default epochs/5 and 0.25) against the
                  grid's chosen level and successive halving (--prune,
                  default 12% of the epochs, 2, trend), each chosen per seed
                  by final validation accuracy, by test accuracy and test
                  loss paired over seeds, with each method's model-epochs:
                  the synthetic sets at label noise 0.1, Adam, levels 0 to
                  0.5 by 0.1, 5 seeds, 40 epochs evaluated every 4th, 500
                  test examples (5 min measured on a shared 2-core CPU);
                  --dataset mnist1d for MNIST-1D (REPRODUCTION.md, "PBT")

    Weight decay: synthetic, mnist1d, digits, adaflood and pbt use none; benchmark's
    1e-5 is L2, added to the gradient before Adam (torch.optim.Adam's
    weight_decay), not AdamW's decoupled decay, which is what flood-jax sweep
    --optimizer adam --weight-decay builds.

    The flood level is chosen per seed by validation accuracy (with and
    without early stopping); a one-sided paired t-test across seeds says
    whether flooding raised test accuracy. Options left out keep the
    protocol's defaults; smaller values fit a time budget. Every finished
    setting is kept in OUT/runs/SETTING/ and the sweep in progress is
    checkpointed in OUT/checkpoints/: an interrupted run resumes when the same
    command is run again (a finished setting is reused only for the arguments
    it was trained with). --out is a new or empty folder, or one this protocol
    wrote: never the user's own files.""")


def add_arguments(parser: argparse.ArgumentParser) -> None:
  """The options of ``flood-jax reproduce``: one per field of :class:`ReproduceConfig`."""
  added: list[Callable[[Any], None]] = []
  for option in dataclasses.fields(ReproduceConfig):
    options = dict(option.metadata)
    options.pop("argument", None)  # the protocol's, not argparse's
    if "added_by" in options:  # an option shared with flood-jax sweep
      if options["added_by"] not in added:
        added.append(options["added_by"])
        options["added_by"](parser)
      continue
    if options.pop("positional", False):
      parser.add_argument(option.name, **options)
    else:
      if option.default not in (None, dataclasses.MISSING):
        options["default"] = option.default
      parser.add_argument("--" + option.name.replace("_", "-"), **options)


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
  """``flood-jax reproduce``: returns the exit code."""
  config = ReproduceConfig.from_args(args)
  try:
    return _run(config, argv)
  finally:  # a run that wrote nothing (bad input) leaves no folder behind
    release_directory(config.out_dir)


def _run(config: ReproduceConfig, argv: Sequence[str]) -> int:
  """:func:`_reproduce`, its failures as one line and an exit code."""
  try:
    return _reproduce(config)
  except UsageError as err:
    return fail(str(err))
  except NotWrittenError as err:  # e.g. a full disk
    print(f"{PROG}: error: {err.strerror}", file=sys.stderr)
    return 1
  except CheckpointSaveError as err:
    print(
      f"{PROG}: error: saving the checkpoint failed ({err.cause}); {err.kept} kept in"
      f" {err.directory}; free space there (or make it writable), then run"
      f" `{shlex.join([PROG, *list(argv)])}` again to resume",
      file=sys.stderr,
    )
    return 1
  except (ValueError, TypeError, ImportError, ConnectionError, CheckpointError) as err:
    return fail(one_line(err))
  except KeyboardInterrupt:
    command = shlex.join([PROG, *list(argv)])
    print(
      f"\n{PROG}: interrupted; finished settings and the current sweep's checkpoint"
      f" are kept: run `{command}` again to resume.",
      file=sys.stderr,
    )
    return 130


def _reproduce(config: ReproduceConfig) -> int:
  """Checks the options and ``--out``, runs the protocol, prints its tables."""
  out = config.out_dir
  request_cpu_devices(config.devices or default_devices())
  use_compile_cache(config)
  # JAX starts with this import, so only once the XLA devices are set.
  from flood_jax import reproduce

  config.check()
  # --out is the user's only if new, empty or this protocol's: checked (and marked)
  # before anything is written into it.
  reproduce.claim_out(out, config.output_name, "--out")
  for path in glob.glob(os.path.join(glob.escape(out), "checkpoints", "**"), recursive=True):
    tracking_cli.check_state(path)  # the trackers' run ids of a sweep in progress
  loggers = None
  if config.log:
    log, log_dir = config.log, config.log_dir or out
    tracking_cli.make_loggers(log, log_dir)  # the extra is there: fail now, not later
    loggers = lambda name: tracking_cli.make_loggers(log, log_dir, group=name)
  start = time.perf_counter()
  results = config.function(reproduce)(out, **config.protocol_arguments(reproduce, loggers))
  _print_tables(reproduce, config.protocol, results)
  wrote = {
    "adaflood": "the tables and reproduce.json",
    "pbt": "pbt_table.md and reproduce.json",
  }.get(config.protocol, "the table, reproduce.json and figures")
  print(f"\nwall time: {time.perf_counter() - start:.0f} s; wrote {wrote} to {out}/")
  return 0


def _print_tables(reproduce: Any, protocol: str, results: list[Any]) -> None:
  """The protocol's tables, as it wrote them."""
  if protocol == "adaflood":
    print("\nLast epoch:\n\n" + reproduce.methods_table(results))
    print("\nEarly stopping:\n\n" + reproduce.methods_table(results, early_stopping=True))
  elif protocol == "pbt":
    print("\nTest accuracy (%):\n\n" + reproduce.pbt_table(results))
    print("\nTest loss:\n\n" + reproduce.pbt_table(results, "loss"))
  else:
    print()
    print(reproduce.markdown_table(results))


COMMAND = Command(
  help="reproduce the paper's findings: tables with paired tests, and figures",
  description=DESCRIPTION,
  add_arguments=add_arguments,
  run=run,
)
