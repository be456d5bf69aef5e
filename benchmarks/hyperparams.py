"""Does a hyperparameter axis cost more per model than a flood-level axis?

Two sweeps of the same number of models K, the same MLP, data and optimizer
(`optax.inject_hyperparams(optax.sgd)`, so both run the same kind of
optimizer state):
  * levels:      K flood levels x 1 learning rate;
  * levels x lr: K/4 flood levels x 4 learning rates (`hyperparams=`).
Both are warmed up (compiled) first; then timed interleaved (A, B, B, A, ...)
over --rounds rounds, and the median ratio of their per-model times reported.

  python benchmarks/hyperparams.py
  python benchmarks/hyperparams.py --k 64 --width 32 --rounds 5
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import jax
import numpy as np
import optax
from cold import make_data, make_model  # the data and MLP of benchmarks/cold.py

import flood_jax as fj


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--k", type=int, default=64, help="models per sweep (a multiple of 4)")
  parser.add_argument("--width", type=int, default=32)
  parser.add_argument("--epochs", type=int, default=20)
  parser.add_argument("--rounds", type=int, default=5)
  args = parser.parse_args()

  data = make_data()
  optimizer = optax.inject_hyperparams(optax.sgd)(learning_rate=0.01, momentum=0.9)
  common = dict(seeds=[0], optimizer=optimizer, epochs=args.epochs, batch_size=100, progress=False)
  arms = {
    "levels": dict(flood_levels=np.linspace(0, 0.5, args.k)),
    "levels x lr": dict(
      flood_levels=np.linspace(0, 0.5, args.k // 4),
      hyperparams={"learning_rate": [0.003, 0.01, 0.03, 0.1]},
    ),
  }
  model = make_model([args.width] * 2)
  for kwargs in arms.values():  # compile
    fj.sweep(model, data, **common, **kwargs)
  times: dict[str, list[float]] = {name: [] for name in arms}
  order = list(arms)
  for r in range(args.rounds):
    for name in order if r % 2 == 0 else order[::-1]:
      start = time.perf_counter()
      result = fj.sweep(model, data, **common, **arms[name])
      times[name].append((time.perf_counter() - start) / args.k)
      assert result.history["val_loss"][..., -1].size == args.k
  ratios = [b / a for a, b in zip(times["levels"], times["levels x lr"], strict=True)]
  print(
    f"{platform.machine()}, {len(jax.devices())} {jax.devices()[0].platform} device(s),"
    f" jax {jax.__version__}; MLP 40-{args.width}-{args.width}-10, K = {args.k},"
    f" {args.epochs} epochs, {args.rounds} rounds"
  )
  print("| sweep | s/model (median) |")
  print("|---|---|")
  for name in arms:
    print(f"| {name} | {statistics.median(times[name]):.4f} |")
  print(
    f"levels x lr / levels, per model: median {statistics.median(ratios):.3f}"
    f" (range {min(ratios):.3f} to {max(ratios):.3f})"
  )


if __name__ == "__main__":
  main()
