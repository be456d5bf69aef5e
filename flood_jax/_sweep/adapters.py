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
import hashlib
import inspect
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy
import numpy as np

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


@dataclasses.dataclass(frozen=True, eq=False)
class Pretrained:
  r"""A model whose every copy in a sweep starts from the same given weights.

  Each model of the sweep is initialized as usual from its seed, then every
  parameter named in ``params`` (and every state entry named in
  ``model_state``, e.g. BatchNorm statistics) is replaced by the given value:

  .. math::

    \theta^{(k)}_0[p] = \begin{cases} w[p] & p \in \mathrm{paths}(w) \\
      \mathrm{init}(\mathrm{seed}_k)[p] & \text{otherwise} \end{cases}

  So a pretrained backbone is the same in every model while the seed still
  draws what is not given (a new head), and, as for any model, the dropout
  masks and the order of the mini-batches. ``params`` is a partial tree rooted
  at the model's own parameters: for linen ``variables["params"]`` (e.g.
  ``{"backbone": pretrained_variables["params"]["backbone"]}``), for NNX the
  ``nnx.Param`` state (``{"backbone": nnx.state(trained.backbone, nnx.Param)}``
  or its ``nnx.to_pure_dict``), for :class:`Model` whatever its ``init``
  returns. Values are cast to the fresh parameter's dtype; a name the model
  does not have, or a shape that differs, is a one-line ``ValueError`` before
  training.

  **Memory.** With ``P`` parameters of 4 bytes, each model of a chunk holds
  its own copy of all of them, trained: ``4P`` bytes of weights, ``4P`` of
  gradients and the optimizer's state (``8P`` for Adam, ``4P`` for SGD with
  momentum), so ``K`` models per device need about ``K * 16P`` bytes with Adam
  (plus activations), and the given weights once more (``4P``), shared. A
  110M-parameter backbone (BERT-base): ``16P`` = 1.76 GB per model, so a chunk
  of 8 on one device takes about 14 GB before activations.
  :func:`flood_jax.sweep` picks the chunk size from the parameter count; pass
  ``chunk_size=`` to fit a device. The given weights are constants of the
  compiled initialization (hashed for the program cache and the checkpoint
  fingerprint); they are not an input of the training steps.

  Args:
    model: a linen module, an NNX factory or a :class:`Model`.
    params: the weights to start from, a (partial) tree of the model's parameters.
    model_state: the model state to start from (linen ``batch_stats``, NNX
      ``nnx.BatchStat`` state), a partial tree; ``None``: freshly initialized.

  Examples:
    A linen model whose first layer comes from elsewhere; each seed draws
    its own second layer:

    >>> import jax, jax.numpy as jnp, numpy as np, optax
    >>> import flax.linen as nn
    >>> import flood_jax as fj
    >>> class Net(nn.Module):
    ...   @nn.compact
    ...   def __call__(self, x, train: bool = False):
    ...     h = nn.relu(nn.Dense(8, name="backbone")(x))
    ...     return nn.Dense(2, name="head")(h)
    >>> backbone = Net().init(jax.random.key(42), jnp.zeros((1, 3)))["params"]["backbone"]
    >>> model = fj.Pretrained(Net(), params={"backbone": backbone})
    >>> x = np.random.default_rng(0).normal(size=(32, 3)).astype(np.float32)
    >>> y = (x[:, 0] > 0).astype(np.int32)
    >>> data = fj.Dataset(x_train=x, y_train=y, x_val=x, y_val=y, x_test=x, y_test=y)
    >>> result = fj.sweep(model, data, flood_levels=[0.0], seeds=[0, 1],
    ...                   optimizer=optax.sgd(0.0), epochs=1, batch_size=8)
    >>> start = result.final_params  # a learning rate of 0: the starting point
    >>> bool(np.all(start["backbone"]["kernel"] == backbone["kernel"]))
    True
    >>> bool(np.all(start["head"]["kernel"][0, 0] != start["head"]["kernel"][0, 1]))
    True
  """

  model: Any
  params: Any
  model_state: Any = None

  def __post_init__(self):
    if isinstance(self.model, Pretrained):
      raise TypeError("fj.Pretrained wraps a model once; merge the weights into one params tree.")
    if not jax.tree.leaves(self.params):
      raise ValueError(
        "fj.Pretrained needs weights: params holds no arrays (give a tree such as"
        ' {"backbone": pretrained_params["backbone"]}).'
      )
    # On a device once, not as NumPy literals written into every compiled program.
    object.__setattr__(self, "params", jax.tree.map(jax.numpy.asarray, self.params))
    if self.model_state is not None:
      object.__setattr__(self, "model_state", jax.tree.map(jax.numpy.asarray, self.model_state))

  def __call__(self, rngs: Any) -> Any:
    """For an NNX factory: one module built by the factory with the given weights put in.

    (What :meth:`flood_jax.SweepResult.nnx_model` calls to rebuild a trained model.)
    """
    adapter = adapt(self)
    if adapter.kind != "nnx":
      raise TypeError(
        "only an fj.Pretrained of an NNX factory builds modules; call the model's own"
      )
    from flax import nnx

    module = self.model(rngs)
    params, model_state, _ = _split_nnx(module)
    nnx.update(module, graft(params, self.params, "params"))
    if self.model_state is not None:
      nnx.update(module, graft(model_state, self.model_state, "model_state"))
    return module


class PretrainedAdapter(Adapter):
  """A :class:`Pretrained`: the model's own adapter, with the given weights grafted at init."""

  def __init__(self, pretrained: Pretrained):
    self.pretrained = pretrained
    self.inner = adapt(pretrained.model)
    self.kind = self.inner.kind

  def init(self, key, x):
    params, model_state, rng_state = self.inner.init(key, x)
    params = graft(params, self.pretrained.params, "params")
    if self.pretrained.model_state is not None:
      model_state = graft(model_state, self.pretrained.model_state, "model_state")
    return params, model_state, rng_state

  def apply(self, params, model_state, rng_state, x, *, train, key):
    return self.inner.apply(params, model_state, rng_state, x, train=train, key=key)

  def describe(self):
    digest = hashlib.sha256()
    for given in (self.pretrained.params, self.pretrained.model_state):
      for path, leaf in jax.tree_util.tree_flatten_with_path(given)[0]:
        array = np.asarray(leaf)
        digest.update(f"{_path_name(_normalized(path))}{array.dtype}{array.shape}".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return f"Pretrained({self.inner.describe()}, weights={digest.hexdigest()[:16]})"


def graft(fresh: Any, given: Any, name: str = "params") -> Any:
  """``fresh`` with every leaf that ``given`` names replaced by ``given``'s (cast to its dtype).

  Paths are compared by their keys (dict keys, attribute names, indices), a
  trailing ``.value`` of an NNX variable left out, so an ``nnx.State``, its
  pure dict and a plain nested dict name the same parameters.

  Raises:
    ValueError: ``given`` names a path ``fresh`` does not have, or a shape
      that differs (one line, naming the path).
  """
  wanted = {
    _normalized(path): leaf for path, leaf in jax.tree_util.tree_flatten_with_path(given)[0]
  }
  fresh_leaves = jax.tree_util.tree_flatten_with_path(fresh)[0]
  have = {_normalized(path): leaf for path, leaf in fresh_leaves}
  for path, leaf in wanted.items():
    if path not in have:
      known = ", ".join(_path_name(p) for p in list(have)[:6]) + (", ..." if len(have) > 6 else "")
      raise ValueError(
        f"fj.Pretrained {name} names {_path_name(path)!r}, which the model does not have;"
        f" its {name} are: {known}."
      )
    if tuple(jax.numpy.shape(leaf)) != tuple(have[path].shape):
      raise ValueError(
        f"fj.Pretrained {name} {_path_name(path)!r} has shape {tuple(jax.numpy.shape(leaf))}"
        f" but the model's has {tuple(have[path].shape)}; give weights of the model's shapes."
      )

  def replace(path, leaf):
    key = _normalized(path)
    return jax.numpy.asarray(wanted[key], leaf.dtype) if key in wanted else leaf

  return jax.tree_util.tree_map_with_path(replace, fresh)


def _normalized(path: tuple[Any, ...]) -> tuple[Any, ...]:
  keys = []
  for entry in path:
    for attribute in ("key", "name", "idx"):
      if hasattr(entry, attribute):
        keys.append(getattr(entry, attribute))
        break
    else:
      keys.append(str(entry))
  if keys and keys[-1] == "value":  # an NNX variable's array
    keys.pop()
  return tuple(keys)


def _path_name(path: tuple[Any, ...]) -> str:
  return "/".join(str(k) for k in path)


def _split_nnx(module: Any) -> tuple[Any, Any, Any]:
  from flax import nnx

  _, params, rng_state, model_state = nnx.split(module, nnx.Param, nnx.RngState, ...)
  return params, model_state, rng_state


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
  if isinstance(model, Pretrained):
    return PretrainedAdapter(model)
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
