"""flood_jax.data: built-in sets, the Hugging Face loader on local data,
errors."""

import os
import pickle
import random
import sys

import numpy as np
import original_files as of  # tests/original_files.py: tiny files in the original formats
import pytest

import flood_jax as fj
from flood_jax import data

SYNTHETIC = ("two_gaussians", "sinusoid", "spiral")
DIMS = {"two_gaussians": 10, "sinusoid": 2, "spiral": 2}


def _assert_same(a: fj.Dataset, b: fj.Dataset) -> None:
  for field in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
    np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


def _check_types(ds: fj.Dataset) -> None:
  for split in ("train", "val", "test"):
    assert getattr(ds, f"x_{split}").dtype == np.float32
    assert getattr(ds, f"y_{split}").dtype == np.int32


def _numpy_state_equal(a, b) -> bool:
  return a[0] == b[0] and np.array_equal(a[1], b[1]) and a[2:] == b[2:]


def test_names():
  assert data.DATASETS == (
    "two_gaussians",
    "sinusoid",
    "spiral",
    "mnist1d",
    "digits",
    "diabetes",
    "mnist",
    "fashion_mnist",
    "kmnist",
    "cifar10",
    "cifar100",
    "svhn",
  )
  assert set(data.IMAGE_SETS) == set(data.DATASETS[6:])
  for spec in data.IMAGE_SETS.values():
    assert len(spec.mean) == len(spec.std) in (1, 3)


# --------------------------------------------------------------------------
# Synthetic sets.


@pytest.mark.parametrize("name", SYNTHETIC)
def test_synthetic_shapes_dtypes_balance(name):
  before = np.random.get_state()
  ds = data.load(name)
  assert _numpy_state_equal(before, np.random.get_state())
  assert ds.name == name and ds.num_classes == 2
  assert ds.x_train.shape == (100, DIMS[name])
  assert ds.x_val.shape == (100, DIMS[name])
  assert ds.x_test.shape == (10_000, DIMS[name])
  _check_types(ds)
  for y in (ds.y_train, ds.y_val, ds.y_test):
    assert set(np.unique(y)) == {0, 1}
    if name == "sinusoid":  # balanced in expectation only
      assert 0.4 < y.mean() < 0.6
    else:  # balanced by construction
      assert y.sum() == len(y) // 2


@pytest.mark.parametrize("name", SYNTHETIC)
def test_synthetic_size_options(name):
  ds = data.load(name, n_train=7, n_val=3, n_test=5)
  assert (ds.num_train, len(ds.y_val), len(ds.y_test)) == (7, 3, 5)
  if name != "sinusoid":
    assert ds.y_train.sum() == 3 and ds.y_val.sum() == 1


@pytest.mark.parametrize("name", SYNTHETIC)
def test_synthetic_seeds(name):
  _assert_same(data.load(name, seed=3), data.load(name, seed=3))
  a, b = data.load(name, seed=3), data.load(name, seed=4)
  assert not np.array_equal(a.x_train, b.x_train)
  assert not np.array_equal(a.x_test, b.x_test)
  # The test set does not depend on the training set's size.
  np.testing.assert_array_equal(data.load(name, seed=3, n_train=10).x_test, a.x_test)


@pytest.mark.parametrize("name", SYNTHETIC)
@pytest.mark.parametrize("rate", [0.1, 0.25, 0.37])
def test_synthetic_label_noise_is_exact(name, rate):
  clean = data.load(name, seed=1, n_train=200, n_val=60, n_test=500)
  noisy = data.load(name, seed=1, n_train=200, n_val=60, n_test=500, label_noise=rate)
  for split, n in (("train", 200), ("val", 60)):
    np.testing.assert_array_equal(getattr(noisy, f"x_{split}"), getattr(clean, f"x_{split}"))
    flipped = getattr(noisy, f"y_{split}") != getattr(clean, f"y_{split}")
    assert flipped.sum() == round(rate * n)
  np.testing.assert_array_equal(noisy.x_test, clean.x_test)
  np.testing.assert_array_equal(noisy.y_test, clean.y_test)


def _sinusoid_rule(x):
  return (1.5 * x[:, 0] + np.sin(1.5 * x[:, 1]) > 0).astype(np.int32)


def test_sinusoid_follows_the_rule_and_fills_the_disk():
  ds = data.load("sinusoid", seed=2)
  for x, y in ((ds.x_train, ds.y_train), (ds.x_val, ds.y_val), (ds.x_test, ds.y_test)):
    np.testing.assert_array_equal(y, _sinusoid_rule(x))
  radius = np.linalg.norm(ds.x_test, axis=1)
  assert radius.max() <= 2.0 + 1e-6
  # Uniform in the disk: a fraction (r/2)^2 of the points lies within r.
  for r in (0.5, 1.0, 1.5):
    assert abs(np.mean(radius < r) - (r / 2) ** 2) < 0.02
  noisy = data.load("sinusoid", seed=2, label_noise=0.2)
  assert np.sum(noisy.y_train != _sinusoid_rule(noisy.x_train)) == 20
  np.testing.assert_array_equal(noisy.y_test, _sinusoid_rule(noisy.x_test))


def test_two_gaussians_means_and_dim():
  ds = data.load("two_gaussians", seed=5)
  x, y = ds.x_test, ds.y_test
  np.testing.assert_allclose(x[y == 0].mean(0), 0.0, atol=0.06)
  np.testing.assert_allclose(x[y == 1].mean(0), 1.0, atol=0.06)
  np.testing.assert_allclose(x[y == 0].std(0), 1.0, atol=0.05)
  assert data.load("two_gaussians", dim=3).input_shape == (3,)


def test_spiral_arms():
  ds = data.load("spiral", noise=0.0, n_test=400)
  x, y = ds.x_test, ds.y_test
  radius, angle = np.linalg.norm(x, axis=1), np.arctan2(x[:, 1], x[:, 0])
  # Class 1 at radius t and angle t; class 0 at radius t + pi and angle t.
  np.testing.assert_allclose(np.cos(angle[y == 1] - radius[y == 1]), 1.0, atol=1e-5)
  np.testing.assert_allclose(np.cos(angle[y == 0] - radius[y == 0]), -1.0, atol=1e-5)
  assert radius.max() == pytest.approx(5 * np.pi, rel=1e-5)
  noisy = data.load("spiral", noise=1.0, n_test=400)
  assert not np.allclose(noisy.x_test, x)


# --------------------------------------------------------------------------
# MNIST-1D.


@pytest.fixture(scope="module")
def mnist1d():
  return data.load("mnist1d", seed=0)


def test_mnist1d_shapes_and_standardization(mnist1d):
  ds = mnist1d
  assert ds.name == "mnist1d" and ds.num_classes == 10
  assert ds.x_train.shape == (3000, 40)
  assert ds.x_val.shape == (1000, 40)
  assert ds.x_test.shape == (1000, 40)
  _check_types(ds)
  assert abs(float(ds.x_train.mean())) < 1e-4
  assert abs(float(ds.x_train.std()) - 1.0) < 1e-4
  for y in (ds.y_train, ds.y_val, ds.y_test):
    counts = np.bincount(y, minlength=10)
    assert counts.min() > 0.7 * len(y) / 10


def test_mnist1d_is_deterministic_and_restores_global_random_state(mnist1d):
  np.random.seed(123)
  random.seed(456)
  numpy_state, python_state = np.random.get_state(), random.getstate()
  again = data.load("mnist1d", seed=0)
  assert _numpy_state_equal(numpy_state, np.random.get_state())
  assert random.getstate() == python_state
  _assert_same(again, mnist1d)


def test_mnist1d_seed_and_sizes(mnist1d):
  other = data.load("mnist1d", seed=1, n_val=500, n_train=200)
  assert (other.num_train, len(other.y_val), len(other.y_test)) == (200, 500, 1000)
  # Another seed draws another validation split; the test inputs are the
  # same examples (standardized with the other training split's statistics).
  assert not np.allclose(other.x_train[:200], mnist1d.x_train[:200])
  np.testing.assert_array_equal(other.y_test, mnist1d.y_test)


def test_mnist1d_label_noise_is_exact(mnist1d):
  noisy = data.load("mnist1d", seed=0, label_noise=0.2)
  np.testing.assert_array_equal(noisy.x_train, mnist1d.x_train)
  assert np.sum(noisy.y_train != mnist1d.y_train) == 600
  assert np.sum(noisy.y_val != mnist1d.y_val) == 200
  np.testing.assert_array_equal(noisy.y_test, mnist1d.y_test)
  assert noisy.y_train.min() >= 0 and noisy.y_train.max() <= 9


# --------------------------------------------------------------------------
# scikit-learn's digits.


def test_digits():
  ds = data.load("digits")
  assert ds.name == "digits" and ds.num_classes == 10
  assert (ds.num_train, len(ds.y_val), len(ds.y_test)) == (1079, 359, 359)
  assert ds.input_shape == (64,)
  _check_types(ds)
  assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0
  for y in (ds.y_train, ds.y_val, ds.y_test):
    assert len(np.unique(y)) == 10
  _assert_same(ds, data.load("digits", seed=0))
  assert not np.array_equal(ds.y_train, data.load("digits", seed=1).y_train)
  noisy = data.load("digits", label_noise=0.3)
  np.testing.assert_array_equal(noisy.x_train, ds.x_train)
  assert np.sum(noisy.y_train != ds.y_train) == round(0.3 * 1079)
  assert np.sum(noisy.y_val != ds.y_val) == round(0.3 * 359)
  np.testing.assert_array_equal(noisy.y_test, ds.y_test)
  small = data.load("digits", val_fraction=0.1, test_fraction=0.5)
  assert (small.num_train, len(small.y_val), len(small.y_test)) == (719, 180, 898)


# --------------------------------------------------------------------------
# Benchmark image sets, read through the real code path from a tiny local
# DatasetDict in each set's Hub format (saved with save_to_disk).

N_TRAIN, N_TEST, STEP = 40, 20, 5  # image k is constant: pixel k * STEP (+ c)


def _save(path, image_column, label_column, shape, splits=("train", "test")):
  datasets = pytest.importorskip("datasets")
  pil = pytest.importorskip("PIL.Image")

  def split(n):
    images = []
    for k in range(n):
      pixels = np.full(shape, k * STEP, np.uint8)
      if len(shape) == 3:
        pixels = pixels + np.arange(shape[2], dtype=np.uint8)  # per channel
      images.append(pil.fromarray(pixels))
    features = datasets.Features(
      {
        image_column: datasets.Image(),
        label_column: datasets.ClassLabel(num_classes=10),
      }
    )
    return datasets.Dataset.from_dict(
      {image_column: images, label_column: [k % 10 for k in range(n)]}, features=features
    )

  sizes = {"train": N_TRAIN, "test": N_TEST}
  datasets.DatasetDict({s: split(sizes[s]) for s in splits}).save_to_disk(str(path))
  return path


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory):
  return _save(tmp_path_factory.mktemp("mnist"), "image", "label", (28, 28))


@pytest.fixture(scope="module")
def cifar10_dir(tmp_path_factory):
  return _save(tmp_path_factory.mktemp("cifar10"), "img", "label", (32, 32, 3))


def _indices(x, spec):
  """Recovers each example's index k from its normalized constant pixels."""
  x = x.reshape(len(x), -1, spec.channels)
  pixels = (x * np.float32(spec.std) + np.float32(spec.mean)) * 255.0
  expected = np.arange(spec.channels)  # channel c holds k * STEP + c
  k = np.rint(pixels[:, 0, 0]).astype(int) // STEP
  np.testing.assert_allclose(
    pixels, np.broadcast_to(k[:, None, None] * STEP + expected, pixels.shape), atol=1e-3
  )
  return k


def test_hf_mnist_loader(mnist_dir):
  spec = data.IMAGE_SETS["mnist"]
  ds = data.load("mnist", hf_path=mnist_dir)
  assert ds.name == "mnist" and ds.num_classes == 10
  # 10% of the training split is held out for validation by default.
  assert ds.x_train.shape == (36, 28, 28, 1)
  assert ds.x_val.shape == (4, 28, 28, 1)
  assert ds.x_test.shape == (20, 28, 28, 1)
  _check_types(ds)
  train, val, test = (_indices(x, spec) for x in (ds.x_train, ds.x_val, ds.x_test))
  assert sorted(np.concatenate([train, val])) == list(range(N_TRAIN))
  np.testing.assert_array_equal(test, np.arange(N_TEST))
  for k, y in ((train, ds.y_train), (val, ds.y_val), (test, ds.y_test)):
    np.testing.assert_array_equal(y, k % 10)
  # Normalization: pixel 0 maps to -mean/std.
  assert ds.x_test[0].max() == pytest.approx(-0.1307 / 0.3081, rel=1e-5)

  flat = data.load("mnist", hf_path=mnist_dir, flatten=True)
  assert flat.x_train.shape == (36, 784) and flat.x_test.shape == (20, 784)
  np.testing.assert_array_equal(flat.x_train, ds.x_train.reshape(36, -1))


def test_hf_options_seeds_and_noise(mnist_dir):
  spec = data.IMAGE_SETS["mnist"]
  ds = data.load("mnist", hf_path=str(mnist_dir), n_val=10, n_train=5, n_test=7, seed=3)
  assert (ds.num_train, len(ds.y_val), len(ds.y_test)) == (5, 10, 7)
  _assert_same(ds, data.load("mnist", hf_path=mnist_dir, n_val=10, n_train=5, n_test=7, seed=3))
  train, val = _indices(ds.x_train, spec), _indices(ds.x_val, spec)
  assert not set(train) & set(val)
  assert len(set(_indices(ds.x_test, spec))) == 7
  other = data.load("mnist", hf_path=mnist_dir, n_val=10, seed=4)
  assert set(_indices(other.x_val, spec)) != set(val)

  clean = data.load("mnist", hf_path=mnist_dir, n_val=8)
  noisy = data.load("mnist", hf_path=mnist_dir, n_val=8, label_noise=0.25)
  np.testing.assert_array_equal(noisy.x_train, clean.x_train)
  assert np.sum(noisy.y_train != clean.y_train) == 8
  assert np.sum(noisy.y_val != clean.y_val) == 2
  np.testing.assert_array_equal(noisy.y_test, clean.y_test)


def test_hf_cifar10_loader(cifar10_dir):
  spec = data.IMAGE_SETS["cifar10"]
  ds = data.load("cifar10", hf_path=cifar10_dir, n_val=8)
  assert ds.x_train.shape == (32, 32, 32, 3)
  assert ds.x_val.shape == (8, 32, 32, 3)
  assert ds.x_test.shape == (20, 32, 32, 3)
  _check_types(ds)
  train = _indices(ds.x_train, spec)  # checks each channel's normalization
  np.testing.assert_array_equal(ds.y_train, train % 10)
  np.testing.assert_allclose(
    ds.x_test[0, 0, 0], (np.arange(3) / 255.0 - np.array(spec.mean)) / np.array(spec.std), rtol=1e-5
  )
  assert data.load("cifar10", hf_path=cifar10_dir, flatten=True).input_shape == (32 * 32 * 3,)


def test_hf_format_errors(cifar10_dir, tmp_path):
  # cifar100's labels are in "fine_label", which this copy lacks.
  with pytest.raises(ValueError, match="no column 'fine_label'"):
    data.load("cifar100", hf_path=cifar10_dir)
  only_train = _save(tmp_path / "only_train", "image", "label", (28, 28), splits=("train",))
  with pytest.raises(ValueError, match="no test split"):
    data.load("mnist", hf_path=only_train)


@pytest.mark.parametrize(
  "options,match",
  [
    (dict(n_val=39), "n_val=39 is too large"),
    (dict(n_val=30, n_train=11), "n_train=11 is more than the 10"),
    (dict(n_test=21), "n_test=21 is more than the 20"),
    (dict(n_train=1), "n_train must be at least 2"),
    (dict(flatten="yes"), "flatten must be True or False"),
    (dict(cache_dir="/tmp/x"), "not both"),
  ],
)
def test_hf_option_errors(mnist_dir, options, match):
  with pytest.raises(ValueError, match=match) as info:
    data.load("mnist", hf_path=mnist_dir, **options)
  assert "\n" not in str(info.value)


def test_missing_extra_message(monkeypatch):
  monkeypatch.setitem(sys.modules, "datasets", None)
  with pytest.raises(ImportError) as info:
    data.load("cifar10")
  assert str(info.value) == (
    "loading 'cifar10' needs the optional extra: pip install \"flood_jax[datasets]\""
  )
  # Option typos are reported before the import.
  with pytest.raises(ValueError, match="n_trian"):
    data.load("cifar10", n_trian=5)


# --------------------------------------------------------------------------
# Errors: one clear line each.


@pytest.mark.parametrize(
  "name,options,match",
  [
    (
      "mnist2",
      {},
      "unknown data set 'mnist2'; known data sets: two_gaussians,"
      " sinusoid, spiral, mnist1d, digits, diabetes, mnist, fashion_mnist, kmnist,"
      " cifar10, cifar100, svhn",
    ),
    (3, {}, "unknown data set 3"),
    (
      "spiral",
      dict(n_trian=5),
      "unknown option 'n_trian' for data set"
      " 'spiral' \\(did you mean 'n_train' for 'n_trian'\\?\\); it takes:"
      " n_train, n_val, n_test, noise, label_noise, seed",
    ),
    (
      "digits",
      dict(foo=1, bar=2),
      "unknown options 'foo', 'bar'.*takes: val_fraction, test_fraction, label_noise, seed",
    ),
    (
      "mnist1d",
      dict(n_test=5),
      "unknown option 'n_test'.*takes: n_val, n_train, label_noise, seed",
    ),
    ("two_gaussians", dict(n_train=1), "n_train must be at least 2, got 1"),
    ("two_gaussians", dict(n_train=-5), "n_train must be at least 2, got -5"),
    ("sinusoid", dict(n_train=2.5), "n_train must be an integer, got 2.5"),
    ("sinusoid", dict(n_val=True), "n_val must be an integer, got True"),
    ("spiral", dict(n_val=0), "n_val must be at least 1"),
    ("spiral", dict(n_test=0), "n_test must be at least 1"),
    ("spiral", dict(noise=-1.0), "noise must be in"),
    ("two_gaussians", dict(dim=0), "dim must be at least 1"),
    ("sinusoid", dict(label_noise=1.0), "label_noise must be in \\[0, 1\\)"),
    ("sinusoid", dict(label_noise=-0.1), "label_noise must be in \\[0, 1\\)"),
    ("sinusoid", dict(label_noise="0.1"), "label_noise must be a number"),
    ("spiral", dict(seed=-1), "seed must be a non-negative integer"),
    ("spiral", dict(seed=1.5), "seed must be a non-negative integer"),
    ("mnist1d", dict(n_val=4000), "n_val=4000 is too large"),
    ("mnist1d", dict(n_train=3500), "n_train=3500 is more than the 3000"),
    ("mnist1d", dict(label_noise=2), "label_noise must be in"),
    ("digits", dict(val_fraction=0.0), "val_fraction must be in \\(0.0, 1.0\\)"),
    ("digits", dict(test_fraction=1.0), "test_fraction must be in"),
    ("digits", dict(val_fraction=0.6, test_fraction=0.5), "leave -"),
    ("digits", dict(seed=-3), "seed must be a non-negative integer"),
    ("cifar10", dict(label_noise=1.5), "label_noise must be in"),
    ("svhn", dict(n_val=0), "n_val must be at least 1"),
  ],
)
def test_errors(name, options, match):
  with pytest.raises(ValueError, match=match) as info:
    data.load(name, **options)
  assert "\n" not in str(info.value)


def test_name_is_forgiving_about_case_and_dashes():
  ds = data.load("Two-Gaussians", n_test=10)
  assert ds.name == "two_gaussians"


# random_crop_flip: the on-device image augmentation.


def _images_batch(n=64, h=8, w=6, c=3, dtype=np.float32, seed=0):
  rng = np.random.default_rng(seed)
  return (rng.integers(1, 250, size=(n, h, w, c))).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
def test_random_crop_flip_keeps_shape_and_dtype(dtype):
  import jax

  x = _images_batch(dtype=dtype)
  y = data.random_crop_flip(padding=2)(jax.random.key(0), x)
  assert y.shape == x.shape and y.dtype == x.dtype


def test_random_crop_flip_identity():
  import jax

  x = _images_batch()
  y = data.random_crop_flip(padding=0, flip=False)(jax.random.key(3), x)
  np.testing.assert_array_equal(np.asarray(y), x)


def test_random_crop_flip_flip_only():
  import jax

  x = _images_batch()
  y = np.asarray(data.random_crop_flip(padding=0)(jax.random.key(1), x))
  same = np.all(y == x, axis=(1, 2, 3))
  mirrored = np.all(y == x[:, :, ::-1, :], axis=(1, 2, 3))
  assert np.all(same | mirrored)
  assert same.any() and mirrored.any()


def test_random_crop_flip_crop_only_is_a_window_of_the_padded_image():
  import jax

  p, (h, w) = 2, (8, 6)
  x = _images_batch(h=h, w=w)
  y = np.asarray(data.random_crop_flip(padding=p, flip=False)(jax.random.key(2), x))
  padded = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
  offsets = set()
  for i in range(len(x)):
    hits = [
      (dy, dx)
      for dy in range(2 * p + 1)
      for dx in range(2 * p + 1)
      if np.array_equal(y[i], padded[i, dy : dy + h, dx : dx + w])
    ]
    assert hits, f"image {i} is no window of its padded input"
    offsets.update(hits)
  assert len(offsets) > 1  # offsets vary between images


def test_random_crop_flip_keys():
  import jax

  x = _images_batch()
  augment = data.random_crop_flip()
  a = np.asarray(augment(jax.random.key(0), x))
  np.testing.assert_array_equal(a, np.asarray(augment(jax.random.key(0), x)))
  assert not np.array_equal(a, np.asarray(augment(jax.random.key(1), x)))
  # Raw uint32 keys work too.
  assert augment(jax.random.PRNGKey(0), x).shape == x.shape


def test_random_crop_flip_under_jit_and_vmap():
  import jax

  x = _images_batch()
  augment = data.random_crop_flip(padding=2)
  keys = jax.random.split(jax.random.key(0), 3)
  y = np.asarray(jax.jit(jax.vmap(augment, in_axes=(0, None)))(keys, x))
  assert y.shape == (3, *x.shape) and y.dtype == x.dtype
  for k in range(3):  # each model's batch equals the unbatched call
    np.testing.assert_array_equal(y[k], np.asarray(augment(keys[k], x)))
  assert not np.array_equal(y[0], y[1])


def test_random_crop_flip_flattened():
  import jax

  x = _images_batch()
  flat = x.reshape(len(x), -1)
  key = jax.random.key(4)
  y = data.random_crop_flip(padding=2, image_shape=(8, 6, 3))(key, flat)
  np.testing.assert_array_equal(
    np.asarray(y), np.asarray(data.random_crop_flip(padding=2)(key, x)).reshape(64, -1)
  )


@pytest.mark.parametrize(
  "options, match",
  [
    (dict(padding=-1), "padding must be a non-negative integer"),
    (dict(padding=1.5), "padding must be a non-negative integer"),
    (dict(padding=True), "padding must be a non-negative integer"),
    (dict(flip=1), "flip must be True or False"),
    (dict(image_shape=(4, 4)), "image_shape must be \\(height, width"),
    (dict(image_shape=(4, 0, 1)), "image_shape must be \\(height, width"),
  ],
)
def test_random_crop_flip_bad_arguments(options, match):
  with pytest.raises(ValueError, match=match) as info:
    data.random_crop_flip(**options)
  assert "\n" not in str(info.value)


@pytest.mark.parametrize(
  "options, shape, match",
  [
    ({}, (4, 8, 8), "expected a batch of images \\(batch, height, width"),
    ({}, (4, 192), "pass image_shape="),
    (dict(image_shape=(8, 8, 3)), (4, 8, 8, 3), "expected a flattened batch"),
    (dict(image_shape=(8, 8, 3)), (4, 100), "expected a flattened batch"),
  ],
)
def test_random_crop_flip_bad_batches(options, shape, match):
  import jax

  augment = data.random_crop_flip(**options)
  with pytest.raises(ValueError, match=match) as info:
    augment(jax.random.key(0), np.zeros(shape, np.float32))
  assert "\n" not in str(info.value)


# --------------------------------------------------------------------------
# The image sets from their original files: data.load(name, data_dir=DIR),
# on tiny files written in each format (tests/original_files.py).
N_ORIG_TRAIN, N_ORIG_TEST = 50, 20


def _write(name, root, layout):
  """Writes ``name``'s tiny original files under ``root`` in ``layout``; returns data_dir."""
  root = str(root)
  if layout == "idx_gz":
    return of.write_mnist(root, N_ORIG_TRAIN, N_ORIG_TEST, gz=True)
  if layout == "idx_raw":
    return of.write_mnist(root, N_ORIG_TRAIN, N_ORIG_TEST, gz=False)
  if layout == "torchvision":  # DIR/FashionMNIST/raw/*.gz, as torchvision leaves it
    of.write_mnist(f"{root}/FashionMNIST/raw", N_ORIG_TRAIN, N_ORIG_TEST)
    return root
  if layout == "npz":
    return of.write_kmnist_npz(root, N_ORIG_TRAIN, N_ORIG_TEST)
  if layout == "cifar10":  # the parent of cifar-10-batches-py/
    return of.write_cifar10(root, N_ORIG_TRAIN // 5, N_ORIG_TEST)
  if layout == "cifar10_inner":  # the folder holding the batches
    return of.write_cifar10(root, N_ORIG_TRAIN // 5, N_ORIG_TEST) + "/cifar-10-batches-py"
  if layout == "cifar100":
    return of.write_cifar100(root, N_ORIG_TRAIN, N_ORIG_TEST)
  assert layout == "svhn"
  return of.write_svhn(root, N_ORIG_TRAIN, N_ORIG_TEST)


ORIGINAL_FORMATS = [
  ("mnist", "idx_gz"),
  ("mnist", "idx_raw"),
  ("fashion_mnist", "torchvision"),
  ("kmnist", "idx_gz"),
  ("kmnist", "npz"),
  ("cifar10", "cifar10"),
  ("cifar10", "cifar10_inner"),
  ("cifar100", "cifar100"),
  ("svhn", "svhn"),
]


def _orig_indices(ds_x, name):
  spec = data.IMAGE_SETS[name]
  shape = (28, 28) if spec.channels == 1 else (32, 32, 3)
  return of.index_of(ds_x, spec.mean[0], spec.std[0], shape)


@pytest.mark.parametrize("name,layout", ORIGINAL_FORMATS)
def test_original_files_load_with_the_papers_split(name, layout, tmp_path):
  spec = data.IMAGE_SETS[name]
  data_dir = _write(name, tmp_path, layout)
  ds = data.load(name, data_dir=data_dir)
  assert ds.name == name and ds.num_classes == spec.num_classes
  # The paper's split: 80:20 of the original training set; the test set whole.
  assert (ds.num_train, len(ds.y_val), len(ds.y_test)) == (40, 10, 20)
  shape = (28, 28, 1) if spec.channels == 1 else (32, 32, 3)
  assert ds.input_shape == shape
  _check_types(ds)
  train, val, test = (_orig_indices(x, name) for x in (ds.x_train, ds.x_val, ds.x_test))
  assert sorted(np.concatenate([train, val])) == list(range(N_ORIG_TRAIN))
  np.testing.assert_array_equal(test, np.arange(N_ORIG_TEST))
  # Each image kept its own label (cifar100: k % 100; the others k % 10, SVHN's
  # 10 read as the digit 0).
  classes = 100 if name == "cifar100" else 10
  for k, y in ((train, ds.y_train), (val, ds.y_val), (test, ds.y_test)):
    np.testing.assert_array_equal(y, k % classes)
  # The pixels are normalized as the Hub loader does: (p / 255 - mean) / std.
  raw = of.images(N_ORIG_TEST, shape[:2] if spec.channels == 1 else shape, seed=1)
  expected = (raw.reshape(N_ORIG_TEST, *shape) / 255.0 - np.asarray(spec.mean)) / np.asarray(
    spec.std
  )
  np.testing.assert_allclose(ds.x_test, expected, rtol=1e-5, atol=1e-5)
  flat = data.load(name, data_dir=data_dir, flatten=True)
  assert flat.input_shape == (int(np.prod(shape)),)
  np.testing.assert_array_equal(flat.x_train, ds.x_train.reshape(40, -1))


def test_original_files_options_seeds_and_noise(tmp_path):
  data_dir = _write("mnist", tmp_path, "idx_gz")
  ds = data.load("mnist", data_dir=data_dir, n_val=10, n_train=5, n_test=7, seed=3)
  assert (ds.num_train, len(ds.y_val), len(ds.y_test)) == (5, 10, 7)
  _assert_same(ds, data.load("mnist", data_dir=data_dir, n_val=10, n_train=5, n_test=7, seed=3))
  train, val = _orig_indices(ds.x_train, "mnist"), _orig_indices(ds.x_val, "mnist")
  assert not set(train) & set(val)
  other = data.load("mnist", data_dir=data_dir, n_val=10, n_train=5, n_test=7, seed=4)
  assert not np.array_equal(_orig_indices(other.x_val, "mnist"), val)
  clean = data.load("mnist", data_dir=data_dir)
  noisy = data.load("mnist", data_dir=data_dir, label_noise=0.25)
  np.testing.assert_array_equal(noisy.x_train, clean.x_train)
  assert np.sum(noisy.y_train != clean.y_train) == round(0.25 * 40)
  assert np.sum(noisy.y_val != clean.y_val) == round(0.25 * 10)
  np.testing.assert_array_equal(noisy.y_test, clean.y_test)  # the test set stays clean


def test_original_files_path_may_use_tilde(tmp_path, monkeypatch):
  monkeypatch.setenv("HOME", str(tmp_path))
  _write("svhn", tmp_path / "svhn", "svhn")
  assert data.load("svhn", data_dir="~/svhn").num_train == 40


def _garble(path, content=b"not the format at all"):
  with open(path, "wb") as f:
    f.write(content)


@pytest.mark.parametrize(
  "name,layout,damage,match",
  [
    ("mnist", "idx_gz", "t10k-labels-idx1-ubyte.gz", "no t10k-labels-idx1-ubyte.gz or"),
    ("mnist", "idx_gz", "train-images-idx3-ubyte.gz:garble", "BadGzipFile"),
    ("mnist", "idx_raw", "train-images-idx3-ubyte:garble", "no IDX header"),
    ("mnist", "idx_raw", "train-labels-idx1-ubyte:truncate", "bytes of data where the header"),
    ("kmnist", "npz", "kmnist-test-imgs.npz", "no train-images-idx3-ubyte.gz or"),
    ("cifar10", "cifar10", "cifar-10-batches-py/data_batch_3", "no data_batch_3"),
    ("cifar10", "cifar10", "cifar-10-batches-py/test_batch:garble", "not a CIFAR python batch"),
    ("cifar100", "cifar100", "cifar-100-python/test", "no test in data_dir"),
    ("svhn", "svhn", "train_32x32.mat:garble", "not an SVHN .mat file"),
    ("svhn", "svhn", "test_32x32.mat", "no test_32x32.mat"),
  ],
)
def test_original_files_missing_or_garbled(name, layout, damage, match, tmp_path):
  data_dir = _write(name, tmp_path, layout)
  file, _, how = damage.partition(":")
  path = os.path.join(data_dir, file)
  if how == "garble":
    _garble(path)
  elif how == "truncate":
    with open(path, "rb") as f:
      content = f.read()
    _garble(path, content[:-3])
  else:
    os.remove(path)
  with pytest.raises(ValueError, match=match) as info:
    data.load(name, data_dir=data_dir)
  message = str(info.value)
  assert "\n" not in message
  # The message names the files expected and where to get them.
  assert all(f in message for f in data.LOCAL_FILES[name]["files"])
  assert data.LOCAL_FILES[name]["source"].split()[0] in message


@pytest.mark.parametrize(
  "options,match",
  [
    (dict(data_dir="/nonexistent/mnist"), "is not a folder; for 'mnist' it should hold"),
    (dict(data_dir=3), "data_dir must be a folder path"),
    (dict(data_dir=".", hf_path="/tmp/x"), "not both data_dir and hf_path"),
    (dict(n_val=49), "n_val=49 is too large"),
    (dict(n_test=21), "n_test=21 is more than the 20"),
  ],
)
def test_original_files_option_errors(options, match, tmp_path):
  options.setdefault("data_dir", _write("mnist", tmp_path, "idx_raw"))
  with pytest.raises(ValueError, match=match) as info:
    data.load("mnist", **options)
  assert "\n" not in str(info.value)


def _cifar_labels(counts):
  """Gives CIFAR-10's first training batches ``counts`` labels (totals kept by the caller)."""

  def damage(folder):
    paths = [os.path.join(folder, "cifar-10-batches-py", f"data_batch_{i + 1}") for i in range(2)]
    batches = [of.read_cifar_batch(p) for p in paths]
    labels = batches[0][b"labels"] + batches[1][b"labels"]
    batches[0][b"labels"], batches[1][b"labels"] = labels[: counts[0]], labels[counts[0] :]
    for path, batch in zip(paths, batches, strict=True):
      of.write_cifar_batch(path, batch)

  return damage


def _cifar_batch(file, key, change):
  def damage(folder):
    inner = "cifar-100-python" if file in ("train", "test") else "cifar-10-batches-py"
    path = os.path.join(folder, inner, file)
    batch = of.read_cifar_batch(path)
    batch[key] = change(batch[key])
    of.write_cifar_batch(path, batch)

  return damage


def _svhn(file, change_x=None, change_y=None):
  def damage(folder):
    path = os.path.join(folder, file)
    x, y = of.read_svhn(path)
    of.write_svhn_mat(path, change_x(x) if change_x else x, change_y(y) if change_y else y)

  return damage


def _idx(file, array):
  return lambda folder: of.write_idx(os.path.join(folder, file), array)


def _npz(file, array):
  return lambda folder: np.savez_compressed(os.path.join(folder, file), array)


def _set(values, at, value):
  values = np.array(values)
  values.reshape(-1)[at] = value
  return values


@pytest.mark.parametrize(
  "name,layout,damage,file,match",
  [
    # CIFAR: 11 and 9 labels for 10 images each (the totals match, so a check of the
    # totals alone would shift every later label onto another image).
    ("cifar10", "cifar10", _cifar_labels((11, 9)), "data_batch_1", "11 labels for the 10 images"),
    (
      "cifar10",
      "cifar10",
      _cifar_batch("data_batch_2", b"labels", lambda y: [*y[:-1], 10]),
      "data_batch_2",
      r"1 label\(s\) outside 0 to 9 \(the first: 10 at position 9\)",
    ),
    (
      "cifar10",
      "cifar10",
      _cifar_batch("test_batch", b"data", lambda x: x / np.float32(255)),
      "test_batch",
      "pixels stored as float32, not the format's uint8",
    ),
    (
      "cifar10",
      "cifar10",
      _cifar_batch("data_batch_1", b"labels", lambda y: [*y[:-1], 2.5]),
      "data_batch_1",
      "a label 2.5 that is not a whole number",
    ),
    (
      "cifar100",
      "cifar100",
      _cifar_batch("train", b"fine_labels", lambda y: [-1, *y[1:]]),
      "train",
      "outside 0 to 99",
    ),
    # SVHN: labels 1..10 (10 is the digit 0); none wraps modulo 10.
    (
      "svhn",
      "svhn",
      _svhn("train_32x32.mat", change_y=lambda y: _set(y, 3, 0)),
      "train_32x32.mat",
      "outside 1 to 10",
    ),
    (
      "svhn",
      "svhn",
      _svhn("test_32x32.mat", change_y=lambda y: _set(y, 0, 11)),
      "test_32x32.mat",
      "outside 1 to 10",
    ),
    (
      "svhn",
      "svhn",
      _svhn("train_32x32.mat", change_x=lambda x: x / 255.0),
      "train_32x32.mat",
      "pixels stored as float64, not the format's uint8",
    ),
    (
      "svhn",
      "svhn",
      _svhn("test_32x32.mat", change_y=lambda y: y[:-1]),
      "test_32x32.mat",
      "19 labels for the 20 images",
    ),
    # IDX: the labels file and the images file disagree, or a label is past the classes.
    (
      "mnist",
      "idx_gz",
      _idx("train-labels-idx1-ubyte.gz", of.labels(49)),
      "train-labels-idx1-ubyte.gz",
      "49 labels for the 50 images of train-images-idx3-ubyte.gz",
    ),
    (
      "mnist",
      "idx_raw",
      _idx("t10k-labels-idx1-ubyte", _set(of.labels(20), 7, 10)),
      "t10k-labels-idx1-ubyte",
      "outside 0 to 9",
    ),
    (
      "mnist",
      "idx_raw",
      _idx("t10k-labels-idx1-ubyte", of.labels(20).reshape(10, 2)),
      "t10k-labels-idx1-ubyte",
      r"shape \(10, 2\), not labels \(n,\)",
    ),
    # KMNIST's .npz can hold any dtype: float pixels are refused, not cast.
    (
      "kmnist",
      "npz",
      _npz("kmnist-train-imgs.npz", of.images(50, (28, 28)) / 255.0),
      "kmnist-train-imgs.npz",
      "pixels stored as float64",
    ),
    (
      "kmnist",
      "npz",
      _npz("kmnist-test-labels.npz", of.labels(21)),
      "kmnist-test-labels.npz",
      "21 labels for the 20 images of kmnist-test-imgs.npz",
    ),
  ],
)
def test_original_files_that_disagree_with_their_format(
  name, layout, damage, file, match, tmp_path
):
  data_dir = _write(name, tmp_path, layout)
  damage(data_dir)
  with pytest.raises(ValueError, match=match) as info:
    data.load(name, data_dir=data_dir)
  message = str(info.value)
  assert "\n" not in message and f"cannot read '{data_dir}" in message
  assert message.split("'")[1].endswith(file)  # the file that is wrong comes first


def test_hub_labels_outside_the_classes(tmp_path):
  datasets = pytest.importorskip("datasets")
  pil = pytest.importorskip("PIL.Image")

  def split(labels):
    images = [pil.fromarray(np.zeros((28, 28), np.uint8)) for _ in labels]
    return datasets.Dataset.from_dict({"image": images, "label": labels})

  datasets.DatasetDict({"train": split([0, 1, 2, 12]), "test": split([0, 1])}).save_to_disk(
    str(tmp_path)
  )
  with pytest.raises(ValueError, match="train split's column 'label' holds labels other than"):
    data.load("mnist", hf_path=tmp_path, n_val=1)


@pytest.mark.parametrize("flatten", [False, True])
def test_loaded_sets_are_read_only_and_kept_without_a_copy(flatten, tmp_path):
  """A Dataset copies a view of a writable array; the loaders give it read-only ones."""
  for ds in (
    data.load("cifar10", data_dir=of.write_cifar10(str(tmp_path)), flatten=flatten),
    data.load("two_gaussians", n_test=10),
    data.load("diabetes"),
  ):
    for split in ("x_train", "y_train", "x_val", "x_test"):
      assert not getattr(ds, split).flags.writeable, (ds.name, split)
    # A flattened set is a view of the loader's images: kept as that view, not copied.
    assert (ds.x_train.base is not None) == (flatten and ds.name == "cifar10"), ds.name


def test_cifar_pickles_cannot_run_code(tmp_path):
  data_dir = _write("cifar10", tmp_path, "cifar10")
  with open(os.path.join(data_dir, "cifar-10-batches-py", "data_batch_1"), "wb") as f:
    pickle.dump(os.system, f)  # a pickle that would call a function
  with pytest.raises(ValueError, match=r"refers to \S+system, not only arrays"):
    data.load("cifar10", data_dir=data_dir)


def test_hub_unreachable_fails_fast_naming_data_dir(monkeypatch):
  pytest.importorskip("datasets")
  import huggingface_hub

  calls = []

  def unreachable(self, repo_id, **kwargs):
    calls.append(kwargs.get("timeout"))
    raise OSError("[Errno -2] Name or service not known")

  monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
  monkeypatch.setattr(huggingface_hub.HfApi, "dataset_info", unreachable)
  with pytest.raises(ConnectionError) as info:
    data.load("mnist")
  message = str(info.value)
  assert "\n" not in message and "--data-dir DIR" in message and "data_dir=DIR" in message
  assert "train-images-idx3-ubyte.gz" in message and "Name or service not known" in message
  assert calls and calls[0] <= 10  # one short probe, not the download's retries


def test_hub_offline_mode_names_data_dir(monkeypatch):
  datasets = pytest.importorskip("datasets")
  import huggingface_hub

  def offline(*args, **kwargs):
    raise ConnectionError("Couldn't reach 'ylecun/mnist' on the Hub (OfflineModeIsEnabled)")

  monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
  monkeypatch.setattr(datasets, "load_dataset", offline)
  with pytest.raises(ConnectionError, match="HF_HUB_OFFLINE=1 is set and no copy") as info:
    data.load("cifar10")
  assert "\n" not in str(info.value) and "--data-dir DIR" in str(info.value)


def test_diabetes_is_a_standardized_regression_with_a_validation_split():
  from sklearn.datasets import load_diabetes

  ds = data.load("diabetes")
  assert (ds.num_train, len(ds.y_val), len(ds.y_test)) == (266, 88, 88)
  assert ds.input_shape == (10,) and ds.num_classes is None
  assert ds.x_train.dtype == ds.y_train.dtype == np.float32 and ds.y_train.shape == (266,)
  # Standardized with the training split's statistics, not the others'.
  np.testing.assert_allclose(ds.x_train.mean(0), 0.0, atol=1e-5)
  np.testing.assert_allclose(ds.x_train.std(0), 1.0, rtol=1e-5)
  np.testing.assert_allclose([ds.y_train.mean(), ds.y_train.std()], [0.0, 1.0], atol=1e-5)
  assert abs(float(ds.y_val.mean())) > 1e-3
  # Every patient once, in one split, by one affine map of the raw target (slope 1 / std).
  features, target = load_diabetes(return_X_y=True, scaled=False)
  restored = np.sort(np.concatenate([ds.y_train, ds.y_val, ds.y_test]))
  slope, intercept = np.polyfit(np.sort(target), restored, 1)
  np.testing.assert_allclose(slope * np.sort(target) + intercept, restored, atol=1e-5)
  assert slope > 0
  assert features.shape == (442, 10)
  # Seeded: the same split again, another for another seed.
  np.testing.assert_array_equal(data.load("diabetes").x_val, ds.x_val)
  assert not np.array_equal(data.load("diabetes", seed=1).y_val, ds.y_val)
  small = data.load("diabetes", val_fraction=0.1, test_fraction=0.3)
  assert (len(small.y_val), len(small.y_test)) == (44, 133)
  with pytest.raises(ValueError, match="val_fraction must be in"):
    data.load("diabetes", val_fraction=1.5)
  with pytest.raises(ValueError, match="unknown option 'label_noise'"):
    data.load("diabetes", label_noise=0.1)


@pytest.mark.parametrize("flatten", [False, True])
def test_pixels_stay_uint8_and_from_pixels_sees_what_the_float_set_gives(tmp_path, flatten):
  import jax
  import jax.numpy as jnp

  import flood_jax as fj

  root = of.write_cifar10(str(tmp_path))
  floats = data.load("cifar10", data_dir=root, flatten=flatten)
  pixels = data.load("cifar10", data_dir=root, flatten=flatten, pixels=True)
  assert pixels.x_train.dtype == np.uint8 and pixels.x_train.shape == floats.x_train.shape
  assert pixels.x_train.nbytes * 4 == floats.x_train.nbytes
  np.testing.assert_array_equal(pixels.y_train, floats.y_train)
  spec = data.IMAGE_SETS["cifar10"]
  scale = fj.models.FromPixels(lambda x, train: x, spec.mean, spec.std)  # pyright: ignore
  scaled = scale.apply({}, jnp.asarray(pixels.x_val), train=False)
  np.testing.assert_allclose(np.asarray(scaled), floats.x_val, rtol=1e-5, atol=1e-5)
  assert (
    jax.tree.leaves(scale.init(jax.random.key(0), jnp.asarray(pixels.x_val), train=False)) == []
  )
  with pytest.raises(ValueError, match="pixels must be True or False"):
    data.load("cifar10", data_dir=root, pixels="yes")
