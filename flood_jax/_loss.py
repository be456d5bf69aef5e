"""The flooded objectives: flooding (Ishida et al., 2020) and iFlood (Xie et al., 2022)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike


def flooded_loss(loss: ArrayLike, flood_level: ArrayLike) -> jax.Array:
  r"""Flooded loss ``|loss - b| + b`` (Ishida et al., 2020).

  .. math::

    \tilde J(\theta) = |J(\theta) - b| + b

  where :math:`J` is the mini-batch *mean* loss and :math:`b \ge 0` the flood
  level. Above ``b`` this is ``J`` itself (gradient descent); below ``b`` it is
  ``2b - J``, so the gradient's sign flips (gradient ascent) and the training
  loss floats around ``b`` instead of going to zero. Its gradient is
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
  loss = jnp.asarray(loss)
  flood_level = jnp.asarray(flood_level)
  return jnp.abs(loss - flood_level) + flood_level


def iflooded_loss(
    per_example_losses: ArrayLike, flood_level: ArrayLike
) -> jax.Array:
  r"""Individual flooding (iFlood): the mean of per-example flooded losses.

  .. math::

    \tilde J(\theta) = \frac{1}{n} \sum_{i=1}^n \left(|\ell_i(\theta) - b| + b\right)

  Unlike :func:`flooded_loss`, which floods the batch mean, each example is
  flooded on its own: examples already fitted below ``b`` are pushed back up
  while the others keep descending, which avoids over-fitting individual
  (often mislabeled) examples.

  Args:
    per_example_losses: losses ``l_i``, reduced over the last axis (shape
      ``(..., n)``).
    flood_level: the flood level ``b``, broadcastable against the result.

  Returns:
    ``mean_i(|l_i - b| + b)`` over the last axis.

  Examples:
    >>> import jax.numpy as jnp
    >>> import flood_jax as fj
    >>> round(float(fj.iflooded_loss(jnp.array([0.0, 0.4]), 0.1)), 6)
    0.3

  References:
    Xie et al., `iFlood: A Stable and Effective Regularizer
    <https://openreview.net/forum?id=MsHnJPaBUZE>`_, ICLR 2022.
  """
  per_example_losses = jnp.asarray(per_example_losses)
  if per_example_losses.ndim == 0:
    raise ValueError(
        "iflooded_loss expects per-example losses with a batch axis, got a"
        " scalar; for a batch mean loss use flooded_loss instead."
    )
  flood_level = jnp.asarray(flood_level)
  flooded = jnp.abs(per_example_losses - flood_level[..., None]) + flood_level[..., None]
  return jnp.mean(flooded, axis=-1)
