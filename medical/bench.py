"""``hv-med bench``: the product (``hv-med train`` / ``predict`` / ``evaluate``) for ours and the
MONAI baselines, on the same data and budget, over several seeds.

Every (model, seed) run is its own process (one torch thread, so timings compare and other jobs
can share the machine) that does what a user does: a run config (``config.yaml``) parsed by the
``hv-med train`` parser, the task ``hv-med train`` builds (same loss, AdamW warmup-cosine
schedule, augmentation and patch sampling; only ``--model.arch`` and ``--trainer.precision``
differ between rows) trained by the engine's ``fit``; then ``hv-med predict`` segments the
held-out scans from the raw files (preprocessing, gaussian sliding window, inversion to the
scan's geometry) and ``hv-med evaluate``'s code scores them (Dice per class, nnU-Net rule; HD95).
A class present in the reference but absent from the prediction is a *miss*: its Dice of 0
counts in the mean, and the misses are counted in their own column (HD95 is undefined for a
miss, so the HD95 mean is over hits only).

Measured per run: held-out Dice and HD95, training voxels/s (patch voxels per second of
optimiser step: forward, backward, update; data loading, checkpoint writing and the first step
excluded), sliding-window seconds per held-out volume, and the process's peak resident memory
at the end of training (``VmHWM`` from ``/proc/self/status``: imports, cached data, model,
optimiser, activations). Rows: ours (``med_cpu``), ours with bf16-mixed training, our pure-CNN
control at matched parameters, MONAI ``UNet``, ``SegResNet`` and ``SwinUNETR`` (feature size
24). Each row reports mean +- std over the seeds.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import nibabel as nib
import numpy as np
import torch
from rich.console import Console

from shared.bench import OURS, BenchResult, Report, Section, Table, command_line, write_report
from shared.bench.measure import MachineLoad
from shared.engine.io import atomic_write_json, atomic_write_yaml
from shared.memory import peak_rss_mib

from .phantom import PhantomConfig, write_mni_demo, write_phantom_dataset

__all__ = ["ROWS", "Budget", "Row", "build_report", "main", "run_bench", "run_child", "summarise"]


@dataclass(frozen=True)
class Row:
    """One benchmark row: the network (``--model.arch``) and the training precision."""

    arch: str
    precision: str = "32-true"
    family: str = "monai"


ROWS: dict[str, Row] = {
    "hybrid": Row("hybrid", family=OURS),
    "hybrid, bf16-mixed": Row("hybrid", "bf16-mixed", family=OURS),
    "pure CNN, matched params": Row("cnn", family=OURS),
    "MONAI UNet": Row("unet"),
    "MONAI SegResNet": Row("segresnet"),
    "MONAI SwinUNETR-24": Row("swinunetr"),
}
SLOW_ROW = "MONAI SwinUNETR-24"
"""Several times slower to train than the others on one CPU thread: ``--slow-seeds`` can give it
fewer seeds (never fewer steps), and the report says so."""


@dataclass(frozen=True)
class Budget:
    """What every model gets: the ``hv-med train`` flags the bench sets (all else: defaults)."""

    steps: int = 30
    patch: tuple[int, int, int] = (64, 64, 32)
    batch_size: int = 1
    """Cases per step; each gives ``samples_per_case`` patches."""
    samples_per_case: int = 2
    lr: float = 2e-3
    warmup_fraction: float = 0.1


def _dataset(kind: str, root: Path, quick: bool) -> Path:
    if kind == "mni":
        return write_mni_demo(root / "MNI152Brain")
    shape = (48, 48, 32) if quick else (96, 96, 48)
    cases = 3 if quick else 8
    cfg = PhantomConfig(shape=shape, spacing=(1.0, 1.0, 2.0))
    return write_phantom_dataset(root / "Phantoms", num_cases=cases, cfg=cfg)


def _held_out(raw: Path, work: Path) -> tuple[list[str], list[str], Path]:
    """Held-out case names, their raw image files, and a folder of just their label files.

    ``hv-med evaluate`` wants a reference for every prediction and the reverse, so the held-out
    labels get a folder of their own.
    """
    manifest = json.loads((raw / "dataset.json").read_text())
    cases = list(manifest.get("validation_cases") or [])
    if not cases:
        raise ValueError(f"{raw}: the bench needs a dataset naming its validation_cases")
    labels = work / "held_out_labels"
    labels.mkdir(parents=True, exist_ok=True)
    images = []
    for entry in manifest["training"]:
        name = Path(entry["image"]).name.removesuffix(".nii.gz")
        if name in cases:
            images.append(str((raw / entry["image"]).resolve()))
            shutil.copyfile(raw / entry["label"], labels / f"{name}.nii.gz")
    return cases, images, labels


def _train_config(job: dict[str, Any]) -> dict[str, Any]:
    """The run's ``config.yaml``: what a user would pass to ``hv-med train``."""
    budget = Budget(**{**job["budget"], "patch": tuple(job["budget"]["patch"])})
    return {
        "data": {
            "prepared": job["prepared"],
            "patch_size": list(budget.patch),
            "samples_per_case": budget.samples_per_case,
        },
        "model": {"arch": job["arch"]},
        "optim": {"lr": budget.lr, "warmup_fraction": budget.warmup_fraction},
        "trainer": {
            "max_steps": budget.steps,
            "max_epochs": budget.steps,  # an epoch is at least one step: steps decide
            "batch_size": budget.batch_size,
            "precision": job["precision"],
            "seed": job["seed"],
            # The held-out cases are the test set: no validation on them during training (only
            # Lightning's sanity check, untimed), and the score is of the last weights, not of
            # a checkpoint picked on the test set.
            "val_every_n_epochs": budget.steps + 1,
            "progress": False,
        },
        "run": {"runs_dir": str(Path(job["run_dir"]).parent), "name": Path(job["run_dir"]).name},
    }


class _StepTimer(pl.Callback):
    """Seconds and patch voxels of the optimiser steps after the first (warm-up) one."""

    def __init__(self) -> None:
        self.steps, self.seconds, self.voxels = 0, 0.0, 0
        self._start = 0.0

    def on_train_batch_start(self, trainer: Any, module: Any, batch: Any, index: int) -> None:  # noqa: D102
        self._start = time.perf_counter()

    def on_train_batch_end(  # noqa: D102
        self, trainer: Any, module: Any, outputs: Any, batch: Any, index: int
    ) -> None:
        if self.steps > 0:
            self.seconds += time.perf_counter() - self._start
            self.voxels += batch["image"][:, 0].numel()
        self.steps += 1


def _misses(pred_dir: Path, label_dir: Path, class_ids: list[int]) -> int:
    """(case, class) pairs present in the reference and absent from the prediction."""
    count = 0
    for reference in sorted(label_dir.glob("*.nii.gz")):
        gt = np.asarray(nib.load(str(reference)).dataobj)
        pred = np.asarray(nib.load(str(pred_dir / reference.name)).dataobj)
        count += sum(bool((gt == c).any()) and not bool((pred == c).any()) for c in class_ids)
    return count


def run_child(job: dict[str, Any]) -> dict[str, Any]:
    """Train one (model, seed) the way ``hv-med train`` does, predict and score the held-out set.

    Runs in its own process (:func:`_spawn`); returns the measured numbers.
    """
    from shared.cli import parse_task_command
    from shared.engine.trainer import fit
    from shared.layers import count_parameters

    from .cli import SPEC
    from .evaluate import evaluate_folders
    from .predict import load_predictor, predict_main
    from .prepare import load_prepared
    from .transforms import val_transforms

    torch.set_num_threads(1)
    run_dir = Path(job["run_dir"])
    config_file = atomic_write_yaml(run_dir / "config.yaml", _train_config(job))
    _, cfg = parse_task_command(SPEC, "train", "", ["--config", str(config_file)], lambda _: None)
    pl.seed_everything(cfg.trainer.seed, workers=True, verbose=False)
    module, datamodule = SPEC.build(cfg)
    timer, start = _StepTimer(), time.perf_counter()
    fit(module, datamodule, cfg.trainer, run_dir, SPEC.headline, SPEC.mode,
        grad_clip=cfg.optim.grad_clip, extra_callbacks=[timer])  # fmt: skip
    train_seconds, peak = time.perf_counter() - start, peak_rss_mib() / 1024
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    pred_dir = run_dir / "predictions"
    start = time.perf_counter()
    predict_main(SPEC, [*job["images"], "-o", str(pred_dir), "--checkpoint", str(checkpoint)])
    predict_seconds = (time.perf_counter() - start) / len(job["images"])
    labels = {int(k): v for k, v in job["labels"].items()}
    summary = evaluate_folders(pred_dir, Path(job["label_dir"]), run_dir / "evaluation",
                               labels, num_overlays=0)  # fmt: skip
    # The sliding window alone (hv-med predict's network and settings, on the prepared volume),
    # once more after predict has warmed it up: predict's total also reads, resamples, inverts.
    task, _ = load_predictor(checkpoint, cfg)
    task.eval()
    window, load = [], val_transforms()  # the volumes validation would run on
    for case in load_prepared(Path(job["prepared"])):
        if case["case"] in job["cases"]:
            image = load(case)["image"][None]
            with torch.inference_mode():
                start = time.perf_counter()
                task.infer(image)
                window.append(time.perf_counter() - start)
    return {
        "params": count_parameters(module.model),
        "steps": timer.steps,
        "train_seconds": train_seconds,
        "train_voxels_per_s": timer.voxels / timer.seconds if timer.seconds else math.nan,
        "peak_rss_gib": peak,
        "predict_seconds_per_volume": predict_seconds,
        "window_seconds_per_volume": statistics.mean(window) if window else math.nan,
        "dice": summary["foreground_mean"]["dice"],
        "hd95_mm": summary["foreground_mean"]["hd95"],
        "dice_per_class": {k: v["dice"] for k, v in summary["mean"].items()},
        "misses": _misses(pred_dir, Path(job["label_dir"]), sorted(c for c in labels if c)),
        "cases": len(summary["metric_per_case"]),
    }


def _spawn(job: dict[str, Any], reuse: bool = False) -> dict[str, Any]:
    """Run :func:`run_child` in a fresh one-thread process; its log is ``run_dir/bench.log``.

    ``reuse``: return the result of a finished run of the identical job instead (to finish an
    interrupted benchmark without redoing its completed runs).
    """
    run_dir = Path(job["run_dir"])
    done, job_file = run_dir / "result.json", run_dir / "job.json"
    if reuse and done.is_file() and job_file.is_file():
        if json.loads(job_file.read_text()) == json.loads(json.dumps(job)):
            return {**json.loads(done.read_text()), "reused": True}
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    job_file = atomic_write_json(run_dir / "job.json", job)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with (run_dir / "bench.log").open("w") as log:
        code = subprocess.call(
            [sys.executable, "-m", "medical.bench", "--child", str(job_file)],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    result_file = run_dir / "result.json"
    if code != 0 or not result_file.is_file():
        tail = (run_dir / "bench.log").read_text()[-3000:]
        raise RuntimeError(f"bench run {run_dir} failed (exit {code}):\n{tail}")
    return json.loads(result_file.read_text())


def _mean_std(values: Sequence[float | None]) -> tuple[float, float]:
    """Mean and sample std; a None (all classes undefined) counts as NaN, never dropped."""
    numbers = [math.nan if v is None else float(v) for v in values]
    if not numbers or any(math.isnan(v) for v in numbers):
        return math.nan, math.nan
    std = statistics.stdev(numbers) if len(numbers) > 1 else math.nan
    return statistics.fmean(numbers), std


def summarise(name: str, row: Row, runs: list[dict[str, Any]], shape: list[int]) -> BenchResult:
    """One row's :class:`BenchResult` from its per-seed runs: mean and std of every number."""
    metrics: dict[str, float] = {}
    for key in ("dice", "hd95_mm", "train_voxels_per_s", "window_seconds_per_volume",
                "predict_seconds_per_volume", "peak_rss_gib", "train_seconds"):  # fmt: skip
        metrics[f"{key}_mean"], metrics[f"{key}_std"] = _mean_std([r[key] for r in runs])
    metrics["misses"] = float(sum(r["misses"] for r in runs))
    per_class = {
        c: _mean_std([r["dice_per_class"][c] for r in runs]) for c in runs[0]["dice_per_class"]
    }
    return BenchResult(
        name=name,
        family=row.family,
        dims=3,
        input_shape=shape,
        threads=1,
        params=runs[0]["params"],
        metrics=metrics,
        info={
            "arch": row.arch,
            "precision": row.precision,
            "seeds": [r["seed"] for r in runs],
            "dice_per_class": {c: {"mean": m, "std": s} for c, (m, s) in per_class.items()},
            "runs": runs,
            "scored": sum(r["cases"] for r in runs),
        },
    )


def run_bench(
    dataset: str,
    budget: Budget,
    rows: list[str],
    seeds: list[int],
    slow_seeds: list[int],
    work: Path,
    quick: bool,
    console: Console | None = None,
    reuse: bool = False,
) -> tuple[list[BenchResult], dict[str, Any]]:
    """Prepare the data once, run every (row, seed) in its own process; results and run facts."""
    from .prepare import prepare_dataset

    work = work.resolve()
    raw = _dataset(dataset, work / "raw", quick)
    prepared = work / "prepared"
    prepare_dataset(raw, prepared, workers=1)
    cases, images, label_dir = _held_out(raw, work)
    manifest = json.loads((prepared / "dataset.json").read_text())
    load = MachineLoad()
    results = []
    for name in rows:
        runs = []
        for seed in slow_seeds if name == SLOW_ROW else seeds:
            row = ROWS[name]
            job = {
                "arch": row.arch, "precision": row.precision, "seed": seed,
                "budget": asdict(budget), "prepared": str(prepared), "images": images,
                "cases": cases, "label_dir": str(label_dir), "labels": manifest["labels"],
                "run_dir": str(work / "runs" / f"{row.arch}-{row.precision}-seed{seed}"),
            }  # fmt: skip
            started = time.perf_counter()
            runs.append({**_spawn(job, reuse), "seed": seed})
            if console is not None:
                console.print(f"{name} seed {seed}: Dice {runs[-1]['dice']}, "
                              f"{time.perf_counter() - started:.0f} s")  # fmt: skip
        shape = [budget.batch_size * budget.samples_per_case, 1, *budget.patch]
        results.append(summarise(name, ROWS[name], runs, shape))
    all_cases = [entry["case"] for entry in manifest["cases"]]
    facts = {
        "dataset": dataset,
        "train_cases": [c for c in all_cases if c not in cases],
        "held_out_cases": cases,
        "labels": manifest["labels"],
        "spacing": manifest["target_spacing"],
        "budget": asdict(budget),
        "seeds": seeds,
        "slow_seeds": slow_seeds,
        "other_cores_busy": load.other_cores(),
        "reused_runs": sum(bool(run.get("reused")) for r in results for run in r.info["runs"]),
    }
    return results, facts


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def _pm(mean: float, std: float, fmt: str) -> str:
    if math.isnan(mean):
        return "n/a"
    spread = format(std, fmt.replace("+", ""))  # a sign on the mean only
    return format(mean, fmt) if math.isnan(std) else f"{format(mean, fmt)} ± {spread}"


def _row(r: BenchResult) -> list[str]:
    m = r.metrics
    per_class = ", ".join(
        f"{c} {_pm(v['mean'], v['std'], '.3f')}" for c, v in r.info["dice_per_class"].items()
    )
    return [
        r.label + (" (1 seed)" if len(r.info["seeds"]) == 1 else ""),
        per_class,
        f"{r.params / 1e6:.2f}",
        _pm(m["dice_mean"], m["dice_std"], ".3f"),
        _pm(m["hd95_mm_mean"], m["hd95_mm_std"], ".2f"),
        f"{m['misses']:.0f} / {r.info['scored'] * len(r.info['dice_per_class'])}",
        _pm(m["train_voxels_per_s_mean"], m["train_voxels_per_s_std"], ",.0f"),
        _pm(m["window_seconds_per_volume_mean"], m["window_seconds_per_volume_std"], ".2f"),
        _pm(m["predict_seconds_per_volume_mean"], m["predict_seconds_per_volume_std"], ".1f"),
        _pm(m["peak_rss_gib_mean"], m["peak_rss_gib_std"], ".2f"),
    ]


def _find(results: list[BenchResult], name: str) -> BenchResult | None:
    return next((r for r in results if r.name == name), None)


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def goals(results: list[BenchResult]) -> list[str]:
    """The issue's goals, each PASS or FAIL with its numbers (only those whose rows ran)."""
    lines = []
    ours = _find(results, "hybrid")
    if ours is None:
        return lines
    dice, speed = ours.metrics["dice_mean"], ours.metrics["train_voxels_per_s_mean"]
    for name in ("MONAI UNet", "MONAI SwinUNETR-24"):
        peer = _find(results, name)
        if peer is not None:
            other = peer.metrics["dice_mean"]
            lines.append(
                f"- Dice >= {name}: **{_verdict(dice >= other)}**, hybrid {dice:.3f} vs "
                f"{other:.3f} "
                f"({100 * (dice - other):+.1f} points, seeds {ours.info['seeds']} vs "
                f"{peer.info['seeds']})."
            )
    for name, target in (("MONAI UNet", 0.5), ("MONAI SwinUNETR-24", 8.0)):
        peer = _find(results, name)
        if peer is not None:
            ratio = speed / peer.metrics["train_voxels_per_s_mean"]
            lines.append(
                f"- Training speed >= {target}x {name}: **{_verdict(ratio >= target)}**, "
                f"{ratio:.2f}x ({speed:,.0f} vs {peer.metrics['train_voxels_per_s_mean']:,.0f} "
                "voxels/s)."
            )
    cnn = _find(results, "pure CNN, matched params")
    if cnn is not None:
        pairs = {r["seed"]: r["dice"] for r in cnn.info["runs"]}
        diffs = [
            100 * (r["dice"] - pairs[r["seed"]]) for r in ours.info["runs"] if r["seed"] in pairs
        ]
        mean, std = _mean_std(diffs)
        lines.append(
            f"- Hybrid - pure CNN at matched parameters: {_pm(mean, std, '+.1f')} Dice points "
            f"(paired by seed, {len(diffs)} seeds); the design brief claims +4.1."
        )
    bf16 = _find(results, "hybrid, bf16-mixed")
    if bf16 is not None:
        ratio = bf16.metrics["train_voxels_per_s_mean"] / speed
        lines.append(
            f"- bf16-mixed vs fp32 training of the hybrid: {ratio:.2f}x the speed, Dice "
            f"{bf16.metrics['dice_mean']:.3f} vs {dice:.3f}, peak RSS "
            f"{bf16.metrics['peak_rss_gib_mean']:.2f} vs "
            f"{ours.metrics['peak_rss_gib_mean']:.2f} GiB."
        )
    return lines


def _plot(figure: Any, results: list[BenchResult]) -> None:
    """Held-out Dice (mean +- std) and training speed per model, ours in red."""
    figure.set_size_inches(10, 3.8)
    names = [r.label for r in results]
    colours = ["tab:red" if r.family == OURS else "tab:gray" for r in results]
    left, right = figure.add_subplot(1, 2, 1), figure.add_subplot(1, 2, 2)
    errors = [0.0 if math.isnan(r.metrics["dice_std"]) else r.metrics["dice_std"] for r in results]
    left.barh(names, [r.metrics["dice_mean"] for r in results], xerr=errors, color=colours)
    left.set_xlabel("held-out foreground Dice (mean ± std over seeds)")
    left.set_xlim(0, 1)
    right.barh(names, [r.metrics["train_voxels_per_s_mean"] for r in results], color=colours)
    right.set_xlabel("training voxels/s (1 thread)")
    right.set_yticklabels([])
    figure.tight_layout()


def build_report(results: list[BenchResult], facts: dict[str, Any], command: str) -> Report:
    """The medical report: one row per model, the goals as PASS/FAIL, how it was measured."""
    columns = ["model", "per-class Dice", "params M", "Dice", "HD95 mm (hits)", "misses"]
    columns += ["train vox/s", "window s/vol", "predict s/vol", "peak RSS GiB"]
    table = Table(
        columns,
        [_row(r) for r in results],
        bold=[r.family == OURS for r in results],
        text_columns=2,
    )
    budget = facts["budget"]
    others = facts.get("other_cores_busy")
    load = f"{others:.2f}" if others is not None else "unknown"
    slow = (
        f" {SLOW_ROW}: seeds {facts['slow_seeds']} only (same steps and settings; one run takes "
        "about as long as all other rows of a seed together), so its row has no ± and the "
        "goals compare one SwinUNETR run with the hybrid's mean."
        if facts["slow_seeds"] != facts["seeds"] and _find(results, SLOW_ROW) is not None
        else ""
    )
    return Report(
        name="medical",
        title="Medical segmentation benchmark",
        command=command,
        sections=[
            Section(
                "Same data, same training budget, the product's code path",
                table=table,
                notes=["Goals (issue 8):", "", *goals(results)],
            )
        ],
        data={"facts": facts, "results": results},
        plot=lambda figure: _plot(figure, results),
        facts={
            "Data": f"{facts['dataset']}; training cases {facts['train_cases']}, held-out "
            f"{facts['held_out_cases']} (never seen in training, not used to pick a checkpoint); "
            f"spacing {facts['spacing']} mm",
            "Budget": f"{budget['steps']} optimiser steps of {budget['batch_size']} case(s) x "
            f"{budget['samples_per_case']} patches {tuple(budget['patch'])}, AdamW lr "
            f"{budget['lr']}, warmup {budget['warmup_fraction']} then cosine (the hv-med train "
            "defaults otherwise: Dice+CE, grad clip 1.0, weight decay 0.05, no deep "
            f"supervision); seeds {facts['seeds']}.{slow}",
            "Load": f"other processes kept {load} CPUs busy on average during the run (a shared "
            "machine: absolute speeds are low and noisy, ratios less so)"
            + (
                f"; {facts['reused_runs']} runs were kept from an earlier invocation of "
                "identical jobs (--reuse), so the load figure covers the others only"
                if facts.get("reused_runs")
                else ""
            ),
        },
        method="Each (model, seed) is one process with one torch thread running the hv-med "
        "train code path (config.yaml -> the train parser -> the task -> the engine's fit), "
        "then hv-med predict on the raw held-out scans (last weights) and hv-med evaluate's "
        "metrics. Dice: nnU-Net rule, foreground mean over classes; a miss (class in the "
        "reference, none predicted) scores 0 and is counted under misses (misses / scored "
        "case-class pairs over all seeds); HD95 is over hits only. train vox/s: patch voxels "
        "per second of optimiser step (forward, backward, update), first step excluded. window "
        "s/vol: MONAI gaussian sliding window on the prepared held-out volume, fp32 for every row; "
        "predict s/vol: the whole hv-med predict call (read the checkpoint, build the network "
        "(for the pure-CNN control this includes the search for its matched widths), "
        "preprocess, window (bf16 autocast for the bf16 row, as hv-med predict does with the "
        "run's precision), invert, write). Peak RSS: "
        "measured, VmHWM of the training process at the end of training (imports, data, model, "
        "optimiser, activations), not an estimate.",
        warnings=MachineLoad.warnings(others, 1),
    )


def _rendered(path: Path) -> Report:
    """The report of a finished run, from its JSON: the measured numbers, date and machine."""
    data = json.loads(path.read_text())
    results = [BenchResult(**result) for result in data["results"]]
    report = build_report(results, data["facts"], data["command"])
    report.date, report.machine = data["date"], data["machine"]
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (``hv-med bench``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="hv-med bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--dataset",
        choices=("mni", "phantom"),
        default="mni",
        help="MNI152 demo brain (real MRI, default) or synthetic phantoms",
    )
    parser.add_argument("--steps", type=int, default=Budget.steps, help="optimiser steps (30)")
    parser.add_argument("--patch", type=int, nargs=3, default=list(Budget.patch))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--slow-seeds", type=int, nargs="+", help=f"seeds for {SLOW_ROW} (default: --seeds)"
    )
    parser.add_argument("--models", nargs="+", choices=list(ROWS), default=list(ROWS))
    parser.add_argument("--quick", action="store_true", help="tiny phantoms, 2 steps (tests)")
    parser.add_argument("--out-dir", type=Path, default=Path("docs/benchmarks"))
    parser.add_argument("--work-dir", type=Path, default=Path("runs/bench/medical"))
    parser.add_argument(
        "--reuse", action="store_true", help="keep finished runs of identical jobs in --work-dir"
    )
    parser.add_argument(
        "--render", type=Path, help="rewrite the report from a medical.json (no training)"
    )
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        job = json.loads(args.child.read_text())
        atomic_write_json(args.child.with_name("result.json"), run_child(job))
        return 0
    console = Console()
    if args.render is not None:
        write_report(_rendered(args.render), args.out_dir, console)
        return 0
    if args.quick:
        args.dataset, args.steps, args.patch = "phantom", 2, [32, 32, 32]
    budget = Budget(steps=args.steps, patch=tuple(args.patch))
    results, facts = run_bench(
        args.dataset, budget, args.models, args.seeds, args.slow_seeds or args.seeds, args.work_dir,
        args.quick, console, args.reuse,
    )  # fmt: skip
    # --reuse changes no number (identical jobs only): the command shown is the one to rerun.
    command = command_line("hv-med bench", [a for a in argv if a != "--reuse"])
    write_report(build_report(results, facts, command), args.out_dir, console)
    return 0


if __name__ == "__main__":
    sys.exit(main())
