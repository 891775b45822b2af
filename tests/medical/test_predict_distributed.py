"""``hv-med predict`` on two CPU processes (gloo): a folder of scans shared between ranks.

Every scan must be written exactly once (by one rank; both ranks get work), atomically (no
temporary files left), and equal to what one process writes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medical.cli import main as hv_med
from medical.data import save_nifti
from medical.phantom import PhantomConfig, make_phantom, write_phantom_dataset

ROOT = Path(__file__).resolve().parents[2]
TINY = PhantomConfig(shape=(32, 32, 16), spacing=(1.0, 1.0, 2.0))
DDP = ["--trainer.devices", "2", "--trainer.strategy", "ddp", "--trainer.accelerator", "cpu"]
SCANS = 5  # odd: a rank that padded its share would write one scan twice

# Lightning's DDP launcher starts rank 1 by rerunning this script, so the write log (which rank
# wrote which file) is installed in both processes.
LOGGED_PREDICT = """
import os, sys
import medical.predict as predict
from medical.cli import main

original = predict.save_nifti

def logged(path, *args, **kwargs):
    with open(os.environ["HV_WRITE_LOG"], "a") as log:
        log.write(f"{os.environ.get('LOCAL_RANK', '0')} {path}\\n")
    return original(path, *args, **kwargs)

predict.save_nifti = logged
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[Path, Path]:
    """A checkpoint after one training step and a folder of SCANS phantom scans."""
    root = tmp_path_factory.mktemp("ddp_predict")
    raw = write_phantom_dataset(root / "Phantoms", num_cases=2, cfg=TINY)
    assert hv_med(["prepare", str(raw), "-o", str(root / "prepared"), "--workers", "1"]) == 0
    assert hv_med([
        "train", "--data.prepared", str(root / "prepared"), "--data.patch_size", "[32, 32, 32]",
        "--trainer.batch_size", "1", "--trainer.max_steps", "1", "--trainer.progress", "false",
        "--run.runs_dir", str(root / "runs"), "--run.name", "r",
    ]) == 0  # fmt: skip
    scans = root / "scans"
    for index in range(SCANS):
        image, _ = make_phantom(TINY, seed=100 + index)
        save_nifti(scans / f"scan{index}.nii.gz", image, np.diag([*TINY.spacing, 1.0]))
    return root / "runs" / "r" / "checkpoints" / "last.ckpt", scans


def test_two_processes_write_every_scan_once(setup: tuple[Path, Path], tmp_path: Path) -> None:
    checkpoint, scans = setup
    single, multi = tmp_path / "single", tmp_path / "multi"
    common = ["--checkpoint", str(checkpoint), "--trainer.progress", "false"]
    assert hv_med(["predict", str(scans), "-o", str(single), *common]) == 0
    script, log = tmp_path / "logged_predict.py", tmp_path / "writes.log"
    script.write_text(LOGGED_PREDICT)
    result = subprocess.run(
        [sys.executable, str(script), "predict", str(scans), "-o", str(multi), *common, *DDP],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "HV_WRITE_LOG": str(log)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    expected = sorted(p.name for p in scans.iterdir())
    # Exactly the outputs, nothing else: no temporary file (.<name>.<random>.tmp) is left.
    assert sorted(p.name for p in multi.iterdir()) == expected
    writes = [line.split() for line in log.read_text().splitlines()]
    assert sorted(Path(path).name for _, path in writes) == expected, "each scan written once"
    assert {rank for rank, _ in writes} == {"0", "1"}, "both processes share the scans"
    for name in expected:
        one, two = nib.load(str(single / name)), nib.load(str(multi / name))
        np.testing.assert_array_equal(np.asarray(two.dataobj), np.asarray(one.dataobj))
        np.testing.assert_allclose(two.affine, one.affine)
