"""``fj.plan`` and ``memory_limit=``: the layout from XLA's memory analysis, on the CPU."""

import subprocess
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import Mesh

import flood_jax as fj
from flood_jax._sweep import memory
from flood_jax._sweep.layout import plan_layout

LEVELS = np.linspace(0.0, 0.3, 12)


class Net(nn.Module):
  @nn.compact
  def __call__(self, x, train):
    del train
    return nn.Dense(3)(nn.relu(nn.Dense(32)(x)))


@pytest.fixture(scope="module")
def data():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(96, 6)).astype(np.float32)
  y = (np.argmax(x[:, :3], axis=1)).astype(np.int32)
  return fj.Dataset(x_train=x, y_train=y, x_val=x[:32], y_val=y[:32], x_test=x[:32], y_test=y[:32])


def arguments(**changes):
  kwargs = dict(
    flood_levels=LEVELS,
    seeds=[0],
    optimizer=OPTIMIZER,
    epochs=2,
    batch_size=16,
    progress=False,
  )
  return {**kwargs, **changes}


OPTIMIZER = optax.sgd(0.05, momentum=0.9)
MODEL = Net()


@pytest.fixture(scope="module")
def roomy(data):
  """A plan under a limit that fits every model at once."""
  return fj.plan(MODEL, data, **arguments(memory_limit=64 * 2**20))


@pytest.fixture(scope="module")
def tight(data, roomy):
  """A plan under a limit just below ``roomy``'s bytes: fewer models per call."""
  return fj.plan(MODEL, data, **arguments(memory_limit=roomy.bytes_per_device - 1))


def test_the_plan_fits_its_limit_and_a_smaller_limit_gives_fewer_models_per_call(roomy, tight):
  for plan in (roomy, tight):
    assert plan.bytes_per_device is not None and plan.memory_limit is not None
    assert plan.bytes_per_device <= plan.memory_limit
    # Every model is trained, in the calls the plan counts.
    assert plan.calls * plan.models_per_call >= len(LEVELS)
    assert (plan.calls - 1) * plan.models_per_call < len(LEVELS)
  assert roomy.calls == 1
  assert tight.models_per_call < roomy.models_per_call
  assert tight.calls > 1
  assert tight.chosen_by == "memory"


def test_the_planned_bytes_cover_xla_s_own_for_one_training_step_of_as_many_models(data, tight):
  """XLA's peak for one vmapped SGD step of ``chunk_size`` models, apart from the sweep."""
  k = tight.chunk_size
  x = jax.ShapeDtypeStruct((16, data.input_shape[0]), jnp.float32)
  y = jax.ShapeDtypeStruct((16,), jnp.int32)
  tx = optax.chain(fj.flood(0.1), OPTIMIZER)

  def init(key):
    params = MODEL.init(key, jnp.zeros((1, *data.input_shape)), train=False)["params"]
    return params, tx.init(params)

  params, opt_state = jax.eval_shape(
    jax.vmap(init), jax.ShapeDtypeStruct((k,), jax.random.key(0).dtype)
  )

  def step(params, opt_state, x, y):
    def loss_fn(p):
      logits = MODEL.apply({"params": p}, x, train=True)
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params, value=loss)
    return optax.apply_updates(params, updates), opt_state

  compiled = (
    jax.jit(jax.vmap(step, in_axes=(0, 0, None, None)), donate_argnums=(0, 1))
    .lower(params, opt_state, x, y)
    .compile()
  )
  assert tight.bytes_per_device is not None
  assert tight.bytes_per_device >= memory.usage(compiled).peak


def test_a_limit_below_one_model_is_refused_with_the_numbers(data, roomy):
  with pytest.raises(ValueError, match=r"one model does not fit") as err:
    fj.plan(MODEL, data, **arguments(memory_limit=1000))
  message = str(err.value)
  assert "\n" not in message
  assert "per device" in message and "available (memory_limit=1000)" in message
  assert "batch_size" in message and "eval_batch_size" in message


def test_a_given_chunk_size_that_does_not_fit_is_refused(data, tight):
  with pytest.raises(ValueError, match=r"chunk_size=12 needs .* per device but .* allowed"):
    fj.plan(MODEL, data, **arguments(chunk_size=12, memory_limit=tight.memory_limit))


def test_sweep_runs_the_plan_of_fj_plan_and_its_results_do_not_depend_on_the_layout(data, tight):
  result = fj.sweep(MODEL, data, **arguments(memory_limit=tight.memory_limit))
  assert result.plan == tight
  assert result.config["chunk_size"] == tight.chunk_size
  assert result.plan.bytes_per_device == tight.bytes_per_device
  # Another layout: the same models to float round-off (the README's
  # contract; b = 0 has no flip to part the runs).
  other = fj.sweep(MODEL, data, **arguments(chunk_size=1, flood_levels=[0.0]))
  level0 = np.asarray(result.history["val_loss"])[0]
  np.testing.assert_allclose(np.asarray(other.history["val_loss"])[0], level0, rtol=1e-5)


class Wide(nn.Module):
  @nn.compact
  def __call__(self, x, train):
    del train
    return nn.Dense(3)(nn.relu(nn.Dense(40)(x)))


def test_a_one_device_sweep_runs_the_call_its_plan_compiled(data):
  from helpers import xla_compiles

  one_device = Mesh(np.asarray(jax.devices()[:1]), ("models",))
  kw = arguments(mesh=one_device, eval_every=1)
  fj.clear_caches()
  with xla_compiles() as compiles:
    planned = fj.sweep(Wide(), data, memory_limit=64 * 2**20, **kw)
  # The plan compiled the call of all 12 models (they fit) and the sweep ran it: besides it,
  # only the initialization compiled.
  assert planned.plan.chunk_size == len(LEVELS) and planned.plan.measured == {
    len(LEVELS): planned.plan.bytes_per_device
  }
  assert len(compiles) == 2
  fj.clear_caches()
  alone = fj.sweep(Wide(), data, chunk_size=len(LEVELS), **kw)  # through jax.jit
  for name in alone.history:
    np.testing.assert_array_equal(planned.history[name], alone.history[name])


def test_on_a_cpu_without_a_limit_the_layout_is_the_cpu_s_and_nothing_is_measured(data):
  result = fj.sweep(MODEL, data, **arguments())
  _, _, expected = plan_layout(MODEL, data, len(LEVELS), 16)
  assert result.plan.chunk_size == expected == result.config["chunk_size"]
  assert result.plan.chosen_by == "cpu"
  assert result.plan.bytes_per_device is None and result.plan.memory_limit is None
  # fj.plan reports the bytes of that same layout.
  plan = fj.plan(MODEL, data, **arguments())
  assert plan.chunk_size == expected and plan.bytes_per_device is not None
  text = str(plan)
  assert f"{expected} per device per call" in text and "memory per device" in text


def test_a_timed_plan_estimates_the_seconds_per_epoch_from_a_few_real_epochs(data, tight):
  plan = fj.plan(MODEL, data, timed=True, **arguments(memory_limit=tight.memory_limit))
  assert plan == tight  # the same layout, timed
  assert plan.seconds_per_epoch is not None and plan.first_epoch_seconds is not None
  assert 0 < plan.seconds_per_epoch < plan.first_epoch_seconds  # the first one compiles
  assert plan.epochs == arguments()["epochs"]
  assert "per epoch of all" in str(plan) and "time:" not in str(tight)


def test_the_plan_reads_as_models_calls_and_memory_by_part(tight):
  text = str(tight)
  assert f"{tight.chunk_size} per device per call" in text
  assert f"{tight.calls} calls" in text
  for part in ("data", "models", "work", "fit:"):
    assert part in text


@pytest.mark.parametrize(
  ("text", "expected"),
  [
    ("16GB", 16 * 10**9),
    ("8GiB", 8 * 2**30),
    ("500 MB", 5 * 10**8),
    ("1.5KiB", 1536),
    (4096, 4096),
  ],
)
def test_memory_sizes_parse(text, expected):
  assert memory.parse_bytes(text) == expected


@pytest.mark.parametrize("bad", ["16 parsecs", "-1GB", "", 0])
def test_a_bad_memory_size_is_one_line(bad):
  with pytest.raises(ValueError, match="memory_limit must be"):
    memory.parse_bytes(bad)


def test_the_chunk_chooser_refits_when_xla_needs_more_than_the_line():
  """A program whose bytes jump past 10 models: the check at the chosen size catches it."""
  compiled = []

  def measure(k):
    compiled.append(k)
    peak = 100 + 10 * k + (1000 if k > 10 else 0)
    return memory.Usage(arguments=peak, outputs=0, aliased=0, temporaries=0)

  choice = memory.choose_chunk(measure, 400, 40, refuse=lambda one, usable: ValueError("x"))
  assert measure(choice.chunk_size).arguments <= 400
  assert choice.chunk_size <= 10
  # 40 models per device in calls of equal size (evened out): 40 / calls.
  assert 40 % choice.chunk_size == 0 or choice.chunk_size == memory.even_chunk(40, 10)
  assert len(set(compiled)) <= 6  # a few compilations, not a search over every size
  with pytest.raises(ValueError, match="x"):
    memory.choose_chunk(measure, 50, 40, refuse=lambda one, usable: ValueError("x"))


# diabetes: a regression set, whose plan is that of fj.sweep(task=fj.Regression()).
@pytest.mark.parametrize("dataset", ["two_gaussians", "diabetes"])
def test_the_dry_run_prints_the_plan_quickly_and_trains_nothing(tmp_path, dataset):
  start = time.perf_counter()
  proc = subprocess.run(
    [
      sys.executable,
      "-m",
      "flood_jax",
      "sweep",
      "--dataset",
      dataset,
      "--levels",
      "0:0.3:8",
      "--seeds",
      "2",
      "--epochs",
      "3",
      "--hidden",
      "16",
      "--depth",
      "1",
      "--out",
      str(tmp_path / "run"),
      "--dry-run",
      "--memory-limit",
      "16GB",
    ],
    capture_output=True,
    text=True,
    timeout=120,
    cwd=tmp_path,
  )
  seconds = time.perf_counter() - start
  assert proc.returncode == 0, proc.stderr
  assert "per device per call" in proc.stdout and "memory per device" in proc.stdout
  assert "of 14.9 GiB allowed" in proc.stdout  # 16 GB = 16e9 bytes
  assert "per epoch of all 16 models" in proc.stdout  # 8 levels x 2 seeds, timed
  assert not (tmp_path / "run").exists()
  assert seconds < 60


def test_the_dry_run_refuses_a_limit_below_one_model_in_one_line(tmp_path):
  proc = subprocess.run(
    [
      sys.executable,
      "-m",
      "flood_jax",
      "sweep",
      "--dataset",
      "two_gaussians",
      "--epochs",
      "3",
      "--hidden",
      "16",
      "--depth",
      "1",
      "--dry-run",
      "--memory-limit",
      "10KB",
    ],
    capture_output=True,
    text=True,
    timeout=120,
    cwd=tmp_path,
  )
  assert proc.returncode != 0
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and "one model does not fit" in lines[0]
