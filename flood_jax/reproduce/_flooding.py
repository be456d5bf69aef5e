"""The run that :func:`synthetic`, :func:`builtin` and :func:`benchmark` share: per
setting one sweep over the flood levels and seeds, compared with ``b = 0``."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from typing import Any

from flood_jax._result import SweepResult
from flood_jax._sweep import sweep
from flood_jax.reproduce._compare import Comparison, compare
from flood_jax.reproduce._protocol import _arguments, _kept_sweep, _protocol, _writing
from flood_jax.reproduce._setting import LoggerFactory, Setting, _slug, make_optimizer
from flood_jax.reproduce._tables import _setting_figures, _summary_figure, _write_outputs


@dataclasses.dataclass(frozen=True)
class _Flooding:
  """One protocol's sweeps: how a setting's data and model are made, and what trains them."""

  name: str
  out_dir: str
  load: Callable[[Setting], Any]
  make_model: Callable[[Setting, Any], Any]
  levels: list[float]
  seeds: list[int]
  epochs: int
  batch_size: int
  progress: bool
  loggers: LoggerFactory | None
  learning_rate: float | None
  eval_every: int
  augment: Any
  config: dict[str, Any]

  def train(self, prefix: str, setting: Setting, checkpoint_dir: str) -> SweepResult:
    """Trains the setting's sweep, its checkpoint in ``checkpoint_dir``."""
    ds = self.load(setting)
    model = self.make_model(setting, ds)
    print(
      f"{prefix}: {len(self.levels)} levels x {len(self.seeds)} seeds, {self.epochs} epochs",
      flush=True,
    )
    return sweep(
      model,
      ds,
      flood_levels=self.levels,
      seeds=self.seeds,
      optimizer=make_optimizer(setting.optimizer, self.learning_rate, setting.weight_decay),
      epochs=self.epochs,
      batch_size=min(self.batch_size, ds.num_train),
      progress=self.progress,
      checkpoint_dir=checkpoint_dir,
      eval_every=self.eval_every,
      loggers=None if self.loggers is None else self.loggers(_slug(setting)),
      **({} if self.augment is None else {"augment": self.augment}),
    )

  def run_setting(self, prefix: str, setting: Setting) -> tuple[Setting, SweepResult]:
    """The setting's sweep, trained now or read back, and its figures."""
    slug = _slug(setting)
    arguments = _arguments(self.config, setting=setting.label, learning_rate=self.learning_rate)
    result, _, read = _kept_sweep(
      self.out_dir, slug, lambda directory: self.train(prefix, setting, directory), arguments
    )
    if read:  # finished in an earlier, interrupted call
      path = os.path.join(self.out_dir, "runs", slug, "results.json")
      print(f"{prefix}: done earlier, read {path}")
    _setting_figures(self.out_dir, slug, result)
    return setting, result

  def write(self, runs: list[tuple[Setting, SweepResult]], wall_time: float) -> None:
    """The table and ``reproduce.json`` of the settings done so far."""
    comparisons = [compare(r, s) for s, r in runs]
    _write_outputs(self.name, self.out_dir, comparisons, wall_time, self.config)


def _run_protocol(
  name: str,
  out_dir: str,
  settings: Sequence[Setting],
  load: Callable[[Setting], Any],
  make_model: Callable[[Setting, Any], Any],
  flood_levels: Sequence[float],
  seeds: int | Sequence[int],
  epochs: int,
  batch_size: int,
  progress: bool,
  *,
  loggers: LoggerFactory | None = None,
  learning_rate: float | None = None,
  eval_every: int = 1,
  augment: Any = None,
  extra_config: dict[str, Any] | None = None,
) -> list[Comparison]:
  """Each setting's sweep (0 is added to the levels), its figures, the table and
  ``reproduce.json`` in ``out_dir`` (``extra_config`` recorded beside the levels,
  seeds and epochs), and the summary figure; returns the comparisons."""
  levels = [float(b) for b in flood_levels]
  if 0.0 not in levels:
    levels = [0.0, *levels]
  seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
  config = dict(
    extra_config or {},
    flood_levels=levels,
    seeds=seed_list,
    epochs=epochs,
    settings=[s.label for s in settings],
  )
  flooding = _Flooding(
    name,
    out_dir,
    load,
    make_model,
    levels,
    seed_list,
    epochs,
    batch_size,
    progress,
    loggers,
    learning_rate,
    eval_every,
    augment,
    config,
  )
  runs = _protocol(name, out_dir, settings, flooding.run_setting, flooding.write)
  path = os.path.join(out_dir, "figures", f"{name}_accuracy_vs_level.png")
  with _writing(out_dir, path):
    _summary_figure(runs, path)
  return [compare(result, setting) for setting, result in runs]
