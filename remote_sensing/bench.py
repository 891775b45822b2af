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
hybrid with rotation augmentation off, and with the last-stage head only. Every run uses one
torch thread, so speeds compare across runs (and ``--jobs 2`` may run two at once). Train
img/s is the whole ``fit`` (data loading and validation included) divided into its images;
inference img/s is forward passes of a batch of 64 after training. The default data is the
procedural set of :mod:`remote_sensing.synthetic`; ``--data`` takes a EuroSAT-layout folder.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from shared.bench import OURS, BenchResult, Report, Section, Table, command_line, write_report
from shared.layers import count_parameters

from .metrics import format_f1

__all__ = ["VARIANTS", "VIEWS", "BenchRun", "main", "run_bench", "run_one"]

# name -> (hv-rs train flags, family)
VARIANTS: dict[str, tuple[list[str], str]] = {
    "hybrid": (["--model.arch", "hybrid"], OURS),
    "cnn (matched)": (["--model.arch", "cnn"], OURS),
    "resnet18": (["--model.arch", "resnet18"], "timm"),
    "coatnet_nano": (["--model.arch", "coatnet_nano"], "timm"),
    "hybrid, no rotation aug": (["--model.arch", "hybrid", "--data.rotate", "false"], OURS),
    "hybrid, last-stage head": (["--model.arch", "hybrid", "--model.multiscale_head", "false"],
                                OURS),
}  # fmt: skip
BASELINES = ("cnn (matched)", "resnet18", "coatnet_nano")
VIEWS = ("plain", "rotate", "d4", "scale0.5", "scale2")
TTA_VIEWS = ("plain", "rotate")


@dataclass
class BenchRun:
    """One variant at one seed: what ``hv-rs train`` and ``hv-rs evaluate`` are given."""

    root: str
    variant: str
    seed: int
    steps: int
    batch: int
    lr: float
    chip: int
    runs_dir: str
    tta: bool = False

    @property
    def name(self) -> str:
        """Run folder name under ``runs_dir``."""
        slug = "".join(c if c.isalnum() else "-" for c in self.variant).strip("-")
        return f"{slug}-seed{self.seed}"

    def train_argv(self) -> list[str]:
        """The ``hv-rs train`` command line of this run."""
        return ["train", "--data.root", self.root, "--data.chip_size", str(self.chip),
                *VARIANTS[self.variant][0],
                "--optim.lr", str(self.lr), "--trainer.seed", str(self.seed),
                "--trainer.max_steps", str(self.steps), "--trainer.max_epochs", "100000",
                "--trainer.batch_size", str(self.batch), "--trainer.accelerator", "cpu",
                "--trainer.progress", "false", "--run.runs_dir", self.runs_dir,
                "--run.name", self.name, "--run.overwrite", "true"]  # fmt: skip


@torch.no_grad()
def _infer_rate(model: torch.nn.Module, channels: int, size: int, batch: int = 64) -> float:
    model.eval()
    x = torch.randn(batch, channels, size, size)
    model(x)
    started, runs = time.perf_counter(), 3
    for _ in range(runs):
        model(x)
    return runs * batch / (time.perf_counter() - started)


def run_one(run: BenchRun) -> dict:
    """Train with ``hv-rs train``, score with ``hv-rs evaluate``; one torch thread throughout."""
    from .cli import main as hv_rs
    from .predict import load_predictor

    torch.set_num_threads(1)
    run_dir = Path(run.runs_dir) / run.name
    # A fresh folder: an earlier run's checkpoints and logs must not mix into this one's.
    shutil.rmtree(run_dir, ignore_errors=True)
    if hv_rs(run.train_argv()) != 0:
        raise RuntimeError(f"hv-rs train failed for {run.name}")
    summary = json.loads((run_dir / "summary.json").read_text())
    best = run_dir / (summary["best_checkpoint"] or summary["last_checkpoint"])
    scores = {}
    for tta, views in ((False, VIEWS), (True, TTA_VIEWS)):
        if tta and not run.tta:
            continue
        out = run_dir / ("evaluation_tta" if tta else "evaluation")
        argv = ["evaluate", "--checkpoint", str(best), "--split", "test", "--views", *views,
                "-o", str(out), *(["--tta"] if tta else [])]  # fmt: skip
        if hv_rs(argv) != 0:
            raise RuntimeError(f"hv-rs evaluate failed for {run.name}")
        result = json.loads((out / "evaluation_test.json").read_text())["scores"]
        # The confusion matrices stay in the run folder; the report keeps the scores.
        scores.update({f"{v}+tta" if tta else v: {k: x for k, x in s.items() if k != "confusion"}
                       for v, s in result.items()})  # fmt: skip
    predictor = load_predictor(best)
    pre = predictor.pre
    return {
        "variant": run.variant, "seed": run.seed, "scores": scores,
        "params": count_parameters(predictor.model),
        "train_img_per_s": run.steps * run.batch / summary["seconds_this_attempt"],
        "train_seconds": summary["seconds_this_attempt"],
        "infer_img_per_s": _infer_rate(predictor.model, len(pre.bands), pre.chip_size),
        "best_val_macro_f1": summary["best_value"], "checkpoint": str(best),
        "bands": pre.bands, "classes": pre.class_names, "chip": pre.chip_size,
        "test_count": scores["plain"]["count"],
    }  # fmt: skip


def _aggregate(name: str, runs: list[dict]) -> BenchResult:
    """Mean and std over seeds of every view's macro-F1 and of the speeds."""
    metrics: dict[str, float] = {}
    for view in runs[0]["scores"]:
        values = [r["scores"][view]["macro_f1"] for r in runs]
        metrics[f"f1_{view}"] = float(np.mean(values))
        metrics[f"f1_{view}_std"] = float(np.std(values))
    drops = [100 * (r["scores"]["plain"]["macro_f1"] - r["scores"]["rotate"]["macro_f1"])
             for r in runs]  # fmt: skip
    metrics["rotation_drop_points"] = float(np.mean(drops))
    metrics["rotation_drop_points_std"] = float(np.std(drops))
    for key in ("train_img_per_s", "infer_img_per_s", "train_seconds"):
        metrics[key] = float(np.mean([r[key] for r in runs]))
    classes = runs[0]["classes"]
    per_class: dict[str, float | None] = {}
    for c in classes:  # a class absent from a run's test split has no F1 (None) there
        values = [f1 for r in runs if (f1 := r["scores"]["plain"]["per_class_f1"][c]) is not None]
        per_class[c] = float(np.mean(values)) if values else None
    first = runs[0]
    shape = [len(first["bands"]), first["chip"], first["chip"]]
    return BenchResult(name, VARIANTS[name][1], 2, shape, 1, first["params"], metrics,
                       {"per_class_f1": per_class, "runs": runs})  # fmt: skip


def run_bench(
    root: Path, variants: list[str], seeds: list[int], steps: int, batch: int, lr: float,
    chip: int, runs_dir: Path, jobs: int, console: Console,
) -> tuple[list[BenchResult], dict]:  # fmt: skip
    """Every variant at every seed through the CLI; one result per variant (seed mean, std)."""
    plan = [BenchRun(str(root), v, s, steps, batch, lr, chip, str(runs_dir), tta=v == "hybrid")
            for v in variants for s in seeds]  # fmt: skip
    done: list[dict] = []
    if jobs <= 1:
        for run in plan:
            done.append(run_one(run))
            _say(console, done[-1])
    else:
        with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
            for result in pool.map(run_one, plan):
                done.append(result)
                _say(console, result)
    results = [_aggregate(v, [r for r in done if r["variant"] == v]) for v in variants]
    pairs = {}
    if "hybrid" in variants:
        for other in variants:
            if other == "hybrid":
                continue
            diffs = [100 * (h["scores"]["plain"]["macro_f1"] - o["scores"]["plain"]["macro_f1"])
                     for h in done if h["variant"] == "hybrid"
                     for o in done if o["variant"] == other and o["seed"] == h["seed"]]  # fmt: skip
            pairs[other] = {"mean": float(np.mean(diffs)), "std": float(np.std(diffs)),
                            "per_seed": diffs}  # fmt: skip
    first = done[0]
    facts = {"root": str(root), "classes": first["classes"], "bands": first["bands"],
             "chip": chip, "test_count": first["test_count"], "steps": steps, "batch": batch,
             "lr": lr, "seeds": seeds, "jobs": jobs, "hybrid_minus": pairs,
             "train_command": "hv-rs " + " ".join(plan[0].train_argv())}  # fmt: skip
    return results, facts


def _say(console: Console, r: dict) -> None:
    s = r["scores"]
    console.print(f"[bold]{r['variant']} seed {r['seed']}[/]: macro-F1 "
                  f"{s['plain']['macro_f1']:.3f}, rotated {s['rotate']['macro_f1']:.3f}, "
                  f"fit {r['train_seconds']:.0f} s")  # fmt: skip


def _cell(r: BenchResult, key: str) -> str:
    if key not in r.metrics:
        return "-"
    return f"{r.metrics[key]:.3f} ± {r.metrics[key + '_std']:.3f}"


def goals(results: list[BenchResult], facts: dict) -> list[str]:
    """The issue's goals, each PASS or FAIL, and the measured hybrid - CNN difference."""
    by_name = {r.name: r for r in results}
    if "hybrid" not in by_name:
        return []
    hybrid = by_name["hybrid"].metrics
    lines = []
    for other in BASELINES:
        if other in by_name:
            pair = facts["hybrid_minus"][other]
            verdict = "PASS" if hybrid["f1_plain"] >= by_name[other].metrics["f1_plain"] else "FAIL"
            lines.append(f"{verdict}: hybrid macro-F1 >= {other}: hybrid minus {other} "
                         f"{pair['mean']:+.1f} ± {pair['std']:.1f} points (per seed "
                         f"{', '.join(f'{d:+.1f}' for d in pair['per_seed'])}).")  # fmt: skip
    drop, spread = hybrid["rotation_drop_points"], hybrid["rotation_drop_points_std"]
    lines.append(f"{'PASS' if drop <= 0.5 else 'FAIL'}: hybrid F1 drop under arbitrary rotation "
                 f"(augmentation on) {drop:+.1f} ± {spread:.1f} points; goal <= 0.5.")  # fmt: skip
    if "f1_rotate+tta" in hybrid:
        tta_drop = 100 * (hybrid["f1_plain+tta"] - hybrid["f1_rotate+tta"])
        lines.append(
            f"With D4 x 2-scale TTA the hybrid scores {hybrid['f1_plain+tta']:.3f} plain "
            f"and {hybrid['f1_rotate+tta']:.3f} rotated (drop {tta_drop:+.1f} points)."
        )
    if "cnn (matched)" in facts["hybrid_minus"]:
        pair = facts["hybrid_minus"]["cnn (matched)"]
        lines.append(f"Measured hybrid minus matched pure CNN: {pair['mean']:+.1f} ± "
                     f"{pair['std']:.1f} macro-F1 points; the brief claims +5.8.")  # fmt: skip
    lines.append(f"Resolution: the test split has {facts['test_count']} chips, so one chip is "
                 f"about {100 / max(1, facts['test_count']):.1f} points of accuracy.")  # fmt: skip
    return lines


def build_report(results: list[BenchResult], facts: dict, command: str,
                 wall_seconds: float) -> Report:  # fmt: skip
    """One row per variant: params, macro-F1 under each view (mean ± std over seeds), speed."""
    columns = ["model", "params M", "macro-F1", "rotated", "D4", "0.5x scale", "2x scale",
               "rotation drop (pts)", "train img/s", "infer img/s"]  # fmt: skip
    rows = [[r.label, f"{r.params / 1e6:.2f}", *[_cell(r, f"f1_{v}") for v in VIEWS],
             f"{r.metrics['rotation_drop_points']:+.1f} ± "
             f"{r.metrics['rotation_drop_points_std']:.1f}",
             f"{r.metrics['train_img_per_s']:.1f}", f"{r.metrics['infer_img_per_s']:.0f}"]
            for r in results]  # fmt: skip
    tta_rows = [[r.label, *[_cell(r, f"f1_{v}+tta") for v in TTA_VIEWS]]
                for r in results if "f1_plain+tta" in r.metrics]  # fmt: skip
    sections = [
        Section("Goals", notes=[f"- {line}" for line in goals(results, facts)]),
        Section(
            "Same data, same budget, same CLI; mean ± std over seeds",
            table=Table(columns, rows, bold=[r.family == OURS for r in results]),
        ),
    ]
    if tta_rows:
        sections.append(
            Section(
                "With test-time augmentation (hv-rs evaluate --tta: D4 x 2 scales)",
                table=Table(["model", "macro-F1", "rotated"], tta_rows),
            )
        )
    classes = facts["classes"]
    per_class = Table(["model", *classes],
                      [[r.label, *[format_f1(r.info["per_class_f1"][c], 2) for c in classes]]
                       for r in results])  # fmt: skip
    sections.append(Section("Per-class F1 (plain view, seed mean)", table=per_class))
    return Report(
        name="remote_sensing",
        title="Remote-sensing scene classification benchmark",
        command=command,
        sections=sections,
        data={"facts": facts, "results": results, "wall_seconds": wall_seconds},
        plot=lambda figure: _plot(figure, results),
        facts={
            "Data": f"{facts['root']}: {len(facts['classes'])} classes, bands "
            f"{', '.join(facts['bands'])}, {facts['chip']} px chips, "
            f"{facts['test_count']} test chips (seeded stratified split per seed)",
            "Budget": f"{facts['steps']} optimiser steps x batch {facts['batch']} per run (lr "
            f"{facts['lr']}, the CLI's AdamW + warmup + cosine), seeds {facts['seeds']}, one "
            f"torch thread per run, {facts['jobs']} run(s) at a time; whole benchmark "
            f"{wall_seconds / 60:.1f} min wall",
            "Each run": f"`{facts['train_command']}` (variant flags and seed vary), then `hv-rs "
            "evaluate --checkpoint <run>/checkpoints/best.ckpt --views plain rotate d4 scale0.5 "
            "scale2`",
        },
        method="CPU, fp32, random initialisation for every model (no pretrained weights). "
        "Training and scoring go through hv-rs train / hv-rs evaluate: the task's cross-entropy, "
        "D4 + arbitrary-angle rotation (reflected borders) + scale-jitter augmentation unless the "
        "row says otherwise, best checkpoint by validation macro-F1. Macro-F1 (never micro-F1) on "
        "the test split; mean ± std over seeds. Rotated: every chip turned by its own random "
        "angle with reflected borders; D4: softmax pooled over the 8 rotations/flips; 0.5x / 2x: "
        "ground scale halved (centre magnified) or doubled (shrunk, reflected). Rotation drop: "
        "plain minus rotated, in F1 points. Train img/s: images of the run over its whole fit "
        "time (loading and validation included); the machine is shared, so speeds are noisy.",
    )


def _plot(figure, results: list[BenchResult]) -> None:
    axes = figure.add_subplot()
    width = 0.8 / max(1, len(results))
    for i, r in enumerate(results):
        values = [r.metrics[f"f1_{v}"] for v in VIEWS]
        errors = [r.metrics[f"f1_{v}_std"] for v in VIEWS]
        axes.bar(np.arange(len(VIEWS)) + i * width, values, width, yerr=errors, label=r.label)
    axes.set_xticks(np.arange(len(VIEWS)) + 0.4 - width / 2, list(VIEWS))
    axes.set_ylabel("macro-F1 (test)")
    axes.set_ylim(0, 1)
    axes.legend(fontsize=6)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (``hv-rs bench``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="hv-rs bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", type=Path, default=None, help="EuroSAT-layout folder")
    parser.add_argument("--per-class", type=int, default=150, help="procedural chips per class")
    parser.add_argument("--chip", type=int, default=32)
    parser.add_argument("--steps", type=int, default=120, help="optimiser steps per run")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--models", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (one thread each)")
    parser.add_argument("--out-dir", type=Path, default=None,
                        help="default docs/benchmarks (--quick: WORK_DIR/quick)")  # fmt: skip
    parser.add_argument("--work-dir", type=Path, default=Path("runs/bench/remote_sensing"))
    parser.add_argument("--quick", action="store_true",
                        help="smoke run (minutes): defaults become 24 chips/class, 4 steps "
                        "x batch 8, seeds 0 1, hybrid and resnet18; given flags win")  # fmt: skip
    if "--quick" in argv:
        # Defaults only: a flag given with --quick keeps its value; never writes docs/.
        parser.set_defaults(per_class=24, steps=4, batch=8, seeds=[0, 1],
                            models=["hybrid", "resnet18"])  # fmt: skip
    args = parser.parse_args(argv)
    if args.out_dir is None:
        args.out_dir = args.work_dir / "quick" if args.quick else Path("docs/benchmarks")
    console = Console()
    started = time.perf_counter()
    root = args.data
    if root is None:
        from .synthetic import write_demo_dataset

        root = args.work_dir / f"S2Procedural_{args.per_class}x{args.chip}"
        if not root.is_dir():
            write_demo_dataset(root, args.per_class, args.chip)
    results, facts = run_bench(root, args.models, args.seeds, args.steps, args.batch, args.lr,
                               args.chip, args.work_dir / "runs", args.jobs, console)  # fmt: skip
    report = build_report(results, facts, command_line("hv-rs bench", argv),
                          time.perf_counter() - started)  # fmt: skip
    write_report(report, args.out_dir, console)
    for line in goals(results, facts):
        console.print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
