"""Argument types: each turns one option's text into a value or raises
``argparse.ArgumentTypeError``, which the parser prints as one line."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any

OPTIMIZERS = ("sgd", "adam")


def parse_levels(text: str) -> list[float]:
  """Parses ``--levels``: ``START:STOP:COUNT`` (inclusive) or a comma list.

  Args:
    text: e.g. ``"0:0.2:21"`` or ``"0,0.02,0.05"``.

  Returns:
    The levels, each finite (a level below 0 suits a loss that goes negative,
    such as a likelihood), distinct, in the order given.

  Raises:
    argparse.ArgumentTypeError: malformed, not finite or repeated.

  Examples:
    >>> parse_levels("0:0.1:3")
    [0.0, 0.05, 0.1]
    >>> parse_levels("0, 0.02")
    [0.0, 0.02]
    >>> parse_levels("-1,0")
    [-1.0, 0.0]
  """
  usage = "use START:STOP:COUNT such as 0:0.2:21, or a comma list such as 0,0.02,0.05"
  try:
    if ":" in text:
      start, stop, count = text.split(":")
      start, stop, count = float(start), float(stop), int(count)
      if count < 1:
        raise argparse.ArgumentTypeError(f"COUNT in {text!r} must be at least 1")
      step = 0.0 if count == 1 else (stop - start) / (count - 1)
      levels = [start + k * step for k in range(count)]
      levels[-1] = stop if count > 1 else start
    else:
      levels = [float(part) for part in text.split(",") if part.strip()]
  except ValueError:
    raise argparse.ArgumentTypeError(f"malformed levels {text!r}; {usage}") from None
  if not levels:
    raise argparse.ArgumentTypeError(f"no levels in {text!r}; {usage}")
  levels = [round(b, 12) + 0.0 for b in levels]  # 0.30000000000000004 -> 0.3
  for level in levels:
    if not math.isfinite(level):
      raise argparse.ArgumentTypeError(
        f"flood levels must be finite numbers (b = 0 is no flooding), got {level:g}"
      )
  if len(set(levels)) != len(levels):
    raise argparse.ArgumentTypeError(f"flood levels must be distinct, got {text!r}")
  return levels


def parse_seeds(text: str) -> list[int]:
  """Parses ``--seeds``: a count ``N`` (seeds ``0..N-1``) or a comma list.

  Args:
    text: e.g. ``"3"`` or ``"0,5,7"``.

  Returns:
    The seeds, distinct non-negative integers.

  Raises:
    argparse.ArgumentTypeError: malformed, negative or repeated seeds.

  Examples:
    >>> parse_seeds("3")
    [0, 1, 2]
    >>> parse_seeds("4,2")
    [4, 2]
  """
  try:
    if "," in text:
      seeds = [int(part) for part in text.split(",") if part.strip()]
    else:
      count = int(text)
      if count < 1:
        raise argparse.ArgumentTypeError(f"the seed count must be at least 1, got {count}")
      seeds = list(range(count))
  except ValueError:
    raise argparse.ArgumentTypeError(
      f"malformed seeds {text!r}; give a count such as 3 or a comma list such as 0,5,7"
    ) from None
  if not seeds or any(s < 0 or s >= 2**31 for s in seeds):
    raise argparse.ArgumentTypeError(f"seeds must be integers in [0, 2**31), got {text!r}")
  if len(set(seeds)) != len(seeds):
    raise argparse.ArgumentTypeError(f"seeds must be distinct, got {text!r}")
  return seeds


def snake_name(text: str) -> str:
  """A data set or model name as the registries spell it.

  Examples:
    >>> snake_name(" Fashion-MNIST")
    'fashion_mnist'
  """
  return text.strip().lower().replace("-", "_")


def positive_int(text: str) -> int:
  """An integer ``>= 1``."""
  try:
    value = int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
  if value < 1:
    raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
  return value


def finite_float(text: str) -> float:
  """A finite number."""
  try:
    value = float(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
  if not math.isfinite(value):
    raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
  return value


def positive_float(text: str) -> float:
  """A finite number ``> 0``."""
  value = finite_float(text)
  if value <= 0:
    raise argparse.ArgumentTypeError(f"expected a number > 0, got {value:g}")
  return value


def non_negative_float(text: str) -> float:
  """A finite number ``>= 0``."""
  value = finite_float(text)
  if value < 0:
    raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value:g}")
  return value


def fraction(text: str) -> float:
  """A number in ``[0, 1)``: a label noise rate, a momentum."""
  value = finite_float(text)
  if not 0 <= value < 1:
    raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {value:g}")
  return value


def number_list(item: Callable[[str], float]) -> Callable[[str], list[float]]:
  """A parser of comma lists of ``item`` values, distinct, in the order given.

  Examples:
    >>> number_list(positive_float)("0.05, 0.1")
    [0.05, 0.1]
  """

  def parse(text: str) -> list[float]:
    values = [item(part) for part in text.split(",") if part.strip()]
    if not values:
      raise argparse.ArgumentTypeError(
        f"expected a number or a comma list such as 0.01,0.1, got {text!r}"
      )
    if len(set(values)) != len(values):
      raise argparse.ArgumentTypeError(f"values must be distinct, got {text!r}")
    return values

  return parse


positive_float_list = number_list(positive_float)
non_negative_float_list = number_list(non_negative_float)


def fraction_list(text: str) -> tuple[float, ...]:
  """A comma list of :func:`fraction` values.

  Examples:
    >>> fraction_list("0.01,0.1")
    (0.01, 0.1)
  """
  return tuple(fraction(v) for v in text.split(","))


def optimizer_list(text: str) -> tuple[str, ...]:
  """A comma list of names from :data:`OPTIMIZERS`.

  Examples:
    >>> optimizer_list("SGD,adam")
    ('sgd', 'adam')
  """
  names = tuple(v.strip().lower() for v in text.split(","))
  unknown = [n for n in names if n not in OPTIMIZERS]
  if unknown:
    raise argparse.ArgumentTypeError(
      f"unknown optimizer {unknown[0]!r}; use {', '.join(OPTIMIZERS)}"
    )
  return names


def parse_pbt(text: str) -> list[Any]:
  """Parses ``--pbt``: ``INTERVAL[,FRACTION]`` of population-based training.

  Examples:
    >>> parse_pbt("5")
    [5, 0.25]
    >>> parse_pbt("6,0.5")
    [6, 0.5]
  """
  parts = [part.strip() for part in text.split(",")]
  try:
    if len(parts) > 2:
      raise ValueError
    interval, fraction = int(parts[0]), float(parts[1]) if len(parts) == 2 else 0.25
  except ValueError:
    raise argparse.ArgumentTypeError(
      f"--pbt takes INTERVAL[,FRACTION], e.g. 5 or 5,0.25; got {text!r}."
    ) from None
  if interval < 1 or not 0 <= fraction <= 0.5:
    raise argparse.ArgumentTypeError(
      f"--pbt needs INTERVAL >= 1 and FRACTION in [0, 0.5], e.g. 5,0.25; got {text!r}."
    )
  return [interval, fraction]


def parse_prune(text: str) -> list[Any]:
  """Parses ``--prune``: ``MIN_EPOCHS[,FACTOR[,SCORE]]`` of successive halving.

  Args:
    text: e.g. ``"10"`` (factor 3), ``"10,2"`` or ``"12,2,trend"``.

  Returns:
    ``[min_epochs, factor]``, or ``[min_epochs, factor, score]`` when a score is given.

  Raises:
    argparse.ArgumentTypeError: malformed, ``min_epochs < 1``, ``factor < 2``
      or an unknown score.

  Examples:
    >>> parse_prune("10")
    [10, 3]
    >>> parse_prune("4,2")
    [4, 2]
    >>> parse_prune("12,2,trend")
    [12, 2, 'trend']
  """
  parts = [part.strip() for part in text.split(",")]
  score = parts.pop() if len(parts) == 3 else None
  try:
    values = [int(part) for part in parts]
  except ValueError:
    values = []
  if len(values) not in (1, 2) or score not in (None, "accuracy", "trend"):
    raise argparse.ArgumentTypeError(
      f"malformed --prune {text!r}; give MIN_EPOCHS[,FACTOR[,SCORE]] such as 10, 10,3 or"
      " 12,2,trend (SCORE: accuracy or trend)"
    )
  min_epochs, factor = ([*values, 3])[:2]
  if min_epochs < 1 or factor < 2:
    raise argparse.ArgumentTypeError(f"--prune needs MIN_EPOCHS >= 1 and FACTOR >= 2, got {text!r}")
  return [min_epochs, factor] if score is None else [min_epochs, factor, score]


def memory_size(text: str) -> int:
  """Bytes from ``16GB`` (10**9), ``8GiB`` (2**30), ``500MB`` or a plain number."""
  from flood_jax._sweep.memory import parse_bytes

  try:
    return parse_bytes(text, "--memory-limit")
  except (TypeError, ValueError) as err:
    raise argparse.ArgumentTypeError(str(err).rstrip(".")) from None
