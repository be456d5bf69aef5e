"""Records the golden fixtures: ``python -m tests.golden.record`` (one CPU device, about a minute).

Run it only on an engine whose numbers are known good (the fixtures were first recorded before
the engine's reshape, issue 17); ``tests/test_golden.py`` then holds every later engine to them.
"""

from __future__ import annotations

import json
import os

import numpy as np

from tests.golden.cases import CASES, dataset, versions

HERE = os.path.dirname(os.path.abspath(__file__))


def main() -> None:
  data = dataset()
  arrays, keys = {}, {}
  for name, case in CASES.items():
    flat, computations = case(data)
    arrays.update({f"{name}:{k}": v for k, v in flat.items()})
    keys[name] = computations
    print(f"{name}: {len(flat)} arrays, {len(computations)} computation keys")
  np.savez_compressed(os.path.join(HERE, "sweeps.npz"), **arrays)
  with open(os.path.join(HERE, "sweeps.json"), "w") as f:
    json.dump({"versions": versions(), "computations": keys}, f, indent=1)
    f.write("\n")


if __name__ == "__main__":
  main()
