"""hv-med error contract: each bad invocation exits 2 with one line naming the flag or file, no
traceback, nothing written (table rows run by :func:`tests.errors_helpers.check_refusal`)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import yaml

from .errors_helpers import Bad, check_refusal, rows, truncate

TRAIN = "train --data.prepared {prepared} --run.runs_dir {runs} --trainer.max_steps 1"
PREDICT = "predict -o {out} --checkpoint {ckpt}"

TABLE = [
    Bad("preset-typo", TRAIN + " --model.preset med_cpuu", "model.preset", subprocess=True),
    Bad("arch-typo", TRAIN + " --model.arch unett", "model.arch"),
    Bad("deep-supervision-on-monai-unet", TRAIN + " --model.arch unet --model.deep_supervision "
        "true", "--model.deep_supervision"),
    Bad("preset-on-monai-segresnet", TRAIN + " --model.arch segresnet --model.preset med_12gb",
        "--model.preset"),
    Bad("drop-path-on-monai-unet", TRAIN + " --model.arch unet --regularization.drop_path_rate "
        "0.1", "--regularization.drop_path_rate"),
    Bad("mixup-on-segmentation", TRAIN + " --regularization.mixup_alpha 0.2",
        "--regularization.mixup_alpha"),
    Bad("patch-zero", TRAIN + " --data.patch_size [0,32,32]", "data.patch_size"),
    Bad("patch-negative", TRAIN + " --data.patch_size [-32,32,32]", "data.patch_size"),
    Bad("patch-not-multiple-of-32", TRAIN + " --data.patch_size [48,32,32]", "--data.patch_size"),
    Bad("spatial-dims-4", TRAIN + " --model.spatial_dims 4", "--model.spatial_dims"),
    Bad("sw-overlap-1", TRAIN + " --data.sw_overlap 1", "data.sw_overlap"),
    Bad("val-fraction-1.5", TRAIN + " --data.val_fraction 1.5", "data.val_fraction"),
    Bad("samples-per-case-0", TRAIN + " --data.samples_per_case 0", "data.samples_per_case"),
    Bad("sw-batch-0", TRAIN + " --data.sw_batch_size 0", "data.sw_batch_size"),
    Bad("target-spacing-0", TRAIN + " --data.target_spacing [0,1,1]", "data.target_spacing"),
    Bad("batch-0", TRAIN + " --trainer.batch_size 0", "--trainer.batch_size"),
    Bad("prepared-is-raw-dataset", "train --data.prepared {raw} --run.runs_dir {runs}",
        "{raw}/dataset.json", watch=("{raw}",)),
    Bad("prepared-is-a-file", "train --data.prepared {raw}/dataset.json --run.runs_dir {runs}",
        "{raw}/dataset.json"),
    Bad("dataset-missing", "train --data.dataset {raw}/nope --run.runs_dir {runs}", "{raw}/nope"),
    Bad("train-label-id-not-in-dataset-json", "train --data.dataset {bad_ids} --data.prepared "
        "{out} --run.runs_dir {runs}", "{bad_ids}/labelsTr/phantom_001.nii.gz",
        watch=("{bad_ids}",)),
    Bad("prepare-label-id-not-in-dataset-json", "prepare {bad_ids} -o {out} --workers 1",
        "{bad_ids}/labelsTr/phantom_001.nii.gz"),
    Bad("prepare-non-consecutive-labels", "prepare {gap} -o {out}", "{gap}/dataset.json"),
    Bad("prepare-missing", "prepare {raw}/nope -o {out}", "{raw}/nope"),
    Bad("predict-nan-voxels", PREDICT + " {nan}", "{nan}", watch=("{nan}",)),
    Bad("predict-truncated-nifti", PREDICT + " {truncated}", "{truncated}"),
    Bad("predict-text-named-nii", PREDICT + " {text}", "{text}"),
    Bad("predict-missing-input", PREDICT + " {raw}/nope.nii.gz", "{raw}/nope.nii.gz"),
    Bad("predict-truncated-checkpoint", "predict {image} -o {out} --checkpoint {bad_ckpt}",
        "{bad_ckpt}"),
    Bad("predict-not-a-checkpoint", "predict {image} -o {out} --checkpoint {raw}/dataset.json",
        "{raw}/dataset.json"),
    Bad("predict-checkpoint-is-a-folder", "predict {image} -o {out} --checkpoint {raw}",
        "{raw}"),
    Bad("predict-hv-rs-checkpoint", "predict {image} -o {out} --checkpoint {rs_ckpt}",
        "{rs_ckpt}: a remote_sensing checkpoint (from 'hv-rs train'); hv-med needs a medical"),
]  # fmt: skip


@pytest.fixture(scope="module")
def med(med_run: dict[str, str], rs_run: dict[str, str],
        tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:  # fmt: skip
    """The trained run's paths plus the bad inputs the rows name."""
    root = tmp_path_factory.mktemp("med_bad")
    raw = Path(med_run["raw"])
    image = raw / "imagesTr" / "phantom_000.nii.gz"
    source = nib.load(str(image))
    data = np.asarray(source.dataobj, dtype=np.float32)
    data[5, 5, 5] = np.nan
    nib.save(nib.Nifti1Image(data, source.affine), str(root / "nan.nii.gz"))
    (root / "text.nii.gz").write_text("not a scan\n")
    # A label map with a class id (5) that dataset.json does not list.
    bad_ids = Path(shutil.copytree(raw, root / "bad_ids"))
    label_file = bad_ids / "labelsTr" / "phantom_001.nii.gz"
    label = nib.load(str(label_file))
    values = np.asarray(label.dataobj).copy()
    values[0, 0, 0] = 5
    nib.save(nib.Nifti1Image(values, label.affine), str(label_file))
    # dataset.json labels 0, 1, 3: not one network channel per label value.
    gap = Path(shutil.copytree(raw, root / "gap"))
    meta = json.loads((gap / "dataset.json").read_text())
    meta["labels"] = {"0": "background", "1": "organ1", "3": "organ2"}
    (gap / "dataset.json").write_text(json.dumps(meta))
    return {**med_run, "rs_ckpt": rs_run["ckpt"], "image": str(image),
            "nan": str(root / "nan.nii.gz"), "text": str(root / "text.nii.gz"),
            "truncated": str(truncate(image, root / "truncated.nii.gz")),
            "bad_ckpt": str(truncate(Path(med_run["ckpt"]), root / "truncated.ckpt")),
            "bad_ids": str(bad_ids), "gap": str(gap)}  # fmt: skip


@pytest.mark.parametrize("row", rows(TABLE))
def test_hv_med_refuses(row: Bad, med: dict[str, str], tmp_path: Path,
                        capfd: pytest.CaptureFixture) -> None:  # fmt: skip
    check_refusal("medical.cli", row, med, tmp_path, capfd)


def test_config_yaml_and_plan_hold_plain_values(med: dict[str, str]) -> None:
    """Restricted field types (PositiveInt...) must not leak into config.yaml or checkpoints:
    predict re-parses config.yaml, and weights_only loading refuses unknown classes."""
    from medical.cli import SPEC
    from shared.cli import parse_task_command

    config = Path(med["run"]) / "config.yaml"
    assert yaml.safe_load(config.read_text())["data"]["patch_size"] == [32, 32, 32]
    _, cfg = parse_task_command(SPEC, "predict", "", [], lambda parser: None, base=config)
    assert cfg.data.patch_size == (32, 32, 32)
    assert {type(v) for v in cfg.data.patch_size} == {int}
    assert type(cfg.data.sw_overlap) is float and type(cfg.data.samples_per_case) is int
    entry = torch.load(med["ckpt"], map_location="cpu", weights_only=True)["hybridvision"]
    plan = entry["plan"]
    assert plan["patch_size"] == [32, 32, 32] and type(plan["sw_batch_size"]) is int


def test_patch_not_square_in_the_rotation_plane_is_sampled_at_its_shape(tmp_path: Path) -> None:
    """A 64x32x32 patch cannot be turned a quarter in axes (0, 1): the pipeline must leave that
    rotation out (before, batches mixed 64x32x32 and 32x64x32 patches and collate failed)."""
    from monai.transforms import RandRotate90d

    from medical.transforms import train_transforms

    rng = np.random.default_rng(0)
    np.save(tmp_path / "image.npy", rng.standard_normal((1, 80, 72, 40)).astype(np.float32))
    label = np.zeros((1, 80, 72, 40), np.uint8)
    label[0, 30:50, 30:50, 10:30] = 1
    np.save(tmp_path / "label.npy", label)
    item = {"image": str(tmp_path / "image.npy"), "label": str(tmp_path / "label.npy")}
    pipeline = train_transforms((64, 32, 32), samples_per_case=4)
    assert not any(isinstance(t, RandRotate90d) for t in pipeline.transforms)
    for seed in range(4):
        pipeline.set_random_state(seed=seed)
        for sample in pipeline(dict(item)):
            assert sample["image"].shape == (1, 64, 32, 32)
            assert sample["label"].shape == (1, 64, 32, 32)
    square = train_transforms((32, 32, 64))
    assert any(isinstance(t, RandRotate90d) for t in square.transforms)
