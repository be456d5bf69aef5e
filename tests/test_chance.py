"""Every model against a constant predictor: a sweep that learned nothing says so in one line."""

import warnings

import jax.numpy as jnp
import numpy as np
import optax
import pytest

import flood_jax as fj
from flood_jax._chance import AtChanceWarning, warn_if_at_chance
from flood_jax._task import label_entropy, target_variance


def _result(task, val_loss, **metrics):
  """A result of 2 levels x 2 seeds x 1 evaluation with these final validation numbers."""
  shape = (2, 2, 1)
  history = {key: np.full(shape, 0.5) for key in task.history_keys}
  val_loss = np.asarray(val_loss, np.float64)
  history["val_loss"] = np.broadcast_to(val_loss[..., None] if val_loss.ndim else val_loss, shape)
  for name, value in metrics.items():
    history[name] = np.broadcast_to(np.asarray(value, np.float64), shape)
  return fj.SweepResult(
    np.array([0.0, 0.1], np.float32), np.arange(2), history,
    selection_key=task.selection_key, mode=task.mode,
  )  # fmt: skip


Y_REGRESSION = np.linspace(-1.7, 1.7, 20)  # variance ~1
Y_LABELS = np.array([0] * 52 + [1] * 48)  # a majority share of 0.52


def test_the_constant_predictors_loss_of_each_task():
  np.testing.assert_allclose(fj.Regression().constant_loss(Y_REGRESSION), np.var(Y_REGRESSION))
  two_outputs = np.stack([Y_REGRESSION, 3 * Y_REGRESSION], -1)
  assert target_variance(two_outputs) == pytest.approx(5 * np.var(Y_REGRESSION))  # mean of both
  entropy = -(0.52 * np.log(0.52) + 0.48 * np.log(0.48))
  assert fj.Classification().constant_loss(Y_LABELS) == pytest.approx(entropy)
  assert label_entropy(np.array([3, 3, 7, 7])) == pytest.approx(np.log(2))  # any label values
  assert fj.Classification(loss=lambda o, y: o[:, 0]).constant_loss(Y_LABELS) is None
  assert fj.Task(lambda o, y: o).constant_loss(Y_REGRESSION) is None
  told = fj.Task(lambda o, y: o, constant_loss=lambda y: 2.0 * np.var(y))
  assert told.constant_loss(Y_REGRESSION) == pytest.approx(2 * np.var(Y_REGRESSION))
  with pytest.raises(TypeError, match="constant_loss must be a function"):
    fj.Task(lambda o, y: o, constant_loss=1.0)  # pyright: ignore[reportArgumentType]


@pytest.mark.parametrize(
  "task,y,val_loss,metrics,match",
  [
    # A regression whose every model diverged to a finite MSE of 3e21 (a constant scores ~1).
    (fj.Regression(), Y_REGRESSION, [[3e21, 4e21], [5e21, 3e21]], {}, "ends at chance"),
    # ... or just did not get below the mean's MSE.
    (fj.Regression(), Y_REGRESSION, 1.2, {}, r"loss >= 1\.06, a constant prediction's"),
    # A classifier blown up to a loss of 80, its accuracy 0.535 edging past a 0.52 share.
    (fj.Classification(), Y_LABELS, 80.0, {"val_accuracy": 0.535}, r"over 10x a constant"),
    # At chance by both measures (the check the driver had for the default loss).
    (fj.Classification(), Y_LABELS, 0.70, {"val_accuracy": 0.52}, r"accuracy <= 0\.520"),
    # Its own loss: judged by accuracy alone.
    (
      fj.Classification(loss=optax.softmax_cross_entropy_with_integer_labels),
      Y_LABELS,
      0.1,
      {"val_accuracy": 0.5},
      r"^every model of the sweep ends at chance, .*\(validation accuracy <= 0\.520",
    ),
    # A task of the user's that says its constant predictor's loss.
    (
      fj.Task(fj.Regression().loss, constant_loss=lambda y: float(np.var(y))),
      Y_REGRESSION,
      1.5,
      {},
      "ends at chance",
    ),
  ],
)
def test_no_model_better_than_a_constant_prediction_warns_once(task, y, val_loss, metrics, match):
  result = _result(task, val_loss, **metrics)
  with pytest.warns(AtChanceWarning, match=match) as record:
    warn_if_at_chance(result, y, task)
  assert len(record) == 1 and "\n" not in str(record[0].message)
  assert record[0].filename == __file__  # the caller's line


@pytest.mark.parametrize(
  "task,y,val_loss,metrics",
  [
    (fj.Regression(), Y_REGRESSION, [[0.2, 3e21], [0.9, 1.5]], {}),  # one model learned
    (fj.Classification(), Y_LABELS, 0.6, {"val_accuracy": 0.52}),  # the loss moved
    (fj.Classification(), Y_LABELS, 0.8, {"val_accuracy": 0.6}),  # the accuracy moved
    (fj.Classification(), Y_LABELS, np.nan, {"val_accuracy": 0.5}),  # all diverged: best() says
    (fj.Task(fj.Regression().loss), Y_REGRESSION, 3e21, {}),  # not known: not judged
    (fj.Regression(), Y_REGRESSION[:0], 3e21, {}),  # no validation split
  ],
)
def test_a_sweep_that_beats_a_constant_prediction_or_cannot_be_judged_says_nothing(
  task, y, val_loss, metrics
):
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    warn_if_at_chance(_result(task, val_loss, **metrics), y, task)


def test_a_regression_sweep_that_learns_nothing_warns_at_the_users_call():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(24, 2)).astype(np.float32)
  y = (x[:, 0] + 0.1 * rng.normal(size=24)).astype(np.float32)
  data = fj.Dataset(x_train=x[:16], y_train=y[:16], x_val=x[16:], y_val=y[16:],
                    x_test=x[16:], y_test=y[16:])  # fmt: skip
  constant = fj.Model(  # ignores its input: a constant prediction at best
    init=lambda key, x: {"b": jnp.zeros(1)},
    apply=lambda params, x, train: jnp.broadcast_to(params["b"], (x.shape[0], 1)) + 5.0,
  )
  with pytest.warns(AtChanceWarning, match="ends at chance") as record:
    fj.sweep(
      constant, data, flood_levels=[0.0, 0.1], optimizer=optax.sgd(0.01), epochs=1,
      batch_size=8, task=fj.Regression(), progress=False,
    )  # fmt: skip
  assert len(record) == 1 and record[0].filename == __file__
