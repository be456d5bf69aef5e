"""``python -m flood_jax``: the same as the ``flood-jax`` command."""

import sys

from flood_jax.cli import main

if __name__ == "__main__":
  sys.exit(main())
