"""The protocols' tables, files and figures: the Markdown tables, ``reproduce.json``
and the accuracy-against-level figures."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence

import numpy as np

from flood_jax._result import SweepResult
from flood_jax.reproduce._compare import (
  METHODS,
  PBT_METHODS,
  Comparison,
  MethodsComparison,
  PBTComparison,
)
from flood_jax.reproduce._protocol import _writing


def markdown_table(comparisons: Sequence[Comparison]) -> str:
  """Test accuracy (%) mean ± std over seeds, with and without early stopping.

  Each half has the paired difference across seeds (flooding minus no
  flooding, same seed, in points: mean ± std) and the one-sided p-value.
  """
  head = (
    "| setting | no flooding | flooding | Δ | chosen b | p | no flooding (ES) |"
    " flooding (ES) | Δ (ES) | chosen b (ES) | p (ES) |"
  )
  lines = [head, "|" + "---|" * 11]
  for c in comparisons:
    cells = [c.setting.label]
    for acc_base, acc_flood, chosen, es in [
      (c.no_flood, c.flood, c.chosen, False),
      (c.no_flood_es, c.flood_es, c.chosen_es, True),
    ]:
      base_text, flood_text = _pm(acc_base), _pm(acc_flood)
      p = c.p_value(es)
      if np.mean(acc_flood) > np.mean(acc_base):
        flood_text = f"**{flood_text}**"
      diff = _pm(np.asarray(acc_flood) - np.asarray(acc_base))
      cells += [base_text, flood_text, diff, f"{np.mean(chosen):.3f}", _p_text(p)]
    lines.append("| " + " | ".join(cells) + " |")
  notes = [note for c in comparisons if (note := c.never_flooded_note())]
  return "\n".join(lines + (["", *notes] if notes else []))


def methods_table(comparisons: Sequence[MethodsComparison], early_stopping: bool = False) -> str:
  """Test accuracy (%) per method, mean ± std over seeds, with paired p-values."""
  head = (
    "| setting | no flooding | flooding | iFlood | AdaFlood | b (flood) | b (iFlood)"
    " | gamma | p Ada > none | p Ada > flood | p Ada > iFlood | p flood > none |"
    " p iFlood > none | fold models |"
  )
  lines = [head, "|" + "---|" * 14]
  for c in comparisons:
    test = c.test_es if early_stopping else c.test
    chosen = c.chosen_es if early_stopping else c.chosen
    base = c.no_flood_es if early_stopping else c.no_flood
    means = {m: np.mean(test[m]) for m in METHODS}
    best = max(means.values())
    cells = [c.setting.label, _pm(base)]
    cells += [
      f"**{_pm(test[m])}**" if means[m] == best and best > np.mean(base) else _pm(test[m])
      for m in METHODS
    ]
    cells += [f"{np.mean(chosen[m]):.2f}" for m in METHODS]
    cells += [
      _p_text(c.p_value("adaflood", a, early_stopping)) for a in ("none", "flood", "iflood")
    ]
    cells += [_p_text(c.p_value(m, "none", early_stopping)) for m in ("flood", "iflood")]
    cells.append(
      f"{c.num_models['folds']} models, {c.seconds['folds']:.0f} s"
      f" ({100 * c.seconds['folds'] / c.seconds['adaflood']:.0f}% of AdaFlood's sweep)"
    )
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def pbt_table(comparisons: Sequence[PBTComparison], metric: str = "accuracy") -> str:
  """Test accuracy (%) or test loss per method, mean ± std over seeds, with the paired
  differences (PBT minus the other, same seed) and one-sided p-values that PBT is better."""
  loss = metric == "loss"
  fmt = _pm_loss if loss else _pm
  head = "| setting | grid | Halving | PBT | PBT - grid | p | PBT - Halving | p |" + (
    "" if loss else " b grid | b Halving | b PBT (end) | model-epochs grid / Halving / PBT |"
  )
  lines = [head, "|" + "---|" * (8 if loss else 12)]
  for c in comparisons:
    values = c.loss if loss else c.test
    means = {m: np.mean(values[m]) for m in PBT_METHODS}
    best = (min if loss else max)(means.values())
    cells = [c.setting.label]
    cells += [f"**{fmt(values[m])}**" if means[m] == best else fmt(values[m]) for m in PBT_METHODS]
    for against in ("grid", "halving"):
      cells += [fmt(values["pbt"] - values[against]), _p_text(c.p_value(against, metric))]
    if not loss:
      cells += [f"{np.mean(c.chosen[m]):.3f}" for m in PBT_METHODS]
      cells.append(" / ".join(f"{c.model_epochs[m]:,}" for m in PBT_METHODS))
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def _pm(values: Iterable[float]) -> str:
  values = 100 * np.asarray(list(values), np.float64)
  return f"{values.mean():.2f} ± {values.std():.2f}"


def _pm_loss(values: Iterable[float]) -> str:
  values = np.asarray(list(values), np.float64)
  return f"{values.mean():.3f} ± {values.std():.3f}"


def _p_text(p: float) -> str:
  return "n/a" if not np.isfinite(p) else f"{p:.3f}"


def _write_outputs(name, out_dir, comparisons, wall_time, config) -> None:
  table = markdown_table(comparisons)
  with open(os.path.join(out_dir, f"{name}_table.md"), "w") as f:
    f.write(
      f"Test accuracy (%), mean ± std over seeds; p: one-sided paired t-test"
      f" (flooding > no flooding) across seeds; ES: early stopping at the"
      f" best-validation epoch. Wall time so far: {wall_time:.0f} s.\n\n"
    )
    f.write(table + "\n")
  _write_json(name, out_dir, comparisons, wall_time, config)


def _write_methods_outputs(out_dir, comparisons, wall_time, config) -> None:
  with open(os.path.join(out_dir, "adaflood_table.md"), "w") as f:
    f.write(
      f"Test accuracy (%), mean ± std over seeds; each method's level chosen per seed"
      f" by validation; p: one-sided paired t-test across seeds. Wall time so far:"
      f" {wall_time:.0f} s.\n\nLast epoch:\n\n{methods_table(comparisons)}\n\n"
      f"Early stopping:\n\n{methods_table(comparisons, early_stopping=True)}\n"
    )
  _write_json("adaflood", out_dir, comparisons, wall_time, config)


def _write_pbt_outputs(out_dir, comparisons, wall_time, config) -> None:
  with open(os.path.join(out_dir, "pbt_table.md"), "w") as f:
    f.write(
      f"Per seed, each method's choice by final validation accuracy, read at the last"
      f" epoch; mean ± std over seeds; PBT - X: paired differences (same seed); p:"
      f" one-sided paired t-test that PBT is better. Wall time so far:"
      f" {wall_time:.0f} s.\n\nTest accuracy (%):\n\n{pbt_table(comparisons)}\n\n"
      f"Test loss:\n\n{pbt_table(comparisons, 'loss')}\n"
    )
  _write_json("pbt", out_dir, comparisons, wall_time, config)


def _write_json(name, out_dir, comparisons, wall_time, config) -> None:
  """``reproduce.json``: the protocol, its settings and every comparison."""
  with open(os.path.join(out_dir, "reproduce.json"), "w") as f:
    json.dump(
      {
        "protocol": name,
        "wall_time": wall_time,
        "config": config,
        "comparisons": [c.to_dict() for c in comparisons],
      },
      f,
      indent=1,
    )


def _setting_figures(out_dir: str, slug: str, result: SweepResult) -> None:
  """A setting's learning curves and its accuracy against the flood level, in ``OUT/figures/``."""
  from flood_jax import plots  # matplotlib is imported only when plotting

  for plot, figure in [
    (plots.plot_curves, f"curves_{slug}.png"),
    (plots.plot_accuracy_vs_level, f"accuracy_vs_level_{slug}.png"),
  ]:
    path = os.path.join(out_dir, "figures", figure)
    with _writing(out_dir, path):
      plot(result, path)


def _summary_figure(runs, path) -> None:
  """Final test accuracy against the flood level, one panel per setting."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  n = len(runs)
  cols = min(4, n)
  rows = -(-n // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
  for ax, (setting, result) in zip(axes.ravel(), runs, strict=False):
    acc = 100 * result.history["test_accuracy"][..., -1]
    acc_es = 100 * result.at_stopping("test_accuracy", "best_val")
    for values, label in [(acc, "last epoch"), (acc_es, "early stopping")]:
      mean, std = values.mean(1), values.std(1)
      ax.plot(result.flood_levels, mean, label=label)
      ax.fill_between(result.flood_levels, mean - std, mean + std, alpha=0.2)
    ax.set_title(setting.label, fontsize=8)
    ax.set_xlabel("flood level b", fontsize=8)
    ax.set_ylabel("test accuracy (%)", fontsize=8)
    ax.tick_params(labelsize=7)
  for ax in axes.ravel()[n:]:
    ax.axis("off")
  axes.ravel()[0].legend(fontsize=7)
  fig.tight_layout()
  os.makedirs(os.path.dirname(path), exist_ok=True)
  fig.savefig(path, dpi=80)
  plt.close(fig)
