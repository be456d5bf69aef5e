"""``flood-jax sweep``'s settings: one field per option, its help, command.json, --resume."""

import dataclasses
import json

import pytest

from flood_jax import cli
from flood_jax.cli.sweep_config import FIELDS, SweepConfig, flag
from flood_jax.cli.sweep_options import given_options

# The keys of a command.json written before --objective, --augment, --eval-every, --log,
# --data-dir, --prune, --pbt, --memory-limit and --stream existed.
OLD_FILE = {
  "dataset": "spiral",
  "model": "mlp",
  "hidden": 8,
  "depth": 1,
  "levels": [0.0, 0.3],
  "seeds": [0, 1],
  "epochs": 3,
  "batch_size": 20,
  "optimizer": "sgd",
  "lr": [0.05, 0.1],
  "momentum": 0.9,
  "weight_decay": 0.0,
  "label_noise": 0.0,
  "chunk_size": None,
  "devices": 1,
  "out": "runs/old",
}


def test_an_older_command_json_reads_with_the_defaults_of_the_newer_fields():
  config = SweepConfig.from_json(OLD_FILE)
  assert config.lr == (0.05, 0.1) and config.levels == (0.0, 0.3)  # lists read as tuples
  assert (config.objective, config.augment, config.stream) == ("flood", False, False)
  assert config.memory_limit is None and config.pbt is None and config.prune is None
  assert config.to_json() == {**SweepConfig().to_json(), **OLD_FILE}
  assert list(config.to_json()) == list(FIELDS)  # command.json's keys: the fields, in order
  assert SweepConfig.from_json(json.loads(json.dumps(config.to_json()))) == config


def test_a_config_never_changes():
  with pytest.raises(dataclasses.FrozenInstanceError):
    SweepConfig().epochs = 3  # pyright: ignore[reportAttributeAccessIssue]


def test_resume_compares_the_options_given_field_by_field():
  args = cli.build_parser().parse_args(
    ["sweep", "--epochs", "3", "--lr", "0.05,0.1", "--stream", "--pbt", "2", "--out", "x"]
  )
  given = given_options(args)
  assert given == {"epochs": 3, "lr": (0.05, 0.1), "stream": True, "pbt": (2, 0.25), "out": "x"}
  assert SweepConfig.from_json(OLD_FILE).differences(given) == [
    "--pbt 2,0.25 (was None)",
    "--stream True (was False)",
  ]


def test_every_field_is_an_option_with_its_help(capsys):
  assert cli.main(["sweep", "--help"]) == 0
  text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
  for name, field in FIELDS.items():
    assert field.metadata["help"], name
    assert flag(name) in text
  assert "hidden layers of the mlp (default: 2)" in text
