"""The sweep's progress bar: chunk-epochs done of those planned (process 0's only)."""

from __future__ import annotations

import math
from typing import Any

from flood_jax._sweep.prune import Policy


class NoBar:
  """What a sweep without a progress bar updates."""

  n = 0

  def update(self, n: int) -> None:
    del n

  def close(self) -> None:
    pass


def progress_bar(enabled: bool, total: int, num_models: int, group: int) -> Any:
  if not enabled:
    return NoBar()
  from tqdm.auto import tqdm

  return tqdm(
    total=total,
    desc=f"sweep: {num_models} models, {group} per call",
    unit="epoch",
    dynamic_ncols=True,
  )


def planned_chunk_epochs(
  policy: Policy, configs: int, seeds: int, group: int, stops: tuple[int, ...], segment: int = 0
) -> int:
  """Calls x epochs that segments ``segment...`` will run, ``configs`` training in ``segment``.

  After each rung the policy keeps what :meth:`Policy.survivors_per_rung` plans (at least:
  ties can keep more, and a progress bar's total is then raised with :func:`retotal`).
  """
  total = 0
  epochs = stops[-1]
  planned = [configs, *policy.survivors_per_rung(configs, epochs)]
  for s in range(segment, len(stops)):
    alive = planned[s - segment] if s - segment < len(planned) else planned[-1]
    total += math.ceil(alive * seeds / group) * (stops[s] - (stops[s - 1] if s else 0))
  return total


def retotal(
  bar: Any, policy: Policy, configs: int, seeds: int, group: int, stops: tuple[int, ...],
  segment: int,
) -> None:  # fmt: skip
  """Sets a tqdm bar's total to its progress so far plus what segments ``segment...`` cost."""
  if not hasattr(bar, "total") or segment >= len(stops):
    return
  bar.total = bar.n + planned_chunk_epochs(policy, configs, seeds, group, stops, segment)
  bar.refresh()
