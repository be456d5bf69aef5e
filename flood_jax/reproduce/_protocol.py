"""The loop every protocol runs and how it resumes: ``--out`` claimed for the
protocol, each setting in turn, each finished part kept in ``OUT/runs/`` with the
arguments it was trained with (read back only for the same ones), the part in
progress checkpointed in ``OUT/checkpoints/``."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np

from flood_jax._checks import MARKER, NotWrittenError, claim_directory, first_line
from flood_jax._result import SweepResult
from flood_jax.reproduce._setting import Setting

_T = TypeVar("_T")


@contextlib.contextmanager
def _writing(out_dir: str, what: str) -> Iterator[None]:
  """Turns an ``OSError`` while writing ``what`` into a :class:`NotWrittenError`."""
  try:
    yield
  except NotWrittenError:
    raise
  except OSError as err:
    raise NotWrittenError(
      err.errno,
      f"could not write {what}: {err.strerror or first_line(err)}; nothing else is lost:"
      f" the finished settings in {os.path.join(out_dir, 'runs')} and the checkpoint of"
      " the one in progress are kept, so the same call, once there is space, reads them"
      " back and writes the rest",
    ) from None


def owner(name: str) -> str:
  """Who writes a protocol's output directory, as its marker names it."""
  return f"flood-jax reproduce {name}"


def claim_out(out_dir: str, name: str, option: str = "out_dir", write: bool = True) -> None:
  """Checks that protocol ``name`` may write into ``out_dir``; marks it as its own.

  A directory is written only if it is new, empty, or this protocol's
  (its marker, or the ``reproduce.json`` of an older version that wrote no
  marker): one line otherwise (``ValueError``), and nothing of the user's is
  overwritten. ``option`` names it in the message (``--out`` on the command line).
  """
  claim_directory(option, out_dir, owner(name), ours=_older_output(out_dir, name), write=write)


def _older_output(out_dir: str, name: str) -> bool:
  """Whether ``out_dir`` is protocol ``name``'s output from a version that wrote no marker:
  its ``reproduce.json`` names it, or it holds only an interrupted first setting."""
  if os.path.exists(os.path.join(out_dir, MARKER)) or not os.path.isdir(out_dir):
    return False
  path = os.path.join(out_dir, "reproduce.json")
  with contextlib.suppress(OSError, ValueError, AttributeError), open(path) as f:
    return json.load(f).get("protocol") == name
  return os.listdir(out_dir) == ["checkpoints"]


def _arguments(config: dict[str, Any], **more: Any) -> dict[str, Any]:
  """What a finished setting was trained with, as JSON reads it back: the protocol's
  config (less the list of settings and where the data were read from) and ``more``."""
  arguments = {k: v for k, v in config.items() if k != "settings"}
  if isinstance(arguments.get("load_options"), dict):
    arguments["load_options"] = {
      k: v for k, v in arguments["load_options"].items() if k != "data_dir"
    }
  return json.loads(json.dumps({**arguments, **more}, default=_plain))


def _plain(value: Any) -> Any:
  """NumPy scalars and arrays (and tuples) as JSON values."""
  if isinstance(value, np.generic | np.ndarray):
    return value.tolist()
  return repr(value)


def _protocol(
  name: str,
  out_dir: str,
  settings: Sequence[Setting],
  run_setting: Callable[[str, Setting], _T],
  write: Callable[[list[_T], float], None],
) -> list[_T]:
  """The loop of every protocol: each setting in turn, the outputs rewritten after each.

  ``run_setting(prefix, setting)`` trains a setting (or reads it back) with
  :func:`_kept`, so an interrupted protocol resumes: finished settings are
  read, the one in progress continues from its checkpoint. ``prefix`` is
  ``"[i/n] label"`` for its messages; ``write(done, wall_time)`` writes the
  tables and JSON of the settings done so far. ``out_dir`` is claimed for
  the protocol ``name`` first (:func:`claim_out`).
  """
  claim_out(out_dir, name)
  start = time.perf_counter()
  done: list[_T] = []
  for i, setting in enumerate(settings):
    done.append(run_setting(f"[{i + 1}/{len(settings)}] {setting.label}", setting))
    with _writing(out_dir, f"the tables and reproduce.json in {out_dir}"):
      write(done, time.perf_counter() - start)
  with contextlib.suppress(OSError):  # empty once every setting finished
    os.rmdir(os.path.join(out_dir, "checkpoints"))
  return done


def _kept(
  out_dir: str,
  key: str,
  train: Callable[[str], _T],
  *,
  save: Callable[[_T, str], object],
  load: Callable[[str], _T],
  done: str,
  arguments: dict[str, Any],
) -> tuple[_T, float, bool]:
  """What an earlier call kept in ``OUT/runs/KEY/``, or else trained now and kept there.

  ``train(checkpoint_dir)`` trains with its checkpoint in
  ``OUT/checkpoints/KEY/``, so a call interrupted in it continues from there;
  ``save(value, run_dir)`` keeps the value (``done`` is the file it writes
  last, the mark of a finished part), then the checkpoint is removed.
  Returns ``(value, seconds, read)``: ``seconds`` is the wall time of the call
  that trained it (of the last one, for a part resumed from its checkpoint)
  and ``read`` says whether it was read back rather than trained.
  ``arguments`` (JSON values) are kept beside it, in ``arguments.json``: a
  kept value is read back only for the same arguments (``ValueError``, one
  line, for others; a part in progress has its checkpoint's fingerprint).
  """
  run_dir = os.path.join(out_dir, "runs", key)
  checkpoint_dir = os.path.join(out_dir, "checkpoints", key)
  seconds_path = os.path.join(run_dir, "seconds.json")
  arguments_path = os.path.join(run_dir, "arguments.json")
  if _is_kept(out_dir, key, done):
    _check_arguments(arguments_path, arguments)
    seconds = math.nan
    if os.path.exists(seconds_path):  # (absent in the runs of older versions)
      with open(seconds_path) as f:
        seconds = float(json.load(f)["seconds"])
    return load(run_dir), seconds, True
  tic = time.perf_counter()
  value = train(checkpoint_dir)
  seconds = time.perf_counter() - tic
  with _writing(out_dir, run_dir):
    os.makedirs(run_dir, exist_ok=True)
    with open(seconds_path, "w") as f:
      json.dump({"seconds": seconds}, f)
    _write_json_file(arguments_path, arguments)
    save(value, run_dir)
  shutil.rmtree(checkpoint_dir, ignore_errors=True)  # the value is on disk; no weights kept
  with contextlib.suppress(OSError):  # a setting's folder of parts, once the last is kept
    os.rmdir(os.path.dirname(checkpoint_dir))
  return value, seconds, False


def _check_arguments(path: str, arguments: dict[str, Any]) -> None:
  """``ValueError`` (one line) unless the kept setting at ``path`` had these ``arguments``.

  A setting kept by a version that wrote no ``arguments.json`` is read back as before.
  """
  if not os.path.exists(path):
    return
  run_dir = os.path.dirname(path)
  try:
    saved = _read_json_file(path)
    if not isinstance(saved, dict):
      raise ValueError(f"a {type(saved).__name__}, not an object")
  except ValueError as err:
    raise ValueError(
      f"{path} is damaged ({first_line(err)}), so what {run_dir} was trained with is"
      f" unknown; delete {run_dir} to train it again."
    ) from None
  changed = [
    f"{k} {_brief(arguments.get(k))} (it has {_brief(saved.get(k))})"
    for k in sorted(set(saved) | set(arguments))
    if saved.get(k) != arguments.get(k)
  ]
  if changed:
    raise ValueError(
      f"{run_dir} holds a finished setting trained with other arguments:"
      f" {'; '.join(changed)}; pass its arguments to reuse it, or choose another"
      f" output directory (or delete {run_dir} to train it again)."
    )


def _brief(value: Any) -> str:
  """A value for a one-line message: a long list shortened."""
  text = json.dumps(value)
  return text if len(text) <= 60 else text[:57] + "..."


def _is_kept(out_dir: str, key: str, done: str) -> bool:
  """Whether :func:`_kept` finished ``key`` in an earlier call (and none is training it)."""
  return os.path.exists(os.path.join(out_dir, "runs", key, done)) and not os.path.isdir(
    os.path.join(out_dir, "checkpoints", key)
  )


def _kept_sweep(
  out_dir: str, key: str, train: Callable[[str], SweepResult], arguments: dict[str, Any]
) -> tuple[SweepResult, float, bool]:
  """:func:`_kept` for a sweep: its ``results.json`` and ``history.csv``, without weights."""
  return _kept(
    out_dir,
    key,
    train,
    save=lambda result, run_dir: result.save(run_dir, with_params=False),
    load=_load_sweep,
    done="results.json",
    arguments=arguments,
  )


def _load_sweep(run_dir: str) -> SweepResult:
  """A kept sweep as it was trained: its curves float32 again (JSON reads them as float64)."""
  result = SweepResult.load(run_dir)
  history = {k: v.astype(np.float32) for k, v in result.history.items()}
  return dataclasses.replace(result, history=history)


def _write_json_file(path: str, record: dict[str, Any]) -> None:
  """Writes ``record`` to ``path`` whole or not at all (a temporary file, then a rename)."""
  with open(path + ".tmp", "w") as f:
    json.dump(record, f)
  os.replace(path + ".tmp", path)


def _read_json_file(path: str) -> dict[str, Any]:
  with open(path) as f:
    return json.load(f)
