"""Caches: JAX's persistent compilation cache, and the library's own in-memory ones.

A sweep's programs take seconds to compile and milliseconds per model to run,
so a second run of the same script (or ``flood-jax sweep`` with the same
settings) should not compile again. JAX can keep compiled programs on disk,
keyed by the program itself, across processes; :func:`enable_compile_cache`
turns that on.

Within a process the library keeps a few memos (compiled programs, model
adapters, arrays already on the devices). Each module that keeps one
registers a function that empties it (:func:`register`);
:func:`clear_caches` calls them all, e.g. to free device memory or between
tests that must not share state.
"""

from __future__ import annotations

import os
from collections.abc import Callable

ENV = "FLOOD_JAX_COMPILE_CACHE"


def default_compile_cache_dir() -> str:
  """``$FLOOD_JAX_COMPILE_CACHE``, else ``$XDG_CACHE_HOME/flood_jax/xla`` (``~/.cache/...``)."""
  if os.environ.get(ENV):
    return os.path.expanduser(os.environ[ENV])
  root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(root, "flood_jax", "xla")


def enable_compile_cache(path: str | os.PathLike[str] | None = None) -> str | None:
  """Keeps JAX's compiled programs in ``path`` so later processes skip compiling.

  The same as ``jax.config.update("jax_compilation_cache_dir", path)``, with
  every program cached however fast it compiled (JAX's default skips those
  under a second, which a sweep's initialization often is). It applies to
  everything the process compiles with JAX afterwards, not only sweeps. Set
  ``FLOOD_JAX_COMPILE_CACHE=off`` to make this a no-op.

  Args:
    path: the cache directory (created if missing); default
      :func:`default_compile_cache_dir`.

  Returns:
    The directory used, or ``None`` when turned off by the environment.

  Examples:
    >>> import flood_jax as fj
    >>> fj.enable_compile_cache("/tmp/flood_jax_xla")  # doctest: +SKIP
    '/tmp/flood_jax_xla'
  """
  if path is None and os.environ.get(ENV, "").lower() in ("off", "0", "false", "no"):
    return None
  import jax

  directory = os.path.abspath(os.path.expanduser(os.fspath(path or default_compile_cache_dir())))
  os.makedirs(directory, exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", directory)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  return directory


_CLEARERS: list[Callable[[], object]] = []


def register(clear: Callable[[], object]) -> Callable[[], object]:
  """Registers ``clear`` (no arguments) to be called by :func:`clear_caches`; returns it.

  A module-level memo registers its clearing function where it is defined,
  e.g. ``register(_PROGRAMS.clear)`` or ``register(_adapt_cached.cache_clear)``.
  Registering the same function twice calls it once.
  """
  if clear not in _CLEARERS:
    _CLEARERS.append(clear)
  return clear


def clear_caches() -> None:
  """Empties every in-memory cache the library keeps (each registered with :func:`register`).

  Later sweeps rebuild what they need: programs are traced and compiled again
  (or read from the persistent compilation cache, which this leaves alone),
  data are put on the devices again. Results already returned are unaffected.

  Examples:
    >>> from flood_jax._cache import clear_caches, register
    >>> memo = {"key": "value"}
    >>> _ = register(memo.clear)
    >>> clear_caches()
    >>> memo
    {}
  """
  for clear in list(_CLEARERS):
    clear()
