"""On-device augmentation for ``fj.sweep(..., augment=fn)``."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from flood_jax._checks import is_integer, true_or_false


def random_crop_flip(
  padding: int = 4,
  flip: bool = True,
  *,
  image_shape: Sequence[int] | None = None,
) -> Callable[[jax.Array, jax.Array], jax.Array]:
  """Returns the standard random crop and flip augmentation for image batches.

  The returned ``augment(key, x)`` pads every image of ``x`` with ``padding``
  zeros on each side of its height and width, crops it back to its original
  size at an offset drawn uniformly from the ``(2 * padding + 1) ** 2``
  possible ones, and, with ``flip=True``, mirrors it left-right with
  probability 1/2. Offsets and flips are independent per image. It is pure
  JAX (``jax.lax.dynamic_slice`` under ``jax.vmap``, a ``jnp.where`` for the
  flips), so it can run inside ``jax.jit``, ``jax.vmap`` and ``jax.lax.scan``,
  as ``fj.sweep(..., augment=fn)`` does; it keeps the batch's shape and dtype.

  Images are ``(batch, height, width, channels)``, the layout of the image
  sets of :func:`load` (grey images have a channel axis of 1). For the
  flattened ``(batch, height * width * channels)`` layout of
  ``load(..., flatten=True)``, pass ``image_shape=(height, width, channels)``:
  each batch is reshaped to images, augmented and flattened back. The padding
  is zeros of the batch as given: on :func:`load`'s normalized images, zero is
  the per-channel mean of the training images.

  Args:
    padding: pixels of zero padding on each side; the largest shift of a crop.
      0 turns cropping off.
    flip: whether to mirror images left-right with probability 1/2.
    image_shape: ``(height, width, channels)`` of flattened inputs; None (the
      default) for 4-D ``(batch, height, width, channels)`` inputs.

  Returns:
    A function ``augment(key, x) -> x`` of a PRNG key and a batch, returning
    the augmented batch, of the same shape and dtype.

  Raises:
    ValueError: for a negative or non-integer ``padding``, a non-boolean
      ``flip`` or a malformed ``image_shape``; ``augment`` raises it for a
      batch of the wrong shape.

  Examples:
    >>> import jax
    >>> import jax.numpy as jnp
    >>> from flood_jax.data import random_crop_flip
    >>> augment = random_crop_flip(padding=4)
    >>> x = jnp.ones((8, 32, 32, 3))
    >>> y = augment(jax.random.key(0), x)
    >>> y.shape, y.dtype
    ((8, 32, 32, 3), dtype('float32'))
    >>> flat = random_crop_flip(image_shape=(28, 28, 1))
    >>> flat(jax.random.key(1), jnp.ones((8, 784))).shape
    (8, 784)

  References:
    He, Zhang, Ren and Sun. Deep residual learning for image recognition.
    CVPR 2016, Sec. 4.2 (4-pixel padding, random 32x32 crops, horizontal
    flips on CIFAR-10). https://arxiv.org/abs/1512.03385
  """
  if not is_integer(padding) or padding < 0:
    raise ValueError(
      f"padding must be a non-negative integer (pixels per side, 0 for no"
      f" cropping), got {padding!r}."
    )
  padding = int(padding)
  flip = true_or_false("flip", flip)
  if image_shape is not None:
    shape = tuple(image_shape) if isinstance(image_shape, (tuple, list)) else ()
    if len(shape) != 3 or any(not is_integer(d) or d < 1 for d in shape):
      raise ValueError(
        f"image_shape must be (height, width, channels), three positive"
        f" integers, got {image_shape!r}."
      )
    image_shape = tuple(int(d) for d in shape)

  def augment(key: jax.Array, x: jax.Array) -> jax.Array:
    x = jnp.asarray(x)
    if image_shape is not None:
      size = int(np.prod(image_shape))
      if x.ndim != 2 or x.shape[1] != size:
        raise ValueError(
          f"expected a flattened batch (batch, {size}) for image_shape="
          f"{image_shape}, got shape {x.shape}; give image_shape=None for"
          " (batch, height, width, channels) batches."
        )
      return _crop_flip(key, x.reshape(len(x), *image_shape), padding, flip).reshape(x.shape)
    if x.ndim != 4:
      raise ValueError(
        f"expected a batch of images (batch, height, width, channels), got"
        f" shape {x.shape}; add a channel axis to grey images, or pass"
        " image_shape=(height, width, channels) for flattened ones."
      )
    return _crop_flip(key, x, padding, flip)

  return augment


def _crop_flip(key: jax.Array, x: jax.Array, padding: int, flip: bool) -> jax.Array:
  """Random crops (``padding`` > 0) and flips of ``(n, h, w, c)`` images."""
  n, h, w, c = x.shape
  crop_key, flip_key = jax.random.split(key)
  if padding:
    padded = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    offsets = jax.random.randint(crop_key, (n, 2), 0, 2 * padding + 1)
    x = jax.vmap(lambda image, o: jax.lax.dynamic_slice(image, (o[0], o[1], 0), (h, w, c)))(
      padded, offsets
    )
  if flip:
    mirror = jax.random.bernoulli(flip_key, 0.5, (n,))
    x = jnp.where(mirror[:, None, None, None], x[:, :, ::-1, :], x)
  return x
