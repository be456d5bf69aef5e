"""The ``flood-jax`` command line.

Subcommands live in :data:`COMMANDS`, a dict from name to a
:class:`~flood_jax.cli.common.Command` (its help, a function that adds its
arguments to a parser, and a function that runs it); adding a subcommand is
adding an entry. Each has a module of its own:

- ``sweep``: ``flood-jax sweep`` trains a grid of flood levels and seeds with
  :func:`flood_jax.sweep`, prints the table and writes results, curves and
  plots to ``--out``;
- ``reproduce``: ``flood-jax reproduce`` reproduces the paper's findings;
- ``args``: the argument types (``--levels``, ``--seeds``, numbers, lists);
- ``common``: what they share (usage errors, one-line failures, JSON writing,
  the number of CPU devices).

::

  flood-jax sweep                                  # MNIST-1D, the defaults
  flood-jax sweep --dataset spiral --label-noise 0.1 --levels 0:0.3:7 --out runs/spiral
  flood-jax sweep --out runs/spiral ... --resume   # after an interruption

Exit codes: 0 done, 2 bad arguments (one line on stderr), 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from flood_jax.cli import reproduce, sweep
from flood_jax.cli.args import parse_levels, parse_seeds
from flood_jax.cli.common import PROG, Command, UsageError
from flood_jax.cli.sweep import DEFAULTS, SweepDefaults, write_history_csv

__all__ = [
  "COMMANDS",
  "DEFAULTS",
  "PROG",
  "Command",
  "SweepDefaults",
  "UsageError",
  "build_parser",
  "main",
  "parse_levels",
  "parse_seeds",
  "write_history_csv",
]

COMMANDS: dict[str, Command] = {
  "sweep": sweep.COMMAND,
  "reproduce": reproduce.COMMAND,
}
"""The subcommands by name; a new subcommand is a new entry."""


class _Parser(argparse.ArgumentParser):
  """An ``ArgumentParser`` whose errors are one line (and exit code 2)."""

  def error(self, message: str) -> NoReturn:
    self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def main(argv: Sequence[str] | None = None) -> int:
  """Runs ``flood-jax`` with ``argv`` (default ``sys.argv[1:]``).

  Args:
    argv: the arguments after the program name.

  Returns:
    The exit code: 0 on success, 2 on bad arguments, 130 when interrupted.
  """
  argv = list(sys.argv[1:] if argv is None else argv)
  parser = build_parser()
  try:
    args = parser.parse_args(argv)
  except SystemExit as exit_:  # --help, or a usage error already printed
    return exit_.code if isinstance(exit_.code, int) else 2
  return COMMANDS[args.command].run(args, argv)


def build_parser() -> argparse.ArgumentParser:
  """The ``flood-jax`` parser with one subparser per entry of :data:`COMMANDS`."""
  parser = _Parser(
    prog=PROG,
    description="Flooding (Ishida et al., 2020) for JAX: train and compare flood levels.",
  )
  sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
  for name, command in COMMANDS.items():
    child = sub.add_parser(
      name,
      help=command.help,
      description=command.description,
      formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    command.add_arguments(child)
  return parser
