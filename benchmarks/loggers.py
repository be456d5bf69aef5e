"""What the experiment trackers cost: a default sweep with and without the three loggers.

The default ``flood-jax sweep`` (MNIST-1D, the 2 x 500 MLP, 6 levels x 2
seeds = 12 models, 150 epochs, batch 100, SGD 0.1 momentum 0.9), in one
process, with the same layout and the same number of compiled calls
(``epochs_per_call``: the command line's, 6, i.e. 25 calls, as with its
progress bar): without loggers (A) and with
``[fj.loggers.TensorBoard, fj.loggers.MLflow (a new sqlite store),
fj.loggers.WandB (offline)]`` (B). A warm-up sweep compiles first (not
counted); then the timed sweeps alternate A, B, B, A, ... Each logger is
wrapped in a proxy that times every call into it, so the overhead is split
into its parts: ``start`` (imports, the MLflow store's tables, opening 12
runs), the streaming (``log`` and ``flush`` after every call) and the end
(``summarize``, ``close``).

  python benchmarks/loggers.py --rounds 1 --out benchmarks/loggers.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections import defaultdict

import jax
import optax

import flood_jax as fj
from flood_jax import data as data_lib
from flood_jax import models as models_lib


class Timed:
  """Forwards every call to ``inner`` and adds up the seconds spent in each method."""

  def __init__(self, inner, seconds):
    self.inner, self.seconds = inner, seconds

  def __getattr__(self, method):
    fn = getattr(self.inner, method)

    def timed(*args):
      start = time.perf_counter()
      try:
        return fn(*args)
      finally:
        self.seconds[(type(self.inner).__name__, method)] += time.perf_counter() - start

    return timed


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rounds", type=int, default=1, help="pairs of timed sweeps (A B, B A)")
  parser.add_argument("--epochs", type=int, default=150)
  parser.add_argument("--out", default=None, help="JSON file for the numbers")
  args = parser.parse_args()
  os.environ.setdefault("WANDB_SILENT", "true")

  ds = data_lib.load("mnist1d")
  model = models_lib.get_model("mlp", ds.num_classes, hidden=500, depth=2)
  kw = dict(
    flood_levels=[0.0, 0.05, 0.1, 0.15, 0.2, 0.3],
    seeds=[0, 1],
    optimizer=optax.sgd(0.1, momentum=0.9),
    epochs=args.epochs,
    batch_size=100,
    epochs_per_call=max(d for d in range(1, -(-args.epochs // 20) + 1) if args.epochs % d == 0),
    progress=False,
  )
  root = tempfile.mkdtemp(prefix="flood_jax_loggers_")

  def sweep(with_loggers: bool, name: str):
    seconds = defaultdict(float)
    loggers = None
    if with_loggers:
      loggers = [
        Timed(fj.loggers.TensorBoard(os.path.join(root, name, "tb")), seconds),
        Timed(fj.loggers.MLflow("sqlite:///" + os.path.join(root, name, "mlflow.db")), seconds),
        Timed(fj.loggers.WandB("bench", mode="offline", dir=os.path.join(root, name)), seconds),
      ]
      os.makedirs(os.path.join(root, name), exist_ok=True)
    start = time.perf_counter()
    result = fj.sweep(model, ds, loggers=loggers, **kw)
    return time.perf_counter() - start, result, dict(seconds)

  print(f"warm-up (compiles): {sweep(False, 'warmup')[0]:.1f} s", flush=True)
  order = [b for r in range(args.rounds) for b in ((False, True) if r % 2 == 0 else (True, False))]
  rows = []
  for i, with_loggers in enumerate(order):
    wall, result, seconds = sweep(with_loggers, f"run{i}")
    rows.append(
      dict(
        loggers=with_loggers,
        wall_s=wall,
        sweep_wall_time_s=result.wall_time,
        seconds={f"{k[0]}.{k[1]}": v for k, v in sorted(seconds.items())},
      )
    )
    print(
      f"{'B (3 loggers)' if with_loggers else 'A (none)     '}: {wall:7.1f} s"
      + (f"; in the loggers {sum(seconds.values()):.1f} s" if seconds else ""),
      flush=True,
    )
  plain = [r["wall_s"] for r in rows if not r["loggers"]]
  logged = [r for r in rows if r["loggers"]]
  parts = defaultdict(float)
  for r in logged:
    for key, value in r["seconds"].items():
      logger, method = key.split(".")
      phase = {"start": "start", "log": "stream", "flush": "stream"}.get(method, "end")
      parts[f"{logger} {phase}"] += value / len(logged)
  summary = dict(
    machine=f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()},"
    f" jax {jax.__version__}, {len(jax.devices())} {jax.devices()[0].platform} devices",
    command=" ".join([os.path.basename(sys.executable), *sys.argv]),
    without_s=plain,
    with_s=[r["wall_s"] for r in logged],
    ratio=sum(r["wall_s"] for r in logged) / len(logged) / (sum(plain) / len(plain)),
    mean_seconds_in_loggers=dict(sorted(parts.items())),
    rows=rows,
  )
  print(json.dumps({k: v for k, v in summary.items() if k != "rows"}, indent=1))
  if args.out:
    with open(args.out, "w") as f:
      json.dump(summary, f, indent=1)


if __name__ == "__main__":
  main()
