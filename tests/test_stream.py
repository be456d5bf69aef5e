"""Streams and the Population: a loop of your own, data sent from the host.

A model trained in a Population equals the same model trained alone with
``optax.chain(fj.flood(b), optimizer)``; a streamed sweep equals a Population driven by hand on
the same batches; a grain source gives the same sweep twice; a killed streamed sweep resumes to
the uninterrupted result; Halving and the trackers work on a stream; bad batches are one line.
"""

import os
import subprocess
import sys
import textwrap

import flax.linen as nn
import grain
import jax
import numpy as np
import optax
import pytest
from helpers import SmallMLP, _Interrupt, assert_bitwise_equal

import flood_jax as fj
from flood_jax import _sweep

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LEVELS = [0.0, 0.3, 0.6]
SEEDS = [0, 1]
BATCH = 16
OPTIMIZER = optax.sgd(0.1, momentum=0.9)


def _arrays(n=96, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, 4)).astype(np.float32)
  y = ((np.sin(2 * x[:, 0]) > x[:, 1]) ^ (rng.random(n) < 0.1)).astype(np.int32)
  return x, y


X, Y = _arrays()
XV, YV = _arrays(40, seed=1)


def batches(epoch):
  order = np.random.default_rng(epoch).permutation(len(Y))
  for i in range(0, len(Y), BATCH):
    yield X[order[i : i + BATCH]], Y[order[i : i + BATCH]]


def val_batches():  # two sizes: the mean is over examples
  return [(XV[:24], YV[:24]), (XV[24:], YV[24:])]


def _stream():
  return fj.Stream(train=batches, val=val_batches, test=val_batches)


def _by_hand(model, epochs, objective="flood"):
  """A Population driven by hand: per epoch, its metrics as a streamed sweep's history."""
  pop = fj.Population(model, optimizer=OPTIMIZER, flood_levels=LEVELS, seeds=SEEDS,
                      objective=objective)  # fmt: skip
  state = pop.init(X[:BATCH])
  history = []
  for epoch in range(epochs):
    losses, flooded = [], []
    for x, y in batches(epoch):
      state, metrics = pop.train_step(state, x, y)
      losses.append(metrics["loss"])
      flooded.append(metrics["flooded"])
    scores = pop.evaluate(state, val_batches())
    history.append(
      {
        "train_loss": np.mean(losses, axis=0),
        "val_loss": scores["loss"],
        "val_accuracy": scores["accuracy"],
        "flooded_fraction": np.mean(np.asarray(flooded, np.float32), axis=0),
      }
    )
  return pop, state, history


@pytest.fixture(scope="module")
def streamed():
  return fj.sweep(SmallMLP(batch_norm=True), _stream(), flood_levels=LEVELS, seeds=SEEDS,
                  optimizer=OPTIMIZER, epochs=3, chunk_size=6, progress=False)  # fmt: skip


@pytest.fixture(scope="module")
def by_hand():
  return _by_hand(SmallMLP(batch_norm=True), epochs=3)


def test_population_equals_models_trained_alone(by_hand):
  pop, state, _ = by_hand
  model = SmallMLP(batch_norm=True)
  assert state.params["Dense_0"]["kernel"].shape == (3, 2, 4, 32)
  assert pop.shape == (3, 2) and pop.axes == ("flood_level", "seed")
  for i, level in enumerate(LEVELS):
    for j, seed in enumerate(SEEDS):
      if (i, j) not in ((0, 0), (2, 1)):
        continue  # two models pin it; each costs a compile
      with jax.threefry_partitionable(False):  # the sweep's keys
        variables = model.init(jax.random.split(jax.random.key(seed))[0], X[:1], train=False)
      params, stats = variables["params"], variables["batch_stats"]
      tx = optax.chain(fj.flood(level), OPTIMIZER)
      opt_state = tx.init(params)

      @jax.jit
      def step(params, stats, opt_state, x, y, tx=tx):
        def loss_fn(p):
          logits, updates = model.apply({"params": p, "batch_stats": stats}, x, train=True,
                                        mutable=["batch_stats"])  # fmt: skip
          loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
          return loss, updates["batch_stats"]

        (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params, value=loss)
        return optax.apply_updates(params, updates), stats, opt_state

      for epoch in range(3):
        for x, y in batches(epoch):
          params, stats, opt_state = step(params, stats, opt_state, x, y)
      pick = lambda tree, i=i, j=j: jax.tree.map(lambda a: np.asarray(a[i, j]), tree)
      check = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
      jax.tree.map(check, params, pick(state.params))
      jax.tree.map(check, stats, pick(state.model_state))


def test_streamed_sweep_equals_a_population_driven_by_hand(streamed, by_hand):
  _, state, history = by_hand
  assert streamed.history["val_loss"].shape == (3, 2, 3)
  for epoch, expected in enumerate(history):
    for name, value in expected.items():
      np.testing.assert_allclose(streamed.history[name][..., epoch], value, rtol=1e-5,
                                 atol=1e-6, err_msg=name)  # fmt: skip
  np.testing.assert_allclose(streamed.history["test_loss"], streamed.history["val_loss"])
  check = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  jax.tree.map(check, streamed.final_params, state.params)
  jax.tree.map(check, streamed.final_batch_stats, state.model_state)
  # Flooding acted: the highest level ascended on some steps, b = 0 never did.
  assert streamed.history["flooded_fraction"][0].max() == 0
  assert streamed.history["flooded_fraction"][2].max() > 0
  assert "train=batches" in streamed.config["data"]


def test_population_levels_are_an_input_and_iflood_trains(by_hand):
  pop, state, _ = by_hand
  levels = np.full(pop.shape, 5.0, np.float32)  # above every loss: every step ascends
  state = state.with_flood_levels(levels)
  np.testing.assert_array_equal(state.flood_levels, levels)
  state, metrics = pop.train_step(state, X[:BATCH], Y[:BATCH])
  assert np.all(np.asarray(metrics["flooded"]))
  with pytest.raises(ValueError, match="grid's shape"):
    state.with_flood_levels([1.0, 2.0])
  pop, state, history = _by_hand(fj.Model(*_linear()), epochs=1, objective="iflood")
  assert np.all(np.isfinite(history[0]["val_loss"]))
  assert history[0]["flooded_fraction"][2].mean() > history[0]["flooded_fraction"][0].mean()


def _linear():
  def init(key, x):
    return {"w": jax.random.normal(key, (x.shape[-1], 2)) * 0.1}

  def apply(params, x, train):
    return x @ params["w"]

  return init, apply


def test_grain_map_dataset_gives_the_same_sweep_twice():
  examples = grain.MapDataset.source([(X[i], Y[i]) for i in range(len(Y))])
  kw = dict(flood_levels=[0.0, 0.5], optimizer=OPTIMIZER, epochs=2, batch_size=BATCH,
            progress=False)  # fmt: skip
  stream = fj.Stream(train=examples, val=val_batches, seed=3)
  first = fj.sweep(fj.Model(*_linear()), stream, **kw)
  second = fj.sweep(fj.Model(*_linear()), fj.Stream(train=examples, val=val_batches, seed=3), **kw)
  assert_bitwise_equal(first, second)
  other = fj.sweep(fj.Model(*_linear()), fj.Stream(train=examples, val=val_batches, seed=4), **kw)
  assert not np.array_equal(other.history["val_loss"], first.history["val_loss"])
  epochs = [list(stream.epoch(e)) for e in range(2)]
  assert [len(e) for e in epochs] == [len(Y) // BATCH] * 2
  seen = np.sort(np.concatenate([y for _, y in epochs[0]]))
  assert not np.array_equal(epochs[0][0][1], epochs[1][0][1])  # reshuffled each epoch
  assert seen.size == len(Y) // BATCH * BATCH


def test_killed_streamed_sweep_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
  def run(directory):
    return fj.sweep(SmallMLP(), _stream(), flood_levels=LEVELS[:2], seeds=[0], epochs=4,
                    optimizer=OPTIMIZER, chunk_size=1, checkpoint_dir=directory)  # fmt: skip

  monkeypatch.setattr(_sweep.checkpoint, "EVERY_S", 0.0)  # save after every call
  full = run(tmp_path / "a")
  with monkeypatch.context() as patch:
    patch.setattr(_sweep.driver, "_progress_bar", lambda *args: _Interrupt(after=2))
    with pytest.raises(KeyboardInterrupt):
      run(tmp_path / "b")  # after two of four epochs
  resumed = run(tmp_path / "b")
  assert_bitwise_equal(resumed, full)


class _Recorder(fj.loggers.Logger):
  def __init__(self):
    self.steps = {}

  def log(self, run, step, metrics):
    self.steps.setdefault(run.index, []).append(step)


def test_halving_and_trackers_on_a_stream():
  kw = dict(flood_levels=[0.0, 0.2, 0.4, 0.6], optimizer=OPTIMIZER, epochs=4, chunk_size=1,
            progress=False)  # fmt: skip
  model = fj.Model(*_linear())
  full = fj.sweep(model, _stream(), **kw)
  recorder = _Recorder()
  pruned = fj.sweep(model, _stream(), prune=fj.Halving(min_epochs=2, factor=2),
                    loggers=[recorder], **kw)  # fmt: skip
  kept = np.flatnonzero(pruned.pruned_at == 0)
  assert len(kept) == 2 and np.all(pruned.pruned_at[pruned.pruned_at > 0] == 2)
  for name in full.history:  # survivors bitwise as unpruned (a fixed chunk_size)
    np.testing.assert_array_equal(pruned.history[name][kept], full.history[name][kept])
  assert sorted(recorder.steps) == [0, 1, 2, 3]
  assert recorder.steps[int(kept[0])] == [1, 2, 3, 4]


def test_stream_errors_are_one_line():
  kw = dict(flood_levels=[0.0], optimizer=OPTIMIZER, epochs=2, progress=False)
  model = fj.Model(*_linear())

  def short_third(epoch):
    for i, (x, y) in enumerate(batches(epoch)):
      yield (x[:5], y[:5]) if i == 2 else (x, y)

  with pytest.raises(ValueError, match=r"training batch 2 of epoch 0 is .*float32\[5, 4\].* but"
                                       r" the first batch was .*float32\[16, 4\]"):  # fmt: skip
    fj.sweep(model, fj.Stream(train=short_third), **kw)
  with pytest.raises(ValueError, match="epoch 1 of the stream has no batch"):
    fj.sweep(model, fj.Stream(train=lambda e: batches(e) if e == 0 else iter(())), **kw)
  with pytest.raises(ValueError, match="batch_size=8 but the stream's batches hold 16"):
    fj.sweep(model, _stream(), batch_size=8, **kw)
  examples = grain.MapDataset.source([(X[i], Y[i]) for i in range(8)])
  with pytest.raises(ValueError, match=r"pass fj.sweep.*batch_size=B"):
    fj.sweep(model, fj.Stream(train=examples), **kw)
  with pytest.raises(ValueError, match=r"objective=.adaflood. reads"):
    fj.sweep(model, _stream(), objective="adaflood", **dict(kw, flood_levels=None))
  with pytest.raises(TypeError, match="train must be a callable"):
    fj.Stream(train=[(X, Y)])
  with pytest.raises(ValueError, match="not an \\(x, y\\) pair"):
    fj.sweep(model, fj.Stream(train=lambda e: [X]), **kw)
  with pytest.raises(TypeError, match=r"train\(0\) must give an iterable of \(x, y\) batches"):
    fj.sweep(model, fj.Stream(train=lambda e: None), **kw)
  bad_labels = lambda e: [(x, y + 2 * (i == 1)) for i, (x, y) in enumerate(batches(e))]
  with pytest.raises(ValueError, match=r"training batch 1 of epoch 0 has labels in \[.*, 3\] but"
                                       r" the model outputs 2 logits"):  # fmt: skip
    fj.sweep(model, fj.Stream(train=bad_labels), **kw)
  with pytest.raises(ValueError, match="training batch 0 of epoch 0 holds NaN"):
    fj.sweep(model, fj.Stream(train=lambda e: [(X[:8] * np.inf, Y[:8])]), **kw)
  with pytest.raises(TypeError, match="needs batch_size="):
    fj.sweep(model, fj.Dataset(x_train=X, y_train=Y, x_val=X, y_val=Y, x_test=X, y_test=Y), **kw)


def test_population_errors_are_one_line():
  pop = fj.Population(fj.Model(*_linear()), optimizer=OPTIMIZER, flood_levels=[0.0, 0.1])
  with pytest.raises(ValueError, match=r"call pop\.init"):
    pop.train_step(None, X[:4], Y[:4])
  state = pop.init(X[:4])
  state, _ = pop.train_step(state, X[:4], Y[:4])
  with pytest.raises(ValueError, match="inputs per example are"):
    pop.train_step(state, X[:4, :3], Y[:4])
  with pytest.raises(ValueError, match="structured as"):
    pop.train_step(state, {"x": X[:4]}, Y[:4])
  with pytest.raises(ValueError, match="holds NaN or infinite values"):
    pop.train_step(state, X[:4] * np.nan, Y[:4])
  with pytest.raises(ValueError, match=r"differ in length \(\[3, 4\]\)"):
    pop.train_step(state, X[:4], Y[:3])
  with pytest.raises(ValueError, match=r"labels in .* the model outputs 2 logits"):
    pop.evaluate(state, [(X[:4], Y[:4] + 5)])
  with pytest.raises(ValueError, match="objective must be one of"):
    fj.Population(nn.Dense(2), optimizer=OPTIMIZER, flood_levels=[0.0], objective="adaflood")
  with pytest.raises(ValueError, match="no batch"):
    pop.evaluate(state, [])


def test_data_larger_than_memory_streams_in_bounded_memory(tmp_path):
  """A 2.4 GiB training file, read in batches by a sweep of 4 models: well under 1.4 GiB."""
  path = tmp_path / "train.f32"
  rows, width = 800_000, 784  # 800,000 x 784 float32 = 2.34 GiB
  script = textwrap.dedent(f"""
    import numpy as np, optax
    import flood_jax as fj
    path, rows, width, batch = {str(path)!r}, {rows}, {width}, 4000
    with open(path, "wb") as f:  # written in pieces: the process never holds it
      piece = np.random.default_rng(0).normal(size=(20_000, width)).astype(np.float32)
      for _ in range(rows // 20_000):
        f.write(piece.tobytes())
    def train(epoch):
      with open(path, "rb") as f:
        for i in range(rows // batch):
          x = np.fromfile(f, np.float32, batch * width).reshape(batch, width)
          yield x, (x[:, 0] > 0).astype(np.int32)
    def init(key, x):
      return {{"w": np.zeros((x.shape[-1], 2), np.float32)}}
    result = fj.sweep(fj.Model(init, lambda p, x, train: x @ p["w"]), fj.Stream(train=train),
                      flood_levels=[0.0, 0.1, 0.2, 0.3], optimizer=optax.sgd(0.01), epochs=1,
                      progress=False)
    assert np.all(np.isfinite(result.history["train_loss"]))
    # The peak of this process's own memory (VmHWM; ru_maxrss would also count the pages
    # of the parent it was forked from, here a pytest worker holding its compiled programs).
    with open("/proc/self/status") as f:
      print(next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM")))
  """)
  env = dict(os.environ, PYTHONPATH=ROOT)
  out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                       timeout=120, check=False)  # fmt: skip
  assert out.returncode == 0, out.stderr[-2000:]
  assert os.path.getsize(path) > 2.3 * 2**30
  peak = int(out.stdout.split()[-1])
  assert peak < 1.4 * 2**30, f"peak {peak / 2**30:.2f} GiB"
