"""Which successive-halving rule keeps the level an unpruned sweep chooses? A replay study.

Every survivor of a pruned sweep ends bitwise where it ends unpruned, so a rule
can be judged exactly from saved *unpruned* sweeps: replay it on their
histories, see what it would have cut, and compare the level it would choose
with the one the full sweep chose. No training runs here.

A rule is a scorer (what a configuration is ranked by at a rung), a tie rule
and a rung schedule:

- ``acc``: mean validation accuracy over seeds at the rung (the rule of issue 12);
- ``loss``: mean validation loss at the rung (lower is better);
- ``acc-mean``: mean validation accuracy over the evaluated epochs of the second
  half of the rung (a smoothed, later-weighted score); ``acc-max``: the best
  validation accuracy so far; ``acc-trend``: a least-squares line through the
  second half, read at the last epoch (a forecast that favours rising curves);
- ``first``: ties cut in the grid's order (the old rule); ``ties``: configurations
  scoring exactly alike are kept or cut together, a group across the cut is kept;
  ``ties-cut``: the same, but a group across the cut is cut (unless it is the best);
  ``noise``: also keep what is within one pooled standard error of the last kept;
- ``flooded``: the first rung waits until every level has started to flood
  (its flooded fraction above 0 in every seed) or ``min_epochs``, whichever is
  later, and later rungs follow from it.

Judged as in ``benchmarks/halving.py``: the chosen level is the same, or its
mean test accuracy is within the seed spread of the full sweep's choice; cost
in model-epochs relative to the unpruned sweep.

  python benchmarks/halving_rules.py runs/reproduce-synthetic/runs/*
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import math
import os
import platform
import sys

import numpy as np

import flood_jax as fj
from flood_jax._sweep import prune as prune_lib


@dataclasses.dataclass(frozen=True)
class Rule:
  score: str  # "acc", "loss", "acc-mean"
  ties: str  # "first", "ties"
  start: str  # "fixed", "flooded"
  min_epochs: int
  factor: int

  @property
  def name(self) -> str:
    return f"{self.score}, {self.ties}, {self.start} ({self.min_epochs}, {self.factor})"


def rungs(rule: Rule, result: fj.SweepResult) -> list[int]:
  """The rung epochs: ``m * factor**k`` below the last epoch, ``m`` moved to an evaluated epoch."""
  epochs = np.asarray(result.epochs)
  first = rule.min_epochs
  if rule.start == "flooded":
    flooded = result.history["flooded_fraction"] > 0  # (configs..., seeds, evals)
    levels = np.asarray(result.flood_levels) > 0
    every = flooded[levels].reshape(-1, flooded.shape[-2], flooded.shape[-1]).all(axis=1)
    started = np.cumsum(every, axis=-1) > 0  # a level has flooded by this evaluation
    ready = np.flatnonzero(started.all(axis=0))
    first = max(first, int(epochs[ready[0]])) if ready.size else int(epochs[-1])
  out, rung = [], first
  while rung < epochs[-1]:
    hits = epochs[epochs >= rung]
    out.append(int(hits[0]))
    rung = int(hits[0]) * rule.factor
  return sorted(set(out) - {int(epochs[-1])})


def scores(rule: Rule, result: fj.SweepResult, rung: int) -> np.ndarray:
  """Per flat configuration and seed ``(configs, seeds)``, higher is better; NaN if diverged."""
  epochs = np.asarray(result.epochs)
  at = int(np.flatnonzero(epochs == rung)[0])
  ok = np.isfinite(result.history["val_loss"][..., at])  # (configs..., seeds)
  acc = result.history["val_accuracy"]
  if rule.score == "acc":
    value = acc[..., at]
  elif rule.score == "loss":
    value = -result.history["val_loss"][..., at]
  elif rule.score == "acc-max":  # the best validation accuracy so far (early stopping's view)
    value = acc[..., : at + 1].max(axis=-1)
  elif rule.score == "acc-trend":  # the engine's Halving(score="trend"): a forecast
    value = prune_lib.trend_forecast(acc[..., : at + 1], epochs[: at + 1], rung, int(epochs[-1]))
  else:  # acc-mean: the evaluated epochs in (rung / 2, rung]
    window = (epochs > rung / 2) & (epochs <= rung)
    value = acc[..., window].mean(axis=-1)
  value = np.where(ok, value, np.nan)
  return np.asarray(value, np.float64).reshape(-1, value.shape[-1])


def select(values: np.ndarray, factor: int, ties: str) -> np.ndarray:
  """Kept configurations (sorted) from ``values`` ``(configs, seeds)``."""
  mean = values.mean(axis=-1)
  keep = max(1, math.ceil(len(mean) / factor))
  filled = np.nan_to_num(mean, nan=-np.inf)
  ranked = np.argsort(-filled, kind="stable")
  if ties == "first":
    return np.sort(ranked[:keep])
  if ties == "ties":  # the engine's rule, so the replay is exact
    return prune_lib.select(mean, factor)
  threshold = filled[ranked[keep - 1]]
  if ties == "ties-cut":  # a group tied across the cut goes with the cut (unless it is the top)
    above = np.flatnonzero(filled > threshold)
    return above if above.size else np.flatnonzero(filled >= threshold)
  if ties == "noise":  # keep what is within one standard error of the last one kept
    seeds = values.shape[-1]
    pooled = np.sqrt(np.nanmean(values.var(axis=-1, ddof=1))) if seeds > 1 else 0.0
    threshold -= pooled / math.sqrt(seeds)
  return np.flatnonzero(filled >= threshold)


def replay(rule: Rule, result: fj.SweepResult) -> np.ndarray:
  """``pruned_at`` per configuration under ``rule``."""
  shape = result.config_shape
  alive = np.arange(math.prod(shape))
  pruned_at = np.zeros(len(alive), np.int64)
  for rung in rungs(rule, result):
    values = scores(rule, result, rung)[alive]
    kept = alive[select(values, rule.factor, rule.ties)]
    pruned_at[np.setdiff1d(alive, kept)] = rung
    alive = kept
  return pruned_at.reshape(shape)


def judge(rule: Rule, full: fj.SweepResult) -> dict:
  pruned = dataclasses.replace(full, pruned_at=replay(rule, full))
  chosen, chosen_pruned = full.best(), pruned.best()
  test = full.history["test_accuracy"][..., -1]
  at = lambda config: test[full.index(**config)]
  diff = float(at(chosen_pruned).mean() - at(chosen).mean())
  spread = float(at(chosen).std())
  per_config = np.where(pruned.pruned_at > 0, pruned.pruned_at, full.num_epochs)
  return {
    "same": chosen == chosen_pruned,
    "within": chosen == chosen_pruned or abs(diff) <= spread,
    "not_worse": chosen == chosen_pruned or diff >= -spread,
    "smaller_b": chosen_pruned["flood_level"] < chosen["flood_level"],
    "model_epochs": float(per_config.sum()),
    "model_epochs_full": float(full.num_epochs * math.prod(full.config_shape)),
  }


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("runs", nargs="+", help="saved unpruned sweeps (directories)")
  parser.add_argument("--min-epochs", default="6,10,16,20,30")
  parser.add_argument("--factors", default="2,3")
  parser.add_argument("--scores", default="acc,loss,acc-mean,acc-max")
  parser.add_argument("--ties", default="first,ties,noise")
  parser.add_argument("--starts", default="fixed,flooded")
  args = parser.parse_args()
  sweeps = [fj.SweepResult.load(d) for d in args.runs]
  print(
    f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores,"
    f" python {sys.version.split()[0]}; {len(sweeps)} unpruned sweeps",
    flush=True,
  )
  print(
    "| rule (score, ties, first rung) | (min_epochs, factor) | model-epochs | same choice"
    " | same or within seed spread | not worse than the spread | misses choosing a smaller b |"
  )
  print("|---|---|---|---|---|---|---|")
  grid = itertools.product(
    args.scores.split(","),
    args.ties.split(","),
    args.starts.split(","),
    [int(m) for m in args.min_epochs.split(",")],
    [int(f) for f in args.factors.split(",")],
  )
  for score, ties, start, m, factor in grid:
    rule = Rule(score, ties, start, m, factor)
    rows = [judge(rule, full) for full in sweeps]
    total = lambda key, rows=rows: sum(r[key] for r in rows)
    misses = [r for r in rows if not r["within"]]
    print(
      f"| {score}, {ties}, {start} | ({m}, {factor}) |"
      f" {total('model_epochs') / total('model_epochs_full'):.3f} | {total('same')} |"
      f" {total('within')} ({100 * total('within') / len(rows):.0f}%) | {total('not_worse')} |"
      f" {sum(r['smaller_b'] for r in misses)} of {len(misses)} |",
      flush=True,
    )


if __name__ == "__main__":
  main()
