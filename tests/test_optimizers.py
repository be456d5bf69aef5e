"""The optimizer factory: decoupled and L2 weight decay, and the commands that use it."""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from flood_jax import reproduce
from flood_jax._optimizers import optimizer
from flood_jax.cli.sweep_config import DECAY, SweepConfig

PARAMS = {"w": jnp.array([[0.5, -1.0], [2.0, 0.25]]), "b": jnp.array([0.1, -0.3])}


def _updates(tx, steps=4, hyperparams=None):
  """The updates of ``steps`` steps on fixed gradients, and the final state."""
  params, state = PARAMS, tx.init(PARAMS)
  if hyperparams:
    state.hyperparams.update({k: jnp.asarray(v) for k, v in hyperparams.items()})
  out = []
  for step in range(steps):
    keys = jax.random.split(jax.random.key(step), 2)
    grads = {
      "w": jax.random.normal(keys[0], (2, 2)),
      "b": jax.random.normal(keys[1], (2,)),
    }
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
    out.append(updates)
  return out, state


def _equal(a, b):
  leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
  return len(leaves_a) == len(leaves_b) and all(
    np.array_equal(x, y) for x, y in zip(leaves_a, leaves_b, strict=True)
  )


def _same_updates(new, old, **kwargs):
  (new_updates, new_state), (old_updates, old_state) = _updates(new, **kwargs), _updates(old)
  assert jax.tree.structure(new_state) == jax.tree.structure(old_state)
  assert _equal(new_updates, old_updates)


@pytest.mark.parametrize(
  "kwargs,chain",
  [
    (
      dict(decay="l2", weight_decay=0.1),
      lambda: optax.chain(optax.add_decayed_weights(0.1), optax.adam(0.01)),
    ),
    (dict(decay="decoupled", weight_decay=0.1), lambda: optax.adamw(0.01, weight_decay=0.1)),
    (dict(decay="l2"), lambda: optax.adam(0.01)),
    (dict(decay="decoupled"), lambda: optax.adam(0.01)),
  ],
)
def test_adam_choices_are_the_optax_chains(kwargs, chain):
  _same_updates(optimizer("adam", 0.01, **kwargs), chain())


@pytest.mark.parametrize("momentum", [None, 0.9])
def test_sgd_choices_are_the_optax_chains(momentum):
  l2 = optax.chain(optax.add_decayed_weights(0.1), optax.sgd(0.05, momentum=momentum))
  _same_updates(optimizer("sgd", 0.05, decay="l2", weight_decay=0.1, momentum=momentum), l2)
  trace = [] if momentum is None else [optax.trace(decay=momentum)]
  decoupled = optax.chain(
    *trace, optax.add_decayed_weights(0.1), optax.scale_by_learning_rate(0.05)
  )
  _same_updates(
    optimizer("sgd", 0.05, decay="decoupled", weight_decay=0.1, momentum=momentum), decoupled
  )


def test_decoupled_and_l2_differ_where_the_maths_says():
  def updates(name, decay, momentum=None):
    tx = optimizer(name, 0.05, decay=decay, weight_decay=0.1, momentum=momentum)
    return _updates(tx)[0]

  # Plain SGD: -lr * (g + wd * p) either way, the same arithmetic.
  assert _equal(updates("sgd", "l2"), updates("sgd", "decoupled"))
  # With momentum the decay enters the trace (L2) or not (decoupled): the first
  # step is the same, later ones are not.
  l2, decoupled = updates("sgd", "l2", 0.9), updates("sgd", "decoupled", 0.9)
  assert _equal(l2[0], decoupled[0]) and not _equal(l2[1:], decoupled[1:])
  # Adam: L2's decay is normalized with the gradient; decoupled adds lr * wd * p after.
  l2, decoupled = updates("adam", "l2"), updates("adam", "decoupled")
  assert not _equal(l2[0], decoupled[0])
  plain = _updates(optax.adam(0.05))[0][0]
  np.testing.assert_allclose(
    decoupled[0]["w"], plain["w"] - 0.05 * 0.1 * PARAMS["w"], rtol=1e-6, atol=1e-7
  )


@pytest.mark.parametrize("name,momentum", [("adam", None), ("sgd", 0.9), ("sgd", None)])
@pytest.mark.parametrize("decay", ["decoupled", "l2"])
def test_injected_hyperparameters_act_as_the_compiled_in_values(name, decay, momentum):
  tx = optimizer(name, 0.5, decay=decay, weight_decay=0.0, momentum=momentum, inject=True)
  assert {"learning_rate", "weight_decay"} <= set(tx.init(PARAMS).hyperparams)
  fixed = optimizer(name, 0.05, decay=decay, weight_decay=0.1, momentum=momentum)
  injected, _ = _updates(tx, hyperparams={"learning_rate": 0.05, "weight_decay": 0.1})
  want = jax.tree.leaves(_updates(fixed)[0])
  for got, expected in zip(jax.tree.leaves(injected), want, strict=True):
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-8)  # float32 round-off


@pytest.mark.parametrize(
  "args,kwargs,match",
  [
    (("rmsprop", 0.1), dict(decay="l2"), "unknown optimizer 'rmsprop'"),
    (("adam", 0.1), dict(decay="adamw"), "decay must be 'decoupled' or 'l2'"),
    (("adam", 0.0), dict(decay="l2"), "learning_rate must be a finite number > 0"),
    (("adam", True), dict(decay="l2"), "learning_rate must be"),
    (("sgd", 0.1), dict(decay="l2", weight_decay=-1e-4), "weight_decay must be .* >= 0"),
    (("adam", 0.1), dict(decay="l2", momentum=0.9), "momentum applies to sgd only"),
    (("sgd", 0.1), dict(decay="l2", momentum=1.0), r"momentum must be in \[0, 1\)"),
  ],
)
def test_bad_input_is_one_line(args, kwargs, match):
  with pytest.raises(ValueError, match=match) as err:
    optimizer(*args, **kwargs)
  assert "\n" not in str(err.value)


# What the command line and reproduce built before the factory, verbatim: the
# factory must give the same updates (and state) for each.


def _old_cli_optimizer(config):
  lr, decay = config["lr"], config["weight_decay"]
  momentum = config["momentum"] or None

  def sgd_chain(learning_rate, weight_decay, momentum):
    return optax.chain(
      optax.add_decayed_weights(weight_decay), optax.sgd(learning_rate, momentum=momentum)
    )

  if any(isinstance(config[k], list) for k in ("lr", "weight_decay")):
    start = {
      name: config[key][0] if isinstance(config[key], list) else config[key]
      for key, name in {"lr": "learning_rate", "weight_decay": "weight_decay"}.items()
    }
    if config["optimizer"] == "adam":
      return optax.inject_hyperparams(optax.adamw)(**start)
    return optax.inject_hyperparams(sgd_chain, static_args=("momentum",))(
      momentum=momentum, **start
    )
  if config["optimizer"] == "adam":
    return optax.adamw(lr, weight_decay=decay) if decay else optax.adam(lr)
  sgd = optax.sgd(lr, momentum=momentum)
  return optax.chain(optax.add_decayed_weights(decay), sgd) if decay else sgd


@pytest.mark.parametrize(
  "config",
  [
    dict(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=0.0),
    dict(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4),
    dict(optimizer="sgd", lr=0.1, momentum=0.0, weight_decay=5e-4),
    dict(optimizer="adam", lr=1e-3, momentum=None, weight_decay=0.0),
    dict(optimizer="adam", lr=1e-3, momentum=None, weight_decay=1e-2),
    dict(optimizer="adam", lr=[1e-3, 3e-3], momentum=None, weight_decay=0.0),
    dict(optimizer="adam", lr=1e-3, momentum=None, weight_decay=[0.0, 1e-2]),
    dict(optimizer="sgd", lr=[0.03, 0.1], momentum=0.9, weight_decay=[0.0, 5e-4]),
  ],
)
def test_the_command_line_builds_the_optimizer_it_built_before(config):
  options: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}
  _same_updates(SweepConfig(**options).make_optimizer(), _old_cli_optimizer(config))


def _old_reproduce_optimizer(name, learning_rate=None, weight_decay=0.0):
  if name == "sgd":
    sgd = optax.sgd(0.01 if learning_rate is None else learning_rate, momentum=0.9)
    if weight_decay:
      return optax.chain(optax.add_decayed_weights(weight_decay), sgd)
    return sgd
  lr = 0.001 if learning_rate is None else learning_rate
  if weight_decay:
    return optax.chain(optax.add_decayed_weights(weight_decay), optax.adam(lr))
  return optax.adam(lr)


@pytest.mark.parametrize("name", ["sgd", "adam"])
@pytest.mark.parametrize("learning_rate,weight_decay", [(None, 0.0), (None, 1e-5), (0.02, 1e-2)])
def test_reproduce_builds_the_optimizer_it_built_before(name, learning_rate, weight_decay):
  _same_updates(
    reproduce.make_optimizer(name, learning_rate, weight_decay),
    _old_reproduce_optimizer(name, learning_rate, weight_decay),
  )


def test_both_commands_say_which_decay_they_use(capsys):
  from flood_jax import cli

  assert cli.main(["sweep", "--help"]) == 0
  text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
  assert "decoupled for adam (AdamW), L2 for sgd" in text
  assert cli.main(["reproduce", "--help"]) == 0
  text = " ".join(capsys.readouterr().out.split())
  assert "benchmark's 1e-5 is L2, added to the gradient before Adam" in text
  assert DECAY == {"adam": "decoupled", "sgd": "l2"}
