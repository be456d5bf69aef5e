"""Experiment trackers for sweeps: one tracker run per trained model.

A sweep trains many models at once; a tracker (TensorBoard, MLflow, Weights &
Biases) expects one *run* per model. ``fj.sweep(..., loggers=[...])`` gives
every model (a configuration and a seed) a run of its own, named for its
configuration, with the configuration as its parameters:

>>> import flood_jax as fj
>>> logger = fj.loggers.TensorBoard("runs/tb")  # doctest: +SKIP
>>> result = fj.sweep(model, data, ..., loggers=[logger])  # doctest: +SKIP

The curves are the history's metrics (``train_loss``, ``val_loss``,
``val_accuracy``, ``test_loss``, ``test_accuracy``, ``flooded_fraction``),
logged at the step of the epoch that was evaluated (counted from 1). They
stream while the sweep runs: after each compiled call the driver hands the
loggers what the call returned, which it holds on the host anyway (no extra
device synchronisation, nothing inside the compiled program). At the end each
run gets its summary (:func:`run_summaries`): the final and the early-stopping
values, whether its configuration is the one chosen, whether it was pruned or
diverged.

A logger that raises warns once and is dropped; the sweep goes on. Under
several processes only process 0 logs. With ``checkpoint_dir``, the loggers'
run ids are kept in ``checkpoint_dir/loggers.json``, so a resumed sweep goes
on in the same runs, from the step after the last one logged (no step is
logged twice).

The three trackers are an optional extra: ``pip install "flood_jax[tracking]"``.
Anything else implements :class:`Logger`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import os
import secrets
import socket
import time
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

EXTRA = 'pip install "flood_jax[tracking]"'
# How long a tracker's server may take to accept a connection when a logger starts: one
# that cannot be reached is found out in seconds (its client's own retries take minutes).
_CONNECT_TIMEOUT_S = 3.0

__all__ = ["Logger", "MLflow", "Run", "SweepInfo", "TensorBoard", "WandB", "run_summaries"]


@dataclasses.dataclass(frozen=True)
class Run:
  """One trained model, as a tracker sees it.

  Attributes:
    index: the model's flat index in the sweep (seed-major: model ``i`` has
      seed ``seeds[i // C]`` and configuration ``configurations()[i % C]``).
    name: ``"flood_level=0.05,seed=0"`` (with each hyperparameter between).
    config: ``{"flood_level": 0.05, **hyperparameters, "seed": 0}``.
  """

  index: int
  name: str
  config: dict[str, float | int]


@dataclasses.dataclass(frozen=True)
class SweepInfo:
  """The sweep the runs belong to.

  Attributes:
    name: the sweep's name, shared by its runs (a W&B group, MLflow's parent
      run); kept on resume.
    config: the sweep's settings (``result.config``), JSON-ready.
    metrics: the metric names that :meth:`Logger.log` receives.
    epochs: the evaluated epochs, the steps that are logged.
  """

  name: str
  config: dict[str, Any]
  metrics: tuple[str, ...]
  epochs: tuple[int, ...]


@runtime_checkable
class Logger(Protocol):
  """What ``fj.sweep(..., loggers=[...])`` calls; subclass it and override what you need.

  The sweep calls, on process 0 only: :meth:`start` once, :meth:`log` for
  every run and evaluated epoch, :meth:`flush` after each compiled call,
  :meth:`summarize` once per run when the sweep has finished, and
  :meth:`close` last (also when the sweep stops early). Only :meth:`log` is
  required of an object that does not subclass this protocol.

  Examples:
    >>> import flood_jax as fj
    >>> class Printer(fj.loggers.Logger):
    ...   def log(self, run, step, metrics):
    ...     print(run.name, step, round(metrics["val_accuracy"], 2))
    >>> run = fj.loggers.Run(0, "flood_level=0.1,seed=0", {"flood_level": 0.1, "seed": 0})
    >>> Printer().log(run, 5, {"val_accuracy": 0.875})
    flood_level=0.1,seed=0 5 0.88
  """

  def start(
    self, sweep: SweepInfo, runs: Sequence[Run], state: Mapping[str, Any] | None
  ) -> Mapping[str, Any] | None:
    """Opens one run per model.

    Args:
      sweep: the sweep.
      runs: one per model, in the flat order.
      state: ``None`` for a new sweep; on resume, what this method returned
        the first time (the run ids), to go on in the same runs.

    Returns:
      JSON-ready state to resume with (kept in the checkpoint directory), or
      ``None``.
    """
    del sweep, runs, state
    return None

  def log(self, run: Run, step: int, metrics: Mapping[str, float]) -> None:
    """Logs the evaluated epoch ``step`` of ``run``: ``{metric: value}`` (NaN: not measured)."""
    del run, step, metrics

  def flush(self) -> None:
    """Writes out what :meth:`log` buffered; called after each compiled call."""

  def summarize(self, run: Run, summary: Mapping[str, Any]) -> None:
    """The run's summary (:func:`run_summaries`), once, when the sweep has finished."""
    del run, summary

  def close(self) -> None:
    """Ends the runs (those without a summary, as interrupted)."""


def run_summaries(result: Any) -> list[dict[str, Any]]:
  """Each model's summary, in the flat order of :class:`Run`'s ``index``.

  Keys: ``final/<metric>`` (the last evaluation), ``early_stopping/<metric>``
  (at the evaluation of best validation accuracy, or of the task's selection
  metric) and ``early_stopping/epoch``,
  ``chosen`` (its configuration is ``result.best()``), ``pruned`` and
  ``pruned_at`` (successive halving; 0 if not pruned), ``diverged``.

  Args:
    result: a :class:`flood_jax.SweepResult`.

  Returns:
    One dict per model, of floats, ints and bools.
  """
  import numpy as np

  axes = len(result.axes)

  def flat(x: Any) -> np.ndarray:
    """``(levels, *hyperparameters, seeds)`` to the flat seed-major order."""
    return np.moveaxis(np.asarray(x), axes - 1, 0).reshape(-1)

  final = {m: flat(v[..., -1]) for m, v in result.history.items()}
  stop = {m: flat(result.at_stopping(m, "best_val")) for m in result.history}
  stop_epoch = flat(np.asarray(result.epochs)[result.stopping_epoch("best_val")])
  pruned_at = np.broadcast_to(result.pruned_at[..., None], result.history["val_loss"].shape[:-1])
  pruned_at, diverged = flat(pruned_at), flat(result.diverged())
  try:
    best = result.index(**result.best())
  except ValueError:  # every configuration diverged: none is chosen
    best = None
  chosen = np.zeros(result.history["val_loss"].shape[:-1], bool)
  if best is not None:
    chosen[best] = True
  chosen = flat(chosen)
  out = []
  for i in range(len(diverged)):
    summary: dict[str, Any] = {f"final/{m}": float(v[i]) for m, v in final.items()}
    summary.update({f"early_stopping/{m}": float(v[i]) for m, v in stop.items()})
    summary["early_stopping/epoch"] = int(stop_epoch[i])
    summary["chosen"] = bool(chosen[i])
    summary["pruned"] = bool(pruned_at[i] > 0)
    summary["pruned_at"] = int(pruned_at[i])
    summary["diverged"] = bool(diverged[i])
    out.append(summary)
  return out


def _require(module: str, logger: str) -> None:
  if importlib.util.find_spec(module) is None:
    raise ImportError(f"fj.loggers.{logger} needs the {module} package: {EXTRA}")


def _check_reachable(url: str, what: str, fix: str) -> None:
  """Raises a one-line ``ConnectionError`` unless ``url``'s server accepts a TCP connection.

  Only ``http``/``https`` addresses are checked (a file or database store has no server);
  through the proxy the environment names for it, if any. Waits ``_CONNECT_TIMEOUT_S``
  at most.
  """
  parts = urllib.parse.urlsplit(url)
  if parts.scheme not in ("http", "https") or not parts.hostname:
    return
  try:
    port = parts.port or (443 if parts.scheme == "https" else 80)
  except ValueError:
    raise ValueError(f"{what} {url} has no valid port (1 to 65535); {fix}.") from None
  host, via = parts.hostname, ""
  proxy = urllib.request.getproxies().get(parts.scheme)
  if proxy and not urllib.request.proxy_bypass(host):
    proxied = urllib.parse.urlsplit(proxy if "://" in proxy else "http://" + proxy)
    try:
      if proxied.hostname:
        host, port, via = proxied.hostname, proxied.port or 80, f" through the proxy {proxy}"
    except ValueError:
      pass  # a proxy without a valid port: the client will say so
  try:
    with socket.create_connection((host, port), timeout=_CONNECT_TIMEOUT_S):
      pass
  except OSError as err:
    if isinstance(err, TimeoutError):
      reason = f"no answer within {_CONNECT_TIMEOUT_S:g} s"
    else:
      reason = err.strerror or str(err) or type(err).__name__
    raise ConnectionError(f"{what} at {url} cannot be reached{via} ({reason}); {fix}.") from None


def _numbers(summary: Mapping[str, Any]) -> dict[str, float]:
  """A summary's values as floats (booleans as 0 or 1), for trackers that take numbers only."""
  return {k: float(v) for k, v in summary.items()}


class TensorBoard(Logger):
  """TensorBoard event files: one run directory per model, ``logdir/<run name>``.

  Scalars are written under the metric names at the evaluated epochs; the
  configuration goes to the HParams plugin (``flood_level``, each
  hyperparameter and ``seed`` per run); the summary as scalars
  ``summary/<key>`` at the last epoch (booleans as 0 or 1), which the HParams
  dashboard tabulates beside the configurations.
  The events are written with TensorBoard's own record format, without
  TensorFlow. View with ``tensorboard --logdir LOGDIR``. Use a directory per
  sweep: runs of two sweeps with the same names would share directories.

  Args:
    logdir: the directory the run directories go in (created if needed).
  """

  def __init__(self, logdir: str | os.PathLike[str]):
    _require("tensorboard", "TensorBoard")
    self.logdir = os.path.abspath(os.fspath(logdir))
    self._runs: dict[int, Run] = {}
    self._pending: dict[int, list[bytes]] = {}
    self._files: dict[int, str] = {}
    self._last_step: dict[int, int] = {}

  def __repr__(self) -> str:
    return f"TensorBoard({self.logdir!r})"

  def start(self, sweep, runs, state):
    from tensorboard.plugins.hparams import summary_v2 as hp

    os.makedirs(self.logdir, exist_ok=True)
    self._files = {}  # a logger used again starts new event files
    self._runs = {run.index: run for run in runs}
    self._pending = {run.index: [] for run in runs}
    self._last_step = {run.index: sweep.epochs[-1] if sweep.epochs else 0 for run in runs}
    # The HParams plugin's record, once per run; the dashboard finds the hyperparameters
    # and the metrics (the scalar tags) from these, with no experiment record in logdir,
    # which TensorBoard would list as a run of its own.
    if state is None:
      for run in runs:
        session = hp.hparams_pb(dict(run.config), trial_id=run.name)
        self._pending[run.index].append(self._event(session))
    return {"sweep": sweep.name}

  def log(self, run, step, metrics):
    _, summary_pb2 = _tensorboard_protos()
    values = [summary_pb2.Summary.Value(tag=k, simple_value=float(v)) for k, v in metrics.items()]
    self._pending[run.index].append(self._event(summary_pb2.Summary(value=values), step))

  def flush(self):
    for index, events in self._pending.items():
      if not events:
        continue
      if index not in self._files:
        directory = os.path.join(self.logdir, self._runs[index].name)
        os.makedirs(directory, exist_ok=True)
        self._files[index] = os.path.join(directory, self._file_name())
      self._write(self._files[index], events)
      events.clear()

  def summarize(self, run, summary):
    _, summary_pb2 = _tensorboard_protos()
    values = [
      summary_pb2.Summary.Value(tag=f"summary/{k}", simple_value=v)
      for k, v in _numbers(summary).items()
    ]
    step = self._last_step[run.index]
    self._pending[run.index].append(self._event(summary_pb2.Summary(value=values), step))

  def close(self):
    self.flush()

  @staticmethod
  def _event(summary: Any, step: int = 0) -> bytes:
    event_pb2, _ = _tensorboard_protos()
    return event_pb2.Event(wall_time=time.time(), step=step, summary=summary).SerializeToString()

  @staticmethod
  def _file_name() -> str:
    # TensorBoard's own naming; the pid and a counter keep files of one process apart.
    TensorBoard._count += 1
    return (
      f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}"
      f".{TensorBoard._count}"
    )

  _count = 0

  @staticmethod
  def _write(path: str, events: Sequence[bytes]) -> None:
    from tensorboard.summary.writer.record_writer import RecordWriter

    event_pb2, _ = _tensorboard_protos()
    new = not os.path.exists(path)
    with open(path, "ab") as f:
      writer = RecordWriter(f)
      if new:  # every event file starts with its version
        first = event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2")
        writer.write(first.SerializeToString())
      for event in events:
        writer.write(event)


def _tensorboard_protos() -> tuple[Any, Any]:
  """TensorBoard's ``event_pb2`` and ``summary_pb2`` (generated code, untyped)."""
  from tensorboard.compat.proto import event_pb2, summary_pb2

  return event_pb2, summary_pb2


class MLflow(Logger):
  """MLflow: one run per model, nested under a run for the sweep.

  Each model's run is named for its configuration, has the configuration as
  its params (``flood_level``, each hyperparameter, ``seed``), its curves as
  metrics, and the summary as metrics (``final/val_loss``, ...; booleans as
  tags ``chosen``, ``pruned``, ``diverged``, ``"true"`` or ``"false"``).
  The parent run, named for the sweep, has the sweep's settings as params
  and the chosen configuration as its tag ``best``. The curves are written
  with MLflow's asynchronous logging (``synchronous=False``), so the sweep
  does not wait for the store; :meth:`close` waits for them.

  Args:
    tracking_uri: anything MLflow takes: a database (``"sqlite:///mlflow.db"``),
      a server (``"http://host:5000"``); ``None`` is MLflow's default
      (``MLFLOW_TRACKING_URI``, else its own).
    experiment: the experiment's name, created if it does not exist.
  """

  def __init__(self, tracking_uri: str | None = None, experiment: str = "flood_jax"):
    _require("mlflow", "MLflow")
    self.tracking_uri = tracking_uri
    self.experiment = experiment
    self._client: Any = None
    self._ids: dict[int, str] = {}
    self._parent: str | None = None
    self._pending: dict[int, list[Any]] = {}
    self._open: set[str] = set()
    self._best: str | None = None
    self._writes: list[Any] = []

  def __repr__(self) -> str:
    return f"MLflow(tracking_uri={self.tracking_uri!r}, experiment={self.experiment!r})"

  def start(self, sweep, runs, state):
    import mlflow
    from mlflow.entities import Param
    from mlflow.tracking import MlflowClient
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

    uri = self.tracking_uri if self.tracking_uri is not None else mlflow.get_tracking_uri()
    _check_reachable(
      str(uri),
      "the MLflow tracking server",
      "start it, or give another tracking_uri (e.g. sqlite:///mlflow.db)",
    )
    client = self._client = MlflowClient(tracking_uri=self.tracking_uri)
    self._ids, self._best = {}, None
    if state is not None:
      self._parent = state["parent"]
      self._ids = {int(k): v for k, v in state["runs"].items()}
      for run_id in [self._parent, *self._ids.values()]:
        client.update_run(run_id, status="RUNNING")
    else:
      found = client.get_experiment_by_name(self.experiment)
      experiment = (
        found.experiment_id if found is not None else client.create_experiment(self.experiment)
      )
      parent = client.create_run(experiment, run_name=sweep.name, tags={"flood_jax.sweep": "1"})
      self._parent = parent.info.run_id
      params = [Param(k, _param_text(v)) for k, v in sweep.config.items()]
      client.log_batch(self._parent, params=params)
      for run in runs:
        child = client.create_run(
          experiment,
          run_name=run.name,
          tags={MLFLOW_PARENT_RUN_ID: self._parent, "flood_jax.sweep_name": sweep.name},
        )
        self._ids[run.index] = child.info.run_id
        client.log_batch(
          child.info.run_id, params=[Param(k, str(v)) for k, v in run.config.items()]
        )
    assert self._parent is not None
    self._open = {self._parent, *self._ids.values()}
    self._pending = {run.index: [] for run in runs}
    return {"parent": self._parent, "runs": {str(k): v for k, v in self._ids.items()}}

  def log(self, run, step, metrics):
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    self._pending[run.index] += [Metric(k, float(v), now, step) for k, v in metrics.items()]

  def flush(self):
    # MLflow's asynchronous logging: the writes (a database transaction per run, some
    # 40 ms each on sqlite) happen on MLflow's thread, not in the sweep's loop.
    for index, metrics in self._pending.items():
      for first in range(0, len(metrics), 1000):  # MLflow's limit per batch
        batch = metrics[first : first + 1000]
        self._writes.append(
          self._client.log_batch(self._ids[index], metrics=batch, synchronous=False)
        )
      metrics.clear()

  def _wait(self) -> None:
    """Waits for the asynchronous writes (and raises what failed in them)."""
    self.flush()
    writes, self._writes = self._writes, []
    for write in writes:
      if write is not None:
        write.wait()

  def summarize(self, run, summary):
    from mlflow.entities import Metric, RunTag

    self._wait()
    now = int(time.time() * 1000)
    step = int(summary.get("early_stopping/epoch", 0))
    numbers = [
      Metric(k, float(v), now, step) for k, v in summary.items() if not isinstance(v, bool)
    ]
    tags = [RunTag(k, str(v).lower()) for k, v in summary.items() if isinstance(v, bool)]
    run_id = self._ids[run.index]
    self._client.log_batch(run_id, metrics=numbers, tags=tags)
    self._client.set_terminated(run_id, "FINISHED")
    self._open.discard(run_id)
    if summary.get("chosen"):
      self._best = run.name.rsplit(",seed=", 1)[0]

  def close(self):
    self._wait()
    finished = self._parent is not None and len(self._open) == 1
    if finished and self._best is not None:
      assert self._parent is not None
      self._client.set_tag(self._parent, "best", self._best)
    for run_id in list(self._open):
      self._client.set_terminated(run_id, "FINISHED" if finished else "KILLED")
    self._open.clear()


def _param_text(value: Any) -> str:
  """A setting as an MLflow param value (at most 6,000 characters)."""
  text = value if isinstance(value, str) else json.dumps(value)
  return text[:6000]


class WandB(Logger):
  """Weights & Biases: one W&B run per model, grouped by the sweep.

  Each run is named for its configuration, has the configuration in its
  config and the sweep's name as its group; its curves are logged with the
  evaluated epoch as W&B's step, and the summary goes to ``run.summary``.
  The runs of one sweep are open at once (``reinit="create_new"``); console
  capture is off (the runs share one process), unless ``settings=`` says
  otherwise.

  Args:
    project: the W&B project.
    mode: ``"online"``, ``"offline"`` (no network: the runs are written under
      ``dir`` for ``wandb sync``) or ``"disabled"``; ``None`` is W&B's default
      (``WANDB_MODE``, else online).
    dir: where W&B writes its files (default W&B's: ``WANDB_DIR`` or the
      working directory).
    **init_kwargs: passed to every ``wandb.init`` (``entity``, ``tags``,
      ``group`` to override the sweep's name, ...).
  """

  def __init__(
    self,
    project: str,
    mode: str | None = None,
    dir: str | os.PathLike[str] | None = None,  # wandb.init's name
    **init_kwargs: Any,
  ):
    _require("wandb", "WandB")
    self.project = project
    self.mode = mode
    self.dir = None if dir is None else os.fspath(dir)
    self.init_kwargs = init_kwargs
    self._runs: dict[int, Any] = {}

  def __repr__(self) -> str:
    return f"WandB({self.project!r}, mode={self.mode!r}, dir={self.dir!r})"

  def start(self, sweep, runs, state):
    import wandb

    ids = {} if state is None else {int(k): v for k, v in state["runs"].items()}
    kwargs = dict(self.init_kwargs)
    kwargs.setdefault("group", sweep.name)
    # A dict overrides only these (a wandb.Settings would also set the mode, over WANDB_MODE).
    kwargs.setdefault("settings", {"console": "off", "silent": True})
    if self.mode is not None:
      kwargs["mode"] = self.mode
    if self.dir is not None:
      os.makedirs(self.dir, exist_ok=True)
    server = _wandb_server(kwargs)
    if server is not None:
      _check_reachable(
        server,
        "the W&B server",
        'check the network (or WANDB_BASE_URL), or log offline: mode="offline"',
      )
    for run in runs:
      self._runs[run.index] = wandb.init(
        project=self.project,
        dir=self.dir,
        name=run.name,
        config=dict(run.config),
        id=ids.get(run.index) or secrets.token_hex(4),
        resume="allow" if state is not None else None,
        reinit="create_new",
        **kwargs,
      )
    return {"runs": {str(k): r.id for k, r in self._runs.items()}}

  def log(self, run, step, metrics):
    self._runs[run.index].log(dict(metrics), step=step)

  def summarize(self, run, summary):
    wandb_run = self._runs.pop(run.index)
    wandb_run.summary.update(dict(summary))
    wandb_run.finish()

  def close(self):
    for run in self._runs.values():
      run.finish(exit_code=1)  # not summarized: the sweep stopped early
    self._runs.clear()


def _wandb_server(kwargs: Mapping[str, Any]) -> str | None:
  """The W&B server that ``wandb.init(**kwargs)`` would talk to, or ``None`` offline.

  As W&B resolves it: its defaults, the system settings, the environment
  (``WANDB_MODE``, ``WANDB_BASE_URL``), then ``settings=`` and ``mode=``.
  ``None`` too where W&B's settings cannot be read here (W&B then says what
  is wrong itself).
  """
  try:
    import wandb

    settings = wandb.Settings()
    with contextlib.suppress(Exception):  # a settings file that does not read
      settings.update_from_system_settings()
    settings.update_from_env_vars(dict(os.environ))
    given = kwargs.get("settings")
    if isinstance(given, wandb.Settings):
      settings.update_from_settings(given)
    elif isinstance(given, Mapping):
      settings.update_from_dict(dict(given))
    if kwargs.get("mode") is not None:
      settings.update_from_dict({"mode": kwargs["mode"]})
    mode, url = settings.mode, settings.base_url
  except Exception:
    return None
  if mode in ("offline", "disabled", "dryrun") or not isinstance(url, str):
    return None
  return url
