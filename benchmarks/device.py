"""The device check: what one GPU or TPU does with a sweep, in at most 8 minutes.

Prepared to run once whenever an accelerator is lent; it writes a section of
benchmarks/RESULTS.md. Three measurements, each part in a fresh Python
process (so compilation is paid as a user pays it, and each part's
``memory_stats()["peak_bytes_in_use"]`` is its own):

  1. mlp: the paper's MLP (784-500x4-10, BatchNorm; ``flood_jax.models.MLP``)
     on MNIST-shaped random data (48,000 / 12,000 / 10,000, the paper's 80:20
     split), SGD with momentum, batch 100. A sweep of 64 flood levels
     (``fj.sweep``, its own layout) against one run of the same model (a
     sweep of one level) and against the hand loop (one jitted whole run,
     ``lax.scan`` over epochs and steps, called once per level: timed for a
     few levels, warm, and scaled to 64). The moonshot: the 64 models in at
     most 2x one run's wall time, 30x faster than the hand loop.
  2. resnet20: ResNet-20 on CIFAR-shaped random data (40,000 / 10,000 /
     10,000 of 32x32x3), a sweep of 21 levels x 2 seeds: models x epochs per
     second, warm and cold, and the chunk the plan chose.
  3. memory: for each sweep, the plan's bytes per device (``result.plan``,
     XLA's memory analysis) against the device's measured peak.

Wall times are of the whole ``fj.sweep`` call (cold: compilation included;
warm: a second call with equal arguments, which compiles nothing).

  python benchmarks/device.py                          # the check (GPU/TPU)
  python benchmarks/device.py --tiny --memory-limit 1GiB --results /tmp/R.md   # a CPU (the tests)
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time

MARK = "DEVICE_RESULT "
SECTION = "## Device check: `benchmarks/device.py`"
# (full, tiny) sizes.
SIZES = {
  "mlp": dict(
    full=dict(levels=64, epochs=10, train=48000, val=12000, test=10000, hidden=500, depth=4),
    tiny=dict(levels=4, epochs=2, train=200, val=50, test=50, hidden=8, depth=1),
  ),
  "resnet20": dict(
    full=dict(levels=21, seeds=2, epochs=2, train=40000, val=10000, test=10000, side=32),
    tiny=dict(levels=2, seeds=1, epochs=1, train=64, val=16, test=16, side=8),
  ),
}
HAND_LOOP_LEVELS = {"full": 4, "tiny": 2}  # levels the hand loop is timed for (then scaled)
BATCH = {"mlp": 100, "resnet20": 128}
TINY_BATCH = 16


# --------------------------------------------------------------------------
# Worker side: one part in a fresh process, one JSON line.
# --------------------------------------------------------------------------


def random_data(n_train, n_val, n_test, shape, classes=10):
  import numpy as np

  import flood_jax as fj

  rng = np.random.default_rng(0)

  def split(n):
    x = rng.normal(size=(n, *shape)).astype(np.float32)
    return x, rng.integers(0, classes, n).astype(np.int32)

  (xtr, ytr), (xv, yv), (xte, yte) = split(n_train), split(n_val), split(n_test)
  return fj.Dataset(
    x_train=xtr, y_train=ytr, x_val=xv, y_val=yv, x_test=xte, y_test=yte, num_classes=classes
  )


def peak_bytes():
  import jax

  stats = jax.local_devices()[0].memory_stats() or {}
  return stats.get("peak_bytes_in_use")


def plan_record(plan):
  return dict(
    chunk_size=plan.chunk_size,
    num_devices=plan.num_devices,
    calls=plan.calls,
    bytes_per_device=plan.bytes_per_device,
    memory_limit=plan.memory_limit,
    chosen_by=plan.chosen_by,
    text=str(plan),
  )


def timed_sweep(model, data, **kwargs):
  import flood_jax as fj

  start = time.perf_counter()
  result = fj.sweep(model, data, progress=False, **kwargs)
  return result, time.perf_counter() - start


def hand_loop(model, data, levels, epochs, batch_size):
  """What a user writes: one jitted whole run (linen, BatchNorm), called once per level."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  import optax

  import flood_jax as fj

  x_tr, y_tr = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
  x_val, y_val = jnp.asarray(data.x_val), jnp.asarray(data.y_val)
  n = x_tr.shape[0]
  steps = n // batch_size

  @jax.jit
  def run(seed, level):
    tx = optax.chain(fj.flood(level), optax.sgd(0.01, momentum=0.9))
    init_key, shuffle_key = jax.random.split(jax.random.key(seed))
    variables = model.init(init_key, x_tr[:1], train=False)
    params, stats = variables["params"], variables["batch_stats"]
    opt_state = tx.init(params)

    def epoch_fn(carry, epoch):
      params, stats, opt_state = carry
      perm = jax.random.permutation(jax.random.fold_in(shuffle_key, epoch), n)

      def step(carry, idx):
        params, stats, opt_state = carry

        def loss_fn(p):
          logits, new = model.apply(
            {"params": p, "batch_stats": stats}, x_tr[idx], train=True, mutable=["batch_stats"]
          )
          loss = optax.softmax_cross_entropy_with_integer_labels(logits, y_tr[idx]).mean()
          return loss, new["batch_stats"]

        (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params, value=loss)
        return (optax.apply_updates(params, updates), stats, opt_state), loss

      carry, _ = jax.lax.scan(
        step, (params, stats, opt_state), perm[: steps * batch_size].reshape(steps, batch_size)
      )
      params, stats, _ = carry
      logits = model.apply({"params": params, "batch_stats": stats}, x_val, train=False)
      return carry, jnp.mean(jnp.argmax(logits, -1) == y_val)

    _, accuracy = jax.lax.scan(epoch_fn, (params, stats, opt_state), jnp.arange(epochs))
    return accuracy

  start = time.perf_counter()
  np.asarray(run(0, jnp.float32(levels[0])))
  first = time.perf_counter() - start
  start = time.perf_counter()
  for level in levels[1:]:
    np.asarray(run(0, jnp.float32(level)))
  warm_each = (time.perf_counter() - start) / max(len(levels) - 1, 1)
  return first, warm_each


def worker_mlp(size: str, memory_limit: str | None) -> dict:
  import numpy as np
  import optax

  from flood_jax import models

  s = SIZES["mlp"][size]
  batch = BATCH["mlp"] if size == "full" else TINY_BATCH
  data = random_data(s["train"], s["val"], s["test"], (28, 28))
  model = models.MLP(num_classes=10, hidden=s["hidden"], depth=s["depth"])
  common = dict(optimizer=optax.sgd(0.01, momentum=0.9), epochs=s["epochs"], batch_size=batch)
  levels = np.linspace(0.0, 0.3, s["levels"])
  planned = dict(common, flood_levels=levels, seeds=[0], memory_limit=memory_limit)
  result, cold = timed_sweep(model, data, **planned)
  peak = peak_bytes()  # the 64-model sweep is the first thing this process ran
  _, warm = timed_sweep(model, data, **planned)
  one, one_cold = timed_sweep(model, data, flood_levels=[0.1], seeds=[0], **common)
  _, one_warm = timed_sweep(model, data, flood_levels=[0.1], seeds=[0], **common)
  loop_levels = levels[: HAND_LOOP_LEVELS[size] + 1]
  loop_first, loop_each = hand_loop(model, data, loop_levels, s["epochs"], batch)
  return dict(
    part="mlp",
    models=len(levels),
    epochs=s["epochs"],
    sweep_cold_s=cold,
    sweep_warm_s=warm,
    one_cold_s=one_cold,
    one_warm_s=one_warm,
    loop_first_s=loop_first,
    loop_each_warm_s=loop_each,
    # The hand loop over every level: its first call (compile) and the rest warm.
    loop_all_s=loop_first + loop_each * (len(levels) - 1),
    loop_levels_timed=len(loop_levels),
    plan=plan_record(result.plan),
    one_plan=plan_record(one.plan),
    peak_bytes=peak,
  )


def worker_resnet20(size: str, memory_limit: str | None) -> dict:
  import numpy as np
  import optax

  from flood_jax import models

  s = SIZES["resnet20"][size]
  batch = BATCH["resnet20"] if size == "full" else TINY_BATCH
  data = random_data(s["train"], s["val"], s["test"], (s["side"], s["side"], 3))
  # Tiny: one block of 4 filters (the check that the script runs compiles in seconds).
  if size == "full":
    model = models.ResNet20(num_classes=10)
  else:
    model = models.ResNet(stage_sizes=(1,), num_filters=4, num_classes=10)
  kwargs = dict(
    flood_levels=np.linspace(0.0, 0.1, s["levels"]),
    seeds=list(range(s["seeds"])),
    optimizer=optax.sgd(0.1, momentum=0.9),
    epochs=s["epochs"],
    batch_size=batch,
    memory_limit=memory_limit,
  )
  result, cold = timed_sweep(model, data, **kwargs)
  peak = peak_bytes()
  _, warm = timed_sweep(model, data, **kwargs)
  models_count = s["levels"] * s["seeds"]
  return dict(
    part="resnet20",
    models=models_count,
    epochs=s["epochs"],
    sweep_cold_s=cold,
    sweep_warm_s=warm,
    model_epochs_per_s_warm=models_count * s["epochs"] / warm,
    model_epochs_per_s_cold=models_count * s["epochs"] / cold,
    plan=plan_record(result.plan),
    peak_bytes=peak,
  )


def worker_main(part: str, size: str, memory_limit: str | None) -> None:
  import jax

  out = (worker_mlp if part == "mlp" else worker_resnet20)(size, memory_limit)
  device = jax.devices()[0]
  out.update(
    device=f"{device.platform} {device.device_kind}",
    device_count=jax.device_count(),
    jax=jax.__version__,
    bytes_limit=(device.memory_stats() or {}).get("bytes_limit"),
  )
  print(MARK + json.dumps(out), flush=True)


# --------------------------------------------------------------------------
# Driver side.
# --------------------------------------------------------------------------


def launch(part: str, size: str, timeout: float, memory_limit: str | None) -> dict:
  cmd = [sys.executable, os.path.abspath(__file__), "--worker", part, "--size", size]
  if memory_limit:
    cmd += ["--memory-limit", memory_limit]
  start = time.perf_counter()
  try:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
  except subprocess.TimeoutExpired:
    return dict(part=part, error=f"timed out after {timeout:.0f} s")
  lines = [line for line in proc.stdout.splitlines() if line.startswith(MARK)]
  if proc.returncode != 0 or not lines:
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
    return dict(part=part, error=f"exit {proc.returncode}: {tail[0][:300]}")
  out = json.loads(lines[-1][len(MARK) :])
  out["process_s"] = time.perf_counter() - start
  return out


def mib(n) -> str:
  return "n/a" if n is None else f"{n / 2**20:.0f} MiB"


def section(runs: list[dict], size: str, command: str) -> str:
  when = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="minutes")
  device = next((r["device"] for r in runs if "device" in r), "unknown device")
  lines = [
    f"{SECTION} ({device}, {when})",
    "",
    f"Command: `{command}`"
    + (" (tiny sizes: a check that the script runs, not a measurement)" if size == "tiny" else ""),
    "",
  ]
  for r in runs:
    if "error" in r:
      lines.append(f"- {r['part']}: did not finish ({r['error']})")
      continue
    plan = r["plan"]
    memory = (
      f"plan {mib(plan['bytes_per_device'])} per device vs measured peak"
      f" {mib(r['peak_bytes'])} (limit {mib(plan['memory_limit'])}, device bytes_limit"
      f" {mib(r.get('bytes_limit'))})"
    )
    layout = f"{plan['chunk_size']} per device x {plan['num_devices']}, {plan['calls']} call(s)"
    if r["part"] == "mlp":
      ratio_one = r["sweep_warm_s"] / r["one_warm_s"]
      speedup = r["loop_all_s"] / r["sweep_cold_s"]
      lines += [
        f"- mlp, {r['models']} levels x {r['epochs']} epochs: sweep {r['sweep_cold_s']:.1f} s"
        f" cold, {r['sweep_warm_s']:.1f} s warm; one run {r['one_cold_s']:.1f} s cold,"
        f" {r['one_warm_s']:.1f} s warm: the {r['models']} models take {ratio_one:.2f}x one"
        f" run's wall time warm (moonshot: at most 2x). Hand loop: first call"
        f" {r['loop_first_s']:.1f} s, then {r['loop_each_warm_s']:.2f} s per level (timed"
        f" for {r['loop_levels_timed']} levels), {r['loop_all_s']:.1f} s for all"
        f" {r['models']}: the sweep, cold, is {speedup:.1f}x faster (moonshot: 30x).",
        f"  Layout {layout}; {memory}.",
      ]
    else:
      lines += [
        f"- resnet20, {r['models']} models x {r['epochs']} epochs: sweep"
        f" {r['sweep_cold_s']:.1f} s cold, {r['sweep_warm_s']:.1f} s warm:"
        f" {r['model_epochs_per_s_warm']:.2f} model-epochs per second warm"
        f" ({r['model_epochs_per_s_cold']:.2f} cold). Layout {layout}; {memory}.",
      ]
  return "\n".join(lines) + "\n"


def driver_main(args) -> None:
  size = "tiny" if args.tiny else "full"
  budget = args.budget
  start = time.perf_counter()
  runs = []
  for part in ("mlp", "resnet20"):
    left = budget - (time.perf_counter() - start)
    if left < 10:
      runs.append(dict(part=part, error="no time left in the budget"))
      continue
    # The first part may take at most 40% of the budget, so the second gets its turn.
    limit = left * 0.4 if part == "mlp" else left
    out = launch(part, size, limit, args.memory_limit)
    print(json.dumps(out), flush=True)
    runs.append(out)
  command = "python benchmarks/device.py" + (" --tiny" if args.tiny else "")
  if args.memory_limit:
    command += f" --memory-limit {args.memory_limit}"
  text = section(runs, size, command)
  print(text)
  if args.results:
    with open(args.results, "a") as f:
      f.write("\n" + text)
    print(f"appended to {args.results}")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--tiny", action="store_true", help="tiny sizes (a CPU test), seconds")
  parser.add_argument(
    "--results",
    default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS.md"),
    help="the Markdown file to append the section to ('' for none)",
  )
  parser.add_argument("--budget", type=float, default=480, help="seconds for all parts")
  parser.add_argument(
    "--memory-limit",
    default=None,
    help="fj.sweep's memory_limit for the planned sweeps, e.g. 16GB (default: the device's)",
  )
  parser.add_argument("--worker", choices=("mlp", "resnet20"), help=argparse.SUPPRESS)
  parser.add_argument("--size", choices=("full", "tiny"), help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    worker_main(args.worker, args.size, args.memory_limit)
  else:
    driver_main(args)


if __name__ == "__main__":
  main()
