"""The shared checks: what they accept, their one-line messages, first_line and atomic_write."""

import json
import os

import numpy as np
import pytest

from flood_jax import _checks


def test_numbers_and_integers_refuse_bools():
  for number in (0, 1.5, np.float32(0.1), np.int64(3), float("inf")):
    assert _checks.is_number(number), number
  for not_number in (True, np.True_, "1", None, [1.0], 1j):
    assert not _checks.is_number(not_number), not_number
  assert _checks.is_integer(3) and _checks.is_integer(np.int8(-1))
  for not_integer in (False, np.False_, 3.0, np.float64(2), "3"):
    assert not _checks.is_integer(not_integer), not_integer


@pytest.mark.parametrize(
  ("call", "message"),
  [
    (
      lambda: _checks.positive_int("epochs", True),
      "^epochs must be a positive integer, got True.$",
    ),
    (lambda: _checks.positive_int("epochs", 0), "^epochs must be a positive integer, got 0.$"),
    (lambda: _checks.int_at_least("n_val", 1.0, 1), r"^n_val must be an integer, got 1\.0\.$"),
    (lambda: _checks.int_at_least("n_train", 1, 2), "^n_train must be at least 2, got 1.$"),
    (lambda: _checks.number_in("noise", "a", 0, 1), "^noise must be a number, got 'a'.$"),
    (
      lambda: _checks.number_in("p", 1.0, 0.0, 1.0, high_open=True),
      r"^p must be in \[0\.0, 1\.0\), got 1\.0\.$",
    ),
    (lambda: _checks.number_in("p", float("nan"), 0.0, 1.0), r"^p must be in \[0\.0, 1\.0\]"),
    (lambda: _checks.true_or_false("flip", 1), "^flip must be True or False, got 1.$"),
    (
      lambda: _checks.choice("objective", "x", ("flood", "iflood")),
      r"^objective must be one of \('flood', 'iflood'\), got 'x'\.$",
    ),
    (
      lambda: _checks.choice("score", "x", ("accuracy",), "e.g. score='accuracy'"),
      r"^score must be one of \('accuracy',\), got 'x'; e\.g\. score='accuracy'\.$",
    ),
  ],
)
def test_validators_raise_one_line(call, message):
  with pytest.raises(ValueError, match=message):
    call()


def test_validators_return_the_plain_value():
  assert type(_checks.positive_int("n", np.int32(4))) is int
  assert _checks.int_at_least("n", 0, 0) == 0
  assert _checks.number_in("x", np.float32(0.5), 0.0, 1.0) == 0.5
  assert _checks.number_in("x", 1, 0.0, 1.0) == 1.0  # closed at both ends by default
  assert _checks.true_or_false("flag", np.True_) is True
  assert _checks.choice("rule", "final", ("final", "best_val")) == "final"


def test_first_line():
  assert _checks.first_line(ValueError("  shape (3,)\nwhere it came from\n")) == "shape (3,)"
  assert _checks.first_line(KeyboardInterrupt()) == "KeyboardInterrupt"
  assert _checks.first_line(RuntimeError(""), empty="") == ""


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path):
  path = tmp_path / "state.json"
  with _checks.atomic_write(path) as f:
    json.dump({"epoch": 1}, f)
  with pytest.raises(ZeroDivisionError), _checks.atomic_write(path) as f:
    f.write('{"epoch": ')
    _ = 1 / 0  # killed half way: the old file stays, no temporary file is left
  assert json.loads(path.read_text()) == {"epoch": 1}
  assert os.listdir(tmp_path) == ["state.json"]
  with _checks.atomic_write(path, newline="") as f:
    f.write("a\r\n")
  assert path.read_bytes() == b"a\r\n"  # newline="" writes line endings as given (csv)
