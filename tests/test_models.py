"""flood_jax.models: shapes, BatchNorm behaviour, parameter counts, training under vmap."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from flood_jax import models
from flood_jax.models import CNN, MLP, MODELS, ResNet, ResNet18, ResNet20, ResNet44, get_model

NUM_CLASSES = 3

# Small configurations: every model sees the same tiny batch of 8x8 RGB images
# (the MLP flattens them).
SMALL = {
  "mlp": dict(hidden=16, depth=2),
  "cnn": dict(features=(4, 8), hidden=16),
  "resnet18": dict(num_filters=4),
  "resnet20": dict(num_filters=4),
  "resnet44": dict(num_filters=4),
}


def _batch():
  x = jax.random.normal(jax.random.key(42), (4, 8, 8, 3))
  y = jnp.array([0, 1, 2, 0])
  return x, y


def _num_params(tree):
  return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(tree))


def _shapes(model, x):
  """The variables' shapes, without running the initializers."""
  return jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))


def _small(name):
  return get_model(name, NUM_CLASSES, **SMALL[name])


# XLA's CPU compiler dominates this file's run time (the models are tiny); its
# cheapest optimization level keeps the file fast and changes nothing tested.
_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


@functools.cache
def _init_two(name):
  """The small model ``name`` and two initializations (one compile, two keys)."""
  model = _small(name)
  x, _ = _batch()
  init = _jit(lambda k: model.init(k, x, train=False))
  return model, init(jax.random.key(0)), init(jax.random.key(1))


# --- forward pass and BatchNorm ------------------------------------------------


@pytest.mark.parametrize("name", sorted(SMALL))
def test_forward_shapes_and_batch_stats(name):
  model, variables, _ = _init_two(name)
  x, _ = _batch()
  assert set(variables) == {"params", "batch_stats"}

  @_jit  # one compile for both modes
  def forward(variables):
    # train=False: no mutable collections, no RNG.
    logits = model.apply(variables, x, train=False)
    # train=True: batch statistics, and updated running averages.
    logits_train, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
    return logits, logits_train, updates

  logits, logits_train, updates = forward(variables)
  np.testing.assert_array_equal(forward(variables)[0], logits)  # deterministic
  for out in (logits, logits_train):
    assert out.shape == (x.shape[0], NUM_CLASSES)
    assert bool(jnp.all(jnp.isfinite(out)))
  assert set(updates) == {"batch_stats"}
  assert jax.tree.structure(updates["batch_stats"]) == jax.tree.structure(variables["batch_stats"])
  changed = jax.tree.map(
    lambda a, b: bool(jnp.any(a != b)), updates["batch_stats"], variables["batch_stats"]
  )
  assert all(jax.tree.leaves(changed))
  # Batch statistics, not running averages, in train mode.
  assert not np.allclose(logits_train, logits)


# --- one compiled training loop per model, vmapped over two models -------------


def _train_losses(name, num_steps=4, learning_rate=0.05):
  """Trains two models (two init keys) under vmap; returns losses (steps, 2)."""
  model, *two = _init_two(name)
  x, y = _batch()
  tx = optax.sgd(learning_rate)
  variables = jax.tree.map(lambda *v: jnp.stack(v), *two)
  params, batch_stats = variables["params"], variables["batch_stats"]
  opt_state = jax.vmap(tx.init)(params)

  def loss_fn(params, batch_stats):
    logits, updates = model.apply(
      {"params": params, "batch_stats": batch_stats}, x, train=True, mutable=["batch_stats"]
    )
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return loss, updates["batch_stats"]

  def step(params, batch_stats, opt_state):
    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch_stats)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), batch_stats, opt_state, loss

  @_jit
  def train(params, batch_stats, opt_state):
    def body(carry, _):
      params, batch_stats, opt_state, loss = jax.vmap(step)(*carry)
      return (params, batch_stats, opt_state), loss

    _, losses = jax.lax.scan(body, (params, batch_stats, opt_state), None, length=num_steps)
    return losses

  return train(params, batch_stats, opt_state)


# ResNet-44 is ResNet-20 with more of the same blocks; training it here would
# only add compile time (the forward test above covers its construction).
@pytest.mark.parametrize("name", ["mlp", "cnn", "resnet18", "resnet20"])
def test_sgd_decreases_loss_under_vmap(name):
  losses = np.asarray(_train_losses(name))
  assert losses.shape == (4, 2)
  assert np.all(np.isfinite(losses))
  assert np.all(losses[-1] < losses[0]), losses
  # Two different initializations: two different models.
  assert losses[0, 0] != losses[0, 1]


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_vmapped_apply_matches_each_model_alone(name):
  model, *two = _init_two(name)
  x, _ = _batch()
  apply = functools.partial(model.apply, train=True, mutable=["batch_stats"])
  batched = jax.tree.map(lambda *v: jnp.stack(v), *two)
  logits, updates = _jit(jax.vmap(apply, in_axes=(0, None)))(batched, x)
  for i, variables in enumerate(two):
    logits_i, updates_i = _jit(apply)(variables, x)
    np.testing.assert_allclose(logits[i], logits_i, rtol=1e-5, atol=1e-5)
    jax.tree.map(
      lambda a, b, i=i: np.testing.assert_allclose(a[i], b, rtol=1e-5, atol=1e-6),
      updates,
      updates_i,
    )


# --- MLP -----------------------------------------------------------------------


def test_mlp_defaults_follow_the_official_code():
  model = MLP(num_classes=10)
  assert (model.hidden, model.depth, model.batch_norm) == (500, 4, True)


@pytest.mark.parametrize("depth", [1, 3])
def test_mlp_has_depth_plus_one_dense_layers(depth):
  shapes = _shapes(MLP(NUM_CLASSES, hidden=8, depth=depth), jnp.ones((2, 5)))
  dense = [k for k in shapes["params"] if k.startswith("Dense_")]
  norms = [k for k in shapes["params"] if k.startswith("BatchNorm_")]
  assert len(dense) == depth + 1
  assert len(norms) == depth
  assert shapes["params"][f"Dense_{depth}"]["kernel"].shape == (8, NUM_CLASSES)


def test_mlp_parameter_count_by_hand():
  d, h, k = 5, 7, 3  # input dim, width, classes; depth 2
  shapes = _shapes(MLP(k, hidden=h, depth=2), jnp.ones((2, d)))
  dense = (d * h + h) + (h * h + h) + (h * k + k)
  assert _num_params(shapes["params"]) == dense + 2 * (2 * h)  # + BN scale, bias
  assert _num_params(shapes["batch_stats"]) == 2 * (2 * h)  # mean, var

  shapes = _shapes(MLP(k, hidden=h, depth=2, batch_norm=False), jnp.ones((2, d)))
  assert set(shapes) == {"params"}
  assert _num_params(shapes["params"]) == dense


def test_mlp_without_batch_norm_needs_no_mutable_collections():
  model = MLP(NUM_CLASSES, hidden=8, depth=2, batch_norm=False)
  x = jnp.ones((2, 4, 4))
  variables = _jit(lambda k: model.init(k, x, train=False))(jax.random.key(0))
  assert set(variables) == {"params"}
  apply = _jit(model.apply, static_argnames="train")
  np.testing.assert_array_equal(apply(variables, x, train=True), apply(variables, x, train=False))


# --- CNN -----------------------------------------------------------------------


def test_cnn_input_shapes():
  model = CNN(NUM_CLASSES, features=(2, 2, 2), hidden=4)
  # (N, H, W) gets a channel axis; odd and small sizes survive three poolings.
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.ones((2, 7, 7)), train=False))
  assert shapes["params"]["Conv_0"]["kernel"].shape == (3, 3, 1, 2)
  assert shapes["params"]["Dense_0"]["kernel"].shape == (1 * 1 * 2, 4)
  out = jax.eval_shape(
    lambda: model.apply(
      model.init(jax.random.key(0), jnp.ones((2, 8, 8, 3)), train=False),
      jnp.ones((2, 8, 8, 3)),
      train=False,
    )
  )
  assert out.shape == (2, NUM_CLASSES)


def test_cnn_without_batch_norm_has_conv_biases_and_no_batch_stats():
  shapes = _shapes(
    CNN(NUM_CLASSES, features=(2,), hidden=4, batch_norm=False), jnp.ones((2, 4, 4, 1))
  )
  assert set(shapes) == {"params"}
  assert "bias" in shapes["params"]["Conv_0"]


@pytest.mark.parametrize("model", [CNN(NUM_CLASSES), ResNet20(NUM_CLASSES)])
def test_image_models_reject_flat_inputs(model):
  with pytest.raises(ValueError, match="flatten=False"):
    model.init(jax.random.key(0), jnp.ones((2, 64)), train=False)


# --- ResNets -------------------------------------------------------------------


def _cifar_resnet_params(n, num_classes, projection):
  """He et al.'s CIFAR ResNet (6n + 2 layers) counted by hand."""
  convs, norms = 3 * 3 * 3 * 16, 2 * 16  # stem: 3x3 conv from RGB, BN
  c_in = 16
  for width in (16, 32, 64):
    for _ in range(n):
      convs += 9 * c_in * width + 9 * width * width
      norms += 2 * (2 * width)
      if c_in != width and projection:
        convs += c_in * width
        norms += 2 * width
      c_in = width
  return convs + norms + 64 * num_classes + num_classes


@pytest.mark.parametrize(
  "fn,n,low,high",
  [
    (ResNet20, 3, 0.26e6, 0.28e6),  # He et al. (2016), Table 6: 0.27M
    (ResNet44, 7, 0.65e6, 0.67e6),  # 0.66M
  ],
)
def test_cifar_resnet_parameter_counts(fn, n, low, high):
  x = jnp.ones((1, 32, 32, 3))
  option_a = _num_params(_shapes(fn(10), x)["params"])
  assert option_a == _cifar_resnet_params(n, 10, projection=False)
  assert low <= option_a <= high
  # Projection shortcuts add two 1x1 convolutions with BatchNorm: 2,752 more.
  projection = _num_params(_shapes(fn(10, shortcut="projection"), x)["params"])
  assert projection == _cifar_resnet_params(n, 10, projection=True)
  assert projection - option_a == (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)
  assert low <= projection <= high


def test_resnet18_parameter_count():
  shapes = _shapes(ResNet18(10), jnp.ones((1, 32, 32, 3)))
  # The CIFAR ResNet-18 (3x3 stem, no max-pool) commonly quoted: 11,173,962.
  assert _num_params(shapes["params"]) == 11_173_962
  assert shapes["params"]["head"]["kernel"].shape == (512, 10)


def test_option_a_shortcut_has_no_parameters():
  x = jnp.ones((1, 8, 8, 3))
  names = lambda m: {k for block in _shapes(m, x)["params"].values() for k in block}
  assert "shortcut_conv" not in names(ResNet20(10))
  assert "shortcut_conv" in names(ResNet20(10, shortcut="projection"))
  assert "shortcut_conv" in names(ResNet18(10, num_filters=4))


def test_resnet_rejects_unknown_shortcut():
  with pytest.raises(ValueError, match="shortcut"):
    _shapes(ResNet((1,), 2, num_filters=4, shortcut="C"), jnp.ones((1, 8, 8, 3)))


# --- registry ------------------------------------------------------------------


def test_registry():
  assert {
    "mlp": MLP,
    "cnn": CNN,
    "resnet18": ResNet18,
    "resnet20": ResNet20,
    "resnet44": ResNet44,
  } == MODELS
  assert isinstance(get_model("mlp", 10), MLP)
  assert get_model("CNN", 7).num_classes == 7
  resnet = get_model("resnet44", 100)
  assert isinstance(resnet, ResNet)
  assert (resnet.stage_sizes, resnet.num_filters, resnet.num_classes) == ((7, 7, 7), 16, 100)
  assert get_model("resnet20", 10, shortcut="projection").shortcut == "projection"
  assert set(models.__all__) >= {"MLP", "CNN", "ResNet18", "ResNet20", "ResNet44", "get_model"}


def test_get_model_unknown_name():
  with pytest.raises(
    ValueError, match=r"unknown model 'vgg'.*mlp, cnn, resnet18, resnet20, resnet44"
  ):
    get_model("vgg", 10)


def _from_pixels(mean, std):
  return models.FromPixels(lambda x, train: x, mean, std)  # pyright: ignore


def test_from_pixels_scales_images_and_flattened_images_per_channel():
  mean, std = (0.5, 0.25, 0.0), (0.5, 0.25, 1.0)
  x = np.arange(2 * 2 * 2 * 3, dtype=np.uint8).reshape(2, 2, 2, 3)
  expected = (x / 255.0 - np.asarray(mean)) / np.asarray(std)
  images = _from_pixels(mean, std).apply({}, jnp.asarray(x), train=False)
  np.testing.assert_allclose(np.asarray(images), expected, rtol=1e-6)
  flat = _from_pixels(mean, std).apply({}, jnp.asarray(x.reshape(2, -1)), train=False)
  np.testing.assert_allclose(np.asarray(flat), expected.reshape(2, -1), rtol=1e-6)
  grey = _from_pixels((0.5,), (0.5,)).apply({}, jnp.asarray(x), train=False)  # one for all
  np.testing.assert_allclose(np.asarray(grey), (x / 255.0 - 0.5) / 0.5, rtol=1e-6)


@pytest.mark.parametrize(
  "mean,std,shape,match",
  [
    # 3-channel statistics on grey images, with and without their channel axis: once
    # broadcast silently into 3 channels.
    ((0.5, 0.5, 0.5), (0.2, 0.2, 0.2), (2, 28, 28, 1), "of 3 channels but the images' last"),
    ((0.5, 0.5, 0.5), (0.2, 0.2, 0.2), (2, 28, 28), "has 28 \\(shape \\(2, 28, 28\\)\\)"),
    ((0.5, 0.5), (0.2, 0.2), (2, 4, 4, 3), "of 2 channels but the images' last axis"),
    # Flattened images whose width is not a multiple of the channels: once a JAX traceback.
    ((0.5, 0.5, 0.5), (0.2, 0.2, 0.2), (2, 784), "784 values, not a multiple of the 3"),
    ((0.5, 0.5), (0.2,), (2, 8), "a mean of 2 channels and a std of 1"),
    ((0.5,), (0.0,), (2, 8), "std must be positive"),
    ((), (), (2, 8), "mean must be one finite number per channel"),
    (("a",), (0.2,), (2, 8), "mean must be one finite number per channel"),
    ((0.5,), (0.2,), (2,), "needs a batch of images"),
  ],
)
def test_from_pixels_rejects_statistics_that_do_not_fit_the_images(mean, std, shape, match):
  with pytest.raises(ValueError, match=match) as info:
    _from_pixels(mean, std).init(jax.random.key(0), jnp.zeros(shape, jnp.uint8), train=False)
  assert "\n" not in str(info.value)
