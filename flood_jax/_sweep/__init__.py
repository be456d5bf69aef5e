"""The sweep engine: many models trained as one compiled program.

Each concern has a module of its own:

- ``grid``: flood levels x hyperparameters x seeds, and their flat order;
- ``adapters``: linen modules, NNX factories and ``Model(init, apply)``;
- ``program``: one model's training and evaluation, vmapped and sharded (the
  one place with arithmetic);
- ``layout``: devices, chunk sizes, the data on the devices;
- ``memory``: XLA's memory analysis of a chunk, the line fitted to it, the chunk that fits;
- ``plan``: the :class:`Plan` a sweep runs (``fj.plan``) and how its chunk size is decided;
- ``ahead``: the training call compiled while the initialization compiles;
- ``checkpoint``: Orbax checkpoints and resuming;
- ``prune``: successive halving (rungs, survivors, re-packing them);
- ``driver``: ``sweep()``, which ties them together.
"""

from flood_jax._sweep.adapters import Model
from flood_jax._sweep.driver import sweep
from flood_jax._sweep.layout import auto_chunk_size, count_params, plan_layout

__all__ = ["Model", "auto_chunk_size", "count_params", "plan_layout", "sweep"]
