"""Golden fixtures: the reference sweeps of ``tests/golden/cases.py`` end bitwise as recorded.

They were recorded on the engine before its reshape into one loop, so every number the README,
the reports and a user's checkpoints hold still comes out of the engine unchanged: histories,
final parameters and model state, pruning records and AdaFlood's levels are ``np.array_equal``;
each program's computation key (the SHA-256 of its traced one-model jaxpr, which keys the
programs reused across sweeps and the checkpoint fingerprint) is the same string; and the
programs compile to the same entries of JAX's persistent compilation cache (same lowered HLO).
The cases run in a fresh process of one CPU device, as they were recorded. XLA's arithmetic
differs between CPU kinds, so each kind has its own folder of fixtures (``tests/golden/<cpu>/``,
each recorded on the same engine); on a machine none was recorded on, the test skips.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.golden.cases import CASES, machine, machine_folder

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _read(directory):
  with open(os.path.join(directory, "sweeps.json")) as f:
    meta = json.load(f)
  with np.load(os.path.join(directory, "sweeps.npz")) as arrays:
    return meta, {k: arrays[k] for k in arrays.files}


@pytest.fixture(scope="module")
def both(tmp_path_factory):
  folder = os.path.join(HERE, machine_folder(machine()))
  recorded = _read(folder) if os.path.exists(os.path.join(folder, "sweeps.json")) else None
  if recorded is None or recorded[0]["machine"] != machine():
    pytest.skip(
      f"no fixtures recorded on a machine like this one ({machine()}): XLA's arithmetic may"
      " differ; record them (python -m tests.golden.record) on an engine known to be good"
    )
  out = tmp_path_factory.mktemp("golden")
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  subprocess.run(
    [sys.executable, "-m", "tests.golden.record", "--out", str(out)],
    cwd=ROOT,
    env=dict(env, PYTHONPATH=ROOT),
    check=True,
    capture_output=True,
  )
  return recorded, _read(str(out))


@pytest.mark.parametrize("name", list(CASES))
def test_reference_sweep_ends_bitwise_as_recorded(name, both):
  (meta, arrays), (now_meta, now) = both
  expected = {k: v for k, v in arrays.items() if k.startswith(name + ":")}
  assert sorted(k for k in now if k.startswith(name + ":")) == sorted(expected)
  for key, value in expected.items():
    assert value.dtype == now[key].dtype, key
    np.testing.assert_array_equal(now[key], value, err_msg=key)
  assert now_meta["computations"][name] == meta["computations"][name]
  assert now_meta["programs"][name] == meta["programs"][name]
