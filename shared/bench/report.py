"""One report writer for every benchmark: ``<name>.md``, ``<name>.json``, ``<name>.png`` and a
rich summary on the console.

A benchmark describes its results as a :class:`Report` (sections of text and tables, the raw
numbers for the JSON, a function that draws the figure); :func:`write_report` adds what every
report needs (date, the command that reproduces it, the machine, load warnings) and writes the
three files atomically. :class:`BenchResult` is the one result type the benchmarks share.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import platform
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from ..engine.io import atomic_write_bytes, atomic_write_text

__all__ = [
    "OURS",
    "BenchResult",
    "Report",
    "Section",
    "Table",
    "command_line",
    "machine_info",
    "render_markdown",
    "write_report",
]

OURS = "ours"
"""``BenchResult.family`` of our own models (shown in bold, labelled "(ours)")."""

_VERSIONS = ("torch", "timm", "monai", "lightning")


@dataclass
class BenchResult:
    """One model's numbers from one benchmark run, the same type in every vertical's bench.

    ``metrics`` holds measured numbers by name, unit in the name (``train_per_s``,
    ``infer_s_per_volume``, ``dice_mean``); ``info`` holds the rest (per-class scores, notes,
    raw step times). ``error`` is set, and the numbers left empty, when the model failed.
    """

    name: str
    family: str
    dims: int
    input_shape: list[int]
    threads: int
    params: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def label(self) -> str:
        """The name as tables show it: ours are marked ``(ours)``."""
        return f"{self.name} (ours)" if self.family == OURS else self.name


@dataclass
class Table:
    """A table as text cells; ``bold`` marks rows (our models) to emphasise."""

    columns: list[str]
    rows: list[list[str]]
    bold: list[bool] = field(default_factory=list)
    text_columns: int = 1
    """How many leading columns hold text (left-aligned); the others are numbers."""


@dataclass
class Section:
    """A heading, Markdown lines before the table, the table, and lines after it."""

    heading: str
    text: list[str] = field(default_factory=list)
    table: Table | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class Report:
    """Everything one benchmark run reports; :func:`write_report` turns it into files."""

    name: str
    """File stem: ``backbone`` writes ``backbone.md``, ``backbone.json``, ``backbone.png``."""
    title: str
    command: str
    sections: list[Section]
    data: dict[str, Any]
    """Raw numbers for the JSON (dataclasses such as BenchResult are converted)."""
    plot: Callable[[Any], None]
    """Draws the PNG onto the matplotlib ``Figure`` it is given."""
    facts: dict[str, str] = field(default_factory=dict)
    method: str = ""
    warnings: list[str] = field(default_factory=list)
    machine: dict[str, Any] = field(default_factory=lambda: machine_info())
    date: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))


def command_line(prog: str, argv: Sequence[str]) -> str:
    """The shell command that reproduces a run: ``prog`` and the quoted arguments."""
    return " ".join([prog, *(shlex.quote(arg) for arg in argv)])


def _cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (``platform.processor()`` is often empty on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine_info() -> dict[str, Any]:
    """CPU, GPU, thread count and library versions of this machine, for every report."""
    versions = {}
    for package in _VERSIONS:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        **versions,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _machine_line(machine: dict[str, Any]) -> str:
    gpu = f"GPU {machine['gpu']}" if machine.get("gpu") else "no GPU"
    libraries = ", ".join(f"{p} {machine[p]}" for p in _VERSIONS if machine.get(p))
    return (
        f"{machine['cpu']}, {machine['cpu_count']} CPUs, {machine['torch_threads']} torch "
        f"threads by default, {gpu}; {libraries}, Python {machine['python']}"
    )


def _markdown_table(table: Table) -> str:
    align = ["---"] * table.text_columns + ["---:"] * (len(table.columns) - table.text_columns)
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in table.rows]
    return "\n".join(lines)


def render_markdown(report: Report) -> str:
    """The ``<name>.md`` text: header facts, method, then every section."""
    parts = [
        f"# {report.title}",
        "",
        f"- Date: {report.date}",
        f"- Reproduce: `{report.command}` (from the repository root)",
        f"- Machine: {_machine_line(report.machine)}",
        *[f"- {key}: {value}" for key, value in report.facts.items()],
        *[f"- **Warning**: {warning}" for warning in report.warnings],
        "",
    ]
    if report.method:
        parts += [report.method, ""]
    for section in report.sections:
        parts += [f"## {section.heading}", ""]
        if section.text:
            parts += [*section.text, ""]
        if section.table is not None:
            parts += [_markdown_table(section.table), ""]
        if section.notes:
            parts += [*section.notes, ""]
    return "\n".join(parts).rstrip("\n") + "\n"


def _jsonable(value: Any) -> Any:
    """``json.dumps`` hook: dataclasses as dicts, paths as strings; anything else is a bug."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to the JSON report")


def render_json(report: Report) -> str:
    """The ``<name>.json`` text: the header facts and ``report.data``."""
    header = {
        "title": report.title,
        "date": report.date,
        "command": report.command,
        "machine": report.machine,
        "facts": report.facts,
        "warnings": report.warnings,
        "method": report.method,
    }
    return json.dumps({**header, **report.data}, indent=2, default=_jsonable) + "\n"


def render_png(report: Report) -> bytes:
    """The ``<name>.png`` bytes, drawn by ``report.plot``."""
    # The Agg canvas directly, not pyplot: no global backend switch in the caller's process.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.5, 4.8))
    FigureCanvasAgg(figure)
    report.plot(figure)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    return buffer.getvalue()


def _rich_table(heading: str, table: Table) -> Any:
    from rich.table import Table as RichTable

    rich_table = RichTable(title=heading)
    for index, column in enumerate(table.columns):
        text = index < table.text_columns
        rich_table.add_column(column, justify="left" if text else "right", no_wrap=index == 0)
    bold = table.bold or [False] * len(table.rows)
    for row, emphasise in zip(table.rows, bold, strict=True):
        rich_table.add_row(*row, style="bold green" if emphasise else None)
    return rich_table


def print_report(report: Report, console: Any) -> None:
    """The report on a rich console: tables as rich tables, then command and machine."""
    def plain(line: str) -> str:  # Markdown emphasis reads as noise on a terminal
        return line.replace("**", "")

    for section in report.sections:
        if section.table is None:
            console.print(section.heading, markup=False, highlight=False, style="bold")
        for line in section.text:
            console.print(plain(line), markup=False, highlight=False)
        if section.table is not None:
            console.print(_rich_table(section.heading, section.table))
        for line in section.notes:
            console.print(plain(line), markup=False, highlight=False, style="italic")
    for warning in report.warnings:
        console.print(f"Warning: {warning}", markup=False, highlight=False, style="yellow")
    console.print(f"Reproduce: {report.command}", markup=False, highlight=False, soft_wrap=True)
    console.print(f"Machine: {_machine_line(report.machine)}", markup=False, highlight=False)


def write_report(report: Report, out_dir: Path, console: Any | None = None) -> list[Path]:
    """Print ``report`` (when a rich ``console`` is given) and write its md/json/png files.

    Each file is written atomically: a reader sees the previous report or the new one.
    """
    if console is not None:
        print_report(report, console)
    out_dir = Path(out_dir)
    paths = [
        atomic_write_text(out_dir / f"{report.name}.md", render_markdown(report)),
        atomic_write_text(out_dir / f"{report.name}.json", render_json(report)),
        atomic_write_bytes(out_dir / f"{report.name}.png", render_png(report)),
    ]
    if console is not None:
        console.print(f"Results written to {out_dir}/{report.name}.{{md,json,png}}")
    return paths
