"""Smoke tests of ``python -m shared.bench backbone`` in tiny configurations (seconds, CPU)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from shared.bench import BenchResult, headline_ratios, main

OUTPUTS = ("backbone.md", "backbone.json", "backbone.png")


def _run(out_dir: Path, *flags: str) -> dict:
    """Run the bench in-process, check its three files, return the parsed JSON."""
    assert (
        main(["backbone", "--iters", "1", "--warmup", "1", "--out-dir", str(out_dir), *flags]) == 0
    )
    for name in OUTPUTS:
        assert (out_dir / name).stat().st_size > 0, name
    assert not list(out_dir.glob(".*.tmp")), "atomic writes left a temp file behind"
    assert (out_dir / "backbone.png").read_bytes().startswith(b"\x89PNG")
    return json.loads((out_dir / "backbone.json").read_text())


def _assert_positive(result: dict) -> None:
    assert result["error"] is None
    for key in ("params", "macs_per_sample", "infer_per_s", "train_per_s"):
        value = result[key]
        assert math.isfinite(value) and value > 0, (result["name"], key, value)


def test_tiny_2d_run_writes_md_json_png(tmp_path: Path) -> None:
    report = _run(
        tmp_path, "--models", "hybrid_tiny", "resnet18", "--size", "64", "--batch", "2", "--no-3d"
    )
    results = report["results"]
    assert [(r["name"], r["dims"]) for r in results] == [("hybrid_tiny", 2), ("resnet18", 2)]
    for result in results:
        _assert_positive(result)
        assert result["input_shape"] == [2, 3, 64, 64]
    assert report["machine"]["torch_threads"] >= 1
    assert "--no-3d" in report["command"]
    markdown = (tmp_path / "backbone.md").read_text()
    assert "hybrid_tiny (ours)" in markdown and "resnet18" in markdown
    assert report["command"] in markdown


def test_tiny_3d_run(tmp_path: Path) -> None:
    # Batch 2 because BatchNorm in train mode needs more than one value per channel at 1^3.
    report = _run(
        tmp_path, "--models", "hybrid_tiny", "--no-2d", "--size-3d", "32", "--batch-3d", "2"
    )
    (result,) = report["results"]
    assert (result["name"], result["dims"], result["input_shape"]) == (
        "hybrid_tiny",
        3,
        [2, 1, 32, 32, 32],
    )
    _assert_positive(result)
    assert "segmentation" in (tmp_path / "backbone.md").read_text()


def test_unknown_model_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["backbone", "--models", "nope"])
    assert exit_info.value.code == 2
    assert "available" in capsys.readouterr().err


def _result(name: str, params: int, train_per_s: float) -> BenchResult:
    result = BenchResult(name, 2, "test", "", [8, 3, 224, 224], params=params)
    result.train_per_s, result.infer_per_s = train_per_s, 2 * train_per_s
    return result


def test_headline_ratios_verdicts() -> None:
    ratios = headline_ratios(
        [
            _result("hybrid_small", 10, 6.0),
            _result("botnet26t_256", 12, 5.0),  # faster and smaller: PASS
            _result("coatnet_nano_rw_224", 15, 8.0),  # slower: MISS
        ]
    )
    assert [(r["baseline"], r["verdict"]) for r in ratios] == [
        ("botnet26t_256", "PASS"),
        ("coatnet_nano_rw_224", "MISS"),
    ]
    assert ratios[0]["train_ratio"] == pytest.approx(1.2)
    assert ratios[1]["param_ratio"] == pytest.approx(10 / 15)
    assert headline_ratios([_result("resnet18", 1, 1.0)]) == []


def test_engine_overhead_measures_both_loops() -> None:
    from shared.engine.overhead import measure_engine_overhead

    result = measure_engine_overhead(epochs=1, num_train=32, batch_size=16, repeats=1)
    assert result["steps"] == 2
    assert result["bare_seconds"] > 0 and result["engine_seconds"] > 0
    assert result["ratio"] == pytest.approx(result["engine_seconds"] / result["bare_seconds"])
