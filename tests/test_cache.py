"""clear_caches empties every in-memory cache registered with _cache.register."""

import functools

import pytest

from flood_jax import _cache


@pytest.fixture
def registry():
  """The registry as it was before the test, restored after it."""
  saved = list(_cache._CLEARERS)
  yield _cache._CLEARERS
  _cache._CLEARERS[:] = saved


def test_clear_caches_empties_registered_memos(registry):
  calls = []

  @functools.lru_cache(maxsize=8)
  def square(x):
    calls.append(x)
    return x * x

  memo = {"key": "value"}
  for clear in (square.cache_clear, memo.clear):
    assert _cache.register(clear) == clear
  assert square(3) == 9 and square(3) == 9 and calls == [3]  # the second call is served
  _cache.clear_caches()
  assert memo == {} and square.cache_info().currsize == 0
  assert square(3) == 9 and calls == [3, 3]  # computed again after clearing


def test_a_function_registered_twice_is_called_once(registry):
  calls = []
  clear = functools.partial(calls.append, "cleared")
  _cache.register(clear)
  _cache.register(clear)
  _cache.clear_caches()
  assert calls == ["cleared"]


def test_clear_caches_empties_the_engines_caches_and_a_sweep_after_it_is_the_same():
  import numpy as np
  import optax
  from helpers import SmallMLP, _toy_dataset, assert_bitwise_equal

  import flood_jax as fj
  from flood_jax._sweep import adapters, cache, layout

  data = _toy_dataset()
  kw = dict(flood_levels=[0.0, 0.1], seeds=[0], optimizer=optax.sgd(0.1), epochs=2,
            batch_size=20, chunk_size=2, progress=False)  # fmt: skip
  first = fj.sweep(SmallMLP(width=8), data, **kw)
  assert cache._PROGRAMS and layout._DEVICE_DATA and adapters._adapt_cached.cache_info().currsize
  fj.clear_caches()
  assert not cache._PROGRAMS and not cache._BY_COMPUTATION and not layout._DEVICE_DATA
  assert adapters._adapt_cached.cache_info().currsize == 0
  assert layout._count_params.cache_info().currsize == 0
  assert_bitwise_equal(fj.sweep(SmallMLP(width=8), data, **kw), first)
  assert np.isfinite(first.history["val_loss"]).all()
