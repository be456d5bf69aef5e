"""Speed of flood_jax.sweep against the loops people write by hand.

For each model and each sweep size K, in one process:
  * sweep:    flood_jax.sweep over K models (K flood levels, one seed).
  * jax loop: the loop a JAX user writes: one jitted single-model whole-run
              function (lax.scan over epochs and steps, evaluation every
              epoch), called once per model. Its per-model time does not
              depend on K, so it is timed on min(K, --loop-models) models.
  * torch:    (K = 16, if torch is installed) the paper's official way: a
              Python loop over levels, `loss = (loss - b).abs() + b`.
All run the same MLP, data (spiral, 1,000 training examples), batch size,
steps and per-epoch evaluation. Also measured in the same run: the machine's
f32 matrix-multiply throughput, and the sweep's achieved FLOP/s against it.

The sweep sets one XLA CPU device per core before JAX starts, as the
`flood-jax` command does; the hand loop runs on one of them.

  python benchmarks/sweep.py                      # full table
  python benchmarks/sweep.py --ks 1,16 --widths 32   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time

if "--xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
  _devices = int(os.environ.get("FLOOD_JAX_BENCH_DEVICES", os.cpu_count() or 1))
  os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={_devices}"
  ).strip()

import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import flood_jax as fj
from flood_jax import data as fj_data
from flood_jax._sweep import plan_layout


class PlainMLP(nn.Module):
  """ReLU MLP without BatchNorm, the same in JAX and in torch."""

  width: int
  depth: int = 2
  num_classes: int = 2

  @nn.compact
  def __call__(self, x, train: bool = True):
    del train
    for _ in range(self.depth):
      x = nn.relu(nn.Dense(self.width)(x))
    return nn.Dense(self.num_classes)(x)


def hand_loop_run(model, data, tx, epochs, batch_size):
  """The single-model whole run a JAX user writes; jitted once, called per model."""
  x_tr, y_tr = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
  splits = [
    (jnp.asarray(data.x_val), jnp.asarray(data.y_val)),
    (jnp.asarray(data.x_test), jnp.asarray(data.y_test)),
  ]
  n = x_tr.shape[0]
  steps = n // batch_size

  def loss_fn(params, x, y):
    logits = model.apply({"params": params}, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  def evaluate(params, x, y):
    logits = model.apply({"params": params}, x)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return loss, jnp.mean(jnp.argmax(logits, -1) == y)

  @jax.jit
  def run(seed, level):
    init_key, shuffle_key = jax.random.split(jax.random.key(seed))
    params = model.init(init_key, x_tr[:1])["params"]
    opt_state = tx.init(params)

    def epoch_fn(carry, epoch):
      params, opt_state = carry
      perm = jax.random.permutation(jax.random.fold_in(shuffle_key, epoch), n)
      batches = perm[: steps * batch_size].reshape(steps, batch_size)

      def step(carry, idx):
        params, opt_state = carry
        loss, grads = jax.value_and_grad(
          lambda p: fj.flooded_loss(loss_fn(p, x_tr[idx], y_tr[idx]), level)
        )(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

      (params, opt_state), _ = jax.lax.scan(step, (params, opt_state), batches)
      metrics = [evaluate(params, x_tr, y_tr)[0]] + [
        m for s in splits for m in evaluate(params, *s)
      ]
      return (params, opt_state), jnp.stack(metrics)

    (params, _), history = jax.lax.scan(epoch_fn, (params, opt_state), jnp.arange(epochs))
    return params, history

  return run


def torch_loop(width, depth, data, epochs, batch_size, levels, lr):
  import torch

  torch.manual_seed(0)
  x_tr = torch.from_numpy(data.x_train)
  y_tr = torch.from_numpy(data.y_train).long()
  evals = [
    (torch.from_numpy(x), torch.from_numpy(y).long())
    for x, y in [(data.x_train, data.y_train), (data.x_val, data.y_val), (data.x_test, data.y_test)]
  ]
  n = x_tr.shape[0]
  start = time.perf_counter()
  for level in levels:
    layers, d = [], x_tr.shape[1]
    for _ in range(depth):
      layers += [torch.nn.Linear(d, width), torch.nn.ReLU()]
      d = width
    net = torch.nn.Sequential(*layers, torch.nn.Linear(d, 2))
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    criterion = torch.nn.CrossEntropyLoss()
    for _ in range(epochs):
      net.train()
      perm = torch.randperm(n)
      for i in range(n // batch_size):
        idx = perm[i * batch_size : (i + 1) * batch_size]
        opt.zero_grad()
        loss = criterion(net(x_tr[idx]), y_tr[idx])
        flood = (loss - level).abs() + level  # the official code's line
        flood.backward()
        opt.step()
      net.eval()
      with torch.no_grad():
        for x, y in evals:
          out = net(x)
          criterion(out, y).item()
          (out.argmax(1) == y).float().mean().item()
  return (time.perf_counter() - start) / len(levels)


def matmul_flops_per_s(size=1024, repeats=20):
  """The machine's own f32 matmul throughput (one jitted square matmul)."""
  a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)
  b = jax.random.normal(jax.random.key(1), (size, size), jnp.float32)
  f = jax.jit(lambda a, b: a @ b)
  f(a, b).block_until_ready()
  best = np.inf
  for _ in range(repeats):
    start = time.perf_counter()
    f(a, b).block_until_ready()
    best = min(best, time.perf_counter() - start)
  return 2 * size**3 / best


def model_flops(width, depth, inputs, classes, data, steps, epochs, batch_size):
  """Matmul FLOPs of one model's run: 6 per weight per training example, 2 per evaluated one."""
  dims = [inputs] + [width] * depth + [classes]
  weights = sum(a * b for a, b in itertools.pairwise(dims))
  evaluated = data.num_train + len(data.x_val) + len(data.x_test)
  return epochs * (6 * weights * steps * batch_size + 2 * weights * evaluated)


def peak_rss_mb():
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--ks", default="1,4,16,64,256")
  parser.add_argument("--widths", default="32,500")
  parser.add_argument("--depth", type=int, default=2)
  parser.add_argument("--epochs", type=int, default=20)
  parser.add_argument("--batch-size", type=int, default=100)
  parser.add_argument("--loop-models", type=int, default=8)
  parser.add_argument("--chunk-size", type=int, default=None)
  parser.add_argument("--repeats", type=int, default=2, help="for K <= 16; 1 above")
  parser.add_argument("--torch", action=argparse.BooleanOptionalAction, default=True)
  parser.add_argument("--json", default=None, help="also write the rows here")
  args = parser.parse_args()

  data = fj_data.load("spiral", n_train=1000, n_val=500, n_test=1000, seed=0)
  steps = data.num_train // args.batch_size
  lr = 0.01
  optimizer = optax.sgd(lr, momentum=0.9)
  # The best of two sizes; measured again at the end (the machine is shared).
  peak = max(matmul_flops_per_s(1024), matmul_flops_per_s(2048, repeats=10))
  print(
    f"machine: {platform.machine()} {os.cpu_count()} cores, {jax.devices()[0].platform},"
    f" {jax.device_count()} XLA devices, jax {jax.__version__}, python {sys.version.split()[0]}"
  )
  print(
    f"data: spiral, {data.num_train} train / {len(data.x_val)} val / {len(data.x_test)} test;"
    f" {args.epochs} epochs x {steps} steps of batch {args.batch_size} = {args.epochs * steps}"
    " steps per model, evaluation every epoch"
  )
  print(f"f32 matmul throughput (jit, 1024^3 and 2048^3, best): {peak / 1e9:.1f} GFLOP/s")
  rows = []
  for width in [int(w) for w in args.widths.split(",")]:
    model = PlainMLP(width, args.depth)
    flops = model_flops(width, args.depth, 2, 2, data, steps, args.epochs, args.batch_size)
    run = hand_loop_run(model, data, optax.chain(optimizer), args.epochs, args.batch_size)
    jax.block_until_ready(run(0, 0.0))  # compile
    print(f"\nMLP 2-{'-'.join([str(width)] * args.depth)}-2, SGD momentum 0.9, lr {lr}")
    print(
      f"{'K':>5} {'sweep s/model':>14} {'loop s/model':>13} {'speed-up':>9}"
      f" {'chunk':>6} {'% matmul peak':>14} {'peak RSS MB':>12}"
    )
    for k in [int(k) for k in args.ks.split(",")]:
      levels = np.linspace(0.0, 0.5, k)
      sweep_times, loop_times = [], []
      # Compile: one call's worth of models runs the same program as the sweep.
      _, used, chunk = plan_layout(model, data, k, args.batch_size, chunk_size=args.chunk_size)
      fj.sweep(
        model,
        data,
        flood_levels=levels[: used * chunk],
        optimizer=optimizer,
        epochs=args.epochs,
        batch_size=args.batch_size,
        chunk_size=chunk,
        progress=False,
      )
      repeats = args.repeats if k <= 16 else 1
      for _ in range(repeats):  # interleaved: loop, sweep, loop, sweep
        loop_k = min(k, args.loop_models)
        start = time.perf_counter()
        for level in levels[:loop_k]:
          jax.block_until_ready(run(0, float(level)))
        loop_times.append((time.perf_counter() - start) / loop_k)
        start = time.perf_counter()
        result = fj.sweep(
          model,
          data,
          flood_levels=levels,
          optimizer=optimizer,
          epochs=args.epochs,
          batch_size=args.batch_size,
          chunk_size=chunk,
          progress=False,
        )
        sweep_times.append((time.perf_counter() - start) / k)
      sweep_t, loop_t = min(sweep_times), min(loop_times)
      achieved = flops / sweep_t
      row = dict(
        width=width,
        k=k,
        sweep_s_per_model=sweep_t,
        loop_s_per_model=loop_t,
        speedup=loop_t / sweep_t,
        chunk=result.config["chunk_size"],
        devices=result.config["devices"],
        pct_peak=100 * achieved / peak,
        peak_rss_mb=peak_rss_mb(),
      )
      rows.append(row)
      print(
        f"{k:>5} {sweep_t:>14.4f} {loop_t:>13.4f} {row['speedup']:>8.2f}x"
        f" {row['chunk']:>3}x{row['devices']:<2} {row['pct_peak']:>13.1f}%"
        f" {row['peak_rss_mb']:>12.0f}"
      )
    if args.torch:
      try:
        import torch
      except ImportError:
        print("torch not installed: pip install torch==2.13.0 to compare (CPU build)")
      else:
        levels = np.linspace(0.0, 0.5, 16)
        torch_t = torch_loop(
          width, args.depth, data, args.epochs, args.batch_size, levels[: args.loop_models], lr
        )
        start = time.perf_counter()
        fj.sweep(
          model,
          data,
          flood_levels=levels,
          optimizer=optimizer,
          epochs=args.epochs,
          batch_size=args.batch_size,
          chunk_size=args.chunk_size,
          progress=False,
        )
        sweep_t = (time.perf_counter() - start) / 16
        rows.append(
          dict(
            width=width,
            k=16,
            torch_s_per_model=torch_t,
            sweep_s_per_model=sweep_t,
            speedup_vs_torch=torch_t / sweep_t,
          )
        )
        print(
          f"   16 vs PyTorch {torch.__version__} loop (torch threads {torch.get_num_threads()}):"
          f" torch {torch_t:.4f} s/model, sweep {sweep_t:.4f} s/model,"
          f" {torch_t / sweep_t:.2f}x"
        )
  peak_end = max(matmul_flops_per_s(1024), matmul_flops_per_s(2048, repeats=10))
  print(
    f"\nf32 matmul throughput again at the end: {peak_end / 1e9:.1f} GFLOP/s"
    " (the % column uses the first)"
  )
  if args.json:
    with open(args.json, "w") as f:
      json.dump(rows, f, indent=1)


if __name__ == "__main__":
  main()
