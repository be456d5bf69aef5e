"""Golden fixtures: the reference sweeps of ``tests/golden/cases.py`` end bitwise as recorded.

They were recorded on the engine before its reshape into one loop, so every number the README,
the reports and a user's checkpoints hold still comes out of the engine unchanged: histories,
final parameters and model state, pruning records and AdaFlood's levels are ``np.array_equal``,
and each program's computation key (the SHA-256 of its traced one-model jaxpr, which also keys
the programs reused across sweeps) is the same string.
"""

import json
import os

import numpy as np
import pytest

from tests.golden.cases import CASES, dataset, versions

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden")


@pytest.fixture(scope="module")
def recorded():
  with open(os.path.join(HERE, "sweeps.json")) as f:
    meta = json.load(f)
  if meta["versions"] != versions():
    pytest.skip(
      f"fixtures recorded with {meta['versions']}, these libraries are {versions()}: XLA's"
      " arithmetic may differ; record them again (python -m tests.golden.record) on an engine"
      " known to be good"
    )
  with np.load(os.path.join(HERE, "sweeps.npz")) as arrays:
    return meta["computations"], {k: arrays[k] for k in arrays.files}


@pytest.mark.parametrize("name", list(CASES))
def test_reference_sweep_ends_bitwise_as_recorded(name, recorded):
  computations, arrays = recorded
  flat, keys = CASES[name](dataset())
  expected = {k.split(":", 1)[1]: v for k, v in arrays.items() if k.startswith(name + ":")}
  assert sorted(flat) == sorted(expected)
  for key, value in expected.items():
    assert value.dtype == flat[key].dtype, key
    np.testing.assert_array_equal(flat[key], value, err_msg=f"{name}: {key}")
  assert keys == computations[name]
