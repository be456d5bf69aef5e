"""``fj.sweep``, the public entry point, whose body builds a :class:`SweepSpec` and runs it; and
``fj.plan``, the same spec planned (:mod:`flood_jax._sweep.plan`) without training."""

from __future__ import annotations

import dataclasses
import inspect
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import optax
from jax.sharding import Mesh

from flood_jax._dataset import Dataset
from flood_jax._result import SweepResult
from flood_jax._sweep.driver import planned, run, timed_epochs
from flood_jax._sweep.pbt import PBT
from flood_jax._sweep.plan import Plan
from flood_jax._sweep.program import Augment, LossFn
from flood_jax._sweep.prune import Halving
from flood_jax._sweep.spec import SweepSpec
from flood_jax._sweep.stream import Stream
from flood_jax._task import Task


def sweep(
  model: Any,
  data: Dataset | Stream,
  *,
  flood_levels: Sequence[float] | np.ndarray | None = None,
  seeds: Sequence[int] = (0,),
  optimizer: optax.GradientTransformation,
  epochs: int,
  batch_size: int | None = None,
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
  task: Task | None = None,
  pbt: PBT | None = None,
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
      default ``optax.softmax_cross_entropy_with_integer_labels``. The
      shorthand of ``task=fj.Classification(loss=loss_fn)``.
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
      always evaluated. Under several processes every process ranks the same
      gathered history, and the trained parameters are gathered onto every
      process (``gather_params`` is ignored). See
      :class:`flood_jax.Halving`.
    pbt: ``fj.PBT(interval, fraction, factors, resample)`` for population-based
      training of the flood level (and of the swept hyperparameters): after every
      ``interval`` epochs, per seed, the worst ``fraction`` of the configurations copy the
      whole state of one of the best ``fraction`` and go on with its level (and
      hyperparameters) times a factor from ``factors``. Nothing recompiles: the level is a
      per-model input and the hyperparameters live in the optimizer state.
      ``result.history["flood_level"]`` (and one entry per swept hyperparameter) holds
      what each model trained with, ``result.lineage`` whose weights it went on from, and
      ``result.best()`` the winning member with its level schedule. Not with ``prune=``
      (a one-line error: they do not compose). ``fraction=0`` is the plain sweep,
      bitwise. Checkpoints, several processes and every model kind and task work as
      with Halving. See :class:`flood_jax.PBT`.
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
    task: what the models learn (:class:`flood_jax.Classification`, the
      default; :class:`flood_jax.Regression`; or a :class:`flood_jax.Task`):
      its per-example loss is flooded, its metrics are reported as
      ``val_<name>``/``test_<name>``, and its ``select``/``mode`` choose the
      best configuration (and rank the configurations when pruning). A loss
      or metric that does not give one number per example is one error
      before training.

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
  return run(
    SweepSpec.from_arguments(
      model,
      data,
      flood_levels=flood_levels,
      seeds=seeds,
      optimizer=optimizer,
      epochs=epochs,
      batch_size=batch_size,
      hyperparams=hyperparams,
      objective=objective,
      per_example_levels=per_example_levels,
      gamma=gamma,
      augment=augment,
      loss_fn=loss_fn,
      chunk_size=chunk_size,
      mesh=mesh,
      epochs_per_call=epochs_per_call,
      eval_every=eval_every,
      train_eval_size=train_eval_size,
      eval_test=eval_test,
      eval_batch_size=eval_batch_size,
      checkpoint_dir=checkpoint_dir,
      progress=progress,
      gather_params=gather_params,
      prune=prune,
      loggers=loggers,
      memory_limit=memory_limit,
      task=task,
      pbt=pbt,
    )
  )


def plan(model: Any, data: Any, *, timed: bool = False, **sweep_arguments: Any) -> Plan:
  """The plan :func:`flood_jax.sweep` would run, without training.

  Takes :func:`flood_jax.sweep`'s arguments (``memory_limit=`` among them)
  and checks them as it does. The chunk size (models per device per call) is
  the most whose compiled program fits the memory limit (``memory_limit=``
  bytes per device, or on a GPU or TPU the device's limit less 10%), from
  XLA's memory analysis: the program of all the models a device trains is
  compiled first; if it does not fit, a chunk of 2 is too, the line
  :math:`\\text{peak}(k) = a + b k` bytes through the two gives the largest
  :math:`k` that fits, evened out over the calls, and that chunk is compiled
  once more to check it. Nothing runs; each measured chunk size costs one
  compilation. On a CPU without a
  limit the chunk size is the CPU's measured preference, as in
  ``fj.sweep``, and only that one chunk is compiled, to report its bytes.

  With ``timed=True`` the first call's models also train for a few epochs
  (a program of one epoch, compiled for it), so the plan estimates the
  seconds per epoch of the whole sweep (``calls`` times one call's epoch,
  the evaluation's share included); the models trained are thrown away.

  Args:
    model: as for :func:`flood_jax.sweep`.
    data: as for :func:`flood_jax.sweep`.
    timed: also time a few epochs of the first call's models (one more
      compilation; a run of the chunk on the device).
    **sweep_arguments: the other arguments of :func:`flood_jax.sweep`
      (``flood_levels``, ``seeds``, ``optimizer``, ``epochs``,
      ``batch_size``, ..., ``memory_limit``).

  Returns:
    A :class:`Plan`: ``chunk_size``, ``num_devices``, ``calls``,
    ``bytes_per_device``, ``memory_limit``; ``print(plan)`` shows the memory
    per device by part. ``fj.sweep`` with the same arguments runs this
    layout (``result.plan``).

  Raises:
    ValueError: one model does not fit the limit (the message gives the bytes
      per model, the bytes available and the ways out), or a bad argument.

  Examples:
    >>> import numpy as np, optax
    >>> import flax.linen as nn
    >>> import flood_jax as fj
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(64, 2)).astype(np.float32)
    >>> y = (x[:, 0] > 0).astype(np.int32)
    >>> data = fj.Dataset(x_train=x, y_train=y, x_val=x, y_val=y, x_test=x, y_test=y)
    >>> class Net(nn.Module):
    ...   @nn.compact
    ...   def __call__(self, x, train):
    ...     return nn.Dense(2)(nn.relu(nn.Dense(8)(x)))
    >>> p = fj.plan(Net(), data, flood_levels=np.linspace(0, 0.2, 16), seeds=[0],
    ...             optimizer=optax.sgd(0.1), epochs=2, batch_size=16,
    ...             memory_limit=2 * 2**20)
    >>> p.bytes_per_device <= 2 * 2**20, p.chunk_size * p.num_devices * p.calls >= 16
    (True, True)
  """
  try:
    bound = inspect.signature(sweep).bind(model, data, **sweep_arguments)
  except TypeError as err:
    raise TypeError(f"fj.plan takes fj.sweep's arguments: {err}") from None
  bound.apply_defaults()
  spec = SweepSpec.from_arguments(**bound.arguments)
  prepared = planned(spec, measure=True)
  if not timed:
    return prepared.memory
  first, per_epoch = timed_epochs(spec, prepared)
  return dataclasses.replace(
    prepared.memory, seconds_per_epoch=per_epoch, first_epoch_seconds=first, epochs=spec.epochs
  )
