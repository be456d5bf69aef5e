"""Compile once, evaluate on demand: the program cache serves equal computations
and never a stale one; the evaluation schedule changes what is recorded, not
what is trained."""

import flax.linen as nn
import jax
import numpy as np
import optax
import pytest
from helpers import _plain_model, _toy

import flood_jax as fj
from flood_jax._sweep import cache as program_cache


class Net(nn.Module):
  width: int = 16

  @nn.compact
  def __call__(self, x, train):
    return nn.Dense(2)(nn.relu(nn.Dense(self.width)(x)))


@pytest.fixture(scope="module")
def data():
  return _toy()


KW = dict(flood_levels=[0.0, 0.2], seeds=[0], epochs=6, batch_size=16, progress=False, chunk_size=2)


def test_equal_fresh_arguments_reuse_the_compiled_program(data):
  first = fj.sweep(Net(), data, optimizer=optax.sgd(0.05, momentum=0.9), eval_every=1, **KW)
  program = program_cache.last_program()  # the one just used
  # A new model object, a new optimizer, a new loss function: all equal.
  loss = lambda logits, y: optax.softmax_cross_entropy_with_integer_labels(logits, y)
  again = fj.sweep(
    Net(), data, optimizer=optax.sgd(0.05, momentum=0.9), eval_every=1, loss_fn=loss, **KW
  )
  assert program_cache.last_program() is program  # served, not rebuilt
  for name in first.history:
    np.testing.assert_array_equal(first.history[name], again.history[name])


def test_a_changed_hyperparameter_is_never_served_a_stale_program(data):
  computations = []

  def sweep(model, learning_rate):
    result = fj.sweep(
      model, data, optimizer=optax.sgd(learning_rate, momentum=0.9), eval_every=1, **KW
    )
    computations.append(program_cache.last_program().computation_key())
    return result

  slow, fast, wide = sweep(Net(), 0.01), sweep(Net(), 0.2), sweep(Net(width=24), 0.01)
  assert not np.allclose(slow.history["train_loss"], fast.history["train_loss"])
  assert not np.allclose(slow.history["train_loss"], wide.history["train_loss"])
  assert wide.final_params["Dense_1"]["kernel"].shape[-1] == 24  # Dense_0 is the output
  # The three programs' computation keys differ, as their computations do.
  assert len(set(computations)) == 3


def test_eval_every_records_the_evaluated_epochs_and_changes_nothing_else(data):
  every = fj.sweep(_plain_model(), data, optimizer=optax.sgd(0.1), eval_every=1, **KW)
  sparse = fj.sweep(_plain_model(), data, optimizer=optax.sgd(0.1), eval_every=4, **KW)
  np.testing.assert_array_equal(every.epochs, np.arange(1, 7))
  np.testing.assert_array_equal(sparse.epochs, [4, 6])  # every 4th and the last
  assert sparse.history["val_loss"].shape == (2, 1, 2)
  assert sparse.num_epochs == 6
  for name in every.history:
    np.testing.assert_array_equal(sparse.history[name], every.history[name][..., [3, 5]])
  jax.tree.map(np.testing.assert_array_equal, sparse.final_params, every.final_params)
  # Early stopping chooses among evaluated epochs only.
  assert set(sparse.stopping_epoch("best_val").ravel()) <= {0, 1}


def test_epochs_per_call_that_does_not_divide_the_epochs(data):
  whole = fj.sweep(_plain_model(), data, optimizer=optax.sgd(0.1), eval_every=1, **KW)
  pieces = fj.sweep(
    _plain_model(), data, optimizer=optax.sgd(0.1), eval_every=1, epochs_per_call=4, **KW
  )
  for name in whole.history:
    np.testing.assert_array_equal(whole.history[name], pieces.history[name])


def test_what_is_evaluated(data):
  full = fj.sweep(
    _plain_model(), data, optimizer=optax.sgd(0.1), eval_every=1, train_eval_size=None, **KW
  )
  sub = fj.sweep(
    _plain_model(),
    data,
    optimizer=optax.sgd(0.1),
    eval_every=1,
    train_eval_size=20,
    eval_test=False,
    **KW,
  )
  none = fj.sweep(
    _plain_model(), data, optimizer=optax.sgd(0.1), eval_every=1, train_eval_size=0, **KW
  )
  assert np.all(np.isnan(sub.history["test_loss"])) and np.all(np.isnan(none.history["train_loss"]))
  np.testing.assert_allclose(sub.history["val_loss"], full.history["val_loss"], rtol=1e-6)
  assert not np.allclose(sub.history["train_loss"], full.history["train_loss"])
  assert sub.config["train_eval_size"] == 20 and sub.config["eval_test"] is False
  # The full-set training loss is the mean of the per-example losses.
  kept = jax.tree.map(lambda a: a[0, 0], full.final_params)
  logits = _plain_model().apply(kept, data.x_train, False)
  expected = optax.softmax_cross_entropy_with_integer_labels(logits, data.y_train).mean()
  np.testing.assert_allclose(full.history["train_loss"][0, 0, -1], expected, rtol=1e-5)


def test_default_schedule_keeps_evaluation_cheap():
  from flood_jax._sweep.schedule import auto_eval_every, evaluated_epochs

  # 2,000 training examples, 1,000 + 1,000 + 1,000 evaluated: every 5th epoch.
  assert auto_eval_every(3000, 2000, 30) == 5
  assert auto_eval_every(3000, 2000, 10) == 2  # but at least 5 evaluations
  assert auto_eval_every(100, 2000, 30) == 1
  np.testing.assert_array_equal(evaluated_epochs(7, 3), [3, 6, 7])


def test_bad_evaluation_arguments(data):
  with pytest.raises(ValueError, match="eval_every must be a positive integer"):
    fj.sweep(_plain_model(), data, optimizer=optax.sgd(0.1), eval_every=0, **KW)
  with pytest.raises(ValueError, match="train_eval_size must be"):
    fj.sweep(_plain_model(), data, optimizer=optax.sgd(0.1), train_eval_size=-1, **KW)
