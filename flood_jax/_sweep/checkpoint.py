"""Checkpoints of a sweep (Orbax): finished calls at once, the call in progress now and then.

One format for every sweep: a finished call of segment ``s`` (the epochs up to a pruning
policy's rung, or all of them) is ``done_SS_CCCCC`` (its models, what they keep, their
history); the call in progress is ``current``. A pruned sweep's survivors at a rung follow
from the history, so a resume replays the rungs instead of saving them. :class:`NullStore` is
the store of a sweep without a checkpoint: it saves and finds nothing.

A resumed sweep ends with exactly the results of an uninterrupted one: the
carry (parameters, model and optimizer state, random streams) is saved as it
is, and every random key of the run is derived from the seed and the epoch,
not drawn from a stream that a restart would reset.
"""

from __future__ import annotations

import contextlib
import gc
import glob
import hashlib
import json
import logging
import os
import shutil
import socket
import sys
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from flood_jax._checks import first_line
from flood_jax._dataset import Dataset
from flood_jax._sweep import hosts

# 4: every entry carries the SHA-256 of its files; the fingerprint names the computation.
# 5: one format for pruned and unpruned sweeps (finished calls per segment).
VERSION = 5
# A finished call is saved at once; the call in progress at most this often
# (saving costs ~0.1 s, too much to pay after every call of a fast sweep).
# Tests shorten it to exercise mid-call saves.
EVERY_S = 30.0


def checksum(data: Dataset) -> str:
  """A short digest of the data set's arrays, for the checkpoint's fingerprint."""
  digest = hashlib.sha256()
  for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
    for leaf in jax.tree.leaves(getattr(data, name)):  # one leaf for a plain array
      digest.update(np.ascontiguousarray(leaf).tobytes())
  return digest.hexdigest()[:16]


class CheckpointError(RuntimeError):
  """A checkpoint that cannot be written, or a directory another sweep holds (one line)."""


class CheckpointSaveError(CheckpointError):
  """A save that failed during training; what was saved before it is kept.

  Attributes:
    cause: what went wrong, briefly (e.g. ``"No space left on device"``).
    directory: the checkpoint directory, which holds the last good state.
    kept: what it holds, in words (e.g. ``"2 finished calls"``).
  """

  def __init__(self, message: str, *, cause: str, directory: str, kept: str):
    super().__init__(message)
    self.cause, self.directory, self.kept = cause, directory, kept


class CheckpointWarning(UserWarning):
  """A damaged or missing part of a checkpoint: that part is trained again."""


# The saved files of one entry (a finished call, the call in progress, a
# pruned sweep's state) and their SHA-256, written into the entry before it
# takes its name, so an entry without it was never finished.
MANIFEST = "flood_jax_checksums.json"
LOCK = "sweep.lock"
# Locks this process holds (directories), so a lock with our own pid that no
# live store holds is recognized as left over.
_HELD: set[str] = set()


def check_directory(directory: Any) -> None:
  """One-line errors for a ``checkpoint_dir`` that cannot be one: empty, or a file."""
  if not isinstance(directory, (str, os.PathLike)):
    raise TypeError(
      f"checkpoint_dir must be a path (str or os.PathLike), got {type(directory).__name__}."
    )
  path = os.fspath(directory)
  if not str(path).strip():
    raise ValueError(
      "checkpoint_dir is empty; give a directory for the checkpoint, e.g."
      " checkpoint_dir='runs/sweep1', or None for no checkpoint."
    )
  if os.path.exists(path) and not os.path.isdir(path):
    raise ValueError(
      f"checkpoint_dir {path} is a file, not a directory; give a directory"
      " (new or holding this sweep's checkpoint)."
    )


def file_digests(directory: str) -> dict[str, list[Any]]:
  """``{relative path: [size, sha256]}`` of every file under ``directory`` (the manifest)."""
  out: dict[str, list[Any]] = {}
  for root, _, files in os.walk(directory):
    for name in files:
      path = os.path.join(root, name)
      rel = os.path.relpath(path, directory)
      if rel == MANIFEST:
        continue
      out[rel] = [os.path.getsize(path), _sha256(path)]
  return out


def _sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def verify(directory: str) -> str | None:
  """Why the entry in ``directory`` is damaged (one phrase), or ``None`` if its files are intact."""
  try:
    with open(os.path.join(directory, MANIFEST)) as f:
      expected = json.load(f)
  except FileNotFoundError:
    return f"its checksums ({MANIFEST}) are missing"
  except (OSError, ValueError, RecursionError):
    return f"its checksums ({MANIFEST}) are unreadable"
  try:
    entries = sorted((str(rel), int(size), str(sha)) for rel, (size, sha) in expected.items())
  except (AttributeError, TypeError, ValueError):
    return f"its checksums ({MANIFEST}) are unreadable"
  for rel, size, sha in entries:
    path = os.path.join(directory, rel)
    if not os.path.isfile(path):
      return f"{rel} is missing"
    if os.path.getsize(path) != size:
      return f"{rel} has {os.path.getsize(path)} bytes, {size} were saved"
    if _sha256(path) != sha:
      return f"{rel} does not match its checksum"
  return None


class CheckpointStore:
  """The checkpoint directory of one sweep, refused if it holds another sweep.

  Guarantees: a save either completes (the entry is written under a temporary
  name with a manifest of its files' SHA-256, then renamed) or raises
  :class:`CheckpointError` leaving the last good entries as they were and no
  temporary directory; a loaded entry matches its checksums (else a
  :class:`CheckpointWarning` names it and it is trained again); and one
  sweep at a time uses the directory (``sweep.lock``, taken with ``O_EXCL``).
  """

  def __init__(self, directory: str, fingerprint: dict[str, Any]):
    import orbax.checkpoint as ocp  # Imported here: it is slow to import.

    check_directory(directory)
    self.directory = os.path.abspath(directory)
    self._locked = False
    self._current_damaged = False
    try:
      os.makedirs(self.directory, exist_ok=True)
    except OSError as err:
      raise CheckpointError(
        f"cannot create checkpoint_dir {self.directory}: {err.strerror}; give a"
        " directory you can write to."
      ) from None
    # One sweep at a time: process 0 takes the lock before it reads or writes
    # anything; the others learn whether it got it.
    problem = self._lock() if hosts.is_main() else None
    if not hosts.agree(problem is None):
      raise CheckpointError(
        problem or f"process 0 could not lock checkpoint_dir {self.directory}; see its error."
      )
    try:
      self._check_fingerprint(directory, fingerprint)
    except BaseException:
      self.close()
      raise
    # Synchronous: Orbax's asynchronous checkpointer leaves threads waiting
    # for good when a save fails (a read-only directory hung the process).
    self._checkpointer = quietly(lambda: ocp.Checkpointer(ocp.StandardCheckpointHandler()))
    self._last_save = time.monotonic()

  def _check_fingerprint(self, directory: str, fingerprint: dict[str, Any]) -> None:
    meta_path = os.path.join(self.directory, "sweep.json")
    # As JSON reads it back (tuples become lists), so the two compare fairly.
    fingerprint = json.loads(json.dumps(dict(fingerprint, version=VERSION)))
    exists = os.path.exists(meta_path)
    entries = [
      n
      for n in os.listdir(self.directory)
      if n not in (LOCK, "command.json", "sweep.json") and not n.endswith(".tmp")
    ]
    hosts.barrier("flood_jax_checkpoint_meta_read")  # all look before process 0 writes
    ways_out = "pass the same arguments to resume it, or a new directory"
    if exists:
      try:
        with open(meta_path) as f:
          saved = json.load(f)
        if not isinstance(saved, dict):
          raise ValueError("not a JSON object")
      except (OSError, ValueError, RecursionError) as err:
        raise ValueError(
          f"checkpoint_dir {directory}: its fingerprint sweep.json is unreadable"
          f" ({first_line(err)}), so which sweep it holds is unknown; pass a new"
          " directory (or delete this one to start over)."
        ) from None
      if saved.get("version") != VERSION and "version" in saved:
        raise ValueError(
          f"checkpoint_dir {directory} holds a checkpoint of format"
          f" {saved.get('version')!r}, this flood_jax writes format {VERSION};"
          " pass a new directory (or delete this one to start over)."
        )
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
        named = [_DESCRIBE.get(k, k) for k in changed]
        raise ValueError(
          f"checkpoint_dir {directory} holds a different sweep (differs in:"
          f" {', '.join(named)}); {ways_out}."
        )
      return
    if entries:
      raise ValueError(
        f"checkpoint_dir {directory} holds {', '.join(sorted(entries)[:3])}"
        f"{', ...' if len(entries) > 3 else ''} but no sweep.json (the fingerprint"
        " of the sweep that wrote it), so it cannot be resumed safely; pass a new"
        " directory (or empty this one to start over)."
      )
    if hosts.is_main():
      try:
        with open(meta_path + ".tmp", "w") as f:
          json.dump(fingerprint, f, indent=1)
        os.replace(meta_path + ".tmp", meta_path)
      except OSError as err:
        _remove(meta_path + ".tmp")
        raise CheckpointError(
          f"cannot write to checkpoint_dir {self.directory}: {err.strerror}; give a"
          " directory you can write to (with free space)."
        ) from None

  # -- the lock ---------------------------------------------------------------

  def _lock(self) -> str | None:
    """Takes ``sweep.lock``; the reason it cannot (one line), or ``None``."""
    path = os.path.join(self.directory, LOCK)
    me = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}
    for _ in range(2):
      try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
      except FileExistsError:
        holder = _read_lock(path)
        if _stale(holder, self.directory, path):
          try:
            _remove(path)
          except OSError as err:
            return (
              f"cannot take over the left-over lock {path}: {err.strerror}; make"
              f" checkpoint_dir {self.directory} writable (or delete the lock)."
            )
          continue
        who = (
          f"process {holder.get('pid')} on host {holder.get('host')}"
          if holder
          else "another process"
        )
        return (
          f"checkpoint_dir {self.directory} is in use by another sweep ({who},"
          f" {LOCK}); wait for it to finish, or pass another directory (if no"
          f" sweep runs there, delete {path})."
        )
      except OSError as err:
        return (
          f"cannot write to checkpoint_dir {self.directory}: {err.strerror}; give a"
          " directory you can write to (with free space)."
        )
      try:
        with os.fdopen(fd, "w") as f:
          json.dump(me, f)
      except OSError as err:
        _remove(path)
        return (
          f"cannot write to checkpoint_dir {self.directory}: {err.strerror}; give a"
          " directory you can write to (with free space)."
        )
      self._locked = True
      _HELD.add(self.directory)
      return None
    return f"could not lock checkpoint_dir {self.directory}; delete {path} if no sweep runs there."

  def close(self) -> None:
    """Releases the lock (the checkpointer holds nothing between saves).

    Never raises: it runs while an error may be on its way out (a save that
    failed on a directory turned read-only), which a lock that cannot be
    removed must not hide. Such a lock is left over: its holder is gone, so
    the next sweep here takes it over.
    """
    if self._locked:
      self._locked = False
      _HELD.discard(self.directory)
      with contextlib.suppress(OSError):
        _remove(os.path.join(self.directory, LOCK))
    checkpointer = self.__dict__.get("_checkpointer")
    if checkpointer is not None:
      with contextlib.suppress(Exception):
        quietly(checkpointer.close)

  # -- saving and loading ------------------------------------------------------

  def due(self, agree: bool = False) -> bool:
    """Whether the call in progress is due a save (``EVERY_S``).

    ``agree``: every process takes process 0's answer (a collective), so
    that all save together.
    """
    due = time.monotonic() - self._last_save >= EVERY_S
    return hosts.agree(due) if agree else due

  def finished_calls(self) -> list[tuple[int, int]]:
    """The finished calls on disk, ``(segment, call)``, sorted."""
    names = os.listdir(self.directory) if os.path.isdir(self.directory) else []
    out = []
    for name in names:
      parts = name.split("_")
      if len(parts) == 3 and parts[0] == "done" and parts[1].isdigit() and parts[2].isdigit():
        out.append((int(parts[1]), int(parts[2])))
    return sorted(out)

  # Under several processes every process calls save with the same (gathered)
  # tree; Orbax writes it once, from process 0, and the directory moves are
  # process 0's between barriers. The directory must be one they all see.
  def _save(self, path: str, tree: dict[str, Any]) -> None:
    tmp = path + ".partial"
    failure: str | None = None
    if hosts.is_main():
      _clear_partial(tmp)
    hosts.barrier("flood_jax_checkpoint_clear")
    try:
      quietly(self._checkpointer.save, tmp, tree)
      if hosts.is_main():
        manifest = file_digests(tmp)
        with open(os.path.join(tmp, MANIFEST), "w") as f:
          json.dump(manifest, f)
          f.flush()
          os.fsync(f.fileno())
    except Exception as err:  # Orbax reports disk errors as ValueError, OSError, ...
      failure = _cause(err)
    except BaseException:  # Ctrl-C: the last good state stays; nothing half-written is left
      if hosts.is_main():
        _clear_partial(tmp, settle_s=2.0)
      raise
    if hosts.is_main() and failure is None:
      try:
        _remove(path)
        os.replace(tmp, path)
      except OSError as err:
        failure = _cause(err)
    if hosts.is_main() and failure is not None:
      _clear_partial(tmp)
    if not hosts.agree(failure is None) or failure is not None:
      raise self._save_error(path, failure)
    hosts.barrier("flood_jax_checkpoint_saved")
    self._last_save = time.monotonic()

  def _save_error(self, path: str, failure: str | None) -> CheckpointSaveError:
    done = len(self.finished_calls())
    kept = f"{done} finished call{'s' if done != 1 else ''}"
    cause = failure or "on process 0"
    return CheckpointSaveError(
      f"saving the checkpoint {os.path.basename(path)} failed ({cause}); the last"
      f" good state is kept in {self.directory} ({kept}): free space there (or make"
      " it writable), then run the same sweep again to resume from it.",
      cause=cause,
      directory=self.directory,
      kept=kept,
    )

  def _restore(self, path: str, what: str, keys: Sequence[str]) -> dict[str, Any] | None:
    """The entry at ``path`` (a dict with ``keys``), or ``None`` with a warning if damaged."""
    if not os.path.isdir(path):
      return None
    damage = verify(path)
    if damage is None:
      try:
        tree = quietly(self._checkpointer.restore, path)
      except Exception as err:  # a file that reads wrong is damage too
        damage = f"it does not restore: {first_line(err)}"
      else:
        missing = [k for k in keys if not isinstance(tree, dict) or k not in tree]
        if not missing:
          return tree
        damage = f"it holds no {', '.join(missing)}"
    warnings.warn(
      f"checkpoint {path} is damaged ({damage}); {what} is trained again.",
      CheckpointWarning,
      stacklevel=4,
    )
    return None

  def save_current(self, segment: int, call: int, carry, epoch: int, history) -> None:
    """Keeps the call in progress: its carry after ``epoch`` epochs and its history."""
    self._save(
      os.path.join(self.directory, "current"),
      {
        "segment": np.asarray(segment, np.int32),
        "call": np.asarray(call, np.int32),
        "epoch": np.asarray(epoch, np.int32),
        "carry": _leaves_to_tree(jax.tree.leaves(carry)),
        "history": history,
      },
    )

  def load_current(self, segment: int, call: int, structure):
    """``(carry, epoch, history)`` of call ``call`` of ``segment`` in progress, or ``None``."""
    path = os.path.join(self.directory, "current")
    if self._current_damaged or not os.path.isdir(path):
      return None
    tree = self._restore(
      path, "the call in progress", ("segment", "call", "epoch", "carry", "history")
    )
    if tree is None:
      self._current_damaged = True  # said once; the call starts over
    if tree is None or (int(tree["segment"]), int(tree["call"])) != (segment, call):
      return None
    leaves = _tree_to_leaves(tree["carry"], jax.tree.leaves(structure))
    carry = jax.tree.unflatten(jax.tree.structure(structure), leaves)
    return carry, int(tree["epoch"]), tree["history"]

  def save_done(self, segment: int, call: int, models, leaves: list[Any], history) -> None:
    """Keeps a finished call: its models (flat indices), what they keep, and their history."""
    self._save(
      os.path.join(self.directory, _done(segment, call)),
      {
        "models": np.asarray(models, np.int64),
        "leaves": _leaves_to_tree(leaves),
        "history": history,
      },
    )
    if hosts.is_main():
      shutil.rmtree(os.path.join(self.directory, "current"), ignore_errors=True)
    hosts.barrier("flood_jax_checkpoint_done")

  def load_done(self, segment: int, call: int, models: np.ndarray):
    """``(history, leaves)`` of a finished call of these ``models``, or ``None``."""
    path = os.path.join(self.directory, _done(segment, call))
    if not os.path.isdir(path):
      later = [c for c in self.finished_calls() if c > (segment, call)]
      if later:
        warnings.warn(
          f"checkpoint {path} is missing ({_done(*later[0])} after it is there);"
          f" call {call} is trained again.",
          CheckpointWarning,
          stacklevel=3,
        )
      return None
    tree = self._restore(path, f"call {call}", ("models", "leaves", "history"))
    if tree is None or not np.array_equal(np.asarray(tree["models"]), models):
      return None
    return tree["history"], _tree_to_leaves(tree["leaves"])


class NullStore:
  """The checkpoint of a sweep without ``checkpoint_dir``: saves nothing, finds nothing."""

  directory = None

  def due(self, agree: bool = False) -> bool:
    del agree
    return False

  def load_current(self, segment: int, call: int, structure) -> None:
    del segment, call, structure

  def load_done(self, segment: int, call: int, models) -> None:
    del segment, call, models

  def save_current(self, segment, call, carry, epoch, history) -> None:
    del segment, call, carry, epoch, history

  def save_done(self, segment, call, models, leaves, history) -> None:
    del segment, call, models, leaves, history

  def close(self) -> None:
    pass


def _done(segment: int, call: int) -> str:
  return f"done_{segment:02d}_{call:05d}"


# What a changed fingerprint entry means, for the error message.
_DESCRIBE = {
  "computation": "computation (the model, optimizer, loss or objective)",
  "data_checksum": "data_checksum (the data)",
}


def _read_lock(path: str) -> dict[str, Any] | None:
  """The lock's holder (``host``, ``pid``), or ``None`` if it does not read as one."""
  try:
    with open(path) as f:
      holder = json.load(f)
  except (OSError, ValueError, RecursionError):
    return None
  if not isinstance(holder, dict):
    return None
  host, pid = holder.get("host"), holder.get("pid")
  if not isinstance(host, str) or not isinstance(pid, int) or isinstance(pid, bool):
    return None
  return holder


def _stale(holder: dict[str, Any] | None, directory: str, path: str) -> bool:
  """Whether a lock's holder is gone: a dead process on this host, or this process's leftover."""
  if holder is None:
    # Unreadable: a holder that died between creating and writing it, unless just created.
    try:
      return time.time() - os.path.getmtime(path) > 10.0
    except OSError:
      return True
  if holder["host"] != socket.gethostname():
    return False  # another host's process: it cannot be checked from here
  pid = holder["pid"]
  if pid <= 0:
    return True
  if pid == os.getpid():
    return directory not in _HELD
  try:
    os.kill(pid, 0)
  except (ProcessLookupError, OverflowError):  # no such process (or no such pid at all)
    return True
  except PermissionError:
    return False  # alive, another user's
  return False


def _remove(path: str) -> None:
  if os.path.isdir(path) and not os.path.islink(path):
    shutil.rmtree(path, ignore_errors=True)
  else:
    with contextlib.suppress(FileNotFoundError):
      os.remove(path)


class _QuietOrbax(logging.Filter):
  """Drops Orbax's log records (absl's logger) while a save or restore of ours runs, and
  those of its threads that an interrupted save left behind.

  A failed save is said in one line (:class:`CheckpointSaveError`), a damaged entry in one
  warning: Orbax's own tracebacks of the same failure (``RESOURCE_EXHAUSTED`` ...) would
  only bury it.
  """

  def __init__(self):
    super().__init__()
    self.depth = 0  # saves and restores of ours running now
    self.threads: set[int | None] = set()  # Orbax's threads that a Ctrl-C left behind

  def filter(self, record: logging.LogRecord) -> bool:
    if f"{os.sep}orbax{os.sep}" not in record.pathname:
      return True
    return not (self.depth > 0 or record.thread in self.threads)


_QUIET = _QuietOrbax()
# How long an interrupted save waits for Orbax's threads to stop.
STOP_S = 10.0


def quietly(fn: Callable[..., Any], *args: Any) -> Any:
  """``fn(*args)``, a call to Orbax (a save, a restore), without Orbax's logging.

  On an exception (a full disk, Ctrl-C), waits for the Orbax threads it started (or
  cancels them, after ``STOP_S``), so that none is left to log, or to fail, after the
  error has been reported. On Ctrl-C, what the interrupted call left behind (a half-made
  event loop, coroutines never awaited) is collected here, quietly, not at exit with
  Python's complaints about it.
  """
  logger = logging.getLogger("absl")
  if _QUIET not in logger.filters:
    logger.addFilter(_QUIET)
  before = set(threading.enumerate())
  _QUIET.depth += 1
  try:
    return fn(*args)
  except BaseException as err:
    started = [t for t in threading.enumerate() if t not in before]
    _stop([t for t in started if _is_orbax(t)])
    # Their helpers (asyncio's executor) finish the file operations in flight.
    deadline = time.monotonic() + 2.0
    for thread in started:
      if not _is_orbax(thread):
        _join(thread, deadline)
    if not _interrupted(err):
      raise
    # Orbax's frames, and what they hold, go now (the traceback starts here); a Ctrl-C
    # that Orbax turned into another error on its way out (a thread it could not join)
    # is a Ctrl-C still.
    _drop_quietly(err)
    if isinstance(err, KeyboardInterrupt):
      raise
    raise KeyboardInterrupt from None
  finally:
    _QUIET.depth -= 1


def _interrupted(err: BaseException) -> bool:
  """Whether ``err`` is, or was raised while handling, a ``KeyboardInterrupt``."""
  seen: set[int] = set()
  at: BaseException | None = err
  while at is not None and id(at) not in seen:
    if isinstance(at, KeyboardInterrupt):
      return True
    seen.add(id(at))
    at = at.__context__
  return False


def _drop_quietly(err: BaseException) -> None:
  """Drops ``err``'s traceback and context and collects what they held, without the
  warnings and unraisable exceptions of what is freed (Python's complaints at exit)."""
  hook = sys.unraisablehook
  sys.unraisablehook = lambda _: None
  try:
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")
      err.__traceback__, err.__context__ = None, None
      gc.collect()
  finally:
    sys.unraisablehook = hook


def _is_orbax(thread: threading.Thread) -> bool:
  return type(thread).__module__.split(".")[0] == "orbax"


def _stop(threads: Sequence[threading.Thread]) -> None:
  """Waits for Orbax's threads (up to ``STOP_S``), then cancels those still running (they
  stay silenced).

  Waited for first: a cancelled thread can leave TensorStore's writes in flight, which
  then land after the half-written entry has been cleared.
  """
  _QUIET.threads.update(t.ident for t in threads)
  deadline = time.monotonic() + STOP_S
  for thread in threads:
    _join(thread, deadline)
  for thread in threads:
    cancel = getattr(thread, "cancel", None)
    if thread.is_alive() and callable(cancel):
      with contextlib.suppress(Exception):  # a thread that has just finished
        cancel()
      _join(thread, time.monotonic() + 1.0)
    if not thread.is_alive():
      _QUIET.threads.discard(thread.ident)


def _join(thread: threading.Thread, deadline: float) -> None:
  """Waits for ``thread`` until ``deadline`` (``time.monotonic()``), also for one that is
  being started (a Ctrl-C can stop the main thread in the middle of starting it)."""
  while True:
    try:
      # threading's own join: Orbax's raises what the thread raised.
      threading.Thread.join(thread, max(0.0, deadline - time.monotonic()))
      return
    except RuntimeError:  # not started yet
      if time.monotonic() >= deadline:
        return
      time.sleep(0.01)


def _clear_partial(tmp: str, settle_s: float = 0.0) -> None:
  """Removes a half-written entry: ours (``.partial``) and Orbax's own temporary name for it.

  ``settle_s``: after an interrupted save, TensorStore's own threads may still be writing
  into it for a moment; it is removed again until it stays removed (for up to that long).
  """
  deadline = time.monotonic() + settle_s
  while True:
    for path in glob.glob(glob.escape(tmp) + "*"):
      shutil.rmtree(path, ignore_errors=True)
    if not glob.glob(glob.escape(tmp) + "*") or time.monotonic() >= deadline:
      return
    time.sleep(0.05)


# What a failed write says, as the operating system names it (Orbax wraps it in long text).
_OS_ERRORS = ("No space left on device", "Read-only file system", "Permission denied")


def _cause(err: BaseException) -> str:
  """A short reason for a failed save: the operating system's words when they are there."""
  if isinstance(err, OSError) and err.strerror:
    return err.strerror
  text = str(err)
  for words in _OS_ERRORS:
    if words in text:
      return words
  line = first_line(err)
  return line if len(line) <= 200 else line[:197] + "..."


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
