"""The flooded objectives: flooding (Ishida et al., 2020), iFlood (Xie et al., 2022) and
its per-example levels (AdaFlood, Bae et al., 2024)."""

from __future__ import annotations

import numbers

import jax
import jax.core
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike


def flooded_loss(loss: ArrayLike, flood_level: ArrayLike) -> jax.Array:
  r"""Flooded loss ``|loss - b| + b`` (Ishida et al., 2020).

  .. math::

    \tilde J(\theta) = |J(\theta) - b| + b

  where :math:`J` is the mini-batch *mean* loss and :math:`b` the flood
  level, any finite number (negative for a loss that goes below 0, such as a
  negative log-likelihood; for a loss ``>= 0`` a level below 0 never floods).
  Shifting both by a constant changes nothing but the value: with
  :math:`J' = J + c` and :math:`b' = b + c`, :math:`\tilde J' = \tilde J + c`,
  so the gradients are the same. Above ``b`` this is ``J`` itself (gradient
  descent); below ``b`` it is ``2b - J``, so the gradient's sign flips
  (gradient ascent) and the training loss floats around ``b`` instead of going
  to zero. Its gradient is
  :math:`\nabla \tilde J = s \nabla J` with :math:`s = +1` if :math:`J \ge b`
  else :math:`-1` (JAX's derivative of ``abs`` at 0 is ``+1``).

  Pure ``jax.numpy``: safe under ``jit``, ``grad`` and ``vmap``, including with
  a traced ``flood_level`` (``jax.vmap`` over a vector of levels).

  Args:
    loss: the mini-batch mean loss, any shape (usually a scalar).
    flood_level: the flood level ``b``, broadcastable against ``loss``.

  Returns:
    ``|loss - flood_level| + flood_level``, with ``loss``'s shape and dtype
    promoted against ``flood_level``.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import flood_jax as fj
    >>> round(float(fj.flooded_loss(0.3, 0.1)), 6)
    0.3
    >>> round(float(fj.flooded_loss(0.05, 0.1)), 6)
    0.15
    >>> float(jax.grad(fj.flooded_loss)(0.05, 0.1))
    -1.0

  References:
    Ishida et al., `Do We Need Zero Training Loss After Achieving Zero
    Training Error? <https://arxiv.org/abs/2002.08709>`_, ICML 2020.
  """
  loss = _as_array(loss, "loss", "flooded_loss")
  flood_level = _as_level(flood_level, "flooded_loss")
  try:
    np.broadcast_shapes(loss.shape, flood_level.shape)
  except ValueError:
    raise ValueError(
      f"flooded_loss got flood levels of shape {flood_level.shape} for a loss of shape"
      f" {loss.shape}; give one level (a scalar) or levels that broadcast against the loss."
    ) from None
  return jnp.abs(loss - flood_level) + flood_level


def _as_array(value: ArrayLike, what: str, caller: str) -> jax.Array:
  """``value`` as a JAX array of real numbers; one line for anything else.

  Only the type is looked at (statically known under ``jit``), never a traced value.
  """
  if value is None or isinstance(value, (str, bytes)):
    raise ValueError(f"{caller}'s {what} must be a number or an array of numbers, got {value!r}.")
  try:
    array = jnp.asarray(value)
  except (TypeError, ValueError):
    raise ValueError(
      f"{caller}'s {what} must be a number or an array of numbers, got {value!r}."
    ) from None
  if not (jnp.issubdtype(array.dtype, jnp.integer) or jnp.issubdtype(array.dtype, jnp.floating)):
    shown = "" if isinstance(value, jax.core.Tracer) else f" {value!r}"
    raise ValueError(f"{caller}'s {what} must be real numbers, got{shown} of dtype {array.dtype}.")
  return array


def _as_level(flood_level: ArrayLike, caller: str) -> jax.Array:
  """The flood level as a JAX array, refused in one line when it is no real, finite number.

  A bool is refused (``True`` is not the level 1.0), as are strings, ``None``
  and complex numbers. A NaN or infinite level is caught when it is a Python
  or NumPy number; levels on a device or traced are not read back (that would
  cost a transfer per step); under ``flood_jax.sweep`` the grid checked them
  already.
  """
  if isinstance(flood_level, (bool, np.bool_)):
    raise ValueError(
      f"{caller}'s flood_level must be a number, got the bool {flood_level!r}; e.g. 0.05."
    )
  level = _as_array(flood_level, "flood_level", caller)
  concrete = isinstance(flood_level, (numbers.Number, np.ndarray, np.generic, list, tuple))
  if concrete and not np.all(np.isfinite(np.asarray(flood_level, np.float64))):
    raise ValueError(
      f"{caller} needs finite flood levels, got {flood_level!r}; any finite number works,"
      " negative ones too."
    )
  return level


def iflooded_loss(per_example_losses: ArrayLike, flood_level: ArrayLike) -> jax.Array:
  r"""Individual flooding (iFlood): the mean of per-example flooded losses.

  .. math::

    \tilde J(\theta) = \frac{1}{n} \sum_{i=1}^n \left(|\ell_i(\theta) - b_i| + b_i\right)

  Unlike :func:`flooded_loss`, which floods the batch mean, each example is
  flooded on its own: examples already fitted below their level are pushed
  back up while the others keep descending, which avoids over-fitting
  individual (often mislabeled) examples. With one level ``b`` for all
  examples this is iFlood (Xie et al., 2022); with a level ``b_i`` per
  example it is the objective of AdaFlood (Bae et al., 2024), whose levels
  :func:`flood_jax.adaflood_levels` computes. Its gradient is
  :math:`\frac{1}{n}\sum_i s_i \nabla \ell_i` with :math:`s_i = +1` if
  :math:`\ell_i \ge b_i` else :math:`-1`.

  Args:
    per_example_losses: losses ``l_i``, reduced over the last axis (shape
      ``(..., n)``).
    flood_level: the flood level. Of lower rank than ``per_example_losses``
      (a scalar ``b``, or one level per row ``(...)``) it is one level for all
      examples of a row, broadcast against the result; of the same rank (e.g.
      ``(n,)`` for losses ``(n,)``) it is one level per example, broadcast
      against ``per_example_losses``.

  Returns:
    ``mean_i(|l_i - b_i| + b_i)`` over the last axis.

  Examples:
    >>> import jax.numpy as jnp
    >>> import flood_jax as fj
    >>> round(float(fj.iflooded_loss(jnp.array([0.0, 0.4]), 0.1)), 6)
    0.3

    One level per example (AdaFlood): the first example is flooded at 0.2,
    the second (above its level 0.1) is left alone:

    >>> round(float(fj.iflooded_loss(jnp.array([0.0, 0.4]), jnp.array([0.2, 0.1]))), 6)
    0.4

  References:
    Xie et al., `iFlood: A Stable and Effective Regularizer
    <https://openreview.net/forum?id=MsHnJPaBUZE>`_, ICLR 2022.

    Bae et al., `AdaFlood: Adaptive Flood Regularization
    <https://arxiv.org/abs/2311.02891>`_, TMLR 2024.
  """
  per_example_losses = _as_array(per_example_losses, "per_example_losses", "iflooded_loss")
  if per_example_losses.ndim == 0:
    raise ValueError(
      "iflooded_loss expects per-example losses with a batch axis, got a"
      " scalar; for a batch mean loss use flooded_loss instead."
    )
  flood_level = _as_level(flood_level, "iflooded_loss")
  shape = per_example_losses.shape
  # One level for all, one per row (lower rank) or one per example (the same rank).
  against = shape if flood_level.ndim == len(shape) else shape[:-1]
  fits = flood_level.ndim <= len(shape)
  try:
    np.broadcast_shapes(against, flood_level.shape)
  except ValueError:
    fits = False
  if not fits:
    raise ValueError(
      f"iflooded_loss got flood levels of shape {flood_level.shape} for losses of"
      f" shape {shape}; give one level (a scalar)"
      + (f", one per row {shape[:-1]}" if len(shape) > 1 else "")
      + f" or one per example {shape}."
    )
  if flood_level.ndim < len(shape):
    flood_level = flood_level[..., None]  # one level per row: the same for its examples
  flooded = jnp.abs(per_example_losses - flood_level) + flood_level
  return jnp.mean(flooded, axis=-1)


def adaflood_level(heldout_loss: ArrayLike, gamma: ArrayLike) -> jax.Array:
  r"""AdaFlood's flood level of an example from its held-out loss, corrected toward its label.

  .. math::

    \theta_i = -\log\left((1 - \gamma)\, e^{-\ell^{aux}_i} + \gamma\right)

  computed as ``-logaddexp(log1p(-gamma) - l, log(gamma))``, exact at both
  ends: ``gamma = 0`` gives the held-out loss itself, ``gamma = 1`` gives 0
  (no flooding). The correction composes: correcting by ``g2`` the levels
  corrected by ``g1`` gives the levels corrected by ``1 - (1 - g1)(1 - g2)``.

  Args:
    heldout_loss: held-out cross-entropy losses ``l_aux >= 0``, any shape.
    gamma: the correction, in ``[0, 1]``, broadcastable against ``heldout_loss``.

  Returns:
    The levels ``theta``, with the broadcast shape.
  """
  heldout_loss = jnp.asarray(heldout_loss)
  gamma = jnp.asarray(gamma, heldout_loss.dtype)
  return -jnp.logaddexp(jnp.log1p(-gamma) - heldout_loss, jnp.log(gamma))
