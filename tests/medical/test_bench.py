"""hv-med bench: the quick run goes through the product's code path and reports every number;
the row summary counts misses and never drops a failed seed; the goals say PASS or FAIL."""

from __future__ import annotations

import json
import math
from pathlib import Path

import yaml

from medical.bench import ROWS, build_report, goals, summarise
from medical.cli import main as hv_med
from medical.plan import MEDICAL
from shared.engine import read_checkpoint


def test_quick_bench_trains_predicts_and_scores_through_the_cli_path(tmp_path: Path) -> None:
    code = hv_med([
        "bench", "--quick", "--models", "hybrid", "MONAI UNet", "--seeds", "0",
        "--out-dir", str(tmp_path / "out"), "--work-dir", str(tmp_path / "work"),
    ])  # fmt: skip
    assert code == 0
    report = json.loads((tmp_path / "out" / "medical.json").read_text())
    assert [r["name"] for r in report["results"]] == ["hybrid", "MONAI UNet"]
    for result in report["results"]:
        metrics = result["metrics"]
        # One seed: a mean and no standard deviation (never a made-up 0).
        assert 0.0 <= metrics["dice_mean"] <= 1.0 and math.isnan(metrics["dice_std"])
        assert result["params"] > 0 and metrics["train_voxels_per_s_mean"] > 0
        assert metrics["window_seconds_per_volume_mean"] > 0
        assert metrics["predict_seconds_per_volume_mean"] > 0
        # Measured VmHWM of a process that imported torch and MONAI: far above 0.2 GiB.
        assert 0.2 < metrics["peak_rss_gib_mean"] < 16
        assert metrics["misses"] >= 0
        assert set(result["info"]["dice_per_class"]) == {"organ1", "organ2"}
        assert result["info"]["runs"][0]["steps"] == 2
    assert report["facts"]["held_out_cases"] == ["phantom_002"]
    # The UNet row really trained a MONAI UNet through hv-med train's config and task, and
    # hv-med predict rebuilt it from the checkpoint's plan.
    run = tmp_path / "work" / "runs" / "unet-32-true-seed0"
    assert yaml.safe_load((run / "config.yaml").read_text())["model"]["arch"] == "unet"
    assert read_checkpoint(run / "checkpoints" / "last.ckpt", MEDICAL)[1].network.arch == "unet"
    assert (run / "predictions" / "phantom_002.nii.gz").is_file()
    markdown = (tmp_path / "out" / "medical.md").read_text()
    assert "Reproduce: `hv-med bench --quick" in markdown
    assert "Dice >= MONAI UNet: **" in markdown
    assert (tmp_path / "out" / "medical.png").read_bytes()[:4] == b"\x89PNG"
    # --render rewrites the same report from the JSON alone: same table, no training.
    assert hv_med(["bench", "--render", str(tmp_path / "out" / "medical.json"),
                   "--out-dir", str(tmp_path / "again")]) == 0  # fmt: skip
    table = [line for line in markdown.splitlines() if line.startswith("| ")]
    again = (tmp_path / "again" / "medical.md").read_text().splitlines()
    assert table == [line for line in again if line.startswith("| ")]


def _run(seed: int, dice: float | None, misses: int, speed: float) -> dict:
    return {
        "seed": seed, "params": 10, "steps": 4, "train_seconds": 1.0,
        "train_voxels_per_s": speed, "peak_rss_gib": 1.0, "predict_seconds_per_volume": 1.0,
        "window_seconds_per_volume": 0.5, "dice": dice, "hd95_mm": 2.0,
        "dice_per_class": {"a": dice, "b": dice}, "misses": misses, "cases": 1,
    }  # fmt: skip


def test_summary_counts_misses_and_keeps_failed_seeds() -> None:
    row = summarise("hybrid", ROWS["hybrid"], [_run(0, 0.8, 1, 10), _run(1, 0.6, 2, 12)], [1])
    assert math.isclose(row.metrics["dice_mean"], 0.7)
    assert math.isclose(row.metrics["dice_std"], math.sqrt(0.02))
    assert row.metrics["misses"] == 3
    # A seed whose Dice is undefined is not silently left out of the mean.
    failed = summarise("hybrid", ROWS["hybrid"], [_run(0, 0.8, 0, 10), _run(1, None, 2, 10)], [1])
    assert math.isnan(failed.metrics["dice_mean"])


def test_goals_report_pass_and_fail_with_numbers() -> None:
    ours = summarise("hybrid", ROWS["hybrid"], [_run(0, 0.80, 0, 100), _run(1, 0.82, 0, 100)], [1])
    unet = summarise("MONAI UNet", ROWS["MONAI UNet"], [_run(0, 0.85, 0, 400)], [1])
    cnn = summarise(
        "pure CNN, matched params",
        ROWS["pure CNN, matched params"],
        [_run(0, 0.78, 0, 90), _run(1, 0.79, 0, 90)],
        [1],
    )
    lines = goals([ours, cnn, unet])
    assert any("Dice >= MONAI UNet: **FAIL**" in line and "-4.0 points" in line for line in lines)
    assert any("0.5x MONAI UNet: **FAIL**, 0.25x" in line for line in lines)
    assert any("pure CNN" in line and "+2.5 ± 0.7" in line for line in lines)
    report = build_report(
        [ours, cnn, unet],
        {"dataset": "x", "train_cases": [], "held_out_cases": [], "spacing": [1, 1, 1],
         "budget": {"steps": 4, "batch_size": 1, "samples_per_case": 2, "patch": [32, 32, 32],
                    "lr": 1e-3, "warmup_fraction": 0.1},
         "seeds": [0, 1], "slow_seeds": [0], "other_cores_busy": 0.0},
        "hv-med bench",
    )  # fmt: skip
    assert report.sections[0].table is not None
    assert report.sections[0].table.rows[2][0] == "MONAI UNet (1 seed)"
