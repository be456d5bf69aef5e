"""One model's training and evaluation as pure functions; a chunk of them on one device.

This is the one place where the sweep's arithmetic happens; the rest of the package arranges
it (PureJaxRL's ``make_train`` style: derived quantities once, the run as nested scans of pure
functions). A model's run (per epoch: shuffle, mini-batch steps, evaluation) is built on
``lax.scan``; :func:`init_chunk` and :func:`run_chunk` vmap it over the models of a chunk on one
device. :mod:`flood_jax._sweep.compiled` shards and jits them; nothing here is jitted.

Per-model keys, all derived from the seed (so models that share a seed share them, whatever
their flood level or hyperparameters)::

  init_key, shuffle_key = split(key(seed))
  dropout key of step s in epoch e  = fold_in(fold_in(fold_in(key(seed), 1), e), s)
  augment key of step s in epoch e  = fold_in(fold_in(fold_in(key(seed), 2), e), s)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from flood_jax._sweep.metrics import evaluated, reported_columns

if TYPE_CHECKING:
  from flood_jax._sweep.spec import TrainSpec

LossFn = Callable[[jax.Array, jax.Array], jax.Array]
Augment = Callable[[jax.Array, jax.Array], jax.Array]

_DROPOUT, _AUGMENT = 1, 2


class Carry(NamedTuple):
  """What one model carries from step to step (each leaf with a leading models axis in a chunk)."""

  params: Any
  model_state: Any
  rng_state: Any
  opt_state: Any


class DeviceData(NamedTuple):
  """The arrays a call reads, the same on every device.

  ``x_eval``/``y_eval`` concatenate the training subsample, validation and test sets;
  ``per_example`` is AdaFlood's per-example levels or the fold models' training sets.
  """

  x_train: Any  # an array, or a pytree of arrays with a common leading axis
  y_train: jax.Array
  x_eval: Any
  y_eval: jax.Array
  per_example: jax.Array | None = None


@dataclasses.dataclass(frozen=True)
class CallPlan:
  """What shapes a compiled call besides the model: its epochs, evaluations and chunk."""

  epochs: int
  epochs_per_call: int
  eval_every: int
  eval_sizes: tuple[int, int, int]
  eval_batch_size: int
  chunk_size: int
  # Epochs (from 1) evaluated besides the schedule: the rungs of a pruned sweep.
  also_evaluate: tuple[int, ...] = ()


# -- optimizer hyperparameters --------------------------------------------------------


def injected_hyperparams(opt_state: Any) -> tuple[set[str], set[str]]:
  """Names of the hyperparameters an optimizer state exposes: (numeric, scheduled).

  Looks for every ``optax.inject_hyperparams`` state in the tree.
  """
  numeric: set[str] = set()
  scheduled: set[str] = set()
  for node in _inject_states(opt_state):
    states = getattr(node, "hyperparams_states", {}) or {}
    for name in node.hyperparams:
      (scheduled if name in states else numeric).add(name)
  return numeric, scheduled


def set_hyperparams(opt_state: Any, names: Sequence[str], values: jax.Array) -> Any:
  """``opt_state`` with each injected hyperparameter ``names[i]`` set to ``values[i]``.

  The values keep the dtype the optimizer gave them; they are traced, so one compiled program
  serves every value.
  """
  if not names:
    return opt_state

  def rebuild(node):
    if isinstance(node, (optax.InjectHyperparamsState, optax.InjectStatefulHyperparamsState)):
      hyperparams = dict(node.hyperparams)
      for i, name in enumerate(names):
        if name in hyperparams:
          hyperparams[name] = values[i].astype(jnp.asarray(hyperparams[name]).dtype)
      return node._replace(hyperparams=hyperparams, inner_state=rebuild(node.inner_state))
    if isinstance(node, tuple) and hasattr(node, "_fields"):
      return type(node)(*(rebuild(child) for child in node))
    if isinstance(node, (tuple, list)):
      return type(node)(rebuild(child) for child in node)
    if isinstance(node, dict):
      return {k: rebuild(v) for k, v in node.items()}
    return node

  return rebuild(opt_state)


def _inject_states(node: Any):
  if isinstance(node, (optax.InjectHyperparamsState, optax.InjectStatefulHyperparamsState)):
    yield node
    yield from _inject_states(node.inner_state)
  elif isinstance(node, (tuple, list)):
    for child in node:
      yield from _inject_states(child)
  elif isinstance(node, dict):
    for child in node.values():
      yield from _inject_states(child)


# -- one model ------------------------------------------------------------------------


def init_model(train: TrainSpec, seed, x):
  init_key, _ = jax.random.split(jax.random.key(seed))
  return train.adapter.init(init_key, jax.tree.map(lambda a: a[:1], x))


def init_optimizer(train: TrainSpec, params, level, hparams):
  opt_state = train.objective.transform(level, train.optimizer).init(params)
  return set_hyperparams(opt_state, train.hyperparams, hparams)


def init_one(train: TrainSpec, seed, level, hparams, x) -> Carry:
  params, model_state, rng_state = init_model(train, seed, x)
  return Carry(params, model_state, rng_state, init_optimizer(train, params, level, hparams))


def epoch_keys(seed, epoch) -> tuple[jax.Array, jax.Array]:
  """A model's (dropout, augment) keys of an epoch; a step folds in its index."""
  seed_key = jax.random.key(seed)
  dropout_key = jax.random.fold_in(jax.random.fold_in(seed_key, _DROPOUT), epoch)
  augment_key = jax.random.fold_in(jax.random.fold_in(seed_key, _AUGMENT), epoch)
  return dropout_key, augment_key


def step_one(train: TrainSpec, tx, carry, x, y, level, keys, step_index, levels=None, idx=None,
             with_loss: bool = False):  # fmt: skip
  """One mini-batch step of one model on the batch ``(x, y)``: the arithmetic of every driver.

  ``keys`` are :func:`epoch_keys`; ``step_index`` the step's place in its epoch (its dropout
  and augmentation keys fold it in). Returns ``(carry, flooded, loss)``: the batch's plain
  (unflooded) mean loss ``with_loss`` (else None). The in-memory epoch gathers the batch
  on the device (:func:`epoch_one`); a stream's block and the Population receive it from the
  host (:func:`steps_one`).
  """
  params, model_state, rng_state, opt_state = carry
  dropout_key, augment_key = keys
  if train.augment is not None:
    x = train.augment(jax.random.fold_in(augment_key, step_index), x)
  key = jax.random.fold_in(dropout_key, step_index)

  def objective(params):
    logits, new_state, new_rngs = train.adapter.apply(
      params, model_state, rng_state, x, train=True, key=key
    )
    losses = train.task.loss(logits, y)
    value, flooded = train.objective.value(losses, level, levels, idx)
    if with_loss:
      return value, (new_state, new_rngs, flooded, jnp.mean(losses))
    return value, (new_state, new_rngs, flooded)

  (loss, aux), grads = jax.value_and_grad(objective, has_aux=True)(params)
  model_state, rng_state, flooded = aux[:3]
  updates, opt_state = tx.update(grads, opt_state, params, value=loss)
  params = optax.apply_updates(params, updates)
  new = Carry(params, model_state, rng_state, opt_state)
  return new, flooded, (aux[3] if with_loss else None)


def epoch_one(train: TrainSpec, carry, batches, level, seed, epoch, x_train, y_train, levels=None):
  """One epoch of mini-batch steps for one model; returns its flooded fraction.

  With AdaFlood, ``level`` is the model's ``gamma`` and ``levels`` the held-out losses of the
  training examples (an input of the program, not a constant in it), corrected per mini-batch.
  """
  tx = train.objective.transform(level, train.optimizer)
  keys = epoch_keys(seed, epoch)

  def step(carry, inputs):
    idx, step_index = inputs
    x, y = jax.tree.map(lambda a: a[idx], x_train), y_train[idx]
    carry, flooded, _ = step_one(train, tx, carry, x, y, level, keys, step_index, levels, idx)
    return carry, flooded

  steps = jnp.arange(batches.shape[0])
  carry, flooded = jax.lax.scan(step, carry, (batches, steps))
  return carry, jnp.mean(flooded.astype(jnp.float32))


def steps_one(train: TrainSpec, carry, xs, ys, count, level, seed, epoch, first_step):
  """Up to ``k`` steps of one model on a block of ``k`` batches sent by the host (a stream).

  ``xs``/``ys`` lead with the block's axis; the first ``count`` batches are real, the rest
  padding the step skips (so one program serves an epoch's short last block). Step ``i`` of
  the block is step ``first_step + i`` of epoch ``epoch`` (its keys as in memory). Returns
  ``(carry, flooded (k,), losses (k,))``, each step's plain mean loss; padding gives 0 and NaN.
  """
  tx = train.objective.transform(level, train.optimizer)
  keys = epoch_keys(seed, epoch)

  def step(carry, inputs):
    x, y, i = inputs

    def real(carry):
      carry, flooded, loss = step_one(train, tx, carry, x, y, level, keys, first_step + i,
                                      with_loss=True)  # fmt: skip
      assert loss is not None  # with_loss
      return carry, (flooded.astype(jnp.float32), loss.astype(jnp.float32))

    def padding(carry):
      return carry, (jnp.float32(0), jnp.float32(jnp.nan))

    return jax.lax.cond(i < count, real, padding, carry)

  k = ys.shape[0]
  carry, (flooded, losses) = jax.lax.scan(step, carry, (xs, ys, jnp.arange(k)))
  return carry, flooded, losses


def evaluate_batch(train: TrainSpec, params, model_state, rng_state, x, y) -> jax.Array:
  """Per example of a batch, in evaluation mode: the loss and each task metric, ``(1 + m, n)``."""
  outputs, _, _ = train.adapter.apply(params, model_state, rng_state, x, train=False, key=None)
  losses, metrics = train.task.evaluate(outputs, y)
  return jnp.stack(
    [losses.astype(jnp.float32)]
    + [metrics[name].astype(jnp.float32) for name in train.task.metric_names]
  )


def evaluate_one(train: TrainSpec, plan: CallPlan, params, model_state, rng_state, x, y):
  """Per split (train subsample, validation, test): the mean loss and each task metric.

  Returns them stacked in the order of :func:`flood_jax._sweep.metrics.evaluated` (for
  classification: loss and accuracy per split, the very operations of the sweep before tasks).
  The splits are evaluated together, one pass over their concatenation in batches of
  ``eval_batch_size``, so the program holds one copy of the evaluation, not one per split. A
  split of size 0 gives NaN.
  """
  n = jax.tree.leaves(x)[0].shape[0]
  size = min(plan.eval_batch_size, n)
  num_batches = math.ceil(n / size)
  pad = num_batches * size - n

  def batched(a):  # (n, ...) -> (num_batches, size, ...), padded with zeros
    return jnp.concatenate([a, jnp.zeros((pad, *a.shape[1:]), a.dtype)]).reshape(
      (num_batches, size, *a.shape[1:])
    )

  xs, ys = jax.tree.map(batched, x), batched(y)

  def one_batch(args):
    xb, yb = args
    outputs, _, _ = train.adapter.apply(params, model_state, rng_state, xb, train=False, key=None)
    losses, metrics = train.task.evaluate(outputs, yb)
    return [losses, *(metrics[name] for name in train.task.metric_names)]

  if num_batches == 1:
    columns = one_batch(jax.tree.map(lambda a: a[0], (xs, ys)))
  else:
    columns = jax.lax.map(one_batch, (xs, ys))
  columns = [c.reshape(-1) for c in columns]
  out = []
  start = 0
  for count in plan.eval_sizes:
    if count == 0:
      out += [jnp.float32(jnp.nan)] * len(columns)
    else:
      out += [jnp.mean(c[start : start + count]) for c in columns]
    start += count
  assert len(out) == len(evaluated(train.task))
  return jnp.stack(out)  # metrics.evaluated(task), in order


# -- a chunk on one device ------------------------------------------------------------


def chunked(fn, chunk_size: int, in_axes):
  """``jax.vmap`` over the chunk; a chunk of one runs the plain function.

  Without the batch axis of size one, XLA compiles what a hand-written single-model loop
  would (measured faster on a CPU for large models).
  """
  if chunk_size > 1:
    return jax.vmap(fn, in_axes=in_axes)

  def single(*args):
    args = [
      a if axis is None else jax.tree.map(lambda x: x[0], a)
      for a, axis in zip(args, in_axes, strict=True)
    ]
    return jax.tree.map(lambda x: x[None], fn(*args))

  return single


def init_chunk(train: TrainSpec, chunk_size: int, levels, hparams, slot_seeds, model_slot, data):
  """The initial :class:`Carry` of a chunk's models."""
  # A model's initialization depends on its seed only: draw it once per distinct seed on this
  # device, in a loop (lax.map compiles the unbatched initialization: 2x faster to compile
  # than a vmapped one, measured), and give each model its seed's. Its optimizer state is its
  # own.
  by_slot = jax.lax.map(lambda seed: init_model(train, seed, data[0]), slot_seeds[0])
  params, model_state, rng_state = jax.tree.map(lambda a: a[model_slot], by_slot)
  init_opt = lambda p, level, h: init_optimizer(train, p, level, h)
  opt_state = chunked(init_opt, chunk_size, (0, 0, 0))(params, levels, hparams)
  return Carry(params, model_state, rng_state, opt_state)


def run_chunk(train: TrainSpec, plan: CallPlan, carry, levels, slot_seeds, model_slot, first, data):
  """``plan.epochs_per_call`` epochs of a chunk: ``(carry, metrics (models, epochs, metrics))``."""
  data = DeviceData(*data)
  n = train.objective.num_trained(data.x_train, data.per_example)
  steps = n // train.batch_size
  seeds = slot_seeds[0][model_slot]
  shuffle_keys = jax.vmap(lambda s: jax.random.split(jax.random.key(s))[1])(slot_seeds[0])
  evaluate = chunked(
    lambda p, s, r, x, y: evaluate_one(train, plan, p, s, r, x, y), plan.chunk_size,
    (0, 0, 0, None, None),
  )  # fmt: skip
  epoch = chunked(
    lambda c, b, level, seed, e, x, y, ex: epoch_one(train, c, b, level, seed, e, x, y, ex),
    plan.chunk_size,
    (0, 0, 0, 0, None, None, None, None),
  )

  def evaluated(carry):
    m = evaluate(carry.params, carry.model_state, carry.rng_state, data.x_eval, data.y_eval)
    return m[:, jnp.array(reported_columns(train.task))]  # the train split's metrics are not

  def epoch_body(carry, offset):
    e = first + offset
    # One permutation per seed, shared by that seed's models.
    perms = jax.vmap(lambda k: jax.random.permutation(jax.random.fold_in(k, e), n))(shuffle_keys)
    batches = perms[:, : steps * train.batch_size].reshape(perms.shape[0], steps, train.batch_size)[
      model_slot
    ]
    batches = train.objective.examples(batches, data.per_example, levels)
    example_levels = train.objective.example_levels(data.per_example)
    carry, flooded = epoch(carry, batches, levels, seeds, e, data.x_train, data.y_train,
                           example_levels)  # fmt: skip
    if plan.eval_every == 1:
      metrics = evaluated(carry)
    else:
      due = ((e + 1) % plan.eval_every == 0) | (e == plan.epochs - 1)
      for extra in plan.also_evaluate:
        due = due | (e + 1 == extra)
      width = len(reported_columns(train.task))
      metrics = jax.lax.cond(
        due, evaluated, lambda _: jnp.full((levels.shape[0], width), jnp.nan), carry
      )
    return carry, jnp.concatenate([metrics, flooded[:, None]], axis=-1)

  carry, metrics = jax.lax.scan(epoch_body, carry, jnp.arange(plan.epochs_per_call))
  return carry, jnp.swapaxes(metrics, 0, 1)  # (models, epochs, metrics)
