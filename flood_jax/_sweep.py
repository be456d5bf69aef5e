"""``sweep``: train many flood levels and seeds at once, as one compiled program.

How it runs. One model's whole training run (per epoch: shuffle, mini-batch
steps with ``chain(flood(b), optimizer)``, then evaluation) is a pure function
built on ``lax.scan``. ``jax.vmap`` runs it over a *chunk* of ``chunk_size``
models; ``jax.shard_map`` runs one chunk per device; a Python loop runs the
chunks one after another, so a sweep larger than memory still fits. Within a
call, ``epochs_per_call`` epochs run without returning to Python; between
calls the progress bar moves and the checkpoint is written.

The sweep axis is ordered seed-major (all levels of seed 0, then seed 1, ...),
so models that share a seed, and with it the initialization and the order of
mini-batches, sit in the same chunk, and each chunk draws one permutation per
seed per epoch, not one per model.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import hashlib
import json
import math
import os
import shutil
import time
import weakref
from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from flood_jax._dataset import Dataset
from flood_jax._result import METRICS, SweepResult, stack_levels_seeds
from flood_jax._transform import check_flood_level, flood

LossFn = Callable[[jax.Array, jax.Array], jax.Array]

_AXIS = "models"
_CHECKPOINT_VERSION = 2
# A finished chunk is saved at once; the chunk in progress at most this often
# (saving costs ~0.1 s, too much to pay after every call of a fast sweep).
_CHECKPOINT_EVERY_S = 30.0


def sweep(
    model: Any,
    data: Dataset,
    *,
    flood_levels: Sequence[float] | np.ndarray,
    seeds: Sequence[int] = (0,),
    optimizer: optax.GradientTransformation,
    epochs: int,
    batch_size: int,
    loss_fn: Optional[LossFn] = None,
    chunk_size: Optional[int] = None,
    mesh: Optional[Mesh] = None,
    epochs_per_call: Optional[int] = None,
    eval_batch_size: int = 2048,
    checkpoint_dir: Optional[str | os.PathLike[str]] = None,
    progress: bool = True,
) -> SweepResult:
  r"""Trains one model per (flood level, seed) pair, all at once.

  Each model ``(b, seed)`` is trained with ``optax.chain(flood(b),
  optimizer)`` on the mini-batch mean of ``loss_fn``, i.e. on the flooded
  objective :math:`|J - b| + b` (Ishida et al., 2020). Every epoch shuffles
  the training set (``n_train // batch_size`` full mini-batches; the rest of
  the epoch's permutation is left out), takes the steps, then evaluates, in
  evaluation mode (``train=False``): the loss on the whole training set (the
  plain loss, not flooded), and loss and accuracy on the validation and test
  sets. A seed fixes the initialization and the order of mini-batches, so
  all levels with the same seed are paired.

  **Reproducibility.** With a given layout (``chunk_size`` and number of
  devices) the model for ``(b, seed)`` gets the same numbers whatever else is
  in the sweep, because every chunk runs the same compiled program (a short
  last chunk is padded). Layouts differ in how XLA orders float sums, so
  between layouts (e.g. a model trained alone, where ``chunk_size`` is 1,
  and inside a big sweep) results agree to float round-off at first; with
  ``b > 0`` that round-off can decide the sign of a step where the batch loss
  is within round-off of ``b``, after which runs part ways like two seeds
  would. Curves and final accuracies then agree statistically, not digit for
  digit. Fix ``chunk_size`` (and the device count) for bitwise-repeatable
  comparisons.

  Args:
    model: a Flax linen module called as ``model.apply(variables, x,
      train=...)``; a model with BatchNorm (``use_running_average=not
      train``) gets its ``batch_stats`` trained too.
    data: the :class:`flood_jax.Dataset` (shared by all models, not copied).
    flood_levels: the levels ``b >= 0`` to train, at least one.
    seeds: integer seeds, at least one.
    optimizer: any Optax transformation; ``flood(b)`` is put in front of it.
    epochs: epochs per model.
    batch_size: mini-batch size, at most the number of training examples.
    loss_fn: per-example loss ``loss_fn(logits, labels) -> (batch,)``;
      default ``optax.softmax_cross_entropy_with_integer_labels``.
    chunk_size: models trained together per device (vmapped). Default: chosen
      from the model's size and the platform (a few at a time on a CPU, many
      on an accelerator), and at most the models per device. Given
      explicitly, it is kept even for a smaller sweep (padded with copies),
      which makes each model's numbers independent of the sweep's size.
    mesh: a 1-D ``jax.sharding.Mesh`` to shard the sweep axis over; default
      all devices (only as many as there are models).
    epochs_per_call: epochs run per compiled call; the progress bar and the
      checkpoint update between calls. Results do not depend on it. Default
      ``ceil(epochs / 20)`` with a progress bar or checkpoints, else all
      epochs in one call.
    eval_batch_size: examples per evaluation batch (memory, not results).
    checkpoint_dir: if given, the sweep is saved there with Orbax (each
      finished chunk at once, the chunk in progress every 30 s) and a later
      call with the same arguments resumes from it; the resumed sweep ends
      with exactly the results of an uninterrupted one.
    progress: show a progress bar.

  Returns:
    A :class:`flood_jax.SweepResult`; ``history[metric]`` has shape
    ``(levels, seeds, epochs)``.

  Examples:
    >>> import numpy as np, optax
    >>> import flax.linen as nn
    >>> import flood_jax as fj
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(64, 2)).astype(np.float32)
    >>> y = (x[:, 0] > 0).astype(np.int32)
    >>> data = fj.Dataset(x_train=x, y_train=y, x_val=x, y_val=y,
    ...                   x_test=x, y_test=y)
    >>> class Net(nn.Module):
    ...   @nn.compact
    ...   def __call__(self, x, train):
    ...     return nn.Dense(2)(nn.relu(nn.Dense(8)(x)))
    >>> result = fj.sweep(Net(), data, flood_levels=[0.0, 0.1], seeds=[0],
    ...                   optimizer=optax.sgd(0.1), epochs=3, batch_size=16,
    ...                   progress=False)
    >>> result.history["val_accuracy"].shape
    (2, 1, 3)

  References:
    Ishida et al., `Do We Need Zero Training Loss After Achieving Zero
    Training Error? <https://arxiv.org/abs/2002.08709>`_, ICML 2020.
  """
  levels, seed_array = _check_inputs(
      model, data, flood_levels, seeds, optimizer, epochs, batch_size,
      chunk_size, epochs_per_call, eval_batch_size,
  )
  loss_fn = loss_fn or optax.softmax_cross_entropy_with_integer_labels
  num_levels, num_seeds = len(levels), len(seed_array)
  num_models = num_levels * num_seeds
  # Seed-major flat order: model k is (level k % L, seed k // L).
  flat_levels = np.tile(levels, num_seeds)
  flat_seeds = np.repeat(seed_array, num_levels)

  devices, num_devices, chunk_size = plan_layout(
      model, data, num_models, batch_size, chunk_size=chunk_size, mesh=mesh)
  group = chunk_size * num_devices  # models per call
  num_calls = math.ceil(num_models / group)
  padded = num_calls * group
  pad_index = np.concatenate(
      [np.arange(num_models), np.full(padded - num_models, num_models - 1)]
  )
  run_mesh = Mesh(np.asarray(devices[:num_devices]), (_AXIS,))
  if epochs_per_call is None:
    # Results do not depend on it (tested); only the feedback does.
    if progress or checkpoint_dir is not None:
      epochs_per_call = math.ceil(epochs / 20)
    else:
      epochs_per_call = epochs
  epochs_per_call = min(epochs_per_call, epochs)

  program = _program(
      model=model,
      loss_fn=loss_fn,
      optimizer=optimizer,
      input_shape=data.input_shape,
      batch_size=batch_size,
      epochs=epochs,
      epochs_per_call=epochs_per_call,
      eval_batch_size=eval_batch_size,
      mesh=run_mesh,
      chunk_size=chunk_size,
  )
  data_arrays = _device_data(data, run_mesh)

  config = {
      "model": repr(model),
      "data": repr(data),
      "flood_levels": [float(b) for b in levels],
      "seeds": [int(s) for s in seed_array],
      "epochs": epochs,
      "batch_size": batch_size,
      "loss_fn": getattr(loss_fn, "__name__", repr(loss_fn)),
      "chunk_size": chunk_size,
      "devices": num_devices,
      "platform": devices[0].platform,
      "epochs_per_call": epochs_per_call,
  }
  store = None
  if checkpoint_dir is not None:
    fingerprint = dict(config, data_checksum=_checksum(data))
    store = _CheckpointStore(os.fspath(checkpoint_dir), fingerprint)

  history = np.full((padded, epochs, len(METRICS)), np.nan, np.float32)
  # Per call, the leaves of (params, batch_stats): what the result keeps.
  final_leaves: list[Optional[list[Any]]] = [None] * num_calls
  start = time.perf_counter()
  bar = _progress_bar(progress, num_calls * epochs, num_models, group)
  try:
    for call in range(num_calls):
      rows = slice(call * group, (call + 1) * group)
      done = store.load_done(call) if store else None
      if done is not None:
        history[rows], final_leaves[call] = done
        bar.update(epochs)
        continue
      index = pad_index[rows]
      slot_seeds, model_slot = _seed_slots(flat_seeds[index], num_devices)
      chunk_levels, slot_seeds, model_slot = jax.device_put(
          (flat_levels[index].astype(np.float32), slot_seeds, model_slot),
          NamedSharding(run_mesh, P(_AXIS)),
      )
      resumed = store.load_current(call, program.carry_structure) if store else None
      if resumed is not None:
        carry, epoch, history[rows] = resumed
        carry = jax.device_put(carry, NamedSharding(run_mesh, P(_AXIS)))
        bar.update(epoch)
      else:
        carry = program.init(chunk_levels, slot_seeds, model_slot, data_arrays)
        epoch = 0
      while epoch < epochs:
        carry, metrics = program.run(
            carry, chunk_levels, slot_seeds, model_slot, np.int32(epoch),
            data_arrays,
        )
        metrics = np.asarray(metrics)
        ran = min(epochs_per_call, epochs - epoch)
        history[rows, epoch:epoch + ran] = metrics[:, :ran]
        epoch += ran
        if store is not None and epoch < epochs and store.due():
          store.save_current(call, carry, epoch, history[rows])
        bar.update(ran)
      kept = jax.tree.leaves(carry[:2])
      # Big weights of a one-call sweep stay where they are (no copy); else
      # each call's come home, so the devices hold one call's models at a time.
      on_device = num_calls == 1 and sum(x.nbytes for x in kept) > 2**26
      final_leaves[call] = kept if on_device else [np.asarray(x) for x in kept]
      if store is not None:
        store.save_done(call, final_leaves[call], history[rows])
  finally:
    bar.close()
  wall_time = time.perf_counter() - start

  history = history[:num_models]
  if num_calls == 1:
    stacked = [x if padded == num_models else x[:num_models] for x in final_leaves[0]]
  else:
    stacked = [
        np.concatenate([leaves[i] for leaves in final_leaves])[:num_models]
        for i in range(len(final_leaves[0]))
    ]
  structure = jax.tree.structure(program.carry_structure[:2])
  params, batch_stats = jax.tree.unflatten(structure, stacked)
  reshape = lambda a: stack_levels_seeds(a, num_levels, num_seeds)
  return SweepResult(
      flood_levels=levels,
      seeds=seed_array,
      history={m: reshape(history[..., i]) for i, m in enumerate(METRICS)},
      final_params=jax.tree.map(reshape, params),
      final_batch_stats=(
          None if batch_stats is None else jax.tree.map(reshape, batch_stats)
      ),
      config=config,
      wall_time=wall_time,
  )


def plan_layout(
    model: Any,
    data: Dataset,
    num_models: int,
    batch_size: int,
    *,
    chunk_size: Optional[int] = None,
    mesh: Optional[Mesh] = None,
) -> tuple[list[Any], int, int]:
  """How a sweep of ``num_models`` runs: (devices, devices used, chunk size).

  Uses every device of ``mesh`` (default: all) but no more than there are
  models. The automatic chunk size is at most the models per device, evened
  out over the calls it needs (12 models on 2 devices with a preferred chunk
  of 4: two calls of 3 per device, not 4 + 2 and padding). A ``chunk_size``
  given explicitly is kept even when it exceeds the models per device (the
  chunk is padded), so every model runs the same program.
  """
  devices = _mesh_devices(mesh)
  num_devices = min(len(devices), num_models)
  if chunk_size is None:
    per_device = math.ceil(num_models / num_devices)
    preferred = auto_chunk_size(model, data, batch_size, devices[0].platform)
    calls = math.ceil(per_device / min(preferred, per_device))
    chunk_size = math.ceil(per_device / calls)
  return devices, num_devices, chunk_size


def auto_chunk_size(
    model: Any, data: Dataset, batch_size: int, platform: str
) -> int:
  """Models per device trained together, from the model's size and the platform.

  On a CPU, vmapping many models helps only while a step is too small to keep
  the cores busy; past that it costs memory bandwidth, so big models run a
  few at a time. Accelerators take as many as fit comfortably.
  """
  num_params = count_params(model, data)
  step_flops = 6 * num_params * batch_size
  if platform == "cpu":  # measured in benchmarks/sweep.py on 2 cores
    if step_flops < 2e7:
      return 8
    if step_flops < 1e8:
      return 4
    return 2
  # Parameters, gradients and two optimizer moments per model, within ~4 GiB.
  return int(max(1, min(256, 2**32 // (16 * max(num_params, 1)))))


def count_params(model: Any, data: Dataset) -> int:
  """Number of trainable parameters of ``model`` on ``data``'s inputs."""
  try:
    return _count_params(model, data.input_shape)
  except TypeError:  # an unhashable model: count without the cache
    return _count_params.__wrapped__(model, data.input_shape)


@functools.lru_cache(maxsize=32)
def _count_params(model: Any, input_shape: tuple[int, ...]) -> int:
  shapes = jax.eval_shape(
      lambda: model.init(jax.random.key(0), jnp.zeros((1,) + input_shape), train=False)
  )
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(shapes.get("params", {}))))


_PROGRAMS: "collections.OrderedDict[Any, _Program]" = collections.OrderedDict()


def _program(**settings: Any) -> "_Program":
  """The compiled program for these settings, reused by later sweeps.

  Calling ``sweep`` again with the same model, optimizer and loss function
  objects (and sizes) then skips compilation. Settings that cannot be hashed
  just get a fresh program.
  """
  try:
    key = tuple(sorted(settings.items()))
    hash(key)
  except TypeError:
    return _Program(**settings)
  if key not in _PROGRAMS:
    _PROGRAMS[key] = _Program(**settings)
    if len(_PROGRAMS) > 8:
      _PROGRAMS.popitem(last=False)
  _PROGRAMS.move_to_end(key)
  return _PROGRAMS[key]


@dataclasses.dataclass(frozen=True, eq=False)
class _Program:
  """The compiled pieces of a sweep: init and a call of ``epochs_per_call`` epochs."""

  model: Any
  loss_fn: LossFn
  optimizer: optax.GradientTransformation
  input_shape: tuple[int, ...]
  batch_size: int
  epochs: int
  epochs_per_call: int
  eval_batch_size: int
  mesh: Mesh
  chunk_size: int

  def __post_init__(self):
    sharded = P(_AXIS)
    object.__setattr__(self, "init", jax.jit(jax.shard_map(
        self._init_local, mesh=self.mesh,
        in_specs=(sharded, sharded, sharded, P()), out_specs=sharded,
        check_vma=False,
    )))
    object.__setattr__(self, "run", jax.jit(jax.shard_map(
        self._run_local, mesh=self.mesh,
        in_specs=(sharded, sharded, sharded, sharded, P(), P()),
        out_specs=(sharded, sharded), check_vma=False,
    ), donate_argnums=0))

  # -- one model ------------------------------------------------------------

  def _tx(self, level: jax.Array) -> optax.GradientTransformationExtraArgs:
    return optax.chain(flood(level), self.optimizer)

  def _init_one(self, seed: jax.Array, level: jax.Array, x: jax.Array):
    init_key, _ = jax.random.split(jax.random.key(seed))
    variables = self.model.init(init_key, x[:1], train=False)
    params = variables["params"]
    batch_stats = variables.get("batch_stats")
    opt_state = self._tx(level).init(params)
    return params, batch_stats, opt_state

  @functools.cached_property
  def carry_structure(self):
    """Abstract carry of one model (shapes and dtypes, no leading axis)."""
    x = jax.ShapeDtypeStruct((1,) + self.input_shape, jnp.float32)
    return jax.eval_shape(self._init_one, jnp.int32(0), jnp.float32(0), x)

  def _apply(self, params, batch_stats, x, train: bool):
    variables = {"params": params}
    if batch_stats is not None:
      variables["batch_stats"] = batch_stats
      if train:
        logits, updates = self.model.apply(
            variables, x, train=True, mutable=["batch_stats"]
        )
        return logits, updates["batch_stats"]
    return self.model.apply(variables, x, train=train), batch_stats

  def _epoch_one(self, carry, batches, level, x_train, y_train):
    """One epoch of mini-batch steps for one model; returns its flooded fraction."""
    tx = self._tx(level)

    def step(carry, idx):
      params, batch_stats, opt_state = carry
      x, y = x_train[idx], y_train[idx]

      def objective(params):
        logits, new_stats = self._apply(params, batch_stats, x, train=True)
        return jnp.mean(self.loss_fn(logits, y)), new_stats

      (loss, new_stats), grads = jax.value_and_grad(objective, has_aux=True)(params)
      updates, opt_state = tx.update(grads, opt_state, params, value=loss)
      params = optax.apply_updates(params, updates)
      return (params, new_stats, opt_state), loss < level

    carry, flooded = jax.lax.scan(step, carry, batches)
    return carry, jnp.mean(flooded.astype(jnp.float32))

  def _evaluate_one(self, params, batch_stats, x, y):
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
      logits, _ = self._apply(params, batch_stats, xb, train=False)
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

  def _init_local(self, levels, slot_seeds, model_slot, data):
    seeds = slot_seeds[0][model_slot]
    return self._vmap(self._init_one, (0, 0, None))(seeds, levels, data[0])

  def _run_local(self, carry, levels, slot_seeds, model_slot, first_epoch, data):
    x_train, y_train, x_val, y_val, x_test, y_test = data
    n = x_train.shape[0]
    steps = n // self.batch_size
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
      carry, flooded = self._vmap(self._epoch_one, (0, 0, 0, None, None))(
          carry, batches, levels, x_train, y_train)
      params, batch_stats, _ = carry
      evaluate = self._vmap(self._evaluate_one, (0, 0, None, None))
      train_loss, _ = evaluate(params, batch_stats, x_train, y_train)
      val_loss, val_acc = evaluate(params, batch_stats, x_val, y_val)
      test_loss, test_acc = evaluate(params, batch_stats, x_test, y_test)
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


_DEVICE_DATA: dict[tuple[int, Any], tuple[jax.Array, ...]] = {}


def _device_data(data: Dataset, mesh: Mesh) -> tuple[jax.Array, ...]:
  """The data set's arrays on every device of ``mesh``, kept while ``data`` lives.

  A sweep shares one copy per device among all its models, and later sweeps on
  the same ``Dataset`` object skip the transfer.
  """
  key = (id(data), mesh)
  if key not in _DEVICE_DATA:
    _DEVICE_DATA[key] = jax.device_put(
        (data.x_train, data.y_train, data.x_val, data.y_val, data.x_test, data.y_test),
        NamedSharding(mesh, P()),
    )
    weakref.finalize(data, _DEVICE_DATA.pop, key, None)
  return _DEVICE_DATA[key]


def _seed_slots(chunk_seeds: np.ndarray, num_devices: int):
  """Per device, the distinct seeds of its models and each model's slot among them."""
  per_device = np.split(chunk_seeds, num_devices)
  distinct = [list(dict.fromkeys(seeds.tolist())) for seeds in per_device]
  slots = max(len(d) for d in distinct)
  slot_seeds = np.array([d + [d[-1]] * (slots - len(d)) for d in distinct], np.int32)
  model_slot = np.concatenate(
      [[d.index(s) for s in seeds.tolist()] for d, seeds in zip(distinct, per_device)]
  ).astype(np.int32)
  return slot_seeds, model_slot


def _mesh_devices(mesh: Optional[Mesh]) -> list[Any]:
  if mesh is None:
    return list(jax.devices())
  if len(mesh.axis_names) != 1:
    raise ValueError(
        f"mesh must be 1-D (one axis for the sweep), got axes {mesh.axis_names};"
        " build one with jax.make_mesh((n,), ('models',))."
    )
  return list(np.asarray(mesh.devices).ravel())


def _check_inputs(model, data, flood_levels, seeds, optimizer, epochs, batch_size,
                  chunk_size, epochs_per_call, eval_batch_size):
  if not isinstance(data, Dataset):
    raise TypeError(
        f"data must be a flood_jax.Dataset, got {type(data).__name__}; build one"
        " with flood_jax.Dataset(x_train=..., y_train=..., x_val=..., ...) or"
        " flood_jax.data.load(name)."
    )
  if not (hasattr(model, "init") and hasattr(model, "apply")):
    raise TypeError(
        f"model must be a Flax linen module, got {type(model).__name__}."
    )
  if not isinstance(optimizer, optax.GradientTransformation):
    raise TypeError(
        f"optimizer must be an Optax transformation such as optax.sgd(0.01),"
        f" got {type(optimizer).__name__}."
    )
  levels = np.asarray(flood_levels, dtype=np.float64)
  if levels.ndim != 1 or levels.size == 0:
    raise ValueError(
        "flood_levels must be a non-empty list of numbers, e.g. [0.0, 0.05, 0.1];"
        f" got {flood_levels!r}."
    )
  for level in levels:
    check_flood_level(float(level), name="every flood level")
  seed_array = np.asarray(seeds)
  if seed_array.ndim != 1 or seed_array.size == 0 or not np.issubdtype(
      seed_array.dtype, np.integer):
    raise ValueError(f"seeds must be a non-empty list of integers, got {seeds!r}.")
  if len(set(seed_array.tolist())) != seed_array.size:
    raise ValueError(f"seeds must be distinct, got {seeds!r}.")
  if np.any(seed_array < 0) or np.any(seed_array >= 2**31):
    raise ValueError(f"seeds must lie in [0, 2**31), got {seeds!r}.")
  for name, value in [("epochs", epochs), ("batch_size", batch_size),
                      ("eval_batch_size", eval_batch_size)]:
    _check_positive_int(name, value)
  for name, value in [("chunk_size", chunk_size), ("epochs_per_call", epochs_per_call)]:
    if value is not None:
      _check_positive_int(name, value)
  if batch_size > data.num_train:
    raise ValueError(
        f"batch_size {batch_size} is larger than the training set"
        f" ({data.num_train} examples); use batch_size <= {data.num_train}."
    )
  return levels.astype(np.float32), seed_array.astype(np.int64)


def _check_positive_int(name: str, value: Any) -> None:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
    raise ValueError(f"{name} must be a positive integer, got {value!r}.")


def _checksum(data: Dataset) -> str:
  digest = hashlib.sha256()
  for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
    digest.update(np.ascontiguousarray(getattr(data, name)).tobytes())
  return digest.hexdigest()[:16]


class _CheckpointStore:
  """Orbax checkpoints of a sweep: finished chunks, and the chunk in progress.

  Tests shorten ``_CHECKPOINT_EVERY_S`` to exercise mid-chunk saves.
  """

  def __init__(self, directory: str, fingerprint: dict[str, Any]):
    import orbax.checkpoint as ocp  # Imported here: it is slow to import.

    self.directory = os.path.abspath(directory)
    os.makedirs(self.directory, exist_ok=True)
    meta_path = os.path.join(self.directory, "sweep.json")
    # As JSON reads it back (tuples become lists), so the two compare fairly.
    fingerprint = json.loads(json.dumps(dict(fingerprint, version=_CHECKPOINT_VERSION)))
    if os.path.exists(meta_path):
      with open(meta_path) as f:
        saved = json.load(f)
      if saved != fingerprint:
        changed = sorted(
            k for k in set(saved) | set(fingerprint) if saved.get(k) != fingerprint.get(k)
        )
        raise ValueError(
            f"checkpoint_dir {directory} holds a different sweep (differs in:"
            f" {', '.join(changed)}); pass the same arguments to resume, or a new"
            " directory."
        )
    else:
      with open(meta_path + ".tmp", "w") as f:
        json.dump(fingerprint, f, indent=1)
      os.replace(meta_path + ".tmp", meta_path)
    self._checkpointer = ocp.StandardCheckpointer()
    self._last_save = time.monotonic()

  def due(self) -> bool:
    """Whether the chunk in progress is due a save (``_CHECKPOINT_EVERY_S``)."""
    return time.monotonic() - self._last_save >= _CHECKPOINT_EVERY_S

  def _save(self, path: str, tree: dict[str, Any]) -> None:
    tmp = path + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    self._checkpointer.save(tmp, tree)
    self._checkpointer.wait_until_finished()
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)
    self._last_save = time.monotonic()

  def _restore(self, path: str) -> Optional[dict[str, Any]]:
    if not os.path.isdir(path):
      return None
    return self._checkpointer.restore(path)

  def save_current(self, call: int, carry, epoch: int, history: np.ndarray) -> None:
    self._save(os.path.join(self.directory, "current"), {
        "call": np.asarray(call, np.int32), "epoch": np.asarray(epoch, np.int32),
        "carry": _leaves_to_tree(jax.tree.leaves(carry)), "history": history,
    })

  def load_current(self, call: int, structure):
    tree = self._restore(os.path.join(self.directory, "current"))
    if tree is None or int(tree["call"]) != call:
      return None
    leaves = _tree_to_leaves(tree["carry"])
    carry = jax.tree.unflatten(jax.tree.structure(structure), leaves)
    return carry, int(tree["epoch"]), tree["history"]

  def save_done(self, call: int, leaves: list[Any], history: np.ndarray) -> None:
    """Keeps a finished call: its models' (params, batch_stats) and history."""
    self._save(os.path.join(self.directory, f"done_{call:05d}"), {
        "leaves": _leaves_to_tree(leaves), "history": history,
    })
    shutil.rmtree(os.path.join(self.directory, "current"), ignore_errors=True)

  def load_done(self, call: int):
    tree = self._restore(os.path.join(self.directory, f"done_{call:05d}"))
    if tree is None:
      return None
    return tree["history"], _tree_to_leaves(tree["leaves"])


# Orbax restores plain dicts, not NamedTuples (optimizer states): a carry is
# saved as its flat leaves, keyed by position, and rebuilt from its structure.
def _leaves_to_tree(leaves: Sequence[Any]) -> dict[str, np.ndarray]:
  return {str(i): np.asarray(x) for i, x in enumerate(leaves)}


def _tree_to_leaves(tree: dict[str, Any]) -> list[Any]:
  return [tree[str(i)] for i in range(len(tree))]


class _NoBar:

  def update(self, n: int) -> None:
    del n

  def close(self) -> None:
    pass


def _progress_bar(enabled: bool, total: int, num_models: int, group: int):
  if not enabled:
    return _NoBar()
  from tqdm.auto import tqdm

  return tqdm(
      total=total,
      desc=f"sweep: {num_models} models, {group} per call",
      unit="epoch",
      dynamic_ncols=True,
  )
