"""Model adapters: linen modules, NNX factories and plain ``Model(init, apply)``.

The compiled program sees every model through one functional interface::

  params, model_state, rng_state = adapter.init(key, x)
  logits, model_state, rng_state = adapter.apply(
      params, model_state, rng_state, x, train=..., key=...)

``params`` are what the optimizer trains; ``model_state`` is what the model
updates itself in training (BatchNorm statistics), kept in the result;
``rng_state`` is an NNX module's own random streams (dropout), carried but
not kept. ``key`` is the per-model, per-step key for dropout in linen and
plain models.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax

from flood_jax._cache import register

Params = Any


@dataclasses.dataclass(frozen=True, eq=False)
class Model:
  """A model as a pair of plain functions, for any JAX framework.

  ``init(key, x) -> params`` builds the trainable parameters (any pytree of
  arrays) from a PRNG key and a batch of one example; ``apply(params, x,
  train) -> logits`` runs the model on a batch. If ``apply`` also takes a
  keyword argument ``key``, it receives a PRNG key per model and step in
  training (for dropout; the key is derived from the seed, so dropout masks are
  paired across flood levels like the order of mini-batches) and ``None`` in
  evaluation.

  Args:
    init: ``(key, x) -> params``.
    apply: ``(params, x, train) -> logits`` or ``(params, x, train, key=None)``.

  Examples:
    A hand-written MLP:

    >>> import jax, jax.numpy as jnp
    >>> import flood_jax as fj
    >>> def init(key, x):
    ...   k1, k2 = jax.random.split(key)
    ...   return {"w1": jax.random.normal(k1, (x.shape[-1], 16)) * 0.3,
    ...           "w2": jax.random.normal(k2, (16, 2)) * 0.3}
    >>> def apply(params, x, train):
    ...   return jax.nn.relu(x @ params["w1"]) @ params["w2"]
    >>> model = fj.Model(init=init, apply=apply)

    An Equinox model adapts in a few lines (``eqx.partition`` splits off the
    arrays to train, ``eqx.combine`` puts them back)::

      def init(key, x):
        return eqx.partition(eqx.nn.MLP(x.shape[-1], 2, 64, 2, key=key), eqx.is_array)[0]
      static = eqx.partition(eqx.nn.MLP(40, 2, 64, 2, key=jax.random.key(0)), eqx.is_array)[1]
      def apply(params, x, train):
        return jax.vmap(eqx.combine(params, static))(x)
      model = fj.Model(init=init, apply=apply)
  """

  init: Callable[[jax.Array, jax.Array], Params]
  apply: Callable[..., jax.Array]

  def __post_init__(self):
    if not callable(self.init) or not callable(self.apply):
      raise TypeError(
        "fj.Model needs two functions: init(key, x) -> params and"
        " apply(params, x, train) -> logits."
      )


class Adapter:
  """What the compiled program calls; one subclass per kind of model."""

  kind: str = ""

  def init(self, key: jax.Array, x: jax.Array) -> tuple[Params, Any, Any]:
    raise NotImplementedError

  def apply(
    self,
    params: Params,
    model_state: Any,
    rng_state: Any,
    x: jax.Array,
    *,
    train: bool,
    key: jax.Array | None,
  ) -> tuple[jax.Array, Any, Any]:
    raise NotImplementedError

  def describe(self) -> str:
    """A stable description, for the sweep's settings and checkpoint fingerprint."""
    raise NotImplementedError


class LinenAdapter(Adapter):
  """A Flax linen module called as ``model.apply(variables, x, train=...)``."""

  kind = "linen"

  def __init__(self, module: nn.Module):
    self.module = module

  def init(self, key, x):
    variables = self.module.init(key, x, train=False)
    return variables["params"], variables.get("batch_stats"), None

  def apply(self, params, model_state, rng_state, x, *, train, key):
    variables = {"params": params}
    rngs = {"dropout": key} if train and key is not None else None
    if model_state is not None:
      variables["batch_stats"] = model_state
      if train:
        logits, updates = self.module.apply(
          variables, x, train=True, mutable=["batch_stats"], rngs=rngs
        )
        return logits, updates["batch_stats"], rng_state
    return self.module.apply(variables, x, train=train, rngs=rngs), model_state, rng_state

  def describe(self):
    return repr(self.module)


class NNXAdapter(Adapter):
  """An NNX factory ``make(rngs) -> nnx.Module``, called once per seed.

  Train and evaluation mode come from NNX's own switch: the module is split
  once after ``.train()`` and once after ``.eval()``, giving two static graph
  definitions that the program merges with each model's state.
  """

  kind = "nnx"

  def __init__(self, make: Callable[..., Any]):
    from flax import nnx

    self.make = make
    abstract = nnx.eval_shape(lambda: make(nnx.Rngs(0)))
    if not isinstance(abstract, nnx.Module):
      raise TypeError(
        "an NNX model factory must return an nnx.Module, got"
        f" {type(abstract).__name__}; pass lambda rngs: MyNet(..., rngs=rngs)."
      )
    abstract.train()
    self.graph_train = nnx.split(abstract)[0]
    abstract.eval()
    self.graph_eval = nnx.split(abstract)[0]
    self.name = type(abstract).__name__

  def _split(self, module):
    from flax import nnx

    _, params, rng_state, model_state = nnx.split(module, nnx.Param, nnx.RngState, ...)
    return params, model_state, rng_state

  def init(self, key, x):
    from flax import nnx

    del x  # NNX modules know their shapes from the factory.
    return self._split(self.make(nnx.Rngs(key)))

  def apply(self, params, model_state, rng_state, x, *, train, key):
    from flax import nnx

    del key  # NNX modules draw from their own streams (seeded at init).
    graph = self.graph_train if train else self.graph_eval
    # copy=True: fresh Variables in this trace (those of the state may come
    # from an outer one, and BatchNorm writes to them).
    module = nnx.merge(graph, params, rng_state, model_state, copy=True)
    logits = module(x)
    params, model_state, rng_state = self._split(module)
    return logits, model_state, rng_state

  def describe(self):
    return f"nnx:{self.name}:{self.graph_train}"


class PlainAdapter(Adapter):
  """A :class:`Model`: ``init(key, x) -> params``, ``apply(params, x, train)``."""

  kind = "plain"

  def __init__(self, model: Model):
    self.model = model
    try:
      parameters = inspect.signature(model.apply).parameters
    except (TypeError, ValueError):
      parameters = {}
    self.takes_key = "key" in parameters

  def init(self, key, x):
    return self.model.init(key, x), None, None

  def apply(self, params, model_state, rng_state, x, *, train, key):
    if self.takes_key:
      logits = self.model.apply(params, x, train, key=key if train else None)
    else:
      logits = self.model.apply(params, x, train)
    return logits, model_state, rng_state

  def describe(self):
    return (
      f"Model(init={getattr(self.model.init, '__qualname__', '?')},"
      f" apply={getattr(self.model.apply, '__qualname__', '?')})"
    )


def adapt(model: Any) -> Adapter:
  """The adapter for ``model``, or a one-line ``TypeError`` saying what to pass.

  Memoized by model (an NNX adapter traces the factory once), so the checks,
  the layout and the program share one; an unhashable model gets a new one.
  """
  try:
    return _adapt_cached(model)
  except TypeError as err:
    if "unhashable" not in str(err):
      raise
    return _adapt(model)


@functools.lru_cache(maxsize=32)
def _adapt_cached(model: Any) -> Adapter:
  return _adapt(model)


register(_adapt_cached.cache_clear)


def _adapt(model: Any) -> Adapter:
  if isinstance(model, Model):
    return PlainAdapter(model)
  if isinstance(model, nn.Module):
    return LinenAdapter(model)
  try:
    from flax import nnx
  except ImportError:  # pragma: no cover - flax always ships nnx today
    nnx = None
  if nnx is not None and isinstance(model, nnx.Module):
    raise TypeError(
      f"pass an NNX model as a factory, not an instance: lambda rngs:"
      f" {type(model).__name__}(..., rngs=rngs), so each seed gets its own"
      " initialization."
    )
  if callable(model) and not hasattr(model, "apply"):
    return NNXAdapter(model)
  raise TypeError(
    f"model must be a Flax linen module, an NNX factory (lambda rngs:"
    f" MyNet(rngs=rngs)) or fj.Model(init, apply); got {type(model).__name__}."
  )
