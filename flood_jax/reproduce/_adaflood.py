"""Flooding against iFlood and AdaFlood (Bae et al., 2024; issue 12): :func:`adaflood`."""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from flood_jax import data as data_lib
from flood_jax import models as models_lib
from flood_jax._adaflood import adaflood_levels
from flood_jax._result import SweepResult
from flood_jax._sweep import sweep
from flood_jax.reproduce._compare import MethodsComparison, choose_per_seed
from flood_jax.reproduce._protocol import (
  _arguments,
  _is_kept,
  _kept,
  _kept_sweep,
  _protocol,
  _read_json_file,
  _write_json_file,
)
from flood_jax.reproduce._setting import LoggerFactory, Setting, _grid, _slug, make_optimizer
from flood_jax.reproduce._synthetic import SYNTHETIC_SETS
from flood_jax.reproduce._tables import _write_methods_outputs

# Cut toward 15 minutes on the 2-core CPU (measured: 32 min with the machine
# shared, 2 to 8 min per setting as the load varied): the synthetic sets at label
# noise 0.05 and 0.1, Adam only, 5 seeds, 100 epochs evaluated every 5th (the
# evaluation of 1,200 examples costs 4 training steps on 100), 5 flood levels
# (where reproduce synthetic chose b) and 5 values of gamma, 5 fold models.
ADAFLOOD_CPU: dict[str, Any] = dict(
  datasets=SYNTHETIC_SETS,
  noise_rates=(0.05, 0.1),
  optimizers=("adam",),
  flood_levels=(0.0, 0.1, 0.2, 0.3, 0.4),
  gammas=(0.0, 0.5, 0.8, 0.95, 1.0),
  seeds=5,
  epochs=100,
  n_test=1000,
  folds=5,
  eval_every=5,
)


def adaflood(
  out_dir: str,
  *,
  datasets: Sequence[str] = ADAFLOOD_CPU["datasets"],
  noise_rates: Sequence[float] = ADAFLOOD_CPU["noise_rates"],
  optimizers: Sequence[str] = ADAFLOOD_CPU["optimizers"],
  flood_levels: Sequence[float] = ADAFLOOD_CPU["flood_levels"],
  gammas: Sequence[float] = ADAFLOOD_CPU["gammas"],
  seeds: int = ADAFLOOD_CPU["seeds"],
  epochs: int = ADAFLOOD_CPU["epochs"],
  folds: int = ADAFLOOD_CPU["folds"],
  n_train: int = 100,
  n_val: int = 100,
  n_test: int = ADAFLOOD_CPU["n_test"],
  hidden: int = 500,
  depth: int = 4,
  batch_size: int = 200,
  eval_every: int = ADAFLOOD_CPU["eval_every"],
  progress: bool = True,
  loggers: LoggerFactory | None = None,
) -> list[MethodsComparison]:
  """Flooding vs iFlood vs AdaFlood; writes a table and JSON to ``out_dir``.

  Per setting (data set, label noise, optimizer) four things train on the
  same data, paired by seed: flooding and iFlood over ``flood_levels`` (0 is
  added: "no flooding" is flooding's ``b = 0``), the AdaFlood fold models
  (:func:`flood_jax.adaflood_levels` with ``gamma = 0``: ``folds`` models, one
  seed, the main models' architecture, optimizer and epochs), then AdaFlood
  over ``gammas`` (1, no flooding, is added) on their held-out losses. Each
  method's level is chosen per seed by validation accuracy, as in
  :func:`synthetic`; one-sided paired t-tests across seeds compare the
  methods. The synthetic sets use the data of :func:`synthetic`; ``mnist1d``
  its standard split (``n_train``/``n_test`` do not apply).

  An interrupted call resumes, as :func:`synthetic` does: each part of a
  setting (``flood``, ``iflood``, ``folds``: the held-out losses, ``adaflood``)
  is kept in ``out_dir/runs/SETTING/PART/`` once it finishes and read back by
  a later call with the same arguments, and the part in progress continues
  from its checkpoint in ``out_dir/checkpoints/SETTING/PART/``. Its
  ``seconds`` are then those of the call that finished it.
  """
  settings = _grid(datasets, noise_rates, optimizers)
  config = dict(
    flood_levels=sorted({0.0, *(float(b) for b in flood_levels)}),
    gammas=sorted({1.0, *(float(g) for g in gammas)}),
    seeds=list(range(seeds)),
    epochs=epochs,
    folds=folds,
    # The fold models' seed differs from the main models': their held-out losses
    # are not tied to any one main run.
    fold_seed=1000,
    n_train=n_train,
    n_val=n_val,
    n_test=n_test,
    hidden=hidden,
    depth=depth,
    batch_size=batch_size,
    eval_every=eval_every,
    settings=[s.label for s in settings],
  )

  def run_setting(prefix: str, setting: Setting) -> MethodsComparison:
    return _AdaFloodSetting(out_dir, setting, config, progress, loggers).run(prefix)

  def write(comparisons: list[MethodsComparison], wall_time: float) -> None:
    _write_methods_outputs(out_dir, comparisons, wall_time, config)

  return _protocol("adaflood", out_dir, settings, run_setting, write)


# Each part of a setting, in order, and the file that marks it kept.
_PARTS = {
  "flood": "results.json",
  "iflood": "results.json",
  "folds": "folds.json",
  "adaflood": "results.json",
}


@dataclasses.dataclass
class _AdaFloodSetting:
  """One setting of :func:`adaflood`: its four parts, each trained or read back in turn.

  ``config`` is the protocol's (``reproduce.json``'s): the levels, gammas, seeds,
  epochs, folds, the data's sizes and the MLP's.
  """

  out_dir: str
  setting: Setting
  config: dict[str, Any]
  progress: bool
  loggers: LoggerFactory | None

  @property
  def slug(self) -> str:
    return _slug(self.setting)

  @functools.cached_property
  def data(self) -> tuple[Any, np.ndarray]:
    """The setting's data set and which labels the noise changed (read only to train)."""
    ds = self._load(self.setting.label_noise)
    # The labels the noise changed (the clean data do not depend on the noise rate).
    return ds, np.asarray(self._load(0.0).y_train) != np.asarray(ds.y_train)

  def _load(self, noise: float) -> Any:
    if self.setting.dataset == "mnist1d":
      return data_lib.load("mnist1d", label_noise=noise, seed=0)
    c = self.config
    return data_lib.load(
      self.setting.dataset,
      n_train=c["n_train"],
      n_val=c["n_val"],
      n_test=c["n_test"],
      label_noise=noise,
      seed=0,
    )

  def _model(self, ds: Any) -> Any:
    assert ds.num_classes is not None  # Dataset infers it on construction
    return models_lib.MLP(
      num_classes=ds.num_classes, hidden=self.config["hidden"], depth=self.config["depth"]
    )

  def _sweep(self, part: str, checkpoint_dir: str, **options: Any) -> SweepResult:
    """A sweep of the main models (flooding, iFlood or AdaFlood)."""
    ds, _ = self.data
    return sweep(
      self._model(ds),
      ds,
      **options,
      optimizer=make_optimizer(self.setting.optimizer),
      loggers=None if self.loggers is None else self.loggers(f"{self.slug}-{part}"),
      checkpoint_dir=checkpoint_dir,
      seeds=self.config["seeds"],
      epochs=self.config["epochs"],
      batch_size=min(self.config["batch_size"], ds.num_train),
      eval_every=self.config["eval_every"],
      progress=self.progress,
    )

  def _train_folds(self, checkpoint_dir: str) -> dict[str, Any]:
    """The fold models' held-out losses, and how they differ on clean and flipped labels."""
    ds, flipped = self.data
    folds = self.config["folds"]
    heldout = adaflood_levels(
      self._model(ds),
      ds,
      folds=folds,
      gamma=0.0,
      seeds=(self.config["fold_seed"],),
      optimizer=make_optimizer(self.setting.optimizer),
      epochs=self.config["epochs"],
      batch_size=min(self.config["batch_size"], ds.num_train - -(-ds.num_train // folds)),
      progress=self.progress,
      checkpoint_dir=checkpoint_dir,
    )
    return {
      "heldout": heldout.tolist(),  # float32 values: exact in JSON
      "flipped": int(flipped.sum()),
      # The mean held-out loss over clean and flipped training labels.
      "heldout_loss": {
        "clean": float(heldout[~flipped].mean()),
        "flipped": float(heldout[flipped].mean()) if flipped.any() else None,
      },
    }

  def _kept_part(self, part: str, train: Callable[[str], Any]) -> tuple[Any, float]:
    """A part kept by an earlier call (and said so), or else trained now: its seconds too."""
    key = f"{self.slug}/{part}"
    arguments = _arguments(self.config, setting=self.setting.label, part=part)
    if part == "folds":
      value, seconds, read = _kept(
        self.out_dir,
        key,
        train,
        save=lambda record, run_dir: _write_json_file(os.path.join(run_dir, "folds.json"), record),
        load=lambda run_dir: _read_json_file(os.path.join(run_dir, "folds.json")),
        done="folds.json",
        arguments=arguments,
      )
    else:
      value, seconds, read = _kept_sweep(self.out_dir, key, train, arguments)
    if read:  # finished in an earlier, interrupted call
      path = os.path.join(self.out_dir, "runs", self.slug, part, _PARTS[part])
      print(f"  {part}: done earlier, read {path}")
    return value, seconds

  def run(self, prefix: str) -> MethodsComparison:
    """Trains (or reads back) the four parts in turn; compares them."""
    c = self.config
    if not all(_is_kept(self.out_dir, f"{self.slug}/{p}", d) for p, d in _PARTS.items()):
      _ = self.data  # loaded before any part's clock starts, as the seconds were always measured
    print(
      f"{prefix}: flooding and iFlood at {len(c['flood_levels'])} levels, {c['folds']} fold"
      f" models, AdaFlood at {len(c['gammas'])} gammas; {len(c['seeds'])} seeds,"
      f" {c['epochs']} epochs",
      flush=True,
    )
    results: dict[str, SweepResult] = {}
    seconds: dict[str, float] = {}
    for objective in ("flood", "iflood"):
      train = functools.partial(
        self._sweep, objective, objective=objective, flood_levels=c["flood_levels"]
      )
      results[objective], seconds[objective] = self._kept_part(objective, train)
    fold_record, seconds["folds"] = self._kept_part("folds", self._train_folds)
    heldout = np.asarray(fold_record["heldout"], np.float32)
    train = functools.partial(
      self._sweep,
      "adaflood",
      objective="adaflood",
      per_example_levels=heldout,
      gamma=c["gammas"],
    )
    results["adaflood"], seconds["adaflood"] = self._kept_part("adaflood", train)
    return self._compare(results, seconds, fold_record)

  def _compare(
    self, results: dict[str, SweepResult], seconds: dict[str, float], fold_record: dict[str, Any]
  ) -> MethodsComparison:
    """Each method's level chosen per seed; prints the parts' seconds and held-out losses."""
    test, test_es, chosen, chosen_es = {}, {}, {}, {}
    for method, result in results.items():
      test[method], test_es[method], chosen[method], chosen_es[method] = choose_per_seed(result)
    heldout_means = fold_record["heldout_loss"]
    print(
      f"  seconds: {', '.join(f'{k} {v:.0f}' for k, v in seconds.items())};"
      f" mean held-out loss: clean labels {heldout_means['clean']:.3f},"
      f" flipped labels ({fold_record['flipped']})"
      f" {heldout_means['flipped'] or float('nan'):.3f}",
      flush=True,
    )
    return MethodsComparison(
      setting=self.setting,
      no_flood=results["flood"].history["test_accuracy"][0, :, -1],
      no_flood_es=results["flood"].at_stopping("test_accuracy", "best_val")[0],
      test=test,
      test_es=test_es,
      chosen=chosen,
      chosen_es=chosen_es,
      seconds=seconds,
      num_models={
        "folds": self.config["folds"],
        **{m: int(np.prod(r.history["val_loss"].shape[:-1])) for m, r in results.items()},
      },
      heldout_loss=heldout_means,
    )
