"""Reproducing the flooding paper's findings: tables, paired tests and figures.

Three protocols, each a set of :func:`flood_jax.sweep` calls (all flood levels
and seeds of a setting trained at once):

* :func:`synthetic`: the paper's synthetic experiments (Sec. 4.1): two
  Gaussians, sinusoid and spiral, label noise 0, 0.01, 0.05 and 0.1, the
  paper's MLP (4 hidden layers of 500, BatchNorm), SGD (lr 0.01, momentum 0.9)
  and Adam (lr 0.001), 100 training and 100 validation examples.
* :func:`builtin`: the same analysis on the offline benchmark sets
  (``mnist1d``, ``digits``), with the double descent of the test loss.
* :func:`benchmark`: the paper's benchmark protocol (Sec. 4.2) on the image
  sets (MNIST family with the MLP, CIFAR/SVHN with a ResNet), with and without
  weight decay; these need the ``datasets`` extra and a network once.

The flood level is chosen **per seed** by that run's validation accuracy, as
an experimenter with one run would: without early stopping at the last
epoch, with early stopping at the epoch of best validation accuracy (and the
test accuracy read at that same epoch). "No flooding" is ``b = 0``, which is
always in the grid. Whether flooding helps is a paired comparison across
seeds (same seed = same initialization and batch order): the mean difference
and a one-sided paired t-test.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from typing import Any, Iterable, Optional, Sequence

import numpy as np
import optax

from flood_jax import data as data_lib
from flood_jax import models as models_lib
from flood_jax._result import SweepResult
from flood_jax._sweep import sweep

SYNTHETIC_SETS = ("two_gaussians", "sinusoid", "spiral")

# The paper's synthetic protocol: about 80 hours on a 2-core CPU (measured
# 94 ms per model-epoch for the 4x500 MLP with a 10,000-example test set).
SYNTHETIC_PAPER = dict(
    noise_rates=(0.0, 0.01, 0.05, 0.1),
    flood_levels=tuple(np.round(np.arange(0, 0.501, 0.01), 2)),
    seeds=5, epochs=500, n_test=10_000,
)
# The same settings cut to about 30 minutes on a 2-core CPU: the paper's noise
# rates, every 5th level, 100 epochs, a 1,000-example test set.
SYNTHETIC_CPU = dict(
    noise_rates=(0.01, 0.05, 0.1),
    flood_levels=tuple(np.round(np.arange(0, 0.501, 0.05), 2)),
    seeds=5, epochs=100, n_test=1000,
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


def make_optimizer(name: str, learning_rate: Optional[float] = None,
                   weight_decay: float = 0.0) -> optax.GradientTransformation:
  """The paper's optimizers: SGD (lr 0.01, momentum 0.9) or Adam (lr 0.001)."""
  if name == "sgd":
    sgd = optax.sgd(0.01 if learning_rate is None else learning_rate, momentum=0.9)
    if weight_decay:
      return optax.chain(optax.add_decayed_weights(weight_decay), sgd)
    return sgd
  if name == "adam":
    lr = 0.001 if learning_rate is None else learning_rate
    if weight_decay:  # L2 as in torch.optim.Adam(weight_decay=...), not AdamW
      return optax.chain(optax.add_decayed_weights(weight_decay), optax.adam(lr))
    return optax.adam(lr)
  raise ValueError(f"unknown optimizer {name!r}; use 'sgd' or 'adam'.")


@dataclasses.dataclass
class Comparison:
  """Flooding against no flooding for one setting, per seed."""

  setting: Setting
  no_flood: np.ndarray        # test accuracy at b = 0, last epoch, per seed
  no_flood_es: np.ndarray     # ... at b = 0, best-validation epoch
  flood: np.ndarray           # at the level chosen by final val acc
  flood_es: np.ndarray        # at the level chosen by best val acc, that epoch
  chosen: np.ndarray          # chosen level per seed (no early stopping)
  chosen_es: np.ndarray       # chosen level per seed (early stopping)

  def p_value(self, early_stopping: bool) -> float:
    """One-sided paired t-test that flooding raises test accuracy."""
    flood = self.flood_es if early_stopping else self.flood
    base = self.no_flood_es if early_stopping else self.no_flood
    return _paired_p(flood - base)

  def to_dict(self) -> dict[str, Any]:
    out: dict[str, Any] = dataclasses.asdict(self.setting)
    for name in ("no_flood", "no_flood_es", "flood", "flood_es", "chosen", "chosen_es"):
      out[name] = np.asarray(getattr(self, name)).tolist()
    out["p_value"] = self.p_value(False)
    out["p_value_es"] = self.p_value(True)
    return out


def compare(result: SweepResult, setting: Setting) -> Comparison:
  """Chooses the level per seed by validation and reads the test accuracies."""
  levels = np.asarray(result.flood_levels)
  if not np.any(levels == 0.0):
    raise ValueError("the sweep's levels must include 0.0, the no-flooding baseline.")
  base = int(np.flatnonzero(levels == 0.0)[0])
  seeds = np.arange(len(result.seeds))
  final_val = result.val_score("final")             # (levels, seeds)
  best_val = result.val_score("best_val")
  test_final = result.history["test_accuracy"][..., -1]
  test_es = result.at_stopping("test_accuracy", "best_val")
  pick = _argmax_first(final_val)
  pick_es = _argmax_first(best_val)
  return Comparison(
      setting=setting,
      no_flood=test_final[base],
      no_flood_es=test_es[base],
      flood=test_final[pick, seeds],
      flood_es=test_es[pick_es, seeds],
      chosen=levels[pick],
      chosen_es=levels[pick_es],
  )


def markdown_table(comparisons: Sequence[Comparison]) -> str:
  """Test accuracy (%) mean ± std over seeds, with and without early stopping."""
  head = ("| setting | no flooding | flooding | chosen b | p | no flooding (ES) |"
          " flooding (ES) | chosen b (ES) | p (ES) |")
  lines = [head, "|" + "---|" * 9]
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
      cells += [base_text, flood_text, f"{np.mean(chosen):.3f}", _p_text(p)]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


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
    return data_lib.load(setting.dataset, n_train=n_train, n_val=n_val, n_test=n_test,
                         label_noise=setting.label_noise, seed=0)

  return _run_protocol(
      "synthetic", out_dir, settings, load, lambda s, d: model, flood_levels, seeds,
      epochs, min(batch_size, n_train), progress, eval_every=eval_every,
      extra_config=dict(n_train=n_train, n_val=n_val, n_test=n_test, hidden=hidden,
                        depth=depth, batch_size=batch_size, eval_every=eval_every),
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
) -> list[Comparison]:
  """The same table on the offline benchmark sets (``mnist1d``, ``digits``)."""
  settings = _grid(datasets, noise_rates, optimizers)

  def load(setting: Setting):
    return data_lib.load(setting.dataset, label_noise=setting.label_noise, seed=0)

  def model(setting: Setting, ds) -> Any:
    return models_lib.MLP(num_classes=ds.num_classes, hidden=hidden, depth=depth)

  return _run_protocol(
      "builtin", out_dir, settings, load, model, flood_levels, seeds, epochs,
      batch_size, progress, eval_every=eval_every,
      extra_config=dict(hidden=hidden, depth=depth, batch_size=batch_size,
                        eval_every=eval_every),
  )


_BENCHMARK_MODELS = {
    "mnist": "mlp", "fashion_mnist": "mlp", "kmnist": "mlp",
    "cifar10": "resnet18", "cifar100": "resnet18", "svhn": "resnet18",
}


def benchmark(
    out_dir: str,
    *,
    dataset: str,
    flood_levels: Sequence[float] = tuple(np.round(np.arange(0, 0.101, 0.01), 2)),
    weight_decays: Sequence[float] = (0.0, 1e-5),
    optimizer: str = "adam",
    learning_rate: Optional[float] = None,
    seeds: int = 3,
    epochs: int = 500,
    batch_size: int = 200,
    model: Optional[str] = None,
    load_options: Optional[dict[str, Any]] = None,
    model_options: Optional[dict[str, Any]] = None,
    eval_every: int = 1,
    progress: bool = True,
) -> list[Comparison]:
  """The paper's benchmark protocol (Sec. 4.2) on an image set.

  MLP for the MNIST family (inputs flattened), ResNet-18 for CIFAR-10/100 and
  SVHN; flood levels 0.00 to 0.10 by 0.01; with and without weight decay;
  with and without early stopping. Needs ``pip install "flood_jax[datasets]"``
  and a network the first time; meant for an accelerator.
  """
  if dataset not in _BENCHMARK_MODELS:
    raise ValueError(
        f"unknown benchmark data set {dataset!r}; use one of {sorted(_BENCHMARK_MODELS)}."
    )
  model_name = model or _BENCHMARK_MODELS[dataset]
  load_options = dict(load_options or {})
  if model_name == "mlp":
    load_options.setdefault("flatten", True)
  ds = data_lib.load(dataset, **load_options)
  net = models_lib.get_model(model_name, ds.num_classes, **(model_options or {}))
  settings = [Setting(dataset, 0.0, optimizer, wd) for wd in weight_decays]
  return _run_protocol(
      f"benchmark_{dataset}", out_dir, settings, lambda s: ds, lambda s, d: net,
      flood_levels, seeds, epochs, batch_size, progress, learning_rate=learning_rate,
      eval_every=eval_every,
      extra_config=dict(model=model_name, load_options=load_options,
                        model_options=model_options or {}, batch_size=batch_size),
  )


def _run_protocol(name, out_dir, settings, load, make_model, flood_levels, seeds,
                  epochs, batch_size, progress, *, learning_rate=None, eval_every=1,
                  extra_config=None) -> list[Comparison]:
  from flood_jax import plots  # matplotlib is imported only when plotting

  os.makedirs(out_dir, exist_ok=True)
  levels = [float(b) for b in flood_levels]
  if 0.0 not in levels:
    levels = [0.0] + levels
  seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
  comparisons, runs = [], []
  start = time.perf_counter()
  for i, setting in enumerate(settings):
    slug = _slug(setting)
    run_dir = os.path.join(out_dir, "runs", slug)
    checkpoint_dir = os.path.join(out_dir, "checkpoints", slug)
    done = os.path.join(run_dir, "results.json")
    if os.path.exists(done) and not os.path.isdir(checkpoint_dir):
      # Finished in an earlier, interrupted call: reuse it.
      result = SweepResult.load(run_dir)
      print(f"[{i + 1}/{len(settings)}] {setting.label}: done earlier, read {done}")
    else:
      ds = load(setting)
      model = make_model(setting, ds)
      print(f"[{i + 1}/{len(settings)}] {setting.label}: {len(levels)} levels x"
            f" {len(seed_list)} seeds, {epochs} epochs", flush=True)
      result = sweep(
          model, ds, flood_levels=levels, seeds=seed_list,
          optimizer=make_optimizer(setting.optimizer, learning_rate, setting.weight_decay),
          epochs=epochs, batch_size=min(batch_size, ds.num_train), progress=progress,
          checkpoint_dir=checkpoint_dir, eval_every=eval_every,
      )
      result.save(run_dir, with_params=False)
      shutil.rmtree(checkpoint_dir)  # the results are on disk; the weights are not kept
    comparison = compare(result, setting)
    comparisons.append(comparison)
    runs.append((setting, result))
    plots.plot_curves(result, os.path.join(out_dir, "figures", f"curves_{slug}.png"))
    plots.plot_accuracy_vs_level(
        result, os.path.join(out_dir, "figures", f"accuracy_vs_level_{slug}.png"))
    _write_outputs(name, out_dir, comparisons, time.perf_counter() - start,
                   dict(extra_config or {}, flood_levels=levels, seeds=seed_list,
                        epochs=epochs, settings=[s.label for s in settings]))
  _summary_figure(runs, os.path.join(out_dir, "figures", f"{name}_accuracy_vs_level.png"))
  try:
    os.rmdir(os.path.join(out_dir, "checkpoints"))  # empty once every setting finished
  except OSError:
    pass
  return comparisons


def _write_outputs(name, out_dir, comparisons, wall_time, config) -> None:
  table = markdown_table(comparisons)
  with open(os.path.join(out_dir, f"{name}_table.md"), "w") as f:
    f.write(f"Test accuracy (%), mean ± std over seeds; p: one-sided paired t-test"
            f" (flooding > no flooding) across seeds; ES: early stopping at the"
            f" best-validation epoch. Wall time so far: {wall_time:.0f} s.\n\n")
    f.write(table + "\n")
  with open(os.path.join(out_dir, "reproduce.json"), "w") as f:
    json.dump({"protocol": name, "wall_time": wall_time, "config": config,
               "comparisons": [c.to_dict() for c in comparisons]}, f, indent=1)


def _summary_figure(runs, path) -> None:
  """Final test accuracy against the flood level, one panel per setting."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  n = len(runs)
  cols = min(4, n)
  rows = -(-n // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
  for ax, (setting, result) in zip(axes.ravel(), runs):
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


def _grid(datasets: Sequence[str], noise_rates: Sequence[float],
          optimizers: Sequence[str]) -> list[Setting]:
  """Every (data set, noise rate, optimizer) combination, in that order."""
  return [Setting(d, r, o) for d in datasets for r in noise_rates for o in optimizers]


def _argmax_first(scores: np.ndarray) -> np.ndarray:
  """Per seed (column), the first level with the highest score (ties: smaller b)."""
  return np.argmax(np.nan_to_num(scores, nan=-np.inf), axis=0)


def _paired_p(diff: np.ndarray) -> float:
  diff = np.asarray(diff, np.float64)
  if diff.size < 2 or np.all(diff == 0):
    return float("nan")  # nothing to test
  if np.allclose(diff, diff[0]):  # no spread: the t statistic is undefined
    return 0.0 if diff[0] > 0 else 1.0
  from scipy import stats

  return float(stats.ttest_rel(diff, np.zeros_like(diff), alternative="greater").pvalue)


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
