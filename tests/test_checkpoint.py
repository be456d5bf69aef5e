"""Checkpoints under faults: a failed save keeps the finished work, a checkpoint resumes only
the sweep that wrote it, damage is detected and retrained, one sweep per directory."""

import json
import logging
import os
import subprocess
import sys
import textwrap

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from helpers import SmallMLP, _Interrupt, _toy_dataset, assert_bitwise_equal

import flood_jax as fj
from flood_jax import _sweep
from flood_jax._sweep import checkpoint
from flood_jax._sweep.checkpoint import CheckpointError, CheckpointSaveError, CheckpointWarning
from flood_jax._sweep.driver import AtChanceWarning

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LEVELS = [0.0, 0.1, 0.2]
TIMEOUT = 240  # seconds a subprocess may take before the test calls it hung


@pytest.fixture(scope="module")
def data():
  return _toy_dataset()


def _run(data, directory, optimizer=None, **kw):
  """Three calls (one model each, one device), four epochs in two calls of two."""
  one_device = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("models",))
  settings = dict(
    flood_levels=LEVELS,
    seeds=[0],
    optimizer=optimizer or optax.adam(1e-2),
    epochs=4,
    epochs_per_call=2,
    batch_size=20,
    eval_every=1,
    chunk_size=1,
    mesh=one_device,
    progress=False,
    checkpoint_dir=directory,
  )
  return fj.sweep(SmallMLP(width=8), data, **{**settings, **kw})


@pytest.fixture(scope="module")
def full(data, tmp_path_factory):
  """The uninterrupted sweep, and its finished checkpoint (kept for damaging copies)."""
  directory = tmp_path_factory.mktemp("full") / "ckpt"
  return _run(data, directory), directory


def _saved_calls(monkeypatch):
  """Records which calls a sweep saves as finished (the ones it trained)."""
  saved = []
  save_done = checkpoint.CheckpointStore.save_done

  def record(self, segment, call, models, leaves, history):
    saved.append(call)
    save_done(self, segment, call, models, leaves, history)

  monkeypatch.setattr(checkpoint.CheckpointStore, "save_done", record)
  return saved


def _copy(src, dst):
  import shutil

  shutil.copytree(src, dst)
  return dst


# -- a failed save ---------------------------------------------------------------------------


def test_full_disk_keeps_the_finished_calls_and_a_resume_ends_as_uninterrupted(
  data, full, tmp_path, monkeypatch
):
  directory = tmp_path / "ckpt"
  save = ocp.Checkpointer.save
  count = [0]

  def fill_the_disk(self, path, *args, **kwargs):
    count[0] += 1
    if count[0] == 3:  # the third call's save: Orbax half-writes, then says so as a ValueError
      os.makedirs(f"{path}.orbax-checkpoint-tmp/ocdbt.process_0")
      raise ValueError(
        f'RESOURCE_EXHAUSTED: Error writing "leaves.0/0.0" in OCDBT database at local file'
        f' "{path}": Failed to write 2162 bytes to file 4: No space left on device'
        " [os_error_code='28']"
      )
    return save(self, path, *args, **kwargs)

  with monkeypatch.context() as patch:
    patch.setattr(ocp.Checkpointer, "save", fill_the_disk)
    with pytest.raises(CheckpointSaveError) as raised:
      _run(data, directory)
  message = str(raised.value)
  assert "\n" not in message and "No space left on device" in message
  assert str(directory) in message and "2 finished calls" in message and "free space" in message
  names = sorted(os.listdir(directory))
  assert names == ["done_00_00000", "done_00_00001", "sweep.json"]  # no partial entry, no lock

  saved = _saved_calls(monkeypatch)
  assert_bitwise_equal(_run(data, directory), full[0])
  assert saved == [2]  # only the call that was lost is trained again


def test_a_failed_save_in_a_pruned_sweep_keeps_its_last_state(data, tmp_path, monkeypatch):
  monkeypatch.setattr(checkpoint, "EVERY_S", 0.0)  # save between calls
  kw = dict(prune=fj.Halving(min_epochs=2, factor=2), flood_levels=[0.0, 0.1, 0.2, 0.3])
  whole = _run(data, tmp_path / "whole", **kw)
  save = ocp.Checkpointer.save
  count = [0]

  def fail_the_third(self, path, *args, **kwargs):
    count[0] += 1
    if count[0] == 3:
      raise OSError(28, "No space left on device", str(path))
    return save(self, path, *args, **kwargs)

  directory = tmp_path / "cut"
  with monkeypatch.context() as patch:
    patch.setattr(ocp.Checkpointer, "save", fail_the_third)
    with pytest.raises(CheckpointSaveError, match=r"\(2 finished calls\)"):
      _run(data, directory, **kw)
  # The two saves before it are kept; no partial entry, no lock.
  assert sorted(os.listdir(directory)) == ["done_00_00000", "done_00_00001", "sweep.json"]
  assert_bitwise_equal(_run(data, directory, **kw), whole)


def test_a_directory_turned_read_only_after_a_call_stops_with_the_saves_own_line(
  data, full, tmp_path, monkeypatch
):
  import errno

  directory = tmp_path / "ckpt"
  save, remove = ocp.Checkpointer.save, checkpoint._remove
  read_only = [False]

  def turn_read_only(self, path, *args, **kwargs):
    if os.path.basename(str(path)).startswith("done_00_00001"):
      read_only[0] = True  # from the second call's save on, nothing here can be written
    if read_only[0]:
      raise OSError(errno.EROFS, "Read-only file system", str(path))
    return save(self, path, *args, **kwargs)

  def refuse(path):
    if read_only[0]:
      raise OSError(errno.EROFS, "Read-only file system", path)
    remove(path)

  with monkeypatch.context() as patch:
    patch.setattr(ocp.Checkpointer, "save", turn_read_only)
    patch.setattr(checkpoint, "_remove", refuse)
    with pytest.raises(CheckpointSaveError) as raised:
      _run(data, directory)
    # The lock could not be removed (it is left over), and did not hide the save's line.
    message = str(raised.value)
    assert "\n" not in message and "Read-only file system" in message, message
    assert "1 finished call)" in message and "make it writable" in message
    assert (directory / "sweep.lock").exists()
    # Still read-only: the next sweep says so in one line too.
    with pytest.raises(CheckpointError, match=r"cannot take over the left-over lock.*writable"):
      _run(data, directory)
  # Writable again: the left-over lock is taken over and the sweep resumes to the same results.
  assert_bitwise_equal(_run(data, directory), full[0])
  assert not (directory / "sweep.lock").exists()


async def _write_fails(seconds, message):
  import asyncio

  await asyncio.sleep(seconds)
  raise ValueError(message)


def test_orbax_logs_nothing_beside_a_failed_saves_own_line(data, tmp_path, monkeypatch, caplog):
  from orbax.checkpoint._src.futures import future

  save = ocp.Checkpointer.save
  count = [0]

  def fill_the_disk(self, path, *args, **kwargs):
    count[0] += 1
    if count[0] == 3:  # Orbax's own writing thread fails, logs its traceback and reraises
      full = "RESOURCE_EXHAUSTED: Failed to write 2162 bytes to file 4: No space left on device"
      future.CommitFuture(_write_fails(0.0, full), name="np_type_handler").result()
    return save(self, path, *args, **kwargs)

  with caplog.at_level(logging.INFO), monkeypatch.context() as patch:
    patch.setattr(ocp.Checkpointer, "save", fill_the_disk)
    with pytest.raises(CheckpointSaveError, match="No space left on device"):
      _run(data, tmp_path / "ckpt")
  assert count[0] == 3
  assert [r.getMessage() for r in caplog.records if "orbax" in r.pathname] == []


@pytest.mark.parametrize("how", ["interrupted", "interrupted, then another error"])
def test_ctrl_c_during_a_save_leaves_no_orbax_thread_to_speak_later(
  data, full, tmp_path, monkeypatch, caplog, how
):
  import threading

  from orbax.checkpoint._src.futures import future

  directory = tmp_path / "ckpt"
  save = ocp.Checkpointer.save
  count = [0]

  def interrupted(self, path, *args, **kwargs):
    count[0] += 1
    if count[0] < 3:
      return save(self, path, *args, **kwargs)
    os.makedirs(f"{path}.orbax-checkpoint-tmp/ocdbt.process_0")  # half-written
    # Orbax's thread goes on writing, then fails, after the main thread has left the save.
    gone = "cannot schedule new futures after interpreter shutdown"
    future.CommitFuture(_write_fails(0.3, gone), name="write_metadata_after_commits")
    try:
      raise KeyboardInterrupt
    except KeyboardInterrupt:
      if how == "interrupted":
        raise
      raise RuntimeError("cannot join thread before it is started") from None  # Orbax's cleanup

  with caplog.at_level(logging.INFO), monkeypatch.context() as patch:
    patch.setattr(ocp.Checkpointer, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
      _run(data, directory)
  # Orbax's thread was waited for before the interrupt went on: it can print nothing later.
  assert not [t for t in threading.enumerate() if type(t).__module__.startswith("orbax")]
  assert [r.getMessage() for r in caplog.records if "orbax" in r.pathname] == []
  assert sorted(os.listdir(directory)) == ["done_00_00000", "done_00_00001", "sweep.json"]
  saved = _saved_calls(monkeypatch)
  assert_bitwise_equal(_run(data, directory), full[0])
  assert saved == [2]


READ_ONLY = textwrap.dedent(
  """
  import errno, os, sys
  sys.path.insert(0, os.path.join({root!r}, "tests"))
  import jax, numpy as np, optax
  import flood_jax as fj
  import orbax.checkpoint as ocp
  from helpers import SmallMLP, _toy_dataset
  directory = sys.argv[1]
  if os.geteuid() == 0:
    # root writes through file modes: fail the writer as a read-only file system would.
    def read_only(self, path, *args, **kwargs):
      raise OSError(errno.EROFS, "Read-only file system", str(path))
    ocp.Checkpointer.save = read_only
  else:
    for root, dirs, files in os.walk(directory):
      for name in dirs + files + ["."]:
        os.chmod(os.path.join(root, name), 0o555 if name in dirs or name == "." else 0o444)
  fj.sweep(SmallMLP(width=8), _toy_dataset(), flood_levels={levels!r}, seeds=[0],
           optimizer=optax.adam(1e-2), epochs=4, epochs_per_call=2, batch_size=20, eval_every=1,
           chunk_size=1, progress=False, checkpoint_dir=directory,
           mesh=jax.sharding.Mesh(np.array(jax.devices()[:1]), ("models",)))
  """
)


def test_a_read_only_checkpoint_stops_with_one_line_and_the_process_exits(data, tmp_path):
  directory = tmp_path / "ckpt"
  with pytest.raises(KeyboardInterrupt), pytest.MonkeyPatch.context() as patch:
    patch.setattr(_sweep.driver, "_progress_bar", lambda *args: _Interrupt(after=2))
    _run(data, directory)  # one call finished, then Ctrl-C
  before = sorted(os.listdir(directory))
  script = READ_ONLY.format(root=ROOT, levels=LEVELS)
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
  done = subprocess.run(
    [sys.executable, "-c", script, str(directory)],
    capture_output=True,
    text=True,
    timeout=TIMEOUT,  # Orbax's threads kept such a process alive for good
    env=env,
  )
  assert done.returncode != 0
  last = done.stderr.strip().splitlines()[-1]
  assert "CheckpointError" in last or "CheckpointSaveError" in last, done.stderr[-2000:]
  assert "Read-only file system" in last or "Permission denied" in last, last
  assert sorted(os.listdir(directory)) == before  # nothing lost, nothing half-written
  for root, dirs, _ in os.walk(directory):
    for name in dirs:
      os.chmod(os.path.join(root, name), 0o755)
  os.chmod(directory, 0o755)


# -- a checkpoint resumes only the sweep that wrote it -----------------------------------------


def test_a_resume_with_another_optimizer_is_refused(data, tmp_path):
  directory = tmp_path / "ckpt"
  with pytest.raises(KeyboardInterrupt), pytest.MonkeyPatch.context() as patch:
    patch.setattr(_sweep.driver, "_progress_bar", lambda *args: _Interrupt(after=4))
    _run(data, directory, optimizer=optax.adam(1e-2))
  assert (directory / "done_00_00000").is_dir()
  for other in [optax.adam(0.1), optax.sgd(1e-2), optax.adamw(1e-2)]:
    with pytest.raises(ValueError, match=r"differs in: computation \(the model, optimizer") as e:
      _run(data, directory, optimizer=other)
    assert "pass the same arguments to resume it, or a new directory" in str(e.value)
  _run(data, directory, optimizer=optax.adam(1e-2))  # the same arguments resume


def test_a_finished_checkpoint_is_not_reused_for_another_learning_rate(data, full, tmp_path):
  directory = _copy(full[1], tmp_path / "ckpt")
  with pytest.raises(ValueError, match="computation"):
    _run(data, directory, optimizer=optax.adam(2e-2))
  with pytest.raises(ValueError, match="differs in: computation"):
    fj.sweep(
      SmallMLP(width=16),
      data,
      flood_levels=LEVELS,
      seeds=[0],
      optimizer=optax.adam(1e-2),
      epochs=4,
      batch_size=20,
      chunk_size=1,
      epochs_per_call=2,
      eval_every=1,
      mesh=jax.sharding.Mesh(np.array(jax.devices()[:1]), ("models",)),
      progress=False,
      checkpoint_dir=directory,
    )


def test_a_checkpoint_without_or_with_a_broken_fingerprint_is_refused(data, full, tmp_path):
  directory = _copy(full[1], tmp_path / "ckpt")
  os.remove(directory / "sweep.json")
  with pytest.raises(ValueError, match=r"no sweep\.json") as e:
    _run(data, directory, flood_levels=[0.3, 0.4, 0.5])  # other levels: never the old results
  assert "\n" not in str(e.value) and "new directory" in str(e.value)
  (directory / "sweep.json").write_text('{"flood_levels": [0.0, 0.1')
  with pytest.raises(ValueError, match=r"sweep\.json is unreadable"):
    _run(data, directory)
  old = json.loads((full[1] / "sweep.json").read_text())
  (directory / "sweep.json").write_text(json.dumps(dict(old, version=3)))
  with pytest.raises(ValueError, match="format 3"):
    _run(data, directory)


@pytest.mark.parametrize(
  "garbled", [b"\xff\xfe\x00", b"", b"null", b"[" * 100_000, b'{"flood_levels": [0.0, 0.1']
)
def test_a_garbled_fingerprint_is_one_line_naming_it(data, full, tmp_path, garbled):
  directory = _copy(full[1], tmp_path / "ckpt")
  (directory / "sweep.json").write_bytes(garbled)
  with pytest.raises(ValueError, match=r"its fingerprint sweep\.json is unreadable") as e:
    _run(data, directory)
  assert "\n" not in str(e.value) and "pass a new directory" in str(e.value)


@pytest.mark.parametrize(
  "garbled",
  [b"\xff\xfe\x00", b"", b"[]", b'{"host": 5, "pid": []}', b'{"host": "HOST", "pid": 1e400}',
   b'{"host": "HOST", "pid": 100000000000000000000000000000}'],
)  # fmt: skip
def test_a_garbled_lock_is_taken_over_once_its_writer_is_gone(data, full, tmp_path, garbled):
  import socket

  directory = _copy(full[1], tmp_path / "ckpt")
  lock = directory / "sweep.lock"
  lock.write_bytes(garbled.replace(b"HOST", socket.gethostname().encode()))
  if b"10000" not in garbled:  # no holder to check (a pid, however large, is checked)
    # Just written (a sweep may be writing its lock now): refused, in one line.
    with pytest.raises(CheckpointError, match="in use by another sweep") as e:
      _run(data, directory)
    assert "\n" not in str(e.value) and f"delete {lock}" in str(e.value)
    os.utime(lock, (0, 0))  # long ago: its writer died before it finished the lock
  assert_bitwise_equal(_run(data, directory), full[0])
  assert not lock.exists()


# -- damage ------------------------------------------------------------------------------------


def _largest_file(directory):
  files = [os.path.join(r, n) for r, _, names in os.walk(directory) for n in names]
  files = [f for f in files if os.path.basename(f) != checkpoint.MANIFEST]
  return max(files, key=os.path.getsize)


@pytest.mark.parametrize("damage", ["overwritten", "truncated", "deleted file", "deleted call"])
def test_a_damaged_call_is_named_and_trained_again(data, full, tmp_path, monkeypatch, damage):
  directory = _copy(full[1], tmp_path / "ckpt")
  call = directory / "done_00_00001"
  path = _largest_file(call)
  if damage == "overwritten":
    with open(path, "r+b") as f:
      f.seek(os.path.getsize(path) // 2)
      f.write(b"\xff" * 8)
  elif damage == "truncated":
    os.truncate(path, os.path.getsize(path) // 2)
  elif damage == "deleted file":
    os.remove(path)
  else:
    import shutil

    shutil.rmtree(call)
  saved = _saved_calls(monkeypatch)
  with pytest.warns(CheckpointWarning, match="done_00_00001") as caught:
    resumed = _run(data, directory)
  assert len(caught) == 1 and "call 1 is trained again" in str(caught[0].message)
  assert saved == [1]  # not the whole sweep
  assert_bitwise_equal(resumed, full[0])


def test_a_damaged_call_in_progress_starts_over(data, full, tmp_path, monkeypatch):
  directory = tmp_path / "ckpt"
  monkeypatch.setattr(checkpoint, "EVERY_S", 0.0)  # save the call in progress too
  with pytest.raises(KeyboardInterrupt), monkeypatch.context() as patch:
    patch.setattr(_sweep.driver, "_progress_bar", lambda *args: _Interrupt(after=3))
    _run(data, directory)  # stops in the second call, after its first two epochs
  assert (directory / "current").is_dir()
  os.remove(directory / "current" / checkpoint.MANIFEST)
  with pytest.warns(CheckpointWarning, match="current"):
    resumed = _run(data, directory)
  assert_bitwise_equal(resumed, full[0])


# -- one sweep per directory -------------------------------------------------------------------


HOLD_LOCK = textwrap.dedent(
  """
  import sys, time
  from flood_jax._sweep import checkpoint
  store = checkpoint.CheckpointStore(sys.argv[1], {"holder": "another sweep"})
  print("locked", flush=True)
  time.sleep(120)
  """
)


def test_a_second_sweep_on_the_same_directory_is_refused(data, tmp_path):
  directory = tmp_path / "ckpt"
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
  holder = subprocess.Popen(
    [sys.executable, "-c", HOLD_LOCK, str(directory)], stdout=subprocess.PIPE, text=True, env=env
  )
  try:
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(CheckpointError, match="in use by another sweep") as e:
      _run(data, directory)
    message = str(e.value)
    assert f"process {holder.pid} on host" in message and "\n" not in message
    assert sorted(os.listdir(directory)) == ["sweep.json", "sweep.lock"]  # the holder's, intact
  finally:
    holder.kill()
    holder.wait(timeout=TIMEOUT)
    if holder.stdout is not None:
      holder.stdout.close()
  # Its holder is gone: the lock is stale, and a sweep takes it (and refuses the other sweep).
  with pytest.raises(ValueError, match="holds a different sweep"):
    _run(data, directory)
  assert not (directory / "sweep.lock").exists()


def test_a_stale_lock_of_a_dead_process_is_taken_over(data, full, tmp_path):
  directory = _copy(full[1], tmp_path / "ckpt")
  dead = subprocess.run(
    [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True
  )
  pid = int(dead.stdout)
  import socket

  (directory / "sweep.lock").write_text(json.dumps({"host": socket.gethostname(), "pid": pid}))
  assert_bitwise_equal(_run(data, directory), full[0])
  assert not (directory / "sweep.lock").exists()


# -- before training: one line each ------------------------------------------------------------


def test_a_checkpoint_dir_that_cannot_be_one_is_refused(data, tmp_path):
  with pytest.raises(ValueError, match="checkpoint_dir is empty"):
    _run(data, "")
  (tmp_path / "file").write_text("x")
  with pytest.raises(ValueError, match="is a file, not a directory"):
    _run(data, tmp_path / "file")
  assert not (tmp_path / "current").exists()


class _BatchOfOne(nn.Module):
  @nn.compact
  def __call__(self, x, train: bool):
    return nn.Dense(2)(x.mean(axis=0, keepdims=True))  # broadcasts against any labels


class _Bounded(nn.Module):
  @nn.compact
  def __call__(self, x, train: bool):
    return jnp.tanh(nn.Dense(2)(nn.relu(nn.Dense(8)(x))))


def test_bad_models_augmentations_and_grids_are_refused_before_training(data):
  kw = dict(flood_levels=[0.0], optimizer=optax.sgd(0.1), epochs=1, batch_size=20, progress=False)
  with pytest.raises(ValueError, match=r"got \(1, 2\) for a batch of 3"):
    fj.sweep(_BatchOfOne(), data, **kw)
  with pytest.raises(ValueError, match=r"augment must return a batch of the shape.*\(20, 2\)"):
    fj.sweep(SmallMLP(), data, augment=lambda key, x: x[:, :1], **kw)
  with pytest.raises(ValueError, match=r"augment.*fails on a key and a batch"):
    fj.sweep(SmallMLP(), data, augment=lambda key, x: x.reshape(7, -1), **kw)
  with pytest.raises(ValueError, match="flood_levels must be distinct"):
    fj.sweep(SmallMLP(), data, **dict(kw, flood_levels=[0.0, 0.1, 0.1]))
  inject = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)
  with pytest.raises(ValueError, match=r"hyperparams\['learning_rate'\] must be distinct"):
    fj.sweep(SmallMLP(), data, **dict(kw, optimizer=inject), hyperparams={"learning_rate": [1, 1]})
  with pytest.raises(ValueError, match=r"hyperparams\['learning_rate'\] must be positive"):
    fj.sweep(SmallMLP(), data, **dict(kw, optimizer=inject), hyperparams={"learning_rate": [-1]})
  big = np.array([0, 1, 2**31] * 4, np.int64)
  with pytest.raises(ValueError, match="y_train holds labels outside int32"):
    fj.Dataset(
      x_train=np.zeros((12, 2)),
      y_train=big,
      x_val=np.zeros((1, 2)),
      y_val=[0],
      x_test=np.zeros((1, 2)),
      y_test=[0],
    )


def test_a_sweep_that_ends_at_chance_warns_instead_of_naming_a_best_level(data):
  kw = dict(flood_levels=[0.0, 0.1], epochs=3, batch_size=20, progress=False)
  constant = fj.Model(  # learns the class shares at best, never the inputs
    init=lambda key, x: {"bias": jnp.zeros(2)},
    apply=lambda params, x, train: jnp.broadcast_to(params["bias"], (x.shape[0], 2)),
  )
  with pytest.warns(AtChanceWarning, match="ends at chance") as caught:
    result = fj.sweep(constant, data, optimizer=optax.sgd(0.5), **kw)
  assert len(caught) == 1
  majority = np.bincount(data.y_val).max() / len(data.y_val)
  assert np.all(result.history["val_accuracy"][..., -1] <= majority + 1e-6)


# -- the command line --------------------------------------------------------------------------

TINY = [
  "sweep",
  "--dataset",
  "two_gaussians",
  "--levels",
  "0,0.3",
  "--seeds",
  "2",
  "--epochs",
  "2",
  "--batch-size",
  "20",
  "--hidden",
  "8",
  "--depth",
  "1",
  "--devices",
  "1",
  "--chunk-size",
  "1",
  "--no-progress",
  "--no-plots",
  "--no-compile-cache",
]


def test_the_command_line_keeps_the_finished_calls_when_a_save_fails(tmp_path, capsys, monkeypatch):
  from flood_jax import cli

  monkeypatch.setenv("XLA_FLAGS", os.environ.get("XLA_FLAGS", ""))
  assert cli.main([*TINY, "--out", str(tmp_path / "whole")]) == 0
  save = ocp.Checkpointer.save
  count = [0]

  def fill_the_disk(self, path, *args, **kwargs):
    count[0] += 1
    if count[0] == 3:
      raise ValueError("RESOURCE_EXHAUSTED: ... No space left on device [os_error_code='28']")
    return save(self, path, *args, **kwargs)

  cut = tmp_path / "cut"
  capsys.readouterr()
  with monkeypatch.context() as patch:
    patch.setattr(ocp.Checkpointer, "save", fill_the_disk)
    code = cli.main([*TINY, "--out", str(cut)])
  err = capsys.readouterr().err
  assert code == 1 and err.count("\n") == 1 and "Traceback" not in err, err
  assert "No space left on device" in err and "2 finished calls kept in" in err
  assert sorted(os.listdir(cut / "checkpoint")) == [
    "command.json",
    "done_00_00000",
    "done_00_00001",
    "sweep.json",
  ]
  command = err.strip().split("then run: ")[1].split()
  assert command[0] == "flood-jax" and command[-1] == "--resume"
  assert cli.main(command[1:]) == 0
  whole = json.loads((tmp_path / "whole" / "results.json").read_text())
  resumed = json.loads((cut / "results.json").read_text())
  assert resumed["history"] == whole["history"]


def test_the_command_line_refuses_conflicting_host_options(tmp_path, capsys):
  from flood_jax import cli

  code = cli.main([*TINY, "--distributed", "--coordinator", "127.0.0.1:1234", "--out", "x"])
  err = capsys.readouterr().err
  assert code == 2 and "give one or the other, not both" in err and err.count("\n") == 1


def test_waiting_for_a_coordinator_says_so_and_gives_up_after_the_timeout(tmp_path):
  from flood_jax import _launch

  command = [
    *TINY,
    "--coordinator",
    f"127.0.0.1:{_launch.free_port()}",  # nobody listens there
    "--num-processes",
    "2",
    "--process-id",
    "1",
    "--join-timeout",
    "2",
    "--out",
    str(tmp_path / "run"),
  ]
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
  done = subprocess.run(
    [sys.executable, "-m", "flood_jax", *command],
    capture_output=True,
    text=True,
    timeout=TIMEOUT,
    env=env,
  )
  lines = done.stderr.strip().splitlines()
  assert done.returncode == 2, done.stderr[-2000:]
  assert lines[0].endswith("waiting up to 2 s for them")
  assert lines[-1].startswith("flood-jax: error: no coordinator answered at 127.0.0.1:")
