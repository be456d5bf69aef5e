"""Cost of flooding per training step: chain(flood(b), sgd) against sgd alone.

Both steps are jitted, take the same MLP, batch and data, and are timed
interleaved (A, B, A, B, ...) in one process so that machine noise hits both
alike. Prints the median ratio flooded/plain with its interquartile range.

  python benchmarks/overhead.py [--width 500] [--batch 100] [--rounds 200]
"""

from __future__ import annotations

import argparse
import platform
import time

import flax.linen as nn
import jax
import numpy as np
import optax

import flood_jax as fj


class MLP(nn.Module):
  width: int
  depth: int

  @nn.compact
  def __call__(self, x):
    for _ in range(self.depth):
      x = nn.relu(nn.Dense(self.width)(x))
    return nn.Dense(10)(x)


def make_step(model, tx, with_value):
  def loss_fn(params, x, y):
    logits = model.apply({"params": params}, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  @jax.jit
  def step(params, opt_state, x, y):
    loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
    extra = {"value": loss} if with_value else {}
    updates, opt_state = tx.update(grads, opt_state, params, **extra)
    return optax.apply_updates(params, updates), opt_state, loss

  return step


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--width", type=int, default=500)
  parser.add_argument("--depth", type=int, default=3)
  parser.add_argument("--inputs", type=int, default=784)
  parser.add_argument("--batch", type=int, default=100)
  parser.add_argument("--rounds", type=int, default=200)
  parser.add_argument("--steps-per-sample", type=int, default=20)
  args = parser.parse_args()

  model = MLP(args.width, args.depth)
  key = jax.random.key(0)
  x = jax.random.normal(key, (args.batch, args.inputs))
  y = jax.random.randint(key, (args.batch,), 0, 10)
  params = model.init(key, x)["params"]
  n_params = sum(p.size for p in jax.tree.leaves(params))
  # b = 10 floods every step, so the sign flip is really taken.
  variants = {
    "sgd": (optax.sgd(0.01), False),
    "flood+sgd": (optax.chain(fj.flood(10.0), optax.sgd(0.01)), True),
  }
  runners = {}
  for name, (tx, with_value) in variants.items():
    step = make_step(model, tx, with_value)
    state = [params, tx.init(params)]
    for _ in range(5):  # compile and warm up
      state[0], state[1], loss = step(state[0], state[1], x, y)
    loss.block_until_ready()
    runners[name] = (step, state)

  samples = {name: [] for name in runners}
  for r in range(args.rounds):
    order = list(runners) if r % 2 == 0 else list(reversed(runners))
    for name in order:
      step, state = runners[name]
      start = time.perf_counter()
      for _ in range(args.steps_per_sample):
        state[0], state[1], loss = step(state[0], state[1], x, y)
      loss.block_until_ready()
      samples[name].append((time.perf_counter() - start) / args.steps_per_sample)

  plain = np.asarray(samples["sgd"])
  flooded = np.asarray(samples["flood+sgd"])
  ratios = flooded / plain  # paired, same round
  q1, med, q3 = np.percentile(ratios, [25, 50, 75])
  print(
    f"machine: {platform.processor() or platform.machine()}, {jax.devices()[0].platform},"
    f" jax {jax.__version__}"
  )
  print(
    f"MLP {args.inputs}-{'-'.join([str(args.width)] * args.depth)}-10"
    f" ({n_params:,} params), batch {args.batch},"
    f" {args.rounds} rounds x {args.steps_per_sample} steps, interleaved"
  )
  print(f"  sgd        median step {np.median(plain) * 1e3:8.3f} ms")
  print(f"  flood+sgd  median step {np.median(flooded) * 1e3:8.3f} ms")
  print(
    f"  ratio flood+sgd / sgd: median {med:.4f} (IQR {q1:.4f} to {q3:.4f});"
    f" overhead {100 * (med - 1):+.2f}% (target <= +1%)"
  )


if __name__ == "__main__":
  main()
