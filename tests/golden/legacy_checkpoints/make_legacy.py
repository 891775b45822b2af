"""Provenance of the ``*.pt`` files beside this script (not a test; run once, by hand).

Run from a checkout of commit a55b4d5 (the last code before the inference contract), where each
vertical wrote its own checkpoint entry (``hybridvision_plan``, ``hv_rs`` + ``hv_rs_model``,
``video_sr``)::

    python tests/golden/legacy_checkpoints/make_legacy.py OUT_DIR WORK_DIR

It trains one step of each vertical's tiny run through the CLIs of that commit and keeps every
top-level checkpoint entry except weights, optimiser and loop state (a few KB), plus
``state_dict_shapes`` ({key: shape} of the real checkpoint's weights), ``top_level_keys`` and
``made_by``. ``tests/test_contract.py`` rebuilds a checkpoint from them and checks that today's
loader converts the old entry into a plan that rebuilds exactly those weight shapes.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import torch

DROPPED = ("state_dict", "optimizer_states", "lr_schedulers", "callbacks", "loops", "rng_states")
COMMON = ["--trainer.progress", "false", "--trainer.accelerator", "cpu"]


def _conftest(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.parent.name + "_conftest", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def keep(out: Path, name: str, checkpoint: Path, extra: list[str]) -> None:
    """Write ``out/<name>.pt``: the checkpoint's metadata and weight shapes."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    meta = {k: v for k, v in state.items() if k not in DROPPED}
    meta["state_dict_shapes"] = {k: list(v.shape) for k, v in state["state_dict"].items()}
    meta["top_level_keys"] = sorted(state)
    meta["made_by"] = {"commit": "a55b4d5", "argv": ["train", *extra]}
    torch.save(meta, out / f"{name}.pt")


def main(out: Path, work: Path) -> None:
    """Train the tiny runs and keep their checkpoints' metadata."""
    from medical.cli import main as hv_med
    from medical.phantom import PhantomConfig, write_phantom_dataset
    from remote_sensing.cli import main as hv_rs
    from video_sr.cli import main as hv_vsr

    tests = Path(__file__).resolve().parents[2] / "tests"
    out.mkdir(parents=True, exist_ok=True)
    runs = ["--run.runs_dir", str(work / "runs")]

    phantom = PhantomConfig(shape=(40, 40, 32), spacing=(1.0, 1.0, 2.0))
    raw = write_phantom_dataset(work / "Phantoms", num_cases=3, cfg=phantom)
    prepared = work / "prepared"
    assert hv_med(["prepare", str(raw), "-o", str(prepared), "--workers", "1"]) == 0
    medical = {"medical_hybrid": [], "medical_cnn": ["--model.arch", "cnn"],
               "medical_2d": ["--model.spatial_dims", "2"]}  # fmt: skip
    for name, extra in medical.items():
        assert hv_med(["train", "--data.prepared", str(prepared),
                       "--data.patch_size", "[32, 32, 32]", "--trainer.batch_size", "1",
                       "--trainer.max_steps", "1", "--trainer.max_epochs", "1", *COMMON, *runs,
                       "--run.name", name, *extra]) == 0  # fmt: skip
        keep(out, name, work / "runs" / name / "checkpoints" / "last.ckpt", extra)

    eurosat = _conftest(tests / "remote_sensing" / "conftest.py").make_eurosat(work / "eurosat", 4)
    for name, extra in {"remote_sensing_hybrid": [],
                        "remote_sensing_cnn": ["--model.arch", "cnn"]}.items():  # fmt: skip
        assert hv_rs(["train", "--data.root", str(eurosat), "--data.chip_size", "32",
                      "--trainer.max_steps", "1", "--trainer.batch_size", "4", *COMMON, *runs,
                      "--run.name", name, *extra]) == 0  # fmt: skip
        keep(out, name, work / "runs" / name / "checkpoints" / "last.ckpt", extra)

    clips = _conftest(tests / "video_sr" / "conftest.py")
    data = work / "vsr"
    clips.write_clip(data / "clip_a", clips.moving_frames(6, 32, 48, 0))
    clips.write_clip(data / "clip_b", clips.moving_frames(6, 32, 48, 1))
    for name, extra in {"video_sr_hybrid": [], "video_sr_cnn": ["--model.variant", "cnn"]}.items():
        assert hv_vsr(["train", "--data.root", str(data), "--data.patch", "8",
                       "--model.preset", "vsr_tiny", "--trainer.max_steps", "1",
                       "--trainer.batch_size", "2", *COMMON, *runs, "--run.name", name,
                       *extra]) == 0  # fmt: skip
        keep(out, name, work / "runs" / name / "checkpoints" / "last.ckpt", extra)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
