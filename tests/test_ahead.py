"""The training call compiled ahead, in a thread: the call then compiles nothing more."""

import flax.linen as nn
import jax
import numpy as np
import optax

import flood_jax as fj


class Wide(nn.Module):
  """A model no other test builds, so its programs are compiled here first."""

  @nn.compact
  def __call__(self, x, train):
    del train
    return nn.Dense(3)(nn.tanh(nn.Dense(13)(x)))


def test_a_first_sweep_compiles_its_two_programs_once_each():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(48, 5)).astype(np.float32)
  y = np.argmax(x[:, :3], axis=1).astype(np.int32)
  data = fj.Dataset(x_train=x, y_train=y, x_val=x, y_val=y, x_test=x, y_test=y)
  compiled = []

  def listen(event, duration, **_):
    del duration
    if event == "/jax/core/compile/backend_compile_duration":
      compiled.append(event)

  jax.monitoring.register_event_duration_secs_listener(listen)
  try:
    result = fj.sweep(
      Wide(),
      data,
      flood_levels=[0.0, 0.1, 0.2],
      seeds=[0],
      optimizer=optax.sgd(0.3, momentum=0.9),
      epochs=6,
      batch_size=16,
      chunk_size=3,
      progress=False,
    )
  finally:
    jax.monitoring.unregister_event_duration_listener(listen)
  # The initialization and the training call; the call compiled ahead is not compiled again.
  assert len(compiled) == 2
  assert np.all(np.isfinite(result.history["val_loss"]))
