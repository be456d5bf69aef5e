"""The names :func:`load` accepts, the builder behind each, and ``load`` itself."""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Callable
from typing import Any

from flood_jax._dataset import Dataset
from flood_jax.data import builtin
from flood_jax.data.catalog import IMAGE_SETS
from flood_jax.data.images import load_image_set

#: Names accepted by :func:`load`.
DATASETS: tuple[str, ...] = (
  "two_gaussians",
  "sinusoid",
  "spiral",
  "mnist1d",
  "digits",
  "diabetes",
  *IMAGE_SETS,
)


def load(name: str, **options: Any) -> Dataset:
  """Loads a data set by name.

  Options by data set (defaults in brackets):

  * ``two_gaussians``: ``n_train`` [100], ``n_val`` [100], ``n_test``
    [10000], ``dim`` [10], ``label_noise`` [0.0], ``seed`` [0]. Class 0 is
    ``N(0, I)``, class 1 is ``N(1, I)`` in ``dim`` dimensions; balanced.
  * ``sinusoid``: ``n_train``, ``n_val``, ``n_test``, ``label_noise``,
    ``seed`` as above. ``x`` uniform in the disk of radius 2; label 1 where
    ``1.5 * x1 + sin(1.5 * x2) > 0``.
  * ``spiral``: the same, plus ``noise`` [1.0], the standard deviation of the
    Gaussian noise added to each coordinate (the official code's default).
    Two interleaved spirals, balanced.
  * ``mnist1d``: ``n_val`` [1000], ``n_train`` [all the rest: 3000],
    ``label_noise``, ``seed``. 40 features, 10 classes, 1000 test examples.
  * ``digits``: ``val_fraction`` [0.2], ``test_fraction`` [0.2],
    ``label_noise``, ``seed``. 64 features in [0, 1], 10 classes.
  * ``diabetes``: ``val_fraction`` [0.2], ``test_fraction`` [0.2], ``seed``.
    442 patients, 10 features, a float32 target (disease progression after a
    year), features and target standardized with the training split's mean
    and standard deviation; a regression (``task=fj.Regression()``).
  * ``mnist``, ``fashion_mnist``, ``kmnist``, ``cifar10``, ``cifar100``,
    ``svhn``: ``n_val`` [10% of the training split from the Hub, 20% from
    ``data_dir``], ``n_train`` [the rest], ``n_test`` [all], ``flatten``
    [False], ``pixels`` [False: float32, scaled and standardized per channel;
    True: the pixels as uint8, a quarter of the memory on every device, to be
    scaled there by :class:`flood_jax.models.FromPixels`], ``label_noise``,
    ``seed``, ``data_dir`` [None; or a folder with
    the original files, :data:`LOCAL_FILES`: no network, no extra],
    ``cache_dir`` [Hugging Face's default], ``hf_path`` [None: download from
    the Hub; or a directory written by ``DatasetDict.save_to_disk``]. The Hub
    needs ``pip install "flood_jax[datasets]"`` and, the first time, a network.

  Args:
    name: one of :data:`DATASETS` (case and ``-``/``_`` are not significant).
    **options: the data set's options listed above; any other raises.

  Returns:
    A :class:`flood_jax.Dataset` with float32 inputs and int32 labels (float32
    targets for ``diabetes``).

  Raises:
    ValueError: unknown name, unknown option, an option out of range, or a
      missing or garbled file in ``data_dir``.
    ImportError: an image set was asked for from the Hub without the
      ``datasets`` extra.
    ConnectionError: an image set was asked for from the Hub with no network
      (the message names ``data_dir``, the offline way).

  Examples:
    >>> from flood_jax import data
    >>> ds = data.load("two_gaussians", label_noise=0.1, seed=0)
    >>> ds
    Dataset(name='two_gaussians', train=100, val=100, test=10000, input_shape=(10,), num_classes=2)
    >>> data.load("spiral", n_train=50).x_train.shape
    (50, 2)
  """
  key = None
  if isinstance(name, str):
    key = name.strip().lower().replace("-", "_")
  if key not in _BUILDERS:
    raise ValueError(f"unknown data set {name!r}; known data sets: {', '.join(DATASETS)}.")
  builder = _BUILDERS[key]
  accepted = _option_names(builder)
  unknown = [k for k in options if k not in accepted]
  if unknown:
    hints = [difflib.get_close_matches(k, accepted, n=1) for k in unknown]
    hint = "".join(
      f" (did you mean {h[0]!r} for {k!r}?)" for k, h in zip(unknown, hints, strict=False) if h
    )
    raise ValueError(
      f"unknown option{'s' if len(unknown) > 1 else ''}"
      f" {', '.join(map(repr, unknown))} for data set {key!r}{hint}; it"
      f" takes: {', '.join(accepted)}."
    )
  return builder(**options)


def _option_names(builder: Callable[..., Dataset]) -> list[str]:
  params = inspect.signature(builder).parameters.values()
  return [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]


_BUILDERS: dict[str, Callable[..., Dataset]] = {
  "two_gaussians": builtin.two_gaussians,
  "sinusoid": builtin.sinusoid,
  "spiral": builtin.spiral,
  "mnist1d": builtin.mnist1d,
  "digits": builtin.digits,
  "diabetes": builtin.diabetes,
  **{name: functools.partial(load_image_set, name) for name in IMAGE_SETS},
}
