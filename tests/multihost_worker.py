"""One process of the multi-process tests (tests/test_multihost.py); not a test itself.

Run as ``python multihost_worker.py SPEC_JSON OUT_DIR`` by
:func:`flood_jax._launch.run_local_processes`: joins the processes, runs
the sweep the spec describes, and writes this process's result to
``OUT_DIR/result_<process>.npz``.
"""

import json
import os
import sys


def main(spec: dict, out_dir: str) -> None:
  from flood_jax import _launch

  joined = _launch.initialize_from_env()
  import flax.linen as nn
  import jax
  import numpy as np
  import optax

  import flood_jax as fj
  from flood_jax._sweep import checkpoint

  class SmallMLP(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool):
      x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(nn.Dense(16)(x))
      return nn.Dense(2)(nn.relu(nn.Dense(16)(nn.relu(x))))

  rng = np.random.default_rng(0)
  x = rng.normal(size=(200, 2)).astype(np.float32)
  y = (np.sin(2 * x[:, 0]) > x[:, 1]).astype(np.int32)
  data = fj.Dataset(
    x_train=x[:100],
    y_train=y[:100],
    x_val=x[100:150],
    y_val=y[100:150],
    x_test=x[150:],
    y_test=y[150:],
    name="toy",
  )

  if spec.pop("stream", False):  # every process reads the same batches from the host

    def batches(epoch):
      order = np.random.default_rng(epoch).permutation(100)
      for i in range(0, 100, 20):
        yield x[order[i : i + 20]], y[order[i : i + 20]]

    data = fj.Stream(train=batches, val=lambda: [(x[100:150], y[100:150])],
                     test=lambda: [(x[150:], y[150:])])  # fmt: skip

  loggers = None
  log_dir = spec.pop("log_dir", None)
  if log_dir is not None:  # TensorBoard, and a record of every call a logger gets on this process

    class Recorder(fj.loggers.Logger):
      def __init__(self):
        self.calls = []

      def log(self, run, step, metrics):
        self.calls.append(["log", run.index, step])

      def summarize(self, run, summary):
        self.calls.append(["summarize", run.index])

      def close(self):
        path = os.path.join(out_dir, f"logger_calls_{jax.process_index()}.json")
        with open(path, "w") as f:
          json.dump(self.calls, f)

    loggers = [fj.loggers.TensorBoard(log_dir), Recorder()]

  die_after = spec.pop("die_after_saves", None)
  if die_after is not None:
    checkpoint.EVERY_S = 0.0
    if jax.process_index() == spec.pop("die_process", 1):
      save = checkpoint.CheckpointStore._save
      count = [0]

      def save_then_die(self, path, tree):
        save(self, path, tree)
        count[0] += 1
        if count[0] == die_after:
          os._exit(17)  # a hard death: no cleanup, no goodbye to the others

      checkpoint.CheckpointStore._save = save_then_die

  prune = spec.pop("prune", None)  # [min_epochs, factor]
  if prune is not None:
    spec["prune"] = fj.Halving(*prune)
  pbt = spec.pop("pbt", None)  # [interval, fraction]
  if pbt is not None:
    spec["pbt"] = fj.PBT(*pbt)
  result = fj.sweep(
    SmallMLP(),
    data,
    optimizer=optax.sgd(0.05, momentum=0.9),
    batch_size=20,
    eval_every=1,
    progress=False,
    loggers=loggers,
    **spec,
  )
  arrays = {f"history/{k}": v for k, v in result.history.items()}
  for prefix, tree in [("params", result.final_params), ("batch_stats", result.final_batch_stats)]:
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
      arrays[prefix + jax.tree_util.keystr(path)] = np.asarray(leaf)
  arrays["pruned_at"] = np.asarray(result.pruned_at)
  if result.local_models is not None:
    arrays["local_models"] = result.local_models
  if result.lineage is not None:
    arrays["lineage"] = result.lineage
  info = dict(
    processes=jax.process_count(),
    devices=len(jax.devices()),
    local_devices=len(jax.local_devices()),
    joined=joined,
  )
  np.savez(
    os.path.join(out_dir, f"result_{jax.process_index()}.npz"), info=json.dumps(info), **arrays
  )


if __name__ == "__main__":
  main(json.loads(sys.argv[1]), sys.argv[2])
