"""PBT's wall time against the plain sweep on the same grid (``benchmarks/RESULTS.md``).

Cold: each sweep in a fresh process (compilation included), the plain and the PBT sweep one
after the other, ``--pairs`` times, so each pair shares the machine's load; the ratio of each
pair is reported (the machine may be shared and noisy). Warm: in one process, after one run of
each, the two alternate ``--pairs`` times.

  python benchmarks/pbt.py --pairs 3
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

SETTINGS = dict(levels=[0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6], seeds=[0, 1], epochs=30)


def one(pbt: bool) -> float:
  import optax

  import flood_jax as fj

  ds = fj.data.load("two_gaussians", label_noise=0.1)
  start = time.perf_counter()
  fj.sweep(
    fj.models.MLP(num_classes=2, hidden=64, depth=2),
    ds,
    flood_levels=SETTINGS["levels"],
    seeds=SETTINGS["seeds"],
    optimizer=optax.adam(1e-2),
    epochs=SETTINGS["epochs"],
    batch_size=50,
    eval_every=5,
    chunk_size=8,
    progress=False,
    pbt=fj.PBT(interval=5) if pbt else None,
  )
  return time.perf_counter() - start


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--pairs", type=int, default=3)
  parser.add_argument("--one", choices=["plain", "pbt"])
  args = parser.parse_args()
  if args.one:
    print(json.dumps(one(args.one == "pbt")))
    return
  cold = []
  for _ in range(args.pairs):
    seconds = []
    for kind in ("plain", "pbt"):
      start = time.perf_counter()
      subprocess.run([sys.executable, __file__, "--one", kind], check=True, capture_output=True)
      seconds.append(time.perf_counter() - start)
    cold.append(seconds)
  one(False), one(True)  # compile both
  warm = [[one(False), one(True)] for _ in range(args.pairs)]
  for name, pairs in [("cold (fresh process, wall)", cold), ("warm (in process)", warm)]:
    ratios = sorted(p / q for q, p in pairs)
    plain, pbt = [round(q, 2) for q, _ in pairs], [round(p, 2) for _, p in pairs]
    print(f"{name}: plain {plain} s, PBT {pbt}"
          f" s; paired ratio PBT/plain median {ratios[len(ratios) // 2]:.3f}"
          f" (range {ratios[0]:.3f}-{ratios[-1]:.3f})")  # fmt: skip


if __name__ == "__main__":
  main()
