"""``flood``: the Optax transform that turns descent into ascent below the flood level."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import chex
import jax
import jax.core
import jax.numpy as jnp
import numpy as np
import optax

from flood_jax._checks import is_number

FloodLevel = float | jax.Array | Callable[[chex.Numeric], chex.Numeric]


class FloodState(NamedTuple):
  """State of :func:`flood`.

  Attributes:
    count: number of updates taken (drives a scheduled flood level).
    flooded_count: number of updates on which ``value < flood_level``, i.e.
      ascent steps. ``flooded_count / count`` is the flooded fraction that the
      paper's code logs.
  """

  count: jax.Array
  flooded_count: jax.Array


def check_flood_level(flood_level: Any, *, name: str = "flood_level") -> None:
  """Raises ``ValueError`` for a flood level that is not a finite real number.

  Any finite level is accepted, negative ones too: a loss that can go below 0
  (a negative log-likelihood) floods at a negative level. Bools (``True`` is
  not a level), strings, ``None``, complex numbers and arrays of more than one
  value are refused. A traced level is checked by its shape and dtype only
  (its value is not known); a schedule's values cannot be checked before it
  runs (:func:`flood` checks their dtype and shape when it calls it).
  """
  if callable(flood_level):
    return
  if isinstance(flood_level, jax.core.Tracer):
    _check_level_type(flood_level.shape, flood_level.dtype, flood_level, name)
    return
  if is_number(flood_level):
    level = float(flood_level)
  else:
    if isinstance(flood_level, (bool, np.bool_)):
      raise ValueError(f"{name} must be a number, got the bool {flood_level!r}.")
    if flood_level is None or isinstance(flood_level, (str, bytes)):
      raise ValueError(f"{name} must be a number, e.g. 0.05; got {flood_level!r}.")
    try:
      array = np.asarray(flood_level)
    except (TypeError, ValueError):
      raise ValueError(f"{name} must be a number, e.g. 0.05; got {flood_level!r}.") from None
    _check_level_type(array.shape, array.dtype, flood_level, name)
    level = float(array)
  if not math.isfinite(level):
    raise ValueError(f"{name} must be a finite number, got {level!r}.")


def _check_level_type(shape: Any, dtype: Any, flood_level: Any, name: str) -> None:
  """A level's shape and dtype, known statically for a traced one too: a real scalar."""
  if tuple(shape) != ():
    raise ValueError(
      f"{name} must be a scalar, got an array of shape {tuple(shape)}; to"
      " train several levels at once, jax.vmap over them or use"
      " flood_jax.sweep."
    )
  if not (jnp.issubdtype(dtype, jnp.integer) or jnp.issubdtype(dtype, jnp.floating)):
    got = "" if isinstance(flood_level, jax.core.Tracer) else f" {flood_level!r}"
    raise ValueError(f"{name} must be a real number, got{got} of dtype {dtype}.")


def flood(flood_level: FloodLevel) -> optax.GradientTransformationExtraArgs:
  r"""Flooding as an Optax transform: flips the update's sign below the flood level.

  With ``J`` the mini-batch mean loss, passed to ``update`` as ``value``, and
  ``b`` the flood level, every update leaf is multiplied by

  .. math::

    s = \begin{cases} +1 & J \ge b \\ -1 & J < b \end{cases}

  which is exactly the gradient of the flooded loss
  :math:`\tilde J = |J - b| + b`: :math:`\nabla \tilde J = s\,\nabla J`
  (``s = +1`` at ``J == b``, as JAX's derivative of ``abs`` gives). So
  ``optax.chain(flood(b), opt)`` trains exactly as ``opt`` on
  :func:`flood_jax.flooded_loss`, without changing the loss function.

  **Where to put it.** First in the chain, on the raw gradient, before any
  stateful transform (momentum, Adam's moments, gradient clipping by global
  norm is fine either side). That is the paper's method. Placed after
  ``optax.adam``, it flips Adam's *step* instead of the gradient Adam sees: the
  moments then keep accumulating descent directions and the ascent is a
  one-step reversal, which is a different (unstudied) method.

  A NaN ``value`` makes every update NaN (never a finite update of the wrong
  sign), so ``isfinite`` guards catch it; ``optax.apply_if_finite`` checks the
  updates it *receives*, so put it after ``flood``:
  ``optax.chain(flood(b), optax.apply_if_finite(opt, max_consecutive_errors))``.

  Args:
    flood_level: the flood level ``b``, any finite number: a float, a scalar
      array (it may be traced, e.g. under ``jax.vmap`` over levels), or a
      schedule, a callable of the step count like any Optax schedule. Works
      inside ``optax.inject_hyperparams(flood)(flood_level=...)``. A level
      below 0 floods only a loss that can go below 0 (a negative
      log-likelihood); for a loss ``>= 0`` it never floods (plain descent).
      NaN or infinite levels are refused.

  Returns:
    An ``optax.GradientTransformationExtraArgs`` whose
    ``update(updates, state, params=None, *, value, **extra_args)`` needs the
    batch loss as ``value`` and ignores any other extra argument. Its state is
    a :class:`FloodState`.

  Examples:
    >>> import jax, jax.numpy as jnp, optax
    >>> import flood_jax as fj
    >>> params = jnp.array([1.0, -2.0])
    >>> loss_fn = lambda p: jnp.mean(p ** 2)
    >>> tx = optax.chain(fj.flood(0.5), optax.sgd(0.1))
    >>> state = tx.init(params)
    >>> loss, grads = jax.value_and_grad(loss_fn)(params)
    >>> updates, state = tx.update(grads, state, params, value=loss)
    >>> params = optax.apply_updates(params, updates)
    >>> [round(float(p), 2) for p in params]
    [0.9, -1.8]

  References:
    Ishida et al., `Do We Need Zero Training Loss After Achieving Zero
    Training Error? <https://arxiv.org/abs/2002.08709>`_, ICML 2020.
  """
  check_flood_level(flood_level)

  def init_fn(params: optax.Params) -> FloodState:
    del params
    zero = jnp.zeros([], jnp.int32)
    return FloodState(count=zero, flooded_count=zero)

  def update_fn(
    updates: optax.Updates,
    state: FloodState,
    params: optax.Params | None = None,
    *,
    value: chex.Numeric | None = None,
    **extra_args: Any,
  ) -> tuple[optax.Updates, FloodState]:
    del params, extra_args
    if value is None:
      raise TypeError(
        "flood needs the mini-batch loss: call tx.update(grads, state, params, value=loss)."
      )
    value = jnp.asarray(value)
    if value.shape != ():
      raise ValueError(
        "flood's value must be the scalar mini-batch mean loss, got shape"
        f" {value.shape}; reduce it with jnp.mean first."
      )
    if callable(flood_level):  # a schedule: its value's type is known now (statically)
      level = flood_level(state.count)
      check_flood_level(level, name="flood_level's schedule value")
    else:
      level = flood_level
    level = jnp.asarray(level)
    ascent = value < level
    # NaN compares False both ways: give NaN, never a silent +1.
    sign = jnp.where(ascent, -1.0, 1.0)
    sign = jnp.where(jnp.isnan(value) | jnp.isnan(level), jnp.nan, sign)
    updates = jax.tree.map(lambda u: u * sign.astype(u.dtype), updates)
    new_state = FloodState(
      count=jnp.asarray(optax.safe_increment(state.count)),
      flooded_count=jnp.where(
        ascent,
        optax.safe_increment(state.flooded_count),
        state.flooded_count,
      ),
    )
    return updates, new_state

  # Optax types update's state as its base OptState; ours is a FloodState.
  return optax.GradientTransformationExtraArgs(init_fn, update_fn)  # pyright: ignore[reportArgumentType]


def flooded_fraction(state: Any) -> jax.Array:
  """Fraction of updates so far that were ascent steps, from any optimizer state.

  Finds the :class:`FloodState` inside ``state`` (for example the state of
  ``optax.chain(flood(b), opt)`` or of an ``inject_hyperparams`` wrapper) and
  returns ``flooded_count / count`` (0 before the first update).

  Examples:
    >>> import jax.numpy as jnp, optax
    >>> import flood_jax as fj
    >>> tx = optax.chain(fj.flood(0.5), optax.sgd(0.1))
    >>> state = tx.init(jnp.zeros(2))
    >>> _, state = tx.update(jnp.ones(2), state, value=0.1)
    >>> float(fj.flooded_fraction(state))
    1.0
  """
  found = [
    s
    for s in jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, FloodState))
    if isinstance(s, FloodState)
  ]
  if not found:
    raise ValueError(
      "no FloodState in this optimizer state; build the optimizer with"
      " optax.chain(flood_jax.flood(level), ...)."
    )
  if len(found) > 1:
    raise ValueError(
      f"found {len(found)} FloodStates in this optimizer state; pass the one"
      " you mean (e.g. state[0] of a chain)."
    )
  count = found[0].count
  return found[0].flooded_count / jnp.maximum(count, 1)
