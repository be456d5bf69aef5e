"""``flood-jax reproduce``: the flooding paper's findings, via
:mod:`flood_jax.reproduce` (which does the work; this module turns options
into its arguments)."""

from __future__ import annotations

import argparse
import glob
import os
import shlex
import sys
import textwrap
import time
from collections.abc import Sequence
from typing import Any

from flood_jax._checks import NotWrittenError, release_directory
from flood_jax._sweep.checkpoint import CheckpointError, CheckpointSaveError
from flood_jax.cli import tracking as tracking_cli
from flood_jax.cli.args import (
  fraction_list,
  optimizer_list,
  parse_levels,
  parse_pbt,
  parse_prune,
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
)

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

PROTOCOLS = ("synthetic", "mnist1d", "digits", "adaflood", "pbt", "benchmark")


def add_arguments(parser: argparse.ArgumentParser) -> None:
  """The options of ``flood-jax reproduce``."""
  parser.add_argument(
    "protocol",
    choices=PROTOCOLS,
    metavar="PROTOCOL",
    help=f"what to reproduce: {', '.join(PROTOCOLS[:-1])} or {PROTOCOLS[-1]} (see above)",
  )
  parser.add_argument(
    "--preset",
    choices=("cpu", "paper"),
    default="cpu",
    help="synthetic: 'paper' is the paper's protocol (about 80 h on a"
    " 2-core CPU); 'cpu' (default) cuts it to about 30 min: noise"
    " 0.01/0.05/0.1, levels 0 to 0.5 by 0.05, 5 seeds, 100 epochs,"
    " 1,000 test examples. benchmark: 'paper' is flood levels 0.00 to 0.10"
    " by 0.01, 3 seeds, 500 epochs; 'cpu' (default) keeps 5 of the 11"
    " levels (0, 0.01, 0.02, 0.05, 0.1), 20 of the 500 epochs and 4 seeds,"
    " with the paper's data, split, model, optimizer, batch size and weight"
    " decays (MNIST: about 30 min estimated on an idle 2-core CPU). Options given"
    " explicitly override it.",
  )
  parser.add_argument(
    "--data-dir",
    metavar="DIR",
    help="benchmark: a folder with the data set's original files (MNIST"
    " family: the four IDX files, gzipped or not; cifar10:"
    " cifar-10-batches-py/; cifar100: cifar-100-python/; svhn:"
    " train_32x32.mat and test_32x32.mat), read offline with the paper's"
    " 80:20 split; without it the set comes from the Hugging Face Hub",
  )
  parser.add_argument(
    "--augment",
    action="store_true",
    help="benchmark, image models only: random crops and flips, and 15%% of"
    " the training set held out (the paper's 85:15 with augmentation)",
  )
  parser.add_argument(
    "--dataset",
    type=snake_name,
    help="benchmark: mnist, fashion_mnist,"
    " kmnist, cifar10, cifar100 or svhn; synthetic, adaflood and pbt: a comma list"
    " (pbt and adaflood also take mnist1d)",
  )
  parser.add_argument("--out", help="output directory (default runs/reproduce-PROTOCOL)")
  parser.add_argument(
    "--levels",
    type=parse_levels,
    help="flood levels: START:STOP:COUNT (COUNT levels from START to STOP,"
    " e.g. 0:0.1:11) or a comma list such as 0,0.01,0.05 (0 is added)",
  )
  parser.add_argument(
    "--seeds", type=positive_int, metavar="N", help="number of seeds: N runs, seeds 0..N-1"
  )
  parser.add_argument("--epochs", type=positive_int, help="epochs per model")
  parser.add_argument("--noise", type=fraction_list, help="label noise rates, comma list")
  parser.add_argument("--optimizers", type=optimizer_list, help="sgd,adam or one of them")
  parser.add_argument("--n-test", type=positive_int, help="synthetic: test examples")
  parser.add_argument("--hidden", type=positive_int, help="MLP width")
  parser.add_argument("--depth", type=positive_int, help="MLP hidden layers")
  parser.add_argument(
    "--devices", type=positive_int, help="CPU only: XLA devices (default one per core)"
  )
  parser.add_argument(
    "--eval-every",
    type=positive_int,
    metavar="N",
    help="evaluate every N epochs (default: synthetic 2, adaflood 5, pbt 4, else 1)",
  )
  parser.add_argument(
    "--gammas",
    type=_gamma_list,
    help="adaflood: AdaFlood's corrections gamma in [0, 1], comma list (1 is added)",
  )
  parser.add_argument("--folds", type=positive_int, help="adaflood: fold models (default 5)")
  parser.add_argument(
    "--pbt",
    type=parse_pbt,
    metavar="INTERVAL[,FRACTION]",
    help="pbt: PBT's exploit interval in epochs and the share of each population"
    " replaced (default: epochs // 5 and 0.25)",
  )
  parser.add_argument(
    "--prune",
    type=parse_prune,
    metavar="MIN_EPOCHS[,FACTOR[,SCORE]]",
    help="pbt: the Halving it is compared with (default: 12%% of the epochs, 2, trend)",
  )
  tracking_cli.add_arguments(parser)
  add_compile_cache_arguments(parser)
  parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
  """``flood-jax reproduce``: returns the exit code."""
  out = args.out or os.path.join(OUT_ROOT, f"reproduce-{args.protocol}")
  try:
    return _run(args, argv, out)
  finally:  # a run that wrote nothing (bad input) leaves no folder behind
    release_directory(out)


def _run(args: argparse.Namespace, argv: Sequence[str], out: str) -> int:
  try:
    request_cpu_devices(args.devices or default_devices())
    use_compile_cache(args)
    from flood_jax import reproduce

    options: dict[str, Any] = {"progress": not args.no_progress}
    for key, name in [
      ("levels", "flood_levels"),
      ("seeds", "seeds"),
      ("epochs", "epochs"),
      ("hidden", "hidden"),
      ("depth", "depth"),
      ("eval_every", "eval_every"),
    ]:
      if getattr(args, key) is not None:
        options[name] = getattr(args, key)
    if args.protocol not in ("synthetic", "benchmark") and args.preset != "cpu":
      raise UsageError("--preset applies to reproduce synthetic and benchmark only")
    if args.protocol != "benchmark" and (args.data_dir is not None or args.augment):
      raise UsageError("--data-dir and --augment apply to reproduce benchmark only")
    if args.protocol != "adaflood" and (args.gammas is not None or args.folds is not None):
      raise UsageError("--gammas and --folds apply to reproduce adaflood only")
    if args.protocol == "benchmark" and args.dataset is None:
      raise UsageError(
        "reproduce benchmark needs --dataset (mnist, fashion_mnist,"
        " kmnist, cifar10, cifar100 or svhn)"
      )
    # --out is the user's only if new, empty or this protocol's: checked (and marked)
    # before anything is written into it.
    reproduce.claim_out(out, _protocol_name(args), "--out")
    for path in glob.glob(os.path.join(glob.escape(out), "checkpoints", "**"), recursive=True):
      tracking_cli.check_state(path)  # the trackers' run ids of a sweep in progress
    if args.log:
      log_dir = args.log_dir or out
      tracking_cli.make_loggers(args.log, log_dir)  # the extra is there: fail now, not later
      options["loggers"] = lambda name: tracking_cli.make_loggers(args.log, log_dir, group=name)
    if args.protocol != "pbt" and (args.pbt is not None or args.prune is not None):
      raise UsageError("--pbt and --prune apply to reproduce pbt only")
    if args.protocol == "pbt":
      return _run_pbt(args, out, options)
    if args.protocol == "benchmark":
      for key in ("noise", "n_test"):
        if getattr(args, key) is not None:
          raise UsageError(f"--{key.replace('_', '-')} does not apply to reproduce benchmark")
      model_options = {k: options.pop(k) for k in ("hidden", "depth") if k in options}
      if args.optimizers:
        if len(args.optimizers) != 1:
          raise UsageError("reproduce benchmark takes one optimizer")
        options["optimizer"] = args.optimizers[0]
      options = {**reproduce.BENCHMARK_PRESETS[args.preset], **options}
      start = time.perf_counter()
      comparisons = reproduce.benchmark(
        out,
        dataset=args.dataset,
        data_dir=args.data_dir,
        augment=args.augment,
        model_options=model_options or None,
        **options,
      )
    else:
      if args.noise is not None:
        options["noise_rates"] = args.noise
      if args.optimizers is not None:
        options["optimizers"] = args.optimizers
      if args.protocol == "adaflood":
        for key in ("gammas", "folds", "n_test"):
          if getattr(args, key) is not None:
            options[key] = getattr(args, key)
        if args.dataset is not None:
          options["datasets"] = tuple(args.dataset.split(","))
        start = time.perf_counter()
        methods = reproduce.adaflood(out, **options)
        print("\nLast epoch:\n\n" + reproduce.methods_table(methods))
        print("\nEarly stopping:\n\n" + reproduce.methods_table(methods, early_stopping=True))
        print(
          f"\nwall time: {time.perf_counter() - start:.0f} s; wrote the tables and"
          f" reproduce.json to {out}/"
        )
        return 0
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
    print(
      f"\nwall time: {time.perf_counter() - start:.0f} s; wrote the table, reproduce.json"
      f" and figures to {out}/"
    )
    return 0
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


def _protocol_name(args: argparse.Namespace) -> str:
  """The name :mod:`flood_jax.reproduce` writes the protocol's outputs under."""
  if args.protocol == "benchmark":
    return f"benchmark_{args.dataset}"
  return "builtin" if args.protocol in ("mnist1d", "digits") else args.protocol


def _run_pbt(args: argparse.Namespace, out: str, options: dict[str, Any]) -> int:
  """``flood-jax reproduce pbt``: PBT against the grid and Halving (issue 31)."""
  from flood_jax import reproduce

  if args.n_test is not None:
    options["n_test"] = args.n_test
  if args.noise is not None:
    options["noise_rates"] = args.noise
  if args.optimizers is not None:
    options["optimizers"] = args.optimizers
  if args.dataset is not None:
    options["datasets"] = tuple(args.dataset.split(","))
  if args.pbt is not None:
    options["interval"], options["fraction"] = args.pbt
  if args.prune is not None:
    options["halving"] = args.prune
  start = time.perf_counter()
  comparisons = reproduce.pbt(out, **options)
  print("\nTest accuracy (%):\n\n" + reproduce.pbt_table(comparisons))
  print("\nTest loss:\n\n" + reproduce.pbt_table(comparisons, "loss"))
  print(
    f"\nwall time: {time.perf_counter() - start:.0f} s; wrote pbt_table.md and"
    f" reproduce.json to {out}/"
  )
  return 0


def _gamma_list(text: str) -> list[float]:
  """``--gammas``: a comma list of numbers in [0, 1]."""
  try:
    values = [float(v) for v in text.split(",")]
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected a comma list of numbers, got {text!r}") from None
  for value in values:
    if not 0 <= value <= 1:
      raise argparse.ArgumentTypeError(f"gamma must be in [0, 1], got {value:g}")
  return values


COMMAND = Command(
  help="reproduce the paper's findings: tables with paired tests, and figures",
  description=DESCRIPTION,
  add_arguments=add_arguments,
  run=run,
)
