"""Numbers over seeds, one convention for every product benchmark.

A :class:`Run` is what one child measured (or the one line saying why it failed); a :class:`Row`
is a variant's runs; :meth:`Row.stat` gives a :class:`Stat` per metric: mean and sample standard
deviation (ddof 1, none with one value), with failed runs and NaN values counted against it, so
a cell reads ``0.81 ± 0.02 (2 of 3)`` and never hides a missing seed. Speeds of runs kept from
an earlier invocation (``Run.stale``) are left out, so ratios only use runs of one invocation.
"""

from __future__ import annotations

import math
import numbers
import statistics
from dataclasses import dataclass, field
from typing import Any

from .report import OURS

__all__ = ["Row", "Run", "Stat", "finite", "format_stat", "paired", "speed_ratio"]


@dataclass
class Run:
    """One child's outcome: the numbers it measured, or the one line saying why it failed."""

    variant: str
    seed: int | None
    metrics: dict[str, float | None] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    reused: bool = False
    """Kept from an earlier invocation of the identical job (``--reuse``)."""
    stale: list[str] = field(default_factory=list)
    """Speed metrics of a reused run: not measured in this invocation, so left out."""
    wall_seconds: float = 0.0
    run_dir: str = ""

    @property
    def label(self) -> str:
        """``seed 2``, or ``the run`` for an unseeded variant."""
        return "the run" if self.seed is None else f"seed {self.seed}"


@dataclass(frozen=True)
class Stat:
    """A metric over a row's runs: the finite values, and how many runs it should have had."""

    values: tuple[float, ...]
    total: int
    """Runs the metric applies to (failed runs included); 0: the metric is not this row's."""
    seeded: bool = True

    @property
    def n(self) -> int:
        """Runs that gave a value."""
        return len(self.values)

    @property
    def mean(self) -> float:
        """Mean of the values (NaN without any)."""
        return statistics.fmean(self.values) if self.values else math.nan

    @property
    def std(self) -> float:
        """Sample standard deviation (ddof 1); NaN with fewer than two values."""
        return statistics.stdev(self.values) if self.n > 1 else math.nan


def finite(value: Any) -> bool:
    """A real, finite number (not NaN, not None, not a bool)."""
    real = isinstance(value, numbers.Real) and not isinstance(value, bool)
    return real and math.isfinite(value)


@dataclass
class Row:
    """A variant's runs over its seeds, as one table row."""

    name: str
    family: str
    seeded: bool
    runs: list[Run]

    @property
    def label(self) -> str:
        """The name as tables show it: ours are marked ``(ours)``."""
        return f"{self.name} (ours)" if self.family == OURS else self.name

    @property
    def ok(self) -> list[Run]:
        """The runs that finished."""
        return [run for run in self.runs if run.error is None]

    def stat(self, key: str) -> Stat:
        """``key`` over the runs: failed runs and NaN count against it; a key that no finished
        run reports is not the row's (``total`` 0)."""
        reported = [run for run in self.ok if key in run.metrics]
        if self.ok and not reported:  # finished runs without the metric: not this row's
            return Stat((), 0, self.seeded)
        failed = len(self.runs) - len(self.ok)
        values = tuple(float(r.metrics[key]) for r in reported if finite(r.metrics[key]))  # type: ignore[arg-type]
        return Stat(values, len(reported) + failed, self.seeded)

    def info(self, key: str, default: Any = None) -> Any:
        """``key`` of the first finished run's info (facts that do not vary by seed)."""
        return next((run.info[key] for run in self.ok if key in run.info), default)

    def notes(self, labels: dict[str, str]) -> list[str]:
        """One line per missing number: failed runs, NaN values, speeds not re-measured."""
        lines = []
        failed = [run for run in self.runs if run.error is not None]
        if failed:
            unit = "seeds" if self.seeded else "runs"
            lines.append(
                f"{self.name}: {len(self.ok)} of {len(self.runs)} {unit} finished; "
                + "; ".join(f"{run.label} failed: {run.error}" for run in failed)
            )
        for key, label in labels.items():
            for run in self.ok:
                if key in run.metrics and key not in run.stale and not finite(run.metrics[key]):
                    lines.append(f"{self.name}: {run.label} gave no {label} (NaN).")
        stale = [run.label for run in self.runs if run.stale]
        if stale:
            lines.append(
                f"{self.name}: {', '.join(stale)} kept from an earlier invocation of the same job "
                "(--reuse): accuracy kept, speeds n/a (not measured in this invocation)."
            )
        return lines


def format_stat(stat: Stat, fmt: str = ".3f", scale: float = 1.0, spread: bool = True) -> str:
    """``0.812 ± 0.013``; ``± n/a`` for one seed; ``(2 of 3)`` when runs are missing; ``n/a``
    without a value; ``-`` where the metric is not the row's."""
    if stat.total == 0:
        return "-"
    if stat.n == 0:
        return "n/a"
    text = format(stat.mean * scale, fmt)
    if spread and stat.seeded:
        unsigned = fmt.replace("+", "")  # a sign on the mean only
        text += " ± " + ("n/a" if stat.n < 2 else format(stat.std * scale, unsigned))
    if stat.n < stat.total:
        text += f" ({stat.n} of {stat.total})"
    return text


def paired(a: Row, b: Row, key: str, scale: float = 1.0) -> Stat:
    """``a - b`` of ``key`` per seed, over the seeds where both rows have a value."""
    theirs = {run.seed: run.metrics.get(key) for run in b.ok}
    diffs = tuple(
        scale * (float(run.metrics[key]) - float(theirs[run.seed]))  # type: ignore[arg-type]
        for run in a.ok
        if finite(run.metrics.get(key)) and finite(theirs.get(run.seed))
    )
    return Stat(diffs, len({r.seed for r in a.runs} & {r.seed for r in b.runs}))


def speed_ratio(a: Row, b: Row, key: str) -> tuple[float | None, str]:
    """``a``'s mean ``key`` over ``b``'s, both measured in this invocation; else None, why."""
    why = []
    for row in (a, b):
        if row.stat(key).n == 0:
            cause = ("kept from an earlier invocation (--reuse)" if any(r.stale for r in row.runs)
                     else "failed" if row.runs and not row.ok else "not measured")  # fmt: skip
            why.append(f"{row.name}'s {key} was not measured in this invocation ({cause})")
    if why:
        return None, "; ".join(why)
    return a.stat(key).mean / b.stat(key).mean, ""
