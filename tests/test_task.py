"""Tasks: per-example losses and metrics against hand computations, selection, shape errors."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import flood_jax as fj
from flood_jax._result import METRICS
from flood_jax._task import (
  LOSS_KEYS,
  NeverFloodsWarning,
  task_from_arguments,
  warn_if_never_floods,
)

LOGITS = jnp.array([[2.0, 0.0, -1.0], [0.0, 1.0, 0.5], [0.3, 0.2, 0.1], [-1.0, 0.0, 3.0]])
LABELS = jnp.array([0, 2, 1, 2])


def test_classification_is_softmax_cross_entropy_and_accuracy_by_hand():
  loss, metrics = fj.Classification().evaluate(LOGITS, LABELS)
  z = np.asarray(LOGITS, np.float64)
  log_softmax = z - np.log(np.exp(z).sum(-1, keepdims=True))
  np.testing.assert_allclose(loss, -log_softmax[np.arange(4), np.asarray(LABELS)], rtol=1e-6)
  np.testing.assert_array_equal(metrics["accuracy"], [1.0, 0.0, 0.0, 1.0])
  assert metrics["accuracy"].dtype == jnp.float32
  assert fj.Classification().history_keys == METRICS  # the keys (and order) before tasks


def test_classification_is_bitwise_what_the_engine_computed_before_tasks():
  # The engine's loss is optax's function itself, and its accuracy the same operations:
  # the traced computation (and so the compiled program's key) is unchanged.
  task = fj.Classification()
  assert task.loss is optax.softmax_cross_entropy_with_integer_labels

  def before(logits, y):
    return (
      optax.softmax_cross_entropy_with_integer_labels(logits, y),
      (jnp.argmax(logits, -1) == y).astype(jnp.float32),
    )

  def after(logits, y):
    loss, metrics = task.evaluate(logits, y)
    return loss, metrics["accuracy"]

  assert str(jax.make_jaxpr(before)(LOGITS, LABELS)) == str(jax.make_jaxpr(after)(LOGITS, LABELS))
  for a, b in zip(before(LOGITS, LABELS), after(LOGITS, LABELS), strict=True):
    np.testing.assert_array_equal(a, b)


def test_classification_with_a_given_loss_uses_it():
  def smoothed(logits, y):
    return optax.softmax_cross_entropy(logits, optax.smooth_labels(jax.nn.one_hot(y, 3), 0.1))

  task = fj.Classification(loss=smoothed)
  assert task.loss is smoothed
  np.testing.assert_array_equal(task.per_example_loss(LOGITS, LABELS), smoothed(LOGITS, LABELS))
  assert task.loss_lower_bound is None  # not known for a loss of the user's
  assert fj.Classification().loss_lower_bound == 0.0
  assert (task.select, task.mode) == ("accuracy", "max")


def test_regression_squared_and_absolute_errors_by_hand():
  task = fj.Regression()
  out = jnp.array([[1.0, 2.0], [0.0, -1.0], [3.0, 3.0]])
  y = jnp.array([[0.0, 4.0], [0.0, 1.0], [1.0, 2.0]])
  loss, metrics = task.evaluate(out, y)
  np.testing.assert_allclose(loss, [(1 + 4) / 2, (0 + 4) / 2, (4 + 1) / 2])
  np.testing.assert_allclose(metrics["mse"], loss)
  np.testing.assert_allclose(metrics["mae"], [(1 + 2) / 2, (0 + 2) / 2, (2 + 1) / 2])
  assert (task.select, task.mode, task.loss_lower_bound) == ("loss", "min", 0.0)
  assert task.history_keys == (
    "train_loss",
    "val_loss",
    "val_mse",
    "val_mae",
    "test_loss",
    "test_mse",
    "test_mae",
    "flooded_fraction",
  )


def test_regression_takes_an_output_column_for_scalar_targets():
  task = fj.Regression()
  np.testing.assert_allclose(
    task.per_example_loss(jnp.array([[1.0], [2.0], [0.5]]), jnp.array([0.0, 2.0, 1.5])),
    [1.0, 0.0, 1.0],
  )
  task.check(jax.ShapeDtypeStruct((8, 1), jnp.float32), jax.ShapeDtypeStruct((8,), jnp.float32))


def test_regression_refuses_outputs_that_would_broadcast():
  task = fj.Regression()
  with pytest.raises(ValueError, match=r"^the task's loss fails on .*targets' shape \(8,\)[^\n]*$"):
    task.check(jax.ShapeDtypeStruct((8, 3), jnp.float32), jax.ShapeDtypeStruct((8,), jnp.float32))


def test_task_of_a_user_loss_and_metrics():
  def nll(out, y):
    return 0.5 * (out[:, 1] + (y - out[:, 0]) ** 2 / jnp.exp(out[:, 1]))

  def within(out, y):
    return jnp.abs(out[:, 0] - y) < 0.5  # bool: reported as float32

  task = fj.Task(nll, metrics={"within": within, "mae": lambda o, y: jnp.abs(o[:, 0] - y)})
  out, y = jnp.array([[0.0, -2.0], [1.0, 0.0]]), jnp.array([0.1, 2.0])
  loss, metrics = task.evaluate(out, y)
  np.testing.assert_allclose(loss, [0.5 * (-2 + 0.01 * np.exp(2)), 0.5 * (0 + 1)], rtol=1e-6)
  np.testing.assert_array_equal(metrics["within"], [1.0, 0.0])
  assert metrics["within"].dtype == jnp.float32
  assert task.metric_names == ("within", "mae")
  assert task.history_keys == (
    "train_loss",
    "val_loss",
    "val_within",
    "val_mae",
    "test_loss",
    "test_within",
    "test_mae",
    "flooded_fraction",
  )
  assert set(fj.Task(nll).history_keys) == set(LOSS_KEYS)
  assert (task.select, task.mode, task.loss_lower_bound) == ("loss", "min", None)
  assert task.selection_key == "val_loss"
  task.check(out, y)


def test_best_index_follows_mode_and_skips_non_finite_scores():
  scores = np.array([[0.3, np.nan], [0.9, 0.1]])
  assert fj.Task(lambda o, y: o, mode="min").best_index(scores) == 3
  assert fj.Task(lambda o, y: o, mode="max").best_index(scores) == 2
  assert fj.Classification().best_index(scores) == 2
  assert fj.Regression().best_index(scores) == 3
  assert fj.Regression().best_index(np.full(3, np.nan)) == -1
  assert fj.Regression().sign == -1.0 and fj.Classification().sign == 1.0
  task = fj.Task(lambda o, y: o, metrics={"r2": lambda o, y: o}, select="r2", mode="max")
  assert task.selection_key == "val_r2"


@pytest.mark.parametrize(
  "loss,match",
  [
    (lambda out, y: jnp.mean((out - y[:, None]) ** 2), r"returns shape \(\) .* shape \(8,\)"),
    (lambda out, y: (out - y[:, None]) ** 2, r"returns shape \(8, 3\) .* reduce the other axes"),
    (lambda out, y: out @ jnp.ones(5), r"fails on outputs \(8, 3\) float32 and targets"),
    (lambda out, y: {"a": out[:, 0]}, "returns a pytree"),
  ],
)
def test_a_loss_of_the_wrong_shape_is_one_line_before_training(loss, match):
  task = fj.Task(loss)
  with pytest.raises(ValueError, match=match) as info:
    task.check(jax.ShapeDtypeStruct((8, 3), jnp.float32), jax.ShapeDtypeStruct((8,), jnp.float32))
  assert "\n" not in str(info.value)


def test_a_metric_of_the_wrong_shape_is_named():
  task = fj.Task(lambda o, y: o[:, 0], metrics={"mae": lambda o, y: jnp.abs(o - y[:, None])})
  with pytest.raises(ValueError, match=r"^the task's metric 'mae' returns shape \(4, 2\)"):
    task.check(jnp.zeros((4, 2)), jnp.zeros(4))


def test_classification_refuses_float_targets():
  with pytest.raises(ValueError, match=r"integer class labels.*fj\.Regression\(\)"):
    fj.Classification().check(jnp.zeros((4, 3)), jnp.zeros(4, jnp.float32))
  fj.Classification().check(jnp.zeros((4, 3)), jnp.zeros(4, jnp.int32))


@pytest.mark.parametrize("shape,words", [((4, 1), "(n, 1)"), ((4, 3), "(n, 3)"), ((), "()")])
def test_classification_needs_labels_of_shape_n(shape, words):
  for loss in (None, lambda o, y: jnp.sum(o, -1)):  # whatever the loss
    with pytest.raises(ValueError, match="give labels of shape \\(n,\\)") as info:
      fj.Classification(loss).check(jnp.zeros((4, 3)), jnp.zeros(shape, jnp.int32))
    assert f"got labels of shape {words};" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
  "kwargs,error,match",
  [
    (dict(loss=3), TypeError, "loss must be a function"),
    (dict(metrics=[1]), TypeError, "metrics must be a dict"),
    (dict(metrics={"val acc": jnp.abs}), ValueError, "a word"),
    (dict(metrics={"loss": jnp.abs}), ValueError, "'loss' is the task's loss"),
    (dict(metrics={"mae": 2}), TypeError, "metric 'mae' must be a function"),
    (dict(select="mae"), ValueError, r"select must be 'loss' or one of the metrics \[\]"),
    (dict(mode="maximize"), ValueError, "mode must be 'min'"),
  ],
)
def test_bad_task_arguments(kwargs, error, match):
  args = dict(loss=lambda o, y: o)
  args.update(kwargs)
  with pytest.raises(error, match=match):
    fj.Task(**args)


def test_loss_fn_is_the_shorthand_of_a_classification():
  def loss(logits, y):
    return optax.softmax_cross_entropy_with_integer_labels(logits, y)

  assert task_from_arguments(None, None) == fj.Classification()
  assert task_from_arguments(None, loss) == fj.Classification(loss=loss)
  assert task_from_arguments(None, loss) != fj.Classification()
  regression = fj.Regression()
  assert task_from_arguments(regression, None) is regression
  with pytest.raises(ValueError, match="not both"):
    task_from_arguments(regression, loss)
  with pytest.raises(TypeError, match="task must be"):
    task_from_arguments("regression", None)  # pyright: ignore[reportArgumentType]
  with pytest.raises(TypeError, match="loss_fn must be a function"):
    task_from_arguments(None, 3)  # pyright: ignore[reportArgumentType]


def test_equal_tasks_are_equal_and_hash_alike():
  assert fj.Regression() == fj.Regression() and hash(fj.Regression()) == hash(fj.Regression())
  assert fj.Regression() != fj.Classification()
  assert len({fj.Classification(), fj.Classification(), fj.Regression()}) == 2
  assert repr(fj.Regression()) == "Regression()"
  with pytest.raises(TypeError):
    fj.Regression().metrics["mse"] = jnp.abs  # pyright: ignore[reportIndexIssue]


def test_a_level_below_a_loss_that_cannot_go_below_zero_warns_once_in_one_line():
  with pytest.warns(NeverFloodsWarning) as record:
    warn_if_never_floods(fj.Classification(), [-1.0, -0.5, 0.0, 0.1])
  assert len(record) == 1
  message = str(record[0].message)
  assert "\n" not in message and "-1, -0.5" in message and "never flood" in message
  with pytest.warns(NeverFloodsWarning, match="below 0"):
    warn_if_never_floods(fj.Regression(), np.array([-0.2]))
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    warn_if_never_floods(fj.Classification(), [0.0, 0.1])
    warn_if_never_floods(fj.Task(lambda o, y: o), [-50.0, 5.0])  # a likelihood may go there
    warn_if_never_floods(fj.Classification(loss=lambda o, y: o), [-1.0])  # bound unknown


def test_a_sweep_below_zero_warns_once_and_trains_like_no_flooding():
  def init(key, x):
    return {"w": jax.random.normal(key, (x.shape[-1], 2)) * 0.3}

  def apply(params, x, train):
    return x @ params["w"]

  rng = np.random.default_rng(0)
  x = rng.normal(size=(40, 3)).astype(np.float32)
  y = (x[:, 0] > 0).astype(np.int32)
  data = fj.Dataset(x_train=x[:24], y_train=y[:24], x_val=x[24:32], y_val=y[24:32],
                    x_test=x[32:], y_test=y[32:])  # fmt: skip
  with pytest.warns(NeverFloodsWarning) as record:
    result = fj.sweep(
      fj.Model(init, apply),
      data,
      flood_levels=[-0.5, 0.0],
      seeds=[0],
      optimizer=optax.sgd(0.1),
      epochs=2,
      batch_size=8,
      progress=False,
    )
  assert len(record) == 1 and "-0.5 is below 0" in str(record[0].message)
  for key, values in result.history.items():
    np.testing.assert_array_equal(values[0], values[1], err_msg=key)  # the cross-entropy >= 0


def _checked_spec(monkeypatch, loss_fn):
  """``fj.sweep``'s checks alone (``run`` replaced: nothing compiles or trains)."""
  from flood_jax._sweep import api

  monkeypatch.setattr(api, "run", lambda spec: spec)
  x = np.random.default_rng(0).normal(size=(12, 3)).astype(np.float32)
  y = (x[:, 0] > 0).astype(np.int32)
  data = fj.Dataset(x_train=x, y_train=y, x_val=x, y_val=y, x_test=x, y_test=y)
  model = fj.Model(lambda key, x: {"w": jax.random.normal(key, (3, 2))}, lambda p, x, t: x @ p["w"])
  return fj.sweep(
    model, data, flood_levels=[0.0], optimizer=optax.sgd(0.1), epochs=1, batch_size=4,
    loss_fn=loss_fn, progress=False,
  )  # fmt: skip


def _zero_one(logits, y):  # a float loss built on argmax: no gradient
  return (jnp.argmax(logits, -1) != y).astype(jnp.float32)


@pytest.mark.parametrize(
  "loss_fn,match",
  [
    (lambda o, y: _zero_one(o, y).astype(jnp.int32), "returns int32, which has no gradient"),
    (lambda o, y: _zero_one(o, y) > 0, "returns bool, which has no gradient"),
    (_zero_one, "depends on neither the parameters nor the data"),
    (
      lambda o, y: optax.softmax_cross_entropy_with_integer_labels(jax.lax.stop_gradient(o), y),
      "depends on neither",
    ),
  ],
)
def test_a_loss_with_no_gradient_warns_once_at_the_users_sweep_call(monkeypatch, loss_fn, match):
  from flood_jax._task import NoGradientWarning

  with pytest.warns(NoGradientWarning, match=match) as record:
    _checked_spec(monkeypatch, loss_fn)
  assert len(record) == 1 and "\n" not in str(record[0].message)
  assert record[0].filename == __file__  # the user's line, not the library's


def test_a_loss_with_a_gradient_says_nothing(monkeypatch):
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    _checked_spec(monkeypatch, None)
    _checked_spec(monkeypatch, lambda o, y: jnp.mean((o - y[:, None]) ** 2, -1))
