"""The backbone benchmark's headline, computed from measurements taken in the same run.

Two kinds of ratio: every 2D preset against ``REFERENCE_CNN`` (resnet18, the CNN a user compares
against) at each thread count measured, in plain words even where ours is slower; and the
targets, ``HEADLINE_MODEL`` against ``HEADLINE_BASELINES`` with a PASS/MISS verdict.
"""

from __future__ import annotations

from typing import Any

from .measure import ALL_CORES
from .registry import HEADLINE_BASELINES, HEADLINE_MODEL, HEADLINE_TRAIN_TARGET, REFERENCE_CNN
from .report import OURS, BenchResult

__all__ = [
    "headline_ratios",
    "reference_ratios",
    "reference_sentence",
    "target_line",
    "threads_text",
]


def _find(results: list[BenchResult], name: str, dims: int, threads: int) -> BenchResult | None:
    for result in results:
        if (result.name, result.dims, result.threads) == (name, dims, threads) and not result.error:
            return result
    return None


def headline_ratios(results: list[BenchResult], threads: int = 1) -> list[dict[str, Any]]:
    """The targets: ``HEADLINE_MODEL`` against each headline baseline measured at ``threads``.

    PASS when it trains at least ``HEADLINE_TRAIN_TARGET`` times as fast with no more
    parameters. Baselines that were not measured are left out.
    """
    ours = _find(results, HEADLINE_MODEL, 2, threads)
    ratios: list[dict[str, Any]] = []
    for baseline_name in HEADLINE_BASELINES if ours else ():
        baseline = _find(results, baseline_name, 2, threads)
        if baseline is None:
            continue
        train = ours.metrics["train_per_s"] / baseline.metrics["train_per_s"]
        params = ours.params / baseline.params
        passed = train >= HEADLINE_TRAIN_TARGET and params <= 1.0
        ratios.append(
            {
                "model": HEADLINE_MODEL,
                "baseline": baseline_name,
                "threads": threads,
                "train_ratio": train,
                "infer_ratio": ours.metrics["infer_per_s"] / baseline.metrics["infer_per_s"],
                "param_ratio": params,
                "verdict": "PASS" if passed else "MISS",
            }
        )
    return ratios


def target_line(ratio: dict[str, Any]) -> str:
    """One line for a :func:`headline_ratios` row: verdict, train, params and inference."""
    return (
        f"{ratio['verdict']}: {ratio['model']} / {ratio['baseline']}: "
        f"train {ratio['train_ratio']:.2f}x (want >= {HEADLINE_TRAIN_TARGET}), "
        f"params {ratio['param_ratio']:.2f}x (want <= 1), inference {ratio['infer_ratio']:.2f}x"
    )


def reference_ratios(results: list[BenchResult]) -> list[dict[str, Any]]:
    """Each of our 2D models against ``REFERENCE_CNN`` measured at the same thread count."""
    rows = []
    for ours in results:
        if ours.family != OURS or ours.dims != 2 or ours.error:
            continue
        reference = _find(results, REFERENCE_CNN, 2, ours.threads)
        if reference is None:
            continue
        rows.append(
            {
                "model": ours.name,
                "reference": REFERENCE_CNN,
                "threads": ours.threads,
                "train_ratio": ours.metrics["train_per_s"] / reference.metrics["train_per_s"],
                "infer_ratio": ours.metrics["infer_per_s"] / reference.metrics["infer_per_s"],
                "param_ratio": ours.params / reference.params,
            }
        )
    return sorted(rows, key=lambda row: row["threads"])


def threads_text(threads: int, all_cores: int = ALL_CORES) -> str:
    """``1 thread``, ``4 threads``, or ``4 threads (all cores)``."""
    text = f"{threads} thread{'s' if threads != 1 else ''}"
    return f"{text} (all cores)" if threads == all_cores and threads > 1 else text


def _speed_word(ratio: float) -> str:
    shown = round(ratio, 2)  # the word agrees with the printed number
    return "slower" if shown < 1 else "faster" if shown > 1 else "the same speed"


def reference_sentence(row: dict[str, Any], all_cores: int = ALL_CORES) -> str:
    """Plain words for one :func:`reference_ratios` row, as true when ours is slower."""
    train, infer = row["train_ratio"], row["infer_ratio"]
    return (
        f"{row['model']} trains at {train:.2f}x {row['reference']}'s speed "
        f"({_speed_word(train)}) and infers at {infer:.2f}x ({_speed_word(infer)}), "
        f"{threads_text(row['threads'], all_cores)}; {row['param_ratio']:.2f}x its parameters"
    )
