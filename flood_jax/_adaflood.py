"""AdaFlood's per-example flood levels, from fold models trained as one sweep."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from flood_jax._checks import is_integer, is_number
from flood_jax._dataset import Dataset
from flood_jax._loss import adaflood_level
from flood_jax._result import SweepResult
from flood_jax._sweep.adapters import adapt
from flood_jax._sweep.driver import run
from flood_jax._sweep.program import LossFn
from flood_jax._sweep.spec import SweepSpec
from flood_jax._task import Task, task_from_arguments


def adaflood_levels(
  model: Any,
  data: Dataset,
  *,
  folds: int,
  optimizer: optax.GradientTransformation,
  epochs: int,
  batch_size: int,
  gamma: float = 0.5,
  seeds: Sequence[int] = (0,),
  loss_fn: LossFn | None = None,
  chunk_size: int | None = None,
  checkpoint_dir: str | os.PathLike[str] | None = None,
  progress: bool = False,
  task: Task | None = None,
) -> np.ndarray:
  r"""AdaFlood's flood level of every training example, from held-out fold models.

  The training set is split into ``folds`` folds ``F_1..F_K`` (a fixed random
  split). The auxiliary model of fold ``k`` trains on the other folds only and
  gives the held-out loss :math:`\ell^{aux}_i` of each example :math:`i \in
  F_k`, the loss of a model that never saw it. The level is that loss
  corrected toward the label:

  .. math::

    \theta_i = -\log\left((1 - \gamma)\, e^{-\ell^{aux}_i} + \gamma\right),

  so ``gamma = 0`` floods at the held-out loss and ``gamma = 1`` gives
  :math:`\theta_i = 0` (no flooding). The main model then trains on
  :math:`\frac{1}{B}\sum_i(|\ell_i - \theta_i| + \theta_i)`:
  ``fj.sweep(..., objective="adaflood", per_example_levels=levels)``.

  The ``folds x seeds`` auxiliary models are trained **as one sweep**, a fold
  axis in place of the flood levels, with plain (unflooded) training: every
  model reads the one copy of the data through its own list of training
  examples (the training set minus its fold; no data set is copied). With
  several ``seeds``, an example's held-out loss is the mean over seeds. Folds
  differ in size by at most one example; every fold model trains on the same
  number of examples, ``n_train - ceil(n_train / folds)`` (a model whose fold
  is one short leaves one other example out).

  To choose ``gamma`` by validation in one sweep, compute the raw held-out
  losses with ``gamma=0`` and sweep ``gamma=[...]`` in ``fj.sweep``, which
  applies the same correction (it composes: correcting by ``g2`` the levels
  corrected by ``g1`` is correcting by ``1 - (1 - g1)(1 - g2)``).

  Args:
    model: a linen module, an NNX factory or ``fj.Model``, as in
      :func:`flood_jax.sweep` (the auxiliary models' architecture).
    data: the :class:`flood_jax.Dataset`; its training set is split.
    folds: number of folds, at least 2.
    optimizer: the auxiliary models' Optax optimizer.
    epochs: the auxiliary models' epochs.
    batch_size: their mini-batch size, at most a fold model's training set.
    gamma: the correction toward the label, in ``[0, 1]`` (the reference
      code's default is 0.5).
    seeds: seeds of the auxiliary models (each fold trained once per seed).
    loss_fn: per-example loss ``loss_fn(logits, labels) -> (batch,)``, used
      for training and for the held-out losses; default softmax cross-entropy
      (the shorthand of ``task=fj.Classification(loss=loss_fn)``).
    chunk_size: models trained together per device, as in ``fj.sweep``.
    checkpoint_dir: as in ``fj.sweep``: the fold models' sweep is saved there
      and a later call with the same arguments continues from it.
    progress: show the sweep's progress bar.
    task: the task whose per-example loss the fold models train on and give
      held out, as in ``fj.sweep`` (default :class:`flood_jax.Classification`).

  Returns:
    ``(n_train,)`` float32: the level :math:`\theta_i` of every training
    example, in the order of ``data.x_train``.

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
    >>> heldout = fj.adaflood_levels(Net(), data, folds=2, gamma=0.0,
    ...                              optimizer=optax.sgd(0.1), epochs=3,
    ...                              batch_size=16)
    >>> heldout.shape
    (64,)
    >>> result = fj.sweep(Net(), data, objective="adaflood",
    ...                   per_example_levels=heldout, gamma=[0.0, 0.5, 1.0],
    ...                   optimizer=optax.sgd(0.1), epochs=3, batch_size=16,
    ...                   progress=False)
    >>> result.axes, result.history["val_accuracy"].shape
    (('gamma', 'seed'), (3, 1, 3))

  References:
    Bae et al., `AdaFlood: Adaptive Flood Regularization
    <https://arxiv.org/abs/2311.02891>`_, TMLR 2024 (reference code:
    https://github.com/BorealisAI/adaflood).
  """
  if not is_number(gamma) or not (0.0 <= float(gamma) <= 1.0):
    raise ValueError(f"gamma must be a number in [0, 1], e.g. 0.5; got {gamma!r}.")
  chosen = task_from_arguments(task, loss_fn)
  result, fold_of = fold_models(
    model,
    data,
    folds=folds,
    optimizer=optimizer,
    epochs=epochs,
    batch_size=batch_size,
    seeds=seeds,
    chunk_size=chunk_size,
    checkpoint_dir=checkpoint_dir,
    progress=progress,
    task=chosen,
  )
  heldout = heldout_losses(result, data, fold_of, loss_fn=chosen.loss)
  return np.asarray(adaflood_level(heldout, float(gamma)), np.float32)


def fold_assignment(num_train: int, folds: int) -> np.ndarray:
  """The fold of every training example: a fixed random split into near-equal folds."""
  order = np.random.default_rng(0).permutation(num_train)
  fold_of = np.empty(num_train, np.int32)
  for k, members in enumerate(np.array_split(order, folds)):
    fold_of[members] = k
  return fold_of


def fold_training_sets(fold_of: np.ndarray, folds: int) -> np.ndarray:
  """``(folds, n_train - ceil(n_train / folds))`` int32: fold ``k``'s model's training examples.

  Row ``k`` lists examples outside fold ``k`` (in a fixed random order, cut to
  the common length); it never lists one of fold ``k``.
  """
  num_train = len(fold_of)
  size = num_train - math.ceil(num_train / folds)
  order = np.random.default_rng(1).permutation(num_train)
  return np.stack([order[fold_of[order] != k][:size] for k in range(folds)]).astype(np.int32)


def fold_models(
  model: Any,
  data: Dataset,
  *,
  folds: int,
  optimizer: optax.GradientTransformation,
  epochs: int,
  batch_size: int,
  seeds: Sequence[int] = (0,),
  loss_fn: LossFn | None = None,
  chunk_size: int | None = None,
  checkpoint_dir: str | os.PathLike[str] | None = None,
  progress: bool = False,
  task: Task | None = None,
) -> tuple[SweepResult, np.ndarray]:
  """The auxiliary models of :func:`adaflood_levels`, as one sweep: ``(result, fold_of)``.

  ``result``'s first axis is the fold (named ``"fold"``); ``fold_of[i]`` is
  the fold of training example ``i``, whose model never trained on it.
  """
  if not isinstance(data, Dataset):
    raise TypeError(f"data must be a flood_jax.Dataset, got {type(data).__name__}.")
  if not is_integer(folds) or not (2 <= folds <= data.num_train):
    raise ValueError(
      f"folds must be an integer from 2 to the number of training examples"
      f" ({data.num_train}), got {folds!r}."
    )
  fold_of = fold_assignment(data.num_train, int(folds))
  spec = SweepSpec.for_fold_models(
    model,
    data,
    fold_training_sets(fold_of, int(folds)),
    seeds=seeds,
    optimizer=optimizer,
    epochs=epochs,
    batch_size=batch_size,
    loss_fn=loss_fn,
    chunk_size=chunk_size,
    checkpoint_dir=checkpoint_dir,
    progress=progress,
    task=task,
  )
  result = run(spec)
  return result, fold_of


def heldout_losses(
  result: SweepResult, data: Dataset, fold_of: np.ndarray, *, loss_fn: LossFn | None = None
) -> np.ndarray:
  """``(n_train,)``: each example's loss under its fold's model (evaluation mode).

  With several seeds, the mean over seeds.
  """
  loss_fn = loss_fn or optax.softmax_cross_entropy_with_integer_labels
  adapter = adapt(result.model)
  x_train, y_train = jax.tree.map(np.asarray, data.x_train), np.asarray(data.y_train)
  rows = lambda x, index: jax.tree.map(lambda a: a[index], x)  # the inputs may be a pytree
  _, init_state, rng_state = adapter.init(
    jax.random.key(0), jax.tree.map(jnp.asarray, rows(x_train, slice(0, 1)))
  )

  @jax.jit
  def losses(params, model_state, x, y):
    logits, _, _ = adapter.apply(params, model_state, rng_state, x, train=False, key=None)
    return loss_fn(logits, y)

  num_folds, num_seeds = result.history["val_loss"].shape[:2]
  out = np.zeros(len(fold_of), np.float64)
  for k in range(num_folds):
    members = np.flatnonzero(fold_of == k)
    for s in range(num_seeds):
      pick = lambda a, k=k, s=s: a[k, s]
      params = jax.tree.map(pick, result.final_params)
      state = (
        init_state
        if result.final_batch_stats is None
        else jax.tree.map(pick, result.final_batch_stats)
      )
      out[members] += np.asarray(losses(params, state, rows(x_train, members), y_train[members]))
  return (out / num_seeds).astype(np.float32)
