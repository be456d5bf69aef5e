"""flood_jax: the flooding regularizer for JAX, as an Optax transform, a Flax
training state and a sweep engine that trains many flood levels at once."""

from flood_jax._cache import enable_compile_cache
from flood_jax._dataset import Dataset
from flood_jax._loss import flooded_loss, iflooded_loss
from flood_jax._result import SweepResult
from flood_jax._sweep import Model, sweep
from flood_jax._train_state import FloodTrainState
from flood_jax._transform import FloodState, flood, flooded_fraction

from flood_jax import data, models  # noqa: E402  (flood_jax.data.load, ...)

__version__ = "0.1.0"

__all__ = [
    "Dataset",
    "FloodState",
    "FloodTrainState",
    "Model",
    "SweepResult",
    "flood",
    "flooded_fraction",
    "flooded_loss",
    "data",
    "enable_compile_cache",
    "iflooded_loss",
    "models",
    "sweep",
]
