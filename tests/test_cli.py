"""The ``flood-jax`` command line: a sweep end to end, errors, resume, devices."""

import contextlib
import csv
import io
import json
import os
import shlex
import subprocess
import sys

import numpy as np
import pytest

import flood_jax as fj
from flood_jax import cli
from flood_jax._result import METRICS
from flood_jax._sweep import driver

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EPOCHS = 4
TINY = [
  "sweep",
  "--dataset",
  "two_gaussians",
  "--label-noise",
  "0.1",
  "--levels",
  "0,0.3",
  "--seeds",
  "2",
  "--epochs",
  str(EPOCHS),
  "--batch-size",
  "20",
  "--hidden",
  "8",
  "--depth",
  "1",
  "--devices",
  "1",
  "--no-progress",
]


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
  """Runs in tmp_path and restores XLA_FLAGS, which ``main`` may set."""
  monkeypatch.setenv("XLA_FLAGS", os.environ.get("XLA_FLAGS", ""))
  monkeypatch.chdir(tmp_path)


def _run(args, capsys):
  code = cli.main(args)
  out, err = capsys.readouterr()
  return code, out, err


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  """One tiny sweep run to the end: its directory and printed output."""
  out_dir = tmp_path_factory.mktemp("finished") / "run"
  with pytest.MonkeyPatch.context() as patch:
    patch.setenv("XLA_FLAGS", os.environ.get("XLA_FLAGS", ""))
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
      code = cli.main([*TINY, "--out", str(out_dir)])
  assert code == 0, stderr.getvalue()
  return out_dir, stdout.getvalue()


def test_sweep_end_to_end(finished):
  out_dir, out = finished
  assert "test acc" in out and "best flood level" in out  # the table
  assert f"wrote to {out_dir}" in out
  assert not (out_dir / "checkpoint").exists()  # done: all is in results.json

  with open(out_dir / "results.json") as f:
    results = json.load(f)
  assert results["flood_levels"] == [0.0, pytest.approx(0.3)]
  assert results["seeds"] == [0, 1]
  assert results["best_flood_level"] in results["flood_levels"]
  options = results["config"]["cli"]
  assert set(options) == set(cli.sweep.CONFIG_KEYS)
  assert options["dataset"] == "two_gaussians" and options["epochs"] == EPOCHS
  assert options["label_noise"] == 0.1 and options["hidden"] == 8
  assert options["optimizer"] == "sgd" and options["lr"] == cli.DEFAULTS.sgd_lr
  assert results["config"]["command"].startswith("flood-jax sweep --dataset")
  for metric in METRICS:
    assert np.shape(results["history"][metric]) == (2, 2, EPOCHS)
    assert np.shape(results["final"][metric]) == (2, 2)
  assert len(results["table"]) == 2

  with open(out_dir / "history.csv", newline="") as f:
    rows = list(csv.reader(f))
  assert rows[0] == ["flood_level", "seed", "epoch", *METRICS]
  assert len(rows) - 1 == 2 * 2 * EPOCHS
  assert {(r[0], r[1]) for r in rows[1:]} == {("0", "0"), ("0", "1"), ("0.3", "0"), ("0.3", "1")}
  first = rows[1]
  assert float(first[3 + METRICS.index("test_accuracy")]) == pytest.approx(
    results["history"]["test_accuracy"][0][0][0]
  )

  for name in ("curves", "accuracy_vs_level", "flooded_fraction", "overview"):
    content = (out_dir / f"{name}.png").read_bytes()
    assert content[:8] == PNG_SIGNATURE and len(content) > 10_000
  assert (out_dir / "params.npz").exists()


def test_help_runs_as_a_module():
  proc = subprocess.run(
    [sys.executable, "-m", "flood_jax", "sweep", "--help"],
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert proc.returncode == 0, proc.stderr
  assert "--levels" in proc.stdout and "--resume" in proc.stdout
  assert f"default: {cli.DEFAULTS.dataset}" in proc.stdout


def test_reproduce_help_is_current_and_a_missing_protocol_names_the_usage_word(capsys):
  assert cli.main(["reproduce", "--help"]) == 0
  text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
  assert "PROTOCOL" in text and "8 min 56 s" in text and "32 min" not in text
  assert "START:STOP:COUNT" in text and "seeds 0..N-1" in text and "--data-dir" in text
  assert cli.main(["reproduce"]) == 2
  assert "required: PROTOCOL" in capsys.readouterr().err


def test_devices_flag_creates_cpu_devices_before_jax_starts(tmp_path):
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env["JAX_PLATFORMS"] = "cpu"
  args = [
    *TINY,
    "--seeds",
    "1",
    "--epochs",
    "1",
    "--devices",
    "2",
    "--no-plots",
    "--out",
    str(tmp_path / "d"),
  ]
  proc = subprocess.run(
    [sys.executable, "-m", "flood_jax", *args], capture_output=True, text=True, timeout=300, env=env
  )
  assert proc.returncode == 0, proc.stderr
  assert "; 2 cpu devices" in proc.stdout


@pytest.mark.parametrize(
  "args, message",
  [
    (["--dataset", "nope"], "unknown data set 'nope'; known: two_gaussians"),
    (["--model", "nope"], "unknown model 'nope'; known: mlp"),
    (["--levels", "0:0.2"], "malformed levels"),
    (["--levels", "a,b"], "malformed levels"),
    (["--levels=0,inf"], "must be finite numbers"),
    (["--seeds", "0"], "at least 1"),
    (["--batch-size", "1000"], "larger than the training set"),
    (["--optimizer", "rmsprop"], "invalid choice: 'rmsprop'"),
    (["--model", "resnet20"], "--depth applies to --model mlp only"),
    (["--optimizer", "adam", "--momentum", "0.9"], "--momentum applies to --optimizer sgd"),
    (["--resume"], "no checkpoint"),
    (["--epochs", "-3"], "expected a positive integer"),
    (["--lr", "0.1,-1"], "expected a number > 0, got -1"),
    (["--weight-decay", "0,0"], "values must be distinct"),
    (["--objective", "nope"], "invalid choice: 'nope'"),
    (["--augment"], "--augment (random crops and flips) applies to the image data sets"),
    (["--prune", "0"], "--prune needs MIN_EPOCHS >= 1 and FACTOR >= 2"),
    (["--prune", "2,x"], "malformed --prune"),
    (["--prune", "9"], "never prunes a sweep of 4 epochs"),
  ],
)
def test_bad_arguments_exit_2_with_one_line(args, message, tmp_path, capsys):
  code, _, err = _run([*TINY, "--out", str(tmp_path / "bad"), *args], capsys)
  assert code == 2
  assert err.count("\n") == 1 and message in err, err
  assert "Traceback" not in err
  assert not (tmp_path / "bad" / "checkpoint").exists()  # nothing left to trip over


def test_existing_results_or_checkpoint_are_not_overwritten(tmp_path, capsys):
  (tmp_path / "done").mkdir()
  (tmp_path / "done" / "results.json").write_text("{}")
  code, _, err = _run([*TINY, "--out", str(tmp_path / "done")], capsys)
  assert code == 2 and "already holds results" in err
  (tmp_path / "stopped" / "checkpoint").mkdir(parents=True)
  code, _, err = _run([*TINY, "--out", str(tmp_path / "stopped")], capsys)
  assert code == 2 and "pass --resume" in err and err.count("\n") == 1


class _InterruptingBar:
  """A progress bar whose ``update`` raises KeyboardInterrupt (Ctrl-C) on call ``n``."""

  def __init__(self, n):
    self.calls, self.n = 0, n

  def update(self, count):
    del count
    self.calls += 1
    if self.calls == self.n:
      raise KeyboardInterrupt

  def close(self):
    pass


def test_resume_after_ctrl_c_ends_as_an_uninterrupted_run(finished, tmp_path, capsys, monkeypatch):
  cut = tmp_path / "cut"
  with monkeypatch.context() as patch:
    patch.setattr(driver, "_progress_bar", lambda *a, **k: _InterruptingBar(2))
    code, _, err = _run([*TINY, "--no-plots", "--out", str(cut)], capsys)
    assert code == 130
    assert err.count("\n") == 1 and "Traceback" not in err
    assert (cut / "checkpoint").is_dir() and not (cut / "results.json").exists()
    command = shlex.split(err.split("to resume run: ")[1])
    assert command[:2] == ["flood-jax", "sweep"] and command[-1] == "--resume"

    # Options that differ from the interrupted sweep's are refused.
    code, _, err = _run([*command[1:], "--lr", "0.5"], capsys)
    assert code == 2 and "--lr 0.5 (was 0.1)" in err

    # --out alone resumes with the saved options; interrupted again one epoch on.
    code, _, err = _run(["sweep", "--out", str(cut), "--resume"], capsys)
    assert code == 130, err

  code, _out, err = _run(command[1:], capsys)  # the first printed command, as printed
  assert code == 0, err
  assert not list(cut.glob("*.png"))  # --no-plots
  whole = json.loads((finished[0] / "results.json").read_text())
  resumed = json.loads((cut / "results.json").read_text())
  assert resumed["history"] == whole["history"]
  assert resumed["best_flood_level"] == whole["best_flood_level"]
  assert not (cut / "checkpoint").exists()


def test_lr_list_adds_a_learning_rate_axis(tmp_path, capsys):
  out_dir = tmp_path / "lr"
  code, out, err = _run(
    [*TINY, "--seeds", "1", "--epochs", "2", "--lr", "0.05,0.1", "--out", str(out_dir)], capsys
  )
  assert code == 0, err
  assert "2 levels x 2 lr x 1 seeds = 4 models" in out and "learning_rate" in out
  results = json.loads((out_dir / "results.json").read_text())
  assert results["axes"] == ["flood_level", "learning_rate", "seed"]
  assert results["hyperparams"]["learning_rate"] == pytest.approx([0.05, 0.1])
  assert np.shape(results["history"]["val_accuracy"]) == (2, 2, 1, 2)
  assert results["config"]["cli"]["lr"] == [0.05, 0.1]
  with open(out_dir / "history.csv", newline="") as f:
    rows = list(csv.reader(f))
  assert rows[0][:4] == ["flood_level", "learning_rate", "seed", "epoch"]
  assert len(rows) - 1 == 2 * 2 * 1 * 2
  assert {(r[0], r[1]) for r in rows[1:]} == {
    ("0", "0.05"),
    ("0", "0.1"),
    ("0.3", "0.05"),
    ("0.3", "0.1"),
  }
  assert (out_dir / "overview.png").read_bytes()[:8] == PNG_SIGNATURE  # at the best lr


def test_objective_iflood(tmp_path, capsys):
  out_dir = tmp_path / "iflood"
  code, out, err = _run(
    [
      *TINY,
      "--seeds",
      "1",
      "--epochs",
      "1",
      "--objective",
      "iflood",
      "--no-plots",
      "--out",
      str(out_dir),
    ],
    capsys,
  )
  assert code == 0, err
  assert "momentum 0.9, iflood;" in out
  results = json.loads((out_dir / "results.json").read_text())
  assert results["config"]["cli"]["objective"] == "iflood"


def test_every_model_diverged_still_writes_results(tmp_path, capsys):
  out_dir = tmp_path / "nan"
  code, out, err = _run(
    [*TINY, "--seeds", "1", "--epochs", "1", "--lr", "1e7", "--out", str(out_dir)], capsys
  )
  assert code == 0, err
  assert "every configuration diverged" in out
  assert (out_dir / "results.json").exists() and not list(out_dir.glob("*.png"))


def test_augment_on_images(tmp_path, capsys, monkeypatch):
  """--augment crops and flips image batches (a tiny stand-in for MNIST, offline)."""
  import flood_jax as fj
  from flood_jax import data as data_lib

  rng = np.random.default_rng(0)
  images = lambda n: rng.normal(size=(n, 8, 8, 1)).astype(np.float32)
  labels = lambda n: rng.integers(0, 2, size=n).astype(np.int32)
  tiny = fj.Dataset(
    x_train=images(16),
    y_train=labels(16),
    x_val=images(8),
    y_val=labels(8),
    x_test=images(8),
    y_test=labels(8),
    num_classes=2,
    name="mnist",
  )
  monkeypatch.setattr(data_lib, "load", lambda name, **options: tiny)
  code, out, err = _run(
    [
      "sweep",
      "--dataset",
      "mnist",
      "--hidden",
      "4",
      "--depth",
      "1",
      "--augment",
      "--levels",
      "0,0.1",
      "--seeds",
      "1",
      "--epochs",
      "1",
      "--batch-size",
      "8",
      "--devices",
      "1",
      "--no-progress",
      "--no-plots",
      "--out",
      str(tmp_path / "aug"),
    ],
    capsys,
  )
  assert code == 0, err
  assert "random crops and flips" in out
  # Random labels: nothing to learn, and the command line says so in one line.
  assert "flood-jax: warning: every model of the sweep ends at chance" in err


def test_parse_levels_and_seeds():
  levels = cli.parse_levels("0:0.2:21")
  assert len(levels) == 21 and levels[0] == 0.0 and levels[-1] == 0.2
  assert levels[3] == 0.03  # rounded, not 0.030000000000000002
  assert cli.parse_levels("0,0.02,0.05") == [0.0, 0.02, 0.05]
  assert cli.parse_levels("0.1:0.1:1") == [0.1]
  assert cli.parse_seeds("3") == [0, 1, 2]
  assert cli.parse_seeds("7,") == [7]


def test_a_repeated_sweep_reads_its_programs_from_the_compile_cache(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  cache = tmp_path / "xla"
  histories = []
  for run in ("a", "b"):
    args = [*TINY, "--out", str(tmp_path / run), "--compile-cache", str(cache), "--eval-every", "2"]
    done = subprocess.run(
      [sys.executable, "-m", "flood_jax", *args],
      capture_output=True,
      text=True,
      timeout=300,
      env=env,
    )
    assert done.returncode == 0, done.stderr
    if run == "a":
      entries = sorted(p.name for p in cache.iterdir())
      assert entries  # the sweep's programs were written
    with open(tmp_path / run / "results.json") as f:
      raw = json.load(f)
    assert raw["epochs"] == [2, 4] and raw["config"]["eval_every"] == 2
    histories.append(raw["history"])
  # Nothing new compiled the second time, and the programs read back compute the same.
  assert sorted(p.name for p in cache.iterdir()) == entries
  assert histories[0] == histories[1]


def test_prune_stops_configurations_and_marks_them(tmp_path, capsys):
  out_dir = tmp_path / "pruned"
  code, out, err = _run(
    [*TINY, "--levels", "0,0.2,0.4,0.6", "--prune", "2,2", "--out", str(out_dir)], capsys
  )
  assert code == 0, err
  results = json.loads((out_dir / "results.json").read_text())
  pruned_at = np.asarray(results["pruned_at"])
  assert sorted(pruned_at.tolist()) == [0, 0, 2, 2]  # 4 configurations, half kept at epoch 2
  assert results["config"]["prune"] == {"min_epochs": 2, "factor": 2}
  assert pruned_at[results["flood_levels"].index(results["best_flood_level"])] == 0
  table = out.split("best flood level")[0]
  assert "pruned" in table and table.count("epoch 2") == 2


# --data-dir: the image sets from their original files, and the Hub offline.


def test_sweep_reads_original_files_from_data_dir(tmp_path, capsys):
  import original_files  # tests/original_files.py

  data_dir = original_files.write_mnist(str(tmp_path / "mnist"), 50, 20, gz=False)
  out = tmp_path / "sweep"
  args = ["sweep", "--dataset", "mnist", "--data-dir", data_dir, "--levels", "0,0.1"]
  args += ["--seeds", "1", "--epochs", "1", "--batch-size", "20", "--hidden", "8", "--depth", "1"]
  code, printed, err = _run(
    [*args, "--devices", "1", "--no-progress", "--no-plots", "--out", str(out)], capsys
  )
  assert code == 0, err
  assert "mnist (40 train, 10 val, 20 test)" in printed  # the paper's 80:20 split
  config = json.loads((out / "results.json").read_text())["config"]["cli"]
  assert config["data_dir"] == data_dir


def test_data_dir_with_a_built_in_set_is_one_line(tmp_path, capsys):
  code, _, err = _run([*TINY, "--data-dir", str(tmp_path), "--out", str(tmp_path / "x")], capsys)
  assert code == 2 and err.count("\n") == 1
  assert "--data-dir (the original files) applies to the image data sets" in err


def test_a_hub_set_without_network_fails_fast_naming_data_dir(tmp_path, capsys, monkeypatch):
  """No network: exit 2 and one line naming --data-dir, not retries and a traceback."""
  pytest.importorskip("datasets")
  import huggingface_hub

  def unreachable(self, repo_id, **kwargs):
    raise OSError("[Errno -2] Name or service not known")

  monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
  monkeypatch.setattr(huggingface_hub.HfApi, "dataset_info", unreachable)
  for command in (
    ["sweep", "--dataset", "mnist", "--epochs", "1", "--out", str(tmp_path / "s")],
    ["reproduce", "benchmark", "--dataset", "mnist", "--out", str(tmp_path / "r")],
  ):
    code, _, err = _run(command, capsys)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "cannot reach the Hugging Face Hub" in err and "--data-dir DIR" in err


def test_hub_offline_mode_exits_2_in_seconds(tmp_path):
  """HF_HUB_OFFLINE=1 with no cached copy: the real path, in a fresh process."""
  pytest.importorskip("datasets")
  env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
  proc = subprocess.run(
    [
      sys.executable,
      "-m",
      "flood_jax",
      "sweep",
      "--dataset",
      "mnist",
      "--out",
      str(tmp_path / "o"),
    ],
    capture_output=True,
    text=True,
    env=env,
    timeout=120,
  )
  assert proc.returncode == 2, proc.stderr
  assert proc.stderr.count("\n") == 1 and "--data-dir DIR" in proc.stderr


def test_diabetes_sweeps_a_regression_with_the_mlp_at_negative_levels(tmp_path, capsys):
  out_dir = tmp_path / "diabetes"
  args = ["sweep", "--dataset", "diabetes", "--levels=-0.1,0,0.3", "--seeds", "2"]
  args += ["--epochs", "2", "--batch-size", "64", "--hidden", "8", "--depth", "1"]
  code, out, err = _run([*args, "--devices", "1", "--no-progress", "--out", str(out_dir)], capsys)
  assert code == 0, err
  lines = err.strip().splitlines()  # one line each: b = -0.1, and 2 epochs beat no constant
  assert "never flood" in lines[0] and all(
    line.startswith("flood-jax: warning: ") for line in lines
  )
  assert "best flood level (final val loss" in out and "val mae" not in out
  assert "test mae" in out and "test acc" not in out
  results = json.loads((out_dir / "results.json").read_text())
  assert results["selection"] == {"key": "val_loss", "mode": "min"}
  assert results["config"]["task"] == "Regression()"
  assert {"val_mse", "val_mae", "test_mse", "test_mae"} <= set(results["history"])
  assert fj.SweepResult.load(out_dir).best() == results["best"]


@pytest.mark.parametrize(
  "extra, message",
  [
    (["--model", "cnn"], "diabetes is a regression set, swept with --model mlp"),
    (["--label-noise", "0.1"], "--label-noise applies to the classification sets"),
  ],
)
def test_diabetes_with_a_classifier_option_is_one_line(extra, message, tmp_path, capsys):
  code, _, err = _run(["sweep", "--dataset", "diabetes", *extra, "--out", str(tmp_path)], capsys)
  assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_an_out_with_files_of_the_users_is_never_written_into(tmp_path, capsys):
  mine = tmp_path / "mine"
  mine.mkdir()
  (mine / "history.csv").write_text("my own\n")
  (mine / "params.npz").write_bytes(b"my weights")
  code, _, err = _run([*TINY, "--out", str(mine)], capsys)
  assert code == 2 and err.count("\n") == 1, err
  assert f"--out {mine} already holds files that flood-jax sweep did not write" in err
  assert "choose another --out, or empty it" in err
  assert sorted(p.name for p in mine.iterdir()) == ["history.csv", "params.npz"]
  assert (mine / "history.csv").read_text() == "my own\n"
  # Another command's output is not this one's either.
  other = tmp_path / "other"
  other.mkdir()
  (other / ".flood-jax").write_text('{"command": "flood-jax reproduce synthetic"}')
  code, _, err = _run([*TINY, "--out", str(other)], capsys)
  assert code == 2 and "holds the output of flood-jax reproduce synthetic" in err


def test_a_file_where_a_directory_is_meant_is_one_line(tmp_path, capsys):
  note = tmp_path / "note.txt"
  note.write_text("mine")
  for args, name in [
    (["--out", str(note)], "--out"),
    (["--out", str(note / "run")], "--out"),
    (["--out", str(tmp_path / "o"), "--log", "tensorboard", "--log-dir", str(note)], "--log-dir"),
  ]:
    code, _, err = _run([*TINY, *args], capsys)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert f"{name} {note}" in err and "is a file, not a directory" in err
  assert note.read_text() == "mine" and not (tmp_path / "o").exists()


@pytest.mark.parametrize(
  "content, what",
  [("{", "Expecting"), ("[1]", "no options object"), ('{"confi": {}}', "no options object")],
)
def test_a_damaged_command_json_is_one_line_naming_it(content, what, tmp_path, capsys):
  checkpoint = tmp_path / "cut" / "checkpoint"
  checkpoint.mkdir(parents=True)
  (checkpoint / "command.json").write_text(content)
  code, _, err = _run(["sweep", "--out", str(tmp_path / "cut"), "--resume"], capsys)
  assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
  assert f"{checkpoint / 'command.json'} is damaged ({what}" in err
  assert f"delete {checkpoint} and run the sweep again without --resume" in err


def test_a_damaged_loggers_json_is_one_line_naming_it(finished, tmp_path, capsys):
  checkpoint = tmp_path / "cut" / "checkpoint"
  checkpoint.mkdir(parents=True)
  config = json.loads((finished[0] / "results.json").read_text())["config"]["cli"]
  (checkpoint / "command.json").write_text(json.dumps({"config": config}))
  for content in ("{", '{"logged": 3}'):
    (checkpoint / "loggers.json").write_text(content)
    code, _, err = _run(["sweep", "--out", str(tmp_path / "cut"), "--resume"], capsys)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert f"{checkpoint / 'loggers.json'} is damaged (" in err and "delete it to resume" in err
  assert (checkpoint / "command.json").exists()  # nothing of the checkpoint removed


def test_a_full_disk_while_plotting_loses_nothing(tmp_path, capsys, monkeypatch):
  import errno

  from matplotlib.figure import Figure

  out_dir = tmp_path / "full"
  out_dir.mkdir()  # an empty directory may be written into

  def full(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

  with monkeypatch.context() as patch:
    patch.setattr(Figure, "savefig", full)
    code, _, err = _run([*TINY, "--seeds", "1", "--epochs", "1", "--out", str(out_dir)], capsys)
  assert code == 1 and err.count("\n") == 1 and "Traceback" not in err, err
  assert f"could not write curves.png to {out_dir}: No space left on device" in err
  assert "(results.json, params.npz, history.csv written); nothing else is lost" in err
  assert (out_dir / "checkpoint").is_dir() and not list(out_dir.glob("*.png*"))
  # Space freed: the printed command writes the rest from the checkpoint.
  code, _, err = _run(shlex.split(err.split("then run: ")[1])[1:], capsys)
  assert code == 0, err
  assert (out_dir / "curves.png").read_bytes()[:8] == PNG_SIGNATURE
  assert not (out_dir / "checkpoint").exists()


def test_stream_runs_the_job_through_fj_stream_and_resumes_with_it(tmp_path, capsys):
  out_dir = tmp_path / "streamed"
  code, out, err = _run([*TINY, "--stream", "--out", str(out_dir)], capsys)
  assert code == 0, err
  assert "best flood level" in out
  with open(out_dir / "results.json") as f:
    config = json.load(f)["config"]
  assert config["data"].startswith("Stream('two_gaussians")  # the sweep read a stream
  code, out, err = _run([*TINY, "--out", str(tmp_path / "plan"), "--stream", "--dry-run"], capsys)
  assert code == 0, err
  assert "a stream's blocks of batches in flight" in out and "dry run" in out
