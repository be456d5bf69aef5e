"""Data sets for flooding experiments, returned as :class:`flood_jax.Dataset`.

One entry point, :func:`load`, with the names in :data:`DATASETS`:

* Built in, offline, generated in a second or less:

  - ``two_gaussians``, ``sinusoid``, ``spiral``: the synthetic binary data sets
    of the flooding paper (Ishida et al., 2020, Sec. 4.1), generated as in the
    official code (``takashiishida/flooding``, folder ``synthetic/``).
  - ``mnist1d``: MNIST-1D (Greydanus, 2020), built locally by the ``mnist1d``
    package (never downloaded).
  - ``digits``: scikit-learn's 8x8 hand-written digits (ships with sklearn).
  - ``diabetes``: scikit-learn's diabetes regression set (ships with sklearn):
    10 features, a float target; for ``fj.Regression()``.

* Benchmark image sets, through the optional extra
  ``pip install "flood_jax[datasets]"``: ``mnist``, ``fashion_mnist``,
  ``kmnist``, ``cifar10``, ``cifar100``, ``svhn``. They are read with Hugging
  Face ``datasets`` rather than TensorFlow Datasets because ``datasets`` does
  not pull in TensorFlow (a multi-GB dependency whose pinned versions conflict
  with JAX's), hands back NumPy-convertible data directly, and caches in a
  standard place (``~/.cache/huggingface``, or ``cache_dir``). They need a
  network connection the first time; later loads read the local cache.

* The same image sets from their original distribution files in a local
  folder, with no network and no extra: ``load(name, data_dir=DIR)`` reads
  the IDX files of the MNIST family (gzipped or not; KMNIST's ``.npz`` too),
  the CIFAR python batches and the SVHN ``.mat`` files (see
  :data:`LOCAL_FILES`), with the paper's split: 80:20 of the original training
  set, the published test set.

Every set has a train, a validation (for choosing the flood level) and a test
split. ``label_noise=r`` replaces exactly ``round(r * n)`` labels of the
training split and, separately, of the validation split, chosen at random,
with a different class drawn uniformly (for two classes: the other one). The
test split is always clean. All randomness comes from
``numpy.random.default_rng(seed)``; NumPy's and Python's global random states
are left as they were.

The package's modules, by what they hold: ``registry`` (:data:`DATASETS`,
:func:`load`), ``builtin`` (the offline sets), ``catalog`` (:class:`ImageSpec`,
:data:`IMAGE_SETS`, :data:`LOCAL_FILES`), ``hub`` (Hugging Face), ``images``
(the image sets' builder, the checks common to every original file), one module
per original format (``idx``, ``cifar``, ``svhn``, with ``files`` for what they
share), ``splits`` (splits and label noise), ``augment``
(:func:`random_crop_flip`) and ``streams`` (:func:`stream`: a set as an
:class:`flood_jax.Stream` over grain sources). Import the names from
``flood_jax.data`` itself.
"""

from flood_jax.data import catalog, registry
from flood_jax.data.augment import random_crop_flip
from flood_jax.data.catalog import ImageSpec
from flood_jax.data.registry import load
from flood_jax.data.streams import stream

# Assigned here (the same objects) so that the API reference finds their comments.

#: Names accepted by :func:`load`.
DATASETS = registry.DATASETS

#: The benchmark image sets: Hub location, columns, classes, normalization.
IMAGE_SETS = catalog.IMAGE_SETS

#: The original files :func:`load` reads with ``data_dir=DIR``, and where to get them.
#: ``files`` are looked for in ``DIR`` and in the sub-folders ``folders`` (the
#: layouts the official archives and torchvision leave on disk).
LOCAL_FILES = catalog.LOCAL_FILES

__all__ = [
  "DATASETS",
  "IMAGE_SETS",
  "LOCAL_FILES",
  "ImageSpec",
  "load",
  "random_crop_flip",
  "stream",
]
