"""Small checks and helpers shared across the library.

Each validator raises one line (``ValueError``) saying what was wrong, with the
value it got; the ``is_*`` predicates let a caller with its own message reuse
the test. ``first_line`` shortens an error to its first line for a one-line
message, and ``atomic_write`` writes a file so that a kill leaves the old file
or the new one, never half of one. ``directory`` refuses a file where a
directory is meant, and ``claim_directory`` a directory that holds files of
the user's (an output folder is written only if it is new, empty, or marked
as written by the same command).
"""

from __future__ import annotations

import contextlib
import json
import numbers
import os
import sys
from collections.abc import Iterator, Sequence
from typing import IO, Any

import numpy as np


def is_number(value: Any) -> bool:
  """Whether ``value`` is a real number (Python or NumPy) and not a bool.

  Python counts ``True`` as the integer 1; a flag passed where a number is
  meant is a mistake, so it is refused.

  Examples:
    >>> import numpy as np
    >>> from flood_jax._checks import is_number
    >>> is_number(0.5), is_number(np.float32(2)), is_number(True), is_number("1")
    (True, True, False, False)
  """
  return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def is_integer(value: Any) -> bool:
  """Whether ``value`` is an integer (Python or NumPy) and not a bool.

  Examples:
    >>> import numpy as np
    >>> from flood_jax._checks import is_integer
    >>> is_integer(3), is_integer(np.int64(3)), is_integer(3.0), is_integer(False)
    (True, True, False, False)
  """
  return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def positive_int(name: str, value: Any) -> int:
  """``value`` as an ``int``; ``ValueError`` unless it is an integer >= 1.

  Examples:
    >>> from flood_jax._checks import positive_int
    >>> positive_int("epochs", 3)
    3
    >>> positive_int("epochs", 0)
    Traceback (most recent call last):
    ValueError: epochs must be a positive integer, got 0.
  """
  if not is_integer(value) or value < 1:
    raise ValueError(f"{name} must be a positive integer, got {value!r}.")
  return int(value)


def int_at_least(name: str, value: Any, minimum: int) -> int:
  """``value`` as an ``int``; ``ValueError`` unless it is an integer >= ``minimum``.

  Examples:
    >>> from flood_jax._checks import int_at_least
    >>> int_at_least("n_train", 2, 2)
    2
    >>> int_at_least("n_train", 1, 2)
    Traceback (most recent call last):
    ValueError: n_train must be at least 2, got 1.
  """
  if not is_integer(value):
    raise ValueError(f"{name} must be an integer, got {value!r}.")
  if value < minimum:
    raise ValueError(f"{name} must be at least {minimum}, got {value}.")
  return int(value)


def number_in(
  name: str,
  value: Any,
  low: float,
  high: float,
  *,
  low_open: bool = False,
  high_open: bool = False,
) -> float:
  """``value`` as a ``float``; ``ValueError`` unless it is a finite number in the interval.

  The interval is ``[low, high]``, open at either end with ``low_open`` or
  ``high_open``.

  Examples:
    >>> from flood_jax._checks import number_in
    >>> number_in("val_fraction", 0.2, 0.0, 1.0, low_open=True, high_open=True)
    0.2
    >>> number_in("val_fraction", 1.0, 0.0, 1.0, low_open=True, high_open=True)
    Traceback (most recent call last):
    ValueError: val_fraction must be in (0.0, 1.0), got 1.0.
  """
  if not is_number(value):
    raise ValueError(f"{name} must be a number, got {value!r}.")
  value = float(value)
  too_low = value <= low if low_open else value < low
  too_high = value >= high if high_open else value > high
  if not np.isfinite(value) or too_low or too_high:
    left, right = "(" if low_open else "[", ")" if high_open else "]"
    raise ValueError(f"{name} must be in {left}{low}, {high}{right}, got {value}.")
  return value


def number_list(name: str, values: Any, example: str) -> np.ndarray:
  """``values`` as a 1-D float64 array; ``ValueError`` unless a non-empty list of real numbers.

  Strings, ``None``, bools (a flag is not a level), complex numbers and nested
  or ragged lists are refused in one line; ``example`` shows a right value.
  Finiteness is left to the caller (its message names what the numbers are).

  Examples:
    >>> from flood_jax._checks import number_list
    >>> number_list("flood_levels", (0, 0.1), "[0.0, 0.1]").tolist()
    [0.0, 0.1]
    >>> number_list("flood_levels", ["a"], "[0.0, 0.1]")
    Traceback (most recent call last):
    ValueError: flood_levels must be a non-empty list of numbers, e.g. [0.0, 0.1]; got ['a'].
  """
  bad = ValueError(f"{name} must be a non-empty list of numbers, e.g. {example}; got {values!r}.")
  if values is None or isinstance(values, (str, bytes, dict)):
    raise bad
  try:
    array = np.asarray(values)
  except (TypeError, ValueError):  # ragged, or not array-like
    raise bad from None
  if array.ndim != 1 or array.size == 0:
    raise bad
  if array.dtype == object:
    if not all(is_number(v) for v in array.tolist()):
      raise bad
    array = array.astype(np.float64)
  if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
    raise bad  # bools, strings, complex numbers
  return array.astype(np.float64)


def true_or_false(name: str, value: Any) -> bool:
  """``value`` as a ``bool``; ``ValueError`` unless it is ``True`` or ``False`` (NumPy's too).

  Examples:
    >>> from flood_jax._checks import true_or_false
    >>> true_or_false("flip", 1)
    Traceback (most recent call last):
    ValueError: flip must be True or False, got 1.
  """
  if not isinstance(value, (bool, np.bool_)):
    raise ValueError(f"{name} must be True or False, got {value!r}.")
  return bool(value)


def choice(name: str, value: Any, choices: Sequence[str], hint: str = "") -> str:
  """``value``; ``ValueError`` unless it is one of ``choices``.

  ``hint`` (an example of a right call) follows the message after ``;``.

  Examples:
    >>> from flood_jax._checks import choice
    >>> choice("objective", "iflood", ("flood", "iflood"))
    'iflood'
    >>> choice("objective", "mean", ("flood", "iflood"))
    Traceback (most recent call last):
    ValueError: objective must be one of ('flood', 'iflood'), got 'mean'.
  """
  if value not in choices:
    raise ValueError(
      f"{name} must be one of {choices}, got {value!r}" + (f"; {hint}." if hint else ".")
    )
  return value


def first_line(err: BaseException, empty: str | None = None) -> str:
  """The first line of ``err``'s message, for a one-line report of it.

  An error with no message gives ``empty``, by default the error's type name.

  Examples:
    >>> from flood_jax._checks import first_line
    >>> first_line(ValueError("bad shape\\n  (a traceback of details)"))
    'bad shape'
    >>> first_line(KeyError()), first_line(KeyError(), empty="")
    ('KeyError', '')
  """
  text = str(err).strip()
  if text:
    return text.splitlines()[0]
  return type(err).__name__ if empty is None else empty


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], newline: str | None = None) -> Iterator[IO[str]]:
  """Opens ``path + ".tmp"`` for writing text; on success renames it over ``path``.

  The temporary file is in the same directory, so the rename is atomic: a
  process killed while writing leaves the old file (or none) and a
  ``.tmp``, never half a file under ``path``. On an error the temporary file
  is removed and the error raised.

  Examples:
    >>> import json, os, tempfile
    >>> from flood_jax._checks import atomic_write
    >>> path = os.path.join(tempfile.mkdtemp(), "state.json")
    >>> with atomic_write(path) as f:
    ...   json.dump({"epoch": 3}, f)
    >>> with open(path) as f:
    ...   f.read()
    '{"epoch": 3}'
    >>> os.listdir(os.path.dirname(path))
    ['state.json']
  """
  tmp = os.fspath(path) + ".tmp"
  try:
    with open(tmp, "w", newline=newline) as f:
      yield f
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(OSError):
      os.remove(tmp)
    raise


MARKER = ".flood-jax"
"""The file that marks an output directory as written by one command (``claim_directory``)."""


def directory(name: str, path: str | os.PathLike[str]) -> str:
  """``path`` as a string; ``ValueError`` if it, or a folder above it, is a file.

  A directory that does not exist yet is fine (it is made when written).

  Examples:
    >>> import os, tempfile
    >>> from flood_jax._checks import directory
    >>> file = os.path.join(tempfile.mkdtemp(), "notes.txt")
    >>> open(file, "w").close()
    >>> directory("--out", os.path.dirname(file)) == os.path.dirname(file)
    True
    >>> directory("--out", file)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: --out .../notes.txt is a file, not a directory; give a directory (...).
  """
  path = os.fspath(path)
  probe = os.path.abspath(path)
  while not os.path.lexists(probe) and os.path.dirname(probe) != probe:
    probe = os.path.dirname(probe)
  if not os.path.isdir(probe):
    where = path if probe == os.path.abspath(path) else f"{path}: {probe}"
    raise ValueError(
      f"{name} {where} is a file, not a directory; give a directory (a new one is made)."
    )
  return path


def directory_owner(path: str | os.PathLike[str]) -> str | None:
  """The command that marked ``path`` as its output (``claim_directory``), if any.

  A marker that cannot be read counts as the mark of an unknown command (``"?"``).
  """
  marker = os.path.join(path, MARKER)
  if not os.path.isfile(marker):
    return None
  try:
    with open(marker) as f:
      owner = json.load(f)["command"]
  except (OSError, ValueError, KeyError, TypeError):
    return "?"
  return owner if isinstance(owner, str) else "?"


def claim_directory(
  name: str, path: str | os.PathLike[str], command: str, *, ours: bool = False, write: bool = True
) -> None:
  """Checks that ``command`` may write into ``path``; with ``write``, marks it as its own.

  ``path`` may be written into when it is new, empty, or marked by
  ``command`` (the marker, :data:`MARKER`, is the first file written into it),
  or when the caller knows it is ``command``'s (``ours``: e.g. a checkpoint
  of its own that an older version left without a marker). Otherwise
  ``ValueError``, one line naming the directory and the fix, and nothing is
  written: the user's files are never overwritten.

  Args:
    name: what the user called it, for the message (``--out``, ``out_dir``).
    path: the directory.
    command: who writes it, e.g. ``"flood-jax sweep"``.
    ours: skip the check (known to be ``command``'s own output).
    write: make the directory and write the marker (``False``: only check).

  Examples:
    >>> import os, tempfile
    >>> from flood_jax._checks import claim_directory
    >>> out = os.path.join(tempfile.mkdtemp(), "run")
    >>> claim_directory("--out", out, "flood-jax sweep")
    >>> claim_directory("--out", out, "flood-jax sweep")  # its own: fine
    >>> open(os.path.join(out, "notes.txt"), "w").close()
    >>> claim_directory("--out", out, "flood-jax reproduce")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: --out .../run holds the output of flood-jax sweep, not of flood-jax reproduce; ...
  """
  path = directory(name, path)
  owner = directory_owner(path)
  if not ours and os.path.isdir(path) and owner != command:
    if owner is not None:
      raise ValueError(
        f"{name} {path} holds the output of {owner}, not of {command}; choose another {name}."
      )
    entries = sorted(e for e in os.listdir(path) if e != MARKER)
    if entries:
      shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
      raise ValueError(
        f"{name} {path} already holds files that {command} did not write ({shown});"
        f" choose another {name}, or empty it."
      )
  if write and owner != command:
    os.makedirs(path, exist_ok=True)
    marker = os.path.join(path, MARKER)
    tmp = f"{marker}.{os.getpid()}.tmp"  # one per process: several may claim one directory
    with open(tmp, "w") as f:
      json.dump({"command": command}, f)
    os.replace(tmp, marker)


def release_directory(path: str | os.PathLike[str]) -> None:
  """Removes ``path`` if it holds nothing but its marker (a run that wrote nothing)."""
  with contextlib.suppress(OSError):
    if os.listdir(path) == [MARKER]:
      os.remove(os.path.join(path, MARKER))
      os.rmdir(path)


class NotWrittenError(OSError):
  """An output that could not be written (e.g. a full disk); ``strerror`` is one line
  saying what, and what is kept."""


def user_stacklevel() -> int:
  """The ``stacklevel`` for :func:`warnings.warn` that points at the user's call of flood_jax.

  Call it in the very call of ``warnings.warn``: it counts the frames from its caller up to
  the first that is not in the ``flood_jax`` package (the line of the user's ``fj.sweep(...)``,
  however deep the library's own calls are).
  """
  package = os.path.dirname(os.path.abspath(__file__)) + os.sep
  frame = sys._getframe(1)  # the function that calls warnings.warn: stacklevel 1
  level = 1
  while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
    frame = frame.f_back
    level += 1
  return level
