"""FloodTrainState (linen, with BatchNorm) and NNX's Optimizer with the flood transform."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen as nn
from flax import nnx
from flax.training import train_state

import flood_jax as fj


class _BNModel(nn.Module):
  @nn.compact
  def __call__(self, x, train: bool):
    x = nn.Dense(16)(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
    return nn.Dense(1)(nn.relu(x))[:, 0]


def _data():
  x = jax.random.normal(jax.random.key(0), (16, 3))
  return x, x.sum(-1)


def test_flood_train_state_with_batchnorm_matches_manual_loop():
  x, y = _data()
  model = _BNModel()
  variables = model.init(jax.random.key(1), x, train=False)
  level = 0.5
  tx = optax.chain(fj.flood(level), optax.sgd(0.05, momentum=0.9))
  state = fj.FloodTrainState.create(apply_fn=model.apply, params=variables, tx=tx)
  assert state.batch_stats is not None

  def loss_fn(params, batch_stats):
    preds, updates = model.apply(
      {"params": params, "batch_stats": batch_stats}, x, train=True, mutable=["batch_stats"]
    )
    return jnp.mean((preds - y) ** 2), updates["batch_stats"]

  @jax.jit
  def step(state):
    (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state.params, state.batch_stats
    )
    return state.apply_gradients(grads=grads, value=loss, batch_stats=stats), loss

  # Reference: plain optimizer on the flooded loss, linen's own TrainState.
  ref_tx = optax.sgd(0.05, momentum=0.9)
  ref = train_state.TrainState.create(apply_fn=model.apply, params=variables["params"], tx=ref_tx)
  ref_stats = variables["batch_stats"]

  @jax.jit
  def ref_step(ref, stats):
    (_loss, new_stats), grads = jax.value_and_grad(
      lambda p: (lambda loss, s: (fj.flooded_loss(loss, level), s))(*loss_fn(p, stats)),
      has_aux=True,
    )(ref.params)
    return ref.apply_gradients(grads=grads), new_stats

  losses = []
  for _ in range(40):
    state, loss = step(state)
    ref, ref_stats = ref_step(ref, ref_stats)
    losses.append(float(loss))
  assert min(losses) < level < max(losses)  # crossed b
  assert int(state.step) == 40
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5), state.params, ref.params
  )
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5),
    state.batch_stats,
    ref_stats,
  )
  assert 0 < float(fj.flooded_fraction(state.opt_state)) < 1


def test_flood_train_state_without_value_says_how():
  x, _y = _data()
  model = nn.Dense(1)
  state = fj.FloodTrainState.create(
    apply_fn=model.apply,
    params=model.init(jax.random.key(0), x)["params"],
    tx=optax.chain(fj.flood(0.1), optax.sgd(0.1)),
  )
  grads = jax.tree.map(jnp.ones_like, state.params)
  with pytest.raises(TypeError, match="value=loss"):
    state.apply_gradients(grads=grads)


def test_flood_train_state_with_plain_optimizer_ignores_value():
  x, _ = _data()
  model = nn.Dense(1)
  params = model.init(jax.random.key(0), x)["params"]
  state = fj.FloodTrainState.create(apply_fn=model.apply, params=params, tx=optax.sgd(0.1))
  grads = jax.tree.map(jnp.ones_like, params)
  new = state.apply_gradients(grads=grads, value=jnp.asarray(1.0))
  np.testing.assert_allclose(new.params["bias"], params["bias"] - 0.1)


def test_nnx_optimizer_forwards_value():
  x, y = _data()

  class Model(nnx.Module):
    def __init__(self, rngs):
      self.linear = nnx.Linear(3, 1, rngs=rngs)

    def __call__(self, x):
      return self.linear(x)[:, 0]

  level = 1.0
  model = Model(nnx.Rngs(0))
  reference = Model(nnx.Rngs(0))
  optimizer = nnx.Optimizer(model, optax.chain(fj.flood(level), optax.sgd(0.1)), wrt=nnx.Param)
  ref_optimizer = nnx.Optimizer(reference, optax.sgd(0.1), wrt=nnx.Param)
  loss_fn = lambda m: jnp.mean((m(x) - y) ** 2)
  losses = []
  for _ in range(30):
    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads, value=loss)
    _, ref_grads = nnx.value_and_grad(lambda m: fj.flooded_loss(loss_fn(m), level))(reference)
    ref_optimizer.update(reference, ref_grads)
    losses.append(float(loss))
  assert min(losses) < level < max(losses)
  np.testing.assert_allclose(
    model.linear.kernel[...], reference.linear.kernel[...], rtol=1e-5, atol=1e-6
  )
  assert int(optimizer.opt_state[0].flooded_count[...]) > 0


def test_grads_of_another_structure_or_shape_than_the_params_are_one_line():
  model = nn.Dense(1)
  params = model.init(jax.random.key(0), jnp.ones((2, 3)))["params"]
  tx = optax.chain(fj.flood(0.1), optax.sgd(0.1))
  state = fj.FloodTrainState.create(apply_fn=model.apply, params=params, tx=tx)
  step = jax.jit(lambda state, grads: state.apply_gradients(grads=grads, value=0.5))
  for grads, match in [
    ({"kernel": params["kernel"]}, r"grads \{\['kernel'\]\}, params \{\['bias'\], \['kernel'\]\}"),
    ({"params": dict(params)}, r"grads \{\['params'\]\['bias'\], \['params'\]\['kernel'\]\}"),
    (jnp.ones(3), r"grads one array, params"),
  ]:
    with pytest.raises(
      ValueError, match=r"^apply_gradients got grads of another structure than the params: " + match
    ):
      step(state, grads)
  with pytest.raises(
    ValueError, match=r"shape \(2,\) for the parameter \['bias'\] of shape \(1,\)"
  ):
    step(state, {"bias": jnp.ones(2), "kernel": params["kernel"]})
  assert int(step(state, jax.tree.map(jnp.ones_like, dict(params))).step) == 1  # a dict is fine
