"""Wall time of fj.sweep as a user's plain script sees it, against the hand loop.

Every measurement runs in a FRESH Python process, so compilation is paid as a
user pays it. The user's script imports flood_jax, builds a linen MLP and an
`fj.Dataset`, and times one call; nothing else is set up: no XLA_FLAGS, so
the processes get whatever device count `import flood_jax` leaves them
(printed), unless --devices N sets XLA_FLAGS for both arms.

  * sweep: `fj.sweep(model, data, flood_levels=K levels, seeds=[0],
           optimizer=optax.sgd(0.01, momentum=0.9), epochs, batch_size,
           progress=False)`, timed from just before the call to just after;
           then a second call with freshly built, equal arguments (new data,
           model, levels and optimizer objects) in the same process.
  * loop:  what a JAX user writes by hand: one jitted whole-run function
           (lax.scan over epochs and mini-batch steps, a shuffle per epoch,
           `optax.chain(fj.flood(b), optax.sgd(0.01, momentum=0.9))`, and
           the evaluation fj.sweep does by default, on its schedule: after
           the same epochs, plain loss on the same training subsample,
           validation and test loss and accuracy; flooded fraction every
           epoch), with b a traced argument so it compiles once, called once
           per level in a Python loop. Timed around everything the user
           writes for it (arrays to device, the function, the loop, results
           to host). The schedule is read from the engine's defaults, and the
           driver checks that both arms evaluated the same epochs and
           examples and reached the same mean final validation accuracy.

Compile seconds: the sum of JAX's '/jax/core/compile/backend_compile_duration'
events inside the timed region (XLA compilation; tracing and lowering are
recorded separately in the JSON).

Data: a fixed random linear teacher with label noise, 40 inputs, 10 classes,
2,000 train / 1,000 val / 1,000 test; batch 100, 30 epochs (20 steps each).
Models: linen MLPs without BatchNorm, 40-32-32-10 and 40-500-500-500-10.
Runs are interleaved (sweep, loop, loop, sweep, ...) and medians reported.

  python benchmarks/cold.py                                   # the full table
  python benchmarks/cold.py --cases mlp32x2 --ks 16 --repeats 1   # a quick look
  python benchmarks/cold.py --devices 2                       # both arms on 2 XLA CPU devices
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

_T_START = time.perf_counter()

CASES = {  # name: (hidden widths, default Ks)
  "mlp32x2": ((32, 32), (16, 64)),
  "mlp500x3": ((500, 500, 500), (16,)),
}
INPUTS, CLASSES = 40, 10
N_TRAIN, N_VAL, N_TEST = 2000, 1000, 1000
LR, MOMENTUM = 0.01, 0.9
MAX_LEVEL = 0.5
MARK = "COLD_RESULT "
COMPILE_EVENTS = {
  "/jax/core/compile/backend_compile_duration": "backend_compile",
  "/jax/core/compile/jaxpr_trace_duration": "jaxpr_trace",
  "/jax/core/compile/jaxpr_to_mlir_module_duration": "to_mlir",
}


# --------------------------------------------------------------------------
# Worker side: runs in a fresh process, prints one JSON line.
# --------------------------------------------------------------------------


class _CompileLog:
  """Counts and sums JAX's compile-duration events (jax.monitoring)."""

  def __init__(self):
    import jax

    self.events: list[tuple[str, float]] = []
    jax.monitoring.register_event_duration_secs_listener(self._on_event)

  def _on_event(self, event, duration, **_):
    if event in COMPILE_EVENTS:
      self.events.append((COMPILE_EVENTS[event], float(duration)))

  def mark(self) -> int:
    return len(self.events)

  def since(self, mark: int) -> dict:
    out = {}
    for name in COMPILE_EVENTS.values():
      durations = [d for n, d in self.events[mark:] if n == name]
      out[f"{name}_s"] = sum(durations)
      out[f"{name}_count"] = len(durations)
    out["backend_compile_each_s"] = [
      round(d, 4) for n, d in self.events[mark:] if n == "backend_compile"
    ]
    return out


def make_data(seed: int = 0):
  """A random linear teacher with 10% label noise (numpy only)."""
  import numpy as np

  import flood_jax as fj

  rng = np.random.default_rng(seed)
  teacher = rng.normal(size=(INPUTS, CLASSES)) / np.sqrt(INPUTS)

  def split(n):
    x = rng.normal(size=(n, INPUTS)).astype(np.float32)
    y = np.argmax(x @ teacher * 3.0 + rng.gumbel(size=(n, CLASSES)), axis=1)
    flip = rng.random(n) < 0.1
    y[flip] = rng.integers(0, CLASSES, size=int(flip.sum()))
    return x, y.astype(np.int32)

  (xtr, ytr), (xv, yv), (xte, yte) = split(N_TRAIN), split(N_VAL), split(N_TEST)
  return fj.Dataset(
    x_train=xtr,
    y_train=ytr,
    x_val=xv,
    y_val=yv,
    x_test=xte,
    y_test=yte,
    num_classes=CLASSES,
    name="linear-teacher",
  )


_MLP = None


def make_model(widths):
  """A new MLP object; its class is defined once per process, as in a script."""
  global _MLP
  if _MLP is None:
    _MLP = _define_mlp()
  return _MLP(tuple(widths))


def _define_mlp():
  import flax.linen as nn

  class MLP(nn.Module):
    """ReLU MLP without BatchNorm; `train` is accepted and unused."""

    widths: tuple
    num_classes: int = CLASSES

    @nn.compact
    def __call__(self, x, train: bool = True):
      del train
      for w in self.widths:
        x = nn.relu(nn.Dense(w)(x))
      return nn.Dense(self.num_classes)(x)

  return MLP


def make_levels(k):
  import numpy as np

  return np.linspace(0.0, MAX_LEVEL, k)


def worker_sweep(widths, k, epochs, batch_size):
  t0 = time.perf_counter()
  import jax
  import numpy as np
  import optax

  import flood_jax as fj

  log = _CompileLog()
  t_import = time.perf_counter() - t0

  t0 = time.perf_counter()
  data, model, levels = make_data(), make_model(widths), make_levels(k)
  t_setup = time.perf_counter() - t0

  calls = []
  for i in range(2):
    if i == 1:  # freshly built, equal arguments
      data, model, levels = make_data(), make_model(widths), make_levels(k)
    optimizer = optax.sgd(LR, momentum=MOMENTUM)
    mark = log.mark()
    start = time.perf_counter()
    result = fj.sweep(
      model,
      data,
      flood_levels=levels,
      seeds=[0],
      optimizer=optimizer,
      epochs=epochs,
      batch_size=batch_size,
      progress=False,
    )
    wall = time.perf_counter() - start
    val_acc = np.asarray(result.history["val_accuracy"])
    calls.append(
      dict(
        wall_s=wall,
        **log.since(mark),
        final_val_acc_mean=float(val_acc[..., -1].mean()),
        chunk_size=result.config.get("chunk_size"),
        devices=result.config.get("devices"),
      )
    )
  evaluated = getattr(result, "epochs", None)
  schedule = dict(
    eval_epochs=[
      int(e) for e in (evaluated if evaluated is not None else np.arange(1, epochs + 1))
    ],
    train_eval_size=int(result.config.get("train_eval_size") or data.num_train),
    eval_test=bool(result.config.get("eval_test", True)),
  )
  return dict(
    arm="sweep",
    import_s=t_import,
    setup_s=t_setup,
    first=calls[0],
    second=calls[1],
    schedule=schedule,
    compile_cache_dir=jax.config.jax_compilation_cache_dir,
    jax_version=jax.__version__,
    device_count=jax.device_count(),
    platform=jax.devices()[0].platform,
  )


def sweep_schedule(data, epochs, batch_size):
  """What fj.sweep evaluates by default here: (evaluated epochs from 1, train subsample, test?).

  Read from the engine, so the hand loop does the same work whatever the
  engine's defaults are; a user writes these down as constants. An engine
  without `eval_every` evaluates the whole training set every epoch.
  """
  import inspect

  import numpy as np

  import flood_jax as fj

  params = inspect.signature(fj.sweep).parameters
  n = data.num_train
  if "eval_every" not in params:
    return np.arange(1, epochs + 1), np.arange(n), True
  from flood_jax._sweep.layout import eval_subsample
  from flood_jax._sweep.schedule import auto_eval_every, evaluated_epochs

  size = params["train_eval_size"].default if "train_eval_size" in params else None
  eval_test = bool(params["eval_test"].default) if "eval_test" in params else True
  train_index = eval_subsample(n, size) if size != 0 else np.arange(0)
  sizes = (len(train_index), len(data.y_val), len(data.y_test) if eval_test else 0)
  every = auto_eval_every(sum(sizes), (n // batch_size) * batch_size, epochs)
  return np.asarray(evaluated_epochs(epochs, every)), train_index, eval_test


def worker_loop(widths, k, epochs, batch_size):
  t0 = time.perf_counter()
  import jax
  import jax.numpy as jnp
  import numpy as np
  import optax

  import flood_jax as fj

  log = _CompileLog()
  t_import = time.perf_counter() - t0

  t0 = time.perf_counter()
  data, model, levels = make_data(), make_model(widths), make_levels(k)
  # The user's constants: the same evaluation as the sweep's (see sweep_schedule).
  eval_epochs, train_index, eval_test = sweep_schedule(data, epochs, batch_size)
  t_setup = time.perf_counter() - t0

  mark = log.mark()
  start = time.perf_counter()
  # ---- what the user writes by hand, all inside the timed region ----
  x_tr, y_tr = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
  splits = [
    (jnp.asarray(data.x_train[train_index]), jnp.asarray(data.y_train[train_index])),
    (jnp.asarray(data.x_val), jnp.asarray(data.y_val)),
  ]
  if eval_test:
    splits.append((jnp.asarray(data.x_test), jnp.asarray(data.y_test)))
  evaluate_after = np.zeros(epochs, bool)
  evaluate_after[eval_epochs - 1] = True
  evaluate_after = jnp.asarray(evaluate_after)
  n = x_tr.shape[0]
  steps = n // batch_size

  def loss_fn(params, x, y):
    logits = model.apply({"params": params}, x, train=True)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  def evaluate(params):
    out = []
    for x, y in splits:
      logits = model.apply({"params": params}, x, train=False)
      out += [
        optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(),
        jnp.mean(jnp.argmax(logits, -1) == y),
      ]
    out += [jnp.float32(jnp.nan)] * (6 - len(out))
    return jnp.stack(out)  # train loss, train acc, val loss, val acc, test loss, test acc

  @jax.jit
  def run(seed, level):
    tx = optax.chain(fj.flood(level), optax.sgd(LR, momentum=MOMENTUM))
    init_key, shuffle_key = jax.random.split(jax.random.key(seed))
    params = model.init(init_key, x_tr[:1], train=False)["params"]
    opt_state = tx.init(params)

    def epoch_fn(carry, epoch):
      params, opt_state = carry
      flooded_before = opt_state[0].flooded_count
      perm = jax.random.permutation(jax.random.fold_in(shuffle_key, epoch), n)
      batches = perm[: steps * batch_size].reshape(steps, batch_size)

      def step(carry, idx):
        params, opt_state = carry
        loss, grads = jax.value_and_grad(loss_fn)(params, x_tr[idx], y_tr[idx])
        updates, opt_state = tx.update(grads, opt_state, params, value=loss)
        return (optax.apply_updates(params, updates), opt_state), loss

      (params, opt_state), _ = jax.lax.scan(step, (params, opt_state), batches)
      metrics = jax.lax.cond(
        evaluate_after[epoch], evaluate, lambda p: jnp.full((6,), jnp.nan, jnp.float32), params
      )
      flooded = ((opt_state[0].flooded_count - flooded_before) / steps).astype(jnp.float32)
      return (params, opt_state), jnp.append(metrics, flooded)

    (params, _), history = jax.lax.scan(epoch_fn, (params, opt_state), jnp.arange(epochs))
    return params, history

  results = [jax.device_get(run(0, jnp.float32(level))) for level in levels]
  histories = np.stack([h for _, h in results])  # (K, epochs, 7)
  # --------------------------------------------------------------------
  wall = time.perf_counter() - start
  return dict(
    arm="loop",
    import_s=t_import,
    setup_s=t_setup,
    first=dict(
      wall_s=wall, **log.since(mark), final_val_acc_mean=float(histories[:, -1, 3].mean())
    ),
    schedule=dict(
      eval_epochs=[int(e) for e in eval_epochs],
      train_eval_size=len(train_index),
      eval_test=bool(eval_test),
    ),
    compile_cache_dir=jax.config.jax_compilation_cache_dir,
    jax_version=jax.__version__,
    device_count=jax.device_count(),
    platform=jax.devices()[0].platform,
  )


def engine_fingerprint() -> str:
  """A hash of the flood_jax sources this process imported (the engine may change between runs)."""
  import hashlib

  import flood_jax

  root = os.path.dirname(flood_jax.__file__)
  digest = hashlib.sha256()
  for folder, _, files in sorted(os.walk(root)):
    for name in sorted(files):
      if name.endswith(".py"):
        with open(os.path.join(folder, name), "rb") as f:
          digest.update(name.encode() + f.read())
  return digest.hexdigest()[:12]


def worker_main(args) -> None:
  widths = CASES[args.case][0]
  fn = worker_sweep if args.worker == "sweep" else worker_loop
  out = fn(widths, args.k, args.epochs, args.batch_size)
  out["engine_sha"] = engine_fingerprint()
  out["process_import_to_return_s"] = time.perf_counter() - _T_START
  print(MARK + json.dumps(out), flush=True)


# --------------------------------------------------------------------------
# Driver side: launches the workers, interleaved, and prints the table.
# --------------------------------------------------------------------------


def worker_env(devices):
  env = dict(os.environ)
  flags = [
    f for f in env.get("XLA_FLAGS", "").split() if "xla_force_host_platform_device_count" not in f
  ]
  if devices:
    flags.append(f"--xla_force_host_platform_device_count={devices}")
  if flags:
    env["XLA_FLAGS"] = " ".join(flags)
  else:
    env.pop("XLA_FLAGS", None)
  return env


def launch(arm, case, k, args):
  cmd = [
    sys.executable,
    os.path.abspath(__file__),
    "--worker",
    arm,
    "--case",
    case,
    "--k",
    str(k),
    "--epochs",
    str(args.epochs),
    "--batch-size",
    str(args.batch_size),
  ]
  start = time.perf_counter()
  proc = subprocess.run(
    cmd, env=worker_env(args.devices), capture_output=True, text=True, timeout=args.timeout
  )
  process_wall = time.perf_counter() - start
  lines = [line for line in proc.stdout.splitlines() if line.startswith(MARK)]
  if proc.returncode != 0 or not lines:
    sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-8000:])
    raise SystemExit(f"worker {arm} {case} K={k} failed (exit {proc.returncode})")
  out = json.loads(lines[-1][len(MARK) :])
  out["process_wall_s"] = process_wall
  return out


def git_head() -> str | None:
  try:
    head = subprocess.run(
      ["git", "rev-parse", "--short", "HEAD"],
      capture_output=True,
      text=True,
      cwd=os.path.dirname(os.path.abspath(__file__)),
    )
    dirty = subprocess.run(
      ["git", "status", "--porcelain", "--", "flood_jax"],
      capture_output=True,
      text=True,
      cwd=os.path.dirname(os.path.abspath(__file__)),
    )
    return head.stdout.strip() + (" (flood_jax modified)" if dirty.stdout.strip() else "")
  except OSError:
    return None


def med(values):
  return statistics.median(values)


def summarize(case, k, runs):
  sweeps = [r for r in runs if r["arm"] == "sweep"]
  loops = [r for r in runs if r["arm"] == "loop"]
  sweep_s = med([r["first"]["wall_s"] for r in sweeps])
  loop_s = med([r["first"]["wall_s"] for r in loops])
  return dict(
    case=case,
    k=k,
    repeats=len(sweeps),
    sweep_s_per_model=sweep_s / k,
    loop_s_per_model=loop_s / k,
    cold_speedup=loop_s / sweep_s,
    sweep_second_s_per_model=med([r["second"]["wall_s"] for r in sweeps]) / k,
    compile_s_sweep=med([r["first"]["backend_compile_s"] for r in sweeps]),
    compile_s_loop=med([r["first"]["backend_compile_s"] for r in loops]),
    compiles_sweep=med([r["first"]["backend_compile_count"] for r in sweeps]),
    compiles_loop=med([r["first"]["backend_compile_count"] for r in loops]),
    compile_s_sweep_second=med([r["second"]["backend_compile_s"] for r in sweeps]),
    compiles_sweep_second=med([r["second"]["backend_compile_count"] for r in sweeps]),
    sweep_s=sweep_s,
    loop_s=loop_s,
    import_s=med([r["import_s"] for r in runs]),
    setup_s=med([r["setup_s"] for r in runs]),
    process_wall_sweep_s=med([r["process_wall_s"] for r in sweeps]),
    process_wall_loop_s=med([r["process_wall_s"] for r in loops]),
    layout=f"{sweeps[0]['first']['chunk_size']}x{sweeps[0]['first']['devices']}",
    val_acc_sweep=med([r["first"]["final_val_acc_mean"] for r in sweeps]),
    val_acc_loop=med([r["first"]["final_val_acc_mean"] for r in loops]),
  )


HEADER = (
  f"{'case':<9} {'K':>4} {'sweep s/model':>13} {'loop s/model':>12} {'speed-up':>8}"
  f" {'2nd call s/model':>16} {'compile s sweep':>15} {'compile s loop':>14}"
  f" {'layout':>6} {'import+setup s':>14}"
)


def row_line(r):
  return (
    f"{r['case']:<9} {r['k']:>4} {r['sweep_s_per_model']:>13.4f} {r['loop_s_per_model']:>12.4f}"
    f" {r['cold_speedup']:>7.2f}x {r['sweep_second_s_per_model']:>16.4f}"
    f" {r['compile_s_sweep']:>9.2f} ({r['compiles_sweep']:>3g})"
    f" {r['compile_s_loop']:>8.2f} ({r['compiles_loop']:>3g})"
    f" {r['layout']:>6} {r['import_s'] + r['setup_s']:>14.2f}"
  )


def driver_main(args) -> None:
  cases = [c.strip() for c in args.cases.split(",") if c.strip()]
  for c in cases:
    if c not in CASES:
      raise SystemExit(f"unknown case {c!r}; choose from {', '.join(CASES)}")
  when = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
  print(
    f"cold benchmark, {when}; {platform.machine()} {os.cpu_count()} cores,"
    f" python {sys.version.split()[0]}; XLA_FLAGS device count: "
    + (f"{args.devices}" if args.devices else "not set (a plain script)")
  )
  print(
    f"data: linear teacher, {INPUTS} inputs, {CLASSES} classes, {N_TRAIN}/{N_VAL}/{N_TEST}"
    f" train/val/test; {args.epochs} epochs x {N_TRAIN // args.batch_size} steps of batch"
    f" {args.batch_size}; sgd({LR}, momentum={MOMENTUM}); levels linspace(0, {MAX_LEVEL}, K);"
    f" median of {args.repeats} fresh processes per arm, interleaved",
    flush=True,
  )
  plan = []
  for c in cases:
    ks = [int(k) for k in args.ks.split(",")] if args.ks else list(CASES[c][1])
    plan += [(c, k) for k in ks]

  raw, rows = [], []
  for case, k in plan:
    runs = []
    for rnd in range(args.repeats):
      order = ("sweep", "loop") if rnd % 2 == 0 else ("loop", "sweep")
      for arm in order:
        out = launch(arm, case, k, args)
        out.update(case=case, k=k, round=rnd)
        runs.append(out)
        extra = (
          f", second call {out['second']['wall_s']:.2f} s"
          f" ({out['second']['backend_compile_count']} compiles)"
          if arm == "sweep"
          else ""
        )
        print(
          f"  {case} K={k} round {rnd} {arm:<5}: {out['first']['wall_s']:.2f} s,"
          f" compile {out['first']['backend_compile_s']:.2f} s"
          f" ({out['first']['backend_compile_count']} compiles){extra};"
          f" import {out['import_s']:.2f} s, process {out['process_wall_s']:.2f} s",
          flush=True,
        )
    raw += runs
    rows.append(summarize(case, k, runs))

  print()
  print(
    "s/model = wall time of the timed call / K; compile s = XLA backend compile seconds"
    " (compiles) in it, median"
  )
  print(HEADER)
  for r in rows:
    print(row_line(r))
  print(
    "2nd call: fj.sweep again in the same process with freshly built, equal arguments;"
    " its compiles (median): "
    + ", ".join(f"{r['case']} K={r['k']}: {r['compiles_sweep_second']:g}" for r in rows)
  )
  seen = sorted({(r["arm"], r["device_count"]) for r in raw})
  print(
    "XLA devices the processes saw (jax.device_count()): "
    + ", ".join(f"{arm} {count}" for arm, count in seen)
    + "; the hand loop runs on the first"
  )
  schedules = {json.dumps(r["schedule"], sort_keys=True) for r in raw}
  if len(schedules) > 1:
    print(
      "warning: the two arms did not evaluate the same epochs/examples: "
      + " | ".join(sorted(schedules))
    )
  else:
    sched = json.loads(schedules.pop())
    print(
      f"both arms evaluate after epochs {sched['eval_epochs']}: plain loss on"
      f" {sched['train_eval_size']} training examples, val"
      + (" and test" if sched["eval_test"] else "")
      + " loss and accuracy"
    )
  for r in rows:
    if abs(r["val_acc_sweep"] - r["val_acc_loop"]) > 0.02:
      print(
        f"warning: {r['case']} K={r['k']}: final val accuracy (mean over levels) differs:"
        f" sweep {r['val_acc_sweep']:.3f}, loop {r['val_acc_loop']:.3f}"
      )
  if any(r.get("compile_cache_dir") for r in raw):
    print("warning: a persistent compilation cache was on in a worker: not cold")
  engines = sorted({r["engine_sha"] for r in raw})
  if len(engines) > 1:
    print(f"warning: flood_jax changed during the run (source hashes {', '.join(engines)})")
  if args.out:
    with open(args.out, "w") as f:
      json.dump(
        dict(
          date=when,
          git_head=git_head(),
          engine_sha=engines,
          machine=platform.machine(),
          cores=os.cpu_count(),
          python=sys.version.split()[0],
          devices=args.devices,
          jax=raw[0].get("jax_version") if raw else None,
          epochs=args.epochs,
          batch_size=args.batch_size,
          data=dict(inputs=INPUTS, classes=CLASSES, train=N_TRAIN, val=N_VAL, test=N_TEST),
          rows=rows,
          raw=raw,
        ),
        f,
        indent=1,
      )
    print(f"raw timings: {args.out}")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--cases", default=",".join(CASES), help="of: " + ", ".join(CASES))
  parser.add_argument(
    "--ks",
    default=None,
    help="comma-separated K for every case (default: 16,64 for mlp32x2, 16 for mlp500x3)",
  )
  parser.add_argument("--repeats", type=int, default=2, help="rounds of fresh processes per arm")
  parser.add_argument("--epochs", type=int, default=30)
  parser.add_argument("--batch-size", type=int, default=100)
  parser.add_argument(
    "--devices",
    type=int,
    default=None,
    help="set XLA_FLAGS=--xla_force_host_platform_device_count=N in both"
    " arms (default: not set, one CPU device)",
  )
  parser.add_argument(
    "--out",
    default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "cold.json"),
    help="raw timings as JSON ('' for none)",
  )
  parser.add_argument("--timeout", type=float, default=3600, help="seconds per worker")
  # worker-only
  parser.add_argument("--worker", choices=("sweep", "loop"), help=argparse.SUPPRESS)
  parser.add_argument("--case", help=argparse.SUPPRESS)
  parser.add_argument("--k", type=int, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    worker_main(args)
  else:
    driver_main(args)


if __name__ == "__main__":
  main()
