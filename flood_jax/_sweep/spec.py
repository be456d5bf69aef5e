"""A sweep's arguments as one frozen, validated record (``jax.jit``'s ``PjitInfo`` pattern).

:meth:`SweepSpec.from_arguments` takes ``fj.sweep``'s keyword arguments, checks every one of
them (each bad input is one line saying what was wrong and how to fix it, raised before
anything trains or compiles) and derives what the engine needs once: the grid, the objective,
the adapted model, and :class:`TrainSpec`, what one model computes (the program cache's key).
:meth:`SweepSpec.for_fold_models` builds the fold models of ``fj.adaflood_levels`` the same
way, so the public ``sweep()`` has no private argument. :meth:`SweepSpec.record` is the
sweep's settings as the result and the checkpoint fingerprint keep them.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import jax
import jax.extend.core as jex_core
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from flood_jax._checks import (
  first_line,
  is_integer,
  number_list,
  positive_int,
  user_stacklevel,
)
from flood_jax._dataset import Dataset, InputSpec
from flood_jax._sweep import checkpoint, hosts
from flood_jax._sweep.adapters import Adapter, adapt
from flood_jax._sweep.grid import Grid
from flood_jax._sweep.memory import parse_bytes
from flood_jax._sweep.objectives import PUBLIC, Objective
from flood_jax._sweep.pbt import PBT
from flood_jax._sweep.program import Augment, LossFn, injected_hyperparams
from flood_jax._sweep.prune import NoPruning, Policy, check_policy
from flood_jax._sweep.stream import Stream
from flood_jax._sweep.tracking import check_loggers
from flood_jax._task import (
  Classification,
  NoGradientWarning,
  Task,
  task_from_arguments,
  warn_if_never_floods,
)

if TYPE_CHECKING:
  from flood_jax._sweep.layout import Layout
  from flood_jax._sweep.schedule import EvalPlan

# A batch of more than one, so logits of batch 1 (which broadcast against the labels and
# train) are caught.
_CHECK_BATCH = 3


@dataclasses.dataclass(frozen=True)
class TrainSpec:
  """What one model computes: model, task (loss, metrics), optimizer, objective, augmentation
  and sizes."""

  model: Any
  task: Task
  optimizer: optax.GradientTransformation
  objective: Objective
  augment: Augment | None
  hyperparams: tuple[str, ...]
  # One example's inputs and targets (structure, shapes, dtypes).
  inputs: InputSpec
  targets: InputSpec
  batch_size: int

  @property
  def adapter(self) -> Adapter:
    return adapt(self.model)

  @property
  def loss_fn(self) -> LossFn:
    """The task's per-example loss ``loss(outputs, y) -> (batch,)``."""
    return self.task.loss

  @property
  def is_classification(self) -> bool:
    """Classification with the default cross-entropy (whose chance level is known)."""
    return (
      isinstance(self.task, Classification)
      and self.task.loss is optax.softmax_cross_entropy_with_integer_labels
    )


@dataclasses.dataclass(frozen=True)
class EvalRequest:
  """What the user asked to evaluate (``eval_every=None``: chosen by :mod:`.schedule`)."""

  eval_every: int | None
  train_eval_size: int | None
  eval_test: bool
  eval_batch_size: int


@dataclasses.dataclass(frozen=True)
class RunOptions:
  """How the sweep runs: layout, calls, checkpoint, feedback (not what it computes)."""

  chunk_size: int | None
  mesh: Mesh | None
  epochs_per_call: int | None
  checkpoint_dir: str | None
  progress: bool
  gather_params: bool
  loggers: tuple[Any, ...]
  memory_limit: int | None = None  # bytes per device (None: the device's, if it says)

  @property
  def streamed(self) -> bool:
    """Whether someone watches between calls (so a sweep runs in about 20 of them)."""
    return self.progress or self.checkpoint_dir is not None or bool(self.loggers)


@dataclasses.dataclass(frozen=True, eq=False)
class SweepSpec:
  """Everything ``fj.sweep`` was asked, checked; the engine's only input."""

  model: Any
  data: Dataset | Stream
  grid: Grid
  train: TrainSpec
  epochs: int
  eval: EvalRequest
  policy: Policy
  run: RunOptions
  # AdaFlood's per-example levels, or the fold models' training sets.
  per_example: np.ndarray | None = None

  @property
  def objective(self) -> Objective:
    return self.train.objective

  @property
  def streamed(self) -> bool:
    """Whether the data come from a :class:`~flood_jax._sweep.stream.Stream`."""
    return isinstance(self.data, Stream)

  @property
  def level_name(self) -> str:
    return self.objective.level_name

  @property
  def num_trained(self) -> int:
    """Training examples each model draws from (a fold model: its own training set)."""
    if self.objective.is_fold_models:
      assert self.per_example is not None
      return self.per_example.shape[1]
    assert isinstance(self.data, Dataset), "a stream's size is not known"
    return self.data.num_train

  @classmethod
  def from_arguments(
    cls,
    model: Any,
    data: Dataset | Stream,
    *,
    flood_levels: Sequence[float] | np.ndarray | None,
    seeds: Sequence[int],
    optimizer: optax.GradientTransformation,
    epochs: int,
    batch_size: int | None,
    hyperparams: Mapping[str, Sequence[float]] | None,
    objective: str,
    per_example_levels: np.ndarray | None,
    gamma: Sequence[float] | np.ndarray | None,
    augment: Augment | None,
    loss_fn: LossFn | None,
    chunk_size: int | None,
    mesh: Mesh | None,
    epochs_per_call: int | None,
    eval_every: int | None,
    train_eval_size: int | None,
    eval_test: bool,
    eval_batch_size: int,
    checkpoint_dir: str | os.PathLike[str] | None,
    progress: bool,
    gather_params: bool,
    prune: Any,
    loggers: Sequence[Any] | None,
    memory_limit: int | str | None = None,
    task: Task | None = None,
    pbt: Any = None,
  ) -> SweepSpec:
    """``fj.sweep``'s arguments, checked (see :func:`flood_jax.sweep`)."""
    _check_data_and_optimizer(data, optimizer)
    if objective not in PUBLIC:
      raise ValueError(f"objective must be one of {PUBLIC}, got {objective!r}.")
    if isinstance(data, Stream):
      if objective == "adaflood":
        raise ValueError(
          "objective='adaflood' reads a level per training example, which a Stream does not"
          " index; use objective='flood' or 'iflood' on a stream, or a Dataset for AdaFlood."
        )
      if batch_size is not None:
        positive_int("batch_size", batch_size)
      batch_size = data.bind(batch_size)
    elif batch_size is None:
      raise TypeError("sweep() needs batch_size=, the mini-batch size, e.g. batch_size=128.")
    _check_sizes(data, epochs, batch_size, eval_batch_size, chunk_size, epochs_per_call,
                 eval_every, train_eval_size)  # fmt: skip
    _check_functions(augment=augment)
    chosen_task = task_from_arguments(task, loss_fn)
    if checkpoint_dir is not None:
      checkpoint.check_directory(checkpoint_dir)
    logger_list = check_loggers(loggers)
    limit = None if memory_limit is None else parse_bytes(memory_limit)
    chosen = Objective.named(objective)
    levels, per_example = _level_axis(data, chosen, flood_levels, per_example_levels, gamma)
    grid = Grid.build(levels, hyperparams, seeds)
    if not chosen.reads_example_levels:  # a level below what the loss reaches never floods
      # (pointing at the user's fj.sweep call: this, sweep(), its caller)
      warn_if_never_floods(chosen_task, grid.flood_levels, stacklevel=4)
    policy = check_policy(prune, epochs, multi_process=hosts.process_count() > 1)
    if pbt is not None:
      policy = check_pbt(pbt, prune, epochs)
    return cls._build(
      model, data, grid, chosen, optimizer, epochs, batch_size, augment, chosen_task,
      EvalRequest(eval_every, train_eval_size, bool(eval_test), eval_batch_size),
      policy,
      RunOptions(chunk_size, mesh, epochs_per_call,
                 None if checkpoint_dir is None else os.fspath(checkpoint_dir),
                 bool(progress), bool(gather_params), tuple(logger_list), limit),
      per_example,
    )  # fmt: skip

  @classmethod
  def for_fold_models(
    cls,
    model: Any,
    data: Dataset,
    fold_sets: np.ndarray,
    *,
    seeds: Sequence[int],
    optimizer: optax.GradientTransformation,
    epochs: int,
    batch_size: int,
    loss_fn: LossFn | None,
    chunk_size: int | None,
    progress: bool,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    task: Task | None = None,
  ) -> SweepSpec:
    """The fold models of ``fj.adaflood_levels``: model ``k`` trains on ``fold_sets[k]``."""
    _check_data_and_optimizer(data, optimizer)
    _check_sizes(data, epochs, batch_size, 2048, chunk_size, None, epochs, 0)
    _check_functions(augment=None, loss_fn=loss_fn)
    if checkpoint_dir is not None:
      checkpoint.check_directory(checkpoint_dir)
    chosen_task = task_from_arguments(task, loss_fn)
    fold_sets = np.asarray(fold_sets, np.int32)
    if batch_size > fold_sets.shape[1]:
      raise ValueError(
        f"batch_size {batch_size} is larger than a fold model's training set"
        f" ({fold_sets.shape[1]} examples); use batch_size <= {fold_sets.shape[1]} or"
        " fewer folds."
      )
    grid = Grid.build(np.arange(len(fold_sets)), None, seeds)
    return cls._build(
      model, data, grid, Objective.fold_models(), optimizer, epochs, batch_size, None, chosen_task,
      EvalRequest(epochs, 0, False, 2048), NoPruning(),
      RunOptions(chunk_size, None, None,
                 None if checkpoint_dir is None else os.fspath(checkpoint_dir),
                 bool(progress), True, ()),
      fold_sets,
    )  # fmt: skip

  @classmethod
  def _build(
    cls, model, data, grid, objective, optimizer, epochs, batch_size, augment, task,
    evaluation, policy, run, per_example,
  ) -> SweepSpec:  # fmt: skip
    """The checks that need the model, and the record."""
    adapter = adapt(model)
    abstract_params = _check_model_output(adapter, data, task)
    _check_hyperparams(abstract_params, optimizer, grid)
    if augment is not None:
      _check_augment(augment, data, batch_size)
    train = TrainSpec(
      model=model,
      task=task,
      optimizer=optimizer,
      objective=objective,
      augment=augment,
      hyperparams=tuple(grid.hyperparams),
      inputs=data.input_spec,
      targets=data.target_spec,
      batch_size=batch_size,
    )
    return cls(model, data, grid, train, epochs, evaluation, policy, run, per_example)

  def record(self, layout: Layout, plan: EvalPlan) -> dict[str, Any]:
    """The sweep's settings: ``SweepResult.config``, and (with the data's and program's
    digests) the checkpoint fingerprint. Its keys and values are a stable format."""
    config = {
      "model": self.train.adapter.describe(),
      "data": repr(self.data),
      **self.grid.to_dict(),
      "epochs": self.epochs,
      "batch_size": self.train.batch_size,
      "objective": self.objective.name,
      "augment": None if self.train.augment is None else _name(self.train.augment),
      "loss_fn": _name(self.train.loss_fn),
      # (classification's settings keep their format: only another task is named)
      **({} if isinstance(self.train.task, Classification) else {"task": repr(self.train.task)}),
      "chunk_size": layout.chunk_size,
      "devices": layout.num_devices,
      "processes": hosts.process_count(),
      "platform": layout.platform,
      "epochs_per_call": plan.epochs_per_call,
      "eval_every": plan.eval_every,
      "train_eval_size": plan.eval_sizes[0],
      "eval_test": self.eval.eval_test,
    }
    pruning = self.policy.record()
    if pruning is not None:
      config["pbt" if isinstance(self.policy, PBT) else "prune"] = pruning
    if self.per_example is not None:  # what the models train on: no resume of other levels
      config.update(self.objective.per_example_digest(self.per_example))
    return config


def check_pbt(pbt: Any, prune: Any, epochs: int) -> PBT:
  """``fj.sweep``'s ``pbt=``, checked against ``prune=`` and the epochs; one-line errors."""
  if not isinstance(pbt, PBT):
    raise TypeError(f"pbt must be fj.PBT(interval=..., fraction=...), got {type(pbt).__name__}.")
  if prune is not None:
    raise ValueError(
      "pbt= and prune= do not compose (PBT keeps every member training); pass one of them."
    )
  pbt.check(epochs)
  return pbt


def _name(fn: Any) -> str:
  return getattr(fn, "__name__", None) or repr(fn)


def _check_data_and_optimizer(data: Any, optimizer: Any) -> None:
  if not isinstance(data, (Dataset, Stream)):
    raise TypeError(
      f"data must be a flood_jax.Dataset or flood_jax.Stream, got {type(data).__name__};"
      " build one with flood_jax.Dataset(x_train=..., y_train=..., x_val=..., ...),"
      " flood_jax.data.load(name), or flood_jax.Stream(train=...)."
    )
  if not isinstance(optimizer, optax.GradientTransformation):
    raise TypeError(
      f"optimizer must be an Optax transformation such as optax.sgd(0.01),"
      f" got {type(optimizer).__name__}."
    )


def _check_sizes(
  data, epochs, batch_size, eval_batch_size, chunk_size, epochs_per_call, eval_every,
  train_eval_size,
) -> None:  # fmt: skip
  for name, value in [
    ("epochs", epochs),
    ("batch_size", batch_size),
    ("eval_batch_size", eval_batch_size),
  ]:
    positive_int(name, value)
  for name, value in [
    ("chunk_size", chunk_size),
    ("epochs_per_call", epochs_per_call),
    ("eval_every", eval_every),
  ]:
    if value is not None:
      positive_int(name, value)
  if train_eval_size is not None and (not is_integer(train_eval_size) or train_eval_size < 0):
    raise ValueError(
      "train_eval_size must be a number of examples >= 0 (0: skip the training"
      f" loss) or None (the whole training set), got {train_eval_size!r}."
    )
  if isinstance(data, Dataset) and batch_size > data.num_train:
    raise ValueError(
      f"batch_size {batch_size} is larger than the training set"
      f" ({data.num_train} examples); use batch_size <= {data.num_train}."
    )


def _check_functions(**functions: Any) -> None:
  for name, fn in functions.items():
    if fn is not None and not callable(fn):
      raise TypeError(f"{name} must be a function, got {type(fn).__name__}.")


def _level_axis(data, objective: Objective, flood_levels, per_example_levels, gamma):
  """The values of the grid's first axis, and the per-example input (AdaFlood's levels)."""
  if not objective.reads_example_levels:
    for name, value in [("per_example_levels", per_example_levels), ("gamma", gamma)]:
      if value is not None:
        raise ValueError(
          f"{name} is AdaFlood's; pass objective='adaflood' with it, or drop it"
          f" for objective={objective.name!r}."
        )
    if flood_levels is None:
      raise TypeError("sweep() needs flood_levels=[...], e.g. [0.0, 0.05, 0.1].")
    return flood_levels, None
  if flood_levels is not None:
    raise ValueError(
      "with objective='adaflood' the levels are per example: pass"
      " per_example_levels=fj.adaflood_levels(...) and gamma=[...] instead of"
      " flood_levels."
    )
  return _gammas(gamma), _example_levels(data, per_example_levels)


def _example_levels(data: Dataset, per_example_levels: Any) -> np.ndarray:
  if per_example_levels is None:
    raise ValueError(
      "objective='adaflood' needs per_example_levels=, the held-out losses from"
      " fj.adaflood_levels(model, data, folds=..., ...)."
    )
  levels = np.asarray(per_example_levels)
  real = np.issubdtype(levels.dtype, np.integer) or np.issubdtype(levels.dtype, np.floating)
  if levels.shape != (data.num_train,) or not real:
    raise ValueError(
      f"per_example_levels must be numbers of shape (n_train,) = ({data.num_train},),"
      f" one per training example; got shape {levels.shape}."
    )
  if not np.all(np.isfinite(levels)) or np.any(levels < 0):
    raise ValueError("per_example_levels must be finite losses >= 0; some are not.")
  return levels.astype(np.float32)


def _gammas(gamma: Any) -> np.ndarray:
  example = "[0.0, 0.5, 0.9]"
  gammas = number_list("gamma", [0.0] if gamma is None else gamma, example)
  if np.any(~np.isfinite(gammas)) or np.any((gammas < 0) | (gammas > 1)):
    raise ValueError(
      f"gamma must be a non-empty list of numbers in [0, 1], e.g. {example}; got {gamma!r}."
    )
  return gammas


def _check_hyperparams(params: Any, optimizer, grid: Grid) -> None:
  """Every swept hyperparameter is a numeric one the optimizer injects (``params``: abstract)."""
  if not grid.hyperparams:
    return
  opt_state = jax.eval_shape(optimizer.init, params)
  numeric, scheduled = injected_hyperparams(opt_state)
  if not numeric and not scheduled:
    raise ValueError(
      "hyperparams needs an optimizer built with optax.inject_hyperparams, e.g."
      " optax.inject_hyperparams(optax.sgd)(learning_rate=0.1); this one"
      " exposes none."
    )
  for name in grid.hyperparams:
    if name in scheduled:
      raise ValueError(
        f"hyperparameter {name!r} is a schedule in this optimizer; give it a"
        " number (it is set per model) or leave it out of hyperparams."
      )
    if name not in numeric:
      raise ValueError(
        f"the optimizer exposes no hyperparameter {name!r}; it exposes"
        f" {sorted(numeric)} (wrap the optimizer factory with"
        " optax.inject_hyperparams to expose its arguments)."
      )


def _check_model_output(adapter: Adapter, data: Dataset, task: Task) -> Any:
  """Initializes the model and calls it on a batch, abstractly, and checks what comes out.

  Classification keeps its checks (logits ``(batch, classes)``, enough classes); every task's
  loss and metrics must give one number per example (:meth:`Task.check`). Returns the abstract
  parameters (shapes and dtypes). Nothing runs or compiles.
  """
  x = data.input_spec.batch(_CHECK_BATCH)

  def forward(x):
    params, model_state, rng_state = adapter.init(jax.random.key(0), x)
    outputs, _, _ = adapter.apply(
      params, model_state, rng_state, x, train=True, key=jax.random.key(0)
    )
    return (params, model_state, rng_state), outputs

  try:
    state, outputs = jax.eval_shape(forward, x)
  except TypeError as err:
    raise _call_error(adapter, err) from None
  if isinstance(task, Classification):
    _check_logits(outputs, data, task)
  y = data.target_spec.batch(_CHECK_BATCH)
  task.check(outputs, y)
  _check_gradient(adapter, task, state, x, y)
  return state[0]


def _check_gradient(adapter: Adapter, task: Task, state: Any, x: Any, y: Any) -> None:
  """Warns (once, at the user's ``fj.sweep`` call) when the task's loss gives no gradient.

  Two ways, neither runs nor compiles anything: a per-example loss that is not a float
  (integers and bools have no gradient), and a gradient of the batch mean loss with respect
  to the parameters that depends on neither the parameters nor the data (``jax.grad`` traced
  to a jaxpr: a loss built on ``argmax``, comparisons or ``stop_gradient`` gives zeros there,
  constants no input flows into). Either way nothing would train, whatever the level.
  """
  params, model_state, rng_state = state

  def per_example(params, model_state, rng_state, x, y):
    outputs, _, _ = adapter.apply(
      params, model_state, rng_state, x, train=True, key=jax.random.key(0)
    )
    return task.loss(outputs, y)

  def mean_loss(*args):
    return jnp.mean(per_example(*args))

  loss = jax.eval_shape(per_example, params, model_state, rng_state, x, y)
  if not jnp.issubdtype(loss.dtype, jnp.floating):
    warnings.warn(
      f"the task's loss {_name(task.loss)} returns {loss.dtype}, which has no gradient, so no"
      " model trains; return a float loss (e.g. a cross-entropy instead of a 0/1 loss).",
      NoGradientWarning,
      stacklevel=user_stacklevel(),
    )
    return
  if not jax.tree.leaves(params):
    return
  try:
    closed = jax.make_jaxpr(jax.grad(mean_loss))(params, model_state, rng_state, x, y)
  except Exception:  # a check at its best: the training program traces it and says why
    return
  if not _depends_on_inputs(closed.jaxpr):
    warnings.warn(
      f"the gradient of the task's loss {_name(task.loss)} with respect to the model's"
      " parameters depends on neither the parameters nor the data (it is zero: argmax,"
      " comparisons, integer casts and stop_gradient have no gradient), so no model trains;"
      " train on a differentiable loss (e.g. a cross-entropy) and report the other as a metric.",
      NoGradientWarning,
      stacklevel=user_stacklevel(),
    )


def _depends_on_inputs(jaxpr: Any) -> bool:
  """Whether any output of ``jaxpr`` is computed from one of its inputs (an equation whose
  inputs include one that depends counts as a whole: conservative, never a false "no")."""
  depends = set(jaxpr.invars)
  for eqn in jaxpr.eqns:
    if any(isinstance(v, jex_core.Var) and v in depends for v in eqn.invars):
      depends.update(eqn.outvars)
  return any(isinstance(v, jex_core.Var) and v in depends for v in jaxpr.outvars)


def _check_logits(logits: Any, data: Dataset, task: Classification) -> None:
  shape = tuple(getattr(logits, "shape", ()))
  if len(shape) != 2 or shape[0] != _CHECK_BATCH:
    got = shape if hasattr(logits, "shape") else "a pytree"
    raise ValueError(
      f"the model must return logits of shape (batch, classes), got"
      f" {got} for a batch of {_CHECK_BATCH}; flatten or pool its"
      " output, keeping one row per example."
    )
  # Whatever the loss: a label past the last logit has no logit of its own (a one-hot of it
  # is all zeros, the built-in cross-entropy reads past the row), so it would train on nothing.
  if data.num_classes is not None and shape[-1] < data.num_classes:
    loss = "" if task.loss is optax.softmax_cross_entropy_with_integer_labels else " (any loss)"
    raise ValueError(
      f"the model outputs {shape[-1]} logits but the data has"
      f" {data.num_classes} classes (labels 0 to {data.num_classes - 1}); a classifier needs"
      f" one logit per class{loss}: give its last layer {data.num_classes} outputs."
    )


def _call_error(adapter: Adapter, err: TypeError) -> TypeError:
  """What a TypeError from calling the model means, in the sweep's words."""
  if adapter.kind == "linen" and "train" in str(err):
    return TypeError(
      "fj.sweep calls a linen model as model.apply(variables, x, train=True)"
      " (False to evaluate); give its __call__ a `train: bool` argument"
      f" (use it for BatchNorm/Dropout, or ignore it). Flax said: {first_line(err)}"
    )
  if adapter.kind == "plain":
    return TypeError(
      "fj.sweep calls fj.Model as init(key, x) -> params and apply(params, x,"
      f" train) -> logits; one of them does not fit: {first_line(err)}"
    )
  return err


def _check_augment(augment: Augment, data: Dataset, batch_size: int) -> None:
  """``augment(key, x_batch)`` must return a batch of the same shape (checked abstractly)."""
  x = data.input_spec.batch(batch_size)
  try:
    out = jax.eval_shape(augment, jax.random.key(0), x)
  except Exception as err:  # whatever the function raises, say where
    raise ValueError(
      f"augment({_name(augment)}) fails on a key and a batch of shape {_shapes(x)}:"
      f" {type(err).__name__}: {first_line(err)}"
    ) from None
  try:
    same = jax.tree.structure(out) == jax.tree.structure(x) and all(
      tuple(o.shape) == tuple(i.shape)
      for o, i in zip(jax.tree.leaves(out), jax.tree.leaves(x), strict=True)
    )
  except AttributeError:  # a leaf without a shape
    same = False
  if not same:
    shaped = all(hasattr(o, "shape") for o in jax.tree.leaves(out))
    returned = _shapes(out, dtypes=False) if shaped else None
    raise ValueError(
      f"augment must return a batch of the shape it is given, {_shapes(x, dtypes=False)}; it"
      f" returned {returned}; crop or pad back to the input shape."
    )


def _shapes(x: Any, dtypes: bool = True) -> str:
  """A batch's shape in words: ``(8, 2) float32`` for an array, a dict of them for a pytree."""
  described = jax.tree.map(lambda a: f"{tuple(a.shape)}" + (f" {a.dtype}" if dtypes else ""), x)
  return described if isinstance(described, str) else str(described)


def check_model_output(adapter: Adapter, data: Any, task: Task) -> Any:
  """The model's output checked for ``task`` on ``data``'s example shapes (anything with
  ``input_spec``, ``target_spec`` and ``num_classes``); the abstract parameters."""
  return _check_model_output(adapter, data, task)


def check_hyperparams(params: Any, optimizer: Any, grid: Grid) -> None:
  """Every swept hyperparameter is one the optimizer injects (``params``: abstract)."""
  _check_hyperparams(params, optimizer, grid)
