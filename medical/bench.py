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
control at matched parameters, MONAI ``UNet`` (the simple baseline), ``SegResNet`` and
``SwinUNETR`` (feature size 24). Processes, seeds, statistics, failures, ``--reuse``, machine load
and the report are :mod:`shared.bench.product`'s; this file holds what is medical.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
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
    speed_ratio,
)
from shared.engine.io import atomic_write_yaml
from shared.memory import peak_rss_mib

from .phantom import PhantomConfig, write_mni_demo, write_phantom_dataset

__all__ = ["ABLATION", "BENCH", "Budget", "ablation_goals", "build_report", "goals", "main",
           "run_child"]


def _variant(
    name: str, arch: str, precision: str = "32-true", family: str = "monai", preset: str = "med_cpu"
) -> Variant:
    options = {"arch": arch, "precision": precision}
    if arch in ("hybrid", "cnn"):
        options["preset"] = preset
    return Variant(name, family, options)


VARIANTS = [
    _variant("hybrid", "hybrid", family=OURS),
    _variant("hybrid, bf16-mixed", "hybrid", "bf16-mixed", family=OURS),
    _variant("hybrid, attention from 1/8", "hybrid", family=OURS,
             preset="med_cpu-attention_from_r8"),
    _variant("hybrid, attention from 1/8, Xavier init", "hybrid", family=OURS,
             preset="med_cpu-attention_from_r8_xavier"),
    _variant("pure CNN, matched params", "cnn", family=OURS),
    _variant("MONAI UNet", "unet"),
    _variant("MONAI SegResNet", "segresnet"),
    _variant("MONAI SwinUNETR-24", "swinunetr"),
]
ABLATION_BASE = "core v2 block (before)"
ABLATION_V1 = "core v1 block"
ABLATION_DEFAULT = "med_cpu default (after)"
ABLATION_VARIANTS = [
    _variant(ABLATION_BASE, "hybrid", family=OURS, preset="med_cpu-core_v2"),
    _variant(ABLATION_V1, "hybrid", family=OURS, preset="med_cpu-core_v1"),
    *(
        _variant(f"v2 + {change}", "hybrid", family=OURS, preset=f"med_cpu-{key}")
        for change, key in (
            ("residual strength 1.0", "residual_1.0"),
            ("batch norm", "batch_norm"),
            ("instance norm", "instance_norm"),
            ("no ReLU after the sum", "no_relu_after_sum"),
            ("gate bias +2", "gate_bias_2"),
            ("zero-init last norm", "zero_init_last"),
            ("attention on 1/3 of the width", "attention_third"),
            ("conv path with its own shortcut", "conv_shortcut"),
        )
    ),
    _variant(ABLATION_DEFAULT, "hybrid", family=OURS),
]
"""``hv-med bench --ablation``: today's block with one change each, the core-v1 block, and the
default ``med_cpu`` the ablation led to (:data:`medical.model.ABLATION_PRESETS`)."""

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


ABLATION_BUDGET = Budget(steps=20, batch_size=2, samples_per_case=4)
"""The demo's schedule (``python -m medical.demo``: 20 epochs of one step of 2 cases x 4
patches 64x64x32, lr 2e-3, warmup 0.1), where the regression was seen."""


def _dataset(kind: str, root: Path, quick: bool) -> Path:
    if kind == "mni":
        return write_mni_demo(root / "MNI152Brain")
    if kind == "mni1mm-ends":
        return write_mni_demo(root / "MNI152Brain1mmEnds", downsample=1, held_out="ends")
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
        "model": {"arch": job["options"]["arch"],
                  **({"preset": job["options"]["preset"]} if "preset" in job["options"] else {})},
        "optim": {"lr": budget.lr, "warmup_fraction": budget.warmup_fraction},
        "trainer": {
            "max_steps": budget.steps,
            "max_epochs": budget.steps,  # an epoch is at least one step: steps decide
            "batch_size": budget.batch_size,
            "precision": job["options"]["precision"],
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


def _load_network(checkpoint: Path, cfg: Any) -> Any:
    """The trained network as ``hv-med predict`` loads it (the one checkpoint-loading call)."""
    from .predict import load_predictor

    return load_predictor(checkpoint, cfg)[0]  # the inference contract, wrapped for windows


def _score(pred_dir: Path, label_dir: Path, out_dir: Path, labels: dict[int, str]) -> dict:
    """``hv-med evaluate``'s scores of a prediction folder (the one call of its routine)."""
    from .evaluate import evaluate_folders

    return evaluate_folders(pred_dir, label_dir, out_dir, labels, num_overlays=0)


def run_child(job: dict[str, Any]) -> dict[str, Any]:
    """Train one (model, seed) the way ``hv-med train`` does, predict and score the held-out set.

    Runs in a child process of :mod:`shared.bench.product`; returns the measured numbers.
    """
    from shared.cli import parse_task_command
    from shared.engine.trainer import fit
    from shared.layers import count_parameters

    from .cli import SPEC
    from .predict import predict_main
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
    if predict_main(SPEC, [*job["images"], "-o", str(pred_dir), "--checkpoint", str(checkpoint)]):
        raise RuntimeError(f"hv-med predict failed on {checkpoint}")
    predict_seconds = (time.perf_counter() - start) / len(job["images"])
    labels = {int(k): v for k, v in job["labels"].items()}
    summary = _score(pred_dir, Path(job["label_dir"]), run_dir / "evaluation", labels)
    # The sliding window alone (hv-med predict's network and settings, on the prepared volume),
    # once more after predict has warmed it up: predict's total also reads, resamples, inverts.
    task = _load_network(checkpoint, cfg).eval()
    window, load = [], val_transforms()  # the volumes validation would run on
    for case in load_prepared(Path(job["prepared"])):
        if case["case"] in job["cases"]:
            image = load(case)["image"][None]
            with torch.inference_mode():
                start = time.perf_counter()
                task.infer(image)
                window.append(time.perf_counter() - start)
    probe = _attention_probe(task, image, tuple(job["budget"]["patch"])) if window else {}
    per_class = {f"dice/{k}": v["dice"] for k, v in summary["mean"].items()}
    # Foreground-mean Dice of each held-out volume (nnU-Net rule: NaN classes left out).
    per_case = {
        f"case_dice/{case['case']}": _mean_of(case["dice"].values())
        for case in summary["metric_per_case"]
    }
    metrics = {
        "params": count_parameters(module.model),
        "train_seconds": train_seconds,
        "train_voxels_per_s": timer.voxels / timer.seconds if timer.seconds else math.nan,
        "peak_rss_gib": peak,
        "predict_seconds_per_volume": predict_seconds,
        "window_seconds_per_volume": statistics.mean(window) if window else math.nan,
        "dice": summary["foreground_mean"]["dice"],
        "hd95_mm": summary["foreground_mean"]["hd95"],
        "misses": _misses(pred_dir, Path(job["label_dir"]), sorted(c for c in labels if c)),
        "scored_pairs": len(summary["metric_per_case"]) * len(per_class),
        **per_class,
        **per_case,
        **probe,
    }
    info = {"steps": timer.steps, "classes": list(summary["mean"]),
            "cases": [case["case"] for case in summary["metric_per_case"]]}  # fmt: skip
    return {"metrics": metrics, "info": info}


def _attention_probe(task: Any, image: torch.Tensor, patch: tuple[int, ...]) -> dict[str, float]:
    """What each attention layer of the trained network does on one held-out patch (the first
    window of the volume, zero-padded to the training patch): ``attn_keys/<layer>`` keys per
    query N, ``attn_h/<layer>`` entropy over ``ln N`` (1: uniform, no choice made) and
    ``gate_conv/<layer>`` the mean gate ``w`` (the conv path's share; ``1 - w`` is attention's).
    Empty for networks without attention (the control, the MONAI baselines)."""
    from shared.monitors import attention_entropies, enable_attention_monitoring

    network = task.model
    if not hasattr(network, "backbone") or not enable_attention_monitoring(network):
        return {}
    spatial = image.shape[2:]
    pad = [p for size, want in zip(reversed(spatial), reversed(patch), strict=True)
           for p in (0, max(0, want - size))]  # fmt: skip
    window = torch.nn.functional.pad(image, pad)[(..., *(slice(0, want) for want in patch))]
    norms: dict[str, list[float]] = {}
    hooks = []
    for name, layer in network.attention_layers().items():
        # ||attention branch (output projection)|| / ||the unit's input||: how much of the unit's
        # output attention makes (it is a residual unit: input + branch).
        hooks.append(layer.register_forward_pre_hook(
            lambda _, args, name=name: norms.setdefault(name, []).append(float(args[0].norm()))))
        hooks.append(layer.proj.register_forward_hook(
            lambda _, __, out, name=name: norms[name].append(float(out.norm()))))  # fmt: skip
    with torch.inference_mode():
        task(window)
    for hook in hooks:
        hook.remove()
    gates = network.backbone.gate_values()
    probe = {}
    for name, reading in attention_entropies(network).items():
        layer = name.removeprefix("backbone.").removesuffix(".attention")
        probe[f"attn_keys/{layer}"] = reading.keys
        probe[f"attn_h/{layer}"] = reading.normalised
        unit_input, branch = norms[name.removeprefix("backbone.")]
        probe[f"attn_share/{layer}"] = branch / unit_input if unit_input else math.nan
        gate = gates.get(f"{layer}.fusion")
        if gate is not None:
            probe[f"gate_conv/{layer}"] = float(gate.float().mean())
    enable_attention_monitoring(network, False)
    return probe


def _mean_of(values: Any) -> float:
    finite = [float(v) for v in values if v is not None]
    return statistics.fmean(finite) if finite else math.nan


def _per_class(row: Row) -> str:
    return ", ".join(f"{c} {format_stat(row.stat(f'dice/{c}'))}" for c in row.info("classes", []))


def _per_case(row: Row) -> str:
    """Dice of each held-out volume (mean ± std over seeds)."""
    return ", ".join(
        f"{c} {format_stat(row.stat(f'case_dice/{c}'))}" for c in row.info("cases", [])
    )


def _misses_cell(row: Row) -> str:
    """Misses over scored (case, class) pairs, summed over the finished seeds."""
    if not row.ok:
        return "n/a"
    misses = sum(int(run.metrics["misses"]) for run in row.ok)
    return f"{misses} / {sum(int(run.metrics['scored_pairs']) for run in row.ok)}"


_CASE_COLUMN = Column("Dice per held-out volume", cell=_per_case)
# What both reports show: the per-class, per-volume and mean Dice, size, HD95, misses, speed.
_ACCURACY_COLUMNS = [
    Column("per-class Dice", cell=_per_class),
    _CASE_COLUMN,
    Column("params M", "params", ".2f", scale=1e-6, spread=False),
    Column("Dice", "dice", better="higher", plot=True),
    Column("HD95 mm (hits)", "hd95_mm", ".2f", better="lower"),
    Column("misses", cell=_misses_cell),
]
_TRAIN_SPEED_COLUMN = Column("train vox/s", "train_voxels_per_s", ",.0f", better="higher",
                             plot=True)  # fmt: skip

BENCH = ProductBench(
    name="medical",
    title="Medical segmentation benchmark",
    prog="hv-med bench",
    child="medical.bench:run_child",
    variants={v.name: v for v in VARIANTS},
    ours="hybrid",
    baseline="MONAI UNet",
    columns=[
        *_ACCURACY_COLUMNS,
        _TRAIN_SPEED_COLUMN,
        Column("window s/vol", "window_seconds_per_volume", ".2f", better="lower"),
        Column("predict s/vol", "predict_seconds_per_volume", ".1f", better="lower"),
        Column("peak RSS GiB", "peak_rss_gib", ".2f", better="lower"),
    ],
    speed_keys=frozenset({"train_seconds", "train_voxels_per_s", "predict_seconds_per_volume",
                          "window_seconds_per_volume"}),  # fmt: skip
    quick={"dataset": "phantom", "steps": 2, "patch": [32, 32, 32],
           "models": ["hybrid", "MONAI UNet"], "seeds": [0, 1]},  # fmt: skip
)


ABLATION = ProductBench(
    name="medical_ablation",
    title="Medical block ablation at the demo's schedule: the core-v1 block and one-change "
    "variants of today's block",
    prog="hv-med bench",
    child="medical.bench:run_child",
    variants={v.name: v for v in ABLATION_VARIANTS},
    ours=ABLATION_DEFAULT,
    baseline=ABLATION_V1,
    columns=[*_ACCURACY_COLUMNS, _TRAIN_SPEED_COLUMN],
    speed_keys=BENCH.speed_keys,
    quick={"dataset": "phantom", "steps": 2, "patch": [32, 32, 32], "batch_size": 1,
           "samples_per_case": 2, "models": [ABLATION_BASE, ABLATION_V1],
           "seeds": [0]},  # fmt: skip
)


def ablation_goals(rows: list[Row]) -> list[str]:
    """Each variant against the core-v2 block, paired by seed; the default against core v1."""
    by_name = {row.name: row for row in rows}
    base = by_name.get(ABLATION_BASE)
    lines = []
    if base is not None:
        for row in rows:
            if row is base:
                continue
            diff = paired(row, base, "dice", 100)
            lines.append(
                f"{row.name} - {ABLATION_BASE}: {format_stat(diff, '+.1f')} Dice points "
                f"(paired by seed, {diff.n} seeds)."
            )
    ours, v1 = by_name.get(ABLATION_DEFAULT), by_name.get(ABLATION_V1)
    if ours is not None and v1 is not None and ours.stat("dice").n and v1.stat("dice").n:
        dice, other = ours.stat("dice").mean, v1.stat("dice").mean
        lines.append(
            f"The default learns at least as fast as the core-v1 block: "
            f"**{_verdict(dice >= other)}**, {dice:.3f} vs {other:.3f} Dice at the same budget "
            f"({100 * (dice - other):+.1f} points)."
        )
    return lines


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def goals(rows: list[Row]) -> list[str]:
    """The issue's goals, each PASS or FAIL with its numbers (only those whose rows ran)."""
    by_name = {row.name: row for row in rows}
    ours = by_name.get("hybrid")
    if ours is None or ours.stat("dice").n == 0:
        return []
    lines, dice = [], ours.stat("dice").mean
    for name in ("MONAI UNet", "MONAI SwinUNETR-24"):
        peer = by_name.get(name)
        if peer is not None and peer.stat("dice").n:
            other = peer.stat("dice").mean
            lines.append(
                f"Dice >= {name}: **{_verdict(dice >= other)}**, hybrid {dice:.3f} vs {other:.3f} "
                f"({100 * (dice - other):+.1f} points; {ours.stat('dice').n} vs "
                f"{peer.stat('dice').n} seeds)."
            )
    for name, target in (("MONAI UNet", 0.5), ("MONAI SwinUNETR-24", 8.0)):
        if name in by_name:
            ratio, why = speed_ratio(ours, by_name[name], "train_voxels_per_s")
            lines.append(
                f"Training speed >= {target}x {name}: "
                + (f"**{_verdict(ratio >= target)}**, {ratio:.2f}x (voxels/s, this run)."
                   if ratio is not None else f"n/a: {why}.")  # fmt: skip
            )
    if "pure CNN, matched params" in by_name:
        diff = paired(ours, by_name["pure CNN, matched params"], "dice", 100)
        lines.append(
            f"Hybrid - pure CNN at matched parameters: {format_stat(diff, '+.1f')} Dice points "
            f"(paired by seed, {diff.n} seeds); the design brief claims +4.1."
        )
    bf16 = by_name.get("hybrid, bf16-mixed")
    if bf16 is not None:
        ratio, why = speed_ratio(bf16, ours, "train_voxels_per_s")
        speed = f"{ratio:.2f}x the speed" if ratio is not None else f"speed ratio n/a ({why})"
        lines.append(
            f"bf16-mixed vs fp32 training of the hybrid: {speed}, Dice "
            f"{format_stat(bf16.stat('dice'))} vs {format_stat(ours.stat('dice'))}, peak RSS "
            f"{format_stat(bf16.stat('peak_rss_gib'), '.2f')} vs "
            f"{format_stat(ours.stat('peak_rss_gib'), '.2f')} GiB."
        )
    return lines


def attention_section(rows: list[Row]) -> Section | None:
    """What the attention layers of our trained hybrids did on a held-out patch (mean ± std
    over seeds): keys per query, normalised entropy and the gate's conv share."""
    lines = []
    for row in rows:
        layers = sorted({key.split("/", 1)[1] for run in row.ok for key in run.metrics
                         if key.startswith("attn_h/")})  # fmt: skip
        for layer in layers:
            lines.append([row.label, layer,
                          format_stat(row.stat(f"attn_keys/{layer}"), ".0f", spread=False),
                          format_stat(row.stat(f"attn_h/{layer}")),
                          format_stat(row.stat(f"attn_share/{layer}")),
                          format_stat(row.stat(f"gate_conv/{layer}"))])  # fmt: skip
    if not lines:
        return None
    return Section(
        "What the attention sees (trained hybrids, one held-out patch)",
        text=["Per attention layer of each hybrid row: N, the keys each query attends over "
              "(tokens at that level of the training patch, or of a window); h = entropy / ln N "
              "(1: uniform attention, no position preferred; the brief's band is 0.72-0.90); "
              "branch / input, the norm of the attention branch (its output projection) over "
              "the norm of the attention unit's input (the unit returns input + branch); w, the "
              "gate's mean weight of the conv path (attention gets 1 - w)."],
        table=Table(["model", "layer", "keys N", "h = H / ln N", "branch / input", "conv gate w"],
                    lines,
                    text_columns=2),
    )  # fmt: skip


def build_report(rows: list[Row], facts: dict[str, Any], command: str) -> Report:
    """The medical report: the harness's table and notes, the goals, how it was measured."""
    budget = facts["budget"]
    slow = (
        f" {SLOW_ROW}: seeds {facts['slow_seeds']} only (same steps and settings; one run takes "
        "about as long as all other rows of a seed together)."
        if facts["slow_seeds"] != facts["seeds"] and any(r.name == SLOW_ROW for r in rows)
        else ""
    )
    ablation = facts.get("ablation", False)
    return product_report(
        ABLATION if ablation else BENCH, rows, facts, command,
        goals=ablation_goals(rows) if ablation else goals(rows),
        sections=[section for section in (attention_section(rows),) if section is not None],
        fact_lines={
            "Data": f"{facts['dataset']}; training cases {facts['train_cases']}, held-out "
            f"{facts['held_out_cases']} (never seen in training, not used to pick a checkpoint); "
            f"spacing {facts['spacing']} mm",
            "Budget": f"{budget['steps']} optimiser steps of {budget['batch_size']} case(s) x "
            f"{budget['samples_per_case']} patches {tuple(budget['patch'])}, AdamW lr "
            f"{budget['lr']}, warmup {budget['warmup_fraction']} then cosine (the hv-med train "
            f"defaults otherwise: Dice+CE, grad clip 1.0, weight decay 0.05, no deep "
            f"supervision).{slow}",
        },
        method="Each (model, seed) is one process with one torch thread running the hv-med "
        "train code path (config.yaml -> the train parser -> the task -> the engine's fit), "
        "then hv-med predict on the raw held-out scans (last weights) and hv-med evaluate's "
        "metrics. Dice: nnU-Net rule, foreground mean over classes; a miss (class in the "
        "reference, none predicted) scores 0 and is counted under misses (misses / scored "
        "case-class pairs over all finished seeds); HD95 is over hits only. train vox/s: patch "
        "voxels per second of optimiser step (forward, backward, update), first step excluded. "
        "window s/vol: MONAI gaussian sliding window on the prepared held-out volume, fp32 for "
        "every row; predict s/vol: the whole hv-med predict call (read the checkpoint, build the "
        "network (for the pure-CNN control this includes the search for its matched widths), "
        "preprocess, window (bf16 autocast for the bf16 row, as hv-med predict does with the "
        "run's precision), invert, write). Peak RSS: measured, VmHWM of the training process at "
        "the end of training (imports, data, model, optimiser, activations), not an estimate.",
    )  # fmt: skip


def _prepare(args: argparse.Namespace, work: Path) -> tuple[Any, dict[str, Any]]:
    """Write and prepare the data once; the job of each (variant, seed) and the data facts."""
    from .prepare import prepare_dataset

    work = work.resolve()
    budget = Budget(steps=args.steps, patch=tuple(args.patch), batch_size=args.batch_size,
                    samples_per_case=args.samples_per_case)  # fmt: skip
    raw = _dataset(args.dataset, work / "raw", args.quick)
    prepared = work / "prepared"
    prepare_dataset(raw, prepared, workers=1)
    cases, images, label_dir = _held_out(raw, work)
    manifest = json.loads((prepared / "dataset.json").read_text())

    def job_for(variant: Variant, seed: int | None) -> dict[str, Any]:
        return {"budget": asdict(budget), "prepared": str(prepared),
                "images": images, "cases": cases, "label_dir": str(label_dir),
                "labels": manifest["labels"]}  # fmt: skip

    facts = {
        "dataset": args.dataset,
        "train_cases": [c["case"] for c in manifest["cases"] if c["case"] not in cases],
        "held_out_cases": cases,
        "labels": manifest["labels"],
        "spacing": manifest["target_spacing"],
        "budget": asdict(budget),
        "slow_seeds": list(args.slow_seeds or args.seeds),
        "variant_seeds": {SLOW_ROW: list(args.slow_seeds or args.seeds)},
        "ablation": args.ablation,
    }
    return job_for, facts


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (``hv-med bench``)."""
    parser = argparse.ArgumentParser(
        prog="hv-med bench", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    argv = list(sys.argv[1:] if argv is None else argv)
    ablation = "--ablation" in argv
    bench, budget = (ABLATION, ABLATION_BUDGET) if ablation else (BENCH, Budget())
    parser.add_argument("--ablation", action="store_true",
                        help="the block ablation instead (its own variants; budget: the "
                        "demo's schedule, 20 steps of 2 cases x 4 patches) -> "
                        "medical_ablation.md")  # fmt: skip
    parser.add_argument("--dataset", choices=("mni", "mni1mm-ends", "phantom"), default="mni",
                        help="MNI152 brain (real MRI): the demo's (2 mm, top slab held out; "
                        "default), or at its own 1 mm with the bottom and the top of four slabs "
                        "held out (two held-out volumes); or phantoms")  # fmt: skip
    parser.add_argument("--steps", type=int, default=budget.steps, help="optimiser steps")
    parser.add_argument("--patch", type=int, nargs=3, default=list(budget.patch))
    parser.add_argument("--batch-size", type=int, default=budget.batch_size,
                        help="cases per step")  # fmt: skip
    parser.add_argument("--samples-per-case", type=int, default=budget.samples_per_case,
                        help="patches per case per step")  # fmt: skip
    parser.add_argument("--slow-seeds", type=int, nargs="+",
                        help=f"seeds for {SLOW_ROW} (default: --seeds)")  # fmt: skip
    add_arguments(parser, bench, f"runs/bench/{bench.name}")
    return bench_main(bench, parser, argv, _prepare, build_report)


if __name__ == "__main__":
    sys.exit(main())
