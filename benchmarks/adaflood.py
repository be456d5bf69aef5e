"""AdaFlood's fold models as one sweep against one run per fold.

Both train the same F fold models (plain training, each on the training set
minus its fold) of the same MLP with the same optimizer and epochs:
  * one sweep:   `flood_jax._adaflood.fold_models` (a fold axis; every model
                 reads the one copy of the data through its own index list);
  * one per fold: F calls of `fj.sweep` with one model each, on a copied
                 `Dataset` of that fold model's training examples (what one
                 would write without a fold axis).
Both are warmed up (compiled) first, then timed interleaved (A, B, B, A, ...)
over --rounds rounds; the median ratio is reported.

  python benchmarks/adaflood.py
  python benchmarks/adaflood.py --folds 5 --epochs 20 --rounds 3
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import jax
import optax

import flood_jax as fj
from flood_jax import _adaflood


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--folds", type=int, default=5)
  parser.add_argument("--n-train", type=int, default=1000)
  parser.add_argument("--hidden", type=int, default=64)
  parser.add_argument("--epochs", type=int, default=20)
  parser.add_argument("--rounds", type=int, default=3)
  args = parser.parse_args()

  data = fj.data.load("two_gaussians", n_train=args.n_train, n_val=200, n_test=200, label_noise=0.1)
  model = fj.models.MLP(num_classes=2, hidden=args.hidden, depth=2)
  optimizer = optax.adam(1e-3)
  kw = dict(optimizer=optimizer, epochs=args.epochs, batch_size=50, progress=False)
  fold_of = _adaflood.fold_assignment(data.num_train, args.folds)
  sets = _adaflood.fold_training_sets(fold_of, args.folds)
  copies = [
    fj.Dataset(
      x_train=data.x_train[rows],
      y_train=data.y_train[rows],
      x_val=data.x_val,
      y_val=data.y_val,
      x_test=data.x_test,
      y_test=data.y_test,
    )
    for rows in sets
  ]

  def one_sweep():
    result, _ = _adaflood.fold_models(model, data, folds=args.folds, seeds=(0,), **kw)
    jax.block_until_ready(jax.tree.leaves(result.final_params))

  def per_fold():
    for ds in copies:
      result = fj.sweep(
        model,
        ds,
        objective="iflood",
        flood_levels=[0.0],
        seeds=[0],
        eval_every=args.epochs,
        train_eval_size=0,
        eval_test=False,
        **kw,
      )
      jax.block_until_ready(jax.tree.leaves(result.final_params))

  def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start

  cold = {"one sweep": timed(one_sweep), "one per fold": timed(per_fold)}
  times: dict[str, list[float]] = {"one sweep": [], "one per fold": []}
  for r in range(args.rounds):
    order = [("one sweep", one_sweep), ("one per fold", per_fold)]
    for name, fn in order if r % 2 == 0 else order[::-1]:
      times[name].append(timed(fn))
  ratios = [b / a for a, b in zip(times["one sweep"], times["one per fold"], strict=True)]
  print(
    f"machine: {platform.machine()}, {len(jax.devices())} XLA CPU devices;"
    f" {args.folds} folds of {data.num_train} examples, MLP 2 x {args.hidden},"
    f" {args.epochs} epochs, batch 50"
  )
  for name in times:
    print(
      f"{name:>13}: first call {cold[name]:.2f} s (compiling); warm median"
      f" {statistics.median(times[name]):.3f} s over {args.rounds} rounds"
    )
  print(
    f"one per fold / one sweep, warm: median {statistics.median(ratios):.2f}"
    f" ({min(ratios):.2f} to {max(ratios):.2f})"
  )


if __name__ == "__main__":
  main()
