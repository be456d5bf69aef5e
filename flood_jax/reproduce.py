"""Reproducing the flooding paper's findings: tables, paired tests and figures.

Three protocols, each a set of :func:`flood_jax.sweep` calls (all flood levels
and seeds of a setting trained at once):

* :func:`synthetic`: the paper's synthetic experiments (Sec. 4.1): two
  Gaussians, sinusoid and spiral, label noise 0, 0.01, 0.05 and 0.1, the
  paper's MLP (4 hidden layers of 500, BatchNorm), SGD (lr 0.01, momentum 0.9)
  and Adam (lr 0.001), 100 training and 100 validation examples.
* :func:`builtin`: the same analysis on the offline benchmark sets
  (``mnist1d``, ``digits``), with the double descent of the test loss.
* :func:`adaflood`: flooding vs iFlood vs AdaFlood (Bae et al., 2024) on the
  synthetic sets with label noise, each method's level chosen per seed by
  validation, with the cost of AdaFlood's fold models.
* :func:`pbt`: population-based training of the flood level against the
  grid's chosen level and successive halving on the synthetic sets (or
  MNIST-1D), paired over seeds by test accuracy and test loss.
* :func:`benchmark`: the paper's benchmark protocol (Sec. 4.2) on the image
  sets (MNIST family with the MLP, CIFAR/SVHN with a ResNet), with and without
  weight decay, read from their original files (``data_dir=``) or from the
  Hugging Face Hub.

The flood level is chosen **per seed** by that run's validation accuracy, as
an experimenter with one run would: without early stopping at the last
epoch, with early stopping at the epoch of best validation accuracy (and the
test accuracy read at that same epoch). "No flooding" is ``b = 0``, which is
always in the grid. Whether flooding helps is a paired comparison across
seeds (same seed = same initialization and batch order): the mean difference
and a one-sided paired t-test.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np
import optax

from flood_jax import _optimizers
from flood_jax import data as data_lib
from flood_jax import models as models_lib
from flood_jax._adaflood import adaflood_levels
from flood_jax._checks import MARKER, NotWrittenError, claim_directory, first_line
from flood_jax._result import SweepResult, _shortest
from flood_jax._result import paired_p as _paired_p
from flood_jax._sweep import sweep

# ``loggers=``: the loggers of one sweep, given a name for it (the setting's slug), so
# that each sweep of a protocol gets runs (and TensorBoard directories) of its own.
LoggerFactory = Callable[[str], Sequence[Any]]

SYNTHETIC_SETS = ("two_gaussians", "sinusoid", "spiral")

# The paper's synthetic protocol: about 80 hours on a 2-core CPU (measured
# 94 ms per model-epoch for the 4x500 MLP with a 10,000-example test set).
SYNTHETIC_PAPER: dict[str, Any] = dict(
  noise_rates=(0.0, 0.01, 0.05, 0.1),
  flood_levels=tuple(np.round(np.arange(0, 0.501, 0.01), 2)),
  seeds=5,
  epochs=500,
  n_test=10_000,
)
# The same settings cut to about 30 minutes on a 2-core CPU: the paper's noise
# rates, every 5th level, 100 epochs, a 1,000-example test set.
SYNTHETIC_CPU: dict[str, Any] = dict(
  noise_rates=(0.01, 0.05, 0.1),
  flood_levels=tuple(np.round(np.arange(0, 0.501, 0.05), 2)),
  seeds=5,
  epochs=100,
  n_test=1000,
)
PRESETS = {"cpu": SYNTHETIC_CPU, "paper": SYNTHETIC_PAPER}


@dataclasses.dataclass(frozen=True)
class Setting:
  """One row of a reproduction table: a data set, a noise rate, an optimizer."""

  dataset: str
  label_noise: float
  optimizer: str
  weight_decay: float = 0.0

  @property
  def label(self) -> str:
    text = f"{self.dataset}, noise {self.label_noise:g}, {self.optimizer}"
    if self.weight_decay:
      text += f", wd {self.weight_decay:g}"
    return text


def make_optimizer(
  name: str, learning_rate: float | None = None, weight_decay: float = 0.0
) -> optax.GradientTransformation:
  """The paper's optimizers: SGD (lr 0.01, momentum 0.9) or Adam (lr 0.001).

  Weight decay is L2, added to the gradient before the optimizer (as
  ``torch.optim.SGD``/``Adam``'s ``weight_decay`` in the paper's code; not
  AdamW): ``flood_jax._optimizers.optimizer`` with ``decay="l2"``.
  """
  if learning_rate is None:
    learning_rate = 0.01 if name == "sgd" else 0.001
  return _optimizers.optimizer(
    name,
    learning_rate,
    decay="l2",
    weight_decay=weight_decay,
    momentum=0.9 if name == "sgd" else None,
  )


@dataclasses.dataclass
class Comparison:
  """Flooding against no flooding for one setting, per seed."""

  setting: Setting
  no_flood: np.ndarray  # test accuracy at b = 0, last epoch, per seed
  no_flood_es: np.ndarray  # ... at b = 0, best-validation epoch
  flood: np.ndarray  # at the level chosen by final val acc
  flood_es: np.ndarray  # at the level chosen by best val acc, that epoch
  chosen: np.ndarray  # chosen level per seed (no early stopping)
  chosen_es: np.ndarray  # chosen level per seed (early stopping)
  # Levels whose models never flooded: the very models of b = 0, not chosen per seed.
  never_flooded: tuple[float, ...] = ()

  def p_value(self, early_stopping: bool) -> float:
    """One-sided paired t-test that flooding raises test accuracy."""
    flood = self.flood_es if early_stopping else self.flood
    base = self.no_flood_es if early_stopping else self.no_flood
    return _paired_p(flood - base)

  def to_dict(self) -> dict[str, Any]:
    out: dict[str, Any] = dataclasses.asdict(self.setting)
    for name in ("no_flood", "no_flood_es", "flood", "flood_es", "chosen", "chosen_es"):
      out[name] = np.asarray(getattr(self, name)).tolist()
    out["never_flooded"] = list(self.never_flooded)
    out["p_value"] = self.p_value(False)
    out["p_value_es"] = self.p_value(True)
    return out

  def never_flooded_note(self) -> str | None:
    """One line naming the levels that never flooded, if any."""
    if not self.never_flooded:
      return None
    return f"{self.setting.label}: {never_flooded_line(self.never_flooded)} (not chosen per seed)"


def compare(result: SweepResult, setting: Setting) -> Comparison:
  """Chooses the level per seed by validation and reads the test accuracies.

  A level that never flooded (:func:`never_flooded`) trained the very models
  of ``b = 0``: it is not chosen, and the comparison names it.
  """
  levels = np.asarray(result.flood_levels)
  if not np.any(levels == 0.0):
    raise ValueError("the sweep's levels must include 0.0, the no-flooding baseline.")
  base = int(np.flatnonzero(levels == 0.0)[0])
  never = never_flooded(result)
  flood, flood_es, chosen, chosen_es = choose_per_seed(result, skip=never)
  return Comparison(
    setting=setting,
    no_flood=result.history["test_accuracy"][..., -1][base],
    no_flood_es=result.at_stopping("test_accuracy", "best_val")[base],
    flood=flood,
    flood_es=flood_es,
    chosen=chosen,
    chosen_es=chosen_es,
    never_flooded=tuple(never),
  )


def never_flooded(result: SweepResult) -> list[float]:
  """The levels other than 0 whose models never flooded, on any epoch or seed.

  Their training loss stayed above ``b`` throughout, so every step was plain
  descent: they trained the very models of ``b = 0``. Read from the
  history's ``flooded_fraction`` (0 on every evaluated epoch of every model).

  Examples:
    >>> import numpy as np
    >>> from flood_jax import reproduce
    >>> from flood_jax._result import METRICS, SweepResult
    >>> history = {m: np.zeros((3, 2, 4), np.float32) for m in METRICS}
    >>> history["flooded_fraction"][2, 1, 3] = 0.25  # b = 0.1 flooded once
    >>> result = SweepResult(np.float32([0, 0.01, 0.1]), np.arange(2), history)
    >>> reproduce.never_flooded(result)
    [0.01]
  """
  flooded = result.history.get("flooded_fraction")
  if flooded is None:
    return []
  levels = np.asarray(result.flood_levels)
  flooded = np.asarray(flooded, np.float64).reshape(len(levels), -1)
  never = []
  for level, fractions in zip(levels, flooded, strict=True):
    seen = fractions[np.isfinite(fractions)]
    if level != 0 and seen.size and not np.any(seen > 0):
      never.append(float(_shortest(level)))
  return never


def never_flooded_line(levels: Sequence[float]) -> str:
  """``"b = 0.01, 0.02 never flooded: the same models as b = 0"``."""
  return f"b = {', '.join(f'{b:g}' for b in levels)} never flooded: the same models as b = 0"


def markdown_table(comparisons: Sequence[Comparison]) -> str:
  """Test accuracy (%) mean ± std over seeds, with and without early stopping.

  Each half has the paired difference across seeds (flooding minus no
  flooding, same seed, in points: mean ± std) and the one-sided p-value.
  """
  head = (
    "| setting | no flooding | flooding | Δ | chosen b | p | no flooding (ES) |"
    " flooding (ES) | Δ (ES) | chosen b (ES) | p (ES) |"
  )
  lines = [head, "|" + "---|" * 11]
  for c in comparisons:
    cells = [c.setting.label]
    for acc_base, acc_flood, chosen, es in [
      (c.no_flood, c.flood, c.chosen, False),
      (c.no_flood_es, c.flood_es, c.chosen_es, True),
    ]:
      base_text, flood_text = _pm(acc_base), _pm(acc_flood)
      p = c.p_value(es)
      if np.mean(acc_flood) > np.mean(acc_base):
        flood_text = f"**{flood_text}**"
      diff = _pm(np.asarray(acc_flood) - np.asarray(acc_base))
      cells += [base_text, flood_text, diff, f"{np.mean(chosen):.3f}", _p_text(p)]
    lines.append("| " + " | ".join(cells) + " |")
  notes = [note for c in comparisons if (note := c.never_flooded_note())]
  return "\n".join(lines + (["", *notes] if notes else []))


def synthetic(
  out_dir: str,
  *,
  datasets: Sequence[str] = SYNTHETIC_SETS,
  noise_rates: Sequence[float] = SYNTHETIC_PAPER["noise_rates"],
  optimizers: Sequence[str] = ("sgd", "adam"),
  flood_levels: Sequence[float] = SYNTHETIC_PAPER["flood_levels"],
  seeds: int = SYNTHETIC_PAPER["seeds"],
  epochs: int = SYNTHETIC_PAPER["epochs"],
  n_train: int = 100,
  n_val: int = 100,
  n_test: int = SYNTHETIC_PAPER["n_test"],
  hidden: int = 500,
  depth: int = 4,
  batch_size: int = 200,
  eval_every: int = 2,
  progress: bool = True,
  loggers: LoggerFactory | None = None,
) -> list[Comparison]:
  """The paper's synthetic experiments; writes a table, JSON and figures to ``out_dir``.

  Defaults are :data:`SYNTHETIC_PAPER` and follow the official code
  (``synthetic/demo_synth.py``): batch size
  200 (so with 100 training examples, one full-batch step per epoch), 500
  epochs, the 4x500 BatchNorm MLP. Pass smaller values to fit a time budget;
  what was run is recorded in ``reproduce.json``.
  """
  settings = _grid(datasets, noise_rates, optimizers)
  model = models_lib.MLP(num_classes=2, hidden=hidden, depth=depth)

  def load(setting: Setting):
    return data_lib.load(
      setting.dataset,
      n_train=n_train,
      n_val=n_val,
      n_test=n_test,
      label_noise=setting.label_noise,
      seed=0,
    )

  return _run_protocol(
    "synthetic",
    out_dir,
    settings,
    load,
    lambda s, d: model,
    flood_levels,
    seeds,
    epochs,
    min(batch_size, n_train),
    progress,
    loggers=loggers,
    eval_every=eval_every,
    extra_config=dict(
      n_train=n_train,
      n_val=n_val,
      n_test=n_test,
      hidden=hidden,
      depth=depth,
      batch_size=batch_size,
      eval_every=eval_every,
    ),
  )


def builtin(
  out_dir: str,
  *,
  datasets: Sequence[str] = ("mnist1d",),
  noise_rates: Sequence[float] = (0.0,),
  optimizers: Sequence[str] = ("adam",),
  flood_levels: Sequence[float] = (0.0, 0.02, 0.05, 0.1, 0.2, 0.3),
  seeds: int = 3,
  epochs: int = 100,
  hidden: int = 500,
  depth: int = 4,
  batch_size: int = 100,
  eval_every: int = 1,
  progress: bool = True,
  loggers: LoggerFactory | None = None,
) -> list[Comparison]:
  """The same table on the offline benchmark sets (``mnist1d``, ``digits``)."""
  settings = _grid(datasets, noise_rates, optimizers)

  def load(setting: Setting):
    return data_lib.load(setting.dataset, label_noise=setting.label_noise, seed=0)

  def model(setting: Setting, ds) -> Any:
    return models_lib.MLP(num_classes=ds.num_classes, hidden=hidden, depth=depth)

  return _run_protocol(
    "builtin",
    out_dir,
    settings,
    load,
    model,
    flood_levels,
    seeds,
    epochs,
    batch_size,
    progress,
    loggers=loggers,
    eval_every=eval_every,
    extra_config=dict(hidden=hidden, depth=depth, batch_size=batch_size, eval_every=eval_every),
  )


_BENCHMARK_MODELS = {
  "mnist": "mlp",
  "fashion_mnist": "mlp",
  "kmnist": "mlp",
  "cifar10": "resnet18",
  "cifar100": "resnet18",
  "svhn": "resnet18",
}

# The paper's benchmark protocol (Sec. 4.2) as this project runs it: flood
# levels 0.00 to 0.10 by 0.01, with and without weight decay 1e-5, Adam (lr
# 0.001), 500 epochs, batch size 200, the original training set split 80:20
# (the default split of data.load(..., data_dir=...)), the published test set.
BENCHMARK_PAPER: dict[str, Any] = dict(
  flood_levels=tuple(np.round(np.arange(0, 0.101, 0.01), 2)),
  weight_decays=(0.0, 1e-5),
  seeds=3,
  epochs=500,
  batch_size=200,
)
# The MNIST-family MLP protocol cut to about 30 minutes on an idle 2-core CPU
# (estimated: 800 model-epochs at the 2.4 s per model-epoch of the 4 x 500 MLP
# on 48,000 examples measured with the machine lightly shared; with it heavily
# shared, 53 min per weight decay were measured): 5 of the 11 levels, 20
# of the 500 epochs, 4 seeds (one more than the paper preset: the paired test
# needs them); the data, model, optimizer, batch size, weight decays and
# split are the paper's.
BENCHMARK_CPU: dict[str, Any] = dict(
  flood_levels=(0.0, 0.01, 0.02, 0.05, 0.1),
  weight_decays=(0.0, 1e-5),
  seeds=4,
  epochs=20,
  batch_size=200,
)
BENCHMARK_PRESETS = {"cpu": BENCHMARK_CPU, "paper": BENCHMARK_PAPER}


def benchmark(
  out_dir: str,
  *,
  dataset: str,
  flood_levels: Sequence[float] = BENCHMARK_PAPER["flood_levels"],
  weight_decays: Sequence[float] = BENCHMARK_PAPER["weight_decays"],
  optimizer: str = "adam",
  learning_rate: float | None = None,
  seeds: int = BENCHMARK_PAPER["seeds"],
  epochs: int = BENCHMARK_PAPER["epochs"],
  batch_size: int = BENCHMARK_PAPER["batch_size"],
  model: str | None = None,
  data_dir: str | os.PathLike | None = None,
  augment: bool = False,
  load_options: dict[str, Any] | None = None,
  model_options: dict[str, Any] | None = None,
  eval_every: int = 1,
  progress: bool = True,
  loggers: LoggerFactory | None = None,
) -> list[Comparison]:
  """The paper's benchmark protocol (Sec. 4.2) on an image set.

  MLP for the MNIST family (inputs flattened), ResNet-18 for CIFAR-10/100 and
  SVHN; flood levels 0.00 to 0.10 by 0.01; with and without weight decay;
  with and without early stopping; the level chosen per seed on the
  validation split; one-sided paired t-tests across seeds. Defaults are
  :data:`BENCHMARK_PAPER`; :data:`BENCHMARK_CPU` is the MNIST cut for a 2-core
  CPU.

  The data come from ``data_dir``, a folder with the original files
  (:data:`flood_jax.data.LOCAL_FILES`; the paper's 80:20 split of the
  training set), or else from the Hugging Face Hub (``pip install
  "flood_jax[datasets]"`` and a network once; 10% held out unless
  ``load_options`` says otherwise). ``augment=True`` trains on random crops
  and flips (:func:`flood_jax.data.random_crop_flip`) and holds out 15% for
  validation, as the paper does with augmentation. An interrupted call
  resumes: finished settings are read back and the current sweep continues
  from its checkpoint.

  Examples:
    >>> from flood_jax import reproduce
    >>> reproduce.BENCHMARK_CPU["epochs"], len(reproduce.BENCHMARK_PAPER["flood_levels"])
    (20, 11)
  """
  if dataset not in _BENCHMARK_MODELS:
    raise ValueError(
      f"unknown benchmark data set {dataset!r}; use one of {sorted(_BENCHMARK_MODELS)}."
    )
  model_name = model or _BENCHMARK_MODELS[dataset]
  load_options = dict(load_options or {})
  if model_name == "mlp":
    load_options.setdefault("flatten", True)
  if data_dir is not None:
    load_options["data_dir"] = os.fspath(data_dir)
  augment_fn = None
  if augment:
    if load_options.get("flatten"):
      raise ValueError("augment=True needs image inputs; it does not apply to a flattened MLP.")
    augment_fn = data_lib.random_crop_flip()
  ds = _load_benchmark(dataset, load_options, augment)
  assert ds.num_classes is not None  # Dataset infers it on construction
  net = models_lib.get_model(model_name, ds.num_classes, **(model_options or {}))
  settings = [Setting(dataset, 0.0, optimizer, wd) for wd in weight_decays]
  shown = {k: v for k, v in load_options.items() if v is not None}
  return _run_protocol(
    f"benchmark_{dataset}",
    out_dir,
    settings,
    lambda s: ds,
    lambda s, d: net,
    flood_levels,
    seeds,
    epochs,
    batch_size,
    progress,
    loggers=loggers,
    learning_rate=learning_rate,
    eval_every=eval_every,
    augment=augment_fn,
    extra_config=dict(
      model=model_name,
      load_options=shown,
      model_options=model_options or {},
      batch_size=batch_size,
      augment=augment,
      split=dict(train=ds.num_train, val=len(ds.y_val), test=len(ds.y_test)),
    ),
  )


def _load_benchmark(dataset: str, load_options: dict[str, Any], augment: bool):
  """Loads the set; with augmentation, 15% of the training set is held out (the paper's 85:15)."""
  options = {k: v for k, v in load_options.items() if v is not None}
  if augment and "n_val" not in options:
    full = data_lib.load(dataset, **{**options, "n_val": 1, "n_test": 1})
    options["n_val"] = max(1, round(0.15 * (full.num_train + 1)))
  return data_lib.load(dataset, **options)


def _run_protocol(
  name,
  out_dir,
  settings,
  load,
  make_model,
  flood_levels,
  seeds,
  epochs,
  batch_size,
  progress,
  *,
  loggers: LoggerFactory | None = None,
  learning_rate=None,
  eval_every=1,
  augment=None,
  extra_config=None,
) -> list[Comparison]:
  from flood_jax import plots  # matplotlib is imported only when plotting

  levels = [float(b) for b in flood_levels]
  if 0.0 not in levels:
    levels = [0.0, *levels]
  seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
  config = dict(
    extra_config or {},
    flood_levels=levels,
    seeds=seed_list,
    epochs=epochs,
    settings=[s.label for s in settings],
  )

  def run_setting(prefix: str, setting: Setting) -> tuple[Setting, SweepResult]:
    slug = _slug(setting)

    def train(checkpoint_dir: str) -> SweepResult:
      ds = load(setting)
      model = make_model(setting, ds)
      print(f"{prefix}: {len(levels)} levels x {len(seed_list)} seeds, {epochs} epochs", flush=True)
      return sweep(
        model,
        ds,
        flood_levels=levels,
        seeds=seed_list,
        optimizer=make_optimizer(setting.optimizer, learning_rate, setting.weight_decay),
        epochs=epochs,
        batch_size=min(batch_size, ds.num_train),
        progress=progress,
        checkpoint_dir=checkpoint_dir,
        eval_every=eval_every,
        loggers=None if loggers is None else loggers(slug),
        **({} if augment is None else {"augment": augment}),
      )

    arguments = _arguments(config, setting=setting.label, learning_rate=learning_rate)
    result, _, read = _kept_sweep(out_dir, slug, train, arguments)
    if read:  # finished in an earlier, interrupted call
      print(f"{prefix}: done earlier, read {os.path.join(out_dir, 'runs', slug, 'results.json')}")
    for plot, figure in [
      (plots.plot_curves, f"curves_{slug}.png"),
      (plots.plot_accuracy_vs_level, f"accuracy_vs_level_{slug}.png"),
    ]:
      path = os.path.join(out_dir, "figures", figure)
      with _writing(out_dir, path):
        plot(result, path)
    return setting, result

  def write(runs: list[tuple[Setting, SweepResult]], wall_time: float) -> None:
    _write_outputs(name, out_dir, [compare(r, s) for s, r in runs], wall_time, config)

  runs = _protocol(name, out_dir, settings, run_setting, write)
  path = os.path.join(out_dir, "figures", f"{name}_accuracy_vs_level.png")
  with _writing(out_dir, path):
    _summary_figure(runs, path)
  return [compare(result, setting) for setting, result in runs]


_T = TypeVar("_T")


@contextlib.contextmanager
def _writing(out_dir: str, what: str) -> Iterator[None]:
  """Turns an ``OSError`` while writing ``what`` into a :class:`NotWrittenError`."""
  try:
    yield
  except NotWrittenError:
    raise
  except OSError as err:
    raise NotWrittenError(
      err.errno,
      f"could not write {what}: {err.strerror or first_line(err)}; nothing else is lost:"
      f" the finished settings in {os.path.join(out_dir, 'runs')} and the checkpoint of"
      " the one in progress are kept, so the same call, once there is space, reads them"
      " back and writes the rest",
    ) from None


def owner(name: str) -> str:
  """Who writes a protocol's output directory, as its marker names it."""
  return f"flood-jax reproduce {name}"


def claim_out(out_dir: str, name: str, option: str = "out_dir", write: bool = True) -> None:
  """Checks that protocol ``name`` may write into ``out_dir``; marks it as its own.

  A directory is written only if it is new, empty, or this protocol's
  (its marker, or the ``reproduce.json`` of an older version that wrote no
  marker): one line otherwise (``ValueError``), and nothing of the user's is
  overwritten. ``option`` names it in the message (``--out`` on the command line).
  """
  claim_directory(option, out_dir, owner(name), ours=_older_output(out_dir, name), write=write)


def _older_output(out_dir: str, name: str) -> bool:
  """Whether ``out_dir`` is protocol ``name``'s output from a version that wrote no marker:
  its ``reproduce.json`` names it, or it holds only an interrupted first setting."""
  if os.path.exists(os.path.join(out_dir, MARKER)) or not os.path.isdir(out_dir):
    return False
  path = os.path.join(out_dir, "reproduce.json")
  with contextlib.suppress(OSError, ValueError, AttributeError), open(path) as f:
    return json.load(f).get("protocol") == name
  return os.listdir(out_dir) == ["checkpoints"]


def _arguments(config: dict[str, Any], **more: Any) -> dict[str, Any]:
  """What a finished setting was trained with, as JSON reads it back: the protocol's
  config (less the list of settings and where the data were read from) and ``more``."""
  arguments = {k: v for k, v in config.items() if k != "settings"}
  if isinstance(arguments.get("load_options"), dict):
    arguments["load_options"] = {
      k: v for k, v in arguments["load_options"].items() if k != "data_dir"
    }
  return json.loads(json.dumps({**arguments, **more}, default=_plain))


def _plain(value: Any) -> Any:
  """NumPy scalars and arrays (and tuples) as JSON values."""
  if isinstance(value, np.generic | np.ndarray):
    return value.tolist()
  return repr(value)


def _protocol(
  name: str,
  out_dir: str,
  settings: Sequence[Setting],
  run_setting: Callable[[str, Setting], _T],
  write: Callable[[list[_T], float], None],
) -> list[_T]:
  """The loop of every protocol: each setting in turn, the outputs rewritten after each.

  ``run_setting(prefix, setting)`` trains a setting (or reads it back) with
  :func:`_kept`, so an interrupted protocol resumes: finished settings are
  read, the one in progress continues from its checkpoint. ``prefix`` is
  ``"[i/n] label"`` for its messages; ``write(done, wall_time)`` writes the
  tables and JSON of the settings done so far. ``out_dir`` is claimed for
  the protocol ``name`` first (:func:`claim_out`).
  """
  claim_out(out_dir, name)
  start = time.perf_counter()
  done: list[_T] = []
  for i, setting in enumerate(settings):
    done.append(run_setting(f"[{i + 1}/{len(settings)}] {setting.label}", setting))
    with _writing(out_dir, f"the tables and reproduce.json in {out_dir}"):
      write(done, time.perf_counter() - start)
  with contextlib.suppress(OSError):  # empty once every setting finished
    os.rmdir(os.path.join(out_dir, "checkpoints"))
  return done


def _kept(
  out_dir: str,
  key: str,
  train: Callable[[str], _T],
  *,
  save: Callable[[_T, str], object],
  load: Callable[[str], _T],
  done: str,
  arguments: dict[str, Any],
) -> tuple[_T, float, bool]:
  """What an earlier call kept in ``OUT/runs/KEY/``, or else trained now and kept there.

  ``train(checkpoint_dir)`` trains with its checkpoint in
  ``OUT/checkpoints/KEY/``, so a call interrupted in it continues from there;
  ``save(value, run_dir)`` keeps the value (``done`` is the file it writes
  last, the mark of a finished part), then the checkpoint is removed.
  Returns ``(value, seconds, read)``: ``seconds`` is the wall time of the call
  that trained it (of the last one, for a part resumed from its checkpoint)
  and ``read`` says whether it was read back rather than trained.
  ``arguments`` (JSON values) are kept beside it, in ``arguments.json``: a
  kept value is read back only for the same arguments (``ValueError``, one
  line, for others; a part in progress has its checkpoint's fingerprint).
  """
  run_dir = os.path.join(out_dir, "runs", key)
  checkpoint_dir = os.path.join(out_dir, "checkpoints", key)
  seconds_path = os.path.join(run_dir, "seconds.json")
  arguments_path = os.path.join(run_dir, "arguments.json")
  if _is_kept(out_dir, key, done):
    _check_arguments(arguments_path, arguments)
    seconds = math.nan
    if os.path.exists(seconds_path):  # (absent in the runs of older versions)
      with open(seconds_path) as f:
        seconds = float(json.load(f)["seconds"])
    return load(run_dir), seconds, True
  tic = time.perf_counter()
  value = train(checkpoint_dir)
  seconds = time.perf_counter() - tic
  with _writing(out_dir, run_dir):
    os.makedirs(run_dir, exist_ok=True)
    with open(seconds_path, "w") as f:
      json.dump({"seconds": seconds}, f)
    _write_json_file(arguments_path, arguments)
    save(value, run_dir)
  shutil.rmtree(checkpoint_dir, ignore_errors=True)  # the value is on disk; no weights kept
  with contextlib.suppress(OSError):  # a setting's folder of parts, once the last is kept
    os.rmdir(os.path.dirname(checkpoint_dir))
  return value, seconds, False


def _check_arguments(path: str, arguments: dict[str, Any]) -> None:
  """``ValueError`` (one line) unless the kept setting at ``path`` had these ``arguments``.

  A setting kept by a version that wrote no ``arguments.json`` is read back as before.
  """
  if not os.path.exists(path):
    return
  run_dir = os.path.dirname(path)
  try:
    saved = _read_json_file(path)
    if not isinstance(saved, dict):
      raise ValueError(f"a {type(saved).__name__}, not an object")
  except ValueError as err:
    raise ValueError(
      f"{path} is damaged ({first_line(err)}), so what {run_dir} was trained with is"
      f" unknown; delete {run_dir} to train it again."
    ) from None
  changed = [
    f"{k} {_brief(arguments.get(k))} (it has {_brief(saved.get(k))})"
    for k in sorted(set(saved) | set(arguments))
    if saved.get(k) != arguments.get(k)
  ]
  if changed:
    raise ValueError(
      f"{run_dir} holds a finished setting trained with other arguments:"
      f" {'; '.join(changed)}; pass its arguments to reuse it, or choose another"
      f" output directory (or delete {run_dir} to train it again)."
    )


def _brief(value: Any) -> str:
  """A value for a one-line message: a long list shortened."""
  text = json.dumps(value)
  return text if len(text) <= 60 else text[:57] + "..."


def _is_kept(out_dir: str, key: str, done: str) -> bool:
  """Whether :func:`_kept` finished ``key`` in an earlier call (and none is training it)."""
  return os.path.exists(os.path.join(out_dir, "runs", key, done)) and not os.path.isdir(
    os.path.join(out_dir, "checkpoints", key)
  )


def _kept_sweep(
  out_dir: str, key: str, train: Callable[[str], SweepResult], arguments: dict[str, Any]
) -> tuple[SweepResult, float, bool]:
  """:func:`_kept` for a sweep: its ``results.json`` and ``history.csv``, without weights."""
  return _kept(
    out_dir,
    key,
    train,
    save=lambda result, run_dir: result.save(run_dir, with_params=False),
    load=_load_sweep,
    done="results.json",
    arguments=arguments,
  )


def _load_sweep(run_dir: str) -> SweepResult:
  """A kept sweep as it was trained: its curves float32 again (JSON reads them as float64)."""
  result = SweepResult.load(run_dir)
  history = {k: v.astype(np.float32) for k, v in result.history.items()}
  return dataclasses.replace(result, history=history)


def _write_outputs(name, out_dir, comparisons, wall_time, config) -> None:
  table = markdown_table(comparisons)
  with open(os.path.join(out_dir, f"{name}_table.md"), "w") as f:
    f.write(
      f"Test accuracy (%), mean ± std over seeds; p: one-sided paired t-test"
      f" (flooding > no flooding) across seeds; ES: early stopping at the"
      f" best-validation epoch. Wall time so far: {wall_time:.0f} s.\n\n"
    )
    f.write(table + "\n")
  _write_json(name, out_dir, comparisons, wall_time, config)


def _write_json(name, out_dir, comparisons, wall_time, config) -> None:
  """``reproduce.json``: the protocol, its settings and every comparison."""
  with open(os.path.join(out_dir, "reproduce.json"), "w") as f:
    json.dump(
      {
        "protocol": name,
        "wall_time": wall_time,
        "config": config,
        "comparisons": [c.to_dict() for c in comparisons],
      },
      f,
      indent=1,
    )


def _summary_figure(runs, path) -> None:
  """Final test accuracy against the flood level, one panel per setting."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  n = len(runs)
  cols = min(4, n)
  rows = -(-n // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
  for ax, (setting, result) in zip(axes.ravel(), runs, strict=False):
    acc = 100 * result.history["test_accuracy"][..., -1]
    acc_es = 100 * result.at_stopping("test_accuracy", "best_val")
    for values, label in [(acc, "last epoch"), (acc_es, "early stopping")]:
      mean, std = values.mean(1), values.std(1)
      ax.plot(result.flood_levels, mean, label=label)
      ax.fill_between(result.flood_levels, mean - std, mean + std, alpha=0.2)
    ax.set_title(setting.label, fontsize=8)
    ax.set_xlabel("flood level b", fontsize=8)
    ax.set_ylabel("test accuracy (%)", fontsize=8)
    ax.tick_params(labelsize=7)
  for ax in axes.ravel()[n:]:
    ax.axis("off")
  axes.ravel()[0].legend(fontsize=7)
  fig.tight_layout()
  os.makedirs(os.path.dirname(path), exist_ok=True)
  fig.savefig(path, dpi=80)
  plt.close(fig)


def _grid(
  datasets: Sequence[str], noise_rates: Sequence[float], optimizers: Sequence[str]
) -> list[Setting]:
  """Every (data set, noise rate, optimizer) combination, in that order."""
  return [Setting(d, r, o) for d in datasets for r in noise_rates for o in optimizers]


def _argmax_first(scores: np.ndarray) -> np.ndarray:
  """Per seed (column), the first level with the highest score (ties: smaller b)."""
  return np.argmax(np.nan_to_num(scores, nan=-np.inf), axis=0)


def _pm(values: Iterable[float]) -> str:
  values = 100 * np.asarray(list(values), np.float64)
  return f"{values.mean():.2f} ± {values.std():.2f}"


def _p_text(p: float) -> str:
  return "n/a" if not np.isfinite(p) else f"{p:.3f}"


def _slug(setting: Setting) -> str:
  text = f"{setting.dataset}_noise{setting.label_noise:g}_{setting.optimizer}"
  if setting.weight_decay:
    text += f"_wd{setting.weight_decay:g}"
  return text


# -- AdaFlood against flooding and iFlood (issue 12) ----------------------------

# Cut toward 15 minutes on the 2-core CPU (measured: 32 min with the machine
# shared, 2 to 8 min per setting as the load varied): the synthetic sets at label
# noise 0.05 and 0.1, Adam only, 5 seeds, 100 epochs evaluated every 5th (the
# evaluation of 1,200 examples costs 4 training steps on 100), 5 flood levels
# (where reproduce synthetic chose b) and 5 values of gamma, 5 fold models.
ADAFLOOD_CPU: dict[str, Any] = dict(
  datasets=SYNTHETIC_SETS,
  noise_rates=(0.05, 0.1),
  optimizers=("adam",),
  flood_levels=(0.0, 0.1, 0.2, 0.3, 0.4),
  gammas=(0.0, 0.5, 0.8, 0.95, 1.0),
  seeds=5,
  epochs=100,
  n_test=1000,
  folds=5,
  eval_every=5,
)
METHODS = ("flood", "iflood", "adaflood")


@dataclasses.dataclass
class MethodsComparison:
  """Flooding, iFlood and AdaFlood against no flooding for one setting, per seed.

  Each method's level (``b``, or ``gamma`` for AdaFlood) is chosen per seed by
  validation accuracy, at the last epoch and with early stopping (``_es``).
  """

  setting: Setting
  no_flood: np.ndarray  # test accuracy at b = 0, last epoch, per seed
  no_flood_es: np.ndarray
  test: dict[str, np.ndarray]  # method -> test accuracy at its chosen level
  test_es: dict[str, np.ndarray]
  chosen: dict[str, np.ndarray]  # method -> chosen b (gamma for AdaFlood), per seed
  chosen_es: dict[str, np.ndarray]
  seconds: dict[str, float]  # method -> wall time of its sweep ("folds": the fold models)
  num_models: dict[str, int]
  heldout_loss: dict[str, float | None] = dataclasses.field(default_factory=dict)

  def p_value(self, method: str, against: str = "none", early_stopping: bool = False) -> float:
    """One-sided paired t-test across seeds that ``method`` beats ``against`` ("none": b = 0)."""
    test = self.test_es if early_stopping else self.test
    base = (
      (self.no_flood_es if early_stopping else self.no_flood)
      if against == "none"
      else test[against]
    )
    return _paired_p(test[method] - base)

  def to_dict(self) -> dict[str, Any]:
    out: dict[str, Any] = dataclasses.asdict(self.setting)
    out["no_flood"] = self.no_flood.tolist()
    out["no_flood_es"] = self.no_flood_es.tolist()
    for name in ("test", "test_es", "chosen", "chosen_es"):
      out[name] = {k: np.asarray(v).tolist() for k, v in getattr(self, name).items()}
    out["seconds"], out["num_models"] = self.seconds, self.num_models
    out["heldout_loss"] = self.heldout_loss  # mean over clean and flipped training labels
    out["p_values"] = {
      f"{m}>{a}{'_es' if es else ''}": self.p_value(m, a, es)
      for es in (False, True)
      for m, a in [
        ("flood", "none"),
        ("iflood", "none"),
        ("adaflood", "none"),
        ("adaflood", "flood"),
        ("adaflood", "iflood"),
      ]
    }
    return out


def choose_per_seed(
  result: SweepResult, skip: Sequence[float] = ()
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """Per seed, the level chosen by validation and the test accuracy there.

  Returns ``(test, test_es, chosen, chosen_es)``: without early stopping (last
  epoch) and with it (best-validation epoch); ties go to the first level.
  ``skip``: levels not to choose (those that never flooded: b = 0's models).
  """
  seeds = np.arange(len(result.seeds))
  levels = np.asarray(result.flood_levels)
  skipped = np.isin(levels, np.asarray(skip, levels.dtype))[:, None]
  pick = _argmax_first(np.where(skipped, np.nan, result.val_score("final")))
  pick_es = _argmax_first(np.where(skipped, np.nan, result.val_score("best_val")))
  test_final = result.history["test_accuracy"][..., -1]
  test_es = result.at_stopping("test_accuracy", "best_val")
  return test_final[pick, seeds], test_es[pick_es, seeds], levels[pick], levels[pick_es]


def methods_table(comparisons: Sequence[MethodsComparison], early_stopping: bool = False) -> str:
  """Test accuracy (%) per method, mean ± std over seeds, with paired p-values."""
  head = (
    "| setting | no flooding | flooding | iFlood | AdaFlood | b (flood) | b (iFlood)"
    " | gamma | p Ada > none | p Ada > flood | p Ada > iFlood | p flood > none |"
    " p iFlood > none | fold models |"
  )
  lines = [head, "|" + "---|" * 14]
  for c in comparisons:
    test = c.test_es if early_stopping else c.test
    chosen = c.chosen_es if early_stopping else c.chosen
    base = c.no_flood_es if early_stopping else c.no_flood
    means = {m: np.mean(test[m]) for m in METHODS}
    best = max(means.values())
    cells = [c.setting.label, _pm(base)]
    cells += [
      f"**{_pm(test[m])}**" if means[m] == best and best > np.mean(base) else _pm(test[m])
      for m in METHODS
    ]
    cells += [f"{np.mean(chosen[m]):.2f}" for m in METHODS]
    cells += [
      _p_text(c.p_value("adaflood", a, early_stopping)) for a in ("none", "flood", "iflood")
    ]
    cells += [_p_text(c.p_value(m, "none", early_stopping)) for m in ("flood", "iflood")]
    cells.append(
      f"{c.num_models['folds']} models, {c.seconds['folds']:.0f} s"
      f" ({100 * c.seconds['folds'] / c.seconds['adaflood']:.0f}% of AdaFlood's sweep)"
    )
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def adaflood(
  out_dir: str,
  *,
  datasets: Sequence[str] = ADAFLOOD_CPU["datasets"],
  noise_rates: Sequence[float] = ADAFLOOD_CPU["noise_rates"],
  optimizers: Sequence[str] = ADAFLOOD_CPU["optimizers"],
  flood_levels: Sequence[float] = ADAFLOOD_CPU["flood_levels"],
  gammas: Sequence[float] = ADAFLOOD_CPU["gammas"],
  seeds: int = ADAFLOOD_CPU["seeds"],
  epochs: int = ADAFLOOD_CPU["epochs"],
  folds: int = ADAFLOOD_CPU["folds"],
  n_train: int = 100,
  n_val: int = 100,
  n_test: int = ADAFLOOD_CPU["n_test"],
  hidden: int = 500,
  depth: int = 4,
  batch_size: int = 200,
  eval_every: int = ADAFLOOD_CPU["eval_every"],
  progress: bool = True,
  loggers: LoggerFactory | None = None,
) -> list[MethodsComparison]:
  """Flooding vs iFlood vs AdaFlood; writes a table and JSON to ``out_dir``.

  Per setting (data set, label noise, optimizer) four things train on the
  same data, paired by seed: flooding and iFlood over ``flood_levels`` (0 is
  added: "no flooding" is flooding's ``b = 0``), the AdaFlood fold models
  (:func:`flood_jax.adaflood_levels` with ``gamma = 0``: ``folds`` models, one
  seed, the main models' architecture, optimizer and epochs), then AdaFlood
  over ``gammas`` (1, no flooding, is added) on their held-out losses. Each
  method's level is chosen per seed by validation accuracy, as in
  :func:`synthetic`; one-sided paired t-tests across seeds compare the
  methods. The synthetic sets use the data of :func:`synthetic`; ``mnist1d``
  its standard split (``n_train``/``n_test`` do not apply).

  An interrupted call resumes, as :func:`synthetic` does: each part of a
  setting (``flood``, ``iflood``, ``folds``: the held-out losses, ``adaflood``)
  is kept in ``out_dir/runs/SETTING/PART/`` once it finishes and read back by
  a later call with the same arguments, and the part in progress continues
  from its checkpoint in ``out_dir/checkpoints/SETTING/PART/``. Its
  ``seconds`` are then those of the call that finished it.
  """
  settings = _grid(datasets, noise_rates, optimizers)
  levels = sorted({0.0, *(float(b) for b in flood_levels)})
  gamma_list = sorted({1.0, *(float(g) for g in gammas)})
  seed_list = list(range(seeds))
  # The fold models' seed differs from the main models': their held-out losses
  # are not tied to any one main run.
  fold_seed = 1000
  config = dict(
    flood_levels=levels,
    gammas=gamma_list,
    seeds=seed_list,
    epochs=epochs,
    folds=folds,
    fold_seed=fold_seed,
    n_train=n_train,
    n_val=n_val,
    n_test=n_test,
    hidden=hidden,
    depth=depth,
    batch_size=batch_size,
    eval_every=eval_every,
    settings=[s.label for s in settings],
  )

  def run_setting(prefix: str, setting: Setting) -> MethodsComparison:
    slug = _slug(setting)

    def arguments(part: str) -> dict[str, Any]:
      return _arguments(config, setting=setting.label, part=part)

    @functools.cache
    def data() -> tuple[Any, np.ndarray]:
      """The setting's data set and which labels the noise changed (read only to train)."""

      def load(noise):
        if setting.dataset == "mnist1d":
          return data_lib.load("mnist1d", label_noise=noise, seed=0)
        return data_lib.load(
          setting.dataset, n_train=n_train, n_val=n_val, n_test=n_test, label_noise=noise, seed=0
        )

      ds = load(setting.label_noise)
      # The labels the noise changed (the clean data do not depend on the noise rate).
      return ds, np.asarray(load(0.0).y_train) != np.asarray(ds.y_train)

    def model(ds) -> Any:
      assert ds.num_classes is not None  # Dataset infers it on construction
      return models_lib.MLP(num_classes=ds.num_classes, hidden=hidden, depth=depth)

    def kw(ds) -> dict[str, Any]:
      return dict(
        seeds=seed_list,
        epochs=epochs,
        batch_size=min(batch_size, ds.num_train),
        eval_every=eval_every,
        progress=progress,
      )

    # Each part of the setting, in order, and the file that marks it kept.
    parts = {
      "flood": "results.json",
      "iflood": "results.json",
      "folds": "folds.json",
      "adaflood": "results.json",
    }
    if not all(_is_kept(out_dir, f"{slug}/{p}", done) for p, done in parts.items()):
      data()  # loaded before any part's clock starts, as the seconds were always measured
    print(
      f"{prefix}: flooding and iFlood at {len(levels)} levels, {folds} fold models,"
      f" AdaFlood at {len(gamma_list)} gammas; {len(seed_list)} seeds, {epochs} epochs",
      flush=True,
    )
    results: dict[str, SweepResult] = {}
    seconds: dict[str, float] = {}

    def said(part: str, read: bool) -> None:
      if read:  # finished in an earlier, interrupted call
        path = os.path.join(out_dir, "runs", slug, part, parts[part])
        print(f"  {part}: done earlier, read {path}")

    for objective in ("flood", "iflood"):

      def train(checkpoint_dir: str, objective=objective) -> SweepResult:
        ds, _ = data()
        return sweep(
          model(ds),
          ds,
          objective=objective,
          flood_levels=levels,
          optimizer=make_optimizer(setting.optimizer),
          loggers=None if loggers is None else loggers(f"{slug}-{objective}"),
          checkpoint_dir=checkpoint_dir,
          **kw(ds),
        )

      results[objective], seconds[objective], read = _kept_sweep(
        out_dir, f"{slug}/{objective}", train, arguments(objective)
      )
      said(objective, read)

    def train_folds(checkpoint_dir: str) -> dict[str, Any]:
      ds, flipped = data()
      heldout = adaflood_levels(
        model(ds),
        ds,
        folds=folds,
        gamma=0.0,
        seeds=(fold_seed,),
        optimizer=make_optimizer(setting.optimizer),
        epochs=epochs,
        batch_size=min(batch_size, ds.num_train - -(-ds.num_train // folds)),
        progress=progress,
        checkpoint_dir=checkpoint_dir,
      )
      return {
        "heldout": heldout.tolist(),  # float32 values: exact in JSON
        "flipped": int(flipped.sum()),
        # The mean held-out loss over clean and flipped training labels.
        "heldout_loss": {
          "clean": float(heldout[~flipped].mean()),
          "flipped": float(heldout[flipped].mean()) if flipped.any() else None,
        },
      }

    fold_record, seconds["folds"], read = _kept(
      out_dir,
      f"{slug}/folds",
      train_folds,
      save=lambda record, run_dir: _write_json_file(os.path.join(run_dir, "folds.json"), record),
      load=lambda run_dir: _read_json_file(os.path.join(run_dir, "folds.json")),
      done="folds.json",
      arguments=arguments("folds"),
    )
    said("folds", read)
    heldout = np.asarray(fold_record["heldout"], np.float32)

    def train_adaflood(checkpoint_dir: str) -> SweepResult:
      ds, _ = data()
      return sweep(
        model(ds),
        ds,
        objective="adaflood",
        per_example_levels=heldout,
        gamma=gamma_list,
        optimizer=make_optimizer(setting.optimizer),
        loggers=None if loggers is None else loggers(f"{slug}-adaflood"),
        checkpoint_dir=checkpoint_dir,
        **kw(ds),
      )

    results["adaflood"], seconds["adaflood"], read = _kept_sweep(
      out_dir, f"{slug}/adaflood", train_adaflood, arguments("adaflood")
    )
    said("adaflood", read)
    test, test_es, chosen, chosen_es = {}, {}, {}, {}
    for method, result in results.items():
      test[method], test_es[method], chosen[method], chosen_es[method] = choose_per_seed(result)
    heldout_means = fold_record["heldout_loss"]
    print(
      f"  seconds: {', '.join(f'{k} {v:.0f}' for k, v in seconds.items())};"
      f" mean held-out loss: clean labels {heldout_means['clean']:.3f},"
      f" flipped labels ({fold_record['flipped']})"
      f" {heldout_means['flipped'] or float('nan'):.3f}",
      flush=True,
    )
    return MethodsComparison(
      setting=setting,
      no_flood=results["flood"].history["test_accuracy"][0, :, -1],
      no_flood_es=results["flood"].at_stopping("test_accuracy", "best_val")[0],
      test=test,
      test_es=test_es,
      chosen=chosen,
      chosen_es=chosen_es,
      seconds=seconds,
      num_models={
        "folds": folds,
        **{m: int(np.prod(r.history["val_loss"].shape[:-1])) for m, r in results.items()},
      },
      heldout_loss=heldout_means,
    )

  def write(comparisons: list[MethodsComparison], wall_time: float) -> None:
    _write_methods_outputs(out_dir, comparisons, wall_time, config)

  return _protocol("adaflood", out_dir, settings, run_setting, write)


def _write_json_file(path: str, record: dict[str, Any]) -> None:
  """Writes ``record`` to ``path`` whole or not at all (a temporary file, then a rename)."""
  with open(path + ".tmp", "w") as f:
    json.dump(record, f)
  os.replace(path + ".tmp", path)


def _read_json_file(path: str) -> dict[str, Any]:
  with open(path) as f:
    return json.load(f)


def _write_methods_outputs(out_dir, comparisons, wall_time, config) -> None:
  with open(os.path.join(out_dir, "adaflood_table.md"), "w") as f:
    f.write(
      f"Test accuracy (%), mean ± std over seeds; each method's level chosen per seed"
      f" by validation; p: one-sided paired t-test across seeds. Wall time so far:"
      f" {wall_time:.0f} s.\n\nLast epoch:\n\n{methods_table(comparisons)}\n\n"
      f"Early stopping:\n\n{methods_table(comparisons, early_stopping=True)}\n"
    )
  _write_json("adaflood", out_dir, comparisons, wall_time, config)


# -- Population-based training of the flood level against the grid and Halving (issue 31) --

# The synthetic protocol cut toward 10 minutes on the shared 2-core CPU (5 min measured;
# REPRODUCTION.md, "PBT of the flood level"): the three synthetic sets at label noise 0.1,
# Adam only, 6 of the synthetic preset's 11 levels, 5 seeds, 40 of its 100 epochs evaluated
# every 4th, 500 test examples. MNIST-1D is ``datasets=("mnist1d",)`` (with a smaller MLP
# to fit the same budget).
PBT_CPU: dict[str, Any] = dict(
  datasets=SYNTHETIC_SETS,
  noise_rates=(0.1,),
  optimizers=("adam",),
  flood_levels=(0.0, 0.1, 0.2, 0.3, 0.4, 0.5),
  seeds=5,
  epochs=40,
  n_test=500,
  eval_every=4,
)
PBT_METHODS = ("grid", "halving", "pbt")
_PBT_LABELS = {"grid": "grid", "halving": "Halving", "pbt": "PBT"}


@dataclasses.dataclass
class PBTComparison:
  """PBT's chosen member against the grid's and Halving's chosen level, for one setting.

  Per seed, each method's choice is the run with the best final validation accuracy
  among that seed's (ties: the first; Halving's pruned runs are never chosen), read at the
  last epoch: ``test``/``loss`` map a method to its test accuracy/loss per seed,
  ``chosen`` to the level (PBT: the one the winner ended with), ``model_epochs`` to the
  epochs it trained over all its models, ``seconds`` to its sweep's wall time.
  """

  setting: Setting
  test: dict[str, np.ndarray]
  loss: dict[str, np.ndarray]
  chosen: dict[str, np.ndarray]
  model_epochs: dict[str, int]
  seconds: dict[str, float]

  def p_value(self, against: str, metric: str = "accuracy") -> float:
    """One-sided paired t-test across seeds that PBT beats ``against``: a higher test
    accuracy, or (``metric="loss"``) a lower test loss."""
    if metric == "loss":
      return _paired_p(self.loss[against] - self.loss["pbt"])
    return _paired_p(self.test["pbt"] - self.test[against])

  def to_dict(self) -> dict[str, Any]:
    out: dict[str, Any] = dataclasses.asdict(self.setting)
    for name in ("test", "loss", "chosen"):
      out[name] = {k: np.asarray(v).tolist() for k, v in getattr(self, name).items()}
    out["model_epochs"], out["seconds"] = self.model_epochs, self.seconds
    out["p_values"] = {
      f"pbt>{a}_{m}": self.p_value(a, m) for m in ("accuracy", "loss") for a in ("grid", "halving")
    }
    return out


def choose_member_per_seed(result: SweepResult) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Per seed, the run with the best final validation score: ``(test accuracy, test loss,
  level)`` at the last epoch (the level a PBT member ended with; ties: the first run)."""
  seeds = len(result.seeds)
  scores = result.val_score("final").reshape(-1, seeds)
  pick = _argmax_first(scores)
  columns = np.arange(seeds)

  def final(key: str) -> np.ndarray:
    return np.asarray(result.history[key])[..., -1].reshape(-1, seeds)[pick, columns]

  if result.level_name in result.history:  # PBT: the level each member trained with
    level = final(result.level_name)
  else:
    levels = np.array([c[result.level_name] for c in result.configurations()], np.float64)
    level = levels[pick]
  return final("test_accuracy"), final("test_loss"), level


def model_epochs(result: SweepResult) -> int:
  """Epochs trained over all models: a pruned configuration's stop where Halving stopped it."""
  pruned_at = np.asarray(result.pruned_at)
  per_config = np.where(pruned_at > 0, pruned_at, result.num_epochs)
  return int(per_config.sum()) * len(result.seeds)


def pbt_table(comparisons: Sequence[PBTComparison], metric: str = "accuracy") -> str:
  """Test accuracy (%) or test loss per method, mean ± std over seeds, with the paired
  differences (PBT minus the other, same seed) and one-sided p-values that PBT is better."""
  loss = metric == "loss"
  fmt = _pm_loss if loss else _pm
  head = "| setting | grid | Halving | PBT | PBT - grid | p | PBT - Halving | p |" + (
    "" if loss else " b grid | b Halving | b PBT (end) | model-epochs grid / Halving / PBT |"
  )
  lines = [head, "|" + "---|" * (8 if loss else 12)]
  for c in comparisons:
    values = c.loss if loss else c.test
    means = {m: np.mean(values[m]) for m in PBT_METHODS}
    best = (min if loss else max)(means.values())
    cells = [c.setting.label]
    cells += [f"**{fmt(values[m])}**" if means[m] == best else fmt(values[m]) for m in PBT_METHODS]
    for against in ("grid", "halving"):
      cells += [fmt(values["pbt"] - values[against]), _p_text(c.p_value(against, metric))]
    if not loss:
      cells += [f"{np.mean(c.chosen[m]):.3f}" for m in PBT_METHODS]
      cells.append(" / ".join(f"{c.model_epochs[m]:,}" for m in PBT_METHODS))
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def _pm_loss(values: Iterable[float]) -> str:
  values = np.asarray(list(values), np.float64)
  return f"{values.mean():.3f} ± {values.std():.3f}"


def pbt(
  out_dir: str,
  *,
  datasets: Sequence[str] = PBT_CPU["datasets"],
  noise_rates: Sequence[float] = PBT_CPU["noise_rates"],
  optimizers: Sequence[str] = PBT_CPU["optimizers"],
  flood_levels: Sequence[float] = PBT_CPU["flood_levels"],
  seeds: int = PBT_CPU["seeds"],
  epochs: int = PBT_CPU["epochs"],
  interval: int | None = None,
  fraction: float = 0.25,
  halving: Sequence[Any] | None = None,
  n_train: int = 100,
  n_val: int = 100,
  n_test: int = PBT_CPU["n_test"],
  hidden: int = 500,
  depth: int = 4,
  batch_size: int = 200,
  eval_every: int = PBT_CPU["eval_every"],
  progress: bool = True,
  loggers: LoggerFactory | None = None,
) -> list[PBTComparison]:
  """PBT of the flood level against the grid and Halving; writes tables and JSON to ``out_dir``.

  Per setting (data set, label noise, optimizer) three sweeps train on the same data and
  seeds (paired): the plain grid over ``flood_levels`` (0 is added), the same grid with
  ``prune=fj.Halving(*halving)`` (default ``(max(1, round(0.12 * epochs)), 2, "trend")``,
  the rule that kept section 1's choice best at 100 epochs, scaled to ``epochs``), and
  the same grid with ``pbt=fj.PBT(interval, fraction)`` (default interval
  ``max(1, epochs // 5)``): each seed's members are one population. Each method's choice
  is made per seed by final validation accuracy (:func:`choose_member_per_seed`; for PBT
  the member :meth:`SweepResult.best` would name within that seed) and compared by test
  accuracy and test loss at the last epoch, paired over seeds, at each method's
  model-epochs (grid and PBT: every model every epoch; Halving: fewer). Halving ranks a
  configuration by its mean over seeds, so its seeds are not fully independent replicates.

  The synthetic sets use the data of :func:`synthetic`; ``mnist1d`` its standard split
  (``n_train``/``n_val``/``n_test`` do not apply). An interrupted call resumes as
  :func:`adaflood` does: each finished sweep (``grid``, ``halving``, ``pbt``) is kept in
  ``out_dir/runs/SETTING/PART/`` and the one in progress continues from its checkpoint.
  """
  from flood_jax._sweep.pbt import PBT
  from flood_jax._sweep.prune import Halving

  settings = _grid(datasets, noise_rates, optimizers)
  levels = sorted({0.0, *(float(b) for b in flood_levels)})
  seed_list = list(range(seeds))
  policy = PBT(max(1, epochs // 5) if interval is None else interval, fraction)
  policy.check(epochs)
  halving = list(halving) if halving else [max(1, round(0.12 * epochs)), 2, "trend"]
  prune = Halving(*halving)
  if not prune.rungs(epochs):
    raise ValueError(
      f"Halving{tuple(halving)} prunes nothing in {epochs} epochs; use a first rung below"
      f" {epochs} (e.g. halving=({max(1, epochs // 8)}, 2))."
    )
  config = dict(
    flood_levels=levels,
    seeds=seed_list,
    epochs=epochs,
    pbt=policy.record(),
    halving=halving,
    n_train=n_train,
    n_val=n_val,
    n_test=n_test,
    hidden=hidden,
    depth=depth,
    batch_size=batch_size,
    eval_every=eval_every,
    settings=[s.label for s in settings],
  )

  def run_setting(prefix: str, setting: Setting) -> PBTComparison:
    slug = _slug(setting)

    @functools.cache
    def data() -> Any:
      if setting.dataset == "mnist1d":
        return data_lib.load("mnist1d", label_noise=setting.label_noise, seed=0)
      return data_lib.load(
        setting.dataset,
        n_train=n_train,
        n_val=n_val,
        n_test=n_test,
        label_noise=setting.label_noise,
        seed=0,
      )

    print(
      f"{prefix}: grid, Halving{tuple(halving)} and PBT(interval={policy.interval},"
      f" fraction={policy.fraction:g}) over {len(levels)} levels; {len(seed_list)} seeds,"
      f" {epochs} epochs",
      flush=True,
    )
    extra = {"grid": {}, "halving": {"prune": prune}, "pbt": {"pbt": policy}}
    results: dict[str, SweepResult] = {}
    seconds: dict[str, float] = {}
    for method in PBT_METHODS:

      def train(checkpoint_dir: str, method=method) -> SweepResult:
        ds = data()
        assert ds.num_classes is not None  # Dataset infers it on construction
        return sweep(
          models_lib.MLP(num_classes=ds.num_classes, hidden=hidden, depth=depth),
          ds,
          flood_levels=levels,
          seeds=seed_list,
          optimizer=make_optimizer(setting.optimizer),
          epochs=epochs,
          batch_size=min(batch_size, ds.num_train),
          eval_every=eval_every,
          progress=progress,
          checkpoint_dir=checkpoint_dir,
          loggers=None if loggers is None else loggers(f"{slug}-{method}"),
          **extra[method],
        )

      results[method], seconds[method], read = _kept_sweep(
        out_dir, f"{slug}/{method}", train, _arguments(config, method=method)
      )
      if read:  # finished in an earlier, interrupted call
        path = os.path.join(out_dir, "runs", slug, method, "results.json")
        print(f"  {method}: done earlier, read {path}")
    test, loss, chosen = {}, {}, {}
    for method, result in results.items():
      test[method], loss[method], chosen[method] = choose_member_per_seed(result)
    return PBTComparison(
      setting=setting,
      test=test,
      loss=loss,
      chosen=chosen,
      model_epochs={m: model_epochs(r) for m, r in results.items()},
      seconds=seconds,
    )

  def write(comparisons: list[PBTComparison], wall_time: float) -> None:
    with open(os.path.join(out_dir, "pbt_table.md"), "w") as f:
      f.write(
        f"Per seed, each method's choice by final validation accuracy, read at the last"
        f" epoch; mean ± std over seeds; PBT - X: paired differences (same seed); p:"
        f" one-sided paired t-test that PBT is better. Wall time so far:"
        f" {wall_time:.0f} s.\n\nTest accuracy (%):\n\n{pbt_table(comparisons)}\n\n"
        f"Test loss:\n\n{pbt_table(comparisons, 'loss')}\n"
      )
    _write_json("pbt", out_dir, comparisons, wall_time, config)

  return _protocol("pbt", out_dir, settings, run_setting, write)
