"""fj.Dataset: pytree inputs, dtypes kept, any numeric targets, one-line checks."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import flood_jax as fj

RNG = np.random.default_rng(0)


def _splits(x, y, n=(12, 6, 6)):
  """x and y (pytrees of arrays of n[0] + n[1] + n[2] rows) cut into the three splits."""
  cuts = np.cumsum(n)[:-1]
  rows = np.split(np.arange(sum(n)), cuts)
  out = {}
  for split, r in zip(("train", "val", "test"), rows, strict=True):
    out[f"x_{split}"] = jax.tree.map(lambda a, r=r: a[r], x)
    out[f"y_{split}"] = y[r]
  return out


def test_a_float_array_with_integer_labels_is_stored_as_before_tasks():
  x = RNG.normal(size=(24, 3))  # float64
  y = RNG.integers(0, 3, size=24)  # int64
  data = fj.Dataset(**_splits(x, y))
  assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int32
  assert isinstance(data.x_train, np.ndarray) and isinstance(data.y_train, np.ndarray)
  np.testing.assert_array_equal(data.x_train, x[:12].astype(np.float32))
  np.testing.assert_array_equal(data.y_val, y[12:18].astype(np.int32))
  assert data.input_shape == (3,) and data.num_classes == 3 and data.num_train == 12
  assert repr(data) == (
    "Dataset(name='dataset', train=12, val=6, test=6, input_shape=(3,), num_classes=3)"
  )


@pytest.mark.parametrize(
  "dtype,stored",
  [
    (np.uint8, np.uint8),
    (np.bool_, np.bool_),
    (np.int8, np.int8),
    (np.int32, np.int32),
    (np.int64, np.int32),
    (np.uint64, np.uint32),
    (np.float16, np.float16),
    (jnp.bfloat16, jnp.bfloat16),
    (np.float32, np.float32),
    (np.float64, np.float32),
  ],
)
def test_input_dtypes_are_kept_where_a_device_holds_them(dtype, stored):
  x = (RNG.integers(0, 2, size=(24, 4, 4))).astype(dtype)
  data = fj.Dataset(**_splits(x, np.arange(24) % 2))
  assert data.x_train.dtype == stored and data.x_test.dtype == stored
  np.testing.assert_array_equal(data.x_val.astype(np.float32), x[12:18].astype(np.float32))


def test_pytree_inputs_keep_their_structure_and_dtypes():
  ids = RNG.integers(0, 50, size=(24, 7))
  x = {"ids": ids, "mask": ids > 5, "scale": RNG.normal(size=(24,))}
  data = fj.Dataset(**_splits(x, np.arange(24) % 2), name="tokens")
  assert set(data.x_train) == {"ids", "mask", "scale"}
  assert data.x_train["ids"].dtype == np.int32 and data.x_train["mask"].dtype == np.bool_
  assert data.x_train["scale"].dtype == np.float32
  assert data.input_shape == {"ids": (7,), "mask": (7,), "scale": ()}
  assert data.num_train == 12
  spec = data.input_spec
  assert hash(spec) == hash(fj.Dataset(**_splits(x, np.arange(24) % 2)).input_spec)
  batch = spec.batch(5)
  assert batch["ids"].shape == (5, 7) and batch["mask"].dtype == jnp.bool_
  tuple_data = fj.Dataset(**_splits((ids, ids > 5), np.arange(24) % 2))
  assert isinstance(tuple_data.x_val, tuple) and tuple_data.input_shape == ((7,), (7,))


@pytest.mark.parametrize(
  "y,dtype,num_classes",
  [
    (np.arange(24) % 3, np.int32, 3),
    (np.arange(24) % 2 == 0, np.int32, 2),
    (np.linspace(-1, 1, 24), np.float32, None),
    (np.linspace(-1, 1, 48).reshape(24, 2), np.float32, None),
    (np.arange(24 * 5).reshape(24, 5) % 4, np.int32, None),  # token labels: not inferred
    (np.linspace(0, 1, 24).astype(np.float16), np.float16, None),
  ],
)
def test_targets_of_any_kind(y, dtype, num_classes):
  data = fj.Dataset(**_splits(RNG.normal(size=(24, 2)), y))
  assert data.y_train.dtype == dtype and data.y_train.shape[1:] == y.shape[1:]
  assert data.num_classes == num_classes


def test_num_classes_given_checks_integer_targets_of_any_shape():
  y = np.arange(24 * 5).reshape(24, 5) % 4
  assert fj.Dataset(**_splits(RNG.normal(size=(24, 2)), y), num_classes=4).num_classes == 4
  with pytest.raises(ValueError, match=r"labels in \[0, 3\] but num_classes is 3"):
    fj.Dataset(**_splits(RNG.normal(size=(24, 2)), y), num_classes=3)
  with pytest.raises(ValueError, match="num_classes is for integer class labels"):
    fj.Dataset(**_splits(RNG.normal(size=(24, 2)), np.linspace(0, 1, 24)), num_classes=2)


def _bad(**change):
  ids = RNG.integers(0, 50, size=(24, 7))
  arrays = _splits({"ids": ids, "mask": ids > 5}, np.arange(24) % 2)
  arrays.update(change)
  return arrays


GOOD = _bad()


@pytest.mark.parametrize(
  "change,match",
  [
    (
      dict(x_train={"ids": np.zeros((12, 7), int), "mask": np.zeros((11, 7), bool)}),
      r"arrays of x_train differ in length: \{\"\['ids'\]\": 12, \"\['mask'\]\": 11\}",
    ),
    (dict(y_val=np.zeros(5, int)), "x_val has 6 examples but y_val has 5"),
    (dict(x_test={"ids": np.zeros((6, 7), int)}), "inputs differ in structure between splits"),
    (
      dict(x_val={"ids": np.zeros((6, 8), int), "mask": np.zeros((6, 8), bool)}),
      "inputs differ in shape or dtype between splits",
    ),
    (
      dict(x_val={"ids": np.zeros((6, 7), np.float32), "mask": np.zeros((6, 7), bool)}),
      "inputs differ in shape or dtype between splits",
    ),
    (
      dict(x_train={"ids": np.full((12, 7), np.nan), "mask": np.zeros((12, 7), bool)}),
      r"x_train\['ids'\] has 84 NaN or infinite values",
    ),
    (
      dict(x_train={"ids": np.full((12, 7), "a"), "mask": np.zeros((12, 7), bool)}),
      r"x_train\['ids'\] must be numeric",
    ),
    (
      dict(x_train={"ids": np.full((12, 7), 2**40), "mask": np.zeros((12, 7), bool)}),
      r"x_train\['ids'\] holds integers outside int32",
    ),
    (dict(x_train={}), "x_train holds no arrays"),
    (dict(y_train=np.zeros(12, np.float32)), "targets differ in shape or dtype between splits"),
    (dict(y_test=np.full(6, np.inf)), "y_test has 6 NaN or infinite values"),
    (dict(y_test=np.array(["a"] * 6)), "y_test must hold numbers"),
    (dict(x_val=np.zeros(6)), r"x_val must have shape \(examples, features...\)"),
  ],
)
def test_bad_data_is_one_line(change, match):
  with pytest.raises(ValueError, match=match) as info:
    fj.Dataset(**_bad(**change))
  assert "\n" not in str(info.value)


def _dict_model():
  """fj.Model on {"x": float, "mask": bool, "img": uint8}; asserts the dtypes it is given."""

  def check(x):
    assert x["img"].dtype == jnp.uint8, x["img"].dtype
    assert x["mask"].dtype == jnp.bool_, x["mask"].dtype
    return x["x"] * x["mask"] + x["img"].astype(jnp.float32) / 255.0

  def init(key, x):
    return {"w": jax.random.normal(key, (check(x).shape[-1], 2)) * 0.3}

  def apply(params, x, train):
    return check(x) @ params["w"]

  return fj.Model(init, apply)


def _plain_model():
  def init(key, x):
    return {"w": jax.random.normal(key, (x.shape[-1], 2)) * 0.3}

  def apply(params, x, train):
    return x @ params["w"]

  return fj.Model(init, apply)


def test_a_sweep_on_pytree_inputs_gives_what_the_same_arrays_give_plainly():
  # uint8 and bool inputs reach the model as uint8 and bool (the model asserts it); with an
  # all-true mask and zero pixels the dict model computes the plain one's numbers, bitwise.
  x = RNG.normal(size=(48, 3)).astype(np.float32)
  y = (x[:, 0] > 0).astype(np.int32)
  tree = {"x": x, "mask": np.ones((48, 3), bool), "img": np.zeros((48, 3), np.uint8)}
  n = (32, 8, 8)
  kw = dict(
    flood_levels=[0.0, 0.3],
    seeds=[0, 1],
    optimizer=optax.sgd(0.1),
    epochs=3,
    batch_size=8,
    chunk_size=2,
    progress=False,
  )
  on_tree = fj.sweep(_dict_model(), fj.Dataset(**_splits(tree, y, n)), **kw)
  plain = fj.sweep(_plain_model(), fj.Dataset(**_splits(x, y, n)), **kw)
  for key in plain.history:
    np.testing.assert_array_equal(on_tree.history[key], plain.history[key])
  np.testing.assert_array_equal(on_tree.final_params["w"], plain.final_params["w"])
  # One model per call instead of two: the same numbers, to float round-off.
  one_by_one = fj.sweep(_dict_model(), fj.Dataset(**_splits(tree, y, n)), **dict(kw, chunk_size=1))
  for key in plain.history:
    np.testing.assert_allclose(one_by_one.history[key], on_tree.history[key], rtol=1e-5, atol=1e-6)


def test_a_dataset_keeps_read_only_arrays_copied_only_where_another_could_write():
  x = RNG.normal(size=(24, 3)).astype(np.float32)
  y = (x[:, 0] > 0).astype(np.int32)
  data = fj.Dataset(**_splits(x, y))
  with pytest.raises(ValueError, match="read-only"):
    data.x_train[0] = 1.0
  with pytest.raises(ValueError, match="read-only"):
    data.y_val[:] = 0
  x[:] = 0.0  # the caller's own array: the Dataset's copy stays as it was
  assert data.x_train.any()
  # A read-only array (all the way down) is kept as it is; a read-only view of a writable
  # array is copied (its base could still change); an array made here is not copied again.
  frozen = RNG.normal(size=(12, 3)).astype(np.float32)
  frozen.flags.writeable = False
  view = np.ones((12, 4), np.float32)[:, :3]
  view.flags.writeable = False
  for given, kept in ((frozen, True), (view, False)):
    assert (fj.Dataset(**dict(_splits(x, y), x_train=given)).x_train is given) == kept
  converted = fj.Dataset(**_splits(x.astype(np.float64), y))
  assert converted.x_train.base is None and not converted.x_train.flags.writeable
  tree = fj.Dataset(**_splits({"a": x, "b": x > 0}, y))
  assert not any(leaf.flags.writeable for leaf in jax.tree.leaves(tree.x_train))


def test_a_second_sweep_trains_on_the_values_the_dataset_holds():
  """The device copy kept for a Dataset is never stale: its arrays cannot change in place."""
  from helpers import assert_bitwise_equal

  x = RNG.normal(size=(48, 3)).astype(np.float32)
  arrays = _splits(x, (x[:, 0] > 0).astype(np.int32), (32, 8, 8))
  kw = dict(flood_levels=[0.0], optimizer=optax.sgd(0.1), epochs=1, batch_size=8, progress=False)
  data = fj.Dataset(**arrays)
  first = fj.sweep(_plain_model(), data, **kw)
  arrays["x_train"] *= -1.0  # in place, on the very arrays the Dataset was given
  arrays["y_train"][:] = 1 - arrays["y_train"]
  again = fj.sweep(_plain_model(), data, **kw)
  held = fj.Dataset(**{k: np.array(getattr(data, k)) for k in arrays})  # a fresh copy of them
  assert_bitwise_equal(again, fj.sweep(_plain_model(), held, **kw))
  assert_bitwise_equal(again, first)
