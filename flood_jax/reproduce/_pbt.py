"""Population-based training of the flood level against the grid and Halving
(issue 31): :func:`pbt`."""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Sequence
from typing import Any

from flood_jax import data as data_lib
from flood_jax import models as models_lib
from flood_jax._result import SweepResult
from flood_jax._sweep import sweep
from flood_jax._sweep.pbt import PBT
from flood_jax._sweep.prune import Halving
from flood_jax.reproduce._compare import (
  PBT_METHODS,
  PBTComparison,
  choose_member_per_seed,
  model_epochs,
)
from flood_jax.reproduce._protocol import _arguments, _kept_sweep, _protocol
from flood_jax.reproduce._setting import LoggerFactory, Setting, _grid, _slug, make_optimizer
from flood_jax.reproduce._synthetic import SYNTHETIC_SETS
from flood_jax.reproduce._tables import _write_pbt_outputs

# The synthetic protocol cut toward 10 minutes on the shared 2-core CPU (5 min measured;
# REPRODUCTION.md, "PBT of the flood level"): the three synthetic sets at label noise 0.1,
# Adam only, 6 of the synthetic preset's 11 levels, 5 seeds, 40 of its 100 epochs evaluated
# every 4th, 500 test examples. MNIST-1D is ``datasets=("mnist1d",)`` (with a smaller MLP
# to fit the same budget).
PBT_CPU: dict[str, Any] = dict(
  datasets=SYNTHETIC_SETS,
  noise_rates=(0.1,),
  optimizers=("adam",),
  flood_levels=(0.0, 0.1, 0.2, 0.3, 0.4, 0.5),
  seeds=5,
  epochs=40,
  n_test=500,
  eval_every=4,
)


def pbt(
  out_dir: str,
  *,
  datasets: Sequence[str] = PBT_CPU["datasets"],
  noise_rates: Sequence[float] = PBT_CPU["noise_rates"],
  optimizers: Sequence[str] = PBT_CPU["optimizers"],
  flood_levels: Sequence[float] = PBT_CPU["flood_levels"],
  seeds: int = PBT_CPU["seeds"],
  epochs: int = PBT_CPU["epochs"],
  interval: int | None = None,
  fraction: float = 0.25,
  halving: Sequence[Any] | None = None,
  n_train: int = 100,
  n_val: int = 100,
  n_test: int = PBT_CPU["n_test"],
  hidden: int = 500,
  depth: int = 4,
  batch_size: int = 200,
  eval_every: int = PBT_CPU["eval_every"],
  progress: bool = True,
  loggers: LoggerFactory | None = None,
) -> list[PBTComparison]:
  """PBT of the flood level against the grid and Halving; writes tables and JSON to ``out_dir``.

  Per setting (data set, label noise, optimizer) three sweeps train on the same data and
  seeds (paired): the plain grid over ``flood_levels`` (0 is added), the same grid with
  ``prune=fj.Halving(*halving)`` (default ``(max(1, round(0.12 * epochs)), 2, "trend")``,
  the rule that kept section 1's choice best at 100 epochs, scaled to ``epochs``), and
  the same grid with ``pbt=fj.PBT(interval, fraction)`` (default interval
  ``max(1, epochs // 5)``): each seed's members are one population. Each method's choice
  is made per seed by final validation accuracy (:func:`choose_member_per_seed`; for PBT
  the member :meth:`SweepResult.best` would name within that seed) and compared by test
  accuracy and test loss at the last epoch, paired over seeds, at each method's
  model-epochs (grid and PBT: every model every epoch; Halving: fewer). Halving ranks a
  configuration by its mean over seeds, so its seeds are not fully independent replicates.

  The synthetic sets use the data of :func:`synthetic`; ``mnist1d`` its standard split
  (``n_train``/``n_val``/``n_test`` do not apply). An interrupted call resumes as
  :func:`adaflood` does: each finished sweep (``grid``, ``halving``, ``pbt``) is kept in
  ``out_dir/runs/SETTING/PART/`` and the one in progress continues from its checkpoint.
  """
  settings = _grid(datasets, noise_rates, optimizers)
  policy, prune, halving = _policies(epochs, interval, fraction, halving)
  config = dict(
    flood_levels=sorted({0.0, *(float(b) for b in flood_levels)}),
    seeds=list(range(seeds)),
    epochs=epochs,
    pbt=policy.record(),
    halving=halving,
    n_train=n_train,
    n_val=n_val,
    n_test=n_test,
    hidden=hidden,
    depth=depth,
    batch_size=batch_size,
    eval_every=eval_every,
    settings=[s.label for s in settings],
  )
  methods = {"grid": {}, "halving": {"prune": prune}, "pbt": {"pbt": policy}}

  def run_setting(prefix: str, setting: Setting) -> PBTComparison:
    return _PBTSetting(out_dir, setting, config, methods, progress, loggers).run(prefix)

  def write(comparisons: list[PBTComparison], wall_time: float) -> None:
    _write_pbt_outputs(out_dir, comparisons, wall_time, config)

  return _protocol("pbt", out_dir, settings, run_setting, write)


def _policies(
  epochs: int, interval: int | None, fraction: float, halving: Sequence[Any] | None
) -> tuple[PBT, Halving, list[Any]]:
  """:func:`pbt`'s PBT and Halving (their defaults scaled to ``epochs``), and Halving's
  arguments: ``ValueError`` (one line) for a PBT that never exploits or a Halving that
  prunes nothing in ``epochs``."""
  policy = PBT(max(1, epochs // 5) if interval is None else interval, fraction)
  policy.check(epochs)
  halving = list(halving) if halving else [max(1, round(0.12 * epochs)), 2, "trend"]
  prune = Halving(*halving)
  if not prune.rungs(epochs):
    raise ValueError(
      f"Halving{tuple(halving)} prunes nothing in {epochs} epochs; use a first rung below"
      f" {epochs} (e.g. halving=({max(1, epochs // 8)}, 2))."
    )
  return policy, prune, halving


@dataclasses.dataclass
class _PBTSetting:
  """One setting of :func:`pbt`: its three sweeps, each trained or read back in turn.

  ``config`` is the protocol's (``reproduce.json``'s); ``methods`` maps each method to
  what its sweep adds to the grid's arguments (``prune=``, ``pbt=``).
  """

  out_dir: str
  setting: Setting
  config: dict[str, Any]
  methods: dict[str, dict[str, Any]]
  progress: bool
  loggers: LoggerFactory | None

  @functools.cached_property
  def data(self) -> Any:
    """The setting's data set (``mnist1d``: its standard split)."""
    if self.setting.dataset == "mnist1d":
      return data_lib.load("mnist1d", label_noise=self.setting.label_noise, seed=0)
    return data_lib.load(
      self.setting.dataset,
      n_train=self.config["n_train"],
      n_val=self.config["n_val"],
      n_test=self.config["n_test"],
      label_noise=self.setting.label_noise,
      seed=0,
    )

  def _train(self, method: str, checkpoint_dir: str) -> SweepResult:
    ds, c = self.data, self.config
    assert ds.num_classes is not None  # Dataset infers it on construction
    return sweep(
      models_lib.MLP(num_classes=ds.num_classes, hidden=c["hidden"], depth=c["depth"]),
      ds,
      flood_levels=c["flood_levels"],
      seeds=c["seeds"],
      optimizer=make_optimizer(self.setting.optimizer),
      epochs=c["epochs"],
      batch_size=min(c["batch_size"], ds.num_train),
      eval_every=c["eval_every"],
      progress=self.progress,
      checkpoint_dir=checkpoint_dir,
      loggers=None if self.loggers is None else self.loggers(f"{_slug(self.setting)}-{method}"),
      **self.methods[method],
    )

  def run(self, prefix: str) -> PBTComparison:
    """Trains (or reads back) the grid's, Halving's and PBT's sweeps; compares them."""
    c, slug = self.config, _slug(self.setting)
    policy = self.methods["pbt"]["pbt"]
    print(
      f"{prefix}: grid, Halving{tuple(c['halving'])} and PBT(interval={policy.interval},"
      f" fraction={policy.fraction:g}) over {len(c['flood_levels'])} levels;"
      f" {len(c['seeds'])} seeds, {c['epochs']} epochs",
      flush=True,
    )
    results: dict[str, SweepResult] = {}
    seconds: dict[str, float] = {}
    for method in PBT_METHODS:
      train = functools.partial(self._train, method)
      arguments = _arguments(c, method=method)
      results[method], seconds[method], read = _kept_sweep(
        self.out_dir, f"{slug}/{method}", train, arguments
      )
      if read:  # finished in an earlier, interrupted call
        path = os.path.join(self.out_dir, "runs", slug, method, "results.json")
        print(f"  {method}: done earlier, read {path}")
    test, loss, chosen = {}, {}, {}
    for method, result in results.items():
      test[method], loss[method], chosen[method] = choose_member_per_seed(result)
    return PBTComparison(
      setting=self.setting,
      test=test,
      loss=loss,
      chosen=chosen,
      model_epochs={m: model_epochs(r) for m, r in results.items()},
      seconds=seconds,
    )
