"""The layout of a sweep: devices, models per device (the chunk), and the data on them.

A sweep of ``M`` models on ``D`` devices runs ``chunk_size`` models per
device per call, so ``chunk_size * D`` models per call and
``ceil(M / (chunk_size * D))`` calls one after another (a short last call is
padded with copies of the last model). Results depend on the layout only
through float round-off: see :func:`flood_jax.sweep`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import weakref
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from flood_jax._cache import register
from flood_jax._dataset import Dataset, InputSpec
from flood_jax._sweep import hosts
from flood_jax._sweep.adapters import adapt
from flood_jax._sweep.program import DeviceData

AXIS = "models"


@dataclasses.dataclass(frozen=True)
class Chunk:
  """The models of one call: their flat indices (padded with copies of the last) and where."""

  call: int
  index: np.ndarray  # (group,) flat model indices, padded
  real: int  # how many of them are not padding

  @property
  def models(self) -> np.ndarray:
    return self.index[: self.real]


@dataclasses.dataclass(frozen=True, eq=False)
class Layout:
  """Where a sweep runs: the mesh of its devices and the models per device per call."""

  devices: tuple[Any, ...]
  num_devices: int
  chunk_size: int

  @functools.cached_property
  def mesh(self) -> Mesh:
    return Mesh(np.asarray(self.devices[: self.num_devices]), (AXIS,))

  @property
  def group(self) -> int:
    """Models per call."""
    return self.chunk_size * self.num_devices

  @property
  def platform(self) -> str:
    return self.devices[0].platform

  @property
  def sharded(self) -> NamedSharding:
    """Split over the devices along the models axis."""
    return NamedSharding(self.mesh, P(AXIS))

  @property
  def replicated(self) -> NamedSharding:
    return NamedSharding(self.mesh, P())

  def num_calls(self, num_models: int) -> int:
    return math.ceil(num_models / self.group)

  def chunks(self, models: np.ndarray) -> list[Chunk]:
    """``models`` (flat indices, in order) in calls of :attr:`group`, the last one padded."""
    out = []
    for call in range(self.num_calls(len(models))):
      index = models[call * self.group : (call + 1) * self.group]
      real = len(index)
      index = np.concatenate([index, np.full(self.group - real, index[-1])])
      out.append(Chunk(call, index.astype(np.int64), real))
    return out

  @classmethod
  def plan(
    cls, model: Any, data: Any, num_models: int, batch_size: int, *, chunk_size, mesh
  ) -> Layout:
    devices, num_devices, chunk = plan_layout(
      model, data, num_models, batch_size, chunk_size=chunk_size, mesh=mesh
    )
    return cls(tuple(devices), num_devices, chunk)


def plan_layout(
  model: Any,
  data: Any,  # a Dataset or a Stream: its input_spec
  num_models: int,
  batch_size: int,
  *,
  chunk_size: int | None = None,
  mesh: Mesh | None = None,
) -> tuple[list[Any], int, int]:
  """How a sweep of ``num_models`` runs: (devices, devices used, chunk size).

  Uses every device of ``mesh`` (default: all) but no more than there are
  models (with several processes, all: each process runs its share). The
  automatic chunk size is at most the models per device, evened out over the
  calls it needs (12 models on 2 devices with a preferred chunk
  of 4: two calls of 3 per device, not 4 + 2 and padding). A ``chunk_size``
  given explicitly is kept even when it exceeds the models per device (the
  chunk is padded), so every model runs the same program.
  """
  devices, num_devices = placement(mesh, num_models)
  if chunk_size is None:
    per_device = math.ceil(num_models / num_devices)
    preferred = auto_chunk_size(model, data, batch_size, devices[0].platform)
    calls = math.ceil(per_device / min(preferred, per_device))
    chunk_size = math.ceil(per_device / calls)
  return devices, num_devices, chunk_size


def placement(mesh: Mesh | None, num_models: int) -> tuple[list[Any], int]:
  """The devices of ``mesh`` (default: all) and how many of them ``num_models`` models use:
  no more than there are models, but every one under several processes (each process takes
  part in every call, so each needs its devices in the mesh, padded with copies of models)."""
  devices = mesh_devices(mesh)
  if jax.process_count() > 1:
    hosts.check_every_process(devices)
    return devices, len(devices)
  return devices, min(len(devices), num_models)


def auto_chunk_size(model: Any, data: Any, batch_size: int, platform: str) -> int:
  """Models per device trained together, from the model's size and the platform.

  On a CPU, vmapping many models helps only while a step is too small to keep
  the cores busy; past that it costs memory bandwidth, so big models run a
  few at a time. Accelerators take as many as fit comfortably.
  """
  num_params = count_params(model, data)
  step_flops = 6 * num_params * batch_size
  if platform == "cpu":  # measured in benchmarks/sweep.py on 2 cores
    if step_flops < 2e7:
      return 8
    if step_flops < 1e8:
      return 4
    return 2
  # Parameters, gradients and two optimizer moments per model, within ~4 GiB.
  return int(max(1, min(256, 2**32 // (16 * max(num_params, 1)))))


def count_params(model: Any, data: Any) -> int:
  """Number of trainable parameters of ``model`` on ``data``'s inputs."""
  try:
    return _count_params(model, data.input_spec)
  except TypeError:  # an unhashable model: count without the cache
    return _count_params.__wrapped__(model, data.input_spec)


@functools.lru_cache(maxsize=32)
def _count_params(model: Any, inputs: InputSpec) -> int:
  adapter = adapt(model)
  x = inputs.batch(1)
  params, _, _ = jax.eval_shape(lambda x: adapter.init(jax.random.key(0), x), x)
  return int(sum(np.prod(leaf.shape) for leaf in jax.tree.leaves(params)))


register(_count_params.cache_clear)


def mesh_devices(mesh: Mesh | None) -> list[Any]:
  """The devices of a 1-D ``mesh``, or all devices."""
  if mesh is None:
    return list(jax.devices())
  if len(mesh.axis_names) != 1:
    raise ValueError(
      f"mesh must be 1-D (one axis for the sweep), got axes {mesh.axis_names};"
      " build one with jax.make_mesh((n,), ('models',))."
    )
  return list(np.asarray(mesh.devices).ravel())


def seed_slots(chunk_seeds: np.ndarray, num_devices: int) -> tuple[np.ndarray, np.ndarray]:
  """Per device, the distinct seeds of its models and each model's slot among them.

  A call draws one permutation of the training set per distinct seed on a
  device, not one per model.
  """
  per_device = np.split(chunk_seeds, num_devices)
  distinct = [list(dict.fromkeys(seeds.tolist())) for seeds in per_device]
  slots = max(len(d) for d in distinct)
  slot_seeds = np.array([d + [d[-1]] * (slots - len(d)) for d in distinct], np.int32)
  model_slot = np.concatenate(
    [[d.index(s) for s in seeds.tolist()] for d, seeds in zip(distinct, per_device, strict=True)]
  ).astype(np.int32)
  return slot_seeds, model_slot


_DEVICE_DATA: dict[tuple[Any, ...], DeviceData] = {}
register(_DEVICE_DATA.clear)


def eval_subsample(num_train: int, size: int | None) -> np.ndarray:
  """Indices of the fixed training subsample whose loss is evaluated.

  The first ``size`` of a permutation drawn with NumPy seed 0 (sorted), the
  same for every model and every sweep on the same data; all of it for
  ``size=None`` or ``size >= num_train``.
  """
  if size is None or size >= num_train:
    return np.arange(num_train)
  return np.sort(np.random.default_rng(0).permutation(num_train)[:size])


def device_data(
  data: Dataset, mesh: Mesh, train_eval_size: int | None, eval_test: bool
) -> tuple[DeviceData, tuple[int, int, int]]:
  """The arrays a sweep reads, on every device of ``mesh``, kept while ``data`` lives.

  Returns a :class:`DeviceData` (without ``per_example``) and the sizes of the
  evaluation set's three parts: the training subsample
  (:func:`eval_subsample`), validation, and test (0 when ``eval_test`` is
  off). A sweep shares one copy per device among all its models, and later
  sweeps on the same ``Dataset`` object skip the transfer: keyed by the object,
  which is never stale since a ``Dataset``'s arrays are read-only (copied when
  it is made where another could write to them; ``flood_jax/_dataset.py``).
  """
  train_index = (
    eval_subsample(data.num_train, train_eval_size) if train_eval_size != 0 else np.arange(0)
  )
  sizes = (len(train_index), len(data.y_val), len(data.y_test) if eval_test else 0)
  key = (id(data), mesh, sizes)
  if key not in _DEVICE_DATA:
    train_x = jax.tree.map(lambda a: a[train_index], data.x_train)
    parts_x = [train_x, data.x_val] + ([data.x_test] if eval_test else [])
    parts_y = [data.y_train[train_index], data.y_val] + ([data.y_test] if eval_test else [])
    x_eval = jax.tree.map(lambda *a: np.concatenate(a), *parts_x)
    arrays = (data.x_train, data.y_train, x_eval, np.concatenate(parts_y))
    _DEVICE_DATA[key] = DeviceData(*hosts.put(arrays, NamedSharding(mesh, P())))
    weakref.finalize(data, _DEVICE_DATA.pop, key, None)
  return _DEVICE_DATA[key], sizes
