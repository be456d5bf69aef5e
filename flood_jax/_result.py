"""``SweepResult``: what a sweep returns, and the queries on it.

Its tables are made in ``_report`` and its files written and read in
``_result_io``; the methods here delegate to them.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np

from flood_jax import _report, _result_io
from flood_jax._result_io import METRICS  # noqa: F401 (flood_jax._result.METRICS, kept importable)
from flood_jax._result_io import json_safe as _json_safe  # noqa: F401 (_sweep/tracking.py uses it)
from flood_jax._result_io import shortest as _shortest

_RULES = ("final", "best_val")


@dataclasses.dataclass(frozen=True)
class LevelSchedule:
  """A member's flood level as a function of the update count, for ``fj.flood``.

  ``values[j]`` holds from update ``boundaries[j - 1]`` (0 for ``j = 0``) until
  ``boundaries[j]``: ``fj.flood(schedule)`` retrains with the level PBT gave the member.

  Examples:
    >>> from flood_jax._result import LevelSchedule
    >>> schedule = LevelSchedule(boundaries=(10, 20), values=(0.1, 0.125, 0.1))
    >>> [float(schedule(step)) for step in (0, 9, 10, 25)]
    [0.10000000149011612, 0.10000000149011612, 0.125, 0.10000000149011612]
  """

  boundaries: tuple[int, ...]  # updates (steps) at which the level changes
  values: tuple[float, ...]  # len(boundaries) + 1 levels

  def __call__(self, count: Any) -> jax.Array:
    index = jnp.searchsorted(jnp.asarray(self.boundaries, jnp.int32), count, side="right")
    return jnp.asarray(self.values, jnp.float32)[index]


@dataclasses.dataclass
class SweepResult:
  """The outcome of :func:`flood_jax.sweep`.

  Attributes:
    flood_levels: the levels, shape ``(levels,)``.
    seeds: the seeds, shape ``(seeds,)``.
    history: curves, each ``(levels, *hyperparameters, seeds, evaluations)``
      (:attr:`axes` names the axes before the last; :attr:`epochs` says which
      epoch each evaluation followed):
      ``train_loss`` (full training set, evaluation mode, *unflooded*),
      ``val_loss``, ``val_accuracy``, ``test_loss``, ``test_accuracy`` and
      ``flooded_fraction`` (fraction of the epoch's mini-batches whose loss was
      below the level, i.e. ascent steps; with iFlood, of the examples).
    final_params: the trained parameters, every leaf with the same leading
      axes as ``history`` (without ``epochs``); an NNX model's are an
      ``nnx.State``. ``None`` after :meth:`load`.
    final_batch_stats: BatchNorm statistics likewise (linen ``batch_stats``,
      NNX non-parameter state), or ``None``.
    config: the sweep's settings, for the record.
    wall_time: seconds the sweep took (training and evaluation).
    hyperparams: the swept optimizer hyperparameters, name -> values, in the
      order of their axes; empty without.
    model: the model the sweep trained (not saved; used by :meth:`nnx_model`).
    epochs: the epoch (counted from 1) of each entry of ``history``: every
      ``eval_every``-th epoch and the last (and a pruned sweep's rungs).
    pruned_at: ``(levels, *hyperparameters)`` integers: the epoch after which
      successive halving (``fj.sweep(..., prune=fj.Halving(...))``) stopped
      each configuration, 0 for one that trained to the end (all 0 without
      pruning). A pruned configuration's ``history`` is NaN after that epoch,
      its ``final_params`` are those of that epoch, it is never chosen as the
      best and is not counted as diverged.
    local_models: ``None``, except after a multi-process sweep with
      ``gather_params=False``: the flat indices of the models whose
      parameters this process holds (model ``i`` has seed ``seeds[i // C]``
      and configuration ``configurations()[i % C]``, ``C`` configurations);
      ``final_params`` and ``final_batch_stats`` leaves then have one leading
      axis, these models.
    level_name: the name of the first axis: ``"flood_level"``, or
      ``"gamma"`` for an AdaFlood sweep (its ``flood_levels`` then hold the
      values of ``gamma``, and "no flooding" is ``gamma = 1``, not ``b = 0``).
    plan: the layout the sweep ran (a ``flood_jax.Plan``: models per device
      and per call, calls, memory per device; see :func:`flood_jax.plan`);
      ``None`` after :meth:`load`.
    selection_key: the history key that chooses the best configuration, the
      task's ``val_<select>`` (``"val_accuracy"`` for classification,
      ``"val_loss"`` for ``fj.Regression()``).
    mode: ``"max"`` when a higher ``selection_key`` is better, ``"min"`` when
      a lower one is.
    lineage: after ``fj.sweep(..., pbt=fj.PBT(...))``, ``(levels,
      *hyperparameters, seeds, boundaries)`` integers: at each exploit boundary
      (``config["pbt"]``'s ``interval``, ``2 * interval``, ...), the flat index
      (among the configurations of the same seed, as :meth:`configurations`
      orders them) of the member whose weights the model went on from, its own
      index when it kept its own; ``None`` without PBT. Its ``history`` then
      also holds the level (``history[level_name]``) and each swept
      hyperparameter each model trained with.

  A *configuration* is a flood level with one value of each hyperparameter.
  The best one (:meth:`best`, :attr:`best_flood_level`) has the best
  (``mode``) ``selection_key`` at the **final epoch**, averaged over seeds
  (ties go to the first, i.e. the smaller level): for classification the
  highest validation accuracy. A model whose validation loss is not
  finite has *diverged*: its configuration is never chosen, and
  :meth:`summary` counts it.
  """

  flood_levels: np.ndarray
  seeds: np.ndarray
  history: dict[str, np.ndarray]
  final_params: Any = None
  final_batch_stats: Any = None
  config: dict[str, Any] = dataclasses.field(default_factory=dict)
  wall_time: float = math.nan
  hyperparams: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
  model: Any = dataclasses.field(default=None, repr=False, compare=False)
  epochs: np.ndarray | None = None
  local_models: np.ndarray | None = None
  pruned_at: np.ndarray | None = None
  level_name: str = "flood_level"
  plan: Any = dataclasses.field(default=None, repr=False, compare=False)
  selection_key: str = "val_accuracy"
  mode: str = "max"
  lineage: np.ndarray | None = None

  def __post_init__(self):
    if self.selection_key not in self.history:
      raise ValueError(
        f"selection_key {self.selection_key!r} is not a key of the history"
        f" {sorted(self.history)}; name the validation metric that picks the best."
      )
    if self.mode not in ("min", "max"):
      raise ValueError(f"mode must be 'min' (lower is better) or 'max', got {self.mode!r}.")
    if self.epochs is None:
      self.epochs = np.arange(1, self.history["val_loss"].shape[-1] + 1)
    self.epochs = np.asarray(self.epochs, np.int64)
    if self.pruned_at is None:
      self.pruned_at = np.zeros(self.history["val_loss"].shape[:-2], np.int64)
    self.pruned_at = np.asarray(self.pruned_at, np.int64)

  @property
  def metric_names(self) -> tuple[str, ...]:
    """The task's metrics besides the loss, in order (``("accuracy",)`` for classification)."""
    return tuple(k[4:] for k in self.history if k.startswith("val_") and k != "val_loss")

  @property
  def selection(self) -> str:
    """What chooses the best configuration: ``"loss"`` or a metric's name (the task's select)."""
    return self.selection_key[4:]

  def _signed(self, values: Any) -> np.ndarray:
    """``values`` oriented so that higher is better (negated when ``mode="min"``)."""
    values = np.asarray(values)
    return values if self.mode == "max" else -values

  @property
  def axes(self) -> tuple[str, ...]:
    """Names of the leading axes of ``history``: ``("flood_level", *hyperparameters, "seed")``."""
    return (self.level_name, *self.hyperparams, "seed")

  @property
  def num_epochs(self) -> int:
    """Epochs trained (the last evaluated epoch)."""
    epochs = self.epochs
    assert epochs is not None  # __post_init__ always sets it
    return int(epochs[-1])

  @property
  def config_shape(self) -> tuple[int, ...]:
    """``(levels, *values per hyperparameter)``."""
    return tuple(self.history["val_loss"].shape[:-2])

  @property
  def best_flood_level(self) -> float:
    """Level of the best configuration (:meth:`best`)."""
    return self.best()[self.level_name]

  def configurations(self) -> list[dict[str, float]]:
    """Every configuration, in the order of ``history``'s leading axes."""
    values = [self.flood_levels, *self.hyperparams.values()]
    names = [self.level_name, *self.hyperparams]
    return [
      {name: _shortest(values[k][i]) for k, (name, i) in enumerate(zip(names, index, strict=True))}
      for index in np.ndindex(*self.config_shape)
    ]

  def diverged(self) -> np.ndarray:
    """Whether each run diverged (a non-finite final validation loss), ``(..., seeds)``.

    A pruned run does not count as diverged.
    """
    return ~np.isfinite(self.history["val_loss"][..., -1]) & (self.pruned_at == 0)[..., None]

  def never_flooded(self) -> list[float]:
    """The levels that never flooded: they trained the very models of no flooding.

    A level whose ``flooded_fraction`` is 0 on every evaluated epoch, seed and
    hyperparameter value (the training loss stayed above it throughout: every step
    was plain descent) trained, seed by seed, the models of ``b = 0``; its rows of
    :meth:`table` and its place in :meth:`best` are not a level's effect.
    The no-flooding level itself is not listed: the lowest level when it is at or
    below 0 (``gamma = 1`` for AdaFlood). Evaluations with no number (a pruned or
    diverged run's) are not counted; a level with none is not listed.

    Returns:
      The levels, as floats, in the sweep's order (``[]`` when every level flooded).

    Examples:
      >>> import numpy as np, flood_jax as fj
      >>> # (levels, seeds, evaluations): b = 0.1 flooded on its second evaluation
      >>> flooded = np.array([[0.0, 0.0], [0.0, 0.0], [0.0, 0.3]])[:, None, :]
      >>> history = {k: np.ones_like(flooded) for k in fj.Classification().history_keys}
      >>> history["flooded_fraction"] = flooded
      >>> fj.SweepResult(np.array([0.0, 0.01, 0.1]), np.arange(1), history).never_flooded()
      [0.01]
    """
    fraction = np.asarray(self.history["flooded_fraction"], np.float64)
    fraction = fraction.reshape(len(self.flood_levels), -1)
    counted = np.isfinite(fraction)
    never = np.all(~counted | (fraction == 0), axis=1) & np.any(counted, axis=1)
    levels = [_shortest(b) for b in self.flood_levels]
    baseline = self._no_flooding_level()
    return [b for b, n in zip(levels, never, strict=True) if n and b != baseline]

  def _no_flooding_level(self) -> float | None:
    """The level of the sweep that floods nothing by construction, if it has one."""
    if self.level_name == "gamma":
      return 1.0
    lowest = _shortest(np.min(self.flood_levels))
    return lowest if lowest <= 0 else None

  def best(self, rule: str = "final") -> dict[str, float]:
    """The best configuration by the mean over seeds of :attr:`selection_key`.

    Highest with ``mode="max"`` (classification: validation accuracy), lowest
    with ``mode="min"`` (a regression's validation loss).

    Args:
      rule: ``"final"`` scores each run by its last epoch's validation
        value; ``"best_val"`` by its best epoch's (early stopping).

    Returns:
      ``{"flood_level": b, **hyperparameters}`` of the winner (ties: the
      first). A configuration with a diverged seed, or a pruned one, is
      never chosen.

    After a PBT sweep (:attr:`lineage` set) the winner is one member, the run
    with the best score: ``{level_name: the level it ended with,
    **its hyperparameters at the end, "member": its flat index among the
    configurations of its seed, "seed": its seed}`` (``result.index(**best)``
    finds it), and :meth:`level_schedule` gives its level over the steps as
    ``fj.flood`` takes it.

    Raises:
      ValueError: if every configuration diverged.
    """
    if self.lineage is not None:
      return self._best_member(rule)
    scores = self.val_score(rule).mean(axis=-1)
    if np.all(np.isnan(scores)):
      raise ValueError(
        "every configuration of the sweep diverged (validation loss NaN or"
        " infinite); lower the learning rate or check the data and model."
      )
    flat = int(np.nanargmax(self._signed(scores)))
    return self.configurations()[flat]

  def _best_member(self, rule: str) -> dict[str, Any]:
    scores = self._signed(self.val_score(rule))  # (levels, *hyperparameters, seeds)
    if np.all(np.isnan(scores)):
      raise ValueError(
        "every member of the PBT sweep diverged (validation loss NaN or infinite);"
        " lower the learning rate or check the data and model."
      )
    where = np.unravel_index(int(np.nanargmax(scores)), scores.shape)
    out: dict[str, Any] = {name: _shortest(self.history[name][where][-1])
           for name in (self.level_name, *self.hyperparams)}  # fmt: skip
    out["member"] = int(np.ravel_multi_index(where[:-1], scores.shape[:-1]))
    out["seed"] = int(self.seeds[where[-1]])
    return out

  def level_schedule(self, member: int | None = None, seed: int | None = None) -> LevelSchedule:
    """A PBT member's flood level as a function of the update count, for ``fj.flood``.

    ``member`` (flat index among the configurations of a seed) and ``seed`` default to the
    winner of :meth:`best`; ``fj.flood(result.level_schedule())`` retrains it with the
    levels PBT gave it, changing at each exploit boundary.
    """
    if self.lineage is None:
      raise ValueError("level_schedule needs a PBT sweep: fj.sweep(..., pbt=fj.PBT(...)).")
    best: dict[str, Any] = self.best() if member is None or seed is None else {}
    member = int(best["member"] if member is None else member)
    seed = int(best["seed"] if seed is None else seed)
    where = (*np.unravel_index(member, self.config_shape), _find("seed", self.seeds, seed))
    record = self.config["pbt"]
    boundaries = [int(record["interval"]) * (k + 1) for k in range(self.lineage.shape[-1])]
    epochs = np.asarray(self.epochs)
    # A segment's level is the one recorded at its last epoch (the boundaries are evaluated).
    values = [float(self.history[self.level_name][where][np.flatnonzero(epochs == e)[0]])
              for e in (*boundaries, int(epochs[-1]))]  # fmt: skip
    steps = int(record["steps_per_epoch"])
    return LevelSchedule(tuple(b * steps for b in boundaries), tuple(values))

  def val_score(self, rule: str = "final") -> np.ndarray:
    """:attr:`selection_key` per run, ``(levels, *hyperparameters, seeds)``, under ``rule``.

    ``"best_val"``: the best (``mode``) value over the evaluations. Diverged
    and pruned runs (and epochs with a non-finite validation loss) score NaN.
    """
    _check_rule(rule)
    kept = np.isfinite(self.history["val_loss"]) & (self.pruned_at == 0)[..., None, None]
    val = np.where(kept, self.history[self.selection_key], np.nan)
    if rule == "final":
      return val[..., -1]
    signed = self._signed(val)
    best = np.max(np.where(np.isnan(signed), -np.inf, signed), axis=-1)
    return np.where(np.isneginf(best), np.nan, self._signed(best))  # no finite epoch: NaN

  def stopping_epoch(self, rule: str = "final") -> np.ndarray:
    """Where each run is read in ``history``'s last axis, ``(levels, *hyperparameters, seeds)``.

    ``"best_val"`` takes the first evaluation of best (``mode``)
    :attr:`selection_key`, for classification the highest validation accuracy
    (``result.epochs[index]`` is its epoch).
    """
    _check_rule(rule)
    val = self._signed(self.history[self.selection_key])
    if rule == "final":
      return np.full(val.shape[:-1], val.shape[-1] - 1)
    return np.argmax(np.nan_to_num(val, nan=-np.inf), axis=-1)

  def at_stopping(self, metric: str, rule: str = "final") -> np.ndarray:
    """``metric`` read at each run's stopping epoch, ``(levels, *hyperparameters, seeds)``."""
    if metric not in self.history:
      raise ValueError(f"unknown metric {metric!r}; known: {sorted(self.history)}.")
    epoch = self.stopping_epoch(rule)
    return np.take_along_axis(self.history[metric], epoch[..., None], axis=-1)[..., 0]

  def index(
    self, flood_level: float | None = None, seed: int | None = None, **hyperparams: float
  ) -> tuple[int, ...]:
    """Indices into the leading axes for a configuration (and a seed, if given).

    The level may also be named by its axis (``gamma=0.5`` for AdaFlood, so
    ``result.index(**result.best())`` works for every sweep). Raises a
    one-line ``ValueError`` for a value not in the sweep.
    """
    member = hyperparams.pop("member", None)
    if member is not None:  # a PBT member (see best): its slot, whatever its level now
      out = [int(i) for i in np.unravel_index(int(member), self.config_shape)]
      return tuple(out if seed is None else [*out, _find("seed", self.seeds, seed)])
    if flood_level is None:
      if self.level_name not in hyperparams:
        raise ValueError(
          f"name the {self.level_name} too, e.g. {self.level_name}={_plain(self.flood_levels[0])}."
        )
      flood_level = hyperparams.pop(self.level_name)
    if set(hyperparams) != set(self.hyperparams):
      raise ValueError(
        f"name every swept hyperparameter, {sorted(self.hyperparams)}; got {sorted(hyperparams)}."
      )
    out = [_find(self.level_name, self.flood_levels, flood_level)]
    out += [_find(name, self.hyperparams[name], hyperparams[name]) for name in self.hyperparams]
    if seed is not None:
      out.append(_find("seed", self.seeds, seed))
    return tuple(out)

  def select(self, **hyperparams: float) -> SweepResult:
    """The result at fixed values of some hyperparameters, their axes removed.

    ``result.select(**{k: v for k, v in result.best().items() if k !=
    "flood_level"})`` gives the familiar ``(levels, seeds, epochs)`` result at
    the best hyperparameters.
    """
    unknown = set(hyperparams) - set(self.hyperparams)
    if unknown:
      raise ValueError(
        f"unknown hyperparameters {sorted(unknown)}; the sweep has {sorted(self.hyperparams)}."
      )
    take: list[Any] = [slice(None)]
    kept = {}
    for name, values in self.hyperparams.items():
      if name in hyperparams:
        take.append(_find(name, values, hyperparams[name]))
      else:
        take.append(slice(None))
        kept[name] = values
    pick = lambda a: a[tuple(take)]
    fixed = {k: float(v) for k, v in hyperparams.items()}
    if self.local_models is not None:  # a process's own models: not on the grid
      return dataclasses.replace(
        self,
        history={k: pick(v) for k, v in self.history.items()},
        hyperparams=kept,
        final_params=None,
        final_batch_stats=None,
        local_models=None,
        config=dict(self.config, selected=dict(self.config.get("selected", {}), **fixed)),
      )
    pruned_at = self.pruned_at
    assert pruned_at is not None  # __post_init__ always sets it
    return dataclasses.replace(
      self,
      history={k: pick(v) for k, v in self.history.items()},
      hyperparams=kept,
      final_params=None if self.final_params is None else jax.tree.map(pick, self.final_params),
      final_batch_stats=(
        None if self.final_batch_stats is None else jax.tree.map(pick, self.final_batch_stats)
      ),
      config=dict(self.config, selected=dict(self.config.get("selected", {}), **fixed)),
      pruned_at=pruned_at[tuple(take[: pruned_at.ndim])],
    )

  def at_best_hyperparams(self) -> SweepResult:
    """:meth:`select` at the best configuration's hyperparameters (self if none)."""
    if not self.hyperparams or self.lineage is not None:  # (PBT: no fixed hyperparameters)
      return self
    best = self.best()
    return self.select(**{k: v for k, v in best.items() if k != self.level_name})

  def nnx_model(
    self, flood_level: float | None = None, seed: int | None = None, **hyperparams: float
  ) -> Any:
    """Rebuilds one trained ``nnx.Module`` of an NNX sweep.

    Calls the sweep's factory once (``make(nnx.Rngs(seed))``) and puts the
    trained parameters and BatchNorm statistics of ``(flood_level, seed,
    **hyperparams)`` into it (the level may be named by its axis, as in
    ``result.nnx_model(**result.best(), seed=0)``).
    """
    if seed is None:
      raise ValueError("nnx_model needs the seed, e.g. result.nnx_model(**result.best(), seed=0).")
    from flax import nnx

    if self.local_models is not None:
      raise ValueError(
        "nnx_model needs every model's parameters; this result holds only this"
        " process's (fj.sweep(..., gather_params=False)); rerun with the default"
        " gather_params=True."
      )
    if (
      self.model is None
      or self.final_params is None
      or not isinstance(self.final_params, nnx.State)
    ):
      raise ValueError(
        "nnx_model needs the result of an NNX sweep run in this process"
        " (parameters are not kept by save/load, and linen or fj.Model"
        " sweeps have no NNX module); index final_params instead."
      )
    where = self.index(flood_level, seed, **hyperparams)
    module = self.model(nnx.Rngs(int(seed)))
    nnx.update(module, jax.tree.map(lambda a: a[where], self.final_params))
    if self.final_batch_stats is not None:
      nnx.update(module, jax.tree.map(lambda a: a[where], self.final_batch_stats))
    return module

  def table(self) -> list[dict[str, Any]]:
    """One row per configuration: mean and std over seeds of the key final metrics.

    Diverged runs are counted in ``diverged`` and left out of the means. A
    pruned configuration's row reads its metrics at the epoch it was pruned
    after (``pruned_at``; 0 for one that trained to the end).
    ``d_test_acc`` and ``d_test_loss`` are the paired differences from
    ``b = 0`` (same seed, same hyperparameters), mean and std over seeds:
    an effect of flooding shows as a mean larger than its spread (NaN when
    the sweep has no ``b = 0``, or when ``b = 0`` was pruned before this
    configuration's last evaluation; the summary shows ``n/a``).
    ``never_flooded`` is whether the row's level is one of :meth:`never_flooded`.
    """
    return _report.table(self)

  def summary(self) -> str:
    """A readable table: per configuration, mean +/- std over seeds of final metrics.

    Columns: the flood level and each swept hyperparameter, final validation
    accuracy, best validation accuracy over epochs, final test accuracy, test
    accuracy at the best-validation epoch (early stopping), final (unflooded)
    training loss, final test loss and the last epoch's flooded fraction; with
    a ``b = 0`` row, the paired difference from it in final test accuracy and
    test loss (mean ± std over seeds: the spread says how much of the
    difference is seed noise); a ``diverged`` column counts runs with a
    non-finite validation loss when there are any. The best configuration by
    final validation accuracy is marked with ``*``. Levels that never flooded
    (:meth:`never_flooded`) are named in one line under the table.
    """
    return _report.summary(self)

  def to_dict(self) -> dict[str, Any]:
    """Metrics and settings as JSON-ready Python values (no parameters).

    A result whose selection is not classification's (``val_accuracy``,
    ``max``) also holds ``"selection": {"key": ..., "mode": ...}``, which
    :meth:`load` reads back (a file without it is classification's).
    """
    return _result_io.to_dict(self)

  def save(self, directory: str | os.PathLike[str], with_params: bool = True) -> str:
    """Writes ``results.json`` (metrics, settings) and ``params.npz`` to ``directory``.

    Args:
      directory: created if missing.
      with_params: also write the trained parameters (``params.npz``).

    Returns:
      The path of ``results.json``.
    """
    return _result_io.save(self, directory, with_params)

  @classmethod
  def load(cls, directory: str | os.PathLike[str]) -> SweepResult:
    """Reads the metrics written by :meth:`save` (parameters are not restored)."""
    return _result_io.load(cls, directory)

  def versus_no_flooding(
    self, metric: str | None = None, rule: str = "final"
  ) -> dict[str, Any] | None:
    r"""The best configuration against no flooding, paired by seed: is the winner any better?

    The winner of :meth:`best` (under ``rule``) and the configuration with
    ``b = 0`` (``gamma = 1`` for AdaFlood) at the same hyperparameters are
    compared on ``metric`` at the epoch ``rule`` reads, seed by seed:
    :math:`d_s = m_s(\text{best}) - m_s(b = 0)`. A one-sided paired t-test
    asks whether the mean of :math:`d` is better than 0: above 0, or below 0
    for a loss (a key ending in ``loss``) and for every metric of a task with
    ``mode="min"``. The winner was chosen on the validation numbers, so
    on a validation metric the test is optimistic (the winner's curse): a
    large p says that seed noise alone can explain the win.

    Args:
      metric: a key of ``history``; default the selection metric
        (:attr:`selection_key`).
      rule: ``"final"`` or ``"best_val"``, as in :meth:`best`.

    Returns:
      ``{"config", "metric", "diff", "std", "seeds", "p"}`` (``p`` NaN with
      fewer than two paired seeds), or ``None`` when the sweep has no
      ``b = 0``, every configuration diverged, or ``b = 0`` itself won.

    Examples:
      >>> import numpy as np, flood_jax as fj
      >>> acc = np.array([[0.70, 0.72, 0.71], [0.74, 0.75, 0.75]])[..., None]  # (levels, seeds, 1)
      >>> history = {m: acc for m in ("val_accuracy", "test_accuracy")}
      >>> history.update({m: 1 - acc for m in ("val_loss", "test_loss", "train_loss")})
      >>> history["flooded_fraction"] = np.zeros_like(acc)
      >>> result = fj.SweepResult(np.array([0.0, 0.1], np.float32), np.arange(3), history)
      >>> row = result.versus_no_flooding()
      >>> row["config"], round(row["diff"], 4), row["p"] < 0.05
      ({'flood_level': 0.1}, 0.0367, True)
    """
    metric = self.selection_key if metric is None else metric
    if metric not in self.history:
      raise ValueError(f"unknown metric {metric!r}; known: {sorted(self.history)}.")
    zero = np.flatnonzero(np.asarray(self.flood_levels) == self._no_flooding)
    if self.lineage is not None:  # PBT's members are not paired configurations
      return None
    try:
      best = self.best(rule)
    except ValueError:
      return None
    if not zero.size or best[self.level_name] == self._no_flooding:
      return None
    index = self.index(**cast(dict[str, Any], best))
    base = (int(zero[0]), *index[1:])
    at = self.stopping_epoch(rule)
    values = np.take_along_axis(self.history[metric], at[..., None], axis=-1)[..., 0]
    diff = np.asarray(values[index] - values[base], np.float64)
    diff = diff[np.isfinite(diff)]
    lower_is_better = self.lower_is_better(metric)
    return {
      "config": best,
      "metric": metric,
      "diff": float(diff.mean()) if diff.size else math.nan,
      "std": float(diff.std()) if diff.size else math.nan,
      "seeds": int(diff.size),
      "p": paired_p(-diff if lower_is_better else diff),
    }

  def lower_is_better(self, metric: str) -> bool:
    """Whether a lower value of history key ``metric`` is better.

    A loss always; the selection metric as ``mode`` says; another metric as the
    task's ``mode`` (a regression's ``mse``, ``mae``: lower; accuracy: higher).
    """
    if metric == self.selection_key:
      return self.mode == "min"
    return metric.endswith("loss") or self.mode == "min"

  @property
  def _no_flooding(self) -> float:
    """The value of the first axis that trains without flooding: ``b = 0``, or ``gamma = 1``."""
    return 1.0 if self.level_name == "gamma" else 0.0

  def __repr__(self) -> str:
    return _report.describe(self)


def paired_p(diff: Any) -> float:
  """One-sided p-value of a paired t-test that the mean of ``diff`` is above 0.

  NaN with fewer than two values or when every difference is 0; with no
  spread at all, 0 if the differences are positive, else 1.
  """
  diff = np.asarray(diff, np.float64)
  if diff.size < 2 or np.all(diff == 0):
    return math.nan  # nothing to test
  if np.allclose(diff, diff[0]):  # no spread: the t statistic is undefined
    return 0.0 if diff[0] > 0 else 1.0
  from scipy import stats

  return float(stats.ttest_1samp(diff, 0.0, alternative="greater").pvalue)  # pyright: ignore[reportAttributeAccessIssue]


def _find(name: str, values: np.ndarray, value: float) -> int:
  hits = np.flatnonzero(
    np.isclose(np.asarray(values, np.float64), float(value), rtol=1e-6, atol=0.0)
  )
  if hits.size == 0:
    raise ValueError(f"{name} {value!r} is not in the sweep; it has {[_plain(v) for v in values]}.")
  return int(hits[0])


def _plain(value: Any) -> Any:
  value = np.asarray(value).item()
  return round(value, 6) if isinstance(value, float) else value


def _check_rule(rule: str) -> None:
  if rule not in _RULES:
    raise ValueError(f"unknown epoch rule {rule!r}; use one of {_RULES}.")
