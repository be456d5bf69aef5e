"""The sweep engine: many models trained as one compiled program.

Each concern has a module of its own (``api.sweep`` -> ``spec`` -> ``driver.run``):

- ``api``: ``sweep()``, whose body builds a :class:`~flood_jax._sweep.spec.SweepSpec` and runs it,
  and ``plan()`` (``fj.plan``), which plans that spec without training;
- ``spec``: every argument checked once into a frozen record; ``TrainSpec`` is what one model
  computes (the program cache's key); ``record()`` is the result's config and the fingerprint;
- ``objectives``: flood, iFlood, AdaFlood and the fold models (the only module knowing them);
- ``metrics``: the metric names and columns of a task (its loss and metrics per split), by name;
- ``grid``: flood levels x hyperparameters x seeds, and their flat order;
- ``adapters``: linen modules, NNX factories and ``Model(init, apply)``, and ``Pretrained``
  (any of them started from given weights);
- ``program``: one model's training and evaluation as pure functions, a chunk of them (the one
  place with arithmetic); ``Carry`` and ``DeviceData`` name what travels;
- ``compiled``: the chunk programs vmapped, sharded and jitted; ``cache``: programs reused;
- ``schedule``: ``EvalPlan``, the evaluated epochs, rungs and epochs per call;
- ``layout``: devices, chunk sizes, ``Layout.chunks``, the data on the devices;
- ``memory``: XLA's memory analysis of a chunk, the line fitted to it, the chunk that fits;
- ``plan``: the ``Plan`` a sweep runs (what ``fj.plan`` returns) and how its chunk size is decided;
- ``prune``: the pruning ``Policy``: ``NoPruning`` (the default) and ``Halving``;
- ``pbt``: ``PBT``, a policy whose rungs are exploit boundaries (the driver copies carries and
  sets the next levels and hyperparameters between segments);
- ``checkpoint``: the ``CheckpointStore`` (Orbax, one format) and ``NullStore``;
- ``hosts``: what differs under several processes (starting them: ``flood_jax._launch``);
  ``tracking``: the loggers; ``progress``: the progress bar;
- ``stream``: ``Stream``, training batches from the host (sources, shape and label checks,
  blocks, prefetch); ``streamed``: a streamed sweep's calls; ``population``: ``Population``,
  the sweep's models and step for the user's own loop;
- ``driver``: ``run(spec)``, the one loop, and ``assemble``, the one ``SweepResult(...)``.
"""

from flood_jax._sweep.adapters import Model, Pretrained
from flood_jax._sweep.api import sweep
from flood_jax._sweep.layout import auto_chunk_size, count_params, plan_layout

__all__ = ["Model", "Pretrained", "auto_chunk_size", "count_params", "plan_layout", "sweep"]
