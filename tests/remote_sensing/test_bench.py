"""hv-rs bench: a tiny run through the real train/evaluate commands, and the goal verdicts on
made-up runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml

from remote_sensing.bench import BENCH, VIEWS, goals, main
from shared.bench import Row, Run


def test_quick_bench_trains_and_scores_through_the_cli(tmp_path: Path, rasters) -> None:
    root = rasters.make_eurosat(tmp_path / "data", 4, per_class=6)
    work = tmp_path / "work"
    # --quick: two seeds, hybrid and resnet18, batch 8, report under WORK/quick; --steps wins.
    # Two one-thread children at a time (--jobs 2): the CI machine has two cores.
    argv = ["--quick", "--data", str(root), "--steps", "2", "--work-dir", str(work), "--jobs", "2"]
    assert main(argv) == 0
    out = work / "quick"
    report = json.loads((out / "remote_sensing.json").read_text())
    assert (out / "remote_sensing.png").is_file()
    rows = {r["name"]: r for r in report["rows"]}
    assert list(rows) == ["hybrid", "resnet18"]
    text = (out / "remote_sensing.md").read_text()
    for name, arch in (("hybrid", "hybrid"), ("resnet18", "resnet18")):
        runs = rows[name]["runs"]
        assert [r["seed"] for r in runs] == [0, 1] and all(r["error"] is None for r in runs)
        for run in runs:
            # Trained by hv-rs train (its run folder and config), scored by hv-rs evaluate.
            run_dir = Path(run["run_dir"])
            config = yaml.safe_load((run_dir / "config.yaml").read_text())
            assert config["model"]["arch"] == arch and config["trainer"]["seed"] == run["seed"]
            assert config["trainer"]["max_steps"] == 2 and config["trainer"]["batch_size"] == 8
            scores = json.loads((run_dir / "evaluation" / "evaluation_test.json").read_text())
            for view in VIEWS:
                assert run["metrics"][f"f1_{view}"] == scores["scores"][view]["macro_f1"]
        stats = rows[name]["stats"]
        for view in VIEWS:
            values = [r["metrics"][f"f1_{view}"] for r in runs]
            assert np.isclose(stats[f"f1_{view}"]["mean"], np.mean(values))
            assert np.isclose(stats[f"f1_{view}"]["std"], np.std(values, ddof=1))
        plain = [r["metrics"]["f1_plain"] for r in runs]
        cell = f"{np.mean(plain):.3f} ± {np.std(plain, ddof=1):.3f}"
        assert f"| {name}{' (ours)' if name == 'hybrid' else ''} | " in text and cell in text
        assert stats["train_img_per_s"]["mean"] > 0 and stats["infer_img_per_s"]["mean"] > 0
    # Only the hybrid gets the TTA evaluation.
    assert "f1_rotate+tta" in rows["hybrid"]["runs"][0]["metrics"]
    assert "f1_rotate+tta" not in rows["resnet18"]["runs"][0]["metrics"]
    f1 = {name: r["stats"]["f1_plain"]["mean"] for name, r in rows.items()}
    hybrid_wins = f1["hybrid"] >= f1["resnet18"]
    assert f"{'PASS' if hybrid_wins else 'FAIL'}: hybrid macro-F1 >= resnet18" in text
    assert "drop under arbitrary rotation" in text and "hv-rs train --data.root" in text
    assert "Reproduce: `hv-rs bench --quick --data" in text


def _row(name: str, *f1: tuple[float, float]) -> Row:
    runs = [Run(name, seed, {"f1_plain": plain, "f1_rotate": rotate,
                             "rotation_drop_points": 100 * (plain - rotate)})
            for seed, (plain, rotate) in enumerate(f1)]  # fmt: skip
    return Row(name, BENCH.variants[name].family, True, runs)


def test_goals_pass_and_fail() -> None:
    rows = [_row("hybrid", (0.90, 0.897), (0.92, 0.915)),
            _row("cnn (matched)", (0.91, 0.9), (0.95, 0.9)),
            _row("resnet18", (0.80, 0.8), (0.82, 0.8))]  # fmt: skip
    lines = goals(rows, {"test_count": 200})
    assert lines[0] == ("FAIL: hybrid macro-F1 >= cnn (matched): hybrid minus cnn (matched) "
                        "-2.0 ± 1.4 points (per seed -1.0, -3.0).")  # fmt: skip
    assert lines[1] == ("PASS: hybrid macro-F1 >= resnet18: hybrid minus resnet18 +10.0 ± 0.0 "
                        "points (per seed +10.0, +10.0).")  # fmt: skip
    assert lines[2] == ("PASS: hybrid F1 drop under arbitrary rotation (augmentation on) "
                        "+0.4 ± 0.1 points; goal <= 0.5.")  # fmt: skip
    assert lines[3] == ("Measured hybrid minus matched pure CNN: -2.0 ± 1.4 macro-F1 points; the "
                        "brief claims +5.8.")  # fmt: skip
    assert lines[4] == ("Resolution: the test split has 200 chips, so one chip is about 0.5 "
                        "points of accuracy.")  # fmt: skip
    rows[0] = _row("hybrid", (0.90, 0.89), (0.92, 0.91))
    assert goals(rows, {"test_count": 200})[2].startswith("FAIL: hybrid F1 drop")


def _timed(name: str, seconds: float, half: float, double: float) -> Row:
    runs = [Run(name, seed, {"f1_plain": 0.5, "f1_rotate": 0.5, "rotation_drop_points": 0.0,
                             "train_seconds": seconds, "f1_scale0.5": half,
                             "f1_scale2": double}) for seed in (0, 1)]  # fmt: skip
    return Row(name, BENCH.variants[name].family, True, runs)


def test_goals_on_training_time_and_ground_scale() -> None:
    rows = [_timed("hybrid", 90, 0.61, 0.40), _timed("resnet18", 100, 0.50, 0.45),
            _timed("coatnet_nano", 300, 0.70, 0.30)]  # fmt: skip
    lines = goals(rows, {"test_count": 10})
    assert ("PASS: hybrid trains in no more time than resnet18: 90 s against 100 s per run "
            "(mean over seeds, same steps and batch).") in lines  # fmt: skip
    assert ("At 0.5x ground scale the hybrid scores 0.610, rank 2 of 3 (coatnet_nano 0.700, "
            "resnet18 0.500).") in lines  # fmt: skip
    assert ("At 2x ground scale the hybrid scores 0.400, rank 2 of 3 (resnet18 0.450, "
            "coatnet_nano 0.300).") in lines  # fmt: skip
    rows[0] = _timed("hybrid", 110, 0.61, 0.40)
    assert any(line.startswith("FAIL: hybrid trains in no more time") for line in
               goals(rows, {"test_count": 10}))  # fmt: skip


def test_report_of_a_built_dataset_names_its_source_counts_and_split(tmp_path: Path) -> None:
    from remote_sensing.bench import build_report
    from shared.bench import write_report

    rows = [_timed("hybrid", 90, 0.6, 0.4), _timed("resnet18", 100, 0.5, 0.45)]
    for row in rows:
        for run in row.runs:
            run.info = {"bands": ["B1", "B2"], "classes": ["Forest", "Water"], "test_count": 7}
    dataset = {"source": {"data": "GRASS NC sample data, CC BY-SA 3.0", "package": "pkg 1.0"},
               "chip_size": 16, "stride": 2, "notes": ["Agriculture: left out"],
               "chips": {"Forest": {"train": 5, "val": 2, "test": 3},
                         "Water": {"train": 4, "val": 1, "test": 4}},
               "polygons": {"Forest": {"train": 2, "val": 1, "test": 1},
                            "Water": {"train": 1, "val": 1, "test": 1}}}  # fmt: skip
    facts = {"root": "/data/nc", "chip": 16, "steps": 3, "batch": 4, "lr": 0.002, "jobs": 1,
             "seeds": [0, 1], "train_command": "hv-rs train ...", "report_name": "rs_real",
             "title": "Real labels", "dataset": dataset, "split_files": True}  # fmt: skip
    report = build_report(rows, facts, "hv-rs bench --data /data/nc")
    assert report.name == "rs_real" and report.title == "Real labels"
    write_report(report, tmp_path)
    text = (tmp_path / "rs_real.md").read_text()
    assert "GRASS NC sample data, CC BY-SA 3.0; read from pkg 1.0" in text
    assert "(the dataset's split files, the same for every seed)" in text
    assert "| Forest | 5 | 2 | 3 | 2/1/1 |" in text and "| all | 9 | 3 | 7 |  |" in text
    assert "- Agriculture: left out" in text
    # --render rewrites it under the same name.
    assert main(["--render", str(tmp_path / "rs_real.json"), "--out-dir", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "rs_real.md").is_file()
