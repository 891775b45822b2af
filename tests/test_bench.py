"""``python -m shared.bench``: tiny real runs, the report writer, and the headline arithmetic
checked on made-up measurements (seconds, CPU)."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pytest
import torch
from rich.console import Console

from shared.bench import BenchResult, Report, Section, Table, main, peak_memory, time_call
from shared.bench.backbone import build_report
from shared.bench.headline import headline_ratios, reference_ratios, reference_sentence
from shared.bench.report import OURS, render_markdown, write_report
from shared.bench.scaling import ScalingPoint, measure_scaling, scaling_section, scaling_summary

OUTPUTS = ("backbone.md", "backbone.json", "backbone.png")


def _run(out_dir: Path, *flags: str) -> dict:
    """Run the bench in-process, check its three files, return the parsed JSON."""
    argv = ["backbone", "--min-time", "0", "--warmup", "0", "--out-dir", str(out_dir), *flags]
    assert main(argv) == 0
    for name in OUTPUTS:
        assert (out_dir / name).stat().st_size > 0, name
    assert not list(out_dir.glob(".*.tmp")), "atomic writes left a temp file behind"
    assert (out_dir / "backbone.png").read_bytes().startswith(b"\x89PNG")
    return json.loads((out_dir / "backbone.json").read_text())


def _assert_positive(result: dict) -> None:
    assert result["error"] is None
    values = {"params": result["params"], **result["metrics"]}
    for key in ("params", "macs_per_sample", "infer_per_s", "train_per_s"):
        assert math.isfinite(values[key]) and values[key] > 0, (result["name"], key, values[key])


def test_tiny_2d_run_writes_md_json_png(tmp_path: Path) -> None:
    flags = ["--models", "hybrid_tiny", "resnet18", "--size", "64", "--batch", "2", "--no-3d"]
    report = _run(tmp_path, *flags, "--threads", "1", "2", "--no-scaling")
    first = [r for r in report["results"] if r["threads"] == 1]
    assert [(r["name"], r["dims"]) for r in first] == [("hybrid_tiny", 2), ("resnet18", 2)]
    for result in report["results"]:
        _assert_positive(result)
        assert result["input_shape"] == [2, 3, 64, 64]
    # Memory is measured once per model, at the first thread count.
    assert all(r["metrics"]["train_peak_mib"] > 0 for r in first)
    assert report["machine"]["torch_threads"] >= 1
    assert "--no-3d" in report["command"]
    # The resnet18 ratios are the measured throughputs divided, at each thread count.
    by_key = {(r["name"], r["threads"]): r["metrics"] for r in report["results"]}
    assert [row["threads"] for row in report["reference_ratios"]] == [1, 2]
    for row in report["reference_ratios"]:
        ours, cnn = by_key["hybrid_tiny", row["threads"]], by_key["resnet18", row["threads"]]
        assert row["train_ratio"] == pytest.approx(ours["train_per_s"] / cnn["train_per_s"])
        assert row["infer_ratio"] == pytest.approx(ours["infer_per_s"] / cnn["infer_per_s"])
    markdown = (tmp_path / "backbone.md").read_text()
    assert "hybrid_tiny (ours)" in markdown and "resnet18" in markdown
    assert report["command"] in markdown
    assert "hybrid_tiny trains at" in markdown and "2 threads" in markdown


def test_tiny_3d_run(tmp_path: Path) -> None:
    # Batch 2 because BatchNorm in train mode needs more than one value per channel at 1^3.
    report = _run(
        tmp_path, "--models", "hybrid_tiny", "--no-2d", "--size-3d", "32", "--batch-3d", "2",
        "--threads", "1", "--no-scaling",
    )  # fmt: skip
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


def _result(
    name: str, params: int, train_per_s: float, infer_per_s: float | None = None, threads: int = 1
) -> BenchResult:
    family = OURS if name.startswith("hybrid") else "timm"
    metrics = {"train_per_s": train_per_s, "infer_per_s": infer_per_s or 2 * train_per_s}
    return BenchResult(name, family, 2, [8, 3, 224, 224], threads, params, metrics)


def test_headline_ratios_verdicts() -> None:
    ratios = headline_ratios(
        [
            _result("hybrid_small", 10, 6.6),
            _result("botnet26t_256", 12, 5.0),  # 1.32x as fast and smaller: PASS
            _result("coatnet_nano_rw_224", 15, 8.0),  # slower: MISS
        ]
    )
    assert [(r["baseline"], r["verdict"]) for r in ratios] == [
        ("botnet26t_256", "PASS"),
        ("coatnet_nano_rw_224", "MISS"),
    ]
    assert ratios[0]["train_ratio"] == pytest.approx(1.32)
    assert ratios[1]["param_ratio"] == pytest.approx(10 / 15)
    assert headline_ratios([_result("resnet18", 1, 1.0)]) == []
    # Faster, but under the 1.3x target: MISS.
    (short,) = headline_ratios([_result("hybrid_small", 10, 6.0), _result("botnet26t_256", 12, 5)])
    assert short["verdict"] == "MISS"


def test_reference_ratios_arithmetic_and_plain_wording() -> None:
    results = [
        _result("hybrid_small", 11, 3.1, 20.0, threads=1),
        _result("resnet18", 12, 5.0, 16.0, threads=1),
        _result("hybrid_tiny", 2, 5.0, 16.0, threads=1),
        _result("hybrid_small", 11, 12.0, 30.0, threads=4),
        _result("resnet18", 12, 8.0, 40.0, threads=4),
        _result("hybrid_base", 30, 1.0, threads=8),  # no resnet18 at 8 threads: no row
    ]
    rows = reference_ratios(results)
    assert [(r["model"], r["threads"]) for r in rows] == [
        ("hybrid_small", 1),
        ("hybrid_tiny", 1),
        ("hybrid_small", 4),
    ]
    assert rows[0]["train_ratio"] == pytest.approx(0.62)
    assert rows[0]["infer_ratio"] == pytest.approx(1.25)
    assert rows[0]["param_ratio"] == pytest.approx(11 / 12)
    assert reference_sentence(rows[0], all_cores=4) == (
        "hybrid_small trains at 0.62x resnet18's speed (slower) and infers at 1.25x (faster), "
        "1 thread; 0.92x its parameters"
    )
    assert "(the same speed) and infers at 1.00x (the same speed)" in reference_sentence(rows[1])
    assert reference_sentence(rows[2], all_cores=4).startswith(
        "hybrid_small trains at 1.50x resnet18's speed (faster) and infers at 0.75x (slower), "
        "4 threads (all cores)"
    )


def _points() -> list[ScalingPoint]:
    return [
        ScalingPoint("window", 28, 784, 0.001, 1e6),
        ScalingPoint("window", 56, 3136, 0.0042, 4e6),
        ScalingPoint("global", 28, 784, 0.002, 2e6),
        ScalingPoint("global", 56, 3136, 0.030, 28e6),
    ]


def test_scaling_summary_arithmetic() -> None:
    window, global_ = scaling_summary(_points())
    assert (window["attention"], global_["attention"]) == ("window", "global")
    assert window["token_ratio"] == global_["token_ratio"] == 4
    assert window["time_ratio"] == pytest.approx(4.2)
    assert global_["time_ratio"] == pytest.approx(15.0)
    assert global_["mac_ratio"] == pytest.approx(14.0)
    assert window["exponent"] == pytest.approx(math.log(4.2) / math.log(4))
    assert global_["quadratic_ratio"] == 16
    section = scaling_section(_points(), threads=1)
    assert section.table.rows[1][1:6] == ["784 -> 3136", "2.00", "30.00", "15.0x", "14.0x"]
    assert "at most about linear" in section.notes[0] and "about quadratic" in section.notes[1]


def test_window_attention_macs_grow_linearly_global_quadratically() -> None:
    points = measure_scaling(sides=(14, 28), threads=1, min_time=0)
    window, global_ = scaling_summary(points)
    assert all(p.seconds > 0 for p in points)
    # 4x the tokens: windowed attention does exactly 4x the work; global attention's
    # token-pair term makes the whole block grow well past that.
    assert window["mac_ratio"] == pytest.approx(4.0, rel=0.02)
    assert global_["mac_ratio"] > 6.0


def test_backbone_report_has_headline_targets_and_scaling() -> None:
    results = [_result("hybrid_small", 11, 3.1, 20.0), _result("resnet18", 12, 5.0, 16.0)]
    for result in results:
        result.metrics["macs_per_sample"] = 1e9
    report = build_report(results, _points(), {}, [1], "python -m shared.bench backbone", {})
    markdown = render_markdown(report)
    assert "- hybrid_small trains at 0.62x resnet18's speed (slower)" in markdown
    assert "| global | 784 -> 3136 | 2.00 | 30.00 | 15.0x | 14.0x | 4x | 16x |" in markdown
    assert "not measured (hybrid_small or its baselines" in markdown


def test_report_writer_writes_md_json_png_with_command_and_machine(tmp_path: Path) -> None:
    table = Table(["model", "img/s"], [["ours", "12.5"], ["theirs", "10.0"]], bold=[True, False])
    report = Report(
        name="demo",
        title="Demo benchmark",
        command="python -m demo --fast",
        sections=[Section("Speed", text=["- one line"], table=table, notes=["a note"])],
        data={"results": [_result("hybrid_tiny", 2, 5.0)], "path": tmp_path},
        plot=lambda figure: figure.add_subplot(1, 1, 1).plot([1, 2], [3, 4]),
        facts={"Mode": "quick"},
        warnings=["busy machine"],
    )
    buffer = io.StringIO()
    paths = write_report(report, tmp_path / "out", Console(file=buffer, width=200))
    assert [p.name for p in paths] == ["demo.md", "demo.json", "demo.png"]
    assert not list((tmp_path / "out").glob(".*.tmp"))
    markdown = (tmp_path / "out" / "demo.md").read_text()
    assert markdown.startswith("# Demo benchmark\n")
    assert "- Reproduce: `python -m demo --fast`" in markdown
    assert f"torch {torch.__version__.split('+')[0]}" in markdown  # the machine line
    assert "- Mode: quick" in markdown and "- **Warning**: busy machine" in markdown
    assert "| model | img/s |\n|---|---:|\n| ours | 12.5 |" in markdown
    data = json.loads((tmp_path / "out" / "demo.json").read_text())
    assert data["command"] == "python -m demo --fast"
    assert {"cpu", "cpu_count", "torch_threads", "torch"} <= set(data["machine"])
    assert data["results"][0]["metrics"]["train_per_s"] == 5.0
    assert data["path"] == str(tmp_path)
    assert (tmp_path / "out" / "demo.png").read_bytes().startswith(b"\x89PNG")
    console = buffer.getvalue()
    assert "12.5" in console and "Reproduce: python -m demo --fast" in console
    assert "Machine:" in console and "Warning: busy machine" in console


def test_peak_memory_is_the_peak_not_the_sum_or_the_end() -> None:
    mib = 2**20

    def allocate() -> None:
        first, second = torch.ones(mib // 4), torch.ones(mib // 4)  # 1 MiB each
        del first, second
        third = torch.ones(mib // 4)
        del third

    assert peak_memory(allocate) == pytest.approx(2 * mib, rel=0.01)


def test_time_call_runs_at_the_given_threads_and_restores_them() -> None:
    before, seen = torch.get_num_threads(), []
    times = time_call(lambda: seen.append(torch.get_num_threads()), threads=1, min_time=0)
    assert times and all(t > 0 for t in times)
    assert set(seen) == {1}
    assert torch.get_num_threads() == before


def test_engine_overhead_measures_both_loops(tmp_path: Path) -> None:
    from shared.bench.engine import build_report as engine_report
    from shared.bench.engine import measure_engine_overhead

    result = measure_engine_overhead(epochs=1, num_train=32, batch_size=16, repeats=1)
    assert result["steps"] == 2
    assert result["bare_seconds"] > 0 and result["engine_seconds"] > 0
    assert result["ratio"] == pytest.approx(result["engine_seconds"] / result["bare_seconds"])
    write_report(engine_report(result, "python -m shared.bench engine", 1), tmp_path)
    verdict = "PASS" if result["ratio"] < 1.10 else "MISS"
    assert f"({verdict}, target < 1.1)" in (tmp_path / "engine.md").read_text()
    assert json.loads((tmp_path / "engine.json").read_text())["verdict"] == verdict
