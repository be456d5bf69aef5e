"""The data sets of :mod:`flood_jax.data` as streams: ``fj.data.stream(name, ...)``.

:func:`stream` loads a set as :func:`~flood_jax.data.load` does and gives it to
:class:`flood_jax.Stream` as a grain source (its training examples as a ``grain.MapDataset``,
shuffled each epoch and batched by ``fj.sweep``'s ``batch_size``; its validation and test sets
in batches), so the built-in sets and the original-file loaders feed a streamed sweep or a
:class:`flood_jax.Population` as they feed the in-memory one.
"""

from __future__ import annotations

from typing import Any

from flood_jax._sweep.stream import Stream
from flood_jax.data.registry import load


def stream(name: str, *, seed: int = 0, eval_batch_size: int = 2048, **load_kwargs: Any) -> Stream:
  """The data set ``name`` as a :class:`flood_jax.Stream` over grain sources.

  Args:
    name: a name :func:`flood_jax.data.load` knows (``"mnist1d"``, ``"mnist"``, ...).
    seed: the seed of the epochs' shuffles.
    eval_batch_size: examples per validation and test batch.
    **load_kwargs: :func:`flood_jax.data.load`'s arguments (``data_dir=``, ``label_noise=``,
      ``pixels=``, ...).

  Needs grain (``pip install "flood_jax[streaming]"``).

  Examples:
    >>> import flood_jax as fj
    >>> stream = fj.data.stream("two_gaussians", n_train=100, n_val=50, n_test=50, dim=2)
    >>> stream.bind(batch_size=20), stream.input_spec.shapes
    (20, ((2,),))
  """
  return Stream.from_dataset(load(name, **load_kwargs), seed=seed, eval_batch_size=eval_batch_size)
