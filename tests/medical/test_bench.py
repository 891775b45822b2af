"""hv-med bench in its quick configuration: every reported number is present and sane."""

from __future__ import annotations

import json
from pathlib import Path

from medical.cli import main as hv_med


def test_quick_bench_writes_table_json_and_plot(tmp_path: Path) -> None:
    code = hv_med([
        "bench", "--quick", "--models", "hybrid (ours)", "MONAI UNet", "--batch", "2",
        "--out-dir", str(tmp_path / "out"), "--work-dir", str(tmp_path / "work"),
    ])  # fmt: skip
    assert code == 0
    report = json.loads((tmp_path / "out" / "medical.json").read_text())
    assert [r["name"] for r in report["results"]] == ["hybrid (ours)", "MONAI UNet"]
    for result in report["results"]:
        metrics = result["metrics"]
        assert 0.0 <= metrics["dice_mean"] <= 1.0
        assert result["params"] > 0 and metrics["train_voxels_per_s"] > 0
        assert metrics["infer_seconds_per_volume"] > 0 and metrics["est_peak_train_gib"] > 0
        assert set(result["info"]["dice_per_class"]) == {"organ1", "organ2"}
    assert report["facts"]["held_out_cases"] == ["phantom_002"]
    markdown = (tmp_path / "out" / "medical.md").read_text()
    assert "Reproduce: `hv-med bench --quick" in markdown
    assert (tmp_path / "out" / "medical.png").read_bytes()[:4] == b"\x89PNG"
