"""One harness for the verticals' product benchmarks: ``hv-med bench``, ``hv-rs bench`` and
``hv-vsr bench``.

A vertical describes its benchmark as a :class:`ProductBench`: its variants, the child function
that trains and scores one variant at one seed with the vertical's own code (``run_child(job) ->
{"metrics": {...}, "info": {...}}``), the table's columns and which numbers are speeds. This
module does the rest, once for all three:

- every (variant, seed) runs in a child process of its own (:mod:`shared.bench.child`), logged
  to ``<run>/bench.log``; a child that fails becomes a counted, named cell, never an aborted
  benchmark;
- over seeds (:mod:`shared.bench.seeds`): mean and sample standard deviation (ddof 1), "n/a" for
  one seed; a seed that failed or gave NaN is counted and named ("2 of 3"), never dropped
  silently;
- ``--reuse`` keeps the accuracy of an identical finished job from an earlier invocation, never
  its speeds: every speed and speed ratio in a report comes from runs of the same invocation;
- machine load: other processes' CPU, the machine's busy CPU minus this benchmark's whole process
  tree (:class:`~shared.bench.measure.MachineLoad`);
- one report (:func:`~shared.bench.report.write_report`): the command that reproduces it, one
  table of mean ± std with the simple baseline a user would pick beside the fancy peers, and a
  plain sentence saying where our model loses.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..engine.io import atomic_write_json
from .child import ERROR_CHARS
from .measure import MachineLoad
from .report import OURS, Report, Section, Table, command_line, write_report
from .seeds import Row, Run, finite, format_stat

__all__ = [
    "Column",
    "ProductBench",
    "Variant",
    "add_arguments",
    "bench_main",
    "load_rows",
    "losses",
    "product_report",
    "run_rows",
]

_CHILD = Path(__file__).with_name("child.py")
"""The child process's script (started by path: see :mod:`shared.bench.child`)."""


@dataclass
class Variant:
    """One row of a product benchmark: a name, who made the model, the child's own options."""

    name: str
    family: str
    """:data:`~shared.bench.report.OURS` for our models, else whose (``"monai"``, ``"timm"``)."""
    options: dict[str, Any] = field(default_factory=dict)
    """JSON settings the vertical's child reads (``--model.arch``, flags, precision)."""
    seeded: bool = True
    """False: one run without a seed (a deterministic method such as bicubic)."""
    reusable: bool = True
    """False: ``--reuse`` never keeps it (cheap rows that only measure speed)."""


@dataclass
class Column:
    """One table column: a metric's mean ± std over seeds, or a cell the vertical writes."""

    label: str
    key: str = ""
    """The metric (a key of the children's ``metrics``) shown as mean ± std."""
    fmt: str = ".3f"
    scale: float = 1.0
    spread: bool = True
    """False: the mean only (a number that does not vary by seed, such as parameters)."""
    better: str = ""
    """``"higher"`` or ``"lower"``: the column counts in the where-we-lose sentence."""
    cell: Callable[[Row], str] | None = None
    """A cell of the vertical's own instead of a metric (text such as per-class scores)."""
    plot: bool = False
    """Drawn in the report's figure (at most two columns: accuracy, then speed)."""


@dataclass
class ProductBench:
    """What a vertical's ``bench`` is: everything else is generic and lives here."""

    name: str
    """File stem of the report: ``medical`` writes ``medical.{md,json,png}``."""
    title: str
    prog: str
    """The command, ``hv-med bench``: the report's reproduce line starts with it."""
    child: str
    """``module:function`` that trains and scores one job in the child process."""
    variants: dict[str, Variant]
    ours: str
    """Our headline variant: the where-we-lose sentence is about it."""
    baseline: str
    """The simple baseline a user would pick first."""
    columns: list[Column]
    speed_keys: frozenset[str] = frozenset()
    """Metrics that are speeds or times: measured in this invocation or n/a."""
    threads: int = 1
    """torch / OpenMP threads of each child."""
    quick: dict[str, Any] = field(default_factory=dict)
    """Argument defaults under ``--quick`` (flags given on the command line still win)."""


def losses(rows: Sequence[Row], ours: str, columns: Sequence[Column]) -> str:
    """The plain sentence saying which rows beat ``ours`` on which column (by mean)."""
    mine = next((row for row in rows if row.name == ours), None)
    if mine is None:
        return ""
    beaten = []
    for column in columns:
        if not column.better or mine.stat(column.key).n == 0:
            continue
        own = mine.stat(column.key).mean
        for row in rows:
            theirs = row.stat(column.key)
            if row is mine or theirs.n == 0:
                continue
            higher = theirs.mean > own
            if theirs.mean != own and higher == (column.better == "higher"):
                numbers = (format(x * column.scale, column.fmt) for x in (theirs.mean, own))
                beaten.append(f"{row.name} on {column.label} ({' vs '.join(numbers)})")
    if not beaten:
        return f"{ours} is not beaten on any compared column in this run (by mean over seeds)."
    return f"Where {ours} loses in this run (by mean over seeds): to " + "; to ".join(beaten) + "."


# --------------------------------------------------------------------------------------------
# Running the children
# --------------------------------------------------------------------------------------------


def _failure(run_dir: Path, code: int) -> str:
    """One line: the child's own error, else its exit status and the log's last line."""
    error_file, log = run_dir / "error.json", run_dir / "bench.log"
    if error_file.is_file():
        message = json.loads(error_file.read_text())["error"]
    else:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
        message = f"exit {code}" + (f": {lines[-1].strip()}" if lines else "")
    return f"{message[:ERROR_CHARS]} (log: {log})"


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text).strip("-")


def _spawn(bench: ProductBench, variant: Variant, job: dict[str, Any], reuse: bool) -> Run:
    """Run one job in a child process (or keep an identical finished one under ``reuse``)."""
    run_dir = Path(job["run_dir"])
    job_file, result_file = run_dir / "job.json", run_dir / "result.json"
    seed = job["seed"]
    if reuse and variant.reusable and result_file.is_file() and job_file.is_file():
        if json.loads(job_file.read_text()) == json.loads(json.dumps(job)):
            result = json.loads(result_file.read_text())
            stale = sorted(bench.speed_keys & set(result["metrics"]))
            metrics = {k: (None if k in stale else v) for k, v in result["metrics"].items()}
            return Run(variant.name, seed, metrics, result["info"], reused=True, stale=stale,
                       run_dir=str(run_dir))  # fmt: skip
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    atomic_write_json(job_file, job)
    threads = str(bench.threads)
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    started = time.perf_counter()
    with (run_dir / "bench.log").open("w") as log:
        code = subprocess.call([sys.executable, str(_CHILD), str(job_file)], stdout=log,
                               stderr=subprocess.STDOUT, env=env)  # fmt: skip
    wall = time.perf_counter() - started
    if code == 0 and result_file.is_file():
        result = json.loads(result_file.read_text())
        return Run(variant.name, seed, result["metrics"], result["info"], wall_seconds=wall,
                   run_dir=str(run_dir))  # fmt: skip
    return Run(variant.name, seed, error=_failure(run_dir, code), wall_seconds=wall,
               run_dir=str(run_dir))  # fmt: skip


def run_rows(
    bench: ProductBench,
    names: Sequence[str],
    seeds: Sequence[int],
    job_for: Callable[[Variant, int | None], dict[str, Any]],
    work: Path,
    *,
    reuse: bool = False,
    jobs: int = 1,
    console: Any | None = None,
    variant_seeds: dict[str, list[int]] | None = None,
) -> list[Row]:
    """Every variant in ``names`` at every seed, each in its own child process; one row each.

    ``job_for(variant, seed)`` gives the vertical's job fields (data, budget); the harness adds
    the entry point, variant, options, seed and run folder (``work/runs/<variant>-seed<n>``).
    ``jobs`` children run at a time; ``variant_seeds`` gives a row other seeds than ``seeds``
    (a slow peer). A failed child is recorded and the others go on.
    """
    plan = []
    for name in names:
        variant = bench.variants[name]
        own = (variant_seeds or {}).get(name, seeds)
        for seed in own if variant.seeded else [None]:
            folder = f"{_slug(name)}-{'once' if seed is None else f'seed{seed}'}"
            job = {"entry": bench.child, "variant": name, "options": variant.options,
                   "seed": seed, "run_dir": str(Path(work).resolve() / "runs" / folder),
                   **job_for(variant, seed)}  # fmt: skip
            plan.append((variant, job))
    headline = next((c for c in bench.columns if c.key and c.better), None)

    def one(item: tuple[Variant, dict[str, Any]]) -> Run:
        run = _spawn(bench, item[0], item[1], reuse)
        if console is not None:
            if run.error:
                outcome = f"FAILED: {run.error}"
            elif headline is not None and finite(run.metrics.get(headline.key)):
                outcome = f"{headline.label} {format(run.metrics[headline.key], headline.fmt)}"
            else:
                outcome = "done"
            how = "reused" if run.reused else f"{run.wall_seconds:.0f} s"
            console.print(f"{run.variant} {run.label}: {outcome} ({how})", markup=False,
                          highlight=False)  # fmt: skip
        return run

    with ThreadPoolExecutor(max(1, jobs)) as pool:
        runs = list(pool.map(one, plan))
    return [
        Row(name, bench.variants[name].family, bench.variants[name].seeded,
            [run for run in runs if run.variant == name])
        for name in names
    ]  # fmt: skip


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def _cell(row: Row, column: Column) -> str:
    if column.cell is not None:
        return column.cell(row)
    return format_stat(row.stat(column.key), column.fmt, column.scale, column.spread)


def _plot(figure: Any, rows: Sequence[Row], columns: Sequence[Column]) -> None:
    """The plotted columns (mean ± std over seeds) as horizontal bars, ours in red."""
    shown = [c for c in columns if c.plot][:2] or [next(c for c in columns if c.key)]
    figure.set_size_inches(5 * len(shown), 0.5 * len(rows) + 2)
    names = [row.label for row in rows]
    colours = ["tab:red" if row.family == OURS else "tab:gray" for row in rows]
    for index, column in enumerate(shown):
        axes = figure.add_subplot(1, len(shown), index + 1)
        stats = [row.stat(column.key) for row in rows]
        means = [0.0 if s.n == 0 else s.mean * column.scale for s in stats]
        errors = [0.0 if math.isnan(s.std) else s.std * column.scale for s in stats]
        axes.barh(names, means, xerr=errors, color=colours)
        axes.set_xlabel(column.label + (" (mean ± std)" if column.spread else ""))
        if index:
            axes.set_yticklabels([])


def _row_dict(row: Row, columns: Sequence[Column]) -> dict[str, Any]:
    """A row for the JSON: its runs, and the statistics of every metric column."""
    def number(value: float) -> float | None:
        return None if math.isnan(value) else value

    stats = {}
    for key in dict.fromkeys(c.key for c in columns if c.key):
        stat = row.stat(key)
        stats[key] = {"mean": number(stat.mean), "std": number(stat.std), "n": stat.n,
                      "total": stat.total}  # fmt: skip
    return {**dataclasses.asdict(row), "stats": stats}


def product_report(
    bench: ProductBench,
    rows: Sequence[Row],
    facts: dict[str, Any],
    command: str,
    *,
    method: str,
    fact_lines: dict[str, str],
    sections: Sequence[Section] = (),
    goals: Sequence[str] = (),
) -> Report:
    """The report every product bench writes: facts (the harness's and the vertical's), the
    main table with its notes, the simple baseline, where we lose, goals, then ``sections``."""
    text = 0  # leading columns of text (left-aligned) after the model's name
    while text < len(bench.columns) and bench.columns[text].cell is not None:
        text += 1
    table = Table(
        ["model", *(c.label for c in bench.columns)],
        [[row.label, *(_cell(row, c) for c in bench.columns)] for row in rows],
        bold=[row.family == OURS for row in rows],
        text_columns=1 + text,
    )
    labels = {c.key: c.label for c in bench.columns if c.key}
    notes = [line for row in rows for line in row.notes(labels)]
    verdict = losses(rows, bench.ours, bench.columns)
    others = facts.get("other_cores_busy")
    load = "unknown" if others is None else f"{others:.2f}"
    reused = facts.get("reused_runs", 0)
    generic = {
        "Simple baseline": f"{bench.baseline}: what a user would try first, beside the other "
        "peers",
        "Seeds": f"{facts['seeds']}; mean ± sample std (ddof 1) over seeds, '± n/a' with one "
        "seed, '(2 of 3)' when runs failed or gave NaN (named under the table)",
        "Load": f"other processes kept {load} CPUs busy on average (machine busy CPU minus this "
        "bench's whole process tree); absolute speeds on a shared machine are noisy"
        + (f"; {reused} run(s) kept from an earlier invocation (--reuse): their speeds are n/a"
           if reused else ""),  # fmt: skip
        "Wall time": f"{facts.get('wall_seconds', 0) / 60:.1f} min for the whole bench",
    }
    body = [
        Section(
            "Same data, same budget, the product's code path; mean ± std over seeds",
            table=table,
            notes=[*(f"- {line}" for line in notes), *([verdict] if verdict else [])],
        )
    ]
    if goals:
        body.append(Section("Goals", notes=[f"- {line}" for line in goals]))
    threads = bench.threads * max(1, int(facts.get("jobs", 1)))
    return Report(
        name=bench.name,
        title=bench.title,
        command=command,
        sections=[*body, *sections],
        data={"facts": facts, "rows": [_row_dict(row, bench.columns) for row in rows]},
        plot=lambda figure: _plot(figure, rows, bench.columns),
        facts={**fact_lines, **generic},
        method=method,
        warnings=MachineLoad.warnings(others, threads),
    )


def load_rows(data: dict[str, Any]) -> list[Row]:
    """The rows of a report's JSON (for ``--render``)."""
    return [
        Row(r["name"], r["family"], r["seeded"], [Run(**run) for run in r["runs"]])
        for r in data["rows"]
    ]


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser, bench: ProductBench, work_dir: str) -> None:
    """The flags every product bench has: models, seeds, output, reuse, render, jobs, quick."""
    names = list(bench.variants)
    add = parser.add_argument
    add("--models", nargs="+", choices=names, default=names)
    add("--seeds", type=int, nargs="+", default=[0, 1, 2])
    add("--jobs", type=int, default=1, help=f"children at a time ({bench.threads} thread(s) each)")
    add("--work-dir", type=Path, default=Path(work_dir))
    add("--out-dir", type=Path, help="default docs/benchmarks (--quick: WORK_DIR/quick)")
    add("--reuse", action="store_true",
        help="keep the accuracy of finished identical jobs in --work-dir (an interrupted run); "
        "their speeds are n/a, never mixed in")  # fmt: skip
    add("--render", type=Path, help=f"rewrite the report from {bench.name}.json (no training)")
    add("--quick", action="store_true",
        help="smoke run in minutes, written under WORK_DIR/quick; defaults: "
        + ", ".join(f"{k} {v}" for k, v in bench.quick.items()))  # fmt: skip


def bench_main(
    bench: ProductBench,
    parser: argparse.ArgumentParser,
    argv: Sequence[str],
    prepare: Callable[[argparse.Namespace, Path], tuple[Callable[..., dict], dict[str, Any]]],
    build_report: Callable[[list[Row], dict[str, Any], str], Report],
    console: Any | None = None,
) -> int:
    """A vertical's ``bench`` command: parse, run every row, write the report.

    ``prepare(args, work)`` makes the data and returns ``job_for(variant, seed)`` and the facts
    so far (``facts["variant_seeds"]``, when there, gives rows their own seeds);
    ``build_report(rows, facts, command)`` is the vertical's report (it calls
    :func:`product_report`). Returns 1 when a child failed (the report is written anyway).
    """
    from rich.console import Console

    argv = list(argv)
    console = console or Console()
    if "--quick" in argv:
        parser.set_defaults(**bench.quick)  # defaults only: flags given with --quick still win
    args = parser.parse_args(argv)
    if args.render is not None:
        data = json.loads(args.render.read_text())
        if "rows" not in data:
            parser.error(f"--render {args.render}: no 'rows' (a report written before the "
                         "shared product harness cannot be re-rendered)")  # fmt: skip
        report = build_report(load_rows(data), data["facts"], data["command"])
        report.date, report.machine = data["date"], data["machine"]
        write_report(report, args.out_dir or args.render.parent, console)
        return 0
    out_dir = args.out_dir or (args.work_dir / "quick" if args.quick else Path("docs/benchmarks"))
    if args.quick and out_dir.resolve().is_relative_to(Path("docs").resolve()):
        parser.error(f"--out-dir {out_dir}: --quick numbers never go under docs/")
    started, load = time.perf_counter(), MachineLoad()
    job_for, facts = prepare(args, args.work_dir)
    rows = run_rows(
        bench, args.models, args.seeds, job_for, args.work_dir, reuse=args.reuse, jobs=args.jobs,
        console=console, variant_seeds=facts.get("variant_seeds"),
    )  # fmt: skip
    facts.update(
        seeds=list(args.seeds),
        jobs=args.jobs,
        other_cores_busy=load.other_cores(),
        reused_runs=sum(run.reused for row in rows for run in row.runs),
        failed_runs=sum(run.error is not None for row in rows for run in row.runs),
        wall_seconds=round(time.perf_counter() - started, 1),
    )
    # --reuse changes no number it keeps (identical jobs only): the command shown is the rerun.
    command = command_line(bench.prog, [a for a in argv if a != "--reuse"])
    write_report(build_report(rows, facts, command), out_dir, console)
    return 1 if facts["failed_runs"] else 0
