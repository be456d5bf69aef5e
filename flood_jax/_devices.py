"""One XLA CPU device per core, so a plain script gets the sweep's fast CPU layout.

On a CPU, JAX makes one device that runs one program at a time, and a small
model's program keeps one core busy. A sweep sharded over one device per core
trains on all of them (measured on 2 cores: about twice the models per
second). The device count can only be set before JAX starts its backend, so
``import flood_jax`` sets ``jax_num_cpu_devices`` to the number of cores when
all of these hold:

- JAX has not started (nothing has run on a device yet);
- the machine has no accelerator plugin installed (CUDA, ROCm, TPU) and
  ``JAX_PLATFORMS`` names no accelerator;
- neither ``XLA_FLAGS=--xla_force_host_platform_device_count`` nor
  ``jax_num_cpu_devices`` was set by the user;
- ``FLOOD_JAX_CPU_DEVICES`` is unset (a number sets the count itself; ``off``
  or ``1`` leaves JAX alone).

What it changes for the rest of a program: ``jax.devices()`` lists one CPU
device per core instead of one. Arrays and ``jax.jit`` still use the first
device by default; only code that spreads work over ``jax.devices()``
(``pmap``, meshes) sees more of them.
"""

from __future__ import annotations

import importlib.util
import os

ENV = "FLOOD_JAX_CPU_DEVICES"
_ACCELERATOR_PLUGINS = (
  "jax_cuda12_plugin",
  "jax_cuda13_plugin",
  "jax_rocm60_plugin",
  "jax_rocm7_plugin",
  "libtpu",
  "jax_plugins",
)
_set_by_flood_jax = False


def cpu_cores() -> int:
  """The CPU cores this process may use."""
  try:
    return len(os.sched_getaffinity(0))
  except (AttributeError, OSError):
    return os.cpu_count() or 1


def set_cpu_devices(count: int) -> bool:
  """Asks JAX for ``count`` CPU devices, if it has not started and the user chose none.

  A count flood_jax chose itself at import may be replaced (the command
  line's ``--devices`` does). Leaves JAX alone when ``JAX_PLATFORMS`` names
  another platform. Returns whether the setting took effect.
  """
  if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
    return False
  if any(p != "cpu" for p in _platforms()):
    return False
  import jax

  # JAX's Config defines its options at run time, which pyright cannot see.
  num_cpu_devices = jax.config.jax_num_cpu_devices  # pyright: ignore[reportAttributeAccessIssue]
  if num_cpu_devices >= 0 and not _set_by_flood_jax:
    return False
  if backend_started():
    return False
  jax.config.update("jax_num_cpu_devices", int(count))
  return True


def use_cpu_cores_at_import() -> None:
  """What ``import flood_jax`` does (see the module docstring)."""
  global _set_by_flood_jax
  setting = os.environ.get(ENV, "").strip().lower()
  if setting in ("off", "no", "false", "0"):
    return
  if not _platforms() and any(_installed(name) for name in _ACCELERATOR_PLUGINS):
    return
  count = int(setting) if setting.isdigit() else cpu_cores()
  if count > 1 and set_cpu_devices(count):
    _set_by_flood_jax = True


def backend_started() -> bool:
  """Whether JAX has started a backend (after which the device count is fixed)."""
  try:
    from jax._src import xla_bridge  # Not public; no public check exists.

    return bool(xla_bridge.backends_are_initialized())
  except (ImportError, AttributeError):
    return False


def _platforms() -> list[str]:
  """The platforms ``JAX_PLATFORMS`` names (none: JAX picks)."""
  return [p.strip() for p in os.environ.get("JAX_PLATFORMS", "").split(",") if p.strip()]


def _installed(name: str) -> bool:
  try:
    return importlib.util.find_spec(name) is not None
  except (ImportError, ValueError):
    return False


def describe_cpu() -> str:
  """This machine's CPU in words, for provenance notes: cores, model and vector unit.

  The vector unit matters because XLA's CPU code (and so a sweep's float
  round-off, which flooding's sign decisions can turn into another
  trajectory) depends on it. E.g. ``"2-core AMD EPYC (x86_64, AVX-512)"``.
  """
  import platform

  model, flags = "", set()
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        key, _, value = line.partition(":")
        if key.strip() == "model name" and not model:
          model = value.strip()
        elif key.strip() == "flags" and not flags:
          flags = set(value.split())
  except OSError:
    pass
  vector = next(
    (
      name
      for flag, name in [("avx512f", "AVX-512"), ("avx2", "AVX2"), ("neon", "NEON")]
      if flag in flags
    ),
    "",
  )
  details = ", ".join(x for x in (platform.machine(), vector) if x)
  return f"{os.cpu_count()}-core {model or platform.processor() or 'CPU'} ({details})"
