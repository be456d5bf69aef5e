"""Streams and the Population against the in-memory sweep and the loop a user writes, cold.

Every figure is a FRESH Python process running a plain script (imports, data, model, training,
compilation, evaluation: the process's whole wall time), so compilation is paid as a user
pays it. The job: K = 16 flood levels of a linen MLP on MNIST-shaped data (784 inputs, 10
classes, 6,000 training and 1,000 validation examples, a fixed random teacher) fed from host
memory in batches of 100, 3 epochs, validation after each epoch. Four arms:

  * stream:     fj.sweep(model, fj.Stream(train=epoch -> batches, val=...), ...)
  * population: fj.Population(...), a Python loop of pop.train_step over the batches and
                pop.evaluate after each epoch
  * memory:     fj.sweep(model, fj.Dataset(...), eval_every=1, ...) (the data on the device)
  * loop:       without the library's engine: one jitted step of
                optax.chain(fj.flood(b), optax.sgd(0.01, momentum=0.9)) per batch, the level a
                traced argument (one compilation), the K models one after another, a jitted
                evaluation after each epoch

Runs are interleaved (stream, population, memory, loop, ...), each arm's median is reported,
and each arm's ratio to the loop is taken pair by pair (the same round), as the machine is
shared and noisy.

  python benchmarks/stream.py                          # both MLPs, 3 rounds
  python benchmarks/stream.py --cases mlp32x2 --repeats 1
  python benchmarks/stream.py --warm                   # job s: the second equal job
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import textwrap
import time

CASES = {"mlp32x2": (32, 32), "mlp500x2": (500, 500)}
ARMS = ("stream", "population", "memory", "loop")

COMMON = """
import time, numpy as np, jax, jax.numpy as jnp, optax, flax.linen as nn
import flood_jax as fj
K, EPOCHS, BATCH, WIDTHS = {k}, 3, 100, {widths}
rng = np.random.default_rng(0)
teacher = rng.normal(size=(784, 10)).astype(np.float32)
def make(n):
  x = rng.normal(size=(n, 784)).astype(np.float32)
  y = np.argmax(x @ teacher + 2.0 * rng.normal(size=(n, 10)), axis=1).astype(np.int32)
  return x, y
x_train, y_train = make(6000)
x_val, y_val = make(1000)
levels = np.linspace(0.0, 0.3, K)
class MLP(nn.Module):
  @nn.compact
  def __call__(self, x, train):
    for w in WIDTHS:
      x = nn.relu(nn.Dense(w)(x))
    return nn.Dense(10)(x)
def batches(epoch):
  order = np.random.default_rng(epoch).permutation(len(y_train))
  for i in range(0, len(y_train), BATCH):
    yield x_train[order[i:i + BATCH]], y_train[order[i:i + BATCH]]
optimizer = optax.sgd(0.01, momentum=0.9)
START = time.perf_counter()  # the job: after the imports and the data
"""

ARM_CODE = {
  "stream": """
stream = fj.Stream(train=batches, val=lambda: [(x_val, y_val)])
result = fj.sweep(MLP(), stream, flood_levels=levels, optimizer=optimizer, epochs=EPOCHS,
                  progress=False)
acc = result.history["val_accuracy"][..., -1]
""",
  "population": """
pop = fj.Population(MLP(), optimizer=optimizer, flood_levels=levels)
state = pop.init(x_train[:BATCH])
for epoch in range(EPOCHS):
  for x, y in batches(epoch):
    state, metrics = pop.train_step(state, x, y)
  scores = pop.evaluate(state, [(x_val, y_val)])
acc = scores["accuracy"]
""",
  "memory": """
data = fj.Dataset(x_train=x_train, y_train=y_train, x_val=x_val, y_val=y_val,
                  x_test=x_val, y_test=y_val)
result = fj.sweep(MLP(), data, flood_levels=levels, optimizer=optimizer, epochs=EPOCHS,
                  batch_size=BATCH, eval_every=1, train_eval_size=0, eval_test=False,
                  progress=False)
acc = result.history["val_accuracy"][..., -1]
""",
  "loop": """
model = MLP()
@jax.jit
def step(params, opt_state, x, y, level):
  tx = optax.chain(fj.flood(level), optimizer)
  def loss_fn(p):
    return optax.softmax_cross_entropy_with_integer_labels(model.apply({"params": p}, x,
                                                           train=True), y).mean()
  loss, grads = jax.value_and_grad(loss_fn)(params)
  updates, opt_state = tx.update(grads, opt_state, params, value=loss)
  return optax.apply_updates(params, updates), opt_state
@jax.jit
def evaluate(params, x, y):
  logits = model.apply({"params": params}, x, train=False)
  return (optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(),
          (jnp.argmax(logits, -1) == y).mean())
acc = []
for k, level in enumerate(levels):
  params = model.init(jax.random.key(k), x_train[:1], train=False)["params"]
  opt_state = optax.chain(fj.flood(0.0), optimizer).init(params)
  for epoch in range(EPOCHS):
    for x, y in batches(epoch):
      params, opt_state = step(params, opt_state, x, y, jnp.float32(level))
    loss, accuracy = evaluate(params, x_val, y_val)
  acc.append(float(accuracy))
""",
}


def script(arm: str, case: str, k: int, warm: bool = False) -> str:
  common = COMMON.format(k=k, widths=CASES[case])
  end = "\nprint('JOB', time.perf_counter() - START)\nprint('ACC', float(np.mean(acc)))\n"
  # Warm: the job once, then again with freshly built equal arguments, the second timed.
  again = ARM_CODE[arm] + "\nSTART = time.perf_counter()\n" if warm else ""
  return textwrap.dedent(common) + again + ARM_CODE[arm] + end


def run(arm: str, case: str, k: int, warm: bool = False) -> tuple[float, float, float]:
  start = time.perf_counter()
  out = subprocess.run([sys.executable, "-c", script(arm, case, k, warm)], capture_output=True,
                       text=True, check=False)  # fmt: skip
  seconds = time.perf_counter() - start
  if out.returncode != 0:
    raise RuntimeError(f"{arm} failed:\n{out.stderr[-3000:]}")
  acc = float(out.stdout.split("ACC")[-1])
  job = float(out.stdout.split("JOB")[-1].split()[0])
  return seconds, job, acc


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
  parser.add_argument("--k", type=int, default=16)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--out", default="benchmarks/stream.json")
  parser.add_argument(
    "--warm", action="store_true", help="time a second, equal job in the same process (job s)"
  )
  args = parser.parse_args()
  report = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count()}
  for case in args.cases:
    times: dict[str, list[float]] = {arm: [] for arm in ARMS}
    jobs: dict[str, list[float]] = {arm: [] for arm in ARMS}
    accs: dict[str, float] = {}
    for _ in range(args.repeats):
      for arm in ARMS:
        seconds, job, acc = run(arm, case, args.k, args.warm)
        times[arm].append(seconds)
        jobs[arm].append(job)
        accs[arm] = acc
    kind = "warm: a second, equal job in the process" if args.warm else "cold"
    print(f"\n{case}, K = {args.k}, {kind}: wall seconds (median of {args.repeats})")
    print("  process: the whole fresh process; job: after the imports and the data")
    head = f"{'arm':<11} {'process s':>9} {'vs loop (paired)':>22} {'job s':>7} {'vs loop':>22}"
    print(head + f" {'val acc':>8}")
    for arm in ARMS:
      cells = []
      for figures in (times, jobs):
        ratios = [loop / t for loop, t in zip(figures["loop"], figures[arm], strict=True)]
        cells.append(
          f"{statistics.median(figures[arm]):>9.1f} {statistics.median(ratios):>9.2f}x"
          f" ({min(ratios):.2f}-{max(ratios):.2f})"
        )
      print(f"{arm:<11} {cells[0]} {cells[1]} {accs[arm]:>8.3f}")
    for figures, what in ((times, "process"), (jobs, "job")):
      streamed = [m / s for m, s in zip(figures["memory"], figures["stream"], strict=True)]
      print(f"stream vs memory ({what}, paired): {statistics.median(streamed):.2f}x")
    report[case] = {"process_s": times, "job_s": jobs, "val_accuracy": accs}
  with open(args.out, "w") as f:
    json.dump(report, f, indent=2)


if __name__ == "__main__":
  main()
