"""SweepResult: levels and hyperparameters come back as the user gave them, not float32 noise."""

import csv
import json

import numpy as np
import pytest

import flood_jax as fj
from flood_jax._result import METRICS, _shortest
from flood_jax.cli import write_history_csv


def _result() -> fj.SweepResult:
  """Two levels x two learning rates x two seeds x one epoch, b = 0.3 and lr = 0.01 best."""
  shape = (2, 2, 2, 1)
  acc = np.full(shape, 0.6, np.float32)
  acc[1, 0] = 0.7  # b = 0.3, lr = 0.01
  history = {m: np.full(shape, 0.3, np.float32) for m in METRICS}
  history["val_accuracy"] = history["test_accuracy"] = acc
  return fj.SweepResult(
    flood_levels=np.array([0.0, 0.3], np.float32),
    seeds=np.array([0, 1]),
    history=history,
    hyperparams={"learning_rate": np.array([0.01, 0.1], np.float32)},
  )


def test_best_and_saved_values_are_the_decimals_given(tmp_path):
  result = _result()
  assert result.best() == {"flood_level": 0.3, "learning_rate": 0.01}
  assert result.best_flood_level == 0.3
  saved = json.loads(json.dumps(result.to_dict()))
  assert saved["flood_levels"] == [0.0, 0.3]
  assert saved["hyperparams"] == {"learning_rate": [0.01, 0.1]}
  assert saved["best"] == {"flood_level": 0.3, "learning_rate": 0.01}
  assert saved["final"]["test_loss"][0][0] == [0.3, 0.3]  # float32 0.3, written as 0.3
  with open(write_history_csv(result, str(tmp_path / "history.csv"))) as f:
    rows = list(csv.DictReader(f))
  assert {r["flood_level"] for r in rows} == {"0", "0.3"}
  assert {r["learning_rate"] for r in rows} == {"0.01", "0.1"}
  assert {r["val_accuracy"] for r in rows} == {"0.6", "0.7"}


def test_shortest_keeps_non_finite_and_other_dtypes():
  assert _shortest(np.float32(0.1)) == 0.1 and _shortest(np.asarray(np.float32(0.1))) == 0.1
  assert np.isnan(_shortest(np.float32("nan"))) and _shortest(np.float32("inf")) == np.inf
  assert _shortest(np.float64(0.1 + 0.2)) == 0.1 + 0.2  # float64 is kept as it is


def test_versus_no_flooding_pairs_by_seed():
  result = _result()
  row = result.versus_no_flooding()
  assert row is not None and row["config"] == {"flood_level": 0.3, "learning_rate": 0.01}
  assert np.isclose(row["diff"], 0.1) and row["seeds"] == 2 and row["p"] == 0.0  # no spread
  assert "better than b = 0" in result.summary().splitlines()[-1]
  tied = _result()
  tied.history["val_accuracy"][1, 0] = [[0.62], [0.59]]  # +0.02 and -0.01: seed noise
  line = tied.summary().splitlines()[-1]
  assert "not distinguishable from b = 0" in line and "over 2 seeds" in line, line


@pytest.mark.parametrize(
  "damage, what",
  [
    (lambda text: text[: len(text) // 2], "Expecting"),  # truncated
    (lambda text: "[1, 2]", "a list, not an object"),
    (
      lambda text: json.dumps({k: v for k, v in json.loads(text).items() if k != "history"}),
      "no 'history' entry",
    ),
    (lambda text: text.replace('"seeds": [', '"seeds": [7, '), "history 'train_loss' has shape"),
  ],
)
def test_a_damaged_results_json_is_one_line_naming_it(damage, what, tmp_path):
  path = tmp_path / "results.json"
  _result().save(tmp_path, with_params=False)
  path.write_text(damage(path.read_text()))
  with pytest.raises(ValueError, match="is damaged") as raised:
    fj.SweepResult.load(tmp_path)
  message = str(raised.value)
  assert message.startswith(f"{path} is damaged ({what}") and "\n" not in message
  assert "delete it and run the sweep again" in message


def test_a_file_where_the_results_directory_is_meant_is_one_line(tmp_path):
  path = _result().save(tmp_path, with_params=False)
  with pytest.raises(ValueError, match=f"{path} is a file, not a directory; give its directory"):
    fj.SweepResult.load(path)
  with pytest.raises(ValueError, match="is a file, not a directory"):
    _result().save(path)
  with pytest.raises(ValueError, match="is a file, not a directory"):
    _result().save(tmp_path / "results.json" / "again")


def test_a_full_disk_leaves_the_saved_files_whole(tmp_path, monkeypatch):
  import errno

  result = _result()
  result.final_params = {"w": np.ones((2, 2, 2, 3), np.float32)}
  result.save(tmp_path)
  before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

  def full(file, **arrays):
    file.write(b"half a file")
    raise OSError(errno.ENOSPC, "No space left on device")

  monkeypatch.setattr(np, "savez", full)
  with pytest.raises(OSError, match="No space left"):
    result.save(tmp_path)
  assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no .tmp, no half file


def _flooding(levels, flooded, level_name="flood_level"):
  """A result of these levels x 2 seeds x 2 evaluations with these flooded fractions."""
  flooded = np.asarray(flooded, np.float32)
  history = {m: np.full(flooded.shape, 0.5, np.float32) for m in METRICS}
  history["flooded_fraction"] = flooded
  return fj.SweepResult(np.array(levels, np.float32), np.arange(2), history, level_name=level_name)


def test_levels_that_never_flooded_are_named_in_the_summary_and_the_table():
  never, once = np.zeros((2, 2)), np.array([[0.0, 0.0], [0.0, 0.2]])  # (seeds, evaluations)
  nan = np.array([[0.0, np.nan], [np.nan, np.nan]])  # a pruned or diverged run: not counted
  result = _flooding([0.0, 0.01, 0.02, 0.05], [never, never, nan, once])
  assert result.never_flooded() == [0.01, 0.02]  # b = 0 is no flooding by construction
  lines = result.summary().splitlines()
  assert "b = 0.01, 0.02 never flooded: the same models as b = 0." in lines
  assert [row["never_flooded"] for row in result.table()] == [False, True, True, False]
  # Without b = 0 in the sweep, the lowest level is listed too; a negative lowest is the baseline.
  assert _flooding([0.01, 0.05], [never, once]).never_flooded() == [0.01]
  assert "as b = 0 would train" in _flooding([0.01, 0.05], [never, once]).summary()
  assert _flooding([-0.1, 0.0, 0.05], [never, never, once]).never_flooded() == [0.0]
  # AdaFlood: gamma = 1 floods nothing by construction.
  adaflood = _flooding([0.5, 1.0], [never, never], level_name="gamma")
  assert adaflood.never_flooded() == [0.5]
  assert "gamma = 0.5 never flooded: the same models as gamma = 1." in adaflood.summary()
  # Every level flooded: nothing is said.
  flooded = _flooding([0.0, 0.05], [never, once])
  assert flooded.never_flooded() == [] and "never flooded" not in flooded.summary()
  assert not any(row["never_flooded"] for row in flooded.table())
