"""The main job's conclusion, as the README states it, holds under another layout.

``flood-jax sweep``'s digits depend on the machine's float arithmetic (flooding's
sign decisions can turn round-off into another trajectory); what it concludes
must not. Another ``chunk_size`` (another compiled program) stands in for
another machine here. The full default run: slow (about two minutes on two idle
cores), but it is the job the README promises.
"""

import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def conclusion(output: str) -> dict[str, str]:
  """What a run concludes, from the lines the command prints after its table.

  - ``accuracy``: ``"better"`` if the winner is better than ``b = 0`` at the 5%
    level, else ``"not distinguishable"`` (``b = 0`` winning says the same);
  - ``test loss``: at how many levels it is lower than ``b = 0``, and at how
    many by more than seed noise.
  """
  if re.search(r"\bbetter than b = 0 at the 5% level", output):
    accuracy = "better"
  elif re.search(r"not distinguishable from b = 0|no flooding \(b = 0\) has the best", output):
    accuracy = "not distinguishable"
  else:
    raise AssertionError(f"no accuracy verdict in:\n{output[-2000:]}")
  loss = re.search(
    r"test loss vs b = 0: lower at (\d+) of (\d+) levels.*?at (\d+) of (\d+)", output
  )
  assert loss, output[-2000:]
  return {"accuracy": accuracy, "test loss": "{} of {}, {} of {}".format(*loss.groups())}


def readme_output() -> str:
  section = (ROOT / "README.md").read_text().split("## The main job", 1)[1].split("\n## ", 1)[0]
  return re.findall(r"```\n(.*?)```", section, flags=re.S)[0]


def test_conclusion_reads_both_verdicts():
  tied = "no flooding (b = 0) has the best validation accuracy.\ntest loss vs b = 0: lower at"
  tied += " 3 of 3 levels, and by more than seed noise (...) at 2 of 3"
  assert conclusion(tied) == {"accuracy": "not distinguishable", "test loss": "3 of 3, 2 of 3"}
  won = "b = 0.1 vs b = 0: ... better than b = 0 at the 5% level.\n" + tied.split("\n")[1]
  assert conclusion(won)["accuracy"] == "better"
  with pytest.raises(AssertionError):
    conclusion("best flood level: 0.1")


@pytest.mark.slow
def test_main_job_concludes_what_the_readme_says_under_another_layout(tmp_path):
  stated = conclusion(readme_output())
  proc = subprocess.run(
    [
      sys.executable,
      "-m",
      "flood_jax",
      "sweep",
      "--chunk-size",
      "1",
      "--no-plots",
      "--no-progress",
      "--out",
      str(tmp_path / "run"),
    ],
    capture_output=True,
    text=True,
    timeout=1200,
    cwd=tmp_path,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert conclusion(proc.stdout) == stated, proc.stdout[-3000:]
