"""``hv-rs bench``: the product, measured. Each variant is trained by ``hv-rs train`` and scored
by ``hv-rs evaluate``, the same commands a user runs, for each seed.

A run is ``hv-rs train --data.root DATA --model.arch ARCH --trainer.max_steps N
--trainer.seed S ...`` (the task's loss, AdamW with warmup + cosine, the task's augmentation and
data path, best checkpoint by validation macro-F1), then ``hv-rs evaluate --checkpoint
runs/<run>/checkpoints/best.ckpt --views plain rotate d4 scale0.5 scale2`` on the test split:
macro-F1 plainly, with each chip turned by its own arbitrary angle, pooled over D4, and at 0.5x /
2x ground scale (:mod:`remote_sensing.evaluate`). For the hybrid a second ``evaluate --tta``
scores the plain and rotated views with D4 x 2-scale test-time augmentation. The seed sets the
split, the initialisation and the batch order, so all variants of one seed share one split.

Variants: our hybrid, our pure-CNN control at matched parameters, timm resnet18 (the simple
baseline a user would pick) and timm coatnet_nano adapted to the band count; ablations: the
hybrid with rotation augmentation off, and with the last-stage head only; by name only
(``--models``), the hybrid with the scale jitter before v3 (zoom-in crops only). Every run is a
process with one torch thread, so speeds compare across runs (and ``--jobs 2`` may run two at
once).
Train img/s is the whole ``fit`` (data loading and validation included) divided into its images;
inference img/s is forward passes of a batch of 64 after training. The default data is the
procedural set of :mod:`remote_sensing.synthetic`; ``--data`` takes a EuroSAT-layout folder (its
split files, when it has them, fix the split for every seed), such as the real-label Landsat set
of :mod:`remote_sensing.landsat`, whose ``dataset.json`` (source, licence, chips per class and
split) the report quotes; ``--report-name`` names the report's files.
Processes, seeds, statistics, failures, ``--reuse``, load and the report are
:mod:`shared.bench.product`'s; this file holds what is remote sensing's.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from shared.bench import (
    OURS,
    Column,
    ProductBench,
    Report,
    Row,
    Section,
    Table,
    Variant,
    add_arguments,
    bench_main,
    format_stat,
    paired,
    product_report,
)

from .data import split_files

__all__ = ["BENCH", "VIEWS", "build_report", "goals", "main", "run_child", "train_argv"]

VIEWS = ("plain", "rotate", "d4", "scale0.5", "scale2")
TTA_VIEWS = ("plain", "rotate")
VARIANTS = [
    Variant("hybrid", OURS, {"flags": ["--model.arch", "hybrid"], "tta": True}),
    Variant("cnn (matched)", OURS, {"flags": ["--model.arch", "cnn"]}),
    Variant("resnet18", "timm", {"flags": ["--model.arch", "resnet18"]}),
    Variant("coatnet_nano", "timm", {"flags": ["--model.arch", "coatnet_nano"]}),
    Variant("hybrid, no rotation aug", OURS,
            {"flags": ["--model.arch", "hybrid", "--data.rotate", "false"]}),
    Variant("hybrid, last-stage head", OURS,
            {"flags": ["--model.arch", "hybrid", "--model.multiscale_head", "false"]}),
    Variant("hybrid, zoom-in crops only", OURS,
            {"flags": ["--model.arch", "hybrid", "--data.zoom_out", "false"]}),
]  # fmt: skip
DEFAULT_MODELS = [v.name for v in VARIANTS[:6]]
"""Run unless ``--models`` says otherwise; the zoom-in-only ablation (the scale jitter before
v3) is asked for by name."""
BASELINES = ("cnn (matched)", "resnet18", "coatnet_nano")


def train_argv(job: dict[str, Any]) -> list[str]:
    """The ``hv-rs train`` command line of one job (one variant at one seed)."""
    run_dir = Path(job["run_dir"])
    return ["train", "--data.root", job["root"], "--data.chip_size", str(job["chip"]),
            *job["options"]["flags"],
            "--optim.lr", str(job["lr"]), "--trainer.seed", str(job["seed"]),
            "--trainer.max_steps", str(job["steps"]), "--trainer.max_epochs", "100000",
            "--trainer.batch_size", str(job["batch"]), "--trainer.accelerator", "cpu",
            "--trainer.progress", "false", "--run.runs_dir", str(run_dir.parent),
            "--run.name", run_dir.name, "--run.overwrite", "true"]  # fmt: skip


@torch.no_grad()
def _infer_rate(model: torch.nn.Module, channels: int, size: int, batch: int = 64) -> float:
    model.eval()
    x = torch.randn(batch, channels, size, size)
    model(x)
    started, runs = time.perf_counter(), 3
    for _ in range(runs):
        model(x)
    return runs * batch / (time.perf_counter() - started)


def _load_network(checkpoint: Path) -> Any:
    """The trained network and its preprocessing, as ``hv-rs predict`` loads them."""
    from .predict import load_predictor

    return load_predictor(checkpoint)


def run_child(job: dict[str, Any]) -> dict[str, Any]:
    """Train with ``hv-rs train``, score with ``hv-rs evaluate``; one torch thread throughout."""
    from shared.layers import count_parameters

    from .cli import main as hv_rs

    torch.set_num_threads(1)
    run_dir = Path(job["run_dir"])
    if hv_rs(train_argv(job)) != 0:
        raise RuntimeError(f"hv-rs train failed (see {run_dir / 'bench.log'})")
    summary = json.loads((run_dir / "summary.json").read_text())
    best = run_dir / (summary["best_checkpoint"] or summary["last_checkpoint"])
    metrics: dict[str, float] = {}
    for tta, views in ((False, VIEWS), (True, TTA_VIEWS)):
        if tta and not job["options"].get("tta"):
            continue
        out = run_dir / ("evaluation_tta" if tta else "evaluation")
        argv = ["evaluate", "--checkpoint", str(best), "--split", "test", "--views", *views,
                "-o", str(out), *(["--tta"] if tta else [])]  # fmt: skip
        if hv_rs(argv) != 0:
            raise RuntimeError(f"hv-rs evaluate{' --tta' if tta else ''} failed on {best}")
        # The confusion matrices stay in the run folder; the report keeps the scores.
        scores = json.loads((out / "evaluation_test.json").read_text())["scores"]
        metrics.update({f"f1_{v}{'+tta' if tta else ''}": s["macro_f1"] for v, s in scores.items()})
        if not tta:
            classes, count = list(scores["plain"]["per_class_f1"]), scores["plain"]["count"]
            # A class absent from the test split and never predicted has no F1 (None): NaN here.
            metrics.update({f"f1/{c}": math.nan if f is None else f
                            for c, f in scores["plain"]["per_class_f1"].items()})  # fmt: skip
    metrics["rotation_drop_points"] = 100 * (metrics["f1_plain"] - metrics["f1_rotate"])
    predictor = _load_network(best)
    pre = predictor.pre
    metrics.update(
        params=count_parameters(predictor.model),
        train_img_per_s=job["steps"] * job["batch"] / summary["seconds_this_attempt"],
        train_seconds=summary["seconds_this_attempt"],
        infer_img_per_s=_infer_rate(predictor.model, len(pre.bands), pre.chip_size),
        best_val_macro_f1=summary["best_value"],
    )
    info = {"checkpoint": str(best), "bands": pre.bands, "classes": classes, "test_count": count}
    return {"metrics": metrics, "info": info}


def _drop(row: Row) -> str:
    return format_stat(row.stat("rotation_drop_points"), "+.1f")


BENCH = ProductBench(
    name="remote_sensing",
    title="Remote-sensing scene classification benchmark",
    prog="hv-rs bench",
    child="remote_sensing.bench:run_child",
    variants={v.name: v for v in VARIANTS},
    ours="hybrid",
    baseline="resnet18",
    columns=[
        Column("params M", "params", ".2f", scale=1e-6, spread=False),
        Column("macro-F1", "f1_plain", better="higher", plot=True),
        Column("rotated", "f1_rotate", better="higher"),
        Column("D4", "f1_d4", better="higher"),
        Column("0.5x scale", "f1_scale0.5", better="higher"),
        Column("2x scale", "f1_scale2", better="higher"),
        Column("rotation drop (pts)", "rotation_drop_points", "+.1f"),
        Column("train img/s", "train_img_per_s", ".1f", better="higher", plot=True),
        Column("infer img/s", "infer_img_per_s", ".0f", better="higher"),
    ],
    speed_keys=frozenset({"train_img_per_s", "train_seconds", "infer_img_per_s"}),
    quick={"per_class": 24, "steps": 4, "batch": 8, "seeds": [0, 1],
           "models": ["hybrid", "resnet18"]},  # fmt: skip
)


def goals(rows: list[Row], facts: dict[str, Any]) -> list[str]:
    """The issue's goals, each PASS or FAIL, and the measured hybrid - CNN difference."""
    by_name = {row.name: row for row in rows}
    hybrid = by_name.get("hybrid")
    if hybrid is None or hybrid.stat("f1_plain").n == 0:
        return []
    lines, f1 = [], hybrid.stat("f1_plain").mean
    for other in BASELINES:
        if other in by_name and by_name[other].stat("f1_plain").n:
            diff = paired(hybrid, by_name[other], "f1_plain", 100)
            verdict = "PASS" if f1 >= by_name[other].stat("f1_plain").mean else "FAIL"
            lines.append(f"{verdict}: hybrid macro-F1 >= {other}: hybrid minus {other} "
                         f"{format_stat(diff, '+.1f')} points (per seed "
                         f"{', '.join(f'{d:+.1f}' for d in diff.values)}).")  # fmt: skip
    drop = hybrid.stat("rotation_drop_points")
    lines.append(f"{'PASS' if drop.mean <= 0.5 else 'FAIL'}: hybrid F1 drop under arbitrary "
                 f"rotation (augmentation on) {_drop(hybrid)} points; goal <= 0.5.")  # fmt: skip
    if hybrid.stat("f1_rotate+tta").n:
        plain, rotated = hybrid.stat("f1_plain+tta").mean, hybrid.stat("f1_rotate+tta").mean
        lines.append(f"With D4 x 2-scale TTA the hybrid scores {plain:.3f} plain and "
                     f"{rotated:.3f} rotated (drop {100 * (plain - rotated):+.1f} "
                     "points).")  # fmt: skip
    if "cnn (matched)" in by_name:
        diff = paired(hybrid, by_name["cnn (matched)"], "f1_plain", 100)
        lines.append(f"Measured hybrid minus matched pure CNN: {format_stat(diff, '+.1f')} "
                     "macro-F1 points; the brief claims +5.8.")  # fmt: skip
    count = facts.get("test_count") or 0
    lines.append(f"Resolution: the test split has {count} chips, so one chip is about "
                 f"{100 / max(1, count):.1f} points of accuracy.")  # fmt: skip
    baseline = by_name.get("resnet18")
    if baseline is not None and hybrid.stat("train_seconds").n and baseline.stat("train_seconds").n:
        mine, theirs = hybrid.stat("train_seconds").mean, baseline.stat("train_seconds").mean
        lines.append(f"{'PASS' if mine <= theirs else 'FAIL'}: hybrid trains in no more time than "
                     f"resnet18: {mine:.0f} s against {theirs:.0f} s per run (mean over seeds, "
                     "same steps and batch).")  # fmt: skip
    for view, label in (("scale0.5", "0.5x"), ("scale2", "2x")):
        key = f"f1_{view}"
        ranked = sorted((row for row in rows if row.stat(key).n),
                        key=lambda row: -row.stat(key).mean)  # fmt: skip
        if hybrid in ranked:
            others = ", ".join(f"{row.name} {row.stat(key).mean:.3f}" for row in ranked
                               if row is not hybrid)  # fmt: skip
            lines.append(f"At {label} ground scale the hybrid scores "
                         f"{hybrid.stat(key).mean:.3f}, rank {ranked.index(hybrid) + 1} of "
                         f"{len(ranked)} ({others}).")  # fmt: skip
    return lines


def build_report(rows: list[Row], facts: dict[str, Any], command: str) -> Report:
    """The harness's table (macro-F1 under each view, speeds), goals, TTA and per-class F1."""
    tta = [row for row in rows if row.stat("f1_plain+tta").n]
    sections = []
    if tta:
        sections.append(Section(
            "With test-time augmentation (hv-rs evaluate --tta: D4 x 2 scales)",
            table=Table(["model", "macro-F1", "rotated"],
                        [[r.label, *(format_stat(r.stat(f"f1_{v}+tta")) for v in TTA_VIEWS)]
                         for r in tta]),
        ))  # fmt: skip
    classes = next((row.info("classes") for row in rows if row.ok), [])
    sections.append(Section(
        "Per-class F1 (plain view, mean over seeds)",
        table=Table(["model", *classes],
                    [[r.label, *(format_stat(r.stat(f"f1/{c}"), ".2f", spread=False)
                                 for c in classes)] for r in rows]),
    ))  # fmt: skip
    first = next((row for row in rows if row.ok), None)
    bands = ", ".join(first.info("bands")) if first else "?"
    facts = {**facts, "test_count": first.info("test_count") if first else 0}
    dataset = facts.get("dataset") or {}
    source_lines = {}
    if dataset.get("chips"):
        sections.insert(0, _dataset_section(dataset))
        source = dataset.get("source", {})
        source_lines = {"Source": f"{source.get('data', '?')}; read from "
                                  f"{source.get('package', '?')}"}  # fmt: skip
    split = ("the dataset's split files, the same for every seed" if facts.get("split_files")
             else "a seeded stratified split per seed")  # fmt: skip
    bench = dataclasses.replace(BENCH, name=facts.get("report_name") or BENCH.name,
                                title=facts.get("title") or BENCH.title)  # fmt: skip
    return product_report(
        bench, rows, facts, command,
        goals=goals(rows, facts),
        sections=sections,
        fact_lines={
            **source_lines,
            "Data": f"{facts['root']}: {len(classes)} classes, bands {bands}, {facts['chip']} px "
            f"network input, {facts['test_count']} test chips ({split})",
            "Budget": f"{facts['steps']} optimiser steps x batch {facts['batch']} per run (lr "
            f"{facts['lr']}, the CLI's AdamW + warmup + cosine), one torch thread per run, "
            f"{facts['jobs']} run(s) at a time",
            "Each run": f"`{facts['train_command']}` (variant flags and seed vary), then `hv-rs "
            "evaluate --checkpoint <run>/checkpoints/best.ckpt --views plain rotate d4 scale0.5 "
            "scale2`",
        },
        method="CPU, fp32, random initialisation for every model (no pretrained weights). "
        "Training and scoring go through hv-rs train / hv-rs evaluate: the task's cross-entropy, "
        "D4 + arbitrary-angle rotation (reflected borders) + scale-jitter augmentation unless the "
        "row says otherwise, best checkpoint by validation macro-F1. Macro-F1 (never micro-F1) on "
        "the test split. Rotated: every chip turned by its own random angle with reflected "
        "borders; D4: softmax pooled over the 8 rotations/flips; 0.5x / 2x: ground scale halved "
        "(centre magnified) or doubled (shrunk, reflected). Rotation drop: plain minus rotated, "
        "in F1 points. Train img/s: images of the run over its whole fit time (loading and "
        "validation included).",
    )  # fmt: skip


def _dataset_section(dataset: dict[str, Any]) -> Section:
    """Chips (and polygons, when known) per class and split, as the dataset's builder wrote."""
    splits = ("train", "val", "test")
    chips, polygons = dataset["chips"], dataset.get("polygons", {})
    rows = [[name, *(str(chips[name][s]) for s in splits),
             "/".join(str(polygons.get(name, {}).get(s, "?")) for s in splits)]
            for name in chips]  # fmt: skip
    rows.append(["all", *(str(sum(c[s] for c in chips.values())) for s in splits), ""])
    notes = [f"- {note}" for note in dataset.get("notes", [])]
    size, stride = dataset.get("chip_size"), dataset.get("stride")
    text = [f"{size} px chips (stored size) centred every {stride} px on labelled pixels; "
            "polygons whose chips would overlap are kept in one split (no polygon and no pixel "
            "is shared across splits)."] if size else []  # fmt: skip
    return Section("Dataset: chips per class and split", text=text,
                   table=Table(["class", *splits, "polygons train/val/test"], rows), notes=notes)


def _prepare(args: argparse.Namespace, work: Path) -> tuple[Any, dict[str, Any]]:
    """The data (the procedural set unless ``--data``); the job of each variant and seed."""
    root = args.data
    if root is None:
        from .synthetic import write_demo_dataset

        root = work / f"S2Procedural_{args.per_class}x{args.chip}"
        if not root.is_dir():
            write_demo_dataset(root, args.per_class, args.chip)
    root = Path(root).resolve()
    budget = {"root": str(root), "chip": args.chip, "steps": args.steps, "batch": args.batch,
              "lr": args.lr}  # fmt: skip
    described = root / "dataset.json"  # written by remote_sensing.landsat
    dataset = json.loads(described.read_text()) if described.is_file() else {}
    context = {"report_name": args.report_name, "title": args.title, "dataset": dataset,
               "split_files": split_files(root) is not None}  # fmt: skip

    def job_for(variant: Variant, seed: int | None) -> dict[str, Any]:
        return dict(budget)

    example = {**budget, "options": {"flags": ["--model.arch", "ARCH"]}, "seed": "SEED",
               "run_dir": "RUNS/NAME"}  # fmt: skip
    return job_for, {**budget, **context,
                     "train_command": "hv-rs " + " ".join(train_argv(example))}


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (``hv-rs bench``)."""
    parser = argparse.ArgumentParser(
        prog="hv-rs bench", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--data", type=Path, default=None, help="EuroSAT-layout folder")
    parser.add_argument("--per-class", type=int, default=150, help="procedural chips per class")
    parser.add_argument("--chip", type=int, default=32)
    parser.add_argument("--steps", type=int, default=120, help="optimiser steps per run")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--report-name", default=BENCH.name,
                        help="file stem of the report (NAME.md, .json, .png)")
    parser.add_argument("--title", default=BENCH.title, help="the report's heading")
    add_arguments(parser, BENCH, "runs/bench/remote_sensing")
    parser.set_defaults(models=DEFAULT_MODELS)
    argv = list(sys.argv[1:] if argv is None else argv)
    return bench_main(BENCH, parser, argv, _prepare, build_report)


if __name__ == "__main__":
    sys.exit(main())
