"""The reproduce protocols on tiny configurations: tables, JSON, figures, resume."""

import json
import re

import numpy as np
import pytest

from flood_jax import reproduce
from flood_jax._result import SweepResult
from flood_jax._sweep.driver import AtChanceWarning


def _fake_result(test_final, val_final, levels=(0.0, 0.1, 0.2)):
  """A SweepResult with chosen accuracies at the last epoch (2 epochs, 3 seeds)."""
  levels = np.asarray(levels, np.float32)
  shape = (len(levels), 3, 2)
  history = {
    k: np.zeros(shape, np.float32)
    for k in (
      "train_loss",
      "val_loss",
      "val_accuracy",
      "test_loss",
      "test_accuracy",
      "flooded_fraction",
    )
  }
  history["val_accuracy"][..., -1] = val_final
  history["test_accuracy"][..., -1] = test_final
  history["val_accuracy"][..., 0] = 0.1
  history["test_accuracy"][..., 0] = 0.5
  return SweepResult(flood_levels=levels, seeds=np.arange(3), history=history)


def test_compare_chooses_the_level_per_seed_by_validation():
  val = np.array([[0.8, 0.8, 0.8], [0.9, 0.7, 0.8], [0.85, 0.95, 0.8]])
  test = np.array([[0.70, 0.71, 0.72], [0.80, 0.60, 0.90], [0.60, 0.90, 0.50]])
  c = reproduce.compare(_fake_result(test, val), reproduce.Setting("x", 0.0, "sgd"))
  np.testing.assert_allclose(c.chosen, [0.1, 0.2, 0.0])  # ties go to the smaller level
  np.testing.assert_allclose(c.flood, [0.80, 0.90, 0.72])
  np.testing.assert_allclose(c.no_flood, [0.70, 0.71, 0.72])
  # Early stopping: the best-validation epoch is the last one here as well.
  np.testing.assert_allclose(c.flood_es, c.flood)
  assert c.p_value(False) < 0.5
  table = reproduce.markdown_table([c])
  assert table.count("\n") == 2 and "**" in table  # flooding won: bold


def test_compare_needs_the_baseline():
  result = _fake_result(np.zeros((2, 3)), np.zeros((2, 3)), levels=(0.1, 0.2))
  with pytest.raises(ValueError, match=r"include 0\.0"):
    reproduce.compare(result, reproduce.Setting("x", 0.0, "sgd"))


def test_synthetic_tiny_end_to_end(tmp_path):
  out = tmp_path / "synthetic"
  comparisons = reproduce.synthetic(
    str(out),
    datasets=("two_gaussians", "spiral"),
    noise_rates=(0.1,),
    optimizers=("sgd",),
    flood_levels=(0.0, 0.3),
    seeds=2,
    epochs=3,
    n_train=40,
    n_val=20,
    n_test=50,
    hidden=16,
    depth=2,
    progress=False,
  )
  assert len(comparisons) == 2
  table = (out / "synthetic_table.md").read_text()
  assert "two_gaussians, noise 0.1, sgd" in table and "spiral, noise 0.1, sgd" in table
  raw = json.loads((out / "reproduce.json").read_text())
  assert raw["config"]["epochs"] == 3 and len(raw["comparisons"]) == 2
  assert len(raw["comparisons"][0]["flood"]) == 2  # one per seed
  for name in ("synthetic_accuracy_vs_level.png", "curves_spiral_noise0.1_sgd.png"):
    assert (out / "figures" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  assert not (out / "checkpoints" / "spiral_noise0.1_sgd").exists()
  # A second call reuses the finished settings instead of training again.
  again = reproduce.synthetic(
    str(out),
    datasets=("two_gaussians", "spiral"),
    noise_rates=(0.1,),
    optimizers=("sgd",),
    flood_levels=(0.0, 0.3),
    seeds=2,
    epochs=3,
    n_train=40,
    n_val=20,
    n_test=50,
    hidden=16,
    depth=2,
    progress=False,
  )
  np.testing.assert_allclose(again[1].flood, comparisons[1].flood)


def test_builtin_tiny_on_digits(tmp_path):
  comparisons = reproduce.builtin(
    str(tmp_path),
    datasets=("digits",),
    flood_levels=(0.0, 0.5),
    seeds=2,
    epochs=2,
    hidden=16,
    depth=1,
    progress=False,
  )
  assert comparisons[0].no_flood.shape == (2,)
  assert (tmp_path / "builtin_table.md").exists()


def test_benchmark_protocol_on_local_image_data(tmp_path):
  datasets = pytest.importorskip("datasets")
  from PIL import Image

  rng = np.random.default_rng(0)

  def split(n):
    images = [Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8)) for _ in range(n)]
    return datasets.Dataset.from_dict(
      {"image": images, "label": [i % 10 for i in range(n)]},
      features=datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(num_classes=10)}
      ),
    )

  path = tmp_path / "mnist_local"
  datasets.DatasetDict({"train": split(60), "test": split(20)}).save_to_disk(str(path))
  with pytest.warns(AtChanceWarning):  # random images: nothing to learn, and the sweep says so
    comparisons = reproduce.benchmark(
      str(tmp_path / "out"),
      dataset="mnist",
      flood_levels=(0.0, 0.05),
      weight_decays=(0.0, 1e-4),
      seeds=2,
      epochs=2,
      batch_size=20,
      load_options={"hf_path": str(path), "n_val": 20},
      model_options={"hidden": 16, "depth": 1},
      progress=False,
    )
  assert [c.setting.weight_decay for c in comparisons] == [0.0, 1e-4]
  assert (tmp_path / "out" / "benchmark_mnist_table.md").exists()


def test_benchmark_rejects_unknown_sets(tmp_path):
  with pytest.raises(ValueError, match="unknown benchmark data set"):
    reproduce.benchmark(str(tmp_path), dataset="imagenet")


def test_unknown_optimizer():
  with pytest.raises(ValueError, match="unknown optimizer"):
    reproduce.make_optimizer("rmsprop")


def test_reproduce_command_end_to_end(tmp_path, capsys):
  from flood_jax import cli

  out = tmp_path / "rp"
  with pytest.warns(AtChanceWarning):  # 2 epochs of a tiny MLP: still at chance, and it says so
    code = cli.main(
      [
        "reproduce",
        "synthetic",
        "--dataset",
        "sinusoid",
        "--noise",
        "0.05",
        "--optimizers",
        "adam",
        "--levels",
        "0,0.2",
        "--seeds",
        "2",
        "--epochs",
        "2",
        "--n-test",
        "50",
        "--hidden",
        "8",
        "--depth",
        "1",
        "--out",
        str(out),
        "--no-progress",
      ]
    )
  assert code == 0
  printed = capsys.readouterr().out
  assert "| sinusoid, noise 0.05, adam |" in printed
  raw = json.loads((out / "reproduce.json").read_text())
  assert raw["config"]["flood_levels"] == [0.0, 0.2]
  assert raw["config"]["hidden"] == 8


@pytest.mark.parametrize(
  "argv,match",
  [
    (["reproduce", "benchmark"], "needs --dataset"),
    (["reproduce", "benchmark", "--dataset", "mnist", "--noise", "0.1"], "does not apply"),
    (["reproduce", "mnist1d", "--n-test", "10"], "do not apply"),
    (["reproduce", "synthetic", "--noise", "1.5"], r"\[0, 1\)"),
    (["reproduce", "synthetic", "--optimizers", "rmsprop"], "unknown optimizer"),
    (["reproduce", "imagenet"], "invalid choice"),
  ],
)
def test_reproduce_command_errors(argv, match, capsys):
  from flood_jax import cli

  assert cli.main(argv) == 2
  err = capsys.readouterr().err
  assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
  assert re.search(match, err)


def test_adaflood_tiny_end_to_end(tmp_path):
  comparisons = reproduce.adaflood(
    str(tmp_path),
    datasets=("spiral",),
    noise_rates=(0.1,),
    flood_levels=(0.2,),
    gammas=(0.5,),
    seeds=2,
    epochs=2,
    folds=2,
    n_train=40,
    n_val=20,
    n_test=30,
    hidden=16,
    depth=1,
    progress=False,
  )
  (c,) = comparisons
  assert set(c.test) == {"flood", "iflood", "adaflood"} and c.test["adaflood"].shape == (2,)
  assert set(np.unique(c.chosen["adaflood"])) <= {0.5, 1.0}  # gamma = 1 (no flooding) added
  assert set(np.unique(c.chosen["flood"])) <= {0.0, 0.2}
  assert c.num_models == {"folds": 2, "flood": 4, "iflood": 4, "adaflood": 4}
  assert c.seconds["folds"] > 0 and c.heldout_loss["flipped"] is not None
  table = (tmp_path / "adaflood_table.md").read_text()
  assert "spiral, noise 0.1, adam" in table and "Early stopping" in table
  raw = json.loads((tmp_path / "reproduce.json").read_text())
  assert raw["protocol"] == "adaflood" and raw["config"]["gammas"] == [0.5, 1.0]
  assert "adaflood>flood" in raw["comparisons"][0]["p_values"]
