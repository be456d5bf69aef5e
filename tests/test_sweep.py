"""The sweep engine's contract: inside a sweep equals alone, layout independence,
resume equals uninterrupted, shapes, the best level, and errors on bad input."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import optax
import pytest
from helpers import SmallMLP, _Interrupt, _toy_dataset, assert_bitwise_equal

import flood_jax as fj
from flood_jax import _report, _sweep


@pytest.fixture(scope="module")
def data():
  return _toy_dataset()


KW = dict(
  optimizer=optax.sgd(0.05, momentum=0.9), epochs=12, batch_size=20, eval_every=1, progress=False
)
LEVELS = [0.0, 0.2, 0.4]
SEEDS = [0, 3]


@pytest.fixture(scope="module")
def grid(data):
  return fj.sweep(
    SmallMLP(batch_norm=True), data, flood_levels=LEVELS, seeds=SEEDS, chunk_size=2, **KW
  )


def test_history_shapes_and_ranges(grid):
  assert set(grid.history) == {
    "train_loss",
    "val_loss",
    "val_accuracy",
    "test_loss",
    "test_accuracy",
    "flooded_fraction",
  }
  for values in grid.history.values():
    assert values.shape == (3, 2, 12)
    assert np.all(np.isfinite(values))
  for name in ("val_accuracy", "test_accuracy", "flooded_fraction"):
    assert np.all((grid.history[name] >= 0) & (grid.history[name] <= 1))
  kernel = grid.final_params["Dense_0"]["kernel"]
  assert kernel.shape == (3, 2, 2, 32)
  assert grid.final_batch_stats["BatchNorm_0"]["mean"].shape == (3, 2, 32)
  # Training happened: the loss fell from chance, BatchNorm stats moved.
  assert grid.history["train_loss"][0, :, -1].max() < np.log(2)
  assert np.abs(grid.final_batch_stats["BatchNorm_0"]["mean"]).max() > 0


def test_flooding_acts_only_above_the_loss(grid):
  flooded = grid.history["flooded_fraction"]
  assert np.all(flooded[0] == 0)  # b = 0 never floods
  assert flooded[2, :, -4:].mean() > 0.2  # b = 0.4 sits near the loss floor
  # Flooding holds the training loss up: the b = 0.4 models end above b = 0.
  assert np.all(grid.history["train_loss"][2, :, -1] > grid.history["train_loss"][0, :, -1])


def test_models_inside_the_sweep_equal_models_trained_alone(data, grid):
  """Same chunk_size: the same compiled program, so bitwise the same model."""
  for i, level in enumerate(LEVELS):
    for j, seed in enumerate(SEEDS):
      alone = fj.sweep(
        SmallMLP(batch_norm=True), data, flood_levels=[level], seeds=[seed], chunk_size=2, **KW
      )
      for name in grid.history:
        np.testing.assert_array_equal(alone.history[name][0, 0], grid.history[name][i, j])
      jax.tree.map(
        lambda a, b: np.testing.assert_array_equal(a[0, 0], b[i, j]),  # noqa: B023 (called now)
        alone.final_params,
        grid.final_params,
      )
      if (i, j) == (1, 1):
        break  # two models are enough to pin the contract; each costs a compile


def test_default_layout_alone_matches_to_float_tolerance(data, grid):
  """Alone the default chunk is 1 model, in the grid 2: round-off may differ.

  On a small MLP over a few epochs the runs stay within float tolerance.
  """
  alone = fj.sweep(SmallMLP(batch_norm=True), data, flood_levels=[0.2], seeds=[3], **KW)
  np.testing.assert_allclose(
    alone.history["train_loss"][0, 0], grid.history["train_loss"][1, 1], rtol=1e-4, atol=1e-5
  )
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a[0, 0], b[1, 1], rtol=1e-3, atol=1e-4),
    alone.final_params,
    grid.final_params,
  )


def test_results_do_not_depend_on_chunk_size(data, grid):
  whole = fj.sweep(
    SmallMLP(batch_norm=True), data, flood_levels=LEVELS, seeds=SEEDS, chunk_size=6, **KW
  )
  for name in grid.history:
    np.testing.assert_allclose(whole.history[name], grid.history[name], rtol=1e-5, atol=1e-6)


def test_levels_sharing_a_seed_share_init_and_batch_order(data):
  """Two levels that never flood train identically: pairing by seed."""
  result = fj.sweep(
    SmallMLP(), data, flood_levels=[0.0, 1e-6], seeds=[0, 1], chunk_size=4, **dict(KW, epochs=3)
  )
  for name in ("train_loss", "val_loss", "test_accuracy"):
    np.testing.assert_array_equal(result.history[name][0], result.history[name][1])
  assert not np.array_equal(result.history["train_loss"][:, 0], result.history["train_loss"][:, 1])


def test_custom_loss_fn(data):
  def squared_error(logits, labels):
    return ((jax.nn.softmax(logits) - jax.nn.one_hot(labels, 2)) ** 2).sum(-1)

  result = fj.sweep(
    SmallMLP(), data, flood_levels=[0.0, 0.3], loss_fn=squared_error, **dict(KW, epochs=4)
  )
  assert result.config["loss_fn"] == "squared_error"
  assert result.history["train_loss"][0, 0, -1] < 0.5


def test_resumed_sweep_equals_uninterrupted(data, tmp_path, monkeypatch):
  # One device, so the run takes the calls (and interruptions) counted below.
  one_device = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("models",))
  kw = dict(KW, optimizer=optax.adam(1e-2), epochs_per_call=5, chunk_size=2, mesh=one_device)
  run = lambda d: fj.sweep(
    SmallMLP(batch_norm=True), data, flood_levels=LEVELS, seeds=[0], checkpoint_dir=d, **kw
  )
  monkeypatch.setattr(_sweep.checkpoint, "EVERY_S", 0.0)  # save after every call
  full = run(tmp_path / "a")
  with monkeypatch.context() as patch:
    patch.setattr(_sweep.driver, "_progress_bar", lambda *args: _Interrupt(after=4))
    with pytest.raises(KeyboardInterrupt):
      run(tmp_path / "b")  # stops in the second chunk, mid-run
  assert (tmp_path / "b" / "done_00_00000").is_dir()
  assert (tmp_path / "b" / "current").is_dir()
  resumed = run(tmp_path / "b")
  assert_bitwise_equal(resumed, full)


def test_resume_with_other_arguments_is_refused(data, tmp_path):
  fj.sweep(SmallMLP(), data, flood_levels=[0.0], checkpoint_dir=tmp_path, **dict(KW, epochs=2))
  with pytest.raises(ValueError, match="differs in: epochs"):
    fj.sweep(SmallMLP(), data, flood_levels=[0.0], checkpoint_dir=tmp_path, **dict(KW, epochs=3))


def test_best_level_rules_and_summary(grid):
  final = grid.history["val_accuracy"][..., -1].mean(axis=1)
  assert grid.best_flood_level == LEVELS[int(np.argmax(final))]
  best_epoch = grid.history["val_accuracy"].max(-1).mean(axis=1)
  assert grid.best("best_val")["flood_level"] == LEVELS[int(np.argmax(best_epoch))]
  text = grid.summary()
  assert "best flood level" in text and "±" in text
  versus = _report.versus_line(grid)  # is the winner told apart from b = 0 (2 seeds: a line)
  assert versus is not None and text.splitlines()[-1] == versus
  never = 1 if grid.never_flooded() else 0  # a line naming the levels that never flooded
  assert len(text.splitlines()) == 2 + len(LEVELS) + never + 2
  with pytest.raises(ValueError, match="epoch rule"):
    grid.best("last")


def test_save_and_load(grid, tmp_path):
  path = grid.save(tmp_path)
  with open(path) as f:
    raw = json.load(f)
  assert raw["flood_levels"] == pytest.approx(LEVELS)
  assert raw["best_flood_level"] == pytest.approx(grid.best_flood_level)
  loaded = fj.SweepResult.load(tmp_path)
  for name in grid.history:
    np.testing.assert_allclose(loaded.history[name], grid.history[name], rtol=1e-6)
  assert loaded.best_flood_level == pytest.approx(grid.best_flood_level)
  params = np.load(tmp_path / "params.npz")
  assert any("kernel" in k for k in params.files)


@pytest.mark.parametrize(
  "kwargs,match",
  [
    (dict(flood_levels=[]), "non-empty"),
    (dict(flood_levels=[0.1, float("inf")]), "finite number"),
    (dict(flood_levels=[float("nan")]), "finite number"),
    (dict(batch_size=500), "larger than the training set"),
    (dict(batch_size=0), "positive integer"),
    (dict(epochs=0), "positive integer"),
    (dict(seeds=[]), "seeds"),
    (dict(seeds=[1, 1]), "distinct"),
    (dict(chunk_size=0), "positive integer"),
  ],
)
def test_bad_arguments(data, kwargs, match):
  args = dict(KW, flood_levels=[0.0])
  args.update(kwargs)
  with pytest.raises(ValueError, match=match):
    fj.sweep(SmallMLP(), data, **args)


def test_bad_data_and_optimizer(data):
  with pytest.raises(TypeError, match=r"flood_jax\.Dataset"):
    fj.sweep(SmallMLP(), {"x": 1}, flood_levels=[0.0], **KW)
  with pytest.raises(TypeError, match="Optax"):
    fj.sweep(SmallMLP(), data, flood_levels=[0.0], **dict(KW, optimizer="sgd"))


@pytest.mark.parametrize(
  "change,match",
  [
    (dict(y_train=np.zeros(7, np.int32)), "120 examples but y_train has 7"),
    (dict(y_val=np.full(60, 5)), r"labels in \[5, 5\] but num_classes is 2"),
    (dict(x_test=np.full((60, 2), np.nan)), "NaN"),
    (dict(x_val=np.zeros((60, 3))), "differ in shape"),
    (dict(y_train=np.zeros((120, 2))), "targets differ in shape or dtype between splits"),
  ],
)
def test_bad_dataset(data, change, match):
  arrays = {
    k: getattr(data, k) for k in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")
  }
  arrays.update(change)
  with pytest.raises(ValueError, match=match):
    fj.Dataset(num_classes=2, **arrays)


_MULTI_DEVICE_SCRIPT = textwrap.dedent("""
    import json, sys
    import jax, numpy as np, optax
    sys.path.insert(0, {tests!r})
    from helpers import SmallMLP, _spiral_like
    import flood_jax as fj
    assert jax.device_count() == 8, jax.devices()
    x, y = _spiral_like()
    data = fj.Dataset(x_train=x[:120], y_train=y[:120], x_val=x[120:180],
                      y_val=y[120:180], x_test=x[180:], y_test=y[180:])
    out = {{}}
    for devices in (1, 8):
      mesh = jax.make_mesh((devices,), ("models",), devices=jax.devices()[:devices])
      r = fj.sweep(SmallMLP(batch_norm=True), data, flood_levels=[0.0, 0.2, 0.4, 0.6],
                   seeds=[0, 3], chunk_size=1, mesh=mesh, epochs=12, batch_size=20,
                   optimizer=optax.sgd(0.05, momentum=0.9), eval_every=1, progress=False)
      out[devices] = {{k: v.tolist() for k, v in r.history.items()}}
      out[str(devices) + "_devices"] = r.config["devices"]
    print(json.dumps(out))
""")


def test_results_do_not_depend_on_the_number_of_devices():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
  script = _MULTI_DEVICE_SCRIPT.format(tests=os.path.dirname(__file__))
  proc = subprocess.run(
    [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  assert out["1_devices"] == 1 and out["8_devices"] == 8
  for name in out["1"]:
    np.testing.assert_allclose(out["8"][name], out["1"][name], rtol=1e-6, atol=1e-7)


def test_results_do_not_depend_on_epochs_per_call(data):
  """Progress bars and checkpoints split the run into calls; the numbers stay put."""
  runs = [
    fj.sweep(
      SmallMLP(batch_norm=True),
      data,
      flood_levels=[0.0, 0.4],
      seeds=[1],
      chunk_size=2,
      epochs_per_call=k,
      **dict(KW, epochs=6),
    )
    for k in (1, 4, None)
  ]
  for other in runs[1:]:
    for name in runs[0].history:
      np.testing.assert_array_equal(other.history[name], runs[0].history[name])
    jax.tree.map(np.testing.assert_array_equal, other.final_params, runs[0].final_params)
