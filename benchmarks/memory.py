"""The plan's bytes per device against XLA's for one training step, ResNet-18 and ResNet-20.

For each model, ``fj.plan`` lays out a sweep (21 levels x 5 seeds, the
README's example) under ``--memory-limit`` (default 16 GiB, a 16 GB GPU) on
one XLA CPU device, with CIFAR-10-shaped random data (40,000 / 10,000 /
10,000 images of 32x32x3, float32: the paper's 80:20 split) and the default
batch sizes (``--batch-size 128``, ``eval_batch_size`` 2048). Then, as the
issue measured it, one jitted SGD-momentum training step of the same number
of models, vmapped (``jit(vmap(step)).lower(...).compile().memory_analysis()``,
parameters and optimizer state donated), is compiled, and both peaks are
printed (peak = arguments + outputs - aliased + temporaries). The plan's
peak is that of the whole call (data, models, the epoch's scan, the
evaluation), so it should be at least the step's. Nothing runs on a device;
only compilation.

  FLOOD_JAX_CPU_DEVICES=1 python benchmarks/memory.py
  FLOOD_JAX_CPU_DEVICES=1 python benchmarks/memory.py --models resnet20 --memory-limit 8GiB
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import flood_jax as fj
from flood_jax import models
from flood_jax._sweep.memory import format_bytes, parse_bytes


def cifar_shaped(n_train: int, n_val: int, n_test: int) -> fj.Dataset:
  rng = np.random.default_rng(0)

  def split(n):
    return rng.random((n, 32, 32, 3), np.float32), rng.integers(0, 10, n).astype(np.int32)

  (xtr, ytr), (xv, yv), (xte, yte) = split(n_train), split(n_val), split(n_test)
  return fj.Dataset(
    x_train=xtr, y_train=ytr, x_val=xv, y_val=yv, x_test=xte, y_test=yte, num_classes=10
  )


def step_peak(model, k: int, batch_size: int) -> int:
  """XLA's peak bytes for one vmapped SGD-momentum step of ``k`` models (linen, BatchNorm)."""
  tx = optax.sgd(0.1, momentum=0.9)
  x = jax.ShapeDtypeStruct((batch_size, 32, 32, 3), jnp.float32)
  y = jax.ShapeDtypeStruct((batch_size,), jnp.int32)

  def init(key):
    variables = model.init(key, jnp.zeros((1, 32, 32, 3)), train=False)
    return variables, tx.init(variables["params"])

  keys = jax.ShapeDtypeStruct((k,), jax.random.key(0).dtype)
  variables, opt_state = jax.eval_shape(jax.vmap(init), keys)

  def step(variables, opt_state, x, y):
    def loss_fn(params):
      logits, new = model.apply(
        {**variables, "params": params}, x, train=True, mutable=["batch_stats"]
      )
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), new

    (loss, new), grads = jax.value_and_grad(loss_fn, has_aux=True)(variables["params"])
    updates, opt_state = tx.update(grads, opt_state, variables["params"])
    params = optax.apply_updates(variables["params"], updates)
    return {**new, "params": params}, opt_state, loss

  compiled = (
    jax.jit(jax.vmap(step, in_axes=(0, 0, None, None)), donate_argnums=(0, 1))
    .lower(variables, opt_state, x, y)
    .compile()
  )
  m = compiled.memory_analysis()
  return int(
    m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes + m.temp_size_in_bytes
  )


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--models", default="resnet18,resnet20")
  parser.add_argument("--memory-limit", default="16GiB")
  parser.add_argument("--batch-size", type=int, default=128)
  parser.add_argument("--eval-batch-size", type=int, default=2048)
  parser.add_argument("--levels", type=int, default=21)
  parser.add_argument("--seeds", type=int, default=5)
  parser.add_argument("--train", type=int, default=40000)
  args = parser.parse_args()
  limit = parse_bytes(args.memory_limit)
  data = cifar_shaped(args.train, args.train // 4, args.train // 4)
  print(
    f"plan vs XLA, {time.strftime('%Y-%m-%d %H:%M %Z')};"
    f" {platform.processor() or platform.machine()} {os.cpu_count()} cores;"
    f" jax {jax.__version__}, {jax.device_count()}"
    f" {jax.devices()[0].platform} device(s); data {data.num_train}/{len(data.y_val)}/"
    f"{len(data.y_test)} x 32x32x3 float32; batch {args.batch_size}, eval batch"
    f" {args.eval_batch_size};"
    f" {args.levels} levels x {args.seeds} seeds; memory_limit {format_bytes(limit)}"
  )
  header = (
    f"{'model':<9} {'params':>8} {'old rule k':>10} {'plan k':>6} {'calls':>5}"
    f" {'plan bytes':>10} {'XLA step k':>10} {'plan/step':>9} {'per model':>9}"
    f" {'fixed':>9} {'plan s':>7}"
  )
  rows = []
  for name in args.models.split(","):
    model = models.get_model(name, 10)
    params = fj._sweep.count_params(model, data)
    old = int(max(1, min(256, 2**32 // (16 * params))))
    start = time.perf_counter()
    plan = fj.plan(
      model,
      data,
      flood_levels=np.linspace(0, 0.1, args.levels),
      seeds=list(range(args.seeds)),
      optimizer=optax.sgd(0.1, momentum=0.9),
      epochs=1,
      batch_size=args.batch_size,
      eval_batch_size=args.eval_batch_size,
      memory_limit=limit,
    )
    seconds = time.perf_counter() - start
    assert plan.bytes_per_device is not None
    step = step_peak(model, plan.chunk_size, args.batch_size)
    rows.append(
      f"{name:<9} {params / 1e6:>7.2f}M {old:>10} {plan.chunk_size:>6} {plan.calls:>5}"
      f" {format_bytes(plan.bytes_per_device):>10} {format_bytes(step):>10}"
      f" {plan.bytes_per_device / step:>8.2f}x {format_bytes(plan.per_model_bytes or 0):>9}"
      f" {format_bytes(plan.fixed_bytes or 0):>9} {seconds:>7.1f}"
    )
    print(plan, flush=True)
  print(header)
  for row in rows:
    print(row)


if __name__ == "__main__":
  main()
