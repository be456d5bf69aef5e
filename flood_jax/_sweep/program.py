"""The compiled program: one model's training and evaluation, vmapped and sharded.

This is the one place where the sweep's arithmetic happens; the rest of the
package arranges it. A model's whole run (per epoch: shuffle, mini-batch
steps, evaluation) is a pure function built on ``lax.scan``; ``jax.vmap``
runs it over a chunk of models and ``jax.shard_map`` runs one chunk per
device.

Per-model keys, all derived from the seed (so models that share a seed share
them, whatever their flood level or hyperparameters)::

  init_key, shuffle_key = split(key(seed))
  dropout key of step s in epoch e  = fold_in(fold_in(fold_in(key(seed), 1), e), s)
  augment key of step s in epoch e  = fold_in(fold_in(fold_in(key(seed), 2), e), s)
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import math
from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from flood_jax._loss import iflooded_loss
from flood_jax._result import METRICS
from flood_jax._sweep.adapters import Adapter, adapt
from flood_jax._transform import flood

AXIS = "models"
OBJECTIVES = ("flood", "iflood")
LossFn = Callable[[jax.Array, jax.Array], jax.Array]
Augment = Callable[[jax.Array, jax.Array], jax.Array]

_DROPOUT, _AUGMENT = 1, 2


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

  The values keep the dtype the optimizer gave them; they are traced, so one
  compiled program serves every value.
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


_PROGRAMS: "collections.OrderedDict[Any, Program]" = collections.OrderedDict()


def get_program(**settings: Any) -> "Program":
  """The compiled program for these settings, reused by later sweeps.

  Calling ``sweep`` again with the same model, optimizer, loss function and
  augmentation objects (and sizes) then skips compilation. Settings that
  cannot be hashed just get a fresh program.
  """
  try:
    key = tuple(sorted(settings.items()))
    hash(key)
  except TypeError:
    return Program(**settings)
  if key not in _PROGRAMS:
    _PROGRAMS[key] = Program(**settings)
    if len(_PROGRAMS) > 8:
      _PROGRAMS.popitem(last=False)
  _PROGRAMS.move_to_end(key)
  return _PROGRAMS[key]


@dataclasses.dataclass(frozen=True, eq=False)
class Program:
  """The compiled pieces of a sweep: init and a call of ``epochs_per_call`` epochs."""

  model: Any
  loss_fn: LossFn
  optimizer: optax.GradientTransformation
  objective: str
  augment: Optional[Augment]
  hyperparams: tuple[str, ...]
  input_shape: tuple[int, ...]
  batch_size: int
  epochs: int
  epochs_per_call: int
  eval_batch_size: int
  mesh: Mesh
  chunk_size: int

  def __post_init__(self):
    object.__setattr__(self, "adapter", adapt(self.model))
    sharded = P(AXIS)
    object.__setattr__(self, "init", jax.jit(jax.shard_map(
        self._init_local, mesh=self.mesh,
        in_specs=(sharded, sharded, sharded, sharded, P()), out_specs=sharded,
        check_vma=False,
    )))
    object.__setattr__(self, "run", jax.jit(jax.shard_map(
        self._run_local, mesh=self.mesh,
        in_specs=(sharded, sharded, sharded, sharded, sharded, P(), P()),
        out_specs=(sharded, sharded), check_vma=False,
    ), donate_argnums=0))

  adapter: Adapter = dataclasses.field(init=False, repr=False)

  # -- one model ------------------------------------------------------------

  def _tx(self, level: jax.Array) -> optax.GradientTransformationExtraArgs:
    if self.objective == "flood":
      return optax.chain(flood(level), self.optimizer)
    # iFlood floods each example inside the loss; the optimizer sees its gradient.
    return optax.chain(self.optimizer)

  def _init_one(self, seed, level, hparams, x):
    init_key, _ = jax.random.split(jax.random.key(seed))
    params, model_state, rng_state = self.adapter.init(init_key, x[:1])
    opt_state = self._tx(level).init(params)
    opt_state = set_hyperparams(opt_state, self.hyperparams, hparams)
    return params, model_state, rng_state, opt_state

  @functools.cached_property
  def carry_structure(self):
    """Abstract carry of one model (shapes and dtypes, no leading axis)."""
    x = jax.ShapeDtypeStruct((1,) + self.input_shape, jnp.float32)
    return jax.eval_shape(
        self._init_one, jnp.int32(0), jnp.float32(0),
        jnp.zeros((len(self.hyperparams),), jnp.float32), x)

  def _epoch_one(self, carry, batches, level, seed, epoch, x_train, y_train):
    """One epoch of mini-batch steps for one model; returns its flooded fraction."""
    tx = self._tx(level)
    seed_key = jax.random.key(seed)
    dropout_key = jax.random.fold_in(jax.random.fold_in(seed_key, _DROPOUT), epoch)
    augment_key = jax.random.fold_in(jax.random.fold_in(seed_key, _AUGMENT), epoch)

    def step(carry, inputs):
      params, model_state, rng_state, opt_state = carry
      idx, step_index = inputs
      x, y = x_train[idx], y_train[idx]
      if self.augment is not None:
        x = self.augment(jax.random.fold_in(augment_key, step_index), x)
      key = jax.random.fold_in(dropout_key, step_index)

      def objective(params):
        logits, new_state, new_rngs = self.adapter.apply(
            params, model_state, rng_state, x, train=True, key=key)
        losses = self.loss_fn(logits, y)
        if self.objective == "flood":
          value = jnp.mean(losses)
          flooded = value < level
        else:
          value = iflooded_loss(losses, level)
          flooded = jnp.mean((losses < level).astype(jnp.float32))
        return value, (new_state, new_rngs, flooded)

      (loss, (model_state, rng_state, flooded)), grads = jax.value_and_grad(
          objective, has_aux=True)(params)
      updates, opt_state = tx.update(grads, opt_state, params, value=loss)
      params = optax.apply_updates(params, updates)
      return (params, model_state, rng_state, opt_state), flooded

    steps = jnp.arange(batches.shape[0])
    carry, flooded = jax.lax.scan(step, carry, (batches, steps))
    return carry, jnp.mean(flooded.astype(jnp.float32))

  def _evaluate_one(self, params, model_state, rng_state, x, y):
    """Mean loss and accuracy on one split, in batches of ``eval_batch_size``."""
    n = x.shape[0]
    size = min(self.eval_batch_size, n)
    num_batches = math.ceil(n / size)
    pad = num_batches * size - n
    xs = jnp.concatenate([x, jnp.zeros((pad,) + x.shape[1:], x.dtype)]).reshape(
        (num_batches, size) + x.shape[1:])
    ys = jnp.concatenate([y, jnp.zeros((pad,), y.dtype)]).reshape(num_batches, size)
    mask = (jnp.arange(num_batches * size) < n).reshape(num_batches, size)

    def one_batch(args):
      xb, yb, mb = args
      logits, _, _ = self.adapter.apply(
          params, model_state, rng_state, xb, train=False, key=None)
      losses = self.loss_fn(logits, yb)
      correct = jnp.argmax(logits, -1) == yb
      return jnp.sum(jnp.where(mb, losses, 0.0)), jnp.sum(correct & mb)

    if num_batches == 1:
      loss_sum, correct = one_batch((xs[0], ys[0], mask[0]))
    else:
      loss_sums, corrects = jax.lax.map(one_batch, (xs, ys, mask))
      loss_sum, correct = loss_sums.sum(), corrects.sum()
    return loss_sum / n, correct.astype(jnp.float32) / n

  # -- a chunk on one device --------------------------------------------------

  def _vmap(self, fn, in_axes):
    """``jax.vmap`` over the chunk; a chunk of one runs the plain function.

    Without the batch axis of size one, XLA compiles what a hand-written
    single-model loop would (measured faster on a CPU for large models).
    """
    if self.chunk_size > 1:
      return jax.vmap(fn, in_axes=in_axes)

    def single(*args):
      args = [a if axis is None else jax.tree.map(lambda x: x[0], a)
              for a, axis in zip(args, in_axes)]
      return jax.tree.map(lambda x: x[None], fn(*args))

    return single

  def _init_local(self, levels, hparams, slot_seeds, model_slot, data):
    seeds = slot_seeds[0][model_slot]
    return self._vmap(self._init_one, (0, 0, 0, None))(seeds, levels, hparams, data[0])

  def _run_local(self, carry, levels, hparams, slot_seeds, model_slot, first_epoch, data):
    del hparams  # They live in the optimizer state since init.
    x_train, y_train, x_val, y_val, x_test, y_test = data
    n = x_train.shape[0]
    steps = n // self.batch_size
    seeds = slot_seeds[0][model_slot]
    shuffle_keys = jax.vmap(lambda s: jax.random.split(jax.random.key(s))[1])(
        slot_seeds[0]
    )

    def train_epoch(carry, epoch):
      # One permutation per seed, shared by that seed's models.
      perms = jax.vmap(
          lambda k: jax.random.permutation(jax.random.fold_in(k, epoch), n)
      )(shuffle_keys)
      batches = perms[:, :steps * self.batch_size].reshape(
          perms.shape[0], steps, self.batch_size)[model_slot]
      carry, flooded = self._vmap(self._epoch_one, (0, 0, 0, 0, None, None, None))(
          carry, batches, levels, seeds, epoch, x_train, y_train)
      params, model_state, rng_state, _ = carry
      evaluate = self._vmap(self._evaluate_one, (0, 0, 0, None, None))
      train_loss, _ = evaluate(params, model_state, rng_state, x_train, y_train)
      val_loss, val_acc = evaluate(params, model_state, rng_state, x_val, y_val)
      test_loss, test_acc = evaluate(params, model_state, rng_state, x_test, y_test)
      metrics = jnp.stack(
          [train_loss, val_loss, val_acc, test_loss, test_acc, flooded], axis=-1)
      return carry, metrics

    def body(carry, offset):
      epoch = first_epoch + offset
      # The last call may have fewer epochs left: skip, don't recompile.
      return jax.lax.cond(
          epoch < self.epochs,
          train_epoch,
          lambda c, _: (c, jnp.full((levels.shape[0], len(METRICS)), jnp.nan)),
          carry, epoch,
      )

    carry, metrics = jax.lax.scan(body, carry, jnp.arange(self.epochs_per_call))
    return carry, jnp.swapaxes(metrics, 0, 1)  # (models, epochs, metrics)
