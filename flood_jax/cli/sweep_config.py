"""The settings of ``flood-jax sweep``: :class:`SweepConfig`, one frozen record.

Each field is one option of the command, typed and documented once: the
field's ``help`` is the option's ``--help`` (:mod:`flood_jax.cli.sweep_parser`
builds the parser from the fields). A config is built from the options given
(:mod:`flood_jax.cli.sweep_options` checks and resolves them), saved in
``OUT/checkpoint/command.json`` and in ``results.json`` (:meth:`SweepConfig.to_json`),
read back on ``--resume`` (:meth:`SweepConfig.from_json`: a key an older file
lacks takes the field's default), compared field by field with the options
given (:meth:`SweepConfig.differences`), and turned into the arguments of
``fj.sweep`` and ``fj.plan`` (:meth:`SweepConfig.sweep_arguments`).

A new option is a new field at the end (the order of the fields is the order
of the keys in ``command.json``) and the code that uses it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

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
from flood_jax.cli.sweep_defaults import (
  DECAY,
  DEFAULTS,
  HYPERPARAMS,
  OBJECTIVES,
  REGRESSION_DEFAULTS,
  REGRESSION_SETS,
  SweepDefaults,
)

__all__ = [  # the defaults, importable from here as before
  "DECAY",
  "DEFAULTS",
  "HYPERPARAMS",
  "OBJECTIVES",
  "REGRESSION_DEFAULTS",
  "REGRESSION_SETS",
  "SweepConfig",
  "SweepDefaults",
]


_d = DEFAULTS


def option(help: str | Callable[[], str], group: str, default: Any = None, **parse: Any) -> Any:
  """A field of :class:`SweepConfig` that is an option: ``--NAME``, with ``help``.

  Args:
    help: the option's ``--help`` text (a function for one that names what the
      registries hold, read when the parser is built).
    group: the option's group in ``--help``.
    default: the field's default: the option's where nothing depends on others,
      and what a ``command.json`` without the key reads as.
    **parse: the rest of ``add_argument``'s arguments (``type``, ``metavar``, ...).
  """
  return dataclasses.field(default=default, metadata={"help": help, "group": group, "parse": parse})


_DATA, _SWEEP, _OPT, _RUN = "data and model", "sweep", "optimizer", "running"


def _dataset_help() -> str:
  return (
    f"data set, one of {', '.join(datasets())} (default: {_d.dataset}); diabetes is a"
    " regression, swept with fj.Regression() and the mlp (by default with adam, lr 3e-3,"
    " batch size 16, hidden 128)"
  )


def _model_help() -> str:
  return f"model, one of {', '.join(models())} (default: {_d.model})"


@dataclasses.dataclass(frozen=True)
class SweepConfig:
  """What ``flood-jax sweep`` trains and where it writes: the options, resolved.

  ``SweepConfig()`` is the command's defaults but ``out`` (:func:`resolve` names
  one). Lists are tuples; a single ``lr`` or ``weight_decay`` is a number (a
  fixed setting), several are a tuple (an axis of the grid).
  """

  dataset: str = option(_dataset_help, _DATA, _d.dataset, type=snake_name, metavar="NAME")
  model: str = option(_model_help, _DATA, _d.model, type=snake_name, metavar="NAME")
  hidden: int | None = option(
    f"hidden width of the mlp or cnn (default: {_d.hidden} for the mlp,"
    " the model's own for the cnn)",
    _DATA,
    _d.hidden,
    type=positive_int,
    metavar="WIDTH",
  )
  depth: int | None = option(
    f"hidden layers of the mlp (default: {_d.depth})",
    _DATA,
    _d.depth,
    type=positive_int,
    metavar="LAYERS",
  )
  levels: tuple[float, ...] = option(
    "flood levels: START:STOP:COUNT (COUNT levels from START to STOP"
    " inclusive, like numpy.linspace) or a comma list such as 0,0.02,0.05;"
    " any finite numbers (a negative one: --levels=-1,0)"
    f" (default: {','.join(f'{b:g}' for b in _d.levels)})",
    _SWEEP,
    _d.levels,
    type=parse_levels,
    metavar="LEVELS",
  )
  seeds: tuple[int, ...] = option(
    f"a count N (seeds 0..N-1) or a comma list such as 0,5,7 (default: {_d.seeds})",
    _SWEEP,
    tuple(range(_d.seeds)),
    type=parse_seeds,
    metavar="SEEDS",
  )
  epochs: int = option(
    f"training epochs per model (default: {_d.epochs})",
    _SWEEP,
    _d.epochs,
    type=positive_int,
    metavar="N",
  )
  batch_size: int = option(
    f"mini-batch size (default: {_d.batch_size})",
    _SWEEP,
    _d.batch_size,
    type=positive_int,
    metavar="B",
  )
  optimizer: str = option(
    f"sgd (with momentum) or adam (default: {_d.optimizer})",
    _OPT,
    _d.optimizer,
    choices=OPTIMIZERS,
    type=str.lower,
  )
  lr: float | tuple[float, ...] = option(
    "learning rate; a comma list sweeps it as an axis of the grid"
    f" (default: {_d.sgd_lr:g} for sgd, {_d.adam_lr:g} for adam)",
    _OPT,
    _d.sgd_lr,
    type=positive_float_list,
    metavar="LR[,LR...]",
  )
  momentum: float | None = option(
    f"SGD momentum, sgd only (default: {_d.momentum:g})",
    _OPT,
    _d.momentum,
    type=fraction,
    metavar="M",
  )
  weight_decay: float | tuple[float, ...] = option(
    "weight decay: decoupled for adam (AdamW), L2 for sgd (added to the"
    " gradient before the momentum, as torch.optim.SGD); a comma list sweeps it"
    " as an axis of the grid"
    f" (default: {_d.weight_decay:g})",
    _OPT,
    _d.weight_decay,
    type=non_negative_float_list,
    metavar="WD[,WD...]",
  )
  objective: str = option(
    "flood: flood the mini-batch loss, |J - b| + b (Ishida et al., 2020);"
    " iflood: flood each example's loss (Xie et al., 2022)"
    f" (default: {_d.objective})",
    _SWEEP,
    _d.objective,
    choices=OBJECTIVES,
    type=str.lower,
  )
  augment: bool = option(
    "augment the training images with random crops (4 pixels of"
    " padding) and horizontal flips; image data sets only",
    _DATA,
    _d.augment,
    action="store_true",
  )
  label_noise: float = option(
    "fraction of training and validation labels replaced by a wrong"
    f" class; the test set stays clean (default: {_d.label_noise:g})",
    _DATA,
    _d.label_noise,
    type=fraction,
    metavar="P",
  )
  data_dir: str | None = option(
    "image data sets: read the original files from DIR (MNIST family:"
    " the IDX files; cifar10: cifar-10-batches-py/; cifar100:"
    " cifar-100-python/; svhn: the .mat files), offline, with the paper's"
    " 80:20 split (default: download from the Hugging Face Hub)",
    _DATA,
    metavar="DIR",
  )
  eval_every: int | None = option(
    "evaluate every N epochs and after the last (default: as often as"
    " costs about 10%% of training, at least 5 times a run)",
    _RUN,
    type=positive_int,
    metavar="N",
  )
  chunk_size: int | None = option(
    "models trained together per device (default: chosen from the model's size and the platform)",
    _RUN,
    type=positive_int,
    metavar="K",
  )
  devices: int | None = option(
    "devices to shard the sweep over; on a CPU, the number of XLA CPU"
    " devices to create, which must happen before JAX starts (default: all;"
    " on a CPU one per core); with several processes, each process's CPU"
    " devices, and the sweep spans all processes' devices",
    _RUN,
    type=positive_int,
    metavar="N",
  )
  out: str = option(
    "directory for results, plots and the checkpoint: a new or empty one, or one"
    " flood-jax sweep wrote (never the user's own files)"
    f" (default: {_d.out_root}/sweep-DATASET-YYYYmmdd-HHMMSS)",
    _RUN,
    "",
    metavar="DIR",
  )
  prune: tuple[Any, ...] | None = option(
    "successive halving: after MIN_EPOCHS * FACTOR**k epochs keep only"
    " the best 1/FACTOR of the configurations (by mean validation accuracy"
    " over seeds; SCORE 'trend': by its forecast at the last epoch, fairer to"
    " flooding, which helps late; ties kept together) and stop the rest"
    " (default FACTOR: 3; default: no pruning), e.g. 12,2,trend",
    _RUN,
    type=parse_prune,
    metavar="MIN_EPOCHS[,FACTOR[,SCORE]]",
  )
  pbt: tuple[Any, ...] | None = option(
    "population-based training of the level: every INTERVAL epochs, per seed, the"
    " worst FRACTION of the configurations (default 0.25) copy one of the best FRACTION"
    " and go on at its level (and learning rate) times 0.8 or 1.25; not with --prune",
    _RUN,
    type=parse_pbt,
    metavar="INTERVAL[,FRACTION]",
  )
  log: tuple[str, ...] | None = option(
    tracking_cli.LOG_HELP,
    _RUN,
    action="append",
    choices=tracking_cli.TRACKERS,
    metavar="TRACKER",
  )
  log_dir: str | None = option(tracking_cli.LOG_DIR_HELP, _RUN, metavar="DIR")
  memory_limit: int | None = option(
    "bytes each device may hold, e.g. 16GB (10**9) or 8GiB (2**30): the"
    " default --chunk-size is then the most models per device that fit, from"
    " XLA's memory analysis (default: on a GPU or TPU its memory less 10%%; on"
    " a CPU the measured layout)",
    _RUN,
    type=memory_size,
    metavar="SIZE",
  )
  stream: bool = option(
    "feed the training set from the host in batches through fj.Stream (a grain"
    " MapDataset of the examples, shuffled per epoch) instead of keeping it on the"
    " devices: one batch order shared by every seed, train loss from the steps",
    _DATA,
    False,
    action="store_true",
  )

  @classmethod
  def from_json(cls, saved: Mapping[str, Any]) -> SweepConfig:
    """The config ``command.json`` holds; a key it lacks (an older file) takes the default."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: frozen(v) for k, v in saved.items() if k in names})

  def to_json(self) -> dict[str, Any]:
    """The config as ``command.json`` and ``results.json`` hold it: one key per field."""
    return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

  def differences(self, given: Mapping[str, Any]) -> list[str]:
    """The options ``given`` that differ from this config, ``--NAME VALUE (was VALUE)`` each."""
    return [
      f"{flag(name)} {_show(value)} (was {_show(getattr(self, name))})"
      for name, value in given.items()
      if name != "out" and value != getattr(self, name)
    ]

  @property
  def regression(self) -> bool:
    """Whether the data set is a regression (swept with ``fj.Regression()``)."""
    return self.dataset in REGRESSION_SETS

  @property
  def swept_hyperparams(self) -> dict[str, list[float]]:
    """The hyperparameter axes: ``{optax name: values}`` for each option given several."""
    values = {name: getattr(self, key) for key, name in HYPERPARAMS.items()}
    return {name: list(v) for name, v in values.items() if _is_axis(v)}

  def make_optimizer(self) -> Any:
    """The optimizer; with a grid of hyperparameters, ``optax.inject_hyperparams``'s.

    Without a grid the settings are compiled in. With one, the learning rate
    and the weight decay are injected hyperparameters, started at their first
    values; :func:`flood_jax.sweep` sets them per model. The weight decay is
    decoupled for adam (AdamW) and L2 for sgd (:data:`DECAY`).
    """
    from flood_jax._optimizers import optimizer

    def first(value: Any) -> float:
      return value[0] if _is_axis(value) else value

    return optimizer(
      self.optimizer,
      first(self.lr),
      decay=DECAY[self.optimizer],
      weight_decay=first(self.weight_decay),
      momentum=self.momentum or None,
      inject=bool(self.swept_hyperparams),
    )

  def sweep_arguments(self, mesh: Any) -> dict[str, Any]:
    """What the options say of the sweep itself: ``fj.sweep``'s and ``fj.plan``'s arguments."""
    import flood_jax as fj
    from flood_jax import data as data_lib

    return dict(
      flood_levels=list(self.levels),
      seeds=list(self.seeds),
      optimizer=self.make_optimizer(),
      hyperparams=self.swept_hyperparams or None,
      objective=self.objective,
      augment=data_lib.random_crop_flip(padding=4) if self.augment else None,
      epochs=self.epochs,
      batch_size=self.batch_size,
      eval_every=self.eval_every,
      chunk_size=self.chunk_size,
      mesh=mesh,
      prune=fj.Halving(*self.prune) if self.prune else None,
      pbt=fj.PBT(*self.pbt) if self.pbt else None,
      memory_limit=self.memory_limit,
      task=fj.Regression() if self.regression else None,
    )


FIELDS = {f.name: f for f in dataclasses.fields(SweepConfig)}


def flag(name: str) -> str:
  """A field's option: ``batch_size`` -> ``--batch-size``."""
  return "--" + name.replace("_", "-")


def _is_axis(value: Any) -> bool:
  return isinstance(value, (tuple, list))


def frozen(value: Any) -> Any:
  """A list (from the parser or JSON) as a tuple, so that a config never changes."""
  return tuple(value) if isinstance(value, list) else value


def _plain(value: Any) -> Any:
  return list(value) if isinstance(value, tuple) else value


def _show(value: Any) -> str:
  if isinstance(value, (tuple, list)):
    return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
  return str(value)


def datasets() -> tuple[str, ...]:
  from flood_jax.data import DATASETS

  return DATASETS


def image_sets() -> tuple[str, ...]:
  from flood_jax.data import IMAGE_SETS

  return tuple(IMAGE_SETS)


def models() -> tuple[str, ...]:
  from flood_jax.models import MODELS

  return tuple(MODELS)
