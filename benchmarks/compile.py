"""Where a cold sweep's time goes: compilation per program, and the evaluation's share.

In a fresh process (run this script as it is; it is its own fresh process),
a plain script's sweep: the 40-input, 10-class data set of benchmarks/cold.py
(2,000 train, 1,000 validation, 1,000 test), an MLP 32x2, K flood levels,
SGD with momentum, 30 epochs, batch 100.

  * compile seconds per program, from JAX's own log of XLA compilations
    (``jax_log_compiles``): the sweep's initialization (``_init_local``) and
    training call (``_run_local``), and everything else;
  * a second call with freshly built, equal arguments: what it compiles;
  * the evaluation's share of the run: warm wall time with the default
    schedule and with per-epoch evaluation, against evaluating once (after
    the last epoch), the same models.

  python benchmarks/compile.py
  python benchmarks/compile.py --k 64 --width 500 --depth 3
"""

from __future__ import annotations

import argparse
import collections
import logging
import re
import statistics
import time

import jax
import numpy as np
import optax
from cold import make_data, make_model  # the data and MLP of benchmarks/cold.py

import flood_jax as fj

_FINISHED = re.compile(r"Finished XLA compilation of jit\((\w+)\) in ([0-9.e-]+) sec")


class _Compiles(logging.Handler):
  """Collects (program, seconds) from JAX's compile log."""

  def __init__(self):
    super().__init__(logging.DEBUG)
    self.seconds: collections.Counter[str] = collections.Counter()
    self.count: collections.Counter[str] = collections.Counter()

  def emit(self, record):
    match = _FINISHED.search(record.getMessage())
    if match:
      name = match.group(1) if match.group(1) in ("_init_local", "_run_local") else "other"
      self.seconds[name] += float(match.group(2))
      self.count[name] += 1

  def take(self):
    out = dict(self.seconds), dict(self.count)
    self.seconds.clear()
    self.count.clear()
    return out


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--k", type=int, default=16)
  parser.add_argument("--width", type=int, default=32)
  parser.add_argument("--depth", type=int, default=2)
  parser.add_argument("--rounds", type=int, default=3)
  args = parser.parse_args()

  handler = _Compiles()
  logger = logging.getLogger("jax")
  logger.addHandler(handler)
  logger.setLevel(logging.DEBUG)
  jax.config.update("jax_log_compiles", True)

  data = make_data()
  levels = np.linspace(0, 0.5, args.k)

  def run(**kwargs):
    start = time.perf_counter()
    fj.sweep(
      make_model([args.width] * args.depth),
      data,
      flood_levels=levels,
      seeds=[0],
      optimizer=optax.sgd(0.01, momentum=0.9),
      epochs=30,
      batch_size=100,
      progress=False,
      **kwargs,
    )
    return time.perf_counter() - start

  first = run()
  seconds, count = handler.take()
  second = run()
  seconds2, count2 = handler.take()
  print(
    f"{len(jax.devices())} {jax.devices()[0].platform} device(s), jax {jax.__version__};"
    f" MLP 40-{'-'.join([str(args.width)] * args.depth)}-10, K = {args.k}, 30 epochs"
  )
  print(
    f"first call: {first:.2f} s; compiled: "
    + ", ".join(
      f"{name} {seconds.get(name, 0):.2f} s ({count.get(name, 0)})"
      for name in ("_init_local", "_run_local", "other")
    )
    + f"; all {sum(seconds.values()):.2f} s"
  )
  print(
    f"second call, fresh equal arguments: {second:.2f} s; compiled"
    f" {sum(count2.values())} programs ({sum(seconds2.values()):.2f} s)"
  )

  schedules = {"default": {}, "every epoch": {"eval_every": 1}, "once": {"eval_every": 30}}
  for kwargs in schedules.values():
    run(**kwargs)  # compile
  handler.take()
  times = {name: [] for name in schedules}
  for r in range(args.rounds):
    for name in list(schedules) if r % 2 == 0 else list(schedules)[::-1]:
      times[name].append(run(**schedules[name]))
  once = statistics.median(times["once"])
  for name in ("default", "every epoch"):
    t = statistics.median(times[name])
    print(
      f"evaluation schedule {name!r}: {t:.3f} s warm; evaluation share of the run"
      f" ~{(t - once) / t:.0%} (against evaluating once: {once:.3f} s)"
    )


if __name__ == "__main__":
  main()
