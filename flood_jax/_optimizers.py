r"""One optimizer factory for the command line and :mod:`flood_jax.reproduce`.

SGD or Adam, with weight decay in one of two named forms, because "Adam with
weight decay" means two methods in common use:

* ``decay="l2"``: L2 regularization, the decay added to the gradient *before*
  the optimizer, :math:`g_t \leftarrow g_t + \lambda\theta_t`, so it enters
  the momentum and Adam's moments (``torch.optim.SGD`` and
  ``torch.optim.Adam``'s ``weight_decay``; Optax:
  ``optax.chain(optax.add_decayed_weights(wd), optimizer)``).
* ``decay="decoupled"``: decoupled weight decay (Loshchilov & Hutter, ICLR
  2019, arXiv:1711.05101), the decay added *after* the momentum or Adam's
  scaling and before the learning rate, :math:`\theta_{t+1} = \theta_t -
  \eta(u_t + \lambda\theta_t)` with :math:`u_t` the momentum or Adam's
  :math:`\hat m_t / (\sqrt{\hat v_t} + \epsilon)` (``optax.adamw``;
  ``torch.optim.AdamW``).

For plain SGD without momentum both are :math:`\theta_{t+1} = \theta_t -
\eta(g_t + \lambda\theta_t)`, the same arithmetic; with momentum or Adam they
differ.

Which each command uses (kept as it was, so every reported number stands):
``flood-jax sweep`` builds decoupled decay for ``--optimizer adam`` (AdamW)
and L2 for ``--optimizer sgd``; ``flood-jax reproduce`` (the benchmark's
weight decay 1e-5) builds L2 for both.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Literal

import optax

OPTIMIZERS = ("sgd", "adam")
DECAYS = ("decoupled", "l2")
Decay = Literal["decoupled", "l2"]


def optimizer(
  name: str,
  learning_rate: float,
  *,
  decay: Decay,
  weight_decay: float = 0.0,
  momentum: float | None = None,
  inject: bool = False,
) -> optax.GradientTransformation:
  r"""SGD or Adam with decoupled or L2 weight decay, as an Optax transform.

  With :math:`g_t` the gradient, :math:`\eta` the learning rate and
  :math:`\lambda` the weight decay:

  * ``decay="l2"``: the optimizer is run on :math:`g_t + \lambda\theta_t`:
    ``optax.chain(optax.add_decayed_weights(wd), optax.sgd(lr, momentum))``
    or ``optax.chain(optax.add_decayed_weights(wd), optax.adam(lr))``.
  * ``decay="decoupled"``: the decay skips the momentum and Adam's moments,
    :math:`\theta_{t+1} = \theta_t - \eta(u_t + \lambda\theta_t)`:
    ``optax.adamw(lr, weight_decay=wd)``, or for SGD ``optax.chain(
    optax.trace(momentum), optax.add_decayed_weights(wd),
    optax.scale_by_learning_rate(lr))``.

  Without momentum, SGD's two forms give the same updates. With
  ``weight_decay=0`` (and ``inject=False``) there is no decay step at all:
  plain ``optax.sgd`` or ``optax.adam``.

  Args:
    name: ``"sgd"`` or ``"adam"``.
    learning_rate: :math:`\eta`, a positive number.
    decay: ``"decoupled"`` or ``"l2"``, the form of the weight decay.
    weight_decay: :math:`\lambda`, a number >= 0.
    momentum: SGD's momentum in ``[0, 1)``, or ``None`` for none (Adam: ``None``).
    inject: build it with ``optax.inject_hyperparams``, so that
      ``learning_rate`` and ``weight_decay`` are hyperparameters of the state
      (the starting values) that ``fj.sweep(..., hyperparams=...)`` sets per
      model; the decay step is then always there. Decoupled Adam is
      ``optax.inject_hyperparams(optax.adamw)``.

  Returns:
    An ``optax.GradientTransformation``.

  Examples:
    >>> import jax.numpy as jnp
    >>> from flood_jax._optimizers import optimizer
    >>> params, grads = jnp.array([1.0]), jnp.array([0.5])
    >>> def step(tx):
    ...   updates, _ = tx.update(grads, tx.init(params), params)
    ...   return round(float(updates[0]), 4)
    >>> step(optimizer("sgd", 0.1, decay="l2", weight_decay=0.5))  # -0.1 * (0.5 + 0.5)
    -0.1
    >>> step(optimizer("sgd", 0.1, decay="decoupled", weight_decay=0.5))  # the same
    -0.1
    >>> step(optimizer("adam", 0.1, decay="l2", weight_decay=0.5))  # Adam's first step: -lr
    -0.1
    >>> step(optimizer("adam", 0.1, decay="decoupled", weight_decay=0.5))  # -lr * (1 + wd * p)
    -0.15

  References:
    Loshchilov & Hutter, `Decoupled Weight Decay Regularization
    <https://arxiv.org/abs/1711.05101>`_, ICLR 2019.
  """
  if name not in OPTIMIZERS:
    raise ValueError(f"unknown optimizer {name!r}; use 'sgd' or 'adam'.")
  if decay not in DECAYS:
    raise ValueError(f"decay must be 'decoupled' or 'l2', got {decay!r}.")
  _check_number("learning_rate", learning_rate, positive=True)
  _check_number("weight_decay", weight_decay, positive=False)
  if momentum is not None:
    if name != "sgd":
      raise ValueError(f"momentum applies to sgd only; pass momentum=None for {name}.")
    _check_number("momentum", momentum, positive=False)
    if momentum >= 1:
      raise ValueError(f"momentum must be in [0, 1), got {momentum!r}.")
  if inject:
    if name == "adam":
      factory: Any = optax.adamw if decay == "decoupled" else _adam_l2
      return optax.inject_hyperparams(factory)(
        learning_rate=learning_rate, weight_decay=weight_decay
      )
    factory = _sgd_l2 if decay == "l2" else _sgd_decoupled
    return optax.inject_hyperparams(factory, static_args=("momentum",))(
      momentum=momentum, learning_rate=learning_rate, weight_decay=weight_decay
    )
  if name == "adam":
    if not weight_decay:
      return optax.adam(learning_rate)
    if decay == "decoupled":
      return optax.adamw(learning_rate, weight_decay=weight_decay)
    return _adam_l2(learning_rate, weight_decay)
  if not weight_decay:
    return optax.sgd(learning_rate, momentum=momentum)
  if decay == "l2":
    return _sgd_l2(learning_rate, weight_decay, momentum)
  return _sgd_decoupled(learning_rate, weight_decay, momentum)


def _check_number(name: str, value: Any, *, positive: bool) -> None:
  number = float(value) if isinstance(value, numbers.Real) and not isinstance(value, bool) else None
  if number is None or not math.isfinite(number) or (number <= 0 if positive else number < 0):
    bound = "> 0" if positive else ">= 0"
    raise ValueError(f"{name} must be a finite number {bound}, got {value!r}.")


# The chains below are functions of the hyperparameters by name, so that
# optax.inject_hyperparams can inject learning_rate and weight_decay.


def _adam_l2(learning_rate: float, weight_decay: float) -> optax.GradientTransformation:
  """Adam on the gradient plus ``weight_decay * params`` (``torch.optim.Adam``'s weight_decay)."""
  return optax.chain(optax.add_decayed_weights(weight_decay), optax.adam(learning_rate))


def _sgd_l2(
  learning_rate: float, weight_decay: float, momentum: float | None
) -> optax.GradientTransformation:
  """SGD on the gradient plus ``weight_decay * params`` (``torch.optim.SGD``'s weight_decay)."""
  return optax.chain(
    optax.add_decayed_weights(weight_decay), optax.sgd(learning_rate, momentum=momentum)
  )


def _sgd_decoupled(
  learning_rate: float, weight_decay: float, momentum: float | None
) -> optax.GradientTransformation:
  """SGD whose decay skips the momentum: the update is ``-lr * (trace + weight_decay * params)``."""
  steps = [] if momentum is None else [optax.trace(decay=momentum)]
  return optax.chain(
    *steps, optax.add_decayed_weights(weight_decay), optax.scale_by_learning_rate(learning_rate)
  )
