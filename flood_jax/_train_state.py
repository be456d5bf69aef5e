"""``FloodTrainState``: a Flax linen TrainState that passes the loss to the optimizer."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np
import optax
from flax import core
from flax.training import train_state


class FloodTrainState(train_state.TrainState):
  """A ``flax.training.train_state.TrainState`` for optimizers that need the loss.

  Linen's ``TrainState.apply_gradients`` calls ``tx.update(grads, opt_state,
  params)`` and drops everything else, so :func:`flood_jax.flood` never sees
  the batch loss. Here, keyword arguments of ``apply_gradients`` that are not
  fields of the state (``value=loss`` above all) are forwarded to
  ``tx.update``; fields (``batch_stats=...``) replace the state's, as in linen.

  Attributes:
    batch_stats: the ``batch_stats`` collection of a model with BatchNorm, or
      ``None``.

  Examples:
    >>> import jax, jax.numpy as jnp, optax
    >>> import flax.linen as nn
    >>> import flood_jax as fj
    >>> model = nn.Dense(1)
    >>> x, y = jnp.ones((4, 3)), jnp.zeros((4, 1))
    >>> state = fj.FloodTrainState.create(
    ...     apply_fn=model.apply,
    ...     params=model.init(jax.random.key(0), x)["params"],
    ...     tx=optax.chain(fj.flood(0.1), optax.sgd(0.1)),
    ... )
    >>> def loss_fn(params):
    ...   return jnp.mean((state.apply_fn({"params": params}, x) - y) ** 2)
    >>> loss, grads = jax.value_and_grad(loss_fn)(state.params)
    >>> state = state.apply_gradients(grads=grads, value=loss)
    >>> int(state.step)
    1
  """

  batch_stats: Any = None

  def apply_gradients(self, *, grads: Any, **kwargs: Any) -> FloodTrainState:
    """Applies ``grads`` through ``tx``, forwarding the loss and other extras.

    Args:
      grads: gradients with the structure of ``params``.
      **kwargs: ``value=loss`` (and any other extra argument of ``tx.update``);
        keywords naming a field of the state (``batch_stats``, ...) replace it.

    Returns:
      The state after one step, ``step`` incremented.
    """
    _check_structure(grads, self.params)
    field_names = {f.name for f in dataclasses.fields(self)}
    replacements = {k: v for k, v in kwargs.items() if k in field_names}
    extra_args = {k: v for k, v in kwargs.items() if k not in field_names}
    tx = optax.with_extra_args_support(self.tx)
    updates, new_opt_state = tx.update(grads, self.opt_state, self.params, **extra_args)
    new_params = optax.apply_updates(self.params, updates)
    return self.replace(
      step=self.step + 1,
      params=new_params,
      opt_state=new_opt_state,
      **replacements,
    )

  @classmethod
  def create(cls, *, apply_fn, params, tx, **kwargs: Any) -> FloodTrainState:
    """Creates a state with ``step=0`` and ``tx.init(params)``, as linen's does.

    A ``params`` given as a whole linen variables dict (only the keys
    ``"params"`` and ``"batch_stats"``) is split: its ``batch_stats`` go to
    the field.
    """
    if (
      isinstance(params, (dict, core.FrozenDict))
      and "params" in params
      and set(params) <= {"params", "batch_stats"}
    ):
      variables = dict(params)
      params = variables.pop("params")
      if "batch_stats" in variables and "batch_stats" not in kwargs:
        kwargs["batch_stats"] = variables.pop("batch_stats")
    return super().create(apply_fn=apply_fn, params=params, tx=tx, **kwargs)


def _check_structure(grads: Any, params: Any) -> None:
  """One line when ``grads`` is not a pytree of the structure of ``params``.

  Compared statically (the tree's structure), so it costs nothing under ``jit``;
  a dict and a ``FrozenDict`` of the same keys count as the same.
  """
  grads_def = jax.tree.structure(core.unfreeze(grads) if _is_dict(grads) else grads)
  params_def = jax.tree.structure(core.unfreeze(params) if _is_dict(params) else params)
  if grads_def == params_def:
    for (path, g), p in zip(
      jax.tree_util.tree_leaves_with_path(grads), jax.tree.leaves(params), strict=True
    ):
      if np.shape(g) != np.shape(p):
        raise ValueError(
          f"apply_gradients got a gradient of shape {np.shape(g)} for the parameter"
          f" {jax.tree_util.keystr(path)} of shape {np.shape(p)}; take the gradient with respect"
          " to state.params, e.g. jax.grad(loss_fn)(state.params)."
        )
    return
  raise ValueError(
    f"apply_gradients got grads of another structure than the params: grads"
    f" {_brief(grads)}, params {_brief(params)}; take the gradient with respect to"
    " state.params, e.g. jax.grad(loss_fn)(state.params)."
  )


def _is_dict(tree: Any) -> bool:
  return isinstance(tree, (dict, core.FrozenDict))


def _brief(tree: Any) -> str:
  """A pytree's structure in a few words: its leaves' paths (the first few) or its type."""
  paths = [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_leaves_with_path(tree)]
  if not paths:
    return f"{type(tree).__name__} with no leaves"
  shown = ", ".join(paths[:4]) + (f", ... ({len(paths)} leaves)" if len(paths) > 4 else "")
  return f"{{{shown}}}" if paths != [""] else "one array"
