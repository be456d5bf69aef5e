"""The engine's parts on their own: SweepSpec's checks, Layout.chunks, EvalPlan, the policies
and the checkpoint store (the whole loop is tested through fj.sweep elsewhere)."""

import threading

import flax.linen as nn
import jax
import numpy as np
import optax
import pytest
from helpers import SmallMLP, _toy_dataset, assert_bitwise_equal, xla_compiles

import flood_jax as fj
from flood_jax._sweep import checkpoint, compiled, driver
from flood_jax._sweep.layout import Layout
from flood_jax._sweep.prune import NoPruning
from flood_jax._sweep.schedule import EvalPlan
from flood_jax._sweep.spec import SweepSpec

ARGS = dict(
  flood_levels=[0.0, 0.1],
  seeds=[0],
  optimizer=optax.sgd(0.1),
  epochs=4,
  batch_size=20,
  hyperparams=None,
  objective="flood",
  per_example_levels=None,
  gamma=None,
  augment=None,
  loss_fn=None,
  chunk_size=None,
  mesh=None,
  epochs_per_call=None,
  eval_every=None,
  train_eval_size=1000,
  eval_test=True,
  eval_batch_size=2048,
  checkpoint_dir=None,
  progress=False,
  gather_params=True,
  prune=None,
  loggers=None,
)


@pytest.fixture(scope="module")
def data():
  return _toy_dataset()


def test_a_spec_is_frozen_and_records_what_the_sweep_computes(data):
  spec = SweepSpec.from_arguments(SmallMLP(width=8), data, **ARGS)
  assert spec.level_name == "flood_level" and isinstance(spec.policy, NoPruning)
  assert spec.train.hyperparams == () and spec.train.is_classification
  with pytest.raises(AttributeError):
    spec.epochs = 5  # type: ignore[misc]
  # Equal arguments give equal program keys (the cache serves the second sweep).
  assert SweepSpec.from_arguments(SmallMLP(width=8), data, **ARGS).train == spec.train


@pytest.mark.parametrize(
  ("change", "error", "match"),
  [
    (dict(epochs=0), ValueError, "epochs must be a positive integer"),
    (dict(batch_size=True), ValueError, "batch_size must be a positive integer"),
    (dict(objective="floods"), ValueError, "objective must be one of"),
    (dict(gamma=[0.5]), ValueError, "gamma is AdaFlood's"),
    (dict(flood_levels=None), TypeError, "needs flood_levels"),
    (dict(prune=3), TypeError, "prune must be fj.Halving"),
    (dict(prune=fj.Halving(10)), ValueError, "never prunes a sweep of 4 epochs"),
    (dict(train_eval_size=-1), ValueError, "train_eval_size must be"),
    (dict(optimizer="sgd"), TypeError, "optimizer must be an Optax"),
  ],
)
def test_a_spec_refuses_bad_arguments_in_one_line(data, change, error, match):
  with pytest.raises(error, match=match) as caught:
    SweepSpec.from_arguments(SmallMLP(width=8), data, **dict(ARGS, **change))
  assert "\n" not in str(caught.value)


def test_layout_chunks_pad_the_last_call_with_copies_of_its_last_model():
  layout = Layout(devices=tuple(jax.devices()[:1]), num_devices=1, chunk_size=3)
  chunks = layout.chunks(np.array([0, 2, 4, 5, 7]))
  assert [c.call for c in chunks] == [0, 1]
  assert chunks[0].index.tolist() == [0, 2, 4] and chunks[0].real == 3
  assert chunks[1].index.tolist() == [5, 7, 7] and chunks[1].models.tolist() == [5, 7]


def test_an_eval_plan_ends_its_calls_at_the_rungs():
  plan = EvalPlan.plan(
    epochs=12, eval_every=None, eval_sizes=(10, 10, 10), eval_batch_size=64,
    trained_per_epoch=1000, rungs=(3, 6), epochs_per_call=None, streamed=False, chunk_size=2,
  )  # fmt: skip
  assert plan.epochs_per_call == 3 and plan.stops == (3, 6, 12)
  assert plan.lengths(6, 12) == [3, 3]
  assert set(plan.eval_epochs.tolist()) >= {3, 6, 12}
  assert plan.call(3).also_evaluate == (3, 6)
  given = EvalPlan.plan(
    epochs=10, eval_every=2, eval_sizes=(0, 10, 0), eval_batch_size=64,
    trained_per_epoch=100, rungs=(), epochs_per_call=4, streamed=True, chunk_size=1,
  )  # fmt: skip
  assert given.lengths(0, 10) == [4, 4, 2] and given.eval_epochs.tolist() == [2, 4, 6, 8, 10]


def test_no_pruning_keeps_everyone_and_the_null_store_keeps_nothing():
  alive = np.arange(4)
  assert NoPruning().survivors(np.zeros((4, 3, 6)), alive, None, 2, 3) is alive
  assert NoPruning().rungs(10) == () and NoPruning().record() is None
  store = checkpoint.NullStore()
  store.save_done(0, 0, np.arange(2), [np.zeros(2)], np.zeros((2, 1, 6)))
  assert store.load_done(0, 0, np.arange(2)) is None and not store.due()


def test_a_store_round_trip_gives_back_what_a_finished_call_saved(data, tmp_path):
  store = checkpoint.CheckpointStore(str(tmp_path / "ckpt"), {"sweep": "test"})
  try:
    models, leaves = np.array([3, 4, 4]), [np.arange(6.0).reshape(3, 2), np.ones(3, np.int32)]
    history = np.random.default_rng(0).normal(size=(3, 2, 6)).astype(np.float32)
    store.save_done(1, 2, models, leaves, history)
    assert store.finished_calls() == [(1, 2)]
    rows, back = store.load_done(1, 2, models)
    np.testing.assert_array_equal(rows, history)
    for a, b in zip(back, leaves, strict=True):
      np.testing.assert_array_equal(a, b)
    assert store.load_done(1, 2, np.array([3, 4, 5])) is None  # other models: not this call
  finally:
    store.close()


def test_the_driver_runs_a_spec_as_fj_sweep_does(data):
  kw = {k: v for k, v in ARGS.items() if k not in ("hyperparams",)}
  spec = SweepSpec.from_arguments(SmallMLP(width=8), data, **dict(ARGS, chunk_size=2))
  assert_bitwise_equal(
    driver.run(spec), fj.sweep(SmallMLP(width=8), data, **dict(kw, chunk_size=2))
  )


# -- the training call compiled ahead, beside the initialization ---------------------------

SEVERAL_CALLS = dict(flood_levels=[0.0, 0.1, 0.2, 0.3, 0.4, 0.5], seeds=[0], epochs=4,
                     batch_size=20, chunk_size=2, epochs_per_call=2, progress=False)  # fmt: skip


def _sweep(width, optimizer=None):
  return fj.sweep(SmallMLP(width=width), _toy_dataset(), optimizer=optimizer or optax.sgd(0.1),
                  **SEVERAL_CALLS)  # fmt: skip


def test_the_call_compiled_ahead_serves_every_chunk_and_call_and_equals_jit(monkeypatch):
  # Three chunks of two calls each: two programs (init and the call) compiled, once.
  with xla_compiles() as ahead:
    result = _sweep(width=7)
  assert len(ahead) == 2
  with xla_compiles() as again:
    second = _sweep(width=7, optimizer=optax.sgd(0.1))  # fresh, equal arguments
  assert again == []
  assert_bitwise_equal(result, second)
  # Without compiling ahead (every call through jax.jit): the same programs, the same numbers.
  fj.clear_caches()
  monkeypatch.setattr(compiled.Program, "compile_ahead", lambda self, *args: None)
  with xla_compiles() as jitted:
    alone = _sweep(width=7)
  assert len(jitted) == 2
  assert_bitwise_equal(result, alone)


def test_a_failed_compile_ahead_falls_back_to_jit(monkeypatch):
  fj.clear_caches()
  reference = _sweep(width=5)
  fj.clear_caches()

  def fail(future, fn):
    future.set_exception(RuntimeError("simulated: out of memory while compiling"))

  monkeypatch.setattr(compiled, "_fill", fail)
  assert_bitwise_equal(_sweep(width=5), reference)


_SETTING = threading.local()


class _ReadsASetting(nn.Module):
  """Scales its output by a thread-local setting read while tracing (as JAX's and Flax's are)."""

  @nn.compact
  def __call__(self, x, train: bool):
    return nn.Dense(2)(x) * getattr(_SETTING, "scale", 1.0)


class _Scaled(nn.Module):
  scale: float

  @nn.compact
  def __call__(self, x, train: bool):
    return nn.Dense(2)(x) * self.scale


def test_the_call_is_traced_under_the_callers_thread_local_settings():
  kw = dict(SEVERAL_CALLS, optimizer=optax.sgd(0.1))
  _SETTING.scale = 3.0
  try:
    read = fj.sweep(_ReadsASetting(), _toy_dataset(), **kw)
  finally:
    del _SETTING.scale
  assert_bitwise_equal(read, fj.sweep(_Scaled(3.0), _toy_dataset(), **kw))
