"""``sweep``: the driver that ties the grid, the model, the program and the layout.

How it runs. One model's whole training run (per epoch: shuffle, mini-batch
steps, then evaluation) is a pure function built on ``lax.scan``
(:mod:`flood_jax._sweep.program`). ``jax.vmap`` runs it over a *chunk* of
``chunk_size`` models; ``jax.shard_map`` runs one chunk per device; this
module's loop runs the calls one after another, so a sweep larger than memory
still fits (:mod:`flood_jax._sweep.layout`). Within a call, ``epochs_per_call``
epochs run without returning to Python; between calls the progress bar moves
and the checkpoint is written (:mod:`flood_jax._sweep.checkpoint`).

The models are the points of the grid (:mod:`flood_jax._sweep.grid`), flood
levels x optimizer hyperparameters x seeds, ordered seed-major, so models that
share a seed, and with it the initialization and the order of mini-batches,
sit in the same chunk, and each chunk draws one permutation per seed per
epoch, not one per model.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from flood_jax._dataset import Dataset
from flood_jax._result import METRICS, SweepResult
from flood_jax._sweep import checkpoint, hosts
from flood_jax._sweep.adapters import Adapter, adapt
from flood_jax._sweep.ahead import compile_run_ahead
from flood_jax._sweep.grid import Grid
from flood_jax._sweep.layout import device_data, plan_layout, seed_slots
from flood_jax._sweep.memory import device_limit, parse_bytes
from flood_jax._sweep.plan import Plan, data_nbytes, make_plan, run_usage
from flood_jax._sweep.program import (
  AXIS,
  HELDOUT,
  OBJECTIVES,
  Augment,
  LossFn,
  get_program,
  injected_hyperparams,
)
from flood_jax._sweep.prune import Halving, planned_chunk_epochs, run_pruned
from flood_jax._sweep.tracking import Tracking, check_loggers


def sweep(
  model: Any,
  data: Dataset,
  *,
  flood_levels: Sequence[float] | np.ndarray | None = None,
  seeds: Sequence[int] = (0,),
  optimizer: optax.GradientTransformation,
  epochs: int,
  batch_size: int,
  hyperparams: Mapping[str, Sequence[float]] | None = None,
  objective: str = "flood",
  per_example_levels: np.ndarray | None = None,
  gamma: Sequence[float] | np.ndarray | None = None,
  augment: Augment | None = None,
  loss_fn: LossFn | None = None,
  chunk_size: int | None = None,
  mesh: Mesh | None = None,
  epochs_per_call: int | None = None,
  eval_every: int | None = None,
  train_eval_size: int | None = 1000,
  eval_test: bool = True,
  eval_batch_size: int = 2048,
  checkpoint_dir: str | os.PathLike[str] | None = None,
  progress: bool = True,
  gather_params: bool = True,
  prune: Halving | None = None,
  loggers: Sequence[Any] | None = None,
  memory_limit: int | str | None = None,
  _fold_sets: np.ndarray | None = None,  # private: flood_jax.adaflood_levels' fold models
  _plan_only: bool = False,  # private: flood_jax.plan, which returns the Plan here
) -> SweepResult:
  r"""Trains one model per (flood level, hyperparameters, seed), all at once.

  With ``objective="flood"`` each model ``(b, seed)`` is trained with
  ``optax.chain(flood(b), optimizer)`` on the mini-batch mean of ``loss_fn``,
  i.e. on the flooded objective :math:`|J - b| + b` (Ishida et al., 2020).
  With ``objective="iflood"`` it is trained with ``optimizer`` on iFlood's
  per-example flooding :math:`\frac{1}{B}\sum_i (|\ell_i - b| + b)` (Xie et
  al., 2022). Every epoch shuffles the training set (``n_train //
  batch_size`` full mini-batches; the rest of the epoch's permutation is left
  out) and takes the steps; every ``eval_every`` epochs, and after the last,
  the models are evaluated in evaluation mode: the plain (not flooded) loss
  on a fixed subsample of ``train_eval_size`` training examples, and loss and
  accuracy on the validation and test sets. A seed fixes the initialization, the order of
  mini-batches, the dropout masks and the augmentation, so all configurations
  with the same seed are paired.

  **Models.** Three kinds: a Flax linen module, called as
  ``model.apply(variables, x, train=...)`` (a model with BatchNorm,
  ``use_running_average=not train``, gets its ``batch_stats`` trained too; a
  dropout layer gets the ``"dropout"`` rng); an NNX factory ``make(rngs) ->
  nnx.Module`` called as ``model(x)`` after ``model.train()`` or
  ``model.eval()``, whose ``nnx.BatchNorm`` statistics are trained and kept
  (``result.nnx_model(...)`` rebuilds a trained module); or
  :class:`flood_jax.Model` ``(init, apply)`` for any other JAX code.

  **Hyperparameters.** ``hyperparams={"learning_rate": [1e-3, 3e-3]}`` with an
  optimizer built by ``optax.inject_hyperparams`` adds one axis per name:
  every combination is one model of the same compiled program (the values are
  traced into the optimizer state, not compiled in).

  **AdaFlood.** With ``objective="adaflood"`` (Bae et al., 2024) every
  training example ``i`` has a level of its own, read off its held-out loss
  ``l_i = per_example_levels[i]`` and corrected toward its label by
  ``gamma``: :math:`\theta_i = -\log((1-\gamma)e^{-l_i} + \gamma)`, and
  the model trains on :math:`\frac{1}{B}\sum_i (|\ell_i - \theta_i| +
  \theta_i)` (:func:`flood_jax.iflooded_loss`). ``gamma`` is swept like a
  flood level (``gamma=[...]``, the first axis of the result, named
  ``"gamma"``), so choosing it by validation costs one sweep; the
  correction is computed in the program from the held-out losses, which are
  an input (a second sweep with other levels compiles nothing). ``gamma = 1``
  is plain training; ``gamma = 0`` floods at the held-out losses. The
  correction composes (``g2`` on levels corrected by ``g1`` is
  ``1 - (1 - g1)(1 - g2)``), so levels already corrected by
  ``adaflood_levels(..., gamma=g)`` are used as given with the default
  ``gamma=[0.0]``.

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

  **Several hosts.** Under ``jax.distributed`` (every process calls
  ``jax.distributed.initialize()``, then this function with the same
  arguments) the sweep axis spans all processes' devices; each process
  places and initializes only its own models, every process returns the same
  history (gathered after each call; bitwise what one process with the same
  devices and ``chunk_size`` returns), and only process 0 shows progress and
  writes the checkpoint (gathered state, in a directory all processes see).
  A resume needs the same number of processes. If a process dies, the others
  raise a ``RuntimeError`` saying so; rerun to continue from the checkpoint.

  Args:
    model: a linen module, an NNX factory ``lambda rngs: Net(rngs=rngs)``, or
      ``fj.Model(init, apply)``; see above.
    data: the :class:`flood_jax.Dataset` (shared by all models, not copied).
    flood_levels: the levels ``b >= 0`` to train, at least one (not with
      ``objective="adaflood"``, whose first axis is ``gamma``).
    seeds: integer seeds, at least one.
    optimizer: any Optax transformation; with ``objective="flood"``,
      ``flood(b)`` is put in front of it.
    epochs: epochs per model.
    batch_size: mini-batch size, at most the number of training examples.
    hyperparams: optional ``{name: [values]}`` of numeric hyperparameters of an
      ``optax.inject_hyperparams`` optimizer to sweep alongside the levels.
    objective: ``"flood"`` (batch-level flooding), ``"iflood"``
      (per-example flooding) or ``"adaflood"`` (per-example flooding at
      per-example levels; see **AdaFlood** below).
    per_example_levels: with ``objective="adaflood"`` only: ``(n_train,)``
      held-out losses of the training examples, from
      :func:`flood_jax.adaflood_levels`.
    gamma: with ``objective="adaflood"`` only: the corrections ``gamma`` in
      ``[0, 1]`` to train, the sweep's first axis in place of the flood
      levels (default ``[0.0]``: the levels as given).
    augment: optional ``augment(key, x_batch) -> x_batch`` applied on device
      to every training mini-batch, with a key per seed and step (paired
      across levels), e.g. :func:`flood_jax.data.random_crop_flip`.
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
    eval_every: epochs between evaluations (the last epoch is always
      evaluated; ``result.epochs`` lists the evaluated ones, and early
      stopping chooses among them). Default: the smallest interval at which
      evaluating costs about 10% of training (an evaluated example is counted
      as a third of a trained one), but at least five evaluations per run.
      On 2,000 training examples with 1,000 each of validation and test and
      the default ``train_eval_size``, that is every 5th epoch. Pass 1 for
      per-epoch curves. Results do not depend on it.
    train_eval_size: training examples whose (unflooded) loss is evaluated:
      a fixed subsample, the same for every model; ``None`` for the whole
      training set, 0 to skip it (``train_loss`` is then NaN).
    eval_test: evaluate the test set too (``False``: test metrics are NaN).
    eval_batch_size: examples per evaluation batch (memory, not results).
    checkpoint_dir: if given, the sweep is saved there with Orbax (each
      finished chunk at once, the chunk in progress every 30 s) and a later
      call with the same arguments resumes from it; the resumed sweep ends
      with exactly the results of an uninterrupted one. Only the sweep that
      wrote it resumes it: its fingerprint (``sweep.json``) names the traced
      computation (model, optimizer, loss, objective), a digest of the data,
      the grid, epochs, batch size and layout, and any difference is a
      ``ValueError``. Every saved file has a SHA-256 checked on load: a
      damaged or missing call is named in a ``CheckpointWarning`` and trained
      again. A save that fails (a full disk, a read-only directory) raises a
      ``CheckpointError`` (a ``RuntimeError``) and keeps what was saved
      before it; one sweep at a time may use the directory
      (``sweep.lock``).
    progress: show a progress bar (process 0's only, under several processes).
    gather_params: under ``jax.distributed`` (several processes), gather every
      model's trained parameters onto every process (default). ``False``
      keeps each process's own: ``final_params`` and ``final_batch_stats``
      leaves then have one leading axis, the models of this process, whose
      flat indices are ``result.local_models`` (model ``i`` has seed
      ``seeds[i // C]`` and configuration ``result.configurations()[i % C]``,
      ``C`` configurations). The history is always gathered. Ignored with one
      process.
    prune: ``fj.Halving(min_epochs, factor)`` for successive halving: after
      ``min_epochs * factor**k`` epochs, only the best ``1/factor`` of the
      configurations (by mean validation accuracy over seeds at that epoch,
      seeds kept or dropped together) train on, re-packed into fewer calls.
      With a fixed ``chunk_size`` every surviving model ends bitwise as in
      the unpruned sweep; ``result.pruned_at`` says which configurations
      stopped when (their ``history`` is NaN after it). The rungs are
      always evaluated; one process only, for now. See
      :class:`flood_jax.Halving`.
    loggers: experiment trackers, e.g. ``[fj.loggers.TensorBoard("runs/tb"),
      fj.loggers.MLflow(), fj.loggers.WandB("project")]``: one tracker run per
      model, its curves streamed after each compiled call (so by default a
      sweep with loggers runs in about 20 calls, as with a progress bar),
      its summary at the end; only process 0 logs. A logger that fails warns
      once and is left out. With ``checkpoint_dir`` a resumed sweep goes on
      in the same runs. See :mod:`flood_jax.loggers`.
    memory_limit: bytes each device may hold (an int, or a string such as
      ``"16GB"`` or ``"8GiB"``). With it, or on a GPU or TPU that reports its
      memory (then its ``bytes_limit`` less 10%), the default ``chunk_size``
      is the most models per device whose compiled program fits, from XLA's
      memory analysis (:func:`flood_jax.plan` shows it without training); a
      given ``chunk_size`` that does not fit, or a model that does not fit
      once, is a ``ValueError`` with the numbers. Without it a CPU keeps its
      measured layout. ``result.plan`` is the plan the sweep ran.

  Returns:
    A :class:`flood_jax.SweepResult`; ``history[metric]`` has shape
    ``(levels, *one axis per hyperparameter, seeds, epochs)`` (``result.axes``
    names them), and ``final_params`` leaves have the same leading axes.

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

    An NNX model, with the learning rate swept beside the level:

    >>> from flax import nnx
    >>> class NNXNet(nnx.Module):
    ...   def __init__(self, rngs):
    ...     self.hidden = nnx.Linear(2, 8, rngs=rngs)
    ...     self.out = nnx.Linear(8, 2, rngs=rngs)
    ...   def __call__(self, x):
    ...     return self.out(nnx.relu(self.hidden(x)))
    >>> result = fj.sweep(lambda rngs: NNXNet(rngs), data,
    ...                   flood_levels=[0.0, 0.1], seeds=[0, 1],
    ...                   optimizer=optax.inject_hyperparams(optax.sgd)(learning_rate=0.1),
    ...                   hyperparams={"learning_rate": [0.05, 0.1, 0.2]},
    ...                   epochs=3, batch_size=16, progress=False)
    >>> result.axes, result.history["val_accuracy"].shape
    (('flood_level', 'learning_rate', 'seed'), (2, 3, 2, 3))
    >>> sorted(result.best())
    ['flood_level', 'learning_rate']

  References:
    Ishida et al., `Do We Need Zero Training Loss After Achieving Zero
    Training Error? <https://arxiv.org/abs/2002.08709>`_, ICML 2020.

    Xie et al., `iFlood: A Stable and Effective Regularizer
    <https://openreview.net/forum?id=MsHnJPaBUZE>`_, ICLR 2022.
  """
  _check_arguments(
    data,
    optimizer,
    epochs,
    batch_size,
    chunk_size,
    epochs_per_call,
    eval_batch_size,
    objective,
    augment,
    loss_fn,
    eval_every,
    train_eval_size,
  )
  limit = None if memory_limit is None else parse_bytes(memory_limit)
  if checkpoint_dir is not None:
    checkpoint.check_directory(checkpoint_dir)
  loggers = check_loggers(loggers)
  level_name, levels, extra = _level_axis(
    data, objective, flood_levels, per_example_levels, gamma, _fold_sets
  )
  grid = Grid.build(levels, hyperparams, seeds)
  adapter = adapt(model)
  loss_fn = loss_fn or optax.softmax_cross_entropy_with_integer_labels
  abstract_params = _check_model_output(
    adapter, data, default_loss=loss_fn is optax.softmax_cross_entropy_with_integer_labels
  )
  _check_hyperparams(abstract_params, optimizer, grid)
  if augment is not None:
    _check_augment(augment, data, batch_size)
  num_models = grid.num_models
  flat_levels, flat_hparams, flat_seeds = grid.flat()

  devices, num_devices, preferred_chunk = plan_layout(
    model, data, num_models, batch_size, chunk_size=chunk_size, mesh=mesh
  )
  run_mesh = Mesh(np.asarray(devices[:num_devices]), (AXIS,))
  run_data, eval_sizes = device_data(data, run_mesh, train_eval_size, bool(eval_test))
  if _fold_sets is None:
    trained = data.num_train
  else:
    assert extra is not None  # with fold sets, _level_axis returns them as extra
    trained = extra.shape[1]
  if extra is not None:
    if batch_size > trained:
      raise ValueError(
        f"batch_size {batch_size} is larger than a fold model's training set"
        f" ({trained} examples); use batch_size <= {trained} or fewer folds."
      )
    run_data = (*run_data, hosts.put(extra, NamedSharding(run_mesh, P())))
  steps = trained // batch_size
  if eval_every is None:
    eval_every = auto_eval_every(sum(eval_sizes), steps * batch_size, epochs)
  rungs = _check_prune(prune, epochs)
  eval_epochs = np.union1d(evaluated_epochs(epochs, eval_every), rungs).astype(np.int64)
  if epochs_per_call is None:
    # Results do not depend on it (tested); only the feedback does. A divisor
    # of the epochs, so every call runs the same program.
    streamed = progress or checkpoint_dir is not None or loggers
    target = math.ceil(epochs / 20) if streamed else epochs
    epochs_per_call = max(d for d in range(1, target + 1) if epochs % d == 0)
    # Calls end at the rungs: with a common divisor, one program serves all.
    epochs_per_call = math.gcd(epochs_per_call, *rungs)
  epochs_per_call = min(epochs_per_call, epochs)

  multi_process = hosts.process_count() > 1
  settings = dict(
    model=model,
    loss_fn=loss_fn,
    optimizer=optimizer,
    objective=objective,
    augment=augment,
    hyperparams=tuple(grid.hyperparams),
    input_shape=data.input_shape,
    batch_size=batch_size,
    epochs=epochs,
    eval_every=eval_every,
    eval_sizes=eval_sizes,
    eval_batch_size=eval_batch_size,
  )
  if rungs:
    settings["also_evaluate"] = rungs
  plan = _plan(
    dict(settings, epochs_per_call=epochs_per_call),
    run_data,
    devices,
    num_devices=num_devices,
    num_models=num_models,
    num_seeds=len(grid.seeds),
    preferred_chunk=preferred_chunk,
    chunk_size=chunk_size,
    memory_limit=limit,
    measure=_plan_only,
  )
  if _plan_only:
    return cast(Any, plan)
  chunk_size = plan.chunk_size
  settings.update(mesh=run_mesh, chunk_size=chunk_size)
  group = chunk_size * num_devices  # models per call
  num_calls = math.ceil(num_models / group)
  padded = num_calls * group
  pad_index = np.concatenate([np.arange(num_models), np.full(padded - num_models, num_models - 1)])
  program = get_program(epochs_per_call=epochs_per_call, **settings)
  # A last call with fewer epochs (only when epochs_per_call, given, does
  # not divide the epochs) runs a program of its own.
  tail = epochs % epochs_per_call
  tail_program = get_program(epochs_per_call=tail, **settings) if tail else None

  config = {
    "model": adapter.describe(),
    "data": repr(data),
    **grid.to_dict(),
    "epochs": epochs,
    "batch_size": batch_size,
    "objective": objective,
    "augment": None if augment is None else _name(augment),
    "loss_fn": _name(loss_fn),
    "chunk_size": chunk_size,
    "devices": num_devices,
    "processes": hosts.process_count(),
    "platform": devices[0].platform,
    "epochs_per_call": epochs_per_call,
    "eval_every": eval_every,
    "train_eval_size": eval_sizes[0],
    "eval_test": bool(eval_test),
  }
  if prune is not None:
    pruning: dict[str, Any] = {"min_epochs": int(prune.min_epochs), "factor": int(prune.factor)}
    if prune.score != "accuracy":  # (absent for the plain score: older checkpoints match)
      pruning["score"] = prune.score
    config["prune"] = pruning
  if extra is not None:  # what the models train on, so a checkpoint of other levels is not resumed
    config["per_example_levels_sha256" if _fold_sets is None else "fold_sets_sha256"] = (
      hashlib.sha256(np.ascontiguousarray(extra).tobytes()).hexdigest()
    )
  store = None
  if checkpoint_dir is not None:
    # The traced one-model program names the model, optimizer, loss and
    # objective, so a resume with any of them changed is refused.
    fingerprint = dict(
      config, data_checksum=checkpoint.checksum(data), computation=program.computation_key()[0]
    )
    store = checkpoint.CheckpointStore(os.fspath(checkpoint_dir), fingerprint)
  tracking = Tracking(
    loggers,
    grid=grid,
    level_name=level_name,
    config=config,
    metrics=METRICS,
    eval_epochs=eval_epochs,
    checkpoint_dir=None if store is None else store.directory,
  )

  if prune is not None:
    pruned = _sweep_pruned(
      prune,
      model=model,
      settings=settings,
      grid=grid,
      mesh=run_mesh,
      data=run_data,
      num_devices=num_devices,
      epochs_per_call=epochs_per_call,
      store=store,
      progress=progress,
      config=config,
      eval_epochs=eval_epochs,
      level_name=level_name,
      tracking=tracking,
    )
    pruned.plan = plan
    if loss_fn is optax.softmax_cross_entropy_with_integer_labels:  # a classification
      _warn_if_at_chance(pruned, data)
    return pruned
  history = np.full((padded, epochs, len(METRICS)), np.nan, np.float32)
  # Per call, the leaves of (params, model_state): what the result keeps.
  final_leaves: list[list[Any] | None] = [None] * num_calls
  start = time.perf_counter()
  bar = _progress_bar(progress and hosts.is_main(), num_calls * epochs, num_models, group)
  try:
    for call in range(num_calls):
      rows = slice(call * group, (call + 1) * group)
      done = store.load_done(call) if store else None
      if done is not None:
        history[rows], done_leaves = done
        if multi_process and not gather_params:
          mine = hosts.local_indices(NamedSharding(run_mesh, P(AXIS)), group)
          done_leaves = [x[mine] for x in done_leaves]
        final_leaves[call] = done_leaves
        tracking.log(pad_index[rows], 0, history[rows])  # what a new logger has not seen
        bar.update(epochs)
        continue
      index = pad_index[rows]
      slot_seeds, model_slot = seed_slots(flat_seeds[index], num_devices)
      chunk_levels, chunk_hparams, slot_seeds, model_slot = hosts.put(
        (flat_levels[index], flat_hparams[index], slot_seeds, model_slot),
        NamedSharding(run_mesh, P(AXIS)),
      )
      resumed = store.load_current(call, program.carry_structure) if store else None
      if resumed is not None:
        carry, epoch, history[rows] = resumed
        carry = hosts.put_keys(carry, NamedSharding(run_mesh, P(AXIS)))
        tracking.log(index, 0, history[rows, :epoch])
        bar.update(epoch)
      else:
        wait = None
        if call == 0 and not multi_process and epochs >= epochs_per_call:
          # The training call compiles while the initialization does.
          wait = compile_run_ahead(
            program,
            group,
            NamedSharding(run_mesh, P(AXIS)),
            chunk_levels,
            slot_seeds,
            model_slot,
            np.int32(0),
            run_data,
          )
        carry = program.init(chunk_levels, chunk_hparams, slot_seeds, model_slot, run_data)
        if wait is not None:
          wait()
        epoch = 0
      while epoch < epochs:
        this = program if epochs - epoch >= epochs_per_call else tail_program
        assert this is not None  # fewer than epochs_per_call epochs left only when tail > 0
        carry, metrics = this.run(
          carry, chunk_levels, slot_seeds, model_slot, np.int32(epoch), run_data
        )
        metrics = hosts.to_host(metrics)  # every process gets every model's
        ran = metrics.shape[1]
        history[rows, epoch : epoch + ran] = metrics
        tracking.log(index, epoch, metrics)
        epoch += ran
        if store is not None and epoch < epochs and store.due(agree=multi_process):
          store.save_current(call, _checkpointed(carry), epoch, history[rows])
        bar.update(ran)
      kept = jax.tree.leaves(carry[:2])
      # Big weights of a one-call sweep stay where they are (no copy); else
      # each call's come home, so the devices hold one call's models at a time.
      on_device = num_calls == 1 and sum(x.nbytes for x in kept) > 2**26
      if multi_process:
        if gather_params or store is not None:
          gathered = [hosts.to_host(x) for x in kept]
          if store is not None:
            store.save_done(call, gathered, history[rows])
        final_leaves[call] = gathered if gather_params else [hosts.local_rows(x) for x in kept]
      else:
        call_leaves = kept if on_device else [np.asarray(x) for x in kept]
        final_leaves[call] = call_leaves
        if store is not None:
          store.save_done(call, call_leaves, history[rows])
  except jax.errors.JaxRuntimeError as err:
    tracking.close()
    if not multi_process:
      raise
    raise hosts.lost_process(err, checkpoint_dir) from err
  except BaseException:
    tracking.close()
    raise
  finally:
    bar.close()
    if store is not None:
      store.close()
  wall_time = time.perf_counter() - start

  history = history[:num_models][:, eval_epochs - 1]
  # Every call set its entry in the loop above (or it raised).
  filled = cast(list[list[Any]], final_leaves)
  local_models = None
  if multi_process and not gather_params:
    # This process's models, call after call (padding copies dropped).
    mine = hosts.local_indices(NamedSharding(run_mesh, P(AXIS)), group)
    flat = np.concatenate([call * group + mine for call in range(num_calls)])
    keep = flat < num_models
    local_models = flat[keep]
    stacked = [
      np.concatenate([leaves[i] for leaves in filled])[keep] for i in range(len(filled[0]))
    ]
  elif num_calls == 1:
    stacked = [x if padded == num_models else x[:num_models] for x in filled[0]]
  else:
    stacked = [
      np.concatenate([leaves[i] for leaves in filled])[:num_models] for i in range(len(filled[0]))
    ]
  structure = jax.tree.structure(program.carry_structure[:2])
  params, model_state = jax.tree.unflatten(structure, stacked)
  if not jax.tree.leaves(model_state):
    model_state = None
  unflatten = grid.unflatten if local_models is None else (lambda x: x)
  result = SweepResult(
    flood_levels=grid.flood_levels,
    seeds=grid.seeds,
    hyperparams=dict(grid.hyperparams),
    history={m: grid.unflatten(history[..., i]) for i, m in enumerate(METRICS)},
    final_params=jax.tree.map(unflatten, params),
    final_batch_stats=(None if model_state is None else jax.tree.map(unflatten, model_state)),
    local_models=local_models,
    config=config,
    wall_time=wall_time,
    model=model,
    epochs=eval_epochs,
    level_name=level_name,
    plan=plan,
  )
  # A classification with a best configuration to name (fold models have none).
  if loss_fn is optax.softmax_cross_entropy_with_integer_labels and objective != HELDOUT:
    _warn_if_at_chance(result, data)
  tracking.finish(result)
  return result


def _plan(
  settings: dict[str, Any],
  run_data: Any,
  devices: list[Any],
  *,
  num_devices: int,
  num_models: int,
  num_seeds: int,
  preferred_chunk: int,
  chunk_size: int | None,
  memory_limit: int | None,
  measure: bool,
) -> Plan:
  """The sweep's :class:`Plan` (:func:`flood_jax._sweep.plan.make_plan`): its chunk size decided."""
  platform = devices[0].platform
  local = devices[0] if devices[0].process_index == jax.process_index() else jax.local_devices()[0]
  return make_plan(
    run_usage(settings, local, run_data, num_seeds),
    num_models=num_models,
    num_devices=num_devices,
    platform=platform,
    preferred_chunk=preferred_chunk,
    chunk_size=chunk_size,
    memory_limit=memory_limit,
    device_limit=None if platform == "cpu" else device_limit(local),
    data_bytes=data_nbytes(run_data),
    batch_size=settings["batch_size"],
    eval_batch_size=settings["eval_batch_size"],
    measure=measure,
  )


def _checkpointed(carry: Any) -> Any:
  """The carry as a checkpoint saves it: under several processes, gathered (a collective)."""
  if hosts.process_count() == 1:
    return carry
  return jax.tree.map(hosts.to_host, carry)


def auto_eval_every(num_eval: int, trained_per_epoch: int, epochs: int) -> int:
  """Epochs between evaluations so that evaluating costs about 10% of training.

  An evaluated example costs about a third of a trained one (a forward pass,
  against forward, backward and update), so evaluating ``num_eval`` examples
  every ``k`` epochs costs ``num_eval / (3 * k * trained_per_epoch)`` of
  training. ``k`` is the smallest that keeps this at 10%, but at most
  ``epochs // 5``, so a run is evaluated at least five times.
  """
  share = num_eval / (3 * max(trained_per_epoch, 1))
  return max(1, min(math.ceil(share / 0.1 - 1e-9), epochs // 5))


def evaluated_epochs(epochs: int, eval_every: int) -> np.ndarray:
  """Epochs (counted from 1) after which a sweep evaluates: every ``eval_every``-th and the last."""
  every = np.arange(eval_every, epochs + 1, eval_every)
  return np.unique(np.append(every, epochs)).astype(np.int64)


def _name(fn: Any) -> str:
  return getattr(fn, "__name__", None) or repr(fn)


def _check_arguments(
  data,
  optimizer,
  epochs,
  batch_size,
  chunk_size,
  epochs_per_call,
  eval_batch_size,
  objective,
  augment,
  loss_fn,
  eval_every,
  train_eval_size,
):
  if not isinstance(data, Dataset):
    raise TypeError(
      f"data must be a flood_jax.Dataset, got {type(data).__name__}; build one"
      " with flood_jax.Dataset(x_train=..., y_train=..., x_val=..., ...) or"
      " flood_jax.data.load(name)."
    )
  if not isinstance(optimizer, optax.GradientTransformation):
    raise TypeError(
      f"optimizer must be an Optax transformation such as optax.sgd(0.01),"
      f" got {type(optimizer).__name__}."
    )
  for name, value in [
    ("epochs", epochs),
    ("batch_size", batch_size),
    ("eval_batch_size", eval_batch_size),
  ]:
    _check_positive_int(name, value)
  for name, value in [
    ("chunk_size", chunk_size),
    ("epochs_per_call", epochs_per_call),
    ("eval_every", eval_every),
  ]:
    if value is not None:
      _check_positive_int(name, value)
  if train_eval_size is not None and (
    isinstance(train_eval_size, bool)
    or not isinstance(train_eval_size, (int, np.integer))
    or train_eval_size < 0
  ):
    raise ValueError(
      "train_eval_size must be a number of examples >= 0 (0: skip the training"
      f" loss) or None (the whole training set), got {train_eval_size!r}."
    )
  if batch_size > data.num_train:
    raise ValueError(
      f"batch_size {batch_size} is larger than the training set"
      f" ({data.num_train} examples); use batch_size <= {data.num_train}."
    )
  if objective not in OBJECTIVES and objective != HELDOUT:
    raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}.")
  for name, fn in [("augment", augment), ("loss_fn", loss_fn)]:
    if fn is not None and not callable(fn):
      raise TypeError(f"{name} must be a function, got {type(fn).__name__}.")


def _level_axis(data, objective, flood_levels, per_example_levels, gamma, fold_sets):
  """The first axis of the grid: ``(name, values, per-example array or None)``.

  ``flood_levels`` for flooding and iFlood; ``gamma`` for AdaFlood, whose
  ``per_example_levels`` the program reads; fold numbers for the fold models
  of ``adaflood_levels``, whose training sets (``fold_sets``) it reads.
  """
  if objective == HELDOUT or fold_sets is not None:
    if objective != HELDOUT or fold_sets is None:
      raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}.")
    return "fold", np.arange(len(fold_sets)), np.asarray(fold_sets, np.int32)
  if objective != "adaflood":
    for name, value in [("per_example_levels", per_example_levels), ("gamma", gamma)]:
      if value is not None:
        raise ValueError(
          f"{name} is AdaFlood's; pass objective='adaflood' with it, or drop it"
          f" for objective={objective!r}."
        )
    if flood_levels is None:
      raise TypeError("sweep() needs flood_levels=[...], e.g. [0.0, 0.05, 0.1].")
    return "flood_level", flood_levels, None
  if flood_levels is not None:
    raise ValueError(
      "with objective='adaflood' the levels are per example: pass"
      " per_example_levels=fj.adaflood_levels(...) and gamma=[...] instead of"
      " flood_levels."
    )
  if per_example_levels is None:
    raise ValueError(
      "objective='adaflood' needs per_example_levels=, the held-out losses from"
      " fj.adaflood_levels(model, data, folds=..., ...)."
    )
  levels = np.asarray(per_example_levels)
  if levels.shape != (data.num_train,) or not np.issubdtype(levels.dtype, np.number):
    raise ValueError(
      f"per_example_levels must be numbers of shape (n_train,) = ({data.num_train},),"
      f" one per training example; got shape {levels.shape}."
    )
  if not np.all(np.isfinite(levels)) or np.any(levels < 0):
    raise ValueError("per_example_levels must be finite losses >= 0; some are not.")
  gammas = np.asarray([0.0] if gamma is None else gamma, np.float64)
  if (
    gammas.ndim != 1
    or gammas.size == 0
    or np.any(~np.isfinite(gammas))
    or np.any((gammas < 0) | (gammas > 1))
  ):
    raise ValueError(
      f"gamma must be a non-empty list of numbers in [0, 1], e.g. [0.0, 0.5, 0.9]; got {gamma!r}."
    )
  return "gamma", gammas, levels.astype(np.float32)


def _check_positive_int(name: str, value: Any) -> None:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
    raise ValueError(f"{name} must be a positive integer, got {value!r}.")


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


def _check_model_output(adapter: Adapter, data: Dataset, default_loss: bool) -> Any:
  """Initializes the model and calls it on one example, abstractly, and checks what comes out.

  Returns the abstract parameters (shapes and dtypes). Nothing runs or compiles.
  """
  # A batch of more than one, so logits of batch 1 (which broadcast against
  # the labels and train) are caught.
  x = jax.ShapeDtypeStruct((_CHECK_BATCH, *data.input_shape), jnp.float32)

  def forward(x):
    params, model_state, rng_state = adapter.init(jax.random.key(0), x)
    logits, _, _ = adapter.apply(
      params, model_state, rng_state, x, train=True, key=jax.random.key(0)
    )
    return params, logits

  try:
    params, logits = jax.eval_shape(forward, x)
  except TypeError as err:
    if adapter.kind == "linen" and "train" in str(err):
      raise TypeError(
        "fj.sweep calls a linen model as model.apply(variables, x, train=True)"
        " (False to evaluate); give its __call__ a `train: bool` argument"
        f" (use it for BatchNorm/Dropout, or ignore it). Flax said: {_first_line(err)}"
      ) from None
    if adapter.kind == "plain":
      raise TypeError(
        "fj.sweep calls fj.Model as init(key, x) -> params and apply(params, x,"
        f" train) -> logits; one of them does not fit: {_first_line(err)}"
      ) from None
    raise
  if len(logits.shape) != 2 or logits.shape[0] != _CHECK_BATCH:
    raise ValueError(
      f"the model must return logits of shape (batch, classes), got"
      f" {tuple(logits.shape)} for a batch of {_CHECK_BATCH}; flatten or pool its"
      " output, keeping one row per example."
    )
  if default_loss and logits.shape[-1] < data.num_classes:
    raise ValueError(
      f"the model outputs {logits.shape[-1]} logits but the data has"
      f" {data.num_classes} classes; give its last layer {data.num_classes}"
      " outputs."
    )
  return params


_CHECK_BATCH = 3


def _check_augment(augment: Augment, data: Dataset, batch_size: int) -> None:
  """``augment(key, x_batch)`` must return a batch of the same shape (checked abstractly)."""
  x = jax.ShapeDtypeStruct((batch_size, *data.input_shape), jnp.float32)
  try:
    out = jax.eval_shape(augment, jax.random.key(0), x)
  except Exception as err:  # whatever the function raises, say where
    raise ValueError(
      f"augment({_name(augment)}) fails on a key and a batch of shape {tuple(x.shape)}"
      f" float32: {type(err).__name__}: {_first_line(err)}"
    ) from None
  shape = getattr(out, "shape", None)
  if shape is None or tuple(shape) != tuple(x.shape):
    raise ValueError(
      f"augment must return a batch of the shape it is given, {tuple(x.shape)}; it"
      f" returned {None if shape is None else tuple(shape)}; crop or pad back to the"
      " input shape."
    )


def _warn_if_at_chance(result: SweepResult, data: Dataset) -> None:
  """Warns when every model ends where a constant prediction would: its "best" means nothing.

  At chance is: final validation accuracy at most the majority class's share
  (plus 1%), and the validation loss not below the cross-entropy of the
  best constant prediction (the labels' entropy) less 1%, or not finite
  (but not every model diverged, which ``result.best()`` reports).
  """
  y_val = np.asarray(data.y_val)
  if y_val.size == 0:
    return
  shares = np.bincount(y_val) / y_val.size
  chance_accuracy = float(shares.max())
  shares = shares[shares > 0]
  constant_loss = float(-(shares * np.log(shares)).sum())
  acc = np.asarray(result.history["val_accuracy"])[..., -1]
  loss = np.asarray(result.history["val_loss"])[..., -1]
  if not np.any(np.isfinite(loss)):
    return  # every model diverged: result.best() says so
  no_accuracy = np.all(~np.isfinite(acc) | (acc <= chance_accuracy + 0.01))
  no_loss = np.all(~np.isfinite(loss) | (loss >= constant_loss * 0.99))
  if no_accuracy and no_loss:
    warnings.warn(
      f"every model of the sweep ends at chance (validation accuracy <="
      f" {chance_accuracy:.3f}, the majority class's share, and loss >="
      f" {constant_loss:.3f}, a constant prediction's), so its best configuration"
      " means nothing; lower the learning rate or check the model and data.",
      AtChanceWarning,
      stacklevel=3,
    )


class AtChanceWarning(UserWarning):
  """Every model of a sweep ended at chance: the best configuration it names means nothing."""


def _first_line(err: BaseException) -> str:
  return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


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


def _check_prune(prune: Halving | None, epochs: int) -> tuple[int, ...]:
  """The rungs of a pruned sweep (none without pruning); one-line errors on bad input."""
  if prune is None:
    return ()
  if not isinstance(prune, Halving):
    raise TypeError(
      f"prune must be fj.Halving(min_epochs=..., factor=...), got {type(prune).__name__}."
    )
  if hosts.process_count() > 1:
    raise ValueError(
      "prune= does not run across several processes yet; run the pruned sweep"
      " in one process (all its local devices), or leave prune out."
    )
  return prune.check(epochs)


def _sweep_pruned(
  prune: Halving,
  *,
  model,
  settings,
  grid: Grid,
  mesh: Mesh,
  data,
  num_devices: int,
  epochs_per_call: int,
  store,
  progress: bool,
  config: dict[str, Any],
  eval_epochs: np.ndarray,
  level_name: str = "flood_level",
  tracking: Tracking,
) -> SweepResult:
  """``sweep`` with successive halving: :func:`flood_jax._sweep.prune.run_pruned` runs it."""
  chunk_size, epochs = settings["chunk_size"], settings["epochs"]
  group = chunk_size * num_devices
  stops = [*prune.rungs(epochs), epochs]
  total = planned_chunk_epochs(prune, grid.num_configs, len(grid.seeds), group, stops)
  start = time.perf_counter()
  bar = _progress_bar(progress, total, grid.num_models, group)
  try:
    history, stacked, pruned_at = run_pruned(
      prune,
      grid=grid,
      program_for=lambda n: get_program(epochs_per_call=n, **settings),
      mesh=mesh,
      data=data,
      num_devices=num_devices,
      chunk_size=chunk_size,
      epochs=epochs,
      epochs_per_call=epochs_per_call,
      store=store,
      bar=bar,
      tracking=tracking,
    )
  except BaseException:
    tracking.close()
    raise
  finally:
    bar.close()
    if store is not None:
      store.close()
  wall_time = time.perf_counter() - start
  history = history[:, eval_epochs - 1]
  structure = jax.tree.structure(
    get_program(epochs_per_call=epochs_per_call, **settings).carry_structure[:2]
  )
  params, model_state = jax.tree.unflatten(structure, stacked)
  if not jax.tree.leaves(model_state):
    model_state = None
  result = SweepResult(
    flood_levels=grid.flood_levels,
    seeds=grid.seeds,
    hyperparams=dict(grid.hyperparams),
    history={m: grid.unflatten(history[..., i]) for i, m in enumerate(METRICS)},
    final_params=jax.tree.map(grid.unflatten, params),
    final_batch_stats=(None if model_state is None else jax.tree.map(grid.unflatten, model_state)),
    config=config,
    wall_time=wall_time,
    model=model,
    epochs=eval_epochs,
    pruned_at=pruned_at.reshape(grid.config_shape),
    level_name=level_name,
  )
  tracking.finish(result)
  return result
