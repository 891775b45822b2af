"""hv-vsr bench in its quick configuration: every row through the product, BasicVSR's speed
measured in the same run, and the speed ratio in the report computed from those numbers."""

from __future__ import annotations

import json
from pathlib import Path

from video_sr.bench import BASICVSR
from video_sr.cli import main as hv_vsr


def test_quick_bench_writes_table_json_and_plot(tmp_path: Path) -> None:
    code = hv_vsr([
        "bench", "--quick", "--rss-frames", "0",
        "--out-dir", str(tmp_path / "out"), "--work-dir", str(tmp_path / "work"),
    ])  # fmt: skip
    assert code == 0
    report = json.loads((tmp_path / "out" / "video_sr.json").read_text())
    bicubic, hybrid, basicvsr = report["rows"]
    assert (bicubic["name"], hybrid["name"], basicvsr["name"]) == ("bicubic", "3D hybrid", BASICVSR)
    (b,), (h,), (v,) = bicubic["runs"], hybrid["runs"], basicvsr["runs"]
    assert (b["seed"], h["seed"], v["seed"]) == (None, 0, None)
    assert b["metrics"]["params"] == 0 and 0 < h["metrics"]["params"] < 1e6
    assert v["metrics"]["params"] == 6_291_311  # BasicVSR's architecture, random weights
    for run in (b, h):
        assert 15 < run["metrics"]["psnr_y"] < 50
    assert "psnr_y" not in v["metrics"]  # speed only: never trained, never scored
    assert h["metrics"]["train_clips_per_s"] > 0
    assert report["facts"]["speed_size"] == [36, 64] and report["facts"]["seeds"] == [0]
    markdown = (tmp_path / "out" / "video_sr.md").read_text()
    ours, theirs = h["metrics"]["infer_frames_per_s"], v["metrics"]["infer_frames_per_s"]
    assert f"both measured in this run: {ours / theirs:.2f}x BasicVSR's speed" in markdown
    assert f"| 3D hybrid (ours) | {h['metrics']['psnr_y']:.2f} ± n/a |" in markdown
    assert f"| bicubic | {b['metrics']['psnr_y']:.2f} |" in markdown
    assert "Reproduce: `hv-vsr bench --quick" in markdown and "3D hybrid vs bicubic" in markdown
    assert (tmp_path / "out" / "video_sr.png").read_bytes()[:4] == b"\x89PNG"
