"""hv-vsr bench in its quick configuration: every reported number is present and sane."""

from __future__ import annotations

import json
from pathlib import Path

from video_sr.cli import main as hv_vsr


def test_quick_bench_writes_table_json_and_plot(tmp_path: Path) -> None:
    code = hv_vsr([
        "bench", "--quick", "--models", "bicubic", "3D hybrid", "--rss-frames", "0",
        "--out-dir", str(tmp_path / "out"), "--work-dir", str(tmp_path / "work"),
    ])  # fmt: skip
    assert code == 0
    report = json.loads((tmp_path / "out" / "video_sr.json").read_text())
    bicubic, hybrid = report["results"]
    assert (bicubic["name"], hybrid["name"]) == ("bicubic", "3D hybrid")
    assert bicubic["params"] == 0 and hybrid["params"] > 0
    for result in (bicubic, hybrid):
        assert 15 < result["metrics"]["psnr_y"] < 50 and result["metrics"]["infer_frames_per_s"] > 0
    assert hybrid["metrics"]["train_clips_per_s"] > 0
    assert report["facts"]["held_out"] == "carphone_pristine"
    assert report["facts"]["train_clips"] == ["bigbuckbunny", "bikes"]
    markdown = (tmp_path / "out" / "video_sr.md").read_text()
    assert "Reproduce: `hv-vsr bench --quick" in markdown and "3D hybrid vs bicubic" in markdown
    assert (tmp_path / "out" / "video_sr.png").read_bytes()[:4] == b"\x89PNG"
