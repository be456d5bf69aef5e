"""``benchmarks/device.py``, the prepared GPU/TPU check, runs at a tiny size on the CPU."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_device_check_runs_both_parts_and_writes_its_section(tmp_path):
  results = tmp_path / "RESULTS.md"
  results.write_text("# Benchmark results\n")
  proc = subprocess.run(
    [
      sys.executable,
      os.path.join(ROOT, "benchmarks", "device.py"),
      "--tiny",
      "--memory-limit",
      "1GiB",
      "--results",
      str(results),
    ],
    capture_output=True,
    text=True,
    timeout=600,
    env={**os.environ, "PYTHONPATH": ROOT},
  )
  assert proc.returncode == 0, proc.stderr[-2000:]
  text = results.read_text()
  assert text.startswith("# Benchmark results\n")  # appended, not overwritten
  assert "## Device check: `benchmarks/device.py`" in text
  assert "did not finish" not in text, text
  assert "- mlp, 4 levels x 2 epochs" in text and "one run" in text and "Hand loop" in text
  assert "- resnet20, 2 models x 1 epochs" in text and "model-epochs per second" in text
  # The plan measured its bytes under the limit (the CPU has no peak to compare with).
  assert text.count("per device vs measured peak n/a (limit 1024 MiB") == 2
  assert "plan n/a" not in text
