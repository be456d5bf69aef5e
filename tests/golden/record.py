"""Records the golden fixtures: ``python -m tests.golden.record`` (about a minute on 2 cores).

Run it only on an engine whose numbers are known good (the fixtures were first recorded before
the engine's reshape, issue 17); ``tests/test_golden.py`` then holds every later engine to them.
The fixtures of one machine (library versions and CPU kind: XLA's arithmetic differs between
CPUs, AVX2 and AVX-512 say) go to ``tests/golden/<cpu>/``; the test takes the folder recorded on
a machine like its own. ``--out DIR`` writes the same files to ``DIR`` instead (what the test
compares).

Besides the arrays and computation keys, it records the engine's programs each case compiles:
module name and the SHA-256 of the lowered program as JAX's persistent compilation cache hashes
it (its canonical IR, without debug information), so an engine whose programs lower to other
HLO is caught, and a user's compilation cache stays valid. (The cache's whole key also hashes
options that vary between processes, so the computation's part is taken on its own.)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile

# One CPU device, as recorded: the programs (and their cache keys) name the device count.
os.environ["FLOOD_JAX_CPU_DEVICES"] = "1"
os.environ["FLOOD_JAX_COMPILE_CACHE"] = "off"

import jax
import numpy as np

from tests.golden.cases import CASES, dataset, machine, machine_folder

# The engine's compiled programs (a chunk's initialization and its calls), by module name.
ENGINE_PROGRAMS = ("jit__init_local:", "jit__run_local:")
HERE = os.path.dirname(os.path.abspath(__file__))


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--out", default=None)
  out = parser.parse_args().out or os.path.join(HERE, machine_folder(machine()))
  os.makedirs(out, exist_ok=True)
  lowered = _watch_lowering()
  cache = tempfile.mkdtemp(prefix="flood_jax_golden_cache_")
  jax.config.update("jax_compilation_cache_dir", cache)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  data = dataset()
  arrays, keys, programs = {}, {}, {}
  for name, case in CASES.items():
    lowered.clear()
    flat, computations = case(data)
    arrays.update({f"{name}:{k}": v for k, v in flat.items()})
    keys[name] = computations
    programs[name] = sorted(p for p in lowered if p.startswith(ENGINE_PROGRAMS))
    print(f"{name}: {len(flat)} arrays, {len(programs[name])} new programs")
  np.savez_compressed(os.path.join(out, "sweeps.npz"), **arrays)
  with open(os.path.join(out, "sweeps.json"), "w") as f:
    meta = {"machine": machine(), "computations": keys, "programs": programs}
    json.dump(meta, f, indent=1)
    f.write("\n")


def _watch_lowering() -> list[str]:
  """``name:sha256`` of every program JAX compiles from now on (through its cache's key)."""
  from jax._src import cache_key

  seen: list[str] = []
  original = cache_key.get

  def get(module, *args, **kwargs):
    digest = hashlib.sha256()
    cache_key._hash_computation(digest, module, cache_key.IgnoreCallbacks.NO)
    name = str(module.operation.attributes["sym_name"]).strip('"')
    seen.append(f"{name}:{digest.hexdigest()}")
    return original(module, *args, **kwargs)

  cache_key.get = get
  return seen


if __name__ == "__main__":
  main()
