"""``hv-rs predict`` on two CPU processes (gloo): scenes and chips shared between ranks.

Every class map must be written exactly once, by one rank (both ranks get work), with no
temporary file left, and equal to what one process writes; the chips' CSV is written once, by
rank 0, with every chip's row in input order, equal to the single-process CSV.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

from remote_sensing.cli import main as hv_rs

from .conftest import make_eurosat, write_tif

ROOT = Path(__file__).resolve().parents[2]
DDP = ["--trainer.devices", "2", "--trainer.strategy", "ddp", "--trainer.accelerator", "cpu"]

# Lightning's DDP launcher starts rank 1 by rerunning this script, so the job log (which rank
# ran which scene or chip batch) is installed in both processes.
LOGGED_PREDICT = """
import os, sys
import remote_sensing.predict as predict
from remote_sensing.cli import main

def logged(function, describe):
    def wrapper(*args, **kwargs):
        with open(os.environ["HV_JOB_LOG"], "a") as log:
            log.write(f"{os.environ.get('LOCAL_RANK', '0')} {describe(args)}\\n")
        return function(*args, **kwargs)
    return wrapper

predict.predict_scene = logged(predict.predict_scene, lambda a: a[2])
predict.chip_rows = logged(predict.chip_rows, lambda a: ",".join(p.name for p in a[1]))
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[Path, Path, Path]:
    """A checkpoint after two steps, a folder of 3 scenes and a folder of 5 chips."""
    root = tmp_path_factory.mktemp("rs_ddp")
    data = make_eurosat(root / "eurosat", 4)
    assert hv_rs(["train", "--data.root", str(data), "--data.chip_size", "32",
                  "--trainer.max_steps", "2", "--trainer.batch_size", "4",
                  "--trainer.progress", "false", "--trainer.accelerator", "cpu",
                  "--run.runs_dir", str(root / "runs"), "--run.name", "r"]) == 0  # fmt: skip
    rng = np.random.default_rng(0)
    scenes = root / "scenes"
    for index, (height, width) in enumerate([(64, 96), (40, 70), (96, 64)]):
        write_tif(scenes / f"scene{index}.tif",
                  rng.integers(500, 4000, (4, height, width)).astype(np.uint16))  # fmt: skip
    chips = root / "chips"
    for index in range(5):  # odd: a rank that padded its share would predict a chip twice
        write_tif(chips / f"chip{index}.tif",
                          rng.integers(500, 4000, (4, 32, 32)).astype(np.uint16))  # fmt: skip
    return root / "runs" / "r" / "checkpoints" / "last.ckpt", scenes, chips


def _ddp(args: list[str], tmp_path: Path) -> list[tuple[str, str]]:
    script, log = tmp_path / "logged_predict.py", tmp_path / "jobs.log"
    script.write_text(LOGGED_PREDICT)
    result = subprocess.run(
        [sys.executable, str(script), *args, *DDP], cwd=ROOT, capture_output=True, text=True,
        timeout=300, env={**os.environ, "HV_JOB_LOG": str(log)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return [tuple(line.split(maxsplit=1)) for line in log.read_text().splitlines()]


def test_two_processes_write_every_class_map_once(setup, tmp_path: Path) -> None:
    checkpoint, scenes, _ = setup
    single, multi = tmp_path / "single", tmp_path / "multi"
    common = ["--checkpoint", str(checkpoint), "--trainer.progress", "false"]
    assert hv_rs(["predict", str(scenes), "-o", str(single), *common]) == 0
    jobs = _ddp(["predict", str(scenes), "-o", str(multi), *common], tmp_path)
    expected = sorted(p.name for p in scenes.iterdir())
    # Exactly the outputs, nothing else: no temporary file (.<name>.<random>.tmp) is left.
    assert sorted(p.name for p in multi.iterdir()) == expected
    assert sorted(Path(target).name for _, target in jobs) == expected, "each scene once"
    assert {rank for rank, _ in jobs} == {"0", "1"}, "both processes share the scenes"
    for name in expected:
        with rasterio.open(single / name) as one, rasterio.open(multi / name) as two:
            np.testing.assert_array_equal(two.read(), one.read())
            assert two.transform == one.transform and two.crs == one.crs


def test_two_processes_write_one_csv_of_every_chip(setup, tmp_path: Path) -> None:
    checkpoint, _, chips = setup
    common = ["--checkpoint", str(checkpoint), "--trainer.progress", "false", "--batch", "2"]
    assert hv_rs(["predict", str(chips), "-o", str(tmp_path / "single.csv"), *common]) == 0
    jobs = _ddp(["predict", str(chips), "-o", str(tmp_path / "multi.csv"), *common], tmp_path)
    batches = [names.split(",") for _, names in jobs]
    assert sorted(n for batch in batches for n in batch) == [f"chip{i}.tif" for i in range(5)]
    assert {rank for rank, _ in jobs} == {"0", "1"}
    single = (tmp_path / "single.csv").read_text().splitlines()
    multi = (tmp_path / "multi.csv").read_text().splitlines()
    assert multi == single and len(multi) == 6  # header + one row per chip, in input order
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".csv") == ["multi.csv",
                                                                               "single.csv"]
