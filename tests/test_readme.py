"""The README's quickstart, pasted into a fresh Python, runs; its commands are the CI's."""

import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _python_blocks(text):
  return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_quickstart_runs_in_a_fresh_interpreter():
  quickstart = README.split("## Quickstart", 1)[1]
  code = _python_blocks(quickstart)[0]
  proc = subprocess.run(
    [sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=ROOT
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "best flood level" in proc.stdout


def test_readme_states_the_install_and_test_commands_ci_runs():
  ci = (ROOT / ".ci" / "run").read_text()
  assert 'pip install -e ".[dev]"' in README and 'pip install -e ".[dev]"' in ci
  assert re.search(r"^pytest\b", README, flags=re.M)
  assert re.search(r"^pytest$", ci, flags=re.M)


def test_sweeps_section_examples_run_in_a_fresh_interpreter():
  section = README.split("## Sweeps", 1)[1].split("\n## ", 1)[0]
  code = _python_blocks(section)[0]
  proc = subprocess.run(
    [sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=ROOT
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "('flood_level', 'learning_rate', 'weight_decay', 'seed')" in proc.stdout
  assert "Δ test acc vs b=0" in proc.stdout
  # Both examples learn: well above chance (0.5) on the two-class sinusoid.
  accuracies = dict(re.findall(r"^(NNX|fj\.Model): test accuracy ([0-9.]+)", proc.stdout, re.M))
  assert set(accuracies) == {"NNX", "fj.Model"}, proc.stdout[-2000:]
  assert all(float(a) > 0.8 for a in accuracies.values()), accuracies


def test_tasks_section_example_runs_in_a_fresh_interpreter():
  section = README.split("### Beyond classification", 1)[1].split("\n### ", 1)[0]
  code = _python_blocks(section)[0]
  proc = subprocess.run(
    [sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=ROOT
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "val_loss min {'flood_level'" in proc.stdout
  assert "'val_mae'" in proc.stdout and "best flood level (final val loss" in proc.stdout
