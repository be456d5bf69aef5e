"""What a second process costs: 1 process x 2 devices against 2 processes x 1 device.

The same sweep on the same total number of XLA CPU devices (one per core),
laid out as one process with two devices or as two processes with one each,
joined by ``jax.distributed`` on localhost (gloo collectives): the second
stands in for two hosts. The models are independent, so the difference is
the multi-process machinery: each call's metrics gathered from both
processes, the parameters gathered at the end, and the processes' start and
join. The gathers are also timed on their own (after the computation has
finished). Each layout runs the sweep once to compile, then ``--repeats`` times
warm; the per-epoch time is a warm run's wall time over its epochs. The two
layouts alternate (A, B, A, B) so machine noise hits both alike.

  python benchmarks/multihost.py [--width 128] [--models 8] [--epochs 40] [--rounds 3]

Also prints what a multi-process sweep moves between processes: metric bytes
per call, parameter bytes per sweep, and the gathered bytes a checkpoint
writes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def worker(spec: dict, out: str) -> None:
  """One process of one layout: compiles, then times warm sweeps."""
  sys.path.insert(0, ROOT)
  from flood_jax import _launch
  from flood_jax._sweep import hosts

  _launch.initialize_from_env()
  import flax.linen as nn
  import jax
  import numpy as np
  import optax

  import flood_jax as fj
  from flood_jax._sweep import checkpoint

  width = spec["width"]
  # The multi-process machinery's own cost: time in the driver's gathers
  # (metrics each call, parameters each chunk), after the computation is done.
  gather = {"s": 0.0, "n": 0}
  to_host = hosts.to_host

  def timed_to_host(x):
    jax.block_until_ready(x)
    start = time.perf_counter()
    out = to_host(x)
    gather["s"] += time.perf_counter() - start
    gather["n"] += 1
    return out

  hosts.to_host = timed_to_host

  class MLP(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool):
      for _ in range(2):
        x = nn.relu(nn.Dense(width)(x))
      return nn.Dense(2)(x)

  rng = np.random.default_rng(0)
  x = rng.normal(size=(3000, 16)).astype(np.float32)
  y = (np.sin(2 * x[:, 0]) > x[:, 1]).astype(np.int32)
  data = fj.Dataset(
    x_train=x[:2000],
    y_train=y[:2000],
    x_val=x[2000:2500],
    y_val=y[2000:2500],
    x_test=x[2500:],
    y_test=y[2500:],
    name="bench",
  )
  levels = np.linspace(0, 0.3, spec["models"] // 2).tolist()
  kwargs = dict(
    flood_levels=levels,
    seeds=[0, 1],
    optimizer=optax.sgd(0.05, momentum=0.9),
    epochs=spec["epochs"],
    batch_size=100,
    chunk_size=spec["chunk_size"],
    epochs_per_call=spec["epochs_per_call"],
    eval_every=1,
    progress=False,
  )
  times, ckpt_times = [], []
  fj.sweep(MLP(), data, **kwargs)  # compile
  gather.update(s=0.0, n=0)
  for _ in range(spec["repeats"]):
    times.append(fj.sweep(MLP(), data, **kwargs).wall_time)
  gather_s = gather["s"] / spec["repeats"]
  checkpoint.EVERY_S = 0.0  # a save after every call
  # Every process names the same directory (the driver's temporary one).
  directory = os.path.join(spec["ckpt_root"], f"run{jax.process_count()}")
  result = fj.sweep(MLP(), data, checkpoint_dir=directory, **kwargs)
  ckpt_times.append(result.wall_time)
  params = sum(
    np.prod(leaf.shape[len(result.axes) :]) for leaf in jax.tree.leaves(result.final_params)
  )
  if jax.process_index() == 0:
    with open(out, "w") as f:
      json.dump(
        dict(
          times=times,
          ckpt_times=ckpt_times,
          gather_s=gather_s,
          processes=jax.process_count(),
          devices=len(jax.devices()),
          params_per_model=int(params),
          models=len(levels) * 2,
        ),
        f,
      )


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--width", type=int, default=128)
  parser.add_argument("--models", type=int, default=8)
  parser.add_argument("--epochs", type=int, default=40)
  parser.add_argument("--epochs-per-call", type=int, default=10)
  parser.add_argument("--repeats", type=int, default=2, help="warm runs per layout and round")
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--worker", nargs=2, metavar=("SPEC", "OUT"), help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    worker(json.loads(args.worker[0]), args.worker[1])
    return

  sys.path.insert(0, ROOT)
  import numpy as np

  from flood_jax import _launch

  env = dict(os.environ)
  env["PYTHONPATH"] = os.pathsep.join([ROOT, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
  env.pop("FLOOD_JAX_CPU_DEVICES", None)
  layouts = {"1 process x 2 devices": (1, 2), "2 processes x 1 device": (2, 1)}
  per_epoch = {name: [] for name in layouts}
  per_epoch_ckpt = {name: [] for name in layouts}
  starts = {name: [] for name in layouts}
  gathers = {name: [] for name in layouts}
  info = {}
  with tempfile.TemporaryDirectory() as tmp:
    for round_ in range(args.rounds):
      for name, (processes, devices) in layouts.items():
        spec = dict(
          width=args.width,
          models=args.models,
          epochs=args.epochs,
          epochs_per_call=args.epochs_per_call,
          repeats=args.repeats,
          chunk_size=args.models // 2,
          ckpt_root=os.path.join(tmp, f"c{round_}"),
        )
        out = os.path.join(tmp, f"{processes}-{round_}.json")
        start = time.perf_counter()
        runs = _launch.run_local_processes(
          [__file__, "--worker", json.dumps(spec), out], processes, devices, timeout=600, env=env
        )
        starts[name].append(time.perf_counter() - start)
        for i, run in enumerate(runs):
          if run.returncode != 0:
            sys.exit(f"{name}, process {i} failed:\n{run.stderr[-3000:]}")
        with open(out) as f:
          info = json.load(f)
        per_epoch[name] += [t / args.epochs for t in info["times"]]
        per_epoch_ckpt[name] += [t / args.epochs for t in info["ckpt_times"]]
        gathers[name].append(info["gather_s"] / args.epochs)

  print(
    f"machine: {platform.machine()}, {os.cpu_count()} cores; "
    f"{info['models']} models of a 2 x {args.width} MLP ({info['params_per_model']}"
    f" parameters each), 2,000 training examples, batch 100, {args.epochs} epochs,"
    f" {args.epochs_per_call} per call, chunk {args.models // 2} per device;"
    f" {args.rounds} rounds x {args.repeats} warm runs per layout"
  )
  print(
    "| layout | s/epoch, warm (median, min-max) | of which gathering results |"
    " s/epoch with a checkpoint per call | whole run incl. start, compile (median) |"
  )
  print("|---|---|---|---|---|")
  for name in layouts:
    t, c = np.array(per_epoch[name]), np.array(per_epoch_ckpt[name])
    print(
      f"| {name} | {np.median(t):.4f} ({t.min():.4f}-{t.max():.4f}) |"
      f" {np.median(gathers[name]):.5f} | {np.median(c):.4f} |"
      f" {np.median(starts[name]):.1f} s |"
    )
  one, two = (np.array(per_epoch[n]) for n in layouts)
  print(
    f"overhead per epoch, 2 processes over 1: {np.median(two) / np.median(one) - 1:+.1%}"
    f" ({np.median(two) - np.median(one):+.4f} s/epoch)"
  )
  calls = args.epochs // args.epochs_per_call
  models = info["models"]
  metric_bytes = models * args.epochs_per_call * 6 * 4
  param_bytes = models * info["params_per_model"] * 4
  print(
    f"gathered per call: {metric_bytes:,} bytes of metrics ({calls} calls);"
    f" parameters at the end: {param_bytes:,} bytes; a checkpoint of the"
    f" call in progress gathers the carry, about {2 * param_bytes:,} bytes"
    " (parameters and SGD momentum)"
  )


if __name__ == "__main__":
  main()
