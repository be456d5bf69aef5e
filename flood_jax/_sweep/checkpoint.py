"""Checkpoints of a sweep (Orbax): finished calls at once, the call in progress now and then.

A resumed sweep ends with exactly the results of an uninterrupted one: the
carry (parameters, model and optimizer state, random streams) is saved as it
is, and every random key of the run is derived from the seed and the epoch,
not drawn from a stream that a restart would reset.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from flood_jax._dataset import Dataset
from flood_jax._sweep import hosts

VERSION = 3
# A finished call is saved at once; the call in progress at most this often
# (saving costs ~0.1 s, too much to pay after every call of a fast sweep).
# Tests shorten it to exercise mid-call saves.
EVERY_S = 30.0


def checksum(data: Dataset) -> str:
  """A short digest of the data set's arrays, for the checkpoint's fingerprint."""
  digest = hashlib.sha256()
  for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
    digest.update(np.ascontiguousarray(getattr(data, name)).tobytes())
  return digest.hexdigest()[:16]


class CheckpointStore:
  """The checkpoint directory of one sweep, refused if it holds another sweep."""

  def __init__(self, directory: str, fingerprint: dict[str, Any]):
    import orbax.checkpoint as ocp  # Imported here: it is slow to import.

    self.directory = os.path.abspath(directory)
    os.makedirs(self.directory, exist_ok=True)
    meta_path = os.path.join(self.directory, "sweep.json")
    # As JSON reads it back (tuples become lists), so the two compare fairly.
    fingerprint = json.loads(json.dumps(dict(fingerprint, version=VERSION)))
    exists = os.path.exists(meta_path)
    hosts.barrier("flood_jax_checkpoint_meta_read")  # all look before process 0 writes
    if exists:
      with open(meta_path) as f:
        saved = json.load(f)
      processes = saved.get("processes", 1)
      if processes != fingerprint.get("processes", 1):
        raise ValueError(
          f"checkpoint_dir {directory} holds a sweep run on {processes} process(es);"
          f" this one runs on {fingerprint.get('processes', 1)}; resume it on"
          f" {processes} process(es), or pass a new directory."
        )
      if saved != fingerprint:
        changed = sorted(
          k for k in set(saved) | set(fingerprint) if saved.get(k) != fingerprint.get(k)
        )
        raise ValueError(
          f"checkpoint_dir {directory} holds a different sweep (differs in:"
          f" {', '.join(changed)}); pass the same arguments to resume, or a new"
          " directory."
        )
    elif hosts.is_main():
      with open(meta_path + ".tmp", "w") as f:
        json.dump(fingerprint, f, indent=1)
      os.replace(meta_path + ".tmp", meta_path)
    self._checkpointer = ocp.StandardCheckpointer()
    self._last_save = time.monotonic()

  def due(self, agree: bool = False) -> bool:
    """Whether the call in progress is due a save (``EVERY_S``).

    ``agree``: every process takes process 0's answer (a collective), so
    that all save together.
    """
    due = time.monotonic() - self._last_save >= EVERY_S
    return hosts.agree(due) if agree else due

  # Under several processes every process calls save with the same (gathered)
  # tree; Orbax writes it once, from process 0, and the directory moves are
  # process 0's between barriers. The directory must be one they all see.
  def _save(self, path: str, tree: dict[str, Any]) -> None:
    tmp = path + ".partial"
    if hosts.is_main():
      shutil.rmtree(tmp, ignore_errors=True)
    hosts.barrier("flood_jax_checkpoint_clear")
    self._checkpointer.save(tmp, tree)
    self._checkpointer.wait_until_finished()
    if hosts.is_main():
      shutil.rmtree(path, ignore_errors=True)
      os.replace(tmp, path)
    hosts.barrier("flood_jax_checkpoint_saved")
    self._last_save = time.monotonic()

  def _restore(self, path: str) -> dict[str, Any] | None:
    if not os.path.isdir(path):
      return None
    return self._checkpointer.restore(path)

  def save_current(self, call: int, carry, epoch: int, history: np.ndarray) -> None:
    self._save(
      os.path.join(self.directory, "current"),
      {
        "call": np.asarray(call, np.int32),
        "epoch": np.asarray(epoch, np.int32),
        "carry": _leaves_to_tree(jax.tree.leaves(carry)),
        "history": history,
      },
    )

  def load_current(self, call: int, structure):
    tree = self._restore(os.path.join(self.directory, "current"))
    if tree is None or int(tree["call"]) != call:
      return None
    leaves = _tree_to_leaves(tree["carry"], jax.tree.leaves(structure))
    carry = jax.tree.unflatten(jax.tree.structure(structure), leaves)
    return carry, int(tree["epoch"]), tree["history"]

  def save_done(self, call: int, leaves: list[Any], history: np.ndarray) -> None:
    """Keeps a finished call: its models' (params, model state) and history."""
    self._save(
      os.path.join(self.directory, f"done_{call:05d}"),
      {
        "leaves": _leaves_to_tree(leaves),
        "history": history,
      },
    )
    if hosts.is_main():
      shutil.rmtree(os.path.join(self.directory, "current"), ignore_errors=True)
    hosts.barrier("flood_jax_checkpoint_done")

  def load_done(self, call: int):
    tree = self._restore(os.path.join(self.directory, f"done_{call:05d}"))
    if tree is None:
      return None
    return tree["history"], _tree_to_leaves(tree["leaves"])

  def save_tree(self, name: str, tree: dict[str, Any]) -> None:
    """Saves a dict of arrays under ``name`` (a pruned sweep's state between calls)."""
    self._save(os.path.join(self.directory, name), tree)

  def load_tree(self, name: str) -> dict[str, Any] | None:
    """What :meth:`save_tree` saved under ``name``, or ``None``."""
    return self._restore(os.path.join(self.directory, name))


# Orbax restores plain dicts, not NamedTuples (optimizer states): a carry is
# saved as its flat leaves, keyed by position, and rebuilt from its structure.
# Typed PRNG keys (NNX random streams) are saved as their raw key data.
def _leaves_to_tree(leaves: Sequence[Any]) -> dict[str, np.ndarray]:
  return {str(i): np.asarray(raw_key_data(x)) for i, x in enumerate(leaves)}


def _tree_to_leaves(tree: dict[str, Any], like: Sequence[Any] | None = None) -> list[Any]:
  leaves = [tree[str(i)] for i in range(len(tree))]
  if like is None:
    return leaves
  return [
    jax.random.wrap_key_data(x, impl=jax.random.key_impl(_example_key(ref))) if is_key(ref) else x
    for x, ref in zip(leaves, like, strict=True)
  ]


def is_key(x: Any) -> bool:
  """Whether ``x`` (an array or a ``ShapeDtypeStruct``) holds typed PRNG keys."""
  dtype = getattr(x, "dtype", None)
  return dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key)


def raw_key_data(x: Any) -> Any:
  """``x``, with typed PRNG keys replaced by their raw key data (plain uint32 arrays)."""
  return jax.random.key_data(x) if is_key(x) else x


def _example_key(ref: Any) -> jax.Array:
  return jax.random.key(0) if isinstance(ref, jax.ShapeDtypeStruct) else ref
