"""flood-jax reproduce's settings: ReproduceConfig's fields are the options, checked in
one place and turned into the protocol's arguments (no training here)."""

import argparse
import dataclasses

import pytest

from flood_jax import reproduce
from flood_jax.cli import reproduce as reproduce_cli
from flood_jax.cli.common import UsageError
from flood_jax.cli.reproduce_config import ReproduceConfig


def _config(*argv):
  parser = argparse.ArgumentParser()
  reproduce_cli.add_arguments(parser)
  return ReproduceConfig.from_args(parser.parse_args(list(argv)))


def test_every_field_is_an_option_with_its_help():
  parser = argparse.ArgumentParser()
  reproduce_cli.add_arguments(parser)
  options = {a.dest: a for a in parser._actions}
  for field in dataclasses.fields(ReproduceConfig):
    assert field.name in options, field.name
    if "help" in field.metadata:
      assert options[field.name].help == field.metadata["help"]
  assert set(options) - {"help"} == {f.name for f in dataclasses.fields(ReproduceConfig)}
  config = _config("synthetic")
  assert config.preset == "cpu" and config.levels is None and not config.no_progress
  assert config.out_dir.endswith("reproduce-synthetic")


@pytest.mark.parametrize(
  "argv,said",
  [
    (["mnist1d", "--preset", "paper"], "--preset applies to reproduce synthetic and benchmark"),
    (["adaflood", "--augment"], "--data-dir and --augment apply to reproduce benchmark only"),
    (["pbt", "--folds", "3"], "--gammas and --folds apply to reproduce adaflood only"),
    (["benchmark"], "reproduce benchmark needs --dataset"),
    (["adaflood", "--prune", "2"], "--pbt and --prune apply to reproduce pbt only"),
    (["benchmark", "--dataset", "mnist", "--n-test", "5"], "--n-test does not apply"),
    (["benchmark", "--dataset", "mnist", "--optimizers", "sgd,adam"], "takes one optimizer"),
    (["digits", "--dataset", "mnist1d"], "--dataset and --n-test do not apply to reproduce digits"),
  ],
)
def test_check_says_which_option_does_not_apply(argv, said):
  with pytest.raises(UsageError, match=said) as raised:
    _config(*argv).check()
  assert "\n" not in str(raised.value)


def test_the_options_given_win_over_the_preset():
  config = _config("synthetic", "--epochs", "7", "--dataset", "spiral", "--no-progress")
  config.check()
  arguments = config.protocol_arguments(reproduce)
  assert config.function(reproduce) is reproduce.synthetic
  assert arguments == {
    **reproduce.SYNTHETIC_CPU,
    "epochs": 7,
    "datasets": ("spiral",),
    "progress": False,
  }


def test_benchmark_builtin_adaflood_and_pbt_arguments():
  config = _config("benchmark", "--dataset", "mnist", "--hidden", "8", "--optimizers", "sgd")
  arguments = config.protocol_arguments(reproduce)
  assert arguments["model_options"] == {"hidden": 8} and arguments["optimizer"] == "sgd"
  assert arguments["seeds"] == reproduce.BENCHMARK_CPU["seeds"] and "hidden" not in arguments
  assert config.output_name == "benchmark_mnist"
  config = _config("digits", "--seeds", "2")
  assert config.function(reproduce) is reproduce.builtin and config.output_name == "builtin"
  assert config.protocol_arguments(reproduce) == {
    "progress": True,
    "seeds": 2,
    "datasets": ("digits",),
  }
  arguments = _config("pbt", "--pbt", "2,0.5", "--prune", "1,2").protocol_arguments(reproduce)
  assert (arguments["interval"], arguments["fraction"], arguments["halving"]) == (2, 0.5, [1, 2])
  config = _config("adaflood", "--gammas", "0.5", "--folds", "3", "--dataset", "spiral,sinusoid")
  assert config.protocol_arguments(reproduce) == {
    "progress": True,
    "gammas": [0.5],
    "folds": 3,
    "datasets": ("spiral", "sinusoid"),
  }
