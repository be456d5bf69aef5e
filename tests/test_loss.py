"""flooded_loss and iflooded_loss: values, gradient identities, jit/vmap/grad."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flood_jax as fj


@pytest.mark.parametrize(
  "loss,level,expected",
  [
    (0.3, 0.1, 0.3),  # above b: unchanged
    (0.05, 0.1, 0.15),  # below b: reflected to 2b - J
    (0.1, 0.1, 0.1),  # at b
    (0.7, 0.0, 0.7),  # b = 0 is the ordinary loss
  ],
)
def test_flooded_loss_values(loss, level, expected):
  np.testing.assert_allclose(fj.flooded_loss(loss, level), expected, rtol=1e-6)


def test_flooded_loss_gradient_identity():
  """grad |J - b| + b = s * grad J, s = +1 iff J >= b (including J == b)."""
  w_data = jax.random.normal(jax.random.key(0), (8, 3))

  def batch_loss(w):
    return jnp.mean((w_data @ w) ** 2)

  w = jnp.array([0.3, -0.2, 0.5])
  j = batch_loss(w)
  grad_j = jax.grad(batch_loss)(w)
  for level, sign in [(0.0, 1.0), (j / 2, 1.0), (2 * j, -1.0)]:
    grad_flooded = jax.jit(jax.grad(lambda w, b: fj.flooded_loss(batch_loss(w), b)))(w, level)
    chex.assert_trees_all_equal(grad_flooded, sign * grad_j)


def test_flooded_loss_gradient_at_the_level_is_plus_one():
  # The transform's sign convention rests on this: descent at J == b.
  for level in [0.0, 0.25, 3.0]:
    assert float(jax.grad(fj.flooded_loss)(level, level)) == 1.0
    assert float(jax.jit(jax.grad(fj.flooded_loss))(level, level)) == 1.0


def test_flooded_loss_vmap_over_traced_levels():
  levels = jnp.array([0.0, 0.2, 0.5, 1.0])
  out = jax.jit(jax.vmap(fj.flooded_loss, in_axes=(None, 0)))(0.4, levels)
  np.testing.assert_allclose(out, [0.4, 0.4, 0.6, 1.6], rtol=1e-6)
  grads = jax.vmap(jax.grad(fj.flooded_loss), in_axes=(None, 0))(0.4, levels)
  np.testing.assert_array_equal(grads, [1.0, 1.0, -1.0, -1.0])


def test_iflooded_loss_is_mean_of_per_example_flooding():
  losses = jnp.array([0.0, 0.05, 0.3, 1.2])
  b = 0.1
  expected = np.mean(np.abs(np.asarray(losses) - b) + b)
  np.testing.assert_allclose(fj.iflooded_loss(losses, b), expected, rtol=1e-6)
  # Differs from flooding the mean, which here is above b and so unchanged.
  np.testing.assert_allclose(fj.flooded_loss(losses.mean(), b), losses.mean(), rtol=1e-6)
  assert float(fj.iflooded_loss(losses, b)) > float(losses.mean())


def test_iflooded_loss_gradient_flips_per_example():
  x = jnp.array([1.0, 2.0])
  # Per-example squared losses: 0.01 (below b) and 4.0 (above b).
  w = 0.1
  grad = jax.grad(lambda w: fj.iflooded_loss((w * x) ** 2 * jnp.array([1.0, 100.0]), 0.5))(w)
  expected = np.mean([-2 * w * 1.0, 2 * w * 4.0 * 100.0])
  np.testing.assert_allclose(grad, expected, rtol=1e-5)


def test_iflooded_loss_vmap_over_levels():
  losses = jnp.array([0.0, 0.4])
  out = jax.vmap(fj.iflooded_loss, in_axes=(None, 0))(losses, jnp.array([0.0, 0.2]))
  np.testing.assert_allclose(out, [0.2, 0.4], rtol=1e-6)  # b=0.2: (0.4 + 0.4) / 2


def test_iflooded_loss_rejects_a_scalar():
  with pytest.raises(ValueError, match="flooded_loss"):
    fj.iflooded_loss(0.3, 0.1)


def test_iflooded_loss_per_example_levels_gradient():
  """grad mean_i(|l_i - b_i| + b_i) = mean_i s_i grad l_i, s_i = +1 iff l_i >= b_i (ties: +1)."""
  x = jax.random.normal(jax.random.key(1), (6, 3))
  w = jnp.array([0.4, -0.3, 0.2])

  def losses(w):
    return (x @ w) ** 2

  values = losses(w)
  # Each example gets a level of its own: half below their loss, one equal, the rest above.
  levels = jnp.where(jnp.arange(6) % 2 == 0, values / 2, 2 * values + 0.1)
  levels = levels.at[1].set(values[1])
  signs = jnp.where(values >= levels, 1.0, -1.0)
  assert float(signs[1]) == 1.0
  grad = jax.jit(jax.grad(lambda w: fj.iflooded_loss(losses(w), levels)))(w)
  per_example = jax.jacobian(losses)(w)  # (n, 3)
  expected = jnp.mean(signs[:, None] * per_example, axis=0)
  np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-7)


def test_iflooded_loss_equal_per_example_levels_is_iflood():
  losses = jax.random.uniform(jax.random.key(2), (4, 16))
  b = 0.3
  chex.assert_trees_all_equal(
    fj.iflooded_loss(losses, jnp.full((4, 16), b)), fj.iflooded_loss(losses, b)
  )
  # One level per row (lower rank) keeps its old meaning.
  rows = jnp.array([0.0, 0.1, 0.3, 0.9])
  chex.assert_trees_all_equal(
    fj.iflooded_loss(losses, rows),
    jnp.stack([fj.iflooded_loss(losses[i], rows[i]) for i in range(4)]),
  )


def test_iflooded_loss_rejects_levels_of_higher_rank():
  with pytest.raises(ValueError, match="one per example"):
    fj.iflooded_loss(jnp.zeros(3), jnp.zeros((2, 3)))


def test_a_shifted_loss_at_a_shifted_negative_level_has_the_same_gradient():
  # |(J - c) - (b - c)| + (b - c) = J~ - c: the same gradient at every w, below 0 too.
  x = jnp.array([[1.0, 2.0], [-1.0, 0.5], [0.3, -0.7]])
  y = jnp.array([0.5, -1.0, 0.2])

  def loss(w):
    return jnp.mean((x @ w - y) ** 2)

  def per_example(w):
    return (x @ w - y) ** 2

  shift = 3.0
  for w in [jnp.array([0.1, 0.2]), jnp.array([0.6, -0.4]), jnp.array([2.0, 1.0])]:
    for level in [0.05, 0.3, 1.0]:
      plain = jax.grad(lambda w, b=level: fj.flooded_loss(loss(w), b))(w)
      shifted = jax.grad(lambda w, b=level: fj.flooded_loss(loss(w) - shift, b - shift))(w)
      np.testing.assert_allclose(shifted, plain, rtol=1e-6)
      np.testing.assert_allclose(
        jax.grad(lambda w, b=level: fj.iflooded_loss(per_example(w) - shift, b - shift))(w),
        jax.grad(lambda w, b=level: fj.iflooded_loss(per_example(w), b))(w),
        rtol=1e-6,
      )


def test_a_negative_level_floods_a_negative_loss():
  assert float(fj.flooded_loss(-2.0, -1.0)) == 0.0  # 2b - J = -2 + 2
  assert float(jax.grad(fj.flooded_loss)(-2.0, -1.0)) == -1.0
  assert float(jax.grad(fj.flooded_loss)(-0.5, -1.0)) == 1.0


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), np.array(-np.inf)])
def test_a_non_finite_level_is_one_line(bad):
  with pytest.raises(ValueError, match=r"^flooded_loss needs finite flood levels, got .*$"):
    fj.flooded_loss(0.3, bad)
  with pytest.raises(ValueError, match="iflooded_loss needs finite flood levels"):
    fj.iflooded_loss(jnp.ones(3), np.array([0.1, bad, 0.2]))


@pytest.mark.parametrize(
  "bad,match",
  [
    (True, "got the bool True"),
    (np.bool_(False), "got the bool"),
    (jnp.array(True), "real numbers, got .* dtype bool"),
    ("0.1", "must be a number or an array of numbers, got '0.1'"),
    (None, "must be a number or an array of numbers, got None"),
    (1j, "real numbers, got 1j"),
    ([0.1, [0.2]], "must be a number or an array of numbers"),
  ],
)
def test_a_level_that_is_no_number_is_one_line(bad, match):
  with pytest.raises(ValueError, match=r"^flooded_loss.s flood_level .*" + match):
    fj.flooded_loss(0.3, bad)
  with pytest.raises(ValueError, match=r"^iflooded_loss.s flood_level .*" + match):
    fj.iflooded_loss(jnp.ones(3), bad)


def test_levels_of_a_shape_that_does_not_fit_the_losses_are_one_line():
  with pytest.raises(ValueError, match=r"shape \(2,\) for a loss of shape \(3,\)"):
    fj.flooded_loss(jnp.ones(3), jnp.ones(2))
  with pytest.raises(ValueError, match=r"shape \(2,\) for losses of shape \(3,\).*one per example"):
    fj.iflooded_loss(jnp.ones(3), np.ones(2))
  with pytest.raises(ValueError, match=r"one per row \(2,\) or one per example \(2, 3\)"):
    fj.iflooded_loss(jnp.ones((2, 3)), jnp.ones(3))  # (3,) is neither (2,) nor (2, 3)
  # The shapes are checked statically: under jit, before JAX broadcasts.
  with pytest.raises(ValueError, match=r"shape \(2,\) for a loss of shape \(3,\)"):
    jax.jit(fj.flooded_loss)(jnp.ones(3), jnp.ones(2))
  with pytest.raises(ValueError, match=r"got the bool|dtype bool"):
    jax.jit(fj.iflooded_loss)(jnp.ones(3), True)
  # ... and the shapes that fit still work under jit, vmap and grad, with traced levels.
  rows = jax.jit(fj.iflooded_loss)(jnp.ones((2, 3)), jnp.array([0.5, 2.0]))
  np.testing.assert_allclose(rows, [1.0, 3.0])
  grads = jax.vmap(jax.grad(fj.flooded_loss, argnums=1), in_axes=(None, 0))(
    0.3, jnp.array([0.1, 0.5])
  )
  np.testing.assert_allclose(grads, [0.0, 2.0])


def test_losses_that_are_no_numbers_are_one_line():
  with pytest.raises(ValueError, match=r"^flooded_loss's loss must be a number .*got None"):
    fj.flooded_loss(None, 0.1)
  with pytest.raises(ValueError, match=r"^iflooded_loss's per_example_losses must be .*'x'"):
    fj.iflooded_loss("x", 0.1)
