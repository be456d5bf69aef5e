"""``fj.Population``: a grid of models trained together from the user's own loop.

The sweep owns its loop; a Population gives the same models, initialized as the sweep
initializes them (:class:`~flood_jax._sweep.compiled.Program`'s ``init``) and stepped by the
same step (:func:`~flood_jax._sweep.program.step_one`), to a loop the user writes around the
loader they already have: every model sees the batch the loop hands it.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from types import SimpleNamespace
from typing import Any, cast

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding

from flood_jax._dataset import InputSpec
from flood_jax._sweep import cache, hosts
from flood_jax._sweep.compiled import Program, StepProgram
from flood_jax._sweep.grid import Grid
from flood_jax._sweep.layout import Layout, placement, seed_slots
from flood_jax._sweep.objectives import Objective
from flood_jax._sweep.program import CallPlan, Carry
from flood_jax._sweep.spec import TrainSpec, check_hyperparams, check_model_output
from flood_jax._sweep.stream import check_finite, check_labels, host_array
from flood_jax._sweep.streamed import evaluate_means, num_classes
from flood_jax._task import Task, task_from_arguments

_OBJECTIVES = ("flood", "iflood")


@flax.struct.dataclass
class PopulationState:
  """Every model of a :class:`Population`: its carry, flood level and seed, and the step count.

  The arrays lead with one flat axis over the models (the sweep's order: seed-major, padded to
  the devices), sharded over the devices; :attr:`params`, :attr:`model_state`,
  :attr:`opt_state` and :attr:`flood_levels` give them with the grid's axes
  ``(levels, *hyperparameters, seeds)``, like ``SweepResult.final_params``.
  """

  carry: Carry
  levels: jax.Array  # (padded models,) float32: each model's flood level
  seeds: jax.Array  # (padded models,) int32
  step: jax.Array  # () int32: steps taken
  grid_shape: tuple[int, ...] = flax.struct.field(pytree_node=False)

  def view(self, flat: Any) -> Any:
    """Leaves with the flat models axis -> leaves with the grid's axes."""
    return jax.tree.map(lambda a: _grid_view(a, self.grid_shape), flat)

  @property
  def params(self) -> Any:
    return self.view(self.carry.params)

  @property
  def model_state(self) -> Any:
    """BatchNorm statistics and the like (an empty tree for a model without)."""
    return self.view(self.carry.model_state)

  @property
  def opt_state(self) -> Any:
    return self.view(self.carry.opt_state)

  @property
  def flood_levels(self) -> jax.Array:
    return _grid_view(self.levels, self.grid_shape)

  def with_flood_levels(self, levels: Any) -> PopulationState:
    """The state with each model's flood level set from ``levels``, an array of the grid's shape.

    The level is an input of the step, not a constant in it: nothing recompiles.
    """
    levels = np.asarray(levels, np.float32)
    if levels.shape != self.grid_shape:
      raise ValueError(f"levels must have the grid's shape {self.grid_shape}, got {levels.shape}.")
    if not np.all(np.isfinite(levels)):
      raise ValueError("levels must be finite numbers.")
    flat = np.moveaxis(levels, -1, 0).reshape(-1)
    padded = self.levels.shape[0]
    flat = np.concatenate([flat, np.full(padded - flat.size, flat[-1], np.float32)])
    sharding = cast(NamedSharding, self.levels.sharding)
    return dataclasses.replace(self, levels=hosts.put(flat, sharding))


def _grid_view(a: jax.Array, grid_shape: tuple[int, ...]) -> jax.Array:
  num_models = math.prod(grid_shape)
  seeds_first = a[:num_models].reshape((grid_shape[-1], *grid_shape[:-1], *a.shape[1:]))
  return jnp.moveaxis(seeds_first, 0, len(grid_shape) - 1)


class Population:
  r"""A grid of models (flood levels x hyperparameters x seeds) trained together in your loop.

  ``fj.sweep`` owns its training loop; a Population gives you its step. Each model ``(b,
  h, seed)`` trains with ``optax.chain(fj.flood(b), optimizer)`` on the flooded objective
  :math:`|J - b| + b` of the batch mean :math:`J` of the task's loss (or iFlood's
  :math:`\frac{1}{B}\sum_i |\ell_i - b| + b` with ``objective="iflood"``), every model on the
  batch your loop hands :meth:`train_step`: one compiled, vmapped step of all of them, sharded
  over the devices, so choosing ``b`` costs one pass over your data, not one per level.

  A model is initialized from its seed exactly as ``fj.sweep`` initializes it, and a model
  trained here equals the same model trained alone with ``optax.chain(fj.flood(b),
  optimizer)`` on the same batches (to float round-off). The dropout key of step ``s`` of a
  model is ``fold_in(fold_in(fold_in(key(seed), 1), 0), s)``.

  Args:
    model: a linen module (``model.apply(variables, x, train=...)``), an NNX factory
      ``lambda rngs: Net(rngs=rngs)``, ``fj.Model(init, apply)`` or ``fj.Pretrained``.
    optimizer: any Optax transformation (``optax.inject_hyperparams`` to sweep its
      hyperparameters).
    flood_levels: the levels ``b`` to train, at least one.
    seeds: integer seeds, at least one.
    hyperparams: optional ``{name: [values]}`` of the optimizer's injected hyperparameters.
    task: :class:`flood_jax.Classification` (the default), :class:`flood_jax.Regression` or a
      :class:`flood_jax.Task`.
    objective: ``"flood"`` or ``"iflood"``.
    mesh: a 1-D ``jax.sharding.Mesh`` to shard the models over; default all devices (no more
      than there are models).

  Examples:
    >>> import numpy as np, optax
    >>> import flax.linen as nn
    >>> import flood_jax as fj
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(64, 2)).astype(np.float32)
    >>> y = (x[:, 0] > 0).astype(np.int32)
    >>> class Net(nn.Module):
    ...   @nn.compact
    ...   def __call__(self, x, train):
    ...     return nn.Dense(2)(nn.relu(nn.Dense(8)(x)))
    >>> pop = fj.Population(Net(), optimizer=optax.sgd(0.1),
    ...                     flood_levels=[0.0, 0.1, 0.2], seeds=[0, 1])
    >>> state = pop.init(x[:16])
    >>> for epoch in range(3):
    ...   for i in range(0, 64, 16):
    ...     state, metrics = pop.train_step(state, x[i:i + 16], y[i:i + 16])
    >>> metrics["loss"].shape, metrics["flooded"].dtype
    ((3, 2), dtype('bool'))
    >>> scores = pop.evaluate(state, [(x, y)])
    >>> sorted(scores), scores["accuracy"].shape
    (['accuracy', 'loss'], (3, 2))
  """

  def __init__(
    self,
    model: Any,
    *,
    optimizer: optax.GradientTransformation,
    flood_levels: Sequence[float] | np.ndarray,
    seeds: Sequence[int] = (0,),
    hyperparams: Mapping[str, Sequence[float]] | None = None,
    task: Task | None = None,
    objective: str = "flood",
    mesh: Mesh | None = None,
  ):
    if not isinstance(optimizer, optax.GradientTransformation):
      raise TypeError(
        f"optimizer must be an Optax transformation such as optax.sgd(0.01),"
        f" got {type(optimizer).__name__}."
      )
    if objective not in _OBJECTIVES:
      raise ValueError(f"objective must be one of {_OBJECTIVES}, got {objective!r}.")
    self.model = model
    self.optimizer = optimizer
    self.task = task_from_arguments(task, None)
    self.objective = Objective.named(objective)
    self.grid = Grid.build(flood_levels, hyperparams, seeds)
    devices, num_devices = placement(mesh, self.grid.num_models)
    # Every model at once (a user's step trains them all): one call of a padded chunk per device.
    chunk_size = math.ceil(self.grid.num_models / num_devices)
    self.layout = Layout(tuple(devices), num_devices, chunk_size)
    self.mesh = self.layout.mesh
    self._train: TrainSpec | None = None
    self._program: StepProgram | None = None
    self._step = None
    self._plan: CallPlan | None = None
    self._targets: InputSpec | None = None
    self._classes: int | None = None

  @property
  def shape(self) -> tuple[int, ...]:
    """The grid's shape, ``(levels, *values per hyperparameter, seeds)``."""
    return self.grid.shape

  @property
  def axes(self) -> tuple[str, ...]:
    """The names of the grid's axes."""
    return self.grid.axes

  def init(self, x_example: Any) -> PopulationState:
    """Every model initialized from its seed, as ``fj.sweep`` initializes it.

    Args:
      x_example: a batch of inputs (an array or pytree of arrays ``(batch, ...)``); its
        shapes and dtypes, not its values, build the models.
    """
    x = jax.tree.map(host_array, x_example)
    leaves = jax.tree.leaves(x)
    if not leaves or any(leaf.ndim == 0 for leaf in leaves):
      raise ValueError("x_example must be a batch: arrays of shape (batch, ...).")
    inputs = InputSpec.of(x)
    train = TrainSpec(
      model=self.model,
      task=self.task,
      optimizer=self.optimizer,
      objective=self.objective,
      augment=None,
      hyperparams=tuple(self.grid.hyperparams),
      inputs=inputs,
      targets=inputs,  # unknown until the first training batch (not read before it)
      batch_size=int(leaves[0].shape[0]),
    )
    abstract = jax.eval_shape(lambda x: train.adapter.init(jax.random.key(0), x)[0],
                              inputs.batch(1))  # fmt: skip
    check_hyperparams(abstract, self.optimizer, self.grid)
    self._train, self._program, self._step, self._targets = train, None, None, None
    layout = self.layout
    index = layout.chunks(np.arange(self.grid.num_models))[0].index
    flat_levels, flat_hparams, flat_seeds = self.grid.flat()
    slot_seeds, model_slot = seed_slots(flat_seeds[index], layout.num_devices)
    levels, hparams, slot_seeds, model_slot, seeds = hosts.put(
      (flat_levels[index], flat_hparams[index], slot_seeds, model_slot,
       flat_seeds[index].astype(np.int32)),
      layout.sharded,
    )  # fmt: skip
    plan = CallPlan(epochs=1, epochs_per_call=1, eval_every=1, eval_sizes=(0, 0, 0),
                    eval_batch_size=1, chunk_size=layout.chunk_size)  # fmt: skip
    self._plan = plan
    # Not from the program cache: its key traces a training step, which needs the targets
    # (known at the first train_step, where the step's programs come from the cache).
    program = Program(train, plan, self.mesh)
    carry = program.init(levels, hparams, slot_seeds, model_slot,
                         (hosts.put(x, layout.replicated),))  # fmt: skip
    step = hosts.put(np.int32(0), layout.replicated)
    return PopulationState(carry, levels, seeds, step, self.grid.shape)

  def _ready(self, x: Any, y: Any) -> TrainSpec:
    """The training spec, its target spec fixed by the first batch (checked once)."""
    if self._train is None:
      raise ValueError("call pop.init(x_example) first, and pass its state to train_step.")
    targets = InputSpec.of(y)
    sizes = {leaf.shape[0] for leaf in jax.tree.leaves(x)} | {y.shape[0]}
    if len(sizes) != 1:
      raise ValueError(
        f"a batch's inputs and targets differ in length ({sorted(sizes)}); they must match."
      )
    _same(InputSpec.of(x), self._train.inputs, "inputs")
    if self._targets is None:
      data = SimpleNamespace(input_spec=self._train.inputs, target_spec=targets, num_classes=None)
      check_model_output(self._train.adapter, data, self.task)
      self._classes = num_classes(self._train)
      self._train = dataclasses.replace(self._train, targets=targets)
      self._targets = targets
      assert self._plan is not None
      self._program = cache.get_program(self._train, self._plan, self.mesh).stepped
    else:
      _same(targets, self._targets, "targets")
    check_labels(y, self._classes, "a batch")
    return self._train

  def train_step(self, state: PopulationState, x: Any, y: Any) -> tuple[PopulationState, dict]:
    """One step of every model on the batch ``(x, y)``.

    Returns the new state and ``{"loss": ..., "flooded": ...}``, grid-shaped: each model's
    plain (unflooded) batch loss before the step, and whether the step ascended (``J < b``;
    with ``objective="iflood"``, the fraction of the batch's examples below ``b``).
    Compiles once per batch shape; nothing waits for the devices until the metrics are read.
    """
    x, y = jax.tree.map(host_array, x), host_array(y)
    check_finite((x, y), "a training batch")
    self._ready(x, y)
    assert self._program is not None
    if self._step is None:
      self._step = self._program.viewed_step(self.grid.shape, _grid_view)
    x, y = hosts.put((x, y), self.layout.replicated)
    with jax.threefry_partitionable(False):
      carry, flooded, loss, step = self._step(
        tuple(state.carry), state.levels, state.seeds, x, y, state.step
      )
    state = dataclasses.replace(state, carry=Carry(*carry), step=step)
    return state, {"loss": loss, "flooded": flooded}

  def evaluate(self, state: PopulationState, batches: Iterable[Any]) -> dict[str, np.ndarray]:
    """One pass over ``batches`` of ``(x, y)`` in evaluation mode.

    Returns, per model (grid-shaped NumPy arrays), the mean over the examples (batches may
    differ in size) of the loss (``"loss"``) and of each of the task's metrics
    (``"accuracy"``, ...).
    """
    if self._train is None:
      raise ValueError("call pop.init(x_example) first, and pass its state to evaluate.")

    try:
      batches = iter(batches)
    except TypeError:
      raise TypeError(
        f"evaluate() takes an iterable of (x, y) batches, got {type(batches).__name__}."
      ) from None
    first = next(batches, None)
    if first is None:
      raise ValueError("evaluate() got no batch; give it an iterable of (x, y) batches.")

    def checked():
      for i, batch in enumerate(itertools.chain([first], batches)):
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
          raise ValueError(f"evaluation batch {i} is not an (x, y) pair; give (inputs, targets).")
        x, y = jax.tree.map(host_array, batch[0]), host_array(batch[1])
        self._ready(x, y)
        yield x, y

    pairs = checked()
    head = next(pairs)  # the first batch fixes the program (and its checks)
    assert self._program is not None
    means = evaluate_means(self._program, state.carry, itertools.chain([head], pairs))
    if means is None:
      raise ValueError("evaluate() got batches without examples; give it (x, y) batches of some.")
    return {name: self.grid.unflatten(m[: self.grid.num_models]) for name, m in means.items()}


def _same(got: InputSpec, first: InputSpec, what: str) -> None:
  if got.treedef != first.treedef:
    raise ValueError(
      f"a batch's {what} are structured as {got.treedef} but the first batch's were"
      f" {first.treedef}; give every batch the same structure (the same keys)."
    )
  if got.shapes != first.shapes or got.dtypes != first.dtypes:
    raise ValueError(
      f"a batch's {what} per example are {_described(got)} but"
      f" the first batch's were {_described(first)}; every batch"
      " must have the same example shape and dtype."
    )


def _described(spec: InputSpec) -> list[str]:
  return [f"{dtype}{list(shape)}" for shape, dtype in zip(spec.shapes, spec.dtypes, strict=True)]
