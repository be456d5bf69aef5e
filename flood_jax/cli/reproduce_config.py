"""``flood-jax reproduce``'s settings: :class:`ReproduceConfig`, one typed field per
option (its metadata the option: the ``--help`` text and what else argparse is told),
checked in one place and turned into the :mod:`flood_jax.reproduce` function's
arguments."""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Callable
from dataclasses import field
from typing import Any

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
from flood_jax.cli.common import OUT_ROOT, UsageError, add_compile_cache_arguments


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


PROTOCOLS = ("synthetic", "mnist1d", "digits", "adaflood", "pbt", "benchmark")


def _option(help: str, argument: str | None = None, **parser: Any) -> dict[str, Any]:
  """The metadata of a field of :class:`ReproduceConfig`: its option's ``--help`` text,
  the protocol's argument it gives (if any, when given) and what else ``add_argument``
  is told (``type=``, ``metavar=``, ...)."""
  return {"help": help, **parser, **({"argument": argument} if argument else {})}


def _shared(add: Callable[[Any], None]) -> dict[str, Any]:
  """The metadata of a field whose option (and ``--help`` text) ``add`` adds, shared
  with ``flood-jax sweep``."""
  return {"added_by": add}


@dataclasses.dataclass(frozen=True)
class ReproduceConfig:
  """``flood-jax reproduce``'s settings: one field per option, in ``--help``'s order.

  A field's metadata is its option: ``help`` (the ``--help`` text), ``argument`` (the
  protocol's keyword argument it gives, when given) and what else ``add_argument``
  takes; a field left ``None`` keeps the protocol's default.
  :meth:`check` says which options do not apply, :meth:`protocol_arguments` turns
  the rest into the arguments of the :mod:`flood_jax.reproduce` function that runs it.
  """

  protocol: str = field(
    metadata={
      "help": f"what to reproduce: {', '.join(PROTOCOLS[:-1])} or {PROTOCOLS[-1]} (see above)",
      "choices": PROTOCOLS,
      "metavar": "PROTOCOL",
      "positional": True,
    }
  )
  preset: str = field(
    default="cpu",
    metadata=_option(
      "synthetic: 'paper' is the paper's protocol (about 80 h on a"
      " 2-core CPU); 'cpu' (default) cuts it to about 30 min: noise"
      " 0.01/0.05/0.1, levels 0 to 0.5 by 0.05, 5 seeds, 100 epochs,"
      " 1,000 test examples. benchmark: 'paper' is flood levels 0.00 to 0.10"
      " by 0.01, 3 seeds, 500 epochs; 'cpu' (default) keeps 5 of the 11"
      " levels (0, 0.01, 0.02, 0.05, 0.1), 20 of the 500 epochs and 4 seeds,"
      " with the paper's data, split, model, optimizer, batch size and weight"
      " decays (MNIST: about 30 min estimated on an idle 2-core CPU). Options given"
      " explicitly override it.",
      choices=("cpu", "paper"),
    ),
  )
  data_dir: str | None = field(
    default=None,
    metadata=_option(
      "benchmark: a folder with the data set's original files (MNIST"
      " family: the four IDX files, gzipped or not; cifar10:"
      " cifar-10-batches-py/; cifar100: cifar-100-python/; svhn:"
      " train_32x32.mat and test_32x32.mat), read offline with the paper's"
      " 80:20 split; without it the set comes from the Hugging Face Hub",
      metavar="DIR",
    ),
  )
  augment: bool = field(
    default=False,
    metadata=_option(
      "benchmark, image models only: random crops and flips, and 15%% of"
      " the training set held out (the paper's 85:15 with augmentation)",
      action="store_true",
    ),
  )
  dataset: str | None = field(
    default=None,
    metadata=_option(
      "benchmark: mnist, fashion_mnist,"
      " kmnist, cifar10, cifar100 or svhn; synthetic, adaflood and pbt: a comma list"
      " (pbt and adaflood also take mnist1d)",
      type=snake_name,
    ),
  )
  out: str | None = field(
    default=None, metadata=_option("output directory (default runs/reproduce-PROTOCOL)")
  )
  levels: list[float] | None = field(
    default=None,
    metadata=_option(
      "flood levels: START:STOP:COUNT (COUNT levels from START to STOP,"
      " e.g. 0:0.1:11) or a comma list such as 0,0.01,0.05 (0 is added)",
      argument="flood_levels",
      type=parse_levels,
    ),
  )
  seeds: int | None = field(
    default=None,
    metadata=_option(
      "number of seeds: N runs, seeds 0..N-1", argument="seeds", type=positive_int, metavar="N"
    ),
  )
  epochs: int | None = field(
    default=None, metadata=_option("epochs per model", argument="epochs", type=positive_int)
  )
  noise: tuple[float, ...] | None = field(
    default=None,
    metadata=_option("label noise rates, comma list", argument="noise_rates", type=fraction_list),
  )
  optimizers: tuple[str, ...] | None = field(
    default=None,
    metadata=_option("sgd,adam or one of them", argument="optimizers", type=optimizer_list),
  )
  n_test: int | None = field(
    default=None, metadata=_option("synthetic: test examples", argument="n_test", type=positive_int)
  )
  hidden: int | None = field(
    default=None, metadata=_option("MLP width", argument="hidden", type=positive_int)
  )
  depth: int | None = field(
    default=None, metadata=_option("MLP hidden layers", argument="depth", type=positive_int)
  )
  devices: int | None = field(
    default=None,
    metadata=_option("CPU only: XLA devices (default one per core)", type=positive_int),
  )
  eval_every: int | None = field(
    default=None,
    metadata=_option(
      "evaluate every N epochs (default: synthetic 2, adaflood 5, pbt 4, else 1)",
      argument="eval_every",
      type=positive_int,
      metavar="N",
    ),
  )
  gammas: list[float] | None = field(
    default=None,
    metadata=_option(
      "adaflood: AdaFlood's corrections gamma in [0, 1], comma list (1 is added)",
      argument="gammas",
      type=_gamma_list,
    ),
  )
  folds: int | None = field(
    default=None,
    metadata=_option("adaflood: fold models (default 5)", argument="folds", type=positive_int),
  )
  pbt: list[Any] | None = field(
    default=None,
    metadata=_option(
      "pbt: PBT's exploit interval in epochs and the share of each population"
      " replaced (default: epochs // 5 and 0.25)",
      type=parse_pbt,
      metavar="INTERVAL[,FRACTION]",
    ),
  )
  prune: list[Any] | None = field(
    default=None,
    metadata=_option(
      "pbt: the Halving it is compared with (default: 12%% of the epochs, 2, trend)",
      argument="halving",
      type=parse_prune,
      metavar="MIN_EPOCHS[,FACTOR[,SCORE]]",
    ),
  )
  log: list[str] | None = field(default=None, metadata=_shared(tracking_cli.add_arguments))
  log_dir: str | None = field(default=None, metadata=_shared(tracking_cli.add_arguments))
  compile_cache: str | None = field(default=None, metadata=_shared(add_compile_cache_arguments))
  no_compile_cache: bool = field(default=False, metadata=_shared(add_compile_cache_arguments))
  no_progress: bool = field(
    default=False, metadata=_option("no progress bars", action="store_true")
  )

  @classmethod
  def from_args(cls, args: argparse.Namespace) -> ReproduceConfig:
    """The settings the parsed command line gives."""
    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})

  @property
  def out_dir(self) -> str:
    """``--out``, or ``runs/reproduce-PROTOCOL``."""
    return self.out or os.path.join(OUT_ROOT, f"reproduce-{self.protocol}")

  @property
  def output_name(self) -> str:
    """The name :mod:`flood_jax.reproduce` writes the protocol's outputs under."""
    if self.protocol == "benchmark":
      return f"benchmark_{self.dataset}"
    return "builtin" if self.protocol in ("mnist1d", "digits") else self.protocol

  def check(self) -> None:
    """:class:`UsageError` (one line) for an option this protocol does not take."""
    protocol = self.protocol
    if protocol not in ("synthetic", "benchmark") and self.preset != "cpu":
      raise UsageError("--preset applies to reproduce synthetic and benchmark only")
    if protocol != "benchmark" and (self.data_dir is not None or self.augment):
      raise UsageError("--data-dir and --augment apply to reproduce benchmark only")
    if protocol != "adaflood" and (self.gammas is not None or self.folds is not None):
      raise UsageError("--gammas and --folds apply to reproduce adaflood only")
    if protocol == "benchmark" and self.dataset is None:
      raise UsageError(
        "reproduce benchmark needs --dataset (mnist, fashion_mnist,"
        " kmnist, cifar10, cifar100 or svhn)"
      )
    if protocol != "pbt" and (self.pbt is not None or self.prune is not None):
      raise UsageError("--pbt and --prune apply to reproduce pbt only")
    if protocol == "benchmark":
      for key in ("noise", "n_test"):
        if getattr(self, key) is not None:
          raise UsageError(f"--{key.replace('_', '-')} does not apply to reproduce benchmark")
      if self.optimizers and len(self.optimizers) != 1:
        raise UsageError("reproduce benchmark takes one optimizer")
    if protocol in ("mnist1d", "digits") and (self.dataset is not None or self.n_test is not None):
      raise UsageError(f"--dataset and --n-test do not apply to reproduce {protocol}")

  def function(self, reproduce: Any) -> Callable[..., list[Any]]:
    """The function of the module ``reproduce`` (:mod:`flood_jax.reproduce`) that runs it."""
    return getattr(reproduce, "builtin" if self.output_name == "builtin" else self.protocol)

  def protocol_arguments(self, reproduce: Any, loggers: Any = None) -> dict[str, Any]:
    """The keyword arguments of :meth:`function`: the options given, over ``--preset``'s
    values (synthetic, benchmark); ``loggers`` makes a sweep's loggers from its name."""
    options: dict[str, Any] = {"progress": not self.no_progress}
    for option in dataclasses.fields(self):
      if "argument" in option.metadata and getattr(self, option.name) is not None:
        options[option.metadata["argument"]] = getattr(self, option.name)
    if loggers is not None:
      options["loggers"] = loggers
    if self.pbt is not None:
      options["interval"], options["fraction"] = self.pbt
    if self.protocol == "benchmark":
      return self._benchmark_arguments(reproduce, options)
    if self.output_name == "builtin":
      return {**options, "datasets": (self.protocol,)}
    if self.dataset is not None:
      options["datasets"] = tuple(self.dataset.split(","))
    if self.protocol == "synthetic":
      return {**reproduce.PRESETS[self.preset], **options}
    return options

  def _benchmark_arguments(self, reproduce: Any, options: dict[str, Any]) -> dict[str, Any]:
    """:func:`flood_jax.reproduce.benchmark`'s: ``--hidden``/``--depth`` are its model's
    options, ``--optimizers`` names its one optimizer."""
    model_options = {k: options.pop(k) for k in ("hidden", "depth") if k in options}
    optimizers = options.pop("optimizers", None)
    if optimizers:
      options["optimizer"] = optimizers[0]
    return {
      **reproduce.BENCHMARK_PRESETS[self.preset],
      **options,
      "dataset": self.dataset,
      "data_dir": self.data_dir,
      "augment": self.augment,
      "model_options": model_options or None,
    }
