"""The product-bench harness (``shared.bench.product``): seed statistics, failed and NaN seeds,
``--reuse``, machine load over the process tree, and the report, checked against golden values
with fake children (a child that raises, one that dies, one that returns NaN)."""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from shared.bench import (
    OURS,
    Column,
    ProductBench,
    Row,
    Run,
    Variant,
    add_arguments,
    bench_main,
    format_stat,
    paired,
    product_report,
    run_rows,
    speed_ratio,
)
from shared.bench.child import jsonable_metrics, one_line
from shared.bench.measure import MachineLoad, tree_cpu_seconds
from shared.bench.product import losses
from shared.bench.report import render_markdown

FAKE_CHILD = '''
import math, os, sys


def run(job):
    options, seed = job["options"], job["seed"]
    if seed == options.get("fail"):
        raise ValueError("disk on fire\\nsecond line")
    if seed == options.get("crash"):
        print("fatal: the child died", flush=True)
        os._exit(3)
    score = options["scores"][str(seed)]
    return {"metrics": {"score": math.nan if score is None else score, "speed": options["speed"]},
            "info": {"pid": os.getpid()}}
'''


def _bench(**variants: Variant) -> ProductBench:
    return ProductBench(
        name="fake", title="Fake benchmark", prog="fake bench", child="fake_bench_child:run",
        variants=variants, ours="ours", baseline="simple",
        columns=[Column("score", "score", better="higher"),
                 Column("speed/s", "speed", ".1f", better="higher")],
        speed_keys=frozenset({"speed"}),
    )  # fmt: skip


VARIANTS = {
    "ours": Variant("ours", OURS, {"scores": {"0": 0.8, "1": 0.6, "2": 0.7}, "speed": 10}),
    "simple": Variant("simple", "peer", {"scores": {"0": 0.9, "2": 0.8}, "speed": 20, "fail": 1}),
    "flaky": Variant("flaky", "peer", {"scores": {"0": None, "1": 0.5}, "speed": 5, "crash": 2}),
}


@pytest.fixture
def fake_child(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A child module the harness's children can import (through PYTHONPATH)."""
    (tmp_path / "fake_bench_child.py").write_text(FAKE_CHILD)
    paths = [str(tmp_path), os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(paths))
    return tmp_path


def _row(name: str, *runs: Run, seeded: bool = True) -> Row:
    return Row(name, OURS, seeded, list(runs))


def test_sample_std_na_for_one_seed_and_missing_seeds_counted() -> None:
    full = _row("m", Run("m", 0, {"score": 0.8}), Run("m", 1, {"score": 0.6}),
                Run("m", 2, {"score": 0.7}))  # fmt: skip
    stat = full.stat("score")
    assert stat.mean == pytest.approx(0.7)
    assert stat.std == pytest.approx(np.std([0.8, 0.6, 0.7], ddof=1)) == pytest.approx(0.1)
    assert format_stat(stat) == "0.700 ± 0.100"
    assert format_stat(_row("m", Run("m", 0, {"score": 0.8})).stat("score")) == "0.800 ± n/a"
    broken = _row("m", Run("m", 0, {"score": 0.8}), Run("m", 1, error="ValueError: x"),
                  Run("m", 2, {"score": None}))  # fmt: skip
    assert format_stat(broken.stat("score")) == "0.800 ± n/a (1 of 3)"
    assert broken.notes({"score": "score"}) == [
        "m: 2 of 3 seeds finished; seed 1 failed: ValueError: x",
        "m: seed 2 gave no score (NaN).",
    ]
    # A deterministic method: one run, no spread; a metric it does not report is "-".
    bicubic = _row("bicubic", Run("bicubic", None, {"psnr": 25.0}), seeded=False)
    assert format_stat(bicubic.stat("psnr"), ".2f") == "25.00"
    assert format_stat(bicubic.stat("train_speed")) == "-"
    # Every run failed: n/a, not "-".
    assert format_stat(_row("m", Run("m", 0, error="boom")).stat("score")) == "n/a"


def test_paired_differences_speed_ratios_and_the_losing_sentence() -> None:
    ours = _row("ours", *(Run("ours", s, {"f1": v, "speed": 10.0}) for s, v in
                          enumerate([0.8, 0.7, 0.9])))  # fmt: skip
    peer = Row("peer", "timm", True, [Run("peer", 0, {"f1": 0.75, "speed": 40.0}),
                                      Run("peer", 1, {"f1": 0.5, "speed": 40.0}),
                                      Run("peer", 2, error="boom")])  # fmt: skip
    diff = paired(ours, peer, "f1", 100)
    assert diff.values == pytest.approx((5.0, 20.0))
    assert format_stat(diff, "+.1f") == "+12.5 ± 10.6 (2 of 3)"
    assert speed_ratio(ours, peer, "speed") == (0.25, "")
    # A reused run keeps its accuracy, but its speed is not of this invocation.
    reused = _row("ours", Run("ours", 0, {"f1": 0.8, "speed": None}, reused=True, stale=["speed"]))
    ratio, why = speed_ratio(reused, peer, "speed")
    assert ratio is None and "--reuse" in why
    assert format_stat(reused.stat("speed")) == "n/a"
    columns = [Column("F1", "f1", better="higher"),
               Column("img/s", "speed", ".0f", better="higher")]  # fmt: skip
    assert losses([ours, peer], "ours", columns) == (
        "Where ours loses in this run (by mean over seeds): to peer on img/s (40 vs 10)."
    )
    assert losses([ours], "ours", columns) == (
        "ours is not beaten on any compared column in this run (by mean over seeds)."
    )


def test_child_output_is_json_numbers_and_one_line_errors() -> None:
    metrics = {"a": 1, "b": math.nan, "c": math.inf, "d": True, "e": "x", "f": np.float32(0.5)}
    assert jsonable_metrics(metrics) == {"a": 1.0, "b": None, "c": None, "d": None, "e": None,
                                         "f": 0.5}  # fmt: skip
    assert one_line(ValueError("first\nsecond")) == "ValueError: first"
    assert one_line(SystemExit(2)) == "SystemExit: 2"


def _main(bench: ProductBench, argv: list[str]) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog=bench.prog)
    add_arguments(parser, bench, "unused")

    def prepare(args, work):  # noqa: ANN001, ANN202
        return (lambda variant, seed: {"budget": 3}), {}

    def build(rows, facts, command):  # noqa: ANN001, ANN202
        return product_report(bench, rows, facts, command, method="Fake.", fact_lines={})

    out = io.StringIO()
    code = bench_main(bench, parser, argv, prepare, build, Console(file=out, width=300))
    return code, out.getvalue()


def test_harness_reports_failed_crashed_and_nan_seeds_and_goes_on(fake_child: Path) -> None:
    bench, work, out = _bench(**VARIANTS), fake_child / "work", fake_child / "out"
    code, console = _main(bench, ["--work-dir", str(work), "--out-dir", str(out), "--jobs", "2"])
    assert code == 1  # a child failed: the exit status says so, the report is still written
    markdown = (out / "fake.md").read_text()
    assert "- Reproduce: `fake bench --work-dir " in markdown and "--jobs 2`" in markdown
    assert "| ours (ours) | 0.700 ± 0.100 | 10.0 ± 0.0 |" in markdown
    assert "| simple | 0.850 ± 0.071 (2 of 3) | 20.0 ± 0.0 (2 of 3) |" in markdown
    assert "| flaky | 0.500 ± n/a (1 of 3) | 5.0 ± 0.0 (2 of 3) |" in markdown
    log = work.resolve() / "runs"
    assert (f"- simple: 2 of 3 seeds finished; seed 1 failed: ValueError: disk on fire "
            f"(log: {log / 'simple-seed1' / 'bench.log'})") in markdown  # fmt: skip
    assert (f"- flaky: 2 of 3 seeds finished; seed 2 failed: exit 3: fatal: the child died "
            f"(log: {log / 'flaky-seed2' / 'bench.log'})") in markdown  # fmt: skip
    assert "- flaky: seed 0 gave no score (NaN)." in markdown
    assert ("Where ours loses in this run (by mean over seeds): to simple on score (0.850 vs "
            "0.700); to simple on speed/s (20.0 vs 10.0).") in markdown  # fmt: skip
    assert "- Simple baseline: simple" in markdown
    # Every run was a process of its own, given the harness's job and the vertical's fields.
    data = json.loads((out / "fake.json").read_text())
    runs = [run for row in data["rows"] for run in row["runs"]]
    pids = {run["info"]["pid"] for run in runs if run["error"] is None}
    assert len(pids) == 7 and os.getpid() not in pids  # 9 runs, 2 failed
    job = json.loads((log / "ours-seed2" / "job.json").read_text())
    assert (job["entry"], job["variant"], job["seed"], job["budget"]) == (
        "fake_bench_child:run", "ours", 2, 3)
    score = data["rows"][0]["stats"]["score"]
    assert score == {"mean": pytest.approx(0.7), "std": pytest.approx(0.1), "n": 3, "total": 3}
    assert data["facts"]["failed_runs"] == 2
    assert "simple seed 1: FAILED: ValueError: disk on fire" in console
    # --render rewrites the same table from the JSON alone.
    render = ["--render", str(out / "fake.json"), "--out-dir", str(fake_child / "again")]
    assert _main(bench, render)[0] == 0
    again = (fake_child / "again" / "fake.md").read_text()
    table = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert table == [line for line in again.splitlines() if line.startswith("| ")]


def test_reuse_keeps_accuracy_never_speed(fake_child: Path) -> None:
    bench, work = _bench(ours=VARIANTS["ours"], simple=VARIANTS["simple"]), fake_child / "w"
    first = run_rows(bench, ["ours"], [0, 1], lambda v, s: {}, work)
    again = run_rows(bench, ["ours", "simple"], [0, 1], lambda v, s: {}, work, reuse=True)
    ours, simple = again
    assert [run.reused for run in ours.runs] == [True, True]
    assert [run.reused for run in simple.runs] == [False, False]  # not run before
    assert format_stat(ours.stat("score")) == format_stat(first[0].stat("score")) == "0.700 ± 0.141"
    assert format_stat(ours.stat("speed")) == "n/a"
    ratio, why = speed_ratio(simple, ours, "speed")
    assert ratio is None and "ours's speed was not measured in this invocation (kept from" in why
    report = product_report(bench, again, {"seeds": [0, 1], "reused_runs": 2}, "fake bench",
                            method="", fact_lines={})  # fmt: skip
    markdown = render_markdown(report)
    assert ("- ours: seed 0, seed 1 kept from an earlier invocation of the same job (--reuse): "
            "accuracy kept, speeds n/a (not measured in this invocation).") in markdown  # fmt: skip
    assert "2 run(s) kept from an earlier invocation (--reuse): their speeds are n/a" in markdown
    # A changed job is never reused.
    changed = Variant("ours", OURS, {"scores": {"0": 0.1, "1": 0.3}, "speed": 1})
    (row,) = run_rows(_bench(ours=changed), ["ours"], [0, 1], lambda v, s: {}, work, reuse=True)
    assert not any(run.reused for run in row.runs) and row.stat("score").mean == pytest.approx(0.2)


def test_quick_refuses_docs_and_render_refuses_old_reports(
    fake_child: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _main(_bench(**VARIANTS), ["--quick", "--out-dir", "docs/benchmarks"])
    assert exit_info.value.code == 2
    assert "--quick numbers never go under docs/" in capsys.readouterr().err
    old = fake_child / "old.json"
    old.write_text(json.dumps({"results": [], "facts": {}}))
    with pytest.raises(SystemExit) as exit_info:
        _main(_bench(**VARIANTS), ["--render", str(old)])
    assert exit_info.value.code == 2
    assert f"--render {old}: no 'rows'" in capsys.readouterr().err


def test_machine_load_is_busy_cpu_minus_the_whole_process_tree() -> None:
    # Golden arithmetic: 10 busy seconds on the machine, 6 of them this tree's, over 2 s.
    readings = iter([(100.0, 10.0), (110.0, 16.0)])
    assert MachineLoad(lambda: next(readings)).other_cores(wall=2.0) == pytest.approx(2.0)
    readings = iter([(None, 0.0), (None, 1.0)])  # no /proc/stat: unknown, never a guess
    assert MachineLoad(lambda: next(readings)).other_cores(wall=1.0) is None


def _cpu_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads Linux /proc")
def test_a_busy_child_counts_as_the_bench_not_as_other_load() -> None:
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        # The machine as if only this process and its busy child ran: each read from its own
        # /proc entry, independently of the tree walk under test.
        load = MachineLoad(lambda: (sum(os.times()[:2]) + _cpu_of(busy.pid), tree_cpu_seconds()))
        start = _cpu_of(busy.pid)
        deadline = time.monotonic() + 60
        while _cpu_of(busy.pid) - start < 0.5 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _cpu_of(busy.pid) - start >= 0.5
        # The old accounting (this process only) called those 0.5 s other load; the tree does not.
        assert load.other_cores(wall=1.0) == pytest.approx(0.0, abs=0.03)
        before = tree_cpu_seconds() - sum(os.times()[:2])
    finally:
        busy.kill()
        busy.wait()
    # Once reaped, the child is in this process's cutime/cstime: still the bench's own CPU.
    child = os.times().children_user + os.times().children_system
    after = tree_cpu_seconds() - sum(os.times()[:2])
    assert after >= before - 0.02 and child >= 0.5
