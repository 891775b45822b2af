"""hv-rs bench: a tiny run through the real train/evaluate commands, and the goal verdicts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml

from remote_sensing.bench import VIEWS, goals, main
from shared.bench import OURS, BenchResult


def test_quick_bench_trains_and_scores_through_the_cli(tmp_path: Path, rasters) -> None:
    root = rasters.make_eurosat(tmp_path / "data", 4, per_class=6)
    work = tmp_path / "work"
    # --quick: two seeds, hybrid and resnet18, batch 8, report under WORK/quick; --steps wins.
    assert main(["--quick", "--data", str(root), "--steps", "2", "--work-dir", str(work)]) == 0
    out = work / "quick"
    report = json.loads((out / "remote_sensing.json").read_text())
    assert (out / "remote_sensing.png").is_file()
    results = {r["name"]: r for r in report["results"]}
    assert list(results) == ["hybrid", "resnet18"]
    for name, arch in (("hybrid", "hybrid"), ("resnet18", "resnet18")):
        runs = results[name]["info"]["runs"]
        assert [r["seed"] for r in runs] == [0, 1]
        for run in runs:
            # Trained by hv-rs train (its run folder and config), scored by hv-rs evaluate.
            run_dir = Path(run["checkpoint"]).parent.parent
            config = yaml.safe_load((run_dir / "config.yaml").read_text())
            assert config["model"]["arch"] == arch and config["trainer"]["seed"] == run["seed"]
            assert config["trainer"]["max_steps"] == 2 and config["trainer"]["batch_size"] == 8
            assert (run_dir / "evaluation" / "evaluation_test.json").is_file()
            assert set(VIEWS) <= set(run["scores"])
        metrics = results[name]["metrics"]
        for view in VIEWS:
            values = [r["scores"][view]["macro_f1"] for r in runs]
            assert np.isclose(metrics[f"f1_{view}"], np.mean(values))
            assert np.isclose(metrics[f"f1_{view}_std"], np.std(values))
        assert metrics["train_img_per_s"] > 0 and metrics["infer_img_per_s"] > 0
    # Only the hybrid gets the TTA evaluation.
    assert "f1_rotate+tta" in results["hybrid"]["metrics"]
    assert "f1_rotate+tta" not in results["resnet18"]["metrics"]
    text = (out / "remote_sensing.md").read_text()
    f1 = {name: r["metrics"]["f1_plain"] for name, r in results.items()}
    hybrid_wins = f1["hybrid"] >= f1["resnet18"]
    assert f"{'PASS' if hybrid_wins else 'FAIL'}: hybrid macro-F1 >= resnet18" in text
    assert "drop under arbitrary rotation" in text and "hv-rs train --data.root" in text


def _result(name: str, plain: float, rotate: float, family: str = OURS) -> BenchResult:
    metrics = {
        "f1_plain": plain,
        "f1_rotate": rotate,
        "rotation_drop_points": 100 * (plain - rotate),
        "rotation_drop_points_std": 0.0,
    }
    return BenchResult(name, family, 2, [4, 32, 32], 1, 1, metrics)  # fmt: skip


def test_goals_pass_and_fail() -> None:
    results = [_result("hybrid", 0.90, 0.897), _result("cnn (matched)", 0.92, 0.9),
               _result("resnet18", 0.80, 0.8, "timm")]  # fmt: skip
    facts = {"test_count": 200, "hybrid_minus": {
        "cnn (matched)": {"mean": -2.0, "std": 1.0, "per_seed": [-1.0, -3.0]},
        "resnet18": {"mean": 10.0, "std": 0.0, "per_seed": [10.0, 10.0]}}}  # fmt: skip
    lines = goals(results, facts)
    assert lines[0].startswith("FAIL: hybrid macro-F1 >= cnn (matched)")
    assert lines[1].startswith("PASS: hybrid macro-F1 >= resnet18")
    assert lines[2].startswith("PASS: hybrid F1 drop under arbitrary rotation")
    assert "(augmentation on) +0.3" in lines[2]
    assert "hybrid minus matched pure CNN: -2.0" in lines[3] and "+5.8" in lines[3]
    results[0] = _result("hybrid", 0.90, 0.89)
    assert goals(results, facts)[2].startswith("FAIL: hybrid F1 drop")
