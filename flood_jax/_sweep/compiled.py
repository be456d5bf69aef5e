"""The compiled programs of a sweep: a chunk's init and call, vmapped, sharded and jitted.

:mod:`flood_jax._sweep.program` writes one model's run as pure functions and a chunk of them on
one device; here ``jax.shard_map`` runs one chunk per device of the mesh and ``jax.jit``
compiles it, donating the carry. The compiled modules keep the names ``_init_local`` and
``_run_local`` (they are part of what JAX's persistent compilation cache keys a program by).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import hashlib
import threading
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from flood_jax._sweep import program as one
from flood_jax._sweep.checkpoint import raw_key_data
from flood_jax._sweep.spec import TrainSpec

AXIS = "models"


def _abstract_scalars(num_hyperparams: int) -> tuple[jax.ShapeDtypeStruct, ...]:
  """A model's seed, level and hyperparameters, abstract (tracing them compiles nothing)."""
  return (
    jax.ShapeDtypeStruct((), jnp.int32),
    jax.ShapeDtypeStruct((), jnp.float32),
    jax.ShapeDtypeStruct((num_hyperparams,), jnp.float32),
  )


@dataclasses.dataclass(frozen=True, eq=False)
class Program:
  """A chunk's compiled pieces: :meth:`init` and a call of ``plan.epochs_per_call`` epochs."""

  train: TrainSpec
  plan: one.CallPlan
  mesh: Mesh
  _init: Callable[..., Any] = dataclasses.field(init=False, repr=False)
  _run: Callable[..., Any] = dataclasses.field(init=False, repr=False)
  # The training call compiled ahead (:meth:`compile_ahead`): a future of its executable.
  _ahead: concurrent.futures.Future | None = dataclasses.field(init=False, repr=False, default=None)
  _jitted: bool = dataclasses.field(init=False, repr=False, default=False)  # jit compiled a call

  def __post_init__(self):
    train, plan = self.train, self.plan
    sharded = P(AXIS)

    # The carry crosses the jit boundary as a plain tuple: the names of a program's inputs
    # and outputs are part of the lowered module (and of its compilation-cache key).
    def _init_local(levels, hparams, slot_seeds, model_slot, data):
      carry = one.init_chunk(train, plan.chunk_size, levels, hparams, slot_seeds, model_slot, data)
      return tuple(carry)

    def _run_local(carry, levels, slot_seeds, model_slot, first_epoch, data):
      carry, metrics = one.run_chunk(
        train, plan, one.Carry(*carry), levels, slot_seeds, model_slot, first_epoch, data
      )
      return tuple(carry), metrics

    init = jax.shard_map(
      _init_local,
      mesh=self.mesh,
      in_specs=(sharded, sharded, sharded, sharded, P()),
      out_specs=sharded,
      check_vma=False,
    )
    run = jax.shard_map(
      _run_local,
      mesh=self.mesh,
      in_specs=(sharded, sharded, sharded, sharded, P(), P()),
      out_specs=(sharded, sharded),
      check_vma=False,
    )
    # Every leaf of the carry sharded over the models (jit left some of a one-device mesh's
    # unsharded), so a carry's program is the same whether it comes from init, from a
    # checkpoint or from :meth:`compile_ahead`'s description of it.
    object.__setattr__(self, "_init", jax.jit(init, out_shardings=self.sharding))
    object.__setattr__(self, "_run", jax.jit(run, donate_argnums=0))

  # Threefry in its non-partitionable form: the same kind of keys and the same guarantees,
  # but XLA compiles its random-bit generation several times faster on a CPU (a vmapped linen
  # init: 2.8 s instead of 12.9 s, measured). The setting is part of what JAX traces, so
  # every call goes through here.
  def init(self, levels, hparams, slot_seeds, model_slot, data) -> one.Carry:
    """Initial carry of a chunk."""
    with jax.threefry_partitionable(False):
      return one.Carry(*self._init(levels, hparams, slot_seeds, model_slot, tuple(data)))

  def compile_ahead(self, levels, hparams, slot_seeds, model_slot, data) -> None:
    """Starts compiling the training call, in a thread, for a chunk about to be initialized.

    XLA compiles a program on one core, so the initialization's compilation (on the caller's
    thread, in :meth:`init`) and the training call's (here) overlap where a second core is
    free. Both are traced and lowered here, on the caller's thread (under its JAX and Flax
    settings, which are thread-local); only XLA's compilation runs in the thread. The
    executable is kept on the program and serves every later call whose inputs it fits (the
    cache hands the same program to a later sweep of the same computation); other calls, and
    every call when compiling ahead failed, go through ``jax.jit`` as before. It is the
    program ``jax.jit`` would lower, so the persistent compilation cache serves both alike.
    """
    if self._ahead is not None or self._jitted:
      return
    data = tuple(data)
    with jax.threefry_partitionable(False):
      shapes = self._init.lower(levels, hparams, slot_seeds, model_slot, data).out_info
      carry = jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=self.sharding), shapes
      )
      first_epoch = jax.ShapeDtypeStruct((), jnp.int32)
      lowered = self._run.lower(carry, levels, slot_seeds, model_slot, first_epoch, data)
    future: concurrent.futures.Future = concurrent.futures.Future()
    object.__setattr__(self, "_ahead", future)
    threading.Thread(target=_fill, args=(future, lowered.compile), daemon=True).start()

  def adopt(self, executable: Any) -> None:
    """Runs its calls with ``executable``, the same program compiled elsewhere (the memory
    plan's), unless it has one already; inputs it does not fit go through ``jax.jit``."""
    if self._ahead is not None or self._jitted:
      return
    future: concurrent.futures.Future = concurrent.futures.Future()
    future.set_result(executable)
    object.__setattr__(self, "_ahead", future)

  def run(self, carry, levels, slot_seeds, model_slot, first_epoch, data):
    """``epochs_per_call`` epochs of a chunk: ``(carry, metrics)``.

    The hyperparameters are not an input: init put them in the optimizer state.
    """
    args = (tuple(carry), levels, slot_seeds, model_slot, first_epoch, tuple(data))
    with jax.threefry_partitionable(False):
      executable = self._compiled_ahead()
      object.__setattr__(self, "_jitted", self._jitted or executable is None)
      try:
        carry, metrics = (self._run if executable is None else executable)(*args)
      except (TypeError, ValueError):
        if executable is None:
          raise
        # Inputs the executable was not compiled for (checked before it runs, so nothing
        # was donated): jit compiles for them.
        carry, metrics = self._run(*args)
    return one.Carry(*carry), metrics

  def _compiled_ahead(self) -> Any:
    """The executable :meth:`compile_ahead` made (waiting for it), or None."""
    if self._ahead is None:
      return None
    try:
      return self._ahead.result()
    except Exception:  # jit compiles instead, and raises whatever it raises itself
      return None

  @functools.cached_property
  def sharding(self) -> NamedSharding:
    """The carry's sharding: every leaf split over the models."""
    return NamedSharding(self.mesh, P(AXIS))

  @functools.cached_property
  def stepped(self) -> StepProgram:
    """The same chunk's programs on batches sent by the host (a stream), kept with this one:
    a later sweep of the same computation compiles them no more."""
    return StepProgram(self.train, self.mesh, self.plan.chunk_size)

  @functools.cached_property
  def carry_structure(self) -> one.Carry:
    """Abstract carry of one model (shapes and dtypes, no leading axis)."""
    return carry_structure(self.train)

  def computation_key(self) -> tuple[Any, ...]:
    """What determines this program's computation (see :mod:`.cache`); computed once."""
    if self.__dict__.get("_computation") is None:
      train = self.train
      shape = (train.objective, train.hyperparams, train.inputs, train.targets, train.batch_size)
      object.__setattr__(self, "_computation", (self.digest(), *shape, self.plan, self.mesh))
    return self.__dict__["_computation"]

  def digest(self) -> str:
    """SHA-256 of one model's traced program (init, an epoch, an evaluation) and its constants."""
    return _digest(self.train, self.plan)


def carry_structure(train: TrainSpec) -> one.Carry:
  """Abstract carry of one model of ``train`` (shapes and dtypes, no leading axis)."""
  x = train.inputs.batch(1)
  init = lambda seed, level, h, x: one.init_one(train, seed, level, h, x)
  with jax.threefry_partitionable(False):
    return jax.eval_shape(init, *_abstract_scalars(len(train.hyperparams)), x)


def _fill(future: concurrent.futures.Future, fn: Callable[[], Any]) -> None:
  try:
    future.set_result(fn())
  except BaseException as err:  # handed to whoever waits for it
    future.set_exception(err)


def _digest(train: TrainSpec, plan: one.CallPlan) -> str:
  batch = train.batch_size
  x, y = train.inputs.batch(batch), train.targets.batch(batch)
  num_eval = max(sum(plan.eval_sizes), 1)
  x_eval, y_eval = train.inputs.batch(num_eval), train.targets.batch(num_eval)
  example_levels = train.objective.example_levels_like(batch)

  def one_model(seed, level, hparams, x, y, x_eval, y_eval, example_levels):
    carry = one.init_one(train, seed, level, hparams, x)
    batches = jnp.arange(batch)[None]
    carry, flooded = one.epoch_one(train, carry, batches, level, seed, 0, x, y, example_levels)
    return carry, flooded, one.evaluate_one(train, plan, *carry[:3], x_eval, y_eval)

  with jax.threefry_partitionable(False):
    closed = jax.make_jaxpr(one_model)(
      *_abstract_scalars(len(train.hyperparams)), x, y, x_eval, y_eval, example_levels
    )
  digest = hashlib.sha256(str(closed.jaxpr).encode())
  for const in closed.consts:
    array = np.asarray(raw_key_data(const))
    digest.update(f"{array.dtype}{array.shape}".encode())
    digest.update(np.ascontiguousarray(array).tobytes())
  return digest.hexdigest()


@dataclasses.dataclass(frozen=True, eq=False)
class StepProgram:
  """The programs of data sent by the host, for a chunk of ``chunk_size`` models per device.

  :meth:`steps` runs a block of ``k`` mini-batches (a stream's, stacked on the host) through
  :func:`~flood_jax._sweep.program.steps_one` of every model, :attr:`step_local` one batch
  (the Population's, which jits it with its views), and :meth:`evaluate` adds one evaluation
  batch's per-example losses and metrics to running sums. The batches are replicated, the
  models sharded over the mesh, as in :class:`Program`; each compiles once per shape of its
  inputs.
  """

  train: TrainSpec
  mesh: Mesh
  chunk_size: int
  # The Population's steps, jitted with their views of the grid's shape (by that shape).
  _viewed: dict[Any, Callable[..., Any]] = dataclasses.field(
    default_factory=dict, init=False, repr=False, compare=False
  )

  @functools.cached_property
  def sharding(self) -> NamedSharding:
    return NamedSharding(self.mesh, P(AXIS))

  @functools.cached_property
  def replicated(self) -> NamedSharding:
    return NamedSharding(self.mesh, P())

  def _mapped(self, fn: Callable[..., Any], num_sharded: int, num_shared: int) -> Callable:
    """``fn`` per model (vmapped over the chunk), one chunk per device (not jitted)."""
    in_axes = (0,) * num_sharded + (None,) * num_shared
    local = one.chunked(fn, self.chunk_size, in_axes)
    specs = (P(AXIS),) * num_sharded + (P(),) * num_shared
    return jax.shard_map(local, mesh=self.mesh, in_specs=specs, out_specs=P(AXIS),
                         check_vma=False)  # fmt: skip

  @functools.cached_property
  def _steps(self) -> Callable:
    train = self.train

    def steps(carry, level, seed, xs, ys, count, epoch, first_step):
      carry, flooded, losses = one.steps_one(
        train, one.Carry(*carry), xs, ys, count, level, seed, epoch, first_step
      )
      return tuple(carry), flooded, losses

    return jax.jit(self._mapped(steps, 3, 5), donate_argnums=0)

  @functools.cached_property
  def step_local(self) -> Callable:
    train = self.train

    def step(carry, level, seed, x, y, step_index):
      tx = train.objective.transform(level, train.optimizer)
      keys = one.epoch_keys(seed, 0)
      carry, flooded, loss = one.step_one(
        train, tx, one.Carry(*carry), x, y, level, keys, step_index, with_loss=True
      )
      return tuple(carry), flooded, loss

    return self._mapped(step, 3, 3)  # jitted with its views: viewed_step

  def viewed_step(self, shape: Any, view: Callable[[Any, Any], Any]) -> Callable[..., Any]:
    """:attr:`step_local` jitted with ``view(metric, shape)`` of its metrics (the Population's
    grid) and the next step's index, kept here: a later Population of the same computation
    compiles nothing."""
    if shape not in self._viewed:
      local = self.step_local

      def step(carry, levels, seeds, x, y, step_index):
        carry, flooded, loss = local(carry, levels, seeds, x, y, step_index)
        return carry, view(flooded, shape), view(loss, shape), step_index + 1

      self._viewed[shape] = jax.jit(step, donate_argnums=0)
    return self._viewed[shape]

  @functools.cached_property
  def _evaluate(self) -> Callable:
    train = self.train

    def evaluate(sums, params, model_state, rng_state, x, y, mask):
      columns = one.evaluate_batch(train, params, model_state, rng_state, x, y)
      return sums + jnp.sum(jnp.where(mask, columns, 0.0), axis=-1)

    return jax.jit(self._mapped(evaluate, 4, 3), donate_argnums=0)

  def steps(self, carry, levels, seeds, xs, ys, count, epoch, first_step):
    """A block of ``k`` batches (the first ``count`` real): ``(carry, flooded, losses)``,
    the last two ``(models, k)``."""
    with jax.threefry_partitionable(False):
      out = self._steps(tuple(carry), levels, seeds, xs, ys, np.int32(count), np.int32(epoch),
                        np.int32(first_step))  # fmt: skip
    carry, flooded, losses = out
    return one.Carry(*carry), flooded, losses

  def evaluate(self, sums, carry, x, y, mask):
    """``sums (models, 1 + metrics)`` plus the batch's per-example columns where ``mask``."""
    with jax.threefry_partitionable(False):
      return self._evaluate(sums, carry.params, carry.model_state, carry.rng_state, x, y, mask)
