"""Experiment trackers (``fj.sweep(..., loggers=[...])``), read back with each tracker's reader.

What a user relies on: one tracker run per model (configuration x seed),
named for it, with its configuration as parameters; the logged values equal
``result.history`` at the evaluated epochs; each run's summary (final and
early-stopping values, chosen, pruned, diverged); a resumed sweep goes on in
the same runs with no step logged twice; a failing logger warns once and the
sweep goes on; the command line's ``--log``. Nothing touches a network:
W&B runs offline, MLflow writes a sqlite store under the test's directory.
"""

import glob
import json
import os
import struct
import warnings

import flax.linen as nn
import jax
import numpy as np
import optax
import pytest
from helpers import _Interrupt  # a progress bar that presses Ctrl-C

import flood_jax as fj
from flood_jax import _sweep
from flood_jax._sweep import tracking
from flood_jax._sweep.driver import AtChanceWarning

LEVELS = [0.0, 0.3]
LRS = [0.05, 0.1]
SEEDS = [0, 1]
EPOCHS = 6
KW = dict(
  flood_levels=LEVELS,
  seeds=SEEDS,
  optimizer=optax.inject_hyperparams(optax.sgd)(learning_rate=0.1),
  hyperparams={"learning_rate": LRS},
  epochs=EPOCHS,
  batch_size=20,
  eval_every=2,
  chunk_size=2,
  progress=False,
)
NUM_MODELS = len(LEVELS) * len(LRS) * len(SEEDS)


class Net(nn.Module):
  @nn.compact
  def __call__(self, x, train: bool):
    return nn.Dense(2)(nn.relu(nn.Dense(16)(x)))


@pytest.fixture(scope="module")
def data():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(200, 2)).astype(np.float32)
  y = (np.sin(2 * x[:, 0]) > x[:, 1]).astype(np.int32)
  y = np.where(rng.random(200) < 0.1, 1 - y, y)
  return fj.Dataset(
    x_train=x[:100], y_train=y[:100], x_val=x[100:150], y_val=y[100:150], x_test=x[150:],
    y_test=y[150:], name="toy",
  )  # fmt: skip


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
  monkeypatch.setenv("WANDB_SILENT", "true")
  monkeypatch.setenv("WANDB_MODE", "offline")
  monkeypatch.setenv("WANDB_DISABLE_GIT", "true")
  monkeypatch.delenv("WANDB_API_KEY", raising=False)
  monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.fixture(scope="module")
def mlflow_uri(tmp_path_factory):
  """One sqlite store for the module (creating its tables takes seconds); experiments per test."""
  return "sqlite:///" + str(tmp_path_factory.mktemp("mlflow") / "mlflow.db")


def _loggers(root, mlflow_uri, experiment):
  return [
    fj.loggers.TensorBoard(root / "tb"),
    fj.loggers.MLflow(tracking_uri=mlflow_uri, experiment=experiment),
    fj.loggers.WandB("flood_jax_tests", mode="offline", dir=root / "wandb"),
  ]


@pytest.fixture(scope="module")
def logged(data, mlflow_uri, tmp_path_factory):
  root = tmp_path_factory.mktemp("logged")
  with pytest.MonkeyPatch.context() as patch:
    patch.setenv("WANDB_SILENT", "true")
    patch.setenv("WANDB_MODE", "offline")
    patch.setenv("WANDB_DISABLE_GIT", "true")
    result = fj.sweep(Net(), data, loggers=_loggers(root, mlflow_uri, "logged"), **KW)
  return root, result


def _expected(result):
  """Per run name: (config, {metric: {step: value}}), from the result alone."""
  out = {}
  for run in tracking.runs_of(_grid(result), result.level_name):
    index = result.index(**run.config)
    curves = {
      m: dict(zip(result.epochs.tolist(), v[index].tolist(), strict=True))
      for m, v in result.history.items()
    }
    out[run.name] = (run.config, curves)
  return out


def _grid(result):
  return _sweep.grid.Grid.build(result.flood_levels, result.hyperparams, result.seeds)


def _chosen(result, config):
  """Whether ``config`` (with its seed) is the configuration ``result.best()`` chose."""
  level_and_hparams = {k: v for k, v in config.items() if k != "seed"}
  return result.index(**level_and_hparams) == result.index(**result.best())


def _same(a, b):
  return np.array_equal(np.float32(a), np.float32(b), equal_nan=True)


# --- TensorBoard: its own event reader ---------------------------------------------------------


def _tensorboard_runs(logdir):
  from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

  runs = {}
  for path in sorted(glob.glob(os.path.join(logdir, "*", ""))):
    reader = EventAccumulator(path, size_guidance={"scalars": 0, "tensors": 0})
    reader.Reload()
    runs[os.path.basename(os.path.dirname(path))] = reader
  return runs


def test_tensorboard_one_run_per_model_with_the_history(logged):
  from tensorboard.plugins.hparams import plugin_data_pb2

  root, result = logged
  runs = _tensorboard_runs(root / "tb")
  expected = _expected(result)
  assert sorted(runs) == sorted(expected) and len(runs) == NUM_MODELS
  for name, reader in runs.items():
    config, curves = expected[name]
    for metric, values in curves.items():
      events = reader.Scalars(metric)
      assert [e.step for e in events] == result.epochs.tolist()
      assert all(_same(e.value, values[e.step]) for e in events), (name, metric)
    summary = {t: reader.Scalars(t)[-1].value for t in reader.Tags()["scalars"] if "summary/" in t}
    assert _same(summary["summary/final/val_loss"], curves["val_loss"][EPOCHS])
    # The configuration, in the HParams plugin.
    content = reader.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    assert {k: v.number_value for k, v in hparams.items()} == pytest.approx(config)


# --- MLflow: its client on the sqlite store ----------------------------------------------------


def _mlflow_runs(uri, experiment):
  from mlflow.tracking import MlflowClient

  client = MlflowClient(tracking_uri=uri)
  found = client.get_experiment_by_name(experiment)
  runs = client.search_runs([found.experiment_id], max_results=1000)
  parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
  children = {r.info.run_name: r for r in runs if "mlflow.parentRunId" in r.data.tags}
  return client, parents, children


def test_mlflow_one_nested_run_per_model_with_params_metrics_summary(logged, mlflow_uri):
  _, result = logged
  client, parents, children = _mlflow_runs(mlflow_uri, "logged")
  expected = _expected(result)
  assert len(parents) == 1 and sorted(children) == sorted(expected)
  (parent,) = parents
  assert parent.info.status == "FINISHED" and json.loads(parent.data.params["epochs"]) == EPOCHS
  chosen = {name for name, r in children.items() if r.data.tags["chosen"] == "true"}
  assert chosen == {n for n, (c, _) in expected.items() if _chosen(result, c)}
  assert 0 < len(chosen) == len(SEEDS)
  for name, run in children.items():
    config, curves = expected[name]
    assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert run.info.status == "FINISHED"
    assert {k: float(v) for k, v in run.data.params.items()} == pytest.approx(config)
    assert run.data.params["seed"] == str(config["seed"])
    for metric, values in curves.items():
      points = client.get_metric_history(run.info.run_id, metric)
      assert sorted(p.step for p in points) == result.epochs.tolist()
      assert all(_same(p.value, values[p.step]) for p in points), (name, metric)
    stop = result.stopping_epoch("best_val")[result.index(**config)]
    assert run.data.metrics["early_stopping/epoch"] == result.epochs[stop]
    assert _same(
      run.data.metrics["early_stopping/val_accuracy"], curves["val_accuracy"][result.epochs[stop]]
    )
    assert run.data.tags["pruned"] == "false" and run.data.tags["diverged"] == "false"


# --- W&B: its offline run files ----------------------------------------------------------------


def _wandb_records(path):
  """The records of a ``.wandb`` file (W&B's LevelDB-log format), as W&B's own protobufs."""
  from wandb.proto import wandb_internal_pb2

  with open(path, "rb") as f:
    data = f.read()
  assert data[:4] == b":W&B"
  pos, block, chunks, partial = 7, 32768, [], b""
  while pos + 7 <= len(data):
    left = block - pos % block
    if left < 7:  # a block's trailer: zero padding
      pos += left
      continue
    _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
    chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
    if kind == 0:  # the zero-filled rest of a block
      pos += left - 7 - length
    elif kind == 1:
      chunks.append(chunk)
    elif kind == 2:
      partial = chunk
    elif kind == 3:
      partial += chunk
    elif kind == 4:
      chunks.append(partial + chunk)
  return [wandb_internal_pb2.Record.FromString(c) for c in chunks]


def _wandb_runs(directory):
  """Per run id: name, group, config, ``{step: {key: value}}`` (every history record, so
  a repeated step shows) and the summary, over all the run's offline directories."""
  runs = {}
  for path in sorted(glob.glob(os.path.join(directory, "wandb", "offline-run-*", "*.wandb"))):
    records = _wandb_records(path)
    (start,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    run = runs.setdefault(start.run_id, {"steps": [], "summary": {}})
    run.update(
      name=start.display_name,
      group=start.run_group,
      config={u.key: json.loads(u.value_json) for u in start.config.update if u.key != "_wandb"},
    )
    for r in records:
      kind = r.WhichOneof("record_type")
      if kind == "history":
        items = {
          (i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in r.history.item
        }
        run["steps"].append((r.history.step.num, items))
      elif kind == "summary":
        for u in r.summary.update:
          run["summary"][u.key or "/".join(u.nested_key)] = json.loads(u.value_json)
  return runs


def test_wandb_offline_one_run_per_model_grouped_by_the_sweep(logged):
  root, result = logged
  runs = _wandb_runs(root / "wandb")
  expected = _expected(result)
  assert sorted(r["name"] for r in runs.values()) == sorted(expected)
  assert len({r["group"] for r in runs.values()}) == 1
  for run in runs.values():
    config, curves = expected[run["name"]]
    assert run["config"] == pytest.approx(config)
    assert [step for step, _ in run["steps"]] == result.epochs.tolist()
    for step, items in run["steps"]:
      for metric, values in curves.items():
        assert _same(items[metric], values[step]), (run["name"], metric, step)
    assert _same(run["summary"]["final/test_accuracy"], curves["test_accuracy"][EPOCHS])
    assert run["summary"]["chosen"] == _chosen(result, config)


# --- resume, failures, pruning, the command line -----------------------------------------------


def test_resumed_sweep_continues_the_same_runs_without_repeating_steps(
  data, tmp_path, mlflow_uri, monkeypatch
):
  one_device = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("models",))
  ckpt = tmp_path / "ckpt"
  run = lambda: fj.sweep(
    Net(), data, loggers=_loggers(tmp_path, mlflow_uri, "resumed"), checkpoint_dir=ckpt,
    mesh=one_device, **KW,
  )  # fmt: skip
  # 8 models, 2 per call, one epoch per call: the interruption comes in the
  # second call, after its step 2 was logged but before it was checkpointed
  # (no mid-call saves), so the resumed sweep trains it again.
  monkeypatch.setattr(_sweep.checkpoint, "EVERY_S", 1e9)  # finished calls only
  with monkeypatch.context() as patch:
    patch.setattr(_sweep.driver, "_progress_bar", lambda *args: _Interrupt(after=EPOCHS + 3))
    with pytest.raises(KeyboardInterrupt):
      run()
  assert (ckpt / "done_00_00000").is_dir() and not (ckpt / "current").exists()
  state = json.loads((ckpt / tracking.STATE_FILE).read_text())
  assert state["logged"][:4] == [EPOCHS, EPOCHS, 2, 2] and state["logged"][4:] == [0] * 4
  result = run()

  expected = _expected(result)
  for name, reader in _tensorboard_runs(tmp_path / "tb").items():
    events = reader.Scalars("val_loss")
    assert [e.step for e in events] == result.epochs.tolist(), name
    assert all(_same(e.value, expected[name][1]["val_loss"][e.step]) for e in events)
  client, parents, children = _mlflow_runs(mlflow_uri, "resumed")
  assert len(parents) == 1 and sorted(children) == sorted(expected)  # the same runs, resumed
  for name, r in children.items():
    points = client.get_metric_history(r.info.run_id, "val_loss")
    assert sorted(p.step for p in points) == result.epochs.tolist(), name
    assert all(_same(p.value, expected[name][1]["val_loss"][p.step]) for p in points)
    assert r.info.status == "FINISHED"
  runs = _wandb_runs(tmp_path / "wandb")
  assert sorted(r["name"] for r in runs.values()) == sorted(expected)  # one id per model
  for r in runs.values():
    steps = [step for step, _ in r["steps"]]
    assert steps == result.epochs.tolist(), r["name"]
    assert all(_same(v["val_loss"], expected[r["name"]][1]["val_loss"][s]) for s, v in r["steps"])


class _Recorder(fj.loggers.Logger):
  def __init__(self, fail_at=None):
    self.steps, self.summaries, self.fail_at, self.closed = {}, {}, fail_at, False

  def log(self, run, step, metrics):
    if step == self.fail_at:
      raise OSError("No space left on device")
    self.steps.setdefault(run.index, []).append((step, metrics))

  def summarize(self, run, summary):
    self.summaries[run.index] = summary

  def close(self):
    self.closed = True


def test_a_failing_logger_warns_once_and_the_sweep_goes_on(data):
  failing, working = _Recorder(fail_at=4), _Recorder()
  with pytest.warns(RuntimeWarning, match="failed in log.*No space left") as caught:
    result = fj.sweep(Net(), data, loggers=[failing, working], **KW)
  assert len([w for w in caught if issubclass(w.category, RuntimeWarning)]) == 1
  assert {s for steps in failing.steps.values() for s, _ in steps} == {2}
  assert not failing.summaries and not failing.closed  # left out from then on
  assert len(working.steps) == NUM_MODELS and len(working.summaries) == NUM_MODELS
  flat = {m: np.moveaxis(v, -2, 0).reshape(NUM_MODELS, -1) for m, v in result.history.items()}
  for index, steps in working.steps.items():
    assert [s for s, _ in steps] == result.epochs.tolist()
    for k, (_, metrics) in enumerate(steps):
      assert all(_same(metrics[m], flat[m][index, k]) for m in flat)
  assert working.closed


def test_a_tracker_that_cannot_be_reached_warns_at_start_and_the_sweep_goes_on(data, monkeypatch):
  from flood_jax import _launch

  nobody = f"http://127.0.0.1:{_launch.free_port()}"  # nothing listens there
  monkeypatch.setenv("WANDB_BASE_URL", nobody)
  monkeypatch.setenv("WANDB_MODE", "online")
  working = _Recorder()
  trackers = [fj.loggers.MLflow(tracking_uri=nobody), fj.loggers.WandB("p"), working]
  # MLflow's own retries waited minutes before this warning; the connection is refused at once.
  with pytest.warns(RuntimeWarning, match="failed in start") as caught:
    result = fj.sweep(Net(), data, loggers=trackers, **KW)
  messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
  assert len(messages) == 2
  for message, tracker in zip(sorted(messages), ["MLflow", "W&B"], strict=True):
    assert f"the {tracker} " in message and f"server at {nobody} cannot be reached" in message
    assert "\n" not in message
  assert len(working.summaries) == NUM_MODELS and result.history["val_loss"].shape[-1] == 3


def test_pruned_sweep_logs_until_each_rung_and_says_so(data):
  recorder = _Recorder()
  kw = dict(KW, flood_levels=[0.0, 0.1, 0.2, 0.3], hyperparams=None, seeds=[0])
  kw["optimizer"] = optax.sgd(0.1)
  result = fj.sweep(Net(), data, prune=fj.Halving(min_epochs=2, factor=2), loggers=[recorder], **kw)
  assert len(recorder.steps) == 4
  for index, steps in recorder.steps.items():
    pruned_at = int(result.pruned_at[index])
    last = pruned_at or EPOCHS
    assert [s for s, _ in steps] == [e for e in result.epochs.tolist() if e <= last]
    summary = recorder.summaries[index]
    assert summary["pruned"] == (pruned_at > 0) and summary["pruned_at"] == pruned_at
    assert not summary["diverged"]


def test_loggers_are_checked_and_a_missing_extra_names_it(data, monkeypatch):
  with pytest.raises(TypeError, match="loggers must be a list"):
    fj.sweep(Net(), data, loggers=_Recorder(), **KW)
  with pytest.raises(TypeError, match=r"log\(run, step, metrics\)"):
    fj.sweep(Net(), data, loggers=["tensorboard"], **KW)
  monkeypatch.setattr(fj.loggers.importlib.util, "find_spec", lambda name: None)
  for make in [
    lambda: fj.loggers.TensorBoard("tb"),
    lambda: fj.loggers.MLflow(),
    lambda: fj.loggers.WandB("p"),
  ]:
    with pytest.raises(ImportError, match=r'pip install "flood_jax\[tracking\]"') as err:
      make()
    assert "\n" not in str(err.value)


CLI_ARGS = [
  "sweep", "--dataset", "two_gaussians", "--levels", "0,0.3", "--seeds", "2", "--epochs", "4",
  "--batch-size", "20", "--hidden", "8", "--depth", "1", "--devices", "1", "--eval-every", "2",
  "--no-progress", "--no-plots", "--no-compile-cache",
]  # fmt: skip


def test_command_line_logs_to_the_three_trackers_under_out(
  tmp_path, mlflow_uri, monkeypatch, capsys
):
  from flood_jax import cli

  monkeypatch.setenv("XLA_FLAGS", os.environ.get("XLA_FLAGS", ""))
  monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)  # the tracker's own setting wins
  monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "cli")
  out = tmp_path / "run"
  logs = ["--log", "tensorboard", "--log", "mlflow", "--log", "wandb"]
  code = cli.main([*CLI_ARGS, *logs, "--out", str(out)])
  assert code == 0, capsys.readouterr().err
  results = json.loads((out / "results.json").read_text())
  val_loss = np.asarray(results["history"]["val_loss"], np.float32)  # (levels, seeds, evals)
  runs = _tensorboard_runs(out / "tensorboard")
  assert len(runs) == 4
  for level, seed in np.ndindex(2, 2):
    name = f"flood_level={[0, 0.3][level]:g},seed={seed}"
    assert [e.value for e in runs[name].Scalars("val_loss")] == val_loss[level, seed].tolist()
  assert len(_wandb_runs(out)) == 4
  _, parents, children = _mlflow_runs(mlflow_uri, "cli")
  assert len(parents) == 1 and len(children) == 4
  assert not (out / "mlflow.db").exists()

  # Without the extra: one line naming it, nothing trained.
  capsys.readouterr()  # drop the first run's output (MLflow logs creating a new store)
  monkeypatch.setattr(fj.loggers.importlib.util, "find_spec", lambda name: None)
  code = cli.main([*CLI_ARGS, "--log", "wandb", "--out", str(tmp_path / "none")])
  err = capsys.readouterr().err
  assert code == 2 and 'pip install "flood_jax[tracking]"' in err and err.count("\n") == 1


def test_reproduce_logs_each_sweep_in_a_directory_of_its_own(tmp_path, monkeypatch, capsys):
  from flood_jax import cli

  monkeypatch.setenv("XLA_FLAGS", os.environ.get("XLA_FLAGS", ""))
  out = tmp_path / "rp"
  args = [
    "reproduce", "synthetic", "--dataset", "sinusoid", "--noise", "0.05", "--optimizers",
    "sgd,adam", "--levels", "0,0.2", "--seeds", "1", "--epochs", "2", "--n-test", "50",
    "--hidden", "8", "--depth", "1", "--no-progress", "--no-compile-cache", "--out", str(out),
  ]  # fmt: skip
  with warnings.catch_warnings():  # 2 epochs of a width-8 model: at chance, and it says so
    warnings.simplefilter("ignore", AtChanceWarning)
    code = cli.main([*args, "--log", "tensorboard", "--log-dir", str(tmp_path / "logs")])
  assert code == 0, capsys.readouterr().err
  raw = json.loads((out / "reproduce.json").read_text())
  for optimizer in ("sgd", "adam"):
    runs = _tensorboard_runs(tmp_path / "logs" / "tensorboard" / f"sinusoid_noise0.05_{optimizer}")
    assert sorted(runs) == ["flood_level=0,seed=0", "flood_level=0.2,seed=0"]
    assert all([e.step for e in r.Scalars("val_loss")] == [2] for r in runs.values())
  assert raw["config"]["flood_levels"] == [0.0, 0.2]
