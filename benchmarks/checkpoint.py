"""What a checkpoint's safety costs per save: the checksums and the lock, next to the save itself.

A finished call of a sweep is saved as its models' parameters and history
(what ``CheckpointStore.save_done`` writes). Per round, in one process,
interleaved, on the same tree and directory:

  * save: Orbax writes the entry (``ocp.Checkpointer``, synchronous, as the
    store does) and it is renamed into place: the save itself;
  * save (old): the same with ``ocp.StandardCheckpointer`` (asynchronous,
    then waited for), what the store used before issue 23;
  * checksums: the SHA-256 of every file written and the manifest;
  * restore and verify: reading the entry back, and checking it against its
    manifest first;
  * lock: taking and releasing ``sweep.lock`` (once per sweep, not per save).

Medians over the rounds, in milliseconds, and the checksums' and the lock's
share of the save.

  python benchmarks/checkpoint.py
  python benchmarks/checkpoint.py --rounds 20 --dir /dev/shm/ckpt_bench
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import statistics
import tempfile
import time

import numpy as np
import orbax.checkpoint as ocp

from flood_jax._sweep import checkpoint


def tree_for(widths: list[int], models: int, epochs: int = 100) -> dict:
  """A finished call's tree: ``models`` MLPs of these layer widths (weights, biases), history."""
  rng = np.random.default_rng(0)
  leaves = []
  for fan_in, fan_out in itertools.pairwise(widths):
    leaves.append(rng.normal(size=(models, fan_in, fan_out)).astype(np.float32))
    leaves.append(rng.normal(size=(models, fan_out)).astype(np.float32))
  return {
    "leaves": {str(i): x for i, x in enumerate(leaves)},
    "history": rng.normal(size=(models, epochs, 6)).astype(np.float32),
  }


def _timed(fn) -> float:
  start = time.perf_counter()
  fn()
  return (time.perf_counter() - start) * 1e3


def measure(tree: dict, root: str, rounds: int) -> dict[str, float]:
  store = checkpoint.CheckpointStore.__new__(checkpoint.CheckpointStore)  # no fingerprint needed
  store.directory, store._locked = root, False
  sync = ocp.Checkpointer(ocp.StandardCheckpointHandler())
  old = ocp.StandardCheckpointer()
  path, tmp = os.path.join(root, "done_00_00000"), os.path.join(root, "done_00_00000.partial")
  times: dict[str, list[float]] = {
    k: [] for k in ["save", "save (old)", "checksums", "restore", "verify", "lock"]
  }

  def save_sync():
    sync.save(tmp, tree)
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)

  def save_old():
    old.save(tmp, tree)
    old.wait_until_finished()
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)

  def checksums():
    import json

    with open(os.path.join(path, checkpoint.MANIFEST), "w") as f:
      json.dump(checkpoint.file_digests(path), f)

  def lock():
    assert store._lock() is None
    store.close()

  for r in range(rounds + 1):  # the first round warms up and is dropped
    order = [("save (old)", save_old), ("save", save_sync)]
    for name, fn in order if r % 2 else order[::-1]:
      t = _timed(fn)
      if r:
        times[name].append(t)
    for name, fn in [
      ("checksums", checksums),
      ("restore", lambda: sync.restore(path)),
      ("verify", lambda: checkpoint.verify(path)),
      ("lock", lock),
    ]:
      t = _timed(fn)
      if r:
        times[name].append(t)
    assert checkpoint.verify(path) is None
  old.close()
  sync.close()
  return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rounds", type=int, default=10)
  parser.add_argument("--dir", default=None, help="where to save (default: a temporary dir)")
  args = parser.parse_args()
  cases = [
    ("MLP 2-32-32-2, 4 models", tree_for([2, 32, 32, 2], 4)),
    ("MLP 40-32-32-10, 64 models", tree_for([40, 32, 32, 10], 64)),
    ("MLP 784-500-500-500-10, 8 models", tree_for([784, 500, 500, 500, 10], 8)),
  ]
  print(
    "| call saved | MB | save | save (old) | checksums | share | restore | verify | lock |"
    "\n|---|---|---|---|---|---|---|---|---|"
  )
  for name, tree in cases:
    root = tempfile.mkdtemp(dir=args.dir)
    try:
      t = measure(tree, root, args.rounds)
    finally:
      shutil.rmtree(root, ignore_errors=True)
    megabytes = sum(x.nbytes for x in [*tree["leaves"].values(), tree["history"]]) / 2**20
    print(
      f"| {name} | {megabytes:.2f} | {t['save']:.1f} ms | {t['save (old)']:.1f} ms"
      f" | {t['checksums']:.2f} ms | {t['checksums'] / t['save']:.1%}"
      f" | {t['restore']:.1f} ms | {t['verify']:.2f} ms | {t['lock']:.2f} ms |",
      flush=True,
    )


if __name__ == "__main__":
  main()
