"""flood_jax: the flooding regularizer for JAX, as an Optax transform, a Flax
training state and a sweep engine that trains many flood levels at once."""

from flood_jax import _devices

_devices.use_cpu_cores_at_import()  # Before anything starts JAX's backend.

from flood_jax import data, loggers, models  # noqa: E402  (flood_jax.data.load, ...)
from flood_jax._adaflood import adaflood_levels  # noqa: E402
from flood_jax._cache import clear_caches, enable_compile_cache  # noqa: E402
from flood_jax._dataset import Dataset  # noqa: E402
from flood_jax._loss import flooded_loss, iflooded_loss  # noqa: E402
from flood_jax._result import SweepResult  # noqa: E402
from flood_jax._sweep import Model, Pretrained, sweep  # noqa: E402
from flood_jax._sweep.api import plan  # noqa: E402
from flood_jax._sweep.pbt import PBT  # noqa: E402
from flood_jax._sweep.plan import Plan  # noqa: E402
from flood_jax._sweep.population import Population, PopulationState  # noqa: E402
from flood_jax._sweep.prune import Halving  # noqa: E402
from flood_jax._sweep.stream import Stream  # noqa: E402
from flood_jax._task import Classification, Regression, Task  # noqa: E402
from flood_jax._train_state import FloodTrainState  # noqa: E402
from flood_jax._transform import FloodState, flood, flooded_fraction  # noqa: E402

__version__ = "0.1.0"

__all__ = [
  "PBT",
  "Classification",
  "Dataset",
  "FloodState",
  "FloodTrainState",
  "Halving",
  "Model",
  "Plan",
  "Population",
  "PopulationState",
  "Pretrained",
  "Regression",
  "Stream",
  "SweepResult",
  "Task",
  "adaflood_levels",
  "clear_caches",
  "data",
  "enable_compile_cache",
  "flood",
  "flooded_fraction",
  "flooded_loss",
  "iflooded_loss",
  "loggers",
  "models",
  "plan",
  "sweep",
]
