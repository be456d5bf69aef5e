"""Tasks: what a sweep minimizes per example, what it reports, and how it picks the best model.

A task names three things the sweep engine needs beyond the model and the data:

- its per-example loss ``loss(outputs, y) -> (batch,)``, which flooding floods
  the batch mean of (iFlood and AdaFlood flood it per example);
- its metrics ``{name: fn(outputs, y) -> (batch,)}``, each averaged over the
  examples of a split and reported as ``val_<name>`` and ``test_<name>``;
- its selection: ``select`` (``"loss"`` or a metric's name) and ``mode``
  (``"min"`` or ``"max"``), by which the best configuration is chosen on the
  validation split.

:class:`Classification` is today's sweep (and the default), :class:`Regression`
the squared error, :class:`Task` anything else (a likelihood, a masked token
loss).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

Outputs = Any  # what the model returns: usually an array (batch, ...)
PerExample = Callable[[Outputs, jax.Array], jax.Array]

#: The history keys every task has, whatever its metrics.
LOSS_KEYS = ("train_loss", "val_loss", "test_loss", "flooded_fraction")
MODES = ("min", "max")


class Task:
  r"""A supervised task for :func:`flood_jax.sweep`: a per-example loss, metrics, a selection.

  With per-example losses :math:`\ell_i = \mathrm{loss}(f_\theta(x)_i, y_i)` of a
  mini-batch of :math:`n`, flooding trains on the batch mean
  :math:`J = \frac1n \sum_i \ell_i` (:math:`|J - b| + b`), iFlood and AdaFlood on
  :math:`\frac1n \sum_i |\ell_i - b_i| + b_i`. A metric :math:`m` is reported on a
  split of :math:`N` examples as :math:`\frac1N \sum_i m(f_\theta(x)_i, y_i)`; the
  split's loss likewise. The best configuration has the lowest (``mode="min"``)
  or highest (``mode="max"``) validation value of ``select``.

  A loss that can go below 0 (a negative log-likelihood of a density) can be
  flooded at negative levels; ``loss_lower_bound`` is ``None`` for a user's
  task, so no level is refused or warned about.

  Args:
    loss: ``loss(outputs, y) -> (batch,)``, one loss per example (reduce the
      other axes yourself, e.g. a mean over the unmasked tokens).
    metrics: ``{name: fn(outputs, y) -> (batch,)}``; each is averaged over a
      split's examples and reported as ``val_<name>`` and ``test_<name>``.
      ``None``: no metric besides the loss.
    select: ``"loss"`` or the name of a metric: what chooses the best
      configuration on the validation split.
    mode: ``"min"`` (lower is better) or ``"max"``.
    constant_loss: optional ``fn(y) -> float``, the mean loss of the best constant
      prediction on targets ``y`` (a model that ignores its input). With it the
      sweep warns when no model beats that (:meth:`constant_loss`); ``None``: unknown,
      not checked.

  Attributes:
    loss, metrics, select, mode: as given (``metrics`` a read-only dict).
    loss_lower_bound: a number the loss never goes below (``None``: unknown).

  Examples:
    A Gaussian negative log-likelihood whose model outputs a mean and a log
    variance per example (the loss goes below 0 once the fit is tight):

    >>> import jax.numpy as jnp
    >>> import flood_jax as fj
    >>> def nll(out, y):
    ...   mean, log_var = out[:, 0], out[:, 1]
    ...   return 0.5 * (log_var + (y - mean) ** 2 / jnp.exp(log_var))
    >>> task = fj.Task(nll, metrics={"mae": lambda out, y: jnp.abs(out[:, 0] - y)})
    >>> task.history_keys
    ('train_loss', 'val_loss', 'val_mae', 'test_loss', 'test_mae', 'flooded_fraction')
    >>> out, y = jnp.array([[0.0, -2.0], [1.0, 0.0]]), jnp.array([0.1, 1.0])
    >>> [round(float(v), 3) for v in task.per_example_loss(out, y)]
    [-0.963, 0.0]
    >>> task.check(out, y)  # right shapes: nothing to say
  """

  loss_lower_bound: float | None = None

  def __init__(
    self,
    loss: PerExample,
    metrics: Mapping[str, PerExample] | None = None,
    select: str = "loss",
    mode: str = "min",
    constant_loss: Callable[[np.ndarray], float] | None = None,
  ):
    if not callable(loss):
      raise TypeError(
        f"a Task's loss must be a function loss(outputs, y) -> (batch,), got {type(loss).__name__}."
      )
    metrics = {} if metrics is None else metrics
    if not isinstance(metrics, Mapping):
      raise TypeError(
        "a Task's metrics must be a dict {name: fn(outputs, y) -> (batch,)},"
        f" got {type(metrics).__name__}."
      )
    for name, fn in metrics.items():
      if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(
          f"a metric's name must be a word (letters, digits, _), got {name!r}; it becomes"
          " the history key val_<name>."
        )
      if name == "loss":
        raise ValueError(
          "'loss' is the task's loss, reported as val_loss; give the metric another name."
        )
      if not callable(fn):
        raise TypeError(
          f"metric {name!r} must be a function fn(outputs, y) -> (batch,), got {type(fn).__name__}."
        )
    if select != "loss" and select not in metrics:
      raise ValueError(
        f"select must be 'loss' or one of the metrics {sorted(metrics)}, got {select!r}."
      )
    if mode not in MODES:
      raise ValueError(f"mode must be 'min' (lower is better) or 'max', got {mode!r}.")
    if constant_loss is not None and not callable(constant_loss):
      raise TypeError(
        "a Task's constant_loss must be a function of the targets y -> float (the loss of the"
        f" best constant prediction), got {type(constant_loss).__name__}."
      )
    self._loss = loss
    self._constant_loss = constant_loss
    self._metrics = dict(metrics)
    self.select = select
    self.mode = mode

  # -- what the engine calls ------------------------------------------------

  @property
  def loss(self) -> PerExample:
    """The per-example loss ``loss(outputs, y) -> (batch,)``."""
    return self._loss

  @property
  def metrics(self) -> Mapping[str, PerExample]:
    """``{name: fn(outputs, y) -> (batch,)}``, in the order given (a read-only view)."""
    return _ReadOnly(self._metrics)

  @property
  def metric_names(self) -> tuple[str, ...]:
    """The metrics' names, in order."""
    return tuple(self._metrics)

  def per_example_loss(self, outputs: Outputs, y: jax.Array) -> jax.Array:
    """The per-example losses ``(batch,)`` of a batch (``self.loss(outputs, y)``)."""
    return self._loss(outputs, y)

  def evaluate(self, outputs: Outputs, y: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Per-example loss and metrics of a batch: ``(loss (batch,), {name: (batch,) float32})``.

    The loss first, then the metrics in order: for :class:`Classification` the
    very operations the sweep traced before tasks.
    """
    loss = self._loss(outputs, y)
    values = {name: jnp.asarray(fn(outputs, y)) for name, fn in self._metrics.items()}
    values = {
      name: v if v.dtype == jnp.float32 else v.astype(jnp.float32) for name, v in values.items()
    }
    return loss, values

  def constant_loss(self, y: Any) -> float | None:
    """The mean loss of the best constant prediction on targets ``y``; ``None``: unknown.

    The sweep compares every model's final validation loss with it (on the validation
    targets): a model that does not beat a predictor which ignores its input learned
    nothing, and a "best" level among such models means nothing. A :class:`Task` knows
    it when given ``constant_loss=``; :class:`Classification` (its default loss) and
    :class:`Regression` know theirs.
    """
    if self._constant_loss is None:
      return None
    return float(self._constant_loss(np.asarray(y)))

  @property
  def history_keys(self) -> tuple[str, ...]:
    """The keys of a sweep's history with this task, in order.

    ``train_loss``, ``val_loss``, ``val_<metric>``..., ``test_loss``,
    ``test_<metric>``..., ``flooded_fraction``: for :class:`Classification`
    exactly the sweep's keys before tasks (``flood_jax._result.METRICS``).
    """
    metrics = self.metric_names
    return (
      "train_loss",
      "val_loss",
      *(f"val_{name}" for name in metrics),
      "test_loss",
      *(f"test_{name}" for name in metrics),
      "flooded_fraction",
    )

  @property
  def selection_key(self) -> str:
    """The history key that chooses the best configuration: ``val_<select>``."""
    return f"val_{self.select}"

  @property
  def sign(self) -> float:
    """``+1.0`` when higher is better (``mode="max"``), ``-1.0`` when lower is."""
    return 1.0 if self.mode == "max" else -1.0

  def best_index(self, scores: Any) -> int:
    """The flat index of the best finite score (``mode`` decides); -1 if none is finite."""
    scores = np.asarray(scores, np.float64).ravel()
    finite = np.isfinite(scores)
    if not finite.any():
      return -1
    return int(np.argmax(np.where(finite, self.sign * scores, -np.inf)))

  def check(self, outputs: Outputs, y: Any) -> None:
    """Raises one clear line if the loss or a metric does not give one number per example.

    Works on concrete arrays or on ``jax.ShapeDtypeStruct`` s (nothing runs:
    ``jax.eval_shape``), so the engine can call it before training with the
    model's abstract output.

    Raises:
      ValueError: the loss or a metric fails on these shapes, or returns other
        than a numeric ``(batch,)``.
    """
    y = _abstract(y)
    batch = y.shape[0] if y.shape else None
    outputs = jax.tree.map(_abstract, outputs)
    described = f"outputs {_shapes(outputs)} and targets {_shapes(y)}"
    for name, fn in [
      ("loss", self._loss),
      *((f"metric {n!r}", f) for n, f in self._metrics.items()),
    ]:
      try:
        out = jax.eval_shape(fn, outputs, y)
      except Exception as err:  # whatever the function raises, say which one and where
        raise ValueError(
          f"the task's {name} fails on {described}: {type(err).__name__}: {_first_line(err)}"
        ) from None
      shape = getattr(out, "shape", None)
      dtype = getattr(out, "dtype", None)
      if shape is None or dtype is None or tuple(shape) != (batch,):
        got = "a pytree" if shape is None else f"shape {tuple(shape)}"
        raise ValueError(
          f"the task's {name} returns {got} on {described}; it must return one value per"
          f" example, shape ({batch},): reduce the other axes (e.g. jnp.mean(..., axis=-1))."
        )
      if not (jnp.issubdtype(dtype, jnp.number) or jnp.issubdtype(dtype, jnp.bool_)):
        raise ValueError(f"the task's {name} returns dtype {dtype} on {described}; give numbers.")

  def describe(self) -> str:
    """A stable description (for the sweep's settings and a checkpoint's fingerprint)."""
    metrics = ", ".join(f"{n}={_name(f)}" for n, f in self._metrics.items())
    return (
      f"{type(self).__name__}(loss={_name(self._loss)}, metrics={{{metrics}}},"
      f" select={self.select!r}, mode={self.mode!r})"
    )

  def __repr__(self) -> str:
    return self.describe()

  # Equal tasks compute the same (the program cache's first lookup keys on them).
  def _key(self) -> tuple[Any, ...]:
    return (type(self), self._loss, tuple(self._metrics.items()), self.select, self.mode)

  def __eq__(self, other: object) -> bool:
    return isinstance(other, Task) and self._key() == other._key()

  def __hash__(self) -> int:
    return hash(self._key())


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Per-example accuracy ``argmax(logits) == label`` as float32 (1.0 or 0.0)."""
  return (jnp.argmax(logits, -1) == labels).astype(jnp.float32)


class Classification(Task):
  r"""Classification on integer labels: today's sweep, and the default task.

  .. math::

    \ell_i = -\log \operatorname{softmax}(z_i)_{y_i}, \qquad
    \mathrm{accuracy}_i = [\arg\max_k z_{ik} = y_i]

  for logits :math:`z_i` ``(batch, classes)`` and integer labels :math:`y_i`
  ``(batch,)``; or the given per-example ``loss``. The metric is
  ``accuracy``; the best configuration has the highest validation accuracy.

  Args:
    loss: ``loss(logits, labels) -> (batch,)``; default
      ``optax.softmax_cross_entropy_with_integer_labels`` (the very function,
      so the sweep computes exactly what it did before tasks).

  Attributes:
    loss_lower_bound: 0.0 with the default cross-entropy, ``None`` with a
      given loss (not known).

  Examples:
    >>> import jax.numpy as jnp
    >>> import flood_jax as fj
    >>> task = fj.Classification()
    >>> task.select, task.mode, task.selection_key
    ('accuracy', 'max', 'val_accuracy')
    >>> task.history_keys[2:5]
    ('val_accuracy', 'test_loss', 'test_accuracy')
    >>> logits, y = jnp.array([[2.0, 0.0], [0.0, 1.0]]), jnp.array([0, 0])
    >>> loss, metrics = task.evaluate(logits, y)
    >>> [round(float(v), 4) for v in loss], metrics["accuracy"].tolist()
    ([0.1269, 1.3133], [1.0, 0.0])
  """

  def __init__(self, loss: PerExample | None = None):
    default = loss is None
    super().__init__(
      optax.softmax_cross_entropy_with_integer_labels if loss is None else loss,
      metrics={"accuracy": accuracy},
      select="accuracy",
      mode="max",
    )
    self.loss_lower_bound = 0.0 if default else None
    self._constant_loss = label_entropy if default else None

  def check(self, outputs: Outputs, y: Any) -> None:
    """As :meth:`Task.check`, and the labels must be integers of shape ``(batch,)``.

    Float targets are a regression; labels ``(n, 1)`` (a column) would meet the
    loss's ``(batch, classes)`` logits only by broadcasting, or not at all.
    """
    labels = _abstract(y)
    if not _is_integer(labels.dtype):
      raise ValueError(
        f"Classification needs integer class labels, got {labels.dtype} targets; for"
        " real-valued targets use task=fj.Regression() (or a fj.Task of your own)."
      )
    if len(labels.shape) != 1:
      shape = ("n", *labels.shape[1:]) if labels.shape else ()
      raise ValueError(
        f"Classification needs one class label per example, got labels of shape"
        f" ({', '.join(map(str, shape))}); give labels of shape (n,), e.g. y.reshape(-1) for"
        " a column (n, 1), or a fj.Task of your own for other targets."
      )
    super().check(outputs, y)

  def describe(self) -> str:
    return f"Classification(loss={_name(self._loss)})"


def squared_error(outputs: jax.Array, y: jax.Array) -> jax.Array:
  """Per-example squared error, the mean over trailing axes of ``(out - y) ** 2``."""
  outputs, y = _aligned(outputs, y)
  return _mean_trailing((outputs - y) ** 2)


def absolute_error(outputs: jax.Array, y: jax.Array) -> jax.Array:
  """Per-example absolute error, the mean over trailing axes of ``|out - y|``."""
  outputs, y = _aligned(outputs, y)
  return _mean_trailing(jnp.abs(outputs - y))


def label_entropy(y: Any) -> float:
  """The labels' entropy (nats): the cross-entropy of the best constant prediction, their shares."""
  _, counts = np.unique(np.asarray(y), return_counts=True)
  shares = counts / counts.sum()
  return float(-(shares * np.log(shares)).sum())


def target_variance(y: Any) -> float:
  """The targets' variance (mean over the outputs): the squared error of predicting their mean."""
  y = np.asarray(y, np.float64)
  return float(np.mean(np.var(y.reshape(len(y), -1), axis=0)))


class Regression(Task):
  r"""Least-squares regression on real-valued targets.

  .. math::

    \ell_i = \frac{1}{d} \sum_{j=1}^{d} (f_\theta(x_i)_j - y_{ij})^2, \qquad
    \mathrm{mae}_i = \frac{1}{d} \sum_{j=1}^{d} |f_\theta(x_i)_j - y_{ij}|

  for targets ``(batch,)`` (``d = 1``) or ``(batch, d)``; a model output
  ``(batch, 1)`` for targets ``(batch,)`` is taken as ``(batch,)``. Other shapes
  must match the targets' exactly (no broadcasting: ``(batch, 1) - (batch,)``
  would silently be ``(batch, batch)``). Metrics ``mse`` (the loss) and ``mae``;
  the best configuration has the lowest validation loss.

  Attributes:
    loss_lower_bound: 0.0: a level below it never floods.

  Examples:
    >>> import jax.numpy as jnp
    >>> import flood_jax as fj
    >>> task = fj.Regression()
    >>> out, y = jnp.array([[1.0], [2.0]]), jnp.array([0.0, 4.0])
    >>> task.per_example_loss(out, y).tolist()
    [1.0, 4.0]
    >>> _, metrics = task.evaluate(out, y)
    >>> metrics["mae"].tolist()
    [1.0, 2.0]
    >>> task.select, task.mode
    ('loss', 'min')
  """

  loss_lower_bound = 0.0

  def __init__(self):
    super().__init__(
      squared_error,
      metrics={"mse": squared_error, "mae": absolute_error},
      select="loss",
      constant_loss=target_variance,
    )

  def describe(self) -> str:
    return "Regression()"


def task_from_arguments(task: Task | None, loss_fn: PerExample | None) -> Task:
  """The task a sweep runs: ``task``, or ``Classification(loss_fn)`` for the shorthand.

  ``loss_fn=`` is the shorthand of ``task=fj.Classification(loss=loss_fn)``;
  giving both is refused (which loss was meant?).

  Raises:
    TypeError: ``task`` is not a :class:`Task`, or ``loss_fn`` not a function.
    ValueError: both are given.
  """
  if loss_fn is not None and not callable(loss_fn):
    raise TypeError(f"loss_fn must be a function, got {type(loss_fn).__name__}.")
  if task is None:
    return Classification(loss_fn)
  if not isinstance(task, Task):
    raise TypeError(
      "task must be fj.Classification(), fj.Regression() or fj.Task(loss, ...), got"
      f" {type(task).__name__}."
    )
  if loss_fn is not None:
    raise ValueError(
      "give the loss once: task=... or loss_fn=..., not both; put it in the task, e.g."
      " task=fj.Classification(loss=my_loss) or fj.Task(my_loss, ...)."
    )
  return task


class NoGradientWarning(UserWarning):
  """The task's loss gives the model's parameters no gradient: no model of the sweep trains."""


class NeverFloodsWarning(UserWarning):
  """A flood level below a loss that cannot go below it: that level trains like no flooding."""


def warn_if_never_floods(
  task: Task, flood_levels: Sequence[float] | np.ndarray, stacklevel: int = 3
) -> None:
  """Warns once, in one line, when a level is below what the task's loss can reach.

  A level ``b`` below the loss's lower bound (0 for the built-in tasks) is
  never above the loss, so it never floods: that model trains exactly like
  ``b = 0``'s (plain descent). Nothing is said for a task without a known
  bound (a user's :class:`Task`, whose loss may go negative). ``stacklevel``
  as in :func:`warnings.warn`, counted from this function's caller's caller.
  """
  bound = task.loss_lower_bound
  if bound is None:
    return
  levels = np.asarray(flood_levels, np.float64).ravel()
  below = levels[levels < bound]
  if below.size == 0:
    return
  listed = ", ".join(f"{b:g}" for b in below[:4]) + (", ..." if below.size > 4 else "")
  warnings.warn(
    f"flood level{'s' if below.size > 1 else ''} {listed} {'are' if below.size > 1 else 'is'}"
    f" below {bound:g}, which {task.describe()}'s loss never goes below, so"
    f" {'they never flood' if below.size > 1 else 'it never floods'} (plain descent); use"
    f" levels >= {bound:g}, or a fj.Task whose loss can go lower.",
    NeverFloodsWarning,
    stacklevel=stacklevel,
  )


# -- helpers ------------------------------------------------------------------


class _ReadOnly(Mapping[str, PerExample]):
  """A read-only view of a dict (so a task's metrics cannot change under the engine)."""

  def __init__(self, data: dict[str, PerExample]):
    self._data = data

  def __getitem__(self, key: str) -> PerExample:
    return self._data[key]

  def __iter__(self):
    return iter(self._data)

  def __len__(self) -> int:
    return len(self._data)

  def __repr__(self) -> str:
    return repr(self._data)


def _aligned(outputs: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
  outputs, y = jnp.asarray(outputs), jnp.asarray(y)
  if outputs.ndim == y.ndim + 1 and outputs.shape[-1] == 1:
    outputs = outputs[..., 0]
  if outputs.shape != y.shape:
    raise ValueError(
      f"Regression needs outputs of the targets' shape {tuple(y.shape)} (or with a last axis"
      f" of 1), got {tuple(outputs.shape)}; give the model's last layer"
      f" {math.prod(y.shape[1:])} outputs."
    )
  return outputs, y.astype(outputs.dtype)


def _mean_trailing(x: jax.Array) -> jax.Array:
  return jnp.mean(x, axis=tuple(range(1, x.ndim))) if x.ndim > 1 else x


def _abstract(x: Any) -> Any:
  if isinstance(x, jax.ShapeDtypeStruct):
    return x
  x = x if hasattr(x, "shape") and hasattr(x, "dtype") else np.asarray(x)
  return jax.ShapeDtypeStruct(tuple(x.shape), x.dtype)


def _shapes(tree: Any) -> str:
  described = jax.tree.map(lambda a: f"{tuple(a.shape)} {a.dtype}", tree)
  return described if isinstance(described, str) else str(described)


def _is_integer(dtype: Any) -> bool:
  return bool(jnp.issubdtype(dtype, jnp.integer) or jnp.issubdtype(dtype, jnp.bool_))


def _name(fn: Any) -> str:
  return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)


def _first_line(err: BaseException) -> str:
  return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
