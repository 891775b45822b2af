"""Peak memory of ``hv-med predict`` on a CT-sized volume (reproduces medical_predict_memory.md).

    python docs/benchmarks/medical_predict_memory.py WORK_DIR [--size 512 --slices 300]

Writes a tiny two-case CT dataset at 1 mm, prepares it and trains one step (``hv-med prepare``,
``hv-med train --trainer.max_steps 1``), writes a SIZE x SIZE x SLICES int16 CT-like volume and
runs ``hv-med predict --overlap 0`` on it in a fresh process that reports its own ``VmHWM`` (the
peak resident set of its address space; ``ru_maxrss`` would include the RSS it inherited at
fork). Prints one line: peak GiB and wall seconds.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np

# Runs hv-med in this interpreter and prints the process's own peak RSS from /proc at exit.
_CHILD = (
    "import re, sys; from medical.cli import main; rc = main(sys.argv[1:]); "
    "hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1); "
    "print(f'PEAK_KIB {hwm}'); sys.exit(rc)"
)


def _hv_med(args: list[str]) -> str:
    done = subprocess.run([sys.executable, "-c", _CHILD, *args], capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"hv-med {args[0]} failed:\n{done.stderr[-2000:]}")
    return done.stdout


def _dataset(raw: Path, rng: np.random.Generator) -> None:
    for folder in ("imagesTr", "labelsTr"):
        (raw / folder).mkdir(parents=True, exist_ok=True)
    for i in range(2):
        image = np.full((64, 64, 48), -1000, np.int16)
        image[8:56, 8:56, 4:44] = rng.normal(40, 30, (48, 48, 40)).astype(np.int16)
        label = np.zeros(image.shape, np.uint8)
        label[20:40, 20:40, 10:30] = 1
        image[label > 0] += 100
        nib.save(nib.Nifti1Image(image, np.eye(4)), str(raw / "imagesTr" / f"c{i}_0000.nii.gz"))
        nib.save(nib.Nifti1Image(label, np.eye(4)), str(raw / "labelsTr" / f"c{i}.nii.gz"))
    (raw / "dataset.json").write_text(
        json.dumps(
            {
                "channel_names": {"0": "CT"},
                "labels": {"background": 0, "organ": 1},
                "numTraining": 2,
                "file_ending": ".nii.gz",
            }
        )
    )


def main() -> None:
    """Build the run and the volume, then measure one prediction."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work_dir", type=Path)
    parser.add_argument("--size", type=int, default=512, help="in-plane voxels (512)")
    parser.add_argument("--slices", type=int, default=300, help="slices (300)")
    args = parser.parse_args()
    work, rng = args.work_dir, np.random.default_rng(0)
    _dataset(work / "raw", rng)
    _hv_med(["prepare", str(work / "raw"), "-o", str(work / "prepared"), "--workers", "1"])
    _hv_med(
        [
            "train",
            "--data.prepared",
            str(work / "prepared"),
            "--data.patch_size",
            "[64, 64, 32]",
            "--trainer.max_steps",
            "1",
            "--trainer.progress",
            "false",
            "--run.runs_dir",
            str(work / "runs"),
            "--run.name",
            "ct",
            "--run.overwrite",
            "true",
        ]
    )
    volume = np.full((args.size, args.size, args.slices), -1000, np.int16)
    margin, depth = args.size // 9, args.slices // 15
    inner = (args.size - 2 * margin, args.size - 2 * margin, args.slices - 2 * depth)
    volume[margin:-margin, margin:-margin, depth:-depth] = rng.normal(40, 30, inner).astype(
        np.int16
    )
    scan = work / f"ct{args.size}.nii.gz"
    nib.save(nib.Nifti1Image(volume, np.eye(4)), str(scan))
    started = time.perf_counter()
    out = _hv_med(
        [
            "predict",
            str(scan),
            "-o",
            str(work / "out"),
            "--checkpoint",
            str(work / "runs" / "ct" / "checkpoints" / "last.ckpt"),
            "--overlap",
            "0",
        ]
    )
    peak = int(out.split("PEAK_KIB")[-1].split()[0]) / 2**20
    wall = time.perf_counter() - started
    shape = f"{args.size}x{args.size}x{args.slices}"
    print(f"hv-med predict {shape}: peak RSS {peak:.2f} GiB, {wall:.0f} s")


if __name__ == "__main__":
    main()
