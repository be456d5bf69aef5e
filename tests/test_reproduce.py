"""The reproduce protocols on tiny configurations: tables, JSON, figures, resume."""

import json
import os
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
  history["flooded_fraction"][levels > 0] = 0.5  # the levels flooded: models of their own
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


def test_levels_that_never_flooded_are_named_and_not_chosen():
  """b = 0.01 and 0.02 never flooded: b = 0's very models, which a choice must not count."""
  val = np.array([[0.8, 0.8, 0.8], [0.8, 0.8, 0.8], [0.8, 0.8, 0.8], [0.7, 0.9, 0.7]])
  test = np.array([[0.7, 0.7, 0.7], [0.7, 0.7, 0.7], [0.7, 0.7, 0.7], [0.6, 0.8, 0.6]])
  result = _fake_result(test, val, levels=(0.01, 0.0, 0.02, 0.05))  # b = 0.01 before b = 0
  result.history["flooded_fraction"][:3] = 0.0
  result.history["flooded_fraction"][2, 1, 0] = np.nan  # a diverged epoch: still never flooded
  assert reproduce.never_flooded(result) == [0.01, 0.02]
  c = reproduce.compare(result, reproduce.Setting("mnist", 0.0, "adam"))
  np.testing.assert_allclose(c.chosen, [0.0, 0.05, 0.0])  # never b = 0.01 (first, tied)
  assert c.to_dict()["never_flooded"] == [0.01, 0.02]
  table = reproduce.markdown_table([c])
  assert table.splitlines()[-1] == (
    "mnist, noise 0, adam: b = 0.01, 0.02 never flooded: the same models as b = 0"
    " (not chosen per seed)"
  )


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
  # Other arguments are not these settings' results: one line, nothing trained or written.
  kept = sorted((out / "runs").rglob("*"))
  for change, said in [
    ({"epochs": 4}, "epochs 4 (it has 3)"),
    ({"flood_levels": (0.0, 0.1)}, "flood_levels [0.0, 0.1] (it has [0.0, 0.3])"),
    ({"hidden": 8}, "hidden 8 (it has 16)"),
  ]:
    arguments = dict(
      datasets=("two_gaussians",),
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
    with pytest.raises(ValueError, match="trained with other arguments") as raised:
      reproduce.synthetic(str(out), **{**arguments, **change})
    assert said in str(raised.value) and "\n" not in str(raised.value)
  assert sorted((out / "runs").rglob("*")) == kept


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
  argv = [
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
  with pytest.warns(AtChanceWarning):  # 2 epochs of a tiny MLP: still at chance, and it says so
    code = cli.main(argv)
  assert code == 0
  printed = capsys.readouterr().out
  assert "| sinusoid, noise 0.05, adam |" in printed
  raw = json.loads((out / "reproduce.json").read_text())
  assert raw["config"]["flood_levels"] == [0.0, 0.2]
  assert raw["config"]["hidden"] == 8

  # The disk fills while the figures are written: one line, what is kept, no traceback.
  import errno

  from matplotlib.figure import Figure

  def full(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(Figure, "savefig", full)
    code = cli.main(argv)
  printed, err = capsys.readouterr()
  assert code == 1 and err.count("\n") == 1 and "Traceback" not in err, err
  assert "done earlier" in printed  # the setting itself was kept
  figure = out / "figures" / "curves_sinusoid_noise0.05_adam.png"
  assert f"could not write {figure}: No space left on device; nothing else is lost" in err
  assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # the earlier one, whole


def test_reproduce_never_writes_into_the_users_files(tmp_path, capsys):
  from flood_jax import cli

  mine = tmp_path / "mine"
  mine.mkdir()
  (mine / "reproduce.json").write_text("my notes")
  (mine / "notes.txt").write_text("mine")
  note = tmp_path / "note.txt"
  note.write_text("mine")
  for out, said in [
    (mine, f"--out {mine} already holds files that flood-jax reproduce synthetic did not write"),
    (note, f"--out {note} is a file, not a directory"),
    (note / "sub", f"--out {note / 'sub'}: {note} is a file, not a directory"),
  ]:
    code = cli.main(["reproduce", "synthetic", "--out", str(out), "--no-compile-cache"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and said in err, err
  assert (mine / "reproduce.json").read_text() == "my notes" and len(list(mine.iterdir())) == 2
  assert note.read_text() == "mine"
  # Another protocol's output is not this one's.
  reproduce.claim_out(str(tmp_path / "rp"), "synthetic")
  code = cli.main(["reproduce", "mnist1d", "--out", str(tmp_path / "rp")])
  err = capsys.readouterr().err
  assert code == 2 and "holds the output of flood-jax reproduce synthetic, not of" in err


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


class _CtrlC:
  """A logger that presses Ctrl-C when its sweep logs the last model (in its last call)."""

  def __init__(self, last):
    self.last = last

  def log(self, run, step, metrics):
    if run.index == self.last:
      raise KeyboardInterrupt


ADAFLOOD_TINY = dict(
  datasets=("spiral",),
  noise_rates=(0.05, 0.1),
  flood_levels=(0.2,),
  gammas=(0.2, 0.5, 0.8),
  seeds=5,
  epochs=2,
  folds=2,
  n_train=40,
  n_val=20,
  n_test=30,
  hidden=16,
  depth=1,
  progress=False,
)


def _files(directory):
  return {p: p.stat().st_mtime_ns for p in sorted(directory.rglob("*")) if p.is_file()}


def test_adaflood_tiny_end_to_end_and_resumed_after_an_interrupt(tmp_path, capsys):
  full_dir = tmp_path / "full"
  full = reproduce.adaflood(str(full_dir), **ADAFLOOD_TINY)
  assert len(full) == 2
  c = full[1]
  assert set(c.test) == {"flood", "iflood", "adaflood"} and c.test["adaflood"].shape == (5,)
  # gamma = 1 (no flooding) is added, and b = 0
  assert np.isin(c.chosen["adaflood"], np.float32([0.2, 0.5, 0.8, 1.0])).all()
  assert np.isin(c.chosen["flood"], np.float32([0.0, 0.2])).all()
  assert c.num_models == {"folds": 2, "flood": 10, "iflood": 10, "adaflood": 20}
  assert c.seconds["folds"] > 0 and c.heldout_loss["flipped"] is not None
  table = (full_dir / "adaflood_table.md").read_text()
  assert "spiral, noise 0.1, adam" in table and "Early stopping" in table
  raw = json.loads((full_dir / "reproduce.json").read_text())
  assert raw["protocol"] == "adaflood" and raw["config"]["gammas"] == [0.2, 0.5, 0.8, 1.0]
  assert "adaflood>flood" in raw["comparisons"][0]["p_values"]
  assert not (full_dir / "checkpoints").exists()

  out = tmp_path / "cut"
  first, second = out / "runs" / "spiral_noise0.05_adam", out / "runs" / "spiral_noise0.1_adam"
  # Ctrl-C in the last call of the second setting's AdaFlood sweep (20 models,
  # 4 gammas x 5 seeds; at most 8 a device per call on a CPU): by then the first
  # setting, the second's flooding, iFlood and fold models, and its first call are kept.
  interrupt = lambda name: [_CtrlC(last=19)] if name == "spiral_noise0.1_adam-adaflood" else []
  with pytest.raises(KeyboardInterrupt):
    reproduce.adaflood(str(out), loggers=interrupt, **ADAFLOOD_TINY)
  for part in ("flood/results.json", "iflood/results.json", "folds/folds.json"):
    assert (first / part).is_file() and (second / part).is_file()
  assert (first / "adaflood" / "results.json").is_file()
  assert not (second / "adaflood").exists()
  assert (out / "checkpoints" / "spiral_noise0.1_adam" / "adaflood" / "done_00_00000").is_dir()
  assert not (out / "checkpoints" / "spiral_noise0.05_adam").exists()
  kept = _files(first)
  capsys.readouterr()

  resumed = reproduce.adaflood(str(out), **ADAFLOOD_TINY)
  printed = capsys.readouterr().out
  # Read, not trained: all four parts of the first setting, three of the second;
  # the fourth went on from its checkpoint (a checkpoint of other arguments
  # would be refused with a ValueError) and ends as the uninterrupted run above.
  assert printed.count("done earlier") == 7, printed
  assert _files(first) == kept
  assert not (out / "checkpoints").exists()

  assert len(resumed) == 2
  for a, b in zip(resumed, full, strict=True):
    assert a.setting == b.setting and a.num_models == b.num_models
    assert a.heldout_loss == b.heldout_loss
    np.testing.assert_array_equal(a.no_flood, b.no_flood)
    np.testing.assert_array_equal(a.no_flood_es, b.no_flood_es)
    for name in ("test", "test_es", "chosen", "chosen_es"):
      for method in reproduce.METHODS:
        np.testing.assert_array_equal(getattr(a, name)[method], getattr(b, name)[method])

  def comparisons(directory):
    raw = json.loads((directory / "reproduce.json").read_text())
    return [{k: v for k, v in c.items() if k != "seconds"} for c in raw["comparisons"]]

  assert comparisons(out) == comparisons(full_dir)
  tables = [(d / "adaflood_table.md").read_text().split("\n\n", 1)[1] for d in (out, full_dir)]
  strip = lambda t: re.sub(r"\| \d+ models, [^|]*\|", "|", t)  # the fold models' seconds
  assert strip(tables[0]) == strip(tables[1])


# reproduce benchmark on tiny files in the original formats (tests/original_files.py).


def _cli(argv, capsys):
  from flood_jax import cli

  code = cli.main(argv)
  out, err = capsys.readouterr()
  return code, out, err


@pytest.mark.filterwarnings("ignore::flood_jax._sweep.driver.AtChanceWarning")  # tiny random data
def test_benchmark_command_on_original_mnist_files_resumes(tmp_path, capsys):
  import original_files

  data_dir = original_files.write_mnist(str(tmp_path / "mnist"), 100, 30, gz=True)
  out = tmp_path / "out"
  argv = ["reproduce", "benchmark", "--dataset", "mnist", "--data-dir", data_dir]
  argv += ["--levels", "0,0.05", "--seeds", "2", "--epochs", "2", "--hidden", "8", "--depth", "1"]
  argv += ["--out", str(out), "--no-progress", "--no-compile-cache"]
  code, printed, err = _cli(argv, capsys)
  assert code == 0, err
  # The cpu preset's two settings (weight decay 0 and 1e-5), with paired differences.
  assert "| mnist, noise 0, adam | " in printed and "| mnist, noise 0, adam, wd 1e-05 | " in printed
  assert "| Δ |" in printed and "| p (ES) |" in printed
  raw = json.loads((out / "reproduce.json").read_text())
  config = raw["config"]
  assert config["split"] == {"train": 80, "val": 20, "test": 30}  # 80:20, the test set whole
  assert config["load_options"]["data_dir"] == data_dir
  assert config["epochs"] == 2 and config["seeds"] == [0, 1]
  assert config["flood_levels"] == [0.0, 0.05]
  assert len(raw["comparisons"]) == 2 and len(raw["comparisons"][0]["flood"]) == 2
  assert not (out / "checkpoints").exists()
  # Run again: the finished settings are read back, not trained again.
  code, again, err = _cli(argv, capsys)
  assert code == 0, err
  assert again.count("done earlier") == 2

  def rows(text):
    return [line for line in text.splitlines() if line.startswith("| mnist")]

  assert rows(again) == rows(printed)
  # With other --epochs, the kept settings are not this run's: one line, not "done earlier".
  code, printed, err = _cli([*argv[:-2], "--epochs", "3", *argv[-2:]], capsys)
  assert code == 2 and err.count("\n") == 1 and "done earlier" not in printed, err
  assert "trained with other arguments: epochs 3 (it has 2)" in err


def test_benchmark_presets_reach_the_protocol(tmp_path, capsys, monkeypatch):
  seen = {}

  def fake_benchmark(out, **kwargs):
    seen.update(kwargs)
    return []

  monkeypatch.setattr(reproduce, "benchmark", fake_benchmark)
  base = ["reproduce", "benchmark", "--dataset", "mnist", "--data-dir", str(tmp_path)]
  base += ["--out", str(tmp_path / "o"), "--no-compile-cache"]
  assert _cli(base, capsys)[0] == 0
  assert seen["epochs"] == 20 and seen["seeds"] == 4 and seen["data_dir"] == str(tmp_path)
  assert list(seen["flood_levels"]) == [0.0, 0.01, 0.02, 0.05, 0.1]
  assert list(seen["weight_decays"]) == [0.0, 1e-5]
  assert _cli([*base, "--preset", "paper", "--epochs", "7"], capsys)[0] == 0
  assert len(seen["flood_levels"]) == 11 and seen["epochs"] == 7  # explicit options win
  assert seen["seeds"] == 3 and seen["batch_size"] == 200
  # Every level the cpu preset keeps is one of the paper's.
  assert set(reproduce.BENCHMARK_CPU["flood_levels"]) <= set(
    reproduce.BENCHMARK_PAPER["flood_levels"]
  )


@pytest.mark.parametrize(
  "extra,match",
  [
    (["--data-dir", "/nonexistent/mnist"], "is not a folder; for 'mnist' it should hold"),
    (["--augment"], "augment=True needs image inputs"),
  ],
)
def test_benchmark_command_errors_are_one_line(extra, match, tmp_path, capsys):
  argv = ["reproduce", "benchmark", "--dataset", "mnist", "--out", str(tmp_path / "o"), *extra]
  if "--data-dir" not in extra:
    import original_files

    argv += ["--data-dir", original_files.write_mnist(str(tmp_path / "m"), 20, 5)]
  code, _, err = _cli(argv, capsys)
  assert code == 2 and err.count("\n") == 1 and match in err, err


def test_data_dir_applies_to_benchmark_only(tmp_path, capsys):
  code, _, err = _cli(["reproduce", "mnist1d", "--data-dir", str(tmp_path)], capsys)
  assert code == 2 and "--data-dir and --augment apply to reproduce benchmark only" in err


@pytest.mark.filterwarnings("ignore::flood_jax._sweep.driver.AtChanceWarning")  # tiny random data
def test_benchmark_resnet_protocol_on_original_files(tmp_path):
  """The ResNet-18 protocol's code path on tiny CIFAR-10 pickles and SVHN .mat files.

  Both sets have 32x32x3 images and 10 classes, so the second reuses the
  first's compiled program.
  """
  import original_files

  for dataset, write in (
    ("cifar10", original_files.write_cifar10),
    ("svhn", original_files.write_svhn),
  ):
    out = tmp_path / f"out_{dataset}"
    comparisons = reproduce.benchmark(
      str(out),
      dataset=dataset,
      data_dir=write(str(tmp_path / dataset)),
      flood_levels=(0.0, 0.05),
      weight_decays=(1e-5,),
      seeds=2,
      epochs=1,
      batch_size=20,
      model_options={"num_filters": 2},
      progress=False,
    )
    (c,) = comparisons
    assert c.flood.shape == (2,) and c.setting.weight_decay == 1e-5
    config = json.loads((out / "reproduce.json").read_text())["config"]
    assert config["model"] == "resnet18" and not config["augment"]
    assert config["split"] == {"train": 40, "val": 10, "test": 20}  # 80:20


@pytest.mark.filterwarnings("ignore::flood_jax._sweep.driver.AtChanceWarning")  # tiny random data
def test_benchmark_augment_holds_out_15_percent(tmp_path):
  """--augment: random crops and flips, and the paper's 85:15 split."""
  import original_files

  out = tmp_path / "out"
  reproduce.benchmark(
    str(out),
    dataset="cifar10",
    data_dir=original_files.write_cifar10(str(tmp_path / "cifar10")),
    augment=True,
    model="cnn",
    flood_levels=(0.0, 0.05),
    weight_decays=(0.0,),
    seeds=2,
    epochs=1,
    batch_size=16,
    model_options={"features": (2,), "hidden": 4},
    progress=False,
  )
  config = json.loads((out / "reproduce.json").read_text())["config"]
  assert config["augment"] and config["split"] == {"train": 42, "val": 8, "test": 20}


# reproduce pbt: PBT against the grid and Halving (issue 31).


@pytest.mark.filterwarnings("ignore::flood_jax._sweep.driver.AtChanceWarning")  # tiny models
def test_pbt_command_tiny_end_to_end_and_read_back(tmp_path, capsys):
  out = tmp_path / "pbt"
  argv = ["reproduce", "pbt", "--dataset", "spiral", "--levels", "0.1,0.3", "--seeds", "2"]
  argv += ["--epochs", "4", "--pbt", "2,0.5", "--prune", "1,2", "--n-test", "30"]
  argv += ["--hidden", "8", "--depth", "1", "--eval-every", "1", "--out", str(out), "--no-progress"]
  code, printed, _ = _cli(argv, capsys)
  assert code == 0
  assert "Test accuracy (%)" in printed and "Test loss" in printed
  assert printed.count("| spiral, noise 0.1, adam |") == 2  # one row in each table
  raw = json.loads((out / "reproduce.json").read_text())
  assert raw["protocol"] == "pbt" and raw["config"]["flood_levels"] == [0.0, 0.1, 0.3]
  assert raw["config"]["pbt"]["interval"] == 2 and raw["config"]["halving"] == [1, 2]
  c = raw["comparisons"][0]
  # grid and PBT train every model every epoch: 3 levels x 2 seeds x 4 epochs
  assert c["model_epochs"]["grid"] == c["model_epochs"]["pbt"] == 24
  assert c["model_epochs"]["halving"] <= 24
  for name in ("test", "loss", "chosen"):
    assert set(c[name]) == {"grid", "halving", "pbt"} and len(c[name]["pbt"]) == 2  # per seed
  assert np.isin(c["chosen"]["grid"], np.array([0.0, 0.1, 0.3], np.float32)).all()
  assert set(c["p_values"]) == {
    f"pbt>{a}_{m}" for a in ("grid", "halving") for m in ("accuracy", "loss")
  }
  table = (out / "pbt_table.md").read_text()
  assert table.count("| spiral, noise 0.1, adam |") == 2 and "24 / " in table
  assert not (out / "checkpoints").exists()

  code, again, _ = _cli(argv, capsys)  # every sweep kept: read back, not trained
  assert code == 0 and again.count("done earlier") == 3
  assert json.loads((out / "reproduce.json").read_text())["comparisons"][0]["test"] == c["test"]


@pytest.mark.parametrize(
  "extra,match",
  [
    (["pbt", "--epochs", "4", "--pbt", "4"], r"never exploits .* interval < 4"),
    (["pbt", "--pbt", "0"], r"INTERVAL >= 1"),
    (["pbt", "--epochs", "4", "--pbt", "2", "--prune", "4"], r"prunes nothing in 4 epochs"),
    (["synthetic", "--pbt", "5"], r"apply to reproduce pbt only"),
  ],
)
def test_pbt_command_errors_are_one_line(extra, match, tmp_path, capsys):
  code, _, err = _cli(["reproduce", *extra, "--out", str(tmp_path / "x")], capsys)
  assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
  assert re.search(match, err), err
