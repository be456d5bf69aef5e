"""Flax linen models for flooding experiments: the paper's MLP, a small CNN, ResNets.

Every model follows one calling convention, which the sweep engine relies on::

    logits = model.apply(variables, x, train=False)
    logits, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])

``__call__(x, train)`` returns logits of shape ``(batch, num_classes)``.
BatchNorm layers use batch statistics when ``train`` is true and the running
averages (the ``batch_stats`` collection) otherwise; no model uses dropout, so
``apply`` needs no RNG. Nothing depends on the batch size in Python, so the
models work under ``jax.vmap`` over parameters (a sweep of many models).

BatchNorm uses ``momentum=0.9`` and ``epsilon=1e-5``, PyTorch's defaults (the
paper's code is PyTorch), rather than Flax's ``0.99``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
  "CNN",
  "MLP",
  "MODELS",
  "FromPixels",
  "ResNet",
  "ResNet18",
  "ResNet20",
  "ResNet44",
  "get_model",
]


class FromPixels(nn.Module):
  r"""A model fed uint8 pixels: scales and standardizes them on the device, then runs ``model``.

  :math:`x \mapsto (x / 255 - \mu) / \sigma` per channel (the last axis, or the flattened
  pixels' channel order), in float32, then ``model(x, train)``. With ``fj.data.load(name,
  pixels=True)`` the data set stays uint8, so every device holds a quarter of the bytes of
  the float32 copy (CIFAR-10's default split with the sweep's evaluation set: 179 MiB instead
  of 715 MiB, ``benchmarks/RESULTS.md`` section 13), and the
  model sees what ``pixels=False`` gives it: the same arithmetic to round-off (the scaling
  runs on the device instead of in NumPy).

  Attributes:
    model: any linen module called as ``model(x, train)``.
    mean: per-channel means of the pixels scaled to [0, 1] (``fj.data.IMAGE_SETS[name].mean``).
    std: per-channel standard deviations of the same.

  Examples:
    >>> import jax, jax.numpy as jnp, numpy as np
    >>> import flood_jax as fj
    >>> net = fj.models.FromPixels(fj.models.MLP(num_classes=2, hidden=8, depth=1), (0.5,), (0.25,))
    >>> x = jnp.full((2, 3), 255, jnp.uint8)
    >>> variables = net.init(jax.random.key(0), x, train=False)
    >>> net.apply(variables, x, train=False).shape
    (2, 2)
  """

  model: nn.Module
  mean: Sequence[float]
  std: Sequence[float]

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    mean, std = _channel_stats(self.mean, self.std)
    channels = len(mean)
    if x.ndim < 2:
      raise ValueError(
        f"FromPixels needs a batch of images (n, ...), got shape {x.shape}; add the batch axis."
      )
    flattened = x.ndim == 2 and x.shape[-1] != channels
    if flattened and x.shape[-1] % channels:
      raise ValueError(
        f"FromPixels got flattened images of {x.shape[-1]} values, not a multiple of the"
        f" {channels} channels of its mean and std; give mean and std one value per channel"
        " of these images, or the images as (n, height, width, channels)."
      )
    if not flattened and channels != 1 and x.shape[-1] != channels:
      raise ValueError(
        f"FromPixels has a mean and std of {channels} channels but the images' last axis"
        f" (the channels) has {x.shape[-1]} (shape {x.shape}); give one value per channel"
        " of these images (fj.data.IMAGE_SETS[name].mean and .std), or one for all."
      )
    x = x.astype(jnp.float32) / jnp.float32(255.0)
    mean, std = jnp.asarray(mean, jnp.float32), jnp.asarray(std, jnp.float32)
    if flattened:  # (h * w * c) pixels, channel last
      x = ((x.reshape(x.shape[0], -1, channels) - mean) / std).reshape(x.shape[0], -1)
    else:
      x = (x - mean) / std
    return self.model(x, train)


def _channel_stats(mean: Any, std: Any) -> tuple[np.ndarray, np.ndarray]:
  """``FromPixels``' mean and std as 1-D float arrays of one length, finite, the std positive."""
  stats = []
  for name, values in (("mean", mean), ("std", std)):
    try:
      array = np.asarray(values, np.float64)
    except (TypeError, ValueError):
      array = np.asarray([np.nan])
    if array.ndim != 1 or not len(array) or not np.isfinite(array).all():
      raise ValueError(
        f"FromPixels' {name} must be one finite number per channel, e.g. (0.5,) or"
        f" (0.49, 0.48, 0.45), got {values!r}."
      )
    stats.append(array)
  if len(stats[0]) != len(stats[1]):
    raise ValueError(
      f"FromPixels has a mean of {len(stats[0])} channels and a std of {len(stats[1])};"
      " give both one value per channel."
    )
  if (stats[1] <= 0).any():
    raise ValueError(f"FromPixels' std must be positive, got {std!r}.")
  return stats[0], stats[1]


# PyTorch's BatchNorm defaults (its momentum=0.1 is Flax's momentum=0.9).
_BN_MOMENTUM = 0.9
_BN_EPSILON = 1e-5


def _batch_norm(train: bool, **kwargs: Any) -> nn.BatchNorm:
  return nn.BatchNorm(
    use_running_average=not train,
    momentum=_BN_MOMENTUM,
    epsilon=_BN_EPSILON,
    **kwargs,
  )


def _as_images(x: jax.Array, model: str) -> jax.Array:
  """Returns ``x`` as ``(N, H, W, C)``: adds a channel axis to ``(N, H, W)``."""
  x = jnp.asarray(x)
  if x.ndim == 3:
    return x[..., None]
  if x.ndim == 4:
    return x
  raise ValueError(
    f"{model} needs image-shaped inputs (N, H, W) or (N, H, W, C), got shape "
    f"{x.shape}; pass flatten=False to the data loader."
  )


class MLP(nn.Module):
  """The flooding paper's multilayer perceptron.

  ``depth`` hidden blocks ``Dense(hidden) -> BatchNorm -> ReLU``, then a
  ``Dense(num_classes)`` output layer. Inputs of any shape ``(N, ...)`` are
  flattened to ``(N, D)`` first.

  The defaults follow the official code (``takashiishida/flooding``,
  ``utils/models.py``, ``mlp_model``): four hidden layers of 500 units, each
  ``Linear -> BatchNorm1d -> ReLU``, then a linear output layer (the model of
  its synthetic-data demo). The hidden Dense layers keep their bias, as in that
  code, although BatchNorm makes it redundant.

  Attributes:
    num_classes: number of outputs (logits).
    hidden: width of each hidden layer.
    depth: number of hidden layers (``depth + 1`` Dense layers in all).
    batch_norm: whether each hidden Dense layer is followed by BatchNorm;
      without it the model has no ``batch_stats`` collection.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from flood_jax.models import MLP
    >>> model = MLP(num_classes=3, hidden=8, depth=2)
    >>> x = jnp.ones((4, 2, 5))  # flattened to (4, 10)
    >>> variables = model.init(jax.random.key(0), x, train=False)
    >>> sorted(variables)
    ['batch_stats', 'params']
    >>> logits, updates = model.apply(
    ...     variables, x, train=True, mutable=["batch_stats"])
    >>> logits.shape
    (4, 3)
  """

  num_classes: int
  hidden: int = 500
  depth: int = 4
  batch_norm: bool = True

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    """Returns logits ``(N, num_classes)`` for inputs ``(N, ...)``.

    Args:
      x: inputs with a leading batch axis; the other axes are flattened.
      train: use batch statistics in BatchNorm (and update the running
        averages, given ``mutable=["batch_stats"]``) if true, else the running
        averages.

    Returns:
      The logits, shape ``(N, num_classes)``.
    """
    x = jnp.asarray(x)
    x = x.reshape((x.shape[0], -1))
    for _ in range(self.depth):
      x = nn.Dense(self.hidden)(x)
      if self.batch_norm:
        x = _batch_norm(train)(x)
      x = nn.relu(x)
    return nn.Dense(self.num_classes)(x)


class CNN(nn.Module):
  """A small convolutional network.

  One stage per entry of ``features``: ``Conv 3x3 -> BatchNorm -> ReLU ->
  max-pool 2x2`` (stride 2, ``SAME`` padding, so odd sizes round up and small
  images such as 8x8 digits survive three stages); then ``Dense(hidden) ->
  ReLU -> Dense(num_classes)`` on the flattened feature map.

  Inputs are images ``(N, H, W, C)``; ``(N, H, W)`` gets a channel axis. Flat
  vectors ``(N, D)`` raise a ``ValueError``: load the data with
  ``flatten=False``.

  Attributes:
    num_classes: number of outputs (logits).
    features: the number of channels of each convolutional stage.
    hidden: width of the hidden Dense layer.
    batch_norm: whether each convolution is followed by BatchNorm (the
      convolutions then have no bias); without it the model has no
      ``batch_stats``.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from flood_jax.models import CNN
    >>> model = CNN(num_classes=10, features=(4, 8), hidden=16)
    >>> def forward(x):
    ...   variables = model.init(jax.random.key(0), x, train=False)
    ...   return model.apply(variables, x, train=False)
    >>> x = jnp.ones((2, 8, 8))  # (N, H, W): a channel axis is added
    >>> jax.eval_shape(forward, x).shape  # shapes only, nothing computed
    (2, 10)
  """

  num_classes: int
  features: Sequence[int] = (32, 64)
  hidden: int = 128
  batch_norm: bool = True

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    """Returns logits ``(N, num_classes)`` for images ``(N, H, W[, C])``.

    Args:
      x: images ``(N, H, W, C)`` or ``(N, H, W)``.
      train: use batch statistics in BatchNorm if true, else the running
        averages.

    Returns:
      The logits, shape ``(N, num_classes)``.

    Raises:
      ValueError: if ``x`` is not image-shaped (e.g. flat vectors).
    """
    x = _as_images(x, "CNN")
    for features in self.features:
      x = nn.Conv(features, (3, 3), padding="SAME", use_bias=not self.batch_norm)(x)
      if self.batch_norm:
        x = _batch_norm(train)(x)
      x = nn.relu(x)
      x = nn.max_pool(x, (2, 2), strides=(2, 2), padding="SAME")
    x = x.reshape((x.shape[0], -1))
    x = nn.relu(nn.Dense(self.hidden)(x))
    return nn.Dense(self.num_classes)(x)


# He et al. (2015)'s initialization, N(0, 2 / fan_in), untruncated as in the
# ResNet papers (Flax's kaiming_normal truncates).
_conv_init = nn.initializers.variance_scaling(2.0, "fan_in", "normal")


class _BasicBlock(nn.Module):
  """Two 3x3 convolutions with BatchNorm and a residual connection."""

  features: int
  strides: int
  shortcut: str

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    conv = functools.partial(nn.Conv, use_bias=False, kernel_init=_conv_init)
    # Symmetric padding 1, as in PyTorch: a stride-2 convolution then samples
    # the same positions as the option-A shortcut's x[::2, ::2].
    y = conv(self.features, (3, 3), strides=self.strides, padding=1)(x)
    y = nn.relu(_batch_norm(train)(y))
    y = conv(self.features, (3, 3), padding=1)(y)
    y = _batch_norm(train)(y)

    residual = x
    if self.strides != 1 or x.shape[-1] != self.features:
      if self.shortcut == "zero_pad":  # option A: parameter-free
        residual = x[..., :: self.strides, :: self.strides, :]
        extra = self.features - x.shape[-1]
        pad = [(0, 0)] * (x.ndim - 1) + [(extra // 2, extra - extra // 2)]
        residual = jnp.pad(residual, pad)
      else:  # option B: 1x1 convolution
        residual = conv(
          self.features, (1, 1), strides=self.strides, padding="VALID", name="shortcut_conv"
        )(x)
        residual = _batch_norm(train, name="shortcut_bn")(residual)
    return nn.relu(y + residual)


class ResNet(nn.Module):
  """A ResNet of basic blocks for small images (He et al., 2016).

  Stem ``Conv 3x3 (stride 1) -> BatchNorm -> ReLU`` with ``num_filters``
  channels and no max-pool (the usual choice for 32x32 inputs); then one stage
  per entry of ``stage_sizes``, of that many basic blocks, the channels
  doubling and the resolution halving (stride-2 first block) from the second
  stage on; then global average pooling and ``Dense(num_classes)``.

  Where the shape changes, the shortcut is either ``"projection"`` (a 1x1
  convolution and BatchNorm, He et al.'s option B, as in ResNet-18) or
  ``"zero_pad"`` (stride-2 subsampling and zero channels, the parameter-free
  option A of the paper's CIFAR ResNets). Convolutions have no bias and
  He et al.'s initialization, ``N(0, 2 / fan_in)``.

  See :func:`ResNet18`, :func:`ResNet20` and :func:`ResNet44` for the usual
  configurations.

  Attributes:
    stage_sizes: the number of basic blocks in each stage.
    num_classes: number of outputs (logits).
    num_filters: channels of the stem and the first stage.
    shortcut: ``"projection"`` or ``"zero_pad"``.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from flood_jax.models import ResNet
    >>> model = ResNet(stage_sizes=(1, 1), num_classes=5, num_filters=4)
    >>> def forward(x):
    ...   variables = model.init(jax.random.key(0), x, train=False)
    ...   return model.apply(variables, x, train=False)
    >>> x = jnp.ones((2, 8, 8, 3))
    >>> jax.eval_shape(forward, x).shape  # shapes only, nothing computed
    (2, 5)
  """

  stage_sizes: Sequence[int]
  num_classes: int
  num_filters: int = 64
  shortcut: str = "projection"

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    """Returns logits ``(N, num_classes)`` for images ``(N, H, W[, C])``.

    Args:
      x: images ``(N, H, W, C)`` or ``(N, H, W)``.
      train: use batch statistics in BatchNorm if true, else the running
        averages.

    Returns:
      The logits, shape ``(N, num_classes)``.

    Raises:
      ValueError: if ``x`` is not image-shaped, or ``shortcut`` is unknown.
    """
    if self.shortcut not in ("projection", "zero_pad"):
      raise ValueError(f"shortcut must be 'projection' or 'zero_pad', got {self.shortcut!r}")
    x = _as_images(x, "ResNet")
    x = nn.Conv(
      self.num_filters, (3, 3), padding=1, use_bias=False, kernel_init=_conv_init, name="stem_conv"
    )(x)
    x = nn.relu(_batch_norm(train, name="stem_bn")(x))
    for i, num_blocks in enumerate(self.stage_sizes):
      for j in range(num_blocks):
        x = _BasicBlock(
          features=self.num_filters * 2**i,
          strides=2 if i > 0 and j == 0 else 1,
          shortcut=self.shortcut,
        )(x, train)
    x = jnp.mean(x, axis=(-3, -2))
    return nn.Dense(self.num_classes, name="head")(x)


def ResNet18(num_classes: int, **kwargs: Any) -> ResNet:
  """ResNet-18 with a CIFAR stem, as used for CIFAR-10/100 in the paper.

  Four stages of two basic blocks, 64/128/256/512 channels, projection (1x1
  convolution) shortcuts, a 3x3 stride-1 stem and no max-pool: about 11.2M
  parameters for 10 classes.

  Args:
    num_classes: number of outputs (logits).
    **kwargs: other :class:`ResNet` attributes, e.g. a smaller ``num_filters``
      for tests.

  Returns:
    The :class:`ResNet` module.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from flood_jax.models import ResNet18
    >>> model = ResNet18(num_classes=10)
    >>> x = jnp.ones((1, 32, 32, 3))
    >>> shapes = jax.eval_shape(
    ...     lambda: model.init(jax.random.key(0), x, train=False))
    >>> sum(p.size for p in jax.tree.leaves(shapes["params"]))
    11173962
  """
  kwargs = {"num_filters": 64, "shortcut": "projection", **kwargs}
  return ResNet(stage_sizes=(2, 2, 2, 2), num_classes=num_classes, **kwargs)


def ResNet20(num_classes: int, **kwargs: Any) -> ResNet:
  """ResNet-20, He et al. (2016)'s CIFAR network with n = 3.

  Three stages of three basic blocks with 16/32/64 channels (6n + 2 = 20
  layers) and parameter-free option-A (``"zero_pad"``) shortcuts, as in the
  paper: about 0.27M parameters.

  Args:
    num_classes: number of outputs (logits).
    **kwargs: other :class:`ResNet` attributes, e.g.
      ``shortcut="projection"``.

  Returns:
    The :class:`ResNet` module.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from flood_jax.models import ResNet20
    >>> model = ResNet20(num_classes=10)
    >>> x = jnp.ones((1, 32, 32, 3))
    >>> shapes = jax.eval_shape(
    ...     lambda: model.init(jax.random.key(0), x, train=False))
    >>> sum(p.size for p in jax.tree.leaves(shapes["params"]))
    269722
  """
  kwargs = {"num_filters": 16, "shortcut": "zero_pad", **kwargs}
  return ResNet(stage_sizes=(3, 3, 3), num_classes=num_classes, **kwargs)


def ResNet44(num_classes: int, **kwargs: Any) -> ResNet:
  """ResNet-44, He et al. (2016)'s CIFAR network with n = 7.

  Three stages of seven basic blocks with 16/32/64 channels (6n + 2 = 44
  layers) and option-A (``"zero_pad"``) shortcuts: about 0.66M parameters.

  Args:
    num_classes: number of outputs (logits).
    **kwargs: other :class:`ResNet` attributes, e.g.
      ``shortcut="projection"``.

  Returns:
    The :class:`ResNet` module.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from flood_jax.models import ResNet44
    >>> model = ResNet44(num_classes=10)
    >>> x = jnp.ones((1, 32, 32, 3))
    >>> shapes = jax.eval_shape(
    ...     lambda: model.init(jax.random.key(0), x, train=False))
    >>> sum(p.size for p in jax.tree.leaves(shapes["params"]))
    658586
  """
  kwargs = {"num_filters": 16, "shortcut": "zero_pad", **kwargs}
  return ResNet(stage_sizes=(7, 7, 7), num_classes=num_classes, **kwargs)


MODELS: dict[str, Callable[..., nn.Module]] = {
  "mlp": MLP,
  "cnn": CNN,
  "resnet18": ResNet18,
  "resnet20": ResNet20,
  "resnet44": ResNet44,
}
"""The models by name, each called as ``MODELS[name](num_classes=..., **kwargs)``."""


def get_model(name: str, num_classes: int, **kwargs: Any) -> nn.Module:
  """Builds a model of :data:`MODELS` by name.

  Args:
    name: one of ``MODELS`` (``"mlp"``, ``"cnn"``, ``"resnet18"``,
      ``"resnet20"``, ``"resnet44"``), case-insensitive.
    num_classes: number of outputs (logits).
    **kwargs: the model's other attributes (``hidden=...``, ``depth=...``).

  Returns:
    The Flax linen module.

  Raises:
    ValueError: if ``name`` is not a known model.

  Examples:
    >>> from flood_jax.models import get_model
    >>> get_model("mlp", num_classes=2, depth=2).depth
    2
  """
  key = name.lower()
  if key not in MODELS:
    raise ValueError(f"unknown model {name!r}; known models: {', '.join(MODELS)}")
  return MODELS[key](num_classes=num_classes, **kwargs)
