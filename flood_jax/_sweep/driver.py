"""``run(spec)``: the one loop that trains a sweep, whatever its pruning policy and checkpoint.

How it runs. One model's whole training run (per epoch: shuffle, mini-batch steps, then
evaluation) is a pure function built on ``lax.scan`` (:mod:`flood_jax._sweep.program`);
``jax.vmap`` runs it over a *chunk* of ``chunk_size`` models and ``jax.shard_map`` one chunk per
device (:mod:`flood_jax._sweep.compiled`); this module runs the calls one after another, so a
sweep larger than memory still fits (:mod:`flood_jax._sweep.layout`). Within a call,
``epochs_per_call`` epochs run without returning to Python; between calls the progress bar
moves, the trackers are fed and the checkpoint is written.

The run is cut into *segments* at the pruning policy's rungs (:mod:`flood_jax._sweep.prune`;
the default policy has none, so one segment). In each, the models still training are laid out
in calls; after it, the policy names the configurations that train on, and their carries are
re-packed into fewer calls. With a fixed ``chunk_size`` a model's arithmetic does not depend
on where in a chunk it sits, so a survivor ends bitwise as in the unpruned sweep.

The models are the points of the grid (:mod:`flood_jax._sweep.grid`), flood levels x optimizer
hyperparameters x seeds, ordered seed-major, so models that share a seed, and with it the
initialization and the order of mini-batches, sit in the same chunk, and each chunk draws one
permutation per seed per epoch, not one per model.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, NamedTuple

import jax
import numpy as np

from flood_jax._chance import AtChanceWarning, warn_if_at_chance  # noqa: F401 (kept importable)
from flood_jax._dataset import Dataset
from flood_jax._result import SweepResult
from flood_jax._sweep import cache, checkpoint, hosts, schedule
from flood_jax._sweep.compiled import Program
from flood_jax._sweep.layout import Chunk, Layout, device_data, seed_slots
from flood_jax._sweep.memory import device_limit
from flood_jax._sweep.metrics import empty_history
from flood_jax._sweep.pbt import PBT, hyperparam_leaves
from flood_jax._sweep.plan import Plan as MemoryPlan
from flood_jax._sweep.plan import RunUsage, data_nbytes, make_plan
from flood_jax._sweep.program import Carry, DeviceData
from flood_jax._sweep.progress import planned_chunk_epochs, progress_bar, retotal
from flood_jax._sweep.schedule import EvalPlan
from flood_jax._sweep.spec import SweepSpec
from flood_jax._sweep.stream import Stream
from flood_jax._sweep.streamed import StreamCalls, StreamUsage
from flood_jax._sweep.tracking import Tracking

_progress_bar = progress_bar  # (tests replace it with a bar that presses Ctrl-C)
# Where these lived before the engine had a module per concern (kept importable).
auto_eval_every, evaluated_epochs = schedule.auto_eval_every, schedule.evaluated_epochs


@dataclasses.dataclass(frozen=True, eq=False)
class Programs:
  """The compiled programs of one sweep: a call of any length, from the program cache."""

  spec: SweepSpec
  plan: EvalPlan
  layout: Layout

  def for_length(self, epochs: int) -> Program:
    return cache.get_program(self.spec.train, self.plan.call(epochs), self.layout.mesh)

  @property
  def main(self) -> Program:
    return self.for_length(self.plan.epochs_per_call)

  @property
  def carry_structure(self) -> Carry:
    return self.main.carry_structure


@dataclasses.dataclass
class RunState:
  """What the loop has so far: history, alive configurations, and what the models keep.

  Without rungs each call keeps its models' (params, model state) as it ends (``pieces``, in
  call order); with rungs every model's whole carry is kept on the host (``carries``, one
  array per leaf, in flat order), so survivors can be re-packed.
  """

  history: np.ndarray  # (models, epochs, metrics)
  alive: np.ndarray  # configurations still training, sorted
  pruned_at: np.ndarray  # (configs,) the epoch a configuration stopped after, 0 if none
  pieces: list[list[Any]] = dataclasses.field(default_factory=list)
  carries: list[np.ndarray] | None = None
  # PBT: per segment, the levels and hyperparameters each model trained with (flat order),
  # and per boundary the flat model each one went on from.
  trained: list[tuple[np.ndarray, np.ndarray]] = dataclasses.field(default_factory=list)
  lineage: list[np.ndarray] = dataclasses.field(default_factory=list)

  @classmethod
  def start(cls, spec: SweepSpec) -> RunState:
    grid = spec.grid
    return cls(
      history=empty_history(spec.train.task, grid.num_models, spec.epochs),
      alive=np.arange(grid.num_configs),
      pruned_at=np.zeros(grid.num_configs, np.int64),
    )

  def alive_models(self, spec: SweepSpec) -> np.ndarray:
    """Flat indices of the models still training (seed-major, as the grid orders them)."""
    grid = spec.grid
    return (self.alive[None, :] + grid.num_configs * np.arange(len(grid.seeds))[:, None]).ravel()

  def prune(self, kept: np.ndarray, epoch: int) -> None:
    self.pruned_at[np.setdiff1d(self.alive, kept)] = epoch
    self.alive = kept


class Prepared(NamedTuple):
  """What a sweep runs on: its layout, its data on the devices, its schedule and memory plan."""

  layout: Layout
  data: DeviceData
  plan: EvalPlan
  memory: MemoryPlan


def planned(spec: SweepSpec, measure: bool = False) -> Prepared:
  """The layout (chunk size from the memory plan), the data placed, the schedule."""
  if spec.streamed:
    return _planned_stream(spec, measure)
  assert isinstance(spec.data, Dataset)
  first = Layout.plan(
    spec.model, spec.data, spec.grid.num_models, spec.train.batch_size,
    chunk_size=spec.run.chunk_size, mesh=spec.run.mesh,
  )  # fmt: skip
  data, eval_sizes = device_data(spec.data, first.mesh, spec.eval.train_eval_size,
                                 spec.eval.eval_test)  # fmt: skip
  if spec.per_example is not None:
    data = data._replace(per_example=hosts.put(spec.per_example, first.replicated))
  batch = spec.train.batch_size
  plan = EvalPlan.plan(
    epochs=spec.epochs,
    eval_every=spec.eval.eval_every,
    eval_sizes=eval_sizes,
    eval_batch_size=spec.eval.eval_batch_size,
    trained_per_epoch=spec.num_trained // batch * batch,
    rungs=spec.policy.rungs(spec.epochs),
    epochs_per_call=spec.run.epochs_per_call,
    streamed=spec.run.streamed,
    chunk_size=first.chunk_size,
  )
  memory_plan, usage = _memory_plan(spec, first, plan, data, measure)
  layout = Layout(first.devices, first.num_devices, memory_plan.chunk_size)
  plan = dataclasses.replace(plan, chunk_size=layout.chunk_size)
  executable = usage.compiled.get(layout.chunk_size)
  if executable is not None and usage.mesh == layout.mesh:
    # The plan compiled this very call (a one-device sweep): its calls run that executable.
    cache.get_program(spec.train, plan.call(plan.epochs_per_call), layout.mesh).adopt(executable)
  return Prepared(layout, data, plan, memory_plan)


def _planned_stream(spec: SweepSpec, measure: bool) -> Prepared:
  """A stream's: no data set on the devices, its first batch (for the initialization) only;
  the memory plan counts the models and the blocks of batches in flight."""
  stream = spec.data
  assert isinstance(stream, Stream)
  first = Layout.plan(
    spec.model, stream, spec.grid.num_models, spec.train.batch_size,
    chunk_size=spec.run.chunk_size, mesh=spec.run.mesh,
  )  # fmt: skip
  x, y = hosts.put(stream.first_batch, first.replicated)
  data = DeviceData(x, y, x, y)
  plan = EvalPlan.plan(
    epochs=spec.epochs,
    eval_every=1 if spec.eval.eval_every is None else spec.eval.eval_every,
    eval_sizes=(0, 0, 0),
    eval_batch_size=spec.eval.eval_batch_size,
    trained_per_epoch=0,
    rungs=spec.policy.rungs(spec.epochs),
    epochs_per_call=1 if spec.run.epochs_per_call is None else spec.run.epochs_per_call,
    streamed=True,
    chunk_size=first.chunk_size,
  )
  usage = StreamUsage(spec.train, stream, _local_device(first))
  memory_plan = _fit(spec, first, usage, usage.in_flight_bytes, measure, data_part="batches")
  layout = Layout(first.devices, first.num_devices, memory_plan.chunk_size)
  plan = dataclasses.replace(plan, chunk_size=layout.chunk_size)
  return Prepared(layout, data, plan, memory_plan)


def _memory_plan(spec, first: Layout, plan: EvalPlan, data, measure: bool):
  """The chunk size that fits the devices' memory (:mod:`flood_jax._sweep.plan`), and the
  :class:`~flood_jax._sweep.plan.RunUsage` that measured it."""
  call = plan.call(plan.epochs_per_call)
  usage = RunUsage(spec.train, call, _local_device(first), data, len(spec.grid.seeds))
  data_bytes = data_nbytes(jax.tree.leaves(tuple(data)))
  return _fit(spec, first, usage, data_bytes, measure), usage


def _local_device(first: Layout) -> Any:
  """A device of this process that the layout uses (where the memory plan compiles)."""
  devices = first.devices
  return devices[0] if devices[0].process_index == jax.process_index() else jax.local_devices()[0]


def _fit(spec, first: Layout, usage, data_bytes: int, measure: bool, data_part: str = "data"):
  """The memory plan (:func:`~flood_jax._sweep.plan.make_plan`) of ``usage``'s program, with
  ``data_bytes`` per device held besides the models (the data set, or a stream's batches)."""
  return make_plan(
    usage,
    num_models=spec.grid.num_models,
    num_devices=first.num_devices,
    platform=first.platform,
    preferred_chunk=first.chunk_size,
    chunk_size=spec.run.chunk_size,
    memory_limit=spec.run.memory_limit,
    device_limit=None if first.platform == "cpu" else device_limit(_local_device(first)),
    data_bytes=data_bytes,
    batch_size=spec.train.batch_size,
    eval_batch_size=spec.eval.eval_batch_size,
    measure=measure,
    data_part=data_part,
  )


def run(spec: SweepSpec) -> SweepResult:
  """Trains the sweep ``spec`` describes; see :func:`flood_jax.sweep`."""
  layout, data, plan, memory_plan = planned(spec)
  programs = Programs(spec, plan, layout)
  config = spec.record(layout, plan)
  store = _open_store(spec, config, programs)
  tracking = Tracking(
    spec.run.loggers,
    grid=spec.grid,
    level_name=spec.level_name,
    config=config,
    metrics=(*spec.train.task.history_keys, *_explored_names(spec)),
    eval_epochs=plan.eval_epochs,
    checkpoint_dir=store.directory,
  )
  loop = _Loop(spec, plan, layout, programs, data, store, tracking)
  start = time.perf_counter()
  loop.train()
  wall_time = time.perf_counter() - start
  result = assemble(spec, plan, layout, programs, loop.state, config, wall_time, memory_plan)
  if spec.objective.has_best and isinstance(spec.data, Dataset):
    warn_if_at_chance(result, spec.data.y_val, spec.train.task)
  tracking.finish(result)
  return result


def _open_store(spec: SweepSpec, config: dict[str, Any], programs: Programs):
  if spec.run.checkpoint_dir is None:
    return checkpoint.NullStore()
  # The traced one-model program names the model, optimizer, loss and objective, so a resume
  # with any of them changed is refused.
  data = spec.data
  checksum = data.checksum() if isinstance(data, Stream) else checkpoint.checksum(data)
  fingerprint = dict(config, data_checksum=checksum, computation=programs.main.digest())
  return checkpoint.CheckpointStore(spec.run.checkpoint_dir, fingerprint)


@dataclasses.dataclass
class _Loop:
  """One sweep's run: segments of calls of chunks."""

  spec: SweepSpec
  plan: EvalPlan
  layout: Layout
  programs: Programs
  data: DeviceData
  store: Any
  tracking: Tracking

  def __post_init__(self):
    self.state = RunState.start(self.spec)
    self.multi_process = hosts.process_count() > 1
    self.flat = self.spec.grid.flat()  # levels, hyperparameters, seeds per model
    self.stream = None
    if self.spec.streamed:
      assert isinstance(self.spec.data, Stream)
      self.stream = StreamCalls(self.programs.main.stepped, self.spec.data, self.plan,
                                self.spec.eval.eval_test)  # fmt: skip

  def train(self) -> None:
    grid, plan = self.spec.grid, self.plan
    total = planned_chunk_epochs(
      self.spec.policy, grid.num_configs, len(grid.seeds), self.layout.group, plan.stops
    )
    bar = _progress_bar(
      self.spec.run.progress and hosts.is_main(), total, grid.num_models, self.layout.group
    )
    try:
      for segment, stop in enumerate(plan.stops):
        first = plan.stops[segment - 1] if segment else 0
        models = self.state.alive_models(self.spec)
        self.state.trained.append(self.flat[:2])
        if isinstance(self.spec.policy, PBT):  # the trackers log the values trained with
          names = _explored_names(self.spec)
          columns = [self.flat[0], *self.flat[1].T]
          self.tracking.explored = dict(zip(names, columns, strict=True))
        for chunk in self.layout.chunks(models):
          self.train_chunk(segment, first, stop, chunk, bar)
        if stop < plan.epochs:
          self.rung(segment, stop, bar)
    except jax.errors.JaxRuntimeError as err:
      self.tracking.close()
      if not self.multi_process:
        raise
      raise hosts.lost_process(err, self.spec.run.checkpoint_dir) from err
    except BaseException:
      self.tracking.close()
      raise
    finally:
      bar.close()
      self.store.close()

  def rung(self, segment: int, stop: int, bar: Any) -> None:
    """The policy's survivors after ``stop`` epochs; the bar's total follows them."""
    grid = self.spec.grid
    kept = self.spec.policy.survivors(
      self.state.history, self.state.alive, grid, stop, self.plan.epochs, self.spec.train.task
    )
    self.state.prune(kept, stop)
    if isinstance(self.spec.policy, PBT):
      self.exploit(self.spec.policy, stop)
    # Ties kept together can leave more survivors than planned: the bar's total follows.
    retotal(bar, self.spec.policy, len(kept), len(grid.seeds), self.layout.group,
            self.plan.stops, segment + 1)  # fmt: skip

  def exploit(self, policy: PBT, stop: int) -> None:
    """PBT's boundary after ``stop`` epochs: copies carries, sets the next levels and
    hyperparameters (in the kept optimizer states and the per-model inputs)."""
    levels, hparams, seeds = self.flat
    gamma = self.spec.level_name == "gamma"  # AdaFlood's correction stays in [0, 1]
    decided = policy.exploit(self.state.history, self.spec.grid, stop, levels, hparams,
                             self.spec.train.task, (0.0, 1.0) if gamma else None)  # fmt: skip
    carries = self.state.carries
    assert carries is not None  # the driver keeps every carry when there are rungs
    copied = np.flatnonzero(decided.source != np.arange(len(decided.source)))
    if len(copied):
      for leaf in carries:
        leaf[copied] = leaf[decided.source[copied]]  # (fancy indexing reads a copy first)
      names = self.spec.train.hyperparams
      leaves = hyperparam_leaves(self.programs.carry_structure, names)
      for j, indices in enumerate(leaves):
        for i in indices:
          carries[i][copied] = decided.hparams[copied, j].astype(carries[i].dtype)
    self.flat = (decided.levels, decided.hparams, seeds)
    self.state.lineage.append(decided.source)

  def train_chunk(self, segment: int, first: int, stop: int, chunk: Chunk, bar: Any) -> None:
    """Trains (or reads back) one call's models from epoch ``first`` to ``stop``."""
    history = self.state.history
    done = self.store.load_done(segment, chunk.call, chunk.index)
    if done is not None:
      history[chunk.index], leaves = done
      self.keep_loaded(chunk, leaves)
      self.tracking.log(chunk.models, 0, history[chunk.models])  # what a new logger missed
      bar.update(stop - first)
      return
    levels, hparams, slot_seeds, model_slot = self.placed(chunk)
    if self.stream is not None:  # a stream's step takes each model's seed
      seeds = _model_seeds(self.flat, self.layout, chunk)
    carry, epoch = self.starting_carry(segment, first, chunk, (levels, hparams, slot_seeds,
                                                               model_slot))  # fmt: skip
    if epoch > first:
      bar.update(epoch - first)
    for length in self.plan.lengths(epoch, stop):
      if self.stream is not None:
        carry, metrics = self.stream.run(carry, levels, seeds, epoch, length)
      else:
        program = self.programs.for_length(length)
        carry, metrics = program.run(carry, levels, slot_seeds, model_slot, np.int32(epoch),
                                     self.data)  # fmt: skip
        metrics = hosts.to_host(metrics)  # every process gets every model's
      history[chunk.models, epoch : epoch + length] = metrics[: chunk.real]
      self.tracking.log(chunk.models, epoch, metrics[: chunk.real])
      epoch += length
      if epoch < stop and self.store.due(agree=self.multi_process):
        self.store.save_current(segment, chunk.call, _gathered(carry), epoch,
                                history[chunk.index])  # fmt: skip
      bar.update(length)
    self.keep(segment, chunk, carry)

  def placed(self, chunk: Chunk) -> tuple[Any, ...]:
    """The chunk's levels, hyperparameters and seeds on its devices."""
    return _placed(self.flat, self.layout, chunk)

  def starting_carry(self, segment: int, first: int, chunk: Chunk, placed) -> tuple[Any, int]:
    """The chunk's carry and epoch: the call in progress, the kept carries, or a new start."""
    structure = self.programs.carry_structure
    resumed = self.store.load_current(segment, chunk.call, structure)
    if resumed is not None:
      carry, epoch, rows = resumed
      self.state.history[chunk.index] = rows
      self.tracking.log(chunk.models, 0, rows[: chunk.real, :epoch])
      return hosts.put_keys(carry, self.layout.sharded), epoch
    if first == 0:
      levels, hparams, slot_seeds, model_slot = placed
      program = self.programs.main
      if not self.multi_process and self.stream is None:
        program.compile_ahead(levels, hparams, slot_seeds, model_slot, self.data)
      return program.init(levels, hparams, slot_seeds, model_slot, self.data), 0
    carries = self.state.carries
    assert carries is not None  # the first segment filled them
    like = jax.tree.leaves(structure)
    leaves = checkpoint._tree_to_leaves({str(i): x[chunk.index] for i, x in enumerate(carries)},
                                        like)  # fmt: skip
    carry = jax.tree.unflatten(jax.tree.structure(structure), leaves)
    return hosts.put_keys(carry, self.layout.sharded), first

  def keep(self, segment: int, chunk: Chunk, carry: Carry) -> None:
    """What a finished call keeps, on the host (and in the checkpoint)."""
    rows = self.state.history[chunk.index]
    if self.plan.rungs:
      leaves = [hosts.to_host(checkpoint.raw_key_data(x)) for x in jax.tree.leaves(carry)]
      self.store.save_done(segment, chunk.call, chunk.index, leaves, rows)
      self.keep_loaded(chunk, leaves)
      return
    kept = jax.tree.leaves(carry[:2])
    if self.multi_process:
      gathered = None
      if self.spec.run.gather_params or self.spec.run.checkpoint_dir is not None:
        gathered = [hosts.to_host(x) for x in kept]
        self.store.save_done(segment, chunk.call, chunk.index, gathered, rows)
      if gathered is None or not self.spec.run.gather_params:
        gathered = [hosts.local_rows(x) for x in kept]
      self.state.pieces.append(gathered)
      return
    # Big weights of a one-call sweep stay where they are (no copy); else each call's come
    # home, so the devices hold one call's models at a time.
    one_call = self.layout.num_calls(self.spec.grid.num_models) == 1
    on_device = one_call and sum(x.nbytes for x in kept) > 2**26
    piece = kept if on_device else [np.asarray(x) for x in kept]
    self.store.save_done(segment, chunk.call, chunk.index, piece, rows)
    self.state.pieces.append(piece)

  def keep_loaded(self, chunk: Chunk, leaves: list[Any]) -> None:
    """Keeps a call's leaves (as saved: host arrays over the chunk's padded models)."""
    if not self.plan.rungs:
      if self.multi_process and not self.spec.run.gather_params:
        leaves = [x[self.local_rows()] for x in leaves]
      self.state.pieces.append(list(leaves))
      return
    if self.state.carries is None:
      num_models = self.spec.grid.num_models
      self.state.carries = [np.zeros((num_models, *x.shape[1:]), x.dtype) for x in leaves]
    for stacked, x in zip(self.state.carries, leaves, strict=True):
      stacked[chunk.models] = np.asarray(x)[: chunk.real]

  def local_rows(self) -> np.ndarray:
    """The rows of a call (its padded models) that this process's devices hold."""
    return hosts.local_indices(self.layout.sharded, self.layout.group)


def assemble(spec, plan, layout, programs, state, config, wall_time, memory_plan) -> SweepResult:
  """The one place a :class:`SweepResult` is built."""
  grid = spec.grid
  stacked, local_models = _stacked(spec, plan, layout, programs, state)
  structure = jax.tree.structure(tuple(programs.carry_structure[:2]))
  params, model_state = jax.tree.unflatten(structure, stacked)
  if not jax.tree.leaves(model_state):
    model_state = None
  unflatten = grid.unflatten if local_models is None else (lambda x: x)
  history = state.history[:, plan.eval_epochs - 1]
  task = spec.train.task
  curves = {m: grid.unflatten(history[..., i]) for i, m in enumerate(task.history_keys)}
  lineage = None
  if isinstance(spec.policy, PBT):
    curves.update(_trained_values(spec, plan, state))
    lineage = grid.unflatten(np.stack(state.lineage, axis=-1) % grid.num_configs)
    if isinstance(spec.data, Stream):  # the batches of its last epoch read
      steps = spec.data.steps_per_epoch
    else:
      steps = spec.num_trained // spec.train.batch_size
    config = dict(config, pbt=dict(config["pbt"], steps_per_epoch=steps))
  return SweepResult(
    flood_levels=grid.flood_levels,
    seeds=grid.seeds,
    hyperparams=dict(grid.hyperparams),
    history=curves,
    lineage=lineage,
    final_params=jax.tree.map(unflatten, params),
    final_batch_stats=(None if model_state is None else jax.tree.map(unflatten, model_state)),
    local_models=local_models,
    config=config,
    wall_time=wall_time,
    model=spec.model,
    epochs=plan.eval_epochs,
    pruned_at=state.pruned_at.reshape(grid.config_shape),
    level_name=spec.level_name,
    plan=memory_plan,
    selection_key=task.selection_key,
    mode=task.mode,
  )


def _explored_names(spec: SweepSpec) -> tuple[str, ...]:
  """What PBT explores (logged and kept in the history): the level and the hyperparameters."""
  if not isinstance(spec.policy, PBT):
    return ()
  return (spec.level_name, *spec.grid.hyperparams)


def _trained_values(spec, plan, state) -> dict[str, np.ndarray]:
  """PBT's curves: the level and each hyperparameter every model trained with, per evaluated
  epoch (the epochs of a segment trained with what the segment started with)."""
  grid, eval_epochs = spec.grid, plan.eval_epochs
  segment = np.searchsorted(np.asarray(plan.stops), eval_epochs)  # the segment of each epoch
  levels = np.stack([state.trained[k][0] for k in segment], axis=-1)  # (models, evaluations)
  hparams = np.stack([state.trained[k][1] for k in segment], axis=-1)  # (models, H, evals)
  out = {spec.level_name: grid.unflatten(levels)}
  for j, name in enumerate(grid.hyperparams):
    out[name] = grid.unflatten(hparams[:, j])
  return out


def _stacked(spec, plan, layout, programs, state) -> tuple[list[Any], np.ndarray | None]:
  """Every model's (params, model state) leaves, stacked in flat order; this process's models."""
  num_models = spec.grid.num_models
  if plan.rungs:
    num_kept = len(jax.tree.leaves(tuple(programs.carry_structure[:2])))
    assert state.carries is not None
    return state.carries[:num_kept], None
  pieces = state.pieces
  if hosts.process_count() > 1 and not spec.run.gather_params:
    # This process's models, call after call (padding copies dropped).
    mine = hosts.local_indices(layout.sharded, layout.group)
    flat = np.concatenate([call * layout.group + mine for call in range(len(pieces))])
    keep = flat < num_models
    stacked = [np.concatenate([p[i] for p in pieces])[keep] for i in range(len(pieces[0]))]
    return stacked, flat[keep]
  if len(pieces) == 1:
    padded = layout.group
    return [x if padded == num_models else x[:num_models] for x in pieces[0]], None
  return [np.concatenate([p[i] for p in pieces])[:num_models] for i in range(len(pieces[0]))], None


def _placed(flat: Any, layout: Layout, chunk: Chunk) -> tuple[Any, ...]:
  flat_levels, flat_hparams, flat_seeds = flat
  slot_seeds, model_slot = seed_slots(flat_seeds[chunk.index], layout.num_devices)
  values = (flat_levels[chunk.index], flat_hparams[chunk.index], slot_seeds, model_slot)
  return hosts.put(values, layout.sharded)


def _model_seeds(flat: Any, layout: Layout, chunk: Chunk) -> Any:
  """The chunk's models' seeds, one per model, on its devices."""
  return hosts.put(flat[2][chunk.index].astype(np.int32), layout.sharded)


def timed_epochs(spec: SweepSpec, prepared: Prepared) -> tuple[float, float]:
  """``(first, per_epoch)`` seconds, from the first call's models trained for a few epochs.

  A program of one epoch per call is compiled and run on the first call's models: ``first``
  is the wall time to its first epoch's end (compiling the initialization and the epoch
  included); then an epoch without evaluation and one with it are timed, so ``per_epoch``
  (for the whole sweep: every call's models, one call after another, before any pruning) is
  ``calls * (plain + (evaluated - plain) / eval_every)``.
  """
  layout, data, plan = prepared.layout, prepared.data, prepared.plan
  program = cache.get_program(spec.train, plan.call(1), layout.mesh)
  chunk = layout.chunks(np.arange(spec.grid.num_models))[0]
  levels, hparams, slot_seeds, model_slot = _placed(spec.grid.flat(), layout, chunk)
  streamed = None
  if isinstance(spec.data, Stream):  # an epoch of the stream (read from its start)
    streamed = StreamCalls(program.stepped, spec.data, plan)
    seeds = _model_seeds(spec.grid.flat(), layout, chunk)

  def epoch(carry: Carry, e: int) -> tuple[Carry, float]:
    start = time.perf_counter()
    if streamed is not None:
      carry, metrics = streamed.run(carry, levels, seeds, e, 1)
    else:
      carry, metrics = program.run(carry, levels, slot_seeds, model_slot, np.int32(e), data)
    jax.block_until_ready((carry, metrics))
    return carry, time.perf_counter() - start

  start = time.perf_counter()
  carry = program.init(levels, hparams, slot_seeds, model_slot, data)
  carry, _ = epoch(carry, 0)
  first = time.perf_counter() - start
  evaluates = set(plan.eval_epochs.tolist())  # epochs (from 1) evaluated after: rungs included
  carry, evaluated = epoch(carry, plan.eval_every - 1)
  plain = next((e for e in range(plan.epochs) if e + 1 not in evaluates), None)
  per_chunk = evaluated
  if plain is not None:
    carry, seconds = epoch(carry, plain)
    per_chunk = seconds + max(evaluated - seconds, 0.0) / plan.eval_every
  return first, per_chunk * layout.num_calls(spec.grid.num_models)


def _gathered(carry: Any) -> Any:
  """The carry as a checkpoint saves it: under several processes, gathered (a collective)."""
  if hosts.process_count() == 1:
    return carry
  return jax.tree.map(hosts.to_host, carry)
