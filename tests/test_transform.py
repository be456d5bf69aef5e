"""The flood transform: equivalence with the flooded loss, Optax's shared checks, errors."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import flood_jax as fj

_X = jax.random.normal(jax.random.key(1), (32, 4))
_W_TRUE = jnp.array([1.0, -2.0, 0.5, 0.0])
_Y = _X @ _W_TRUE + 0.3 * jax.random.normal(jax.random.key(2), (32,))
_LEVEL = 0.12  # just above the noise floor (~0.09), so training crosses it


def _batch_loss(params, i):
  start = (i % 4) * 8
  xb = jax.lax.dynamic_slice_in_dim(_X, start, 8)
  yb = jax.lax.dynamic_slice_in_dim(_Y, start, 8)
  return jnp.mean((xb @ params["w"] + params["b"] - yb) ** 2)


def _train(tx, use_transform, steps=60):
  params = {"w": jnp.zeros(4), "b": jnp.zeros(())}
  state = tx.init(params)

  def step(carry, i):
    params, state = carry
    if use_transform:
      loss, grads = jax.value_and_grad(_batch_loss)(params, i)
      updates, state = tx.update(grads, state, params, value=loss)
    else:
      loss, grads = jax.value_and_grad(lambda p: fj.flooded_loss(_batch_loss(p, i), _LEVEL))(params)
      loss = _batch_loss(params, i)
      updates, state = tx.update(grads, state, params)
    return (optax.apply_updates(params, updates), state), loss

  (params, _), losses = jax.lax.scan(step, (params, state), jnp.arange(steps))
  return params, losses


@pytest.mark.parametrize(
  "make_opt",
  [
    lambda: optax.sgd(0.05),
    lambda: optax.sgd(0.05, momentum=0.9),
    lambda: optax.adam(0.05),
    lambda: optax.adamw(0.05, weight_decay=1e-2),
  ],
  ids=["sgd", "sgd_momentum", "adam", "adamw"],
)
def test_chain_equals_optimizer_on_flooded_loss(make_opt):
  flooded_params, losses = _train(optax.chain(fj.flood(_LEVEL), make_opt()), True)
  reference_params, reference_losses = _train(make_opt(), False)
  below = np.asarray(losses) < _LEVEL
  # The test only means something if training crossed b both ways.
  assert below.any() and (~below).any()
  assert np.any(below[1:] != below[:-1])
  assert np.count_nonzero(below[1:] & ~below[:-1]) >= 1
  assert np.count_nonzero(~below[1:] & below[:-1]) >= 1
  chex.assert_trees_all_close(flooded_params, reference_params, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(losses, reference_losses, rtol=2e-5, atol=1e-6)


def test_sign_at_and_around_the_level():
  tx = fj.flood(0.5)
  state = tx.init(None)
  grads = {"a": jnp.array([1.0, -2.0])}
  for value, sign in [(0.7, 1.0), (0.5, 1.0), (0.3, -1.0)]:
    updates, _ = tx.update(grads, state, value=value)
    chex.assert_trees_all_equal(updates, jax.tree.map(lambda g, sign=sign: sign * g, grads))


def test_state_counts_flooded_steps():
  tx = fj.flood(0.5)
  state = tx.init(jnp.zeros(2))
  for value in [0.9, 0.4, 0.6, 0.1, 0.5]:
    _, state = jax.jit(tx.update)(jnp.ones(2), state, value=value)
  assert isinstance(state, fj.FloodState)
  assert int(state.count) == 5
  assert int(state.flooded_count) == 2
  np.testing.assert_allclose(fj.flooded_fraction(state), 0.4)
  chained = optax.chain(fj.flood(0.5), optax.adam(1e-3))
  cstate = chained.init(jnp.zeros(2))
  _, cstate = chained.update(jnp.ones(2), cstate, jnp.zeros(2), value=0.1)
  np.testing.assert_allclose(fj.flooded_fraction(cstate), 1.0)


def test_flooded_fraction_without_flood_state_errors():
  with pytest.raises(ValueError, match="no FloodState"):
    fj.flooded_fraction(optax.sgd(0.1).init(jnp.zeros(2)))


def test_schedule_flood_level():
  schedule = optax.linear_schedule(0.0, 1.0, transition_steps=10)
  tx = fj.flood(schedule)
  state = tx.init(jnp.zeros(()))
  signs = []
  for _ in range(10):
    updates, state = jax.jit(tx.update)(jnp.ones(()), state, value=0.45)
    signs.append(float(updates))
  # level(step) = step / 10: ascent once the level passes 0.45 (steps 5..9).
  assert signs == [1.0] * 5 + [-1.0] * 5


@pytest.mark.parametrize("level", [0.2, optax.constant_schedule(0.2)], ids=["float", "schedule"])
def test_inject_hyperparams_matches_plain(level):
  params = [-jnp.ones((2, 3)), jnp.ones((2, 5, 2))]
  grads = [jnp.ones((2, 3)), -jnp.ones((2, 5, 2))]
  plain = optax.chain(fj.flood(level), optax.sgd(0.1, momentum=0.9))
  injected = optax.chain(
    optax.inject_hyperparams(fj.flood)(flood_level=level), optax.sgd(0.1, momentum=0.9)
  )
  for value in [0.5, 0.1]:
    updates, _ = jax.jit(plain.update)(grads, plain.init(params), params, value=value)
    updates_i, _ = jax.jit(injected.update)(grads, injected.init(params), params, value=value)
    chex.assert_trees_all_close(updates_i, updates, rtol=1e-6)


def test_inject_hyperparams_level_changes_without_recompiling():
  tx = optax.inject_hyperparams(fj.flood)(flood_level=0.2)
  params = jnp.ones(3)
  state = tx.init(params)

  @jax.jit
  def step(state, value):
    return tx.update(jnp.ones(3), state, params, value=value)

  updates, state = step(state, 0.5)
  np.testing.assert_array_equal(updates, jnp.ones(3))
  state.hyperparams["flood_level"] = jnp.asarray(0.8, state.hyperparams["flood_level"].dtype)
  updates, state = step(state, 0.5)
  assert step._cache_size() == 1
  np.testing.assert_array_equal(updates, -jnp.ones(3))


def test_no_recompile_on_second_call_and_extra_args_ignored():
  tx = optax.chain(fj.flood(0.1), optax.adam(1e-2))
  params = {"w": jnp.zeros(3)}

  @jax.jit
  def step(params, state):
    loss, grads = jax.value_and_grad(lambda p: jnp.sum((p["w"] - 1.0) ** 2))(params)
    updates, state = tx.update(grads, state, params, value=loss, unexpected_extra_arg_nobody_uses=1)
    return optax.apply_updates(params, updates), state

  state = tx.init(params)
  params, state = step(params, state)
  step(params, state)
  assert step._cache_size() == 1


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16, jnp.float32])
def test_dtype_preserved(dtype):
  tx = fj.flood(0.5)
  grads = {"a": jnp.ones(3, dtype), "b": jnp.ones((), jnp.float32)}
  for value in [jnp.asarray(0.1, dtype), 0.9]:
    updates, _ = jax.jit(tx.update)(grads, tx.init(grads), value=value)
    assert updates["a"].dtype == dtype
    assert updates["b"].dtype == jnp.float32


def test_vmap_over_flood_levels():
  levels = jnp.array([0.0, 0.3, 0.6, 0.9])
  tx_update = lambda level: fj.flood(level).update(
    jnp.ones(2), fj.flood(level).init(None), value=0.5
  )
  updates, states = jax.jit(jax.vmap(tx_update))(levels)
  np.testing.assert_array_equal(updates[:, 0], [1.0, 1.0, -1.0, -1.0])
  np.testing.assert_array_equal(states.flooded_count, [0, 0, 1, 1])


def test_works_under_sharding():
  mesh = jax.make_mesh((jax.device_count(),), ("x",))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("x"))
  n = 4 * jax.device_count()
  grads = jax.device_put(jnp.arange(n, dtype=jnp.float32), sharding)
  tx = optax.chain(fj.flood(0.5), optax.sgd(1.0))
  updates, _ = jax.jit(tx.update)(grads, tx.init(grads), grads, value=0.2)
  np.testing.assert_array_equal(updates, jnp.arange(n, dtype=jnp.float32))
  assert updates.sharding.is_equivalent_to(sharding, 1)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), np.float32("nan")])
def test_bad_python_flood_level(bad):
  with pytest.raises(ValueError, match="flood_level must be a finite number, got"):
    fj.flood(bad)


def test_a_shifted_loss_at_a_shifted_negative_level_trains_like_the_unshifted_one():
  # J' = J - c floods at b' = b - c exactly where J floods at b: same signs, same updates.
  # (c = 2.0 and the values below are exact in float32, so J - c < b - c iff J < b.)
  target = jnp.array([0.5, -1.0, 2.0])

  def loss(params):
    return jnp.mean((params - target) ** 2)

  shift = 2.0
  opt = optax.sgd(0.05, momentum=0.9)
  plain, shifted = optax.chain(fj.flood(0.25), opt), optax.chain(fj.flood(0.25 - shift), opt)
  p1 = p2 = jnp.array([1.0, 0.0, 1.0])
  s1, s2 = plain.init(p1), shifted.init(p2)
  signs = []
  for _ in range(40):
    v1, g1 = jax.value_and_grad(loss)(p1)
    v2, g2 = jax.value_and_grad(lambda p: loss(p) - shift)(p2)
    u1, s1 = plain.update(g1, s1, p1, value=v1)
    u2, s2 = shifted.update(g2, s2, p2, value=v2)
    np.testing.assert_array_equal(u1, u2)
    signs.append(bool(v1 < 0.25))
    p1, p2 = optax.apply_updates(p1, u1), optax.apply_updates(p2, u2)
  np.testing.assert_array_equal(p1, p2)
  assert any(signs) and not all(signs)  # it both ascended and descended
  assert int(s1[0].flooded_count) == int(s2[0].flooded_count) == sum(signs)


def test_a_negative_level_floods_a_loss_that_goes_below_it():
  tx = optax.chain(fj.flood(-1.0), optax.sgd(1.0))
  state = tx.init(jnp.ones(2))
  up, state = tx.update(jnp.ones(2), state, value=-1.5)
  np.testing.assert_array_equal(up, -jnp.ones(2) * -1.0)  # ascent: sgd's -lr * (-g)
  up, state = tx.update(jnp.ones(2), state, value=-0.5)
  np.testing.assert_array_equal(up, -jnp.ones(2))
  assert float(fj.flooded_fraction(state)) == 0.5


def test_non_scalar_flood_level():
  with pytest.raises(ValueError, match=r"scalar.*\(3,\)"):
    fj.flood(np.array([0.1, 0.2, 0.3]))


def test_missing_value_is_a_type_error_saying_how():
  tx = optax.chain(fj.flood(0.1), optax.sgd(0.1))
  with pytest.raises(TypeError, match=r"value=loss"):
    tx.update(jnp.ones(2), tx.init(jnp.ones(2)), jnp.ones(2))


def test_non_scalar_value_names_its_shape():
  tx = fj.flood(0.1)
  with pytest.raises(ValueError, match=r"\(8,\)"):
    tx.update(jnp.ones(2), tx.init(jnp.ones(2)), value=jnp.ones(8))


@pytest.mark.parametrize("value", [float("nan"), jnp.float32(jnp.nan)])
def test_nan_value_gives_nan_updates(value):
  tx = fj.flood(0.1)
  updates, _ = jax.jit(tx.update)(jnp.ones(3), tx.init(jnp.ones(3)), value=value)
  assert np.all(np.isnan(updates))
  # ... which an optax.apply_if_finite after flood then skips.
  guarded = optax.chain(fj.flood(0.1), optax.apply_if_finite(optax.sgd(1.0), 3))
  gstate = guarded.init(jnp.ones(3))
  updates, gstate = guarded.update(jnp.ones(3), gstate, jnp.ones(3), value=value)
  np.testing.assert_array_equal(updates, jnp.zeros(3))
  assert int(gstate[1].notfinite_count) == 1


def test_tree_map_params_works():
  tx = optax.chain(fj.flood(0.1), optax.adam(1e-3))
  params = {"w": jnp.ones(3)}
  state = tx.init(params)
  mapped = optax.tree.map_params(tx, lambda v: v, state)
  chex.assert_trees_all_equal(mapped, state)


@pytest.mark.parametrize(
  "bad,match",
  [
    (True, "got the bool True"),
    (np.bool_(True), "got the bool"),
    (jnp.array(False), "real number, got .* dtype bool"),
    ("0.1", "must be a number, e.g. 0.05; got '0.1'"),
    (None, "must be a number, e.g. 0.05; got None"),
    (1j, "real number, got 1j"),
    ([[0.1], 0.2], "must be a number"),
  ],
)
def test_a_flood_level_that_is_no_number_is_one_line(bad, match):
  with pytest.raises(ValueError, match=r"^flood_level .*" + match):
    fj.flood(bad)


def test_a_traced_level_is_checked_by_its_type_and_a_schedule_by_what_it_returns():
  def step(level):
    tx = fj.flood(level)
    return tx.update(jnp.ones(2), tx.init(jnp.ones(2)), value=0.2)[0]

  with pytest.raises(ValueError, match=r"dtype bool"):
    jax.jit(step)(jnp.array(True))
  np.testing.assert_array_equal(jax.jit(step)(jnp.float32(0.5)), -jnp.ones(2))
  tx = fj.flood(lambda count: "0.1")
  with pytest.raises(ValueError, match=r"^flood_level's schedule value must be a number"):
    tx.update(jnp.ones(2), tx.init(jnp.ones(2)), value=0.2)
