"""hv-rs error contract: each bad invocation exits 2 with one line naming the flag or file, no
traceback, nothing written (table rows run by :func:`tests.errors_helpers.check_refusal`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from .errors_helpers import Bad, check_refusal, rows, truncate
from .remote_sensing.conftest import write_tif

TRAIN = "train --data.root {data} --run.runs_dir {runs} --trainer.max_steps 1 " \
    "--trainer.batch_size 2 --data.chip_size 16"
PREDICT = "predict -o {out}/map.tif --checkpoint {ckpt}"

TABLE = [
    Bad("preset-typo", TRAIN + " --model.preset hybrid_tinyy", "model.preset", subprocess=True),
    Bad("arch-typo", TRAIN + " --model.arch resnet19", "model.arch"),
    Bad("balance-typo", TRAIN + " --data.balance weights", "data.balance"),
    Bad("chip-zero", TRAIN + " --data.chip_size 0", "--data.chip_size"),
    Bad("chip-negative", TRAIN + " --data.chip_size -16", "--data.chip_size"),
    Bad("val-fraction-0", TRAIN + " --data.val_fraction 0", "data.val_fraction"),
    Bad("test-fraction-1", TRAIN + " --data.test_fraction 1", "data.test_fraction"),
    Bad("no-training-share", TRAIN + " --data.val_fraction 0.6 --data.test_fraction 0.5",
        "--data.val_fraction"),
    Bad("scale-negative", TRAIN + " --data.scale -1", "data.scale"),
    Bad("batch-zero", TRAIN + " --trainer.batch_size 0", "--trainer.batch_size"),
    Bad("preset-on-timm-resnet", TRAIN + " --model.arch resnet18 --model.preset hybrid_small",
        "--model.preset"),
    Bad("multiscale-head-on-timm", TRAIN + " --model.arch coatnet_nano --model.multiscale_head "
        "false", "--model.multiscale_head"),
    Bad("drop-path-on-hybrid-resnet18", TRAIN + " --model.arch hybrid_resnet18 "
        "--regularization.drop_path_rate 0.1", "--regularization.drop_path_rate"),
    Bad("band-index-out-of-range", TRAIN + " --data.bands [9]", "{data}/Forest/Forest_1.tif"),
    Bad("root-missing", "train --data.root {data}/nope --run.runs_dir {runs}", "{data}/nope"),
    Bad("root-is-a-chip", "train --data.root {chip} --run.runs_dir {runs}", "{chip}"),
    Bad("train-chip-with-inf", "train --data.root {inf_data} --run.runs_dir {runs} "
        "--trainer.batch_size 2",
        "{inf_data}/B/B_1.tif", watch=("{inf_data}",)),
    Bad("predict-inf-pixels", PREDICT + " {inf}", "{inf}", watch=("{inf}",)),
    Bad("predict-text-named-tif", PREDICT + " {text}", "{text}"),
    Bad("predict-truncated-geotiff", PREDICT + " {truncated}", "{truncated}"),
    Bad("predict-band-count", PREDICT + " {three_bands}", "{three_bands}"),
    Bad("predict-missing-input", PREDICT + " {data}/nope.tif", "{data}/nope.tif"),
    Bad("predict-batch-zero", PREDICT + " {chip} --batch 0", "batch"),
    Bad("predict-truncated-checkpoint", "predict {chip} -o {out}/m.tif --checkpoint {bad_ckpt}",
        "{bad_ckpt}"),
    Bad("predict-not-a-checkpoint", "predict {chip} -o {out}/m.tif --checkpoint {chip}",
        "{chip}"),
    Bad("predict-hv-vsr-checkpoint", "predict {chip} -o {out}/m.tif --checkpoint {vsr_ckpt}",
        "{vsr_ckpt}"),
    Bad("export-hv-vsr-checkpoint", "export --checkpoint {vsr_ckpt} -o {out}/m.pt2",
        "{vsr_ckpt}"),
    Bad("evaluate-truncated-checkpoint", "evaluate --checkpoint {bad_ckpt} -o {out}",
        "{bad_ckpt}"),
    Bad("tile-max-nodata-2", "tile {chip} -o {out} --size 8 --max-nodata 2", "--max-nodata"),
    Bad("tile-size-zero", "tile {chip} -o {out} --size 0", "--size"),
    Bad("tile-text-named-tif", "tile {text} -o {out} --size 8", "{text}"),
]  # fmt: skip


@pytest.fixture(scope="module")
def rs(rs_run: dict[str, str], vsr_run: dict[str, str],
       tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:  # fmt: skip
    """The trained run's paths plus the bad inputs the rows name."""
    root = tmp_path_factory.mktemp("rs_bad")
    chip = Path(rs_run["data"]) / "Forest" / "Forest_1.tif"
    pixels = np.full((4, 32, 32), 0.1, np.float32)
    pixels[1, 3, 3] = np.inf
    inf = write_tif(root / "inf.tif", pixels)
    (root / "text.tif").write_text("not a raster\n")
    three = write_tif(root / "three.tif", np.full((3, 16, 16), 900, np.uint16))
    # A float dataset (two classes) whose one chip holds an infinite value.
    for name in ("A", "B"):
        for n in (1, 2, 3):
            good = np.full((4, 16, 16), 0.1 + n / 10 + (name == "B"), np.float32)
            write_tif(root / "inf_data" / name / f"{name}_{n}.tif", good)
    write_tif(root / "inf_data" / "B" / "B_1.tif", pixels[:, :16, :16])
    return {**rs_run, "vsr_ckpt": vsr_run["ckpt"], "chip": str(chip), "inf": str(inf),
            "text": str(root / "text.tif"), "three_bands": str(three),
            "truncated": str(truncate(chip, root / "truncated.tif", 0.3)),
            "bad_ckpt": str(truncate(Path(rs_run["ckpt"]), root / "truncated.ckpt")),
            "inf_data": str(root / "inf_data")}  # fmt: skip


@pytest.mark.parametrize("row", rows(TABLE))
def test_hv_rs_refuses(row: Bad, rs: dict[str, str], tmp_path: Path,
                       capfd: pytest.CaptureFixture) -> None:  # fmt: skip
    check_refusal("remote_sensing.cli", row, rs, tmp_path, capfd)


def test_bands_by_index_and_by_name(rs: dict[str, str]) -> None:
    """``--data.bands`` takes 1-based indexes, as documented (YAML reads ``[2]`` as an int,
    which the old ``list[str]`` type refused), and names, mixed."""
    from remote_sensing.cli import SPEC
    from remote_sensing.task import plan_dataset
    from shared.cli import parse_task_command

    argv = ["--data.root", rs["data"], "--data.bands", "[2, B04]"]
    _, cfg = parse_task_command(SPEC, "train", "", argv, lambda parser: None)
    assert cfg.data.bands == [2, "B04"]
    pre = plan_dataset(cfg.data, seed=0).pre
    assert pre.bands == ["B02", "B04"] and pre.band_indexes == [2, 4]


def test_mixup_keeps_the_class_weights_of_balance_loss(rs: dict[str, str]) -> None:
    """``--data.balance loss`` with MixUp: the mixed (soft-target) loss carries the weights that
    the plain cross-entropy has (timm's SoftTargetCrossEntropy took none: they were dropped)."""
    from remote_sensing.cli import SPEC
    from remote_sensing.task import build_task, class_weights
    from shared.cli import parse_task_command

    argv = ["--data.root", rs["data"], "--data.balance", "loss", "--data.chip_size", "16",
            "--regularization.mixup_alpha", "0.2"]  # fmt: skip
    _, cfg = parse_task_command(SPEC, "train", "", argv, lambda parser: None)
    task, data = build_task(cfg)
    expected = class_weights(data.plan.splits["train"], len(data.plan.pre.class_names))
    assert torch.equal(task.loss_fn.weight, expected)
    assert torch.equal(task.mixed_loss.weight, expected)


def test_config_yaml_round_trips_with_plain_values(rs: dict[str, str]) -> None:
    """evaluate re-parses the run's config.yaml: the typed fields must read back as written."""
    from remote_sensing.cli import SPEC
    from shared.cli import parse_task_command

    config = Path(rs["run"]) / "config.yaml"
    _, cfg = parse_task_command(SPEC, "evaluate", "", [], lambda parser: None, base=config)
    assert (cfg.data.val_fraction, cfg.data.chip_size) == (0.15, 16)
    assert type(cfg.data.val_fraction) is float and type(cfg.data.test_fraction) is float
