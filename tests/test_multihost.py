"""Sweeps across processes (``jax.distributed``), on this machine: two processes
on localhost with two CPU devices each stand in for two hosts.

What a user relies on: every process returns the same history, bit for bit
what one process with the same four devices and chunk size returns; a sweep
whose process dies resumes from its checkpoint to exactly the uninterrupted
results; a checkpoint is refused on a different number of processes.
"""

import json
import os
import random
import re
import socket

import numpy as np
import pytest

from flood_jax import _launch

WORKER = os.path.join(os.path.dirname(__file__), "multihost_worker.py")
# 6 models, one per device per call: two calls on 4 devices, the second padded.
SPEC = dict(flood_levels=[0.0, 0.2, 0.4], seeds=[0, 3], epochs=4, chunk_size=1)
TIMEOUT = 240


def _env():
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = dict(os.environ)
  env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
  env.pop("FLOOD_JAX_CPU_DEVICES", None)
  return env


def _run(spec, out_dir, processes, devices, **kwargs):
  os.makedirs(out_dir, exist_ok=True)
  env = dict(_env(), FLOOD_JAX_HEARTBEAT_S="5")  # a dead process is noticed in 5 s
  return _launch.run_local_processes(
    [WORKER, json.dumps(spec), str(out_dir)], processes, devices, timeout=TIMEOUT, env=env, **kwargs
  )


def _results(out_dir, processes):
  return [dict(np.load(os.path.join(out_dir, f"result_{i}.npz"))) for i in range(processes)]


def _check_ok(runs):
  for i, run in enumerate(runs):
    assert run.returncode == 0, f"process {i} failed:\n{run.stderr[-3000:]}"


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
  out = tmp_path_factory.mktemp("two")
  # With loggers, which change nothing in the results (compared below).
  _check_ok(_run(dict(SPEC, log_dir=str(out / "tb")), out, 2, 2))
  return [*_results(out, 2), out]


def test_two_processes_equal_one_process_with_the_same_devices(two_processes, tmp_path):
  _check_ok(_run(SPEC, tmp_path, 1, 4))
  (alone,) = _results(tmp_path, 1)
  first, second, _ = two_processes
  assert json.loads(str(first["info"])) == dict(
    processes=2, devices=4, local_devices=2, joined=True
  )
  assert json.loads(str(alone["info"]))["processes"] == 1
  assert set(first) == set(alone)
  for name in alone:
    if name != "info":
      np.testing.assert_array_equal(first[name], second[name], err_msg=name)
      np.testing.assert_array_equal(first[name], alone[name], err_msg=name)
  # The models trained: not all alike, and the loss went down.
  loss = first["history/train_loss"]
  assert np.all(np.isfinite(loss)) and np.all(loss[..., -1] < loss[..., 0])
  assert not np.array_equal(first["history/val_loss"][0], first["history/val_loss"][2])


def test_killed_process_resumes_bitwise_on_the_same_processes(two_processes, tmp_path):
  ckpt = str(tmp_path / "ckpt")
  # Process 1 dies (os._exit) after its 3rd checkpoint save (mid first call:
  # saves follow every epoch here); process 0 stops with a clear message.
  runs = _run(
    dict(SPEC, checkpoint_dir=ckpt, die_after_saves=3), tmp_path / "dead", 2, 2, wait_for_all=True
  )
  assert runs[1].returncode == 17, runs[1].stderr[-3000:]
  assert runs[0].returncode != 0
  assert "process 0 of 2: the sweep lost contact with another process" in runs[0].stderr
  assert (
    f"rerun the same sweep on 2 processes to continue from the checkpoint in {ckpt}"
    in runs[0].stderr
  )
  assert os.path.exists(os.path.join(ckpt, "current"))

  # The rerun continues from the checkpoint; each process keeps its own models.
  _check_ok(_run(dict(SPEC, checkpoint_dir=ckpt, gather_params=False), tmp_path / "rerun", 2, 2))
  resumed = _results(tmp_path / "rerun", 2)
  reference = two_processes[0]
  held = []
  for result in resumed:
    local = result["local_models"]
    held += local.tolist()
    for name in reference:
      if name.startswith("history/") or name == "pruned_at":
        np.testing.assert_array_equal(result[name], reference[name], err_msg=name)
      elif name != "info":
        # Flat, seed-major: model i has seed i // 3 and level i % 3.
        flat = np.swapaxes(reference[name], 0, 1).reshape((-1, *reference[name].shape[2:]))
        np.testing.assert_array_equal(result[name], flat[local], err_msg=name)
  assert sorted(held) == list(range(6))

  # One process on the same checkpoint: one clear error.
  runs = _run(dict(SPEC, checkpoint_dir=ckpt), tmp_path / "one", 1, 4)
  assert runs[0].returncode != 0
  message = runs[0].stderr.strip().splitlines()[-1]
  assert "ValueError" in message and "2 process(es)" in message and "runs on 1" in message


def test_a_pruned_sweep_on_two_processes_equals_one_process_with_the_same_devices(tmp_path):
  # 3 configurations x 2 seeds; the rung after epoch 2 keeps 2 of them, re-packed (b = 1.0,
  # above the initial loss, ascends from the start and is cut).
  spec = dict(SPEC, flood_levels=[0.0, 0.2, 1.0], prune=[2, 2])
  _check_ok(_run(spec, tmp_path / "two", 2, 2))
  _check_ok(_run(spec, tmp_path / "one", 1, 4))
  first, second = _results(tmp_path / "two", 2)
  (alone,) = _results(tmp_path / "one", 1)
  assert set(first) == set(alone) and "local_models" not in first
  for name in alone:
    if name != "info":
      np.testing.assert_array_equal(first[name], second[name], err_msg=name)
      np.testing.assert_array_equal(first[name], alone[name], err_msg=name)
  assert sorted(first["pruned_at"].tolist()) == [0, 0, 2]  # one configuration cut at the rung
  cut = int(np.argmax(first["pruned_at"]))
  assert np.all(np.isnan(first["history/val_loss"][cut, :, 2:]))  # no epochs after its rung


def test_a_streamed_sweep_on_two_processes_equals_one_process_with_the_same_devices(tmp_path):
  spec = dict(SPEC, stream=True, epochs=2)
  _check_ok(_run(spec, tmp_path / "two", 2, 2))
  _check_ok(_run(spec, tmp_path / "one", 1, 4))
  first, second = _results(tmp_path / "two", 2)
  (alone,) = _results(tmp_path / "one", 1)
  assert set(first) == set(alone)
  for name in alone:
    if name != "info":
      np.testing.assert_array_equal(first[name], second[name], err_msg=name)
      np.testing.assert_array_equal(first[name], alone[name], err_msg=name)
  assert np.all(np.isfinite(first["history/val_loss"]))


def test_only_process_0_logs(two_processes):
  from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

  out = two_processes[2]
  assert not (out / "logger_calls_1.json").exists()  # process 1's loggers were never called
  calls = json.loads((out / "logger_calls_0.json").read_text())
  epochs = SPEC["epochs"]
  assert sorted(c[1:] for c in calls if c[0] == "log") == [
    [model, step] for model in range(6) for step in range(1, epochs + 1)
  ]
  assert sorted(c[1] for c in calls if c[0] == "summarize") == list(range(6))
  runs = sorted(p for p in (out / "tb").iterdir() if p.is_dir())
  assert len(runs) == 6
  for run in runs:  # one event file each: process 0's
    assert len(list(run.iterdir())) == 1
    reader = EventAccumulator(str(run))
    reader.Reload()
    assert [e.step for e in reader.Scalars("val_loss")] == list(range(1, epochs + 1))


def _slurm_job_env():
  """A SLURM job step of 2 tasks on localhost, as srun would describe it to each task.

  JAX's cluster detection puts the coordinator at port ``61440 + job_id %
  4096`` of the first node: the job id is picked so that the port is free.
  """
  port = next(p for p in random.Random().sample(range(61440, 65536), 200) if _free(p))
  return dict(
    SLURM_JOB_ID=str(port - 61440),
    SLURM_STEP_NODELIST="localhost",
    SLURM_NTASKS="2",
    SLURM_PROCID="{process_id}",
    SLURM_LOCALID="{process_id}",
  )


def _free(port):
  with socket.socket() as s:
    try:
      s.bind(("127.0.0.1", port))
    except OSError:
      return False
  return True


@pytest.mark.parametrize("launch", ["explicit", "slurm"])
def test_command_line_on_two_processes_prints_and_writes_once(tmp_path, launch):
  out = tmp_path / "run"
  args = [
    "-m",
    "flood_jax",
    "sweep",
    "--dataset",
    "two_gaussians",
    "--levels",
    "0,0.3",
    "--seeds",
    "2",
    "--epochs",
    "3",
    "--batch-size",
    "20",
    "--hidden",
    "8",
    "--depth",
    "1",
    "--devices",
    "2",
    "--chunk-size",
    "1",
    "--no-progress",
    "--no-plots",
    "--no-compile-cache",
    "--out",
    str(out),
  ]
  env = dict(_env(), FLOOD_JAX_COORDINATOR="")  # the command line's options, not these
  if launch == "explicit":
    args += [
      "--coordinator",
      "{coordinator}",
      "--num-processes",
      "2",
      "--process-id",
      "{process_id}",
    ]
  else:  # JAX's cluster detection (jax.distributed.initialize() with no arguments)
    args += ["--distributed"]
    env.update(_slurm_job_env())
  runs = _launch.run_local_processes(args, 2, 2, timeout=TIMEOUT, env=env)
  _check_ok(runs)
  first, second = runs
  assert "; 4 cpu devices on 2 processes" in first.stdout
  assert first.stdout.count("best flood level") == 1 and "wrote to" in first.stdout
  # Process 1 prints nothing of its own (gloo's C++ logs its connections, "[Gloo] Rank 1 is
  # connected to 3 peer ranks. ...", a line its unbuffered writes sometimes split in two).
  gloo = re.compile(r"^\[Gloo\]|peer ranks|^\s*$")
  assert [line for line in second.stdout.splitlines() if not gloo.search(line)] == []
  assert (out / "results.json").exists() and (out / "history.csv").exists()
  assert not (out / "checkpoint").exists()
  with open(out / "results.json") as f:
    saved = json.load(f)
  assert saved["config"]["processes"] == 2 and saved["config"]["devices"] == 4


@pytest.mark.parametrize(
  "args, message",
  [
    (["--coordinator", "127.0.0.1:1234"], "--coordinator, --num-processes and --process-id go"),
    (["--coordinator", "h:1", "--num-processes", "2", "--process-id", "2"], "out of range"),
    (["--coordinator", "nohost"], "expected HOST:PORT"),
    (["--coordinator", "127.0.0.1:99999"], "the port must be 1 to 65535, got 99999"),
    (["--coordinator", "127.0.0.1:0"], "the port must be 1 to 65535, got 0"),
    (["--coordinator", "nohost.invalid:1234", "--num-processes", "2", "--process-id", "1"],
     "the coordinator's host 'nohost.invalid' (in nohost.invalid:1234) does not resolve"),
  ],
)  # fmt: skip
def test_command_line_host_options_are_checked(tmp_path, capsys, args, message):
  from flood_jax import cli

  code = cli.main(["sweep", *args, "--out", str(tmp_path / "run")])
  err = capsys.readouterr().err
  assert code == 2 and message in err and err.strip().splitlines()[-1].count("error") == 1, err


def test_a_coordinator_port_in_use_or_out_of_range_is_refused_before_jax_starts(tmp_path, capsys):
  from flood_jax import cli

  with socket.socket() as taken:
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    address = f"127.0.0.1:{taken.getsockname()[1]}"
    code = cli.main(
      ["sweep", "--coordinator", address, "--num-processes", "2", "--process-id", "0",
       "--out", str(tmp_path / "run")]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert f"process 0 cannot start the coordinator on port {address.split(':')[1]}" in err
    assert "pick a free port" in err
    with pytest.raises(ValueError, match="cannot start the coordinator"):
      _launch.initialize(address, 2, 0)
  with pytest.raises(ValueError, match="port must be 1 to 65535, got 99999"):
    _launch.initialize("127.0.0.1:99999", 2, 0)
  import jax

  assert jax.process_count() == 1  # nothing joined


def test_a_process_whose_peers_never_join_ends_with_one_line_not_an_abort(tmp_path):
  import subprocess
  import sys

  command = [
    sys.executable, "-m", "flood_jax", "sweep", "--dataset", "two_gaussians", "--no-progress",
    "--coordinator", f"127.0.0.1:{_launch.free_port()}", "--num-processes", "2",
    "--process-id", "0", "--join-timeout", "2", "--out", str(tmp_path / "run"),
  ]  # fmt: skip
  # Process 0 starts the coordinator; process 1 never comes. JAX's own timeout aborts in C++.
  done = subprocess.run(
    command, capture_output=True, text=True, timeout=TIMEOUT, env=dict(_env(), JAX_PLATFORMS="cpu")
  )
  lines = done.stderr.strip().splitlines()
  assert done.returncode == 2, done.stderr[-3000:]
  assert "Check failure" not in done.stderr and len(lines) == 2, done.stderr[-3000:]
  assert lines[0].endswith("waiting up to 2 s for them")
  assert lines[1].startswith("flood-jax: error: could not join the other processes at 127.0.0.1:")
  assert lines[1].endswith("wait longer with --join-timeout") and "within 2 s" in lines[1]
  assert not (tmp_path / "run" / "results.json").exists()
