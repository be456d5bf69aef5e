"""Successive halving inside the sweep: what it saves, and whether it picks the same level.

For each setting, the same sweep twice, side by side in one process, with
the same (automatic) layout: unpruned, then with ``prune=fj.Halving(...)``.
With a fixed layout every surviving model is bitwise the same model in both
(tested in tests/test_prune.py), so a different choice comes from pruning
alone. Per setting it records:

  * model-epochs trained (a pruned configuration's seeds count up to their
    rung) and chunk-epochs run (calls x epochs: what the devices computed,
    padding included), pruned over unpruned;
  * wall time of each sweep (compilation included, both cold);
  * the level (configuration) each chooses (``result.best()``: final
    validation accuracy, mean over seeds), and when they differ, the mean
    test accuracy (final epoch, from the unpruned sweep, which trained both)
    of each choice, and whether the difference lies within the seed spread
    (the standard deviation over seeds of the unpruned choice's test accuracy).

Replay (``--replay DIR ...``): the same comparison, without wall times, on
sweeps already run unpruned and saved (``results.json``, e.g. every setting of
``flood-jax reproduce synthetic``): the pruning rule is applied to their
histories (:func:`replay`). Since survivors are bitwise the unpruned models,
this is what the pruned sweep would do, provided the rungs were evaluated;
the live suites check it (``replay_matches``).

Suites:
  * ``synthetic``: a cut of ``flood-jax reproduce synthetic`` (preset cpu):
    the 4x500 BatchNorm MLP, 11 levels x 5 seeds, 100 epochs, batch 100 of 100
    training examples, evaluated every 2nd epoch; the data sets, noise rates
    and optimizers given;
  * ``sweep``: the default ``flood-jax sweep`` (MNIST-1D, 2x500 MLP, 6 levels
    x 2 seeds, 150 epochs, SGD 0.1 momentum 0.9).

  python benchmarks/halving.py --suite synthetic --datasets two_gaussians,sinusoid,spiral \\
      --noise 0.05,0.1 --optimizers sgd,adam --min-epochs 10
  python benchmarks/halving.py --suite sweep --min-epochs 16
  python benchmarks/halving.py --min-epochs 10 --replay runs/reproduce-synthetic/runs/*
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import sys

import numpy as np
import optax

import flood_jax as fj
from flood_jax import data as data_lib
from flood_jax import models as models_lib
from flood_jax import reproduce
from flood_jax._sweep import prune as prune_lib


def replay(result: fj.SweepResult, halving: fj.Halving) -> np.ndarray:
  """``pruned_at`` that ``prune=halving`` gives, from an unpruned sweep's history."""
  val = result.history["val_accuracy"]
  loss = result.history["val_loss"]
  shape = val.shape[:-2]
  alive = np.arange(math.prod(shape))
  pruned_at = np.zeros(len(alive), np.int64)
  for rung in halving.rungs(result.num_epochs):
    hits = np.flatnonzero(result.epochs == rung)
    if not hits.size:
      raise SystemExit(
        f"epoch {rung} (a rung) was not evaluated in this sweep;"
        " choose --min-epochs on its evaluation schedule."
      )
    at = hits[0]
    if halving.score == "trend":  # the engine's forecast, from the evaluations so far
      value = prune_lib.trend_forecast(
        val[..., : at + 1], result.epochs[: at + 1], rung, result.num_epochs
      )
    else:
      value = val[..., at]
    acc = np.where(np.isfinite(loss[..., at]), value, np.nan)
    scores = acc.mean(-1).reshape(-1)[alive]
    kept = alive[prune_lib.select(scores, halving.factor)]
    pruned_at[np.setdiff1d(alive, kept)] = rung
    alive = kept
  return pruned_at.reshape(shape)


def model_epochs(result: fj.SweepResult) -> int:
  """Model-epochs a sweep trained: a pruned configuration's seeds up to their rung."""
  per_config = np.where(result.pruned_at > 0, result.pruned_at, result.num_epochs)
  return int(per_config.sum() * len(result.seeds))


def chunk_epochs(result: fj.SweepResult, halving: fj.Halving | None) -> int:
  """Calls x epochs the devices ran (padding included)."""
  group = result.config["chunk_size"] * result.config["devices"]
  seeds, epochs = len(result.seeds), result.num_epochs
  configs = math.prod(result.config_shape)
  if halving is None:
    return math.ceil(configs * seeds / group) * epochs
  stops = [*halving.rungs(epochs), epochs]
  alive = [configs, *halving.survivors_per_rung(configs, epochs)]
  return sum(
    math.ceil(n * seeds / group) * (stop - first)
    for n, first, stop in zip(alive, [0, *stops[:-1]], stops, strict=False)
  )


def compare(name: str, run, halving: fj.Halving) -> dict:
  full = run(None)
  pruned = run(halving)
  row = _row(name, full, pruned, halving)
  row["replay_matches"] = bool(np.array_equal(replay(full, halving), pruned.pruned_at))
  return row


def _row(name: str, full: fj.SweepResult, pruned: fj.SweepResult, halving: fj.Halving) -> dict:
  chosen, chosen_pruned = full.best(), pruned.best()
  test = full.history["test_accuracy"][..., -1]  # (configs..., seeds)
  at = lambda config: test[full.index(**config)]
  diff = float(at(chosen_pruned).mean() - at(chosen).mean())
  spread = float(at(chosen).std())
  row = {
    "setting": name,
    "chosen": chosen,
    "chosen_pruned": chosen_pruned,
    "same": chosen == chosen_pruned,
    "test_acc": float(at(chosen).mean()),
    "test_acc_pruned": float(at(chosen_pruned).mean()),
    "test_acc_diff": diff,
    "seed_spread": spread,
    "within_spread": chosen == chosen_pruned or abs(diff) <= spread,
    # One-sided: the pruned choice is not worse by more than the spread.
    "not_worse": chosen == chosen_pruned or diff >= -spread,
    "model_epochs": model_epochs(full),
    "model_epochs_pruned": model_epochs(pruned),
    "chunk_epochs": chunk_epochs(full, None),
    "chunk_epochs_pruned": chunk_epochs(pruned, halving),
    "wall_s": full.wall_time,
    "wall_s_pruned": pruned.wall_time,
  }
  print(
    f"{name}: b {_b(chosen)} -> {_b(chosen_pruned)}, test acc {row['test_acc']:.4f}"
    f" -> {row['test_acc_pruned']:.4f} (spread {spread:.4f}); model-epochs"
    f" {row['model_epochs_pruned'] / row['model_epochs']:.2f}, chunk-epochs"
    f" {row['chunk_epochs_pruned'] / row['chunk_epochs']:.2f}, wall"
    f" {row['wall_s']:.1f} -> {row['wall_s_pruned']:.1f} s",
    flush=True,
  )
  return row


def _replayed(directory: str, halving: fj.Halving) -> dict:
  full = fj.SweepResult.load(directory)
  pruned = dataclasses.replace(full, pruned_at=replay(full, halving), wall_time=math.nan)
  return _row(os.path.basename(os.path.normpath(directory)), full, pruned, halving)


def _b(config: dict) -> str:
  return f"{config['flood_level']:g}"


def synthetic_runs(args):
  levels = [float(b) for b in reproduce.SYNTHETIC_CPU["flood_levels"]]
  for dataset in args.datasets.split(","):
    for noise in [float(r) for r in args.noise.split(",")]:
      ds = data_lib.load(
        dataset,
        n_train=100,
        n_val=100,
        n_test=reproduce.SYNTHETIC_CPU["n_test"],
        label_noise=noise,
        seed=0,
      )
      for opt in args.optimizers.split(","):

        def run(prune, ds=ds, opt=opt):
          return fj.sweep(
            models_lib.MLP(num_classes=2, hidden=500, depth=4),
            ds,
            flood_levels=levels,
            seeds=list(range(reproduce.SYNTHETIC_CPU["seeds"])),
            optimizer=reproduce.make_optimizer(opt),
            epochs=reproduce.SYNTHETIC_CPU["epochs"],
            batch_size=100,
            eval_every=2,
            progress=False,
            prune=prune,
          )

        yield f"{dataset}, noise {noise:g}, {opt}", run


def sweep_runs(args):
  del args
  ds = data_lib.load("mnist1d")

  def run(prune):
    return fj.sweep(
      models_lib.get_model("mlp", ds.num_classes, hidden=500, depth=2),
      ds,
      flood_levels=[0.0, 0.05, 0.1, 0.15, 0.2, 0.3],
      seeds=[0, 1],
      optimizer=optax.sgd(0.1, momentum=0.9),
      epochs=150,
      batch_size=100,
      progress=False,
      prune=prune,
    )

  yield "flood-jax sweep defaults (mnist1d)", run


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--suite", choices=("synthetic", "sweep"))
  parser.add_argument(
    "--replay",
    nargs="+",
    metavar="DIR",
    help="saved unpruned sweeps (directories with results.json)",
  )
  parser.add_argument("--datasets", default="two_gaussians,sinusoid,spiral")
  parser.add_argument("--noise", default="0.05,0.1")
  parser.add_argument("--optimizers", default="sgd,adam")
  parser.add_argument("--min-epochs", type=int, required=True)
  parser.add_argument("--factor", type=int, default=3)
  parser.add_argument("--score", default="accuracy", choices=("accuracy", "trend"))
  parser.add_argument("--out", default=None, help="JSON file for the rows")
  args = parser.parse_args()
  halving = fj.Halving(args.min_epochs, args.factor, args.score)
  print(
    f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores,"
    f" python {sys.version.split()[0]}; {halving}",
    flush=True,
  )
  if args.replay:
    rows = [_replayed(d, halving) for d in args.replay]
  else:
    runs = synthetic_runs(args) if args.suite == "synthetic" else sweep_runs(args)
    rows = [compare(name, run, halving) for name, run in runs]
  total = lambda key: sum(r[key] for r in rows)
  print(
    f"settings: {len(rows)}; same choice: {sum(r['same'] for r in rows)};"
    f" same or within the seed spread: {sum(r['within_spread'] for r in rows)}"
    f" ({100 * sum(r['within_spread'] for r in rows) / len(rows):.0f}%);"
    f" not worse by more than the spread: {sum(r['not_worse'] for r in rows)}"
  )
  print(
    f"model-epochs: {total('model_epochs_pruned')} / {total('model_epochs')}"
    f" = {total('model_epochs_pruned') / total('model_epochs'):.3f}; chunk-epochs:"
    f" {total('chunk_epochs_pruned') / total('chunk_epochs'):.3f}; wall:"
    f" {total('wall_s_pruned'):.1f} / {total('wall_s'):.1f} s ="
    f" {total('wall_s_pruned') / total('wall_s'):.3f}"
  )
  if args.out:
    with open(args.out, "w") as f:
      json.dump(rows, f, indent=1)


if __name__ == "__main__":
  main()
