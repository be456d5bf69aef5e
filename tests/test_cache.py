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
