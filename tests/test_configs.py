"""Every YAML under configs/ parses with its vertical's train parser and passes validation."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from shared.cli import _to_run_config, _train_parser

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").rglob("*.yaml"))
# The vertical's CLI module and the data flag each config leaves to the user.
CLI_OF_FOLDER = {"medical": ("medical.cli", "--data.prepared"),
                 "remote_sensing": ("remote_sensing.cli", "--data.root"),
                 "video_sr": ("video_sr.cli", "--data.root")}  # fmt: skip


def test_every_vertical_ships_a_config() -> None:
    """A user of each vertical finds a starting config."""
    assert {path.parent.name for path in CONFIGS} >= set(CLI_OF_FOLDER)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_config_parses_with_its_train_parser(path: Path, tmp_path: Path) -> None:
    """The file's keys are the CLI's flags (a typo or a stale field fails here)."""
    module, data_flag = CLI_OF_FOLDER[path.parent.name]
    spec = importlib.import_module(module).SPEC
    parser = _train_parser(spec)
    namespace = parser.parse_args(["--config", str(path), data_flag, str(tmp_path)])
    config = _to_run_config(spec, parser, namespace)
    assert config.run.name, f"{path}: give the run a name"
