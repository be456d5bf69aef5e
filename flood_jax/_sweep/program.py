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
import hashlib
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from flood_jax._dataset import InputSpec
from flood_jax._loss import adaflood_level, iflooded_loss
from flood_jax._sweep.adapters import Adapter, adapt
from flood_jax._sweep.checkpoint import raw_key_data
from flood_jax._transform import flood

AXIS = "models"
OBJECTIVES = ("flood", "iflood", "adaflood")
# The fold models of flood_jax.adaflood_levels: plain training, each model on
# the training set minus one fold (its level input is the fold's number).
HELDOUT = "heldout"
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


def _abstract_scalars(num_hyperparams: int) -> tuple[jax.ShapeDtypeStruct, ...]:
  """A model's seed, level and hyperparameters, abstract (tracing them compiles nothing)."""
  return (
    jax.ShapeDtypeStruct((), jnp.int32),
    jax.ShapeDtypeStruct((), jnp.float32),
    jax.ShapeDtypeStruct((num_hyperparams,), jnp.float32),
  )


_PROGRAMS: collections.OrderedDict[Any, Program] = collections.OrderedDict()
_BY_COMPUTATION: collections.OrderedDict[Any, Program] = collections.OrderedDict()
_CACHE_SIZE = 8


def get_program(**settings: Any) -> Program:
  """The compiled program for these settings, shared by every sweep that computes the same.

  Two lookups. First by the settings themselves (the same model, optimizer,
  loss function and augmentation objects, and sizes): free. Then by what
  determines the computation: the program of one model (init, a training step,
  an evaluation) is traced to a jaxpr, whose text (operations, shapes,
  dtypes and the constants written into it, hyperparameter values included)
  and captured arrays are hashed with the settings that shape the rest (epochs,
  evaluation schedule, layout). So ``fj.sweep(..., optimizer=optax.sgd(0.01))``
  called twice with freshly built but equal arguments compiles once, while a
  changed hyperparameter, loss or model gets a program of its own. Tracing one
  model costs a fraction of a second; compiling, seconds.
  """
  try:
    key = tuple(sorted(settings.items()))
    hash(key)
  except TypeError:
    key = None
  if key is not None and key in _PROGRAMS:
    _PROGRAMS.move_to_end(key)
    return _PROGRAMS[key]
  program = Program(**settings)
  # Only compare computations when there is a program to compare with (the
  # keys of cached programs are computed then, once): a process's first
  # sweep pays no tracing for it.
  if _BY_COMPUTATION or _PROGRAMS:
    for cached in list(_PROGRAMS.values()):
      _by_computation(cached)
    computation = program.computation_key()
    if computation in _BY_COMPUTATION:
      program = _BY_COMPUTATION[computation]
      _BY_COMPUTATION.move_to_end(computation)
    else:
      _remember(_BY_COMPUTATION, computation, program)
  if key is not None:
    _remember(_PROGRAMS, key, program)
  return program


def _by_computation(program: Program) -> None:
  """Files a cached program under its computation key, if it is not yet."""
  if program.__dict__.get("_computation") is None:
    _remember(_BY_COMPUTATION, program.computation_key(), program)


def _remember(cache: collections.OrderedDict[Any, Program], key: Any, program: Program) -> None:
  cache[key] = program
  if len(cache) > _CACHE_SIZE:
    cache.popitem(last=False)


@dataclasses.dataclass(frozen=True, eq=False)
class Program:
  """The compiled pieces of a sweep: init and a call of ``epochs_per_call`` epochs."""

  model: Any
  loss_fn: LossFn
  optimizer: optax.GradientTransformation
  objective: str
  augment: Augment | None
  hyperparams: tuple[str, ...]
  # One example's inputs and targets (structure, shapes, dtypes): Dataset.input_spec, target_spec.
  inputs: InputSpec
  targets: InputSpec
  batch_size: int
  epochs: int
  epochs_per_call: int
  eval_every: int
  eval_sizes: tuple[int, int, int]
  eval_batch_size: int
  mesh: Mesh
  chunk_size: int
  # Epochs (from 1) evaluated besides the schedule: the rungs of a pruned sweep.
  also_evaluate: tuple[int, ...] = ()

  def __post_init__(self):
    object.__setattr__(self, "adapter", adapt(self.model))
    sharded = P(AXIS)
    object.__setattr__(
      self,
      "_init",
      jax.jit(
        jax.shard_map(
          self._init_local,
          mesh=self.mesh,
          in_specs=(sharded, sharded, sharded, sharded, P()),
          out_specs=sharded,
          check_vma=False,
        )
      ),
    )
    object.__setattr__(
      self,
      "_run",
      jax.jit(
        jax.shard_map(
          self._run_local,
          mesh=self.mesh,
          in_specs=(sharded, sharded, sharded, sharded, P(), P()),
          out_specs=(sharded, sharded),
          check_vma=False,
        ),
        donate_argnums=0,
      ),
    )

  # Threefry in its non-partitionable form: the same kind of keys and the same
  # guarantees, but XLA compiles its random-bit generation several times
  # faster on a CPU (a vmapped linen init: 2.8 s instead of 12.9 s, measured).
  # The setting is part of what JAX traces, so every call goes through here.
  def init(self, *args):
    """Initial carry of a chunk: ``(levels, hparams, slot_seeds, model_slot, data)``."""
    with jax.threefry_partitionable(False):
      return self._init(*args)

  def run(self, *args):
    """``epochs_per_call`` epochs of a chunk.

    Arguments: ``(carry, levels, slot_seeds, model_slot, first_epoch, data)``.

    The hyperparameters are not an input: init put them in the optimizer state.
    """
    with jax.threefry_partitionable(False):
      return self._run(*args)

  adapter: Adapter = dataclasses.field(init=False, repr=False)
  # The jitted, sharded init and run; set by __post_init__.
  _init: Callable[..., Any] = dataclasses.field(init=False, repr=False)
  _run: Callable[..., Any] = dataclasses.field(init=False, repr=False)

  # -- one model ------------------------------------------------------------

  def _tx(self, level: jax.Array) -> optax.GradientTransformationExtraArgs:
    if self.objective == "flood":
      return optax.chain(flood(level), self.optimizer)
    # iFlood floods each example inside the loss; the optimizer sees its gradient.
    return optax.chain(self.optimizer)

  def _init_model(self, seed, x):
    init_key, _ = jax.random.split(jax.random.key(seed))
    return self.adapter.init(init_key, jax.tree.map(lambda a: a[:1], x))

  def _init_optimizer(self, params, level, hparams):
    opt_state = self._tx(level).init(params)
    return set_hyperparams(opt_state, self.hyperparams, hparams)

  def _init_one(self, seed, level, hparams, x):
    params, model_state, rng_state = self._init_model(seed, x)
    return params, model_state, rng_state, self._init_optimizer(params, level, hparams)

  @functools.cached_property
  def carry_structure(self):
    """Abstract carry of one model (shapes and dtypes, no leading axis)."""
    x = self.inputs.batch(1)
    with jax.threefry_partitionable(False):
      return jax.eval_shape(self._init_one, *_abstract_scalars(len(self.hyperparams)), x)

  def computation_key(self) -> tuple[Any, ...]:
    """What determines this program's computation (see :func:`get_program`); computed once."""
    if self.__dict__.get("_computation") is None:
      object.__setattr__(self, "_computation", self._computation_key())
    return self.__dict__["_computation"]

  def _computation_key(self) -> tuple[Any, ...]:
    x = self.inputs.batch(self.batch_size)
    y = self.targets.batch(self.batch_size)
    x_eval = self.inputs.batch(max(sum(self.eval_sizes), 1))
    y_eval = self.targets.batch(max(sum(self.eval_sizes), 1))
    example_levels = (
      jax.ShapeDtypeStruct((self.batch_size,), jnp.float32)
      if self.objective == "adaflood"
      else None
    )

    def one_model(seed, level, hparams, x, y, x_eval, y_eval, example_levels):
      carry = self._init_one(seed, level, hparams, x)
      batches = jnp.arange(self.batch_size)[None]
      carry, flooded = self._epoch_one(carry, batches, level, seed, 0, x, y, example_levels)
      return carry, flooded, self._evaluate_one(*carry[:3], x_eval, y_eval)

    with jax.threefry_partitionable(False):
      closed = jax.make_jaxpr(one_model)(
        *_abstract_scalars(len(self.hyperparams)), x, y, x_eval, y_eval, example_levels
      )
    digest = hashlib.sha256(str(closed.jaxpr).encode())
    for const in closed.consts:
      array = np.asarray(raw_key_data(const))
      digest.update(f"{array.dtype}{array.shape}".encode())
      digest.update(np.ascontiguousarray(array).tobytes())
    return (
      digest.hexdigest(),
      self.objective,
      self.hyperparams,
      self.inputs,
      self.targets,
      self.batch_size,
      self.epochs,
      self.epochs_per_call,
      self.eval_every,
      self.eval_sizes,
      self.eval_batch_size,
      self.mesh,
      self.chunk_size,
      self.also_evaluate,
    )

  def _epoch_one(self, carry, batches, level, seed, epoch, x_train, y_train, example_levels=None):
    """One epoch of mini-batch steps for one model; returns its flooded fraction.

    With ``objective="adaflood"``, ``level`` is the model's ``gamma`` and
    ``example_levels`` the held-out losses of the training examples (an input
    of the program, not a constant in it), corrected per mini-batch.
    """
    tx = self._tx(level)
    seed_key = jax.random.key(seed)
    dropout_key = jax.random.fold_in(jax.random.fold_in(seed_key, _DROPOUT), epoch)
    augment_key = jax.random.fold_in(jax.random.fold_in(seed_key, _AUGMENT), epoch)

    def step(carry, inputs):
      params, model_state, rng_state, opt_state = carry
      idx, step_index = inputs
      x, y = jax.tree.map(lambda a: a[idx], x_train), y_train[idx]
      if self.augment is not None:
        x = self.augment(jax.random.fold_in(augment_key, step_index), x)
      key = jax.random.fold_in(dropout_key, step_index)

      def objective(params):
        logits, new_state, new_rngs = self.adapter.apply(
          params, model_state, rng_state, x, train=True, key=key
        )
        losses = self.loss_fn(logits, y)
        if self.objective == "flood":
          value = jnp.mean(losses)
          flooded = value < level
        elif self.objective == HELDOUT:
          value = jnp.mean(losses)
          flooded = jnp.float32(0)
        else:
          if self.objective == "adaflood":
            assert example_levels is not None  # an AdaFlood program always passes them
            level_i = adaflood_level(example_levels[idx], level)
          else:
            level_i = level
          value = iflooded_loss(losses, level_i)
          flooded = jnp.mean((losses < level_i).astype(jnp.float32))
        return value, (new_state, new_rngs, flooded)

      (loss, (model_state, rng_state, flooded)), grads = jax.value_and_grad(
        objective, has_aux=True
      )(params)
      updates, opt_state = tx.update(grads, opt_state, params, value=loss)
      params = optax.apply_updates(params, updates)
      return (params, model_state, rng_state, opt_state), flooded

    steps = jnp.arange(batches.shape[0])
    carry, flooded = jax.lax.scan(step, carry, (batches, steps))
    return carry, jnp.mean(flooded.astype(jnp.float32))

  def _evaluate_one(self, params, model_state, rng_state, x, y):
    """Per split (train subsample, validation, test): mean loss and accuracy.

    The splits are evaluated together, one pass over their concatenation in
    batches of ``eval_batch_size``, so the program holds one copy of the
    evaluation, not one per split. A split of size 0 gives NaN.
    """
    n = jax.tree.leaves(x)[0].shape[0]
    size = min(self.eval_batch_size, n)
    num_batches = math.ceil(n / size)
    pad = num_batches * size - n

    def batched(a):  # (n, ...) -> (num_batches, size, ...), padded with zeros
      return jnp.concatenate([a, jnp.zeros((pad, *a.shape[1:]), a.dtype)]).reshape(
        (num_batches, size, *a.shape[1:])
      )

    xs, ys = jax.tree.map(batched, x), batched(y)

    def one_batch(args):
      xb, yb = args
      logits, _, _ = self.adapter.apply(params, model_state, rng_state, xb, train=False, key=None)
      return self.loss_fn(logits, yb), (jnp.argmax(logits, -1) == yb).astype(jnp.float32)

    if num_batches == 1:
      losses, correct = one_batch(jax.tree.map(lambda a: a[0], (xs, ys)))
    else:
      losses, correct = jax.lax.map(one_batch, (xs, ys))
    losses, correct = losses.reshape(-1), correct.reshape(-1)
    out = []
    start = 0
    for count in self.eval_sizes:
      if count == 0:
        out += [jnp.float32(jnp.nan), jnp.float32(jnp.nan)]
      else:
        out += [jnp.mean(losses[start : start + count]), jnp.mean(correct[start : start + count])]
      start += count
    return jnp.stack(out)  # train loss, train acc, val loss, val acc, test loss, test acc

  # -- a chunk on one device --------------------------------------------------

  def _vmap(self, fn, in_axes):
    """``jax.vmap`` over the chunk; a chunk of one runs the plain function.

    Without the batch axis of size one, XLA compiles what a hand-written
    single-model loop would (measured faster on a CPU for large models).
    """
    if self.chunk_size > 1:
      return jax.vmap(fn, in_axes=in_axes)

    def single(*args):
      args = [
        a if axis is None else jax.tree.map(lambda x: x[0], a)
        for a, axis in zip(args, in_axes, strict=True)
      ]
      return jax.tree.map(lambda x: x[None], fn(*args))

    return single

  def _init_local(self, levels, hparams, slot_seeds, model_slot, data):
    # A model's initialization depends on its seed only: draw it once per
    # distinct seed on this device, in a loop (lax.map compiles the unbatched
    # initialization: 2x faster to compile than a vmapped one, measured), and
    # give each model its seed's. Its optimizer state is its own.
    by_slot = jax.lax.map(lambda seed: self._init_model(seed, data[0]), slot_seeds[0])
    params, model_state, rng_state = jax.tree.map(lambda a: a[model_slot], by_slot)
    opt_state = self._vmap(self._init_optimizer, (0, 0, 0))(params, levels, hparams)
    return params, model_state, rng_state, opt_state

  def _run_local(self, carry, levels, slot_seeds, model_slot, first_epoch, data):
    x_train, y_train, x_eval, y_eval = data[:4]
    # A fifth array: AdaFlood's per-example levels, or the fold models'
    # training sets (fold k's model trains on train_sets[k], its level is k).
    per_example = data[4] if len(data) > 4 else None
    if self.objective == HELDOUT:
      assert per_example is not None  # the fold models' training sets are always passed
      n = per_example.shape[1]
    else:
      n = jax.tree.leaves(x_train)[0].shape[0]
    steps = n // self.batch_size
    seeds = slot_seeds[0][model_slot]
    shuffle_keys = jax.vmap(lambda s: jax.random.split(jax.random.key(s))[1])(slot_seeds[0])
    evaluate = self._vmap(self._evaluate_one, (0, 0, 0, None, None))

    def evaluated(carry):
      params, model_state, rng_state, _ = carry
      m = evaluate(params, model_state, rng_state, x_eval, y_eval)
      return m[:, jnp.array([0, 2, 3, 4, 5])]  # the train accuracy is not reported

    def epoch_body(carry, offset):
      epoch = first_epoch + offset
      # One permutation per seed, shared by that seed's models.
      perms = jax.vmap(lambda k: jax.random.permutation(jax.random.fold_in(k, epoch), n))(
        shuffle_keys
      )
      batches = perms[:, : steps * self.batch_size].reshape(perms.shape[0], steps, self.batch_size)[
        model_slot
      ]
      if self.objective == HELDOUT:  # positions in a model's own training set -> examples
        assert per_example is not None  # as above
        batches = jax.vmap(lambda rows, b: rows[b])(per_example[levels.astype(jnp.int32)], batches)
      example_levels = per_example if self.objective == "adaflood" else None
      carry, flooded = self._vmap(self._epoch_one, (0, 0, 0, 0, None, None, None, None))(
        carry, batches, levels, seeds, epoch, x_train, y_train, example_levels
      )
      if self.eval_every == 1:
        metrics = evaluated(carry)
      else:
        due = ((epoch + 1) % self.eval_every == 0) | (epoch == self.epochs - 1)
        for extra in self.also_evaluate:
          due = due | (epoch + 1 == extra)
        metrics = jax.lax.cond(
          due, evaluated, lambda _: jnp.full((levels.shape[0], 5), jnp.nan), carry
        )
      return carry, jnp.concatenate([metrics, flooded[:, None]], axis=-1)

    carry, metrics = jax.lax.scan(epoch_body, carry, jnp.arange(self.epochs_per_call))
    return carry, jnp.swapaxes(metrics, 0, 1)  # (models, epochs, metrics)
