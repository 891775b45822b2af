"""``hv-med``: prepare, train, evaluate and bench hybrid medical segmentation.

Built on the shared CLI chassis; ``prepare`` and ``evaluate`` (prediction folder against
reference folder, nnU-Net style) replace the chassis defaults with medical ones.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from shared.cli import OneLineArgumentParser, RunConfig, TaskSpec, build_cli
from shared.engine import InputError, reject_regularization

from .plan import MEDICAL, MedicalPlan
from .task import MedicalDataConfig, MedicalModelConfig, build_task

__all__ = ["main", "SPEC"]

# MONAI logs this once per reader on every machine without NVIDIA's decoder; it changes nothing.
logging.getLogger("monai.data.nvimgcodec_pydicom_plugin").setLevel(logging.ERROR)


def _spacing(text: str) -> tuple[float, float, float]:
    parts = [float(p) for p in text.replace("x", ",").split(",")]
    if len(parts) != 3 or min(parts) <= 0:
        raise argparse.ArgumentTypeError(f"spacing must be three positive mm values, got {text!r}")
    return parts[0], parts[1], parts[2]


def prepare_main(argv: Sequence[str]) -> int:
    """``hv-med prepare DATASET -o PREPARED``: fingerprint, reorient, resample, normalise, crop."""
    from .prepare import prepare_dataset

    parser = OneLineArgumentParser(
        prog="hv-med prepare",
        description="Clinical preprocessing of an MSD or nnU-Net dataset: fingerprint "
        "(fingerprint.json), RAS reorientation, resampling (median spacing by default), "
        "intensity normalisation by modality (CT: clip to foreground 0.5-99.5 percentiles + "
        "z-score; others: per-image z-score) and foreground cropping. Cached: a rerun only "
        "redoes cases whose inputs or settings changed.",
    )
    parser.add_argument("dataset", type=Path, help="raw dataset folder (MSD or nnU-Net v2)")
    parser.add_argument("-o", "--out", type=Path, required=True, help="prepared output folder")
    parser.add_argument("--spacing", type=_spacing, default=None, help="target mm, e.g. 1,1,2")
    parser.add_argument("--workers", type=int, default=2, help="parallel processes (2)")
    parser.add_argument("--force", action="store_true", help="redo every case")
    args = parser.parse_args(list(argv))
    if args.out.resolve() == args.dataset.resolve():
        raise InputError(f"{args.out}: the prepared folder must differ from the dataset folder")
    report = prepare_dataset(args.dataset, args.out, args.spacing, args.workers, args.force)
    Console().print(
        f"hv-med prepare: {report.prepared} cases prepared, {report.cached} cached, "
        f"spacing {tuple(round(s, 3) for s in report.target_spacing)} mm -> {report.out}/"
    )
    return 0


def evaluate_main(argv: Sequence[str]) -> int:
    """``hv-med evaluate PRED_DIR GT_DIR -o OUT``: Dice and HD95 per case and class."""
    from .data import read_labels
    from .evaluate import evaluate_folders, format_summary_table

    parser = OneLineArgumentParser(
        prog="hv-med evaluate",
        description="Score predicted label maps against references, nnU-Net style: per-case and "
        "per-class Dice and HD95, foreground mean; classes empty in both are NaN and left out. "
        "Writes summary.json, metrics.csv and overlay.png.",
    )
    parser.add_argument("pred_dir", type=Path, help="folder of predicted .nii.gz label maps")
    parser.add_argument("gt_dir", type=Path, help="folder of reference .nii.gz label maps")
    parser.add_argument("-o", "--out", type=Path, required=True, help="output folder")
    parser.add_argument("--dataset-json", type=Path, help="dataset.json giving class names")
    parser.add_argument("--images", type=Path, help="image folder for the overlay background")
    args = parser.parse_args(list(argv))
    for folder in (args.pred_dir, args.gt_dir):
        if not folder.is_dir():
            raise InputError(f"{folder}: folder not found")
    labels = read_labels(args.dataset_json) if args.dataset_json else None
    summary = evaluate_folders(args.pred_dir, args.gt_dir, args.out, labels, args.images)
    console = Console()
    console.print(format_summary_table(summary))
    console.print(f"written: {args.out}/summary.json, metrics.csv, overlay.png")
    return 0


def _validate(cfg: RunConfig) -> None:
    data = cfg.data
    if data.dataset and not Path(data.dataset).is_dir():
        raise InputError(f"--data.dataset {data.dataset}: folder not found")
    if not data.dataset and not data.prepared:
        raise InputError("give --data.dataset RAW_DATASET or --data.prepared PREPARED_FOLDER")
    if data.prepared and not data.dataset and not Path(data.prepared).is_dir():
        raise InputError(f"--data.prepared {data.prepared}: folder not found")
    if cfg.model.spatial_dims not in (2, 3):
        raise InputError(f"--model.spatial_dims must be 2 or 3, got {cfg.model.spatial_dims}")
    if any(size % 32 for size in data.patch_size):
        raise InputError(f"--data.patch_size must be multiples of 32, got {data.patch_size}")
    _validate_model(cfg)
    # The engine's MixUp/CutMix (timm) mixes class labels, not voxel-wise label maps.
    reject_regularization(
        cfg.regularization, "segmentation", ("mixup_alpha", "cutmix_alpha", "mix_prob")
    )


def _validate_model(cfg: RunConfig) -> None:
    """Refuse HybridUNet settings given for a MONAI baseline, which would ignore them."""
    model = cfg.model
    if model.arch in ("hybrid", "cnn"):
        return
    defaults = MedicalModelConfig()
    for name in ("preset", "deep_supervision", "pure_cnn"):
        value = getattr(model, name)
        if value != getattr(defaults, name):
            raise InputError(
                f"--model.{name} {value}: applies to --model.arch hybrid and cnn only, not "
                f"{model.arch}"
            )
    reject_regularization(cfg.regularization, f"--model.arch {model.arch}", ("drop_path_rate",))


SPEC = TaskSpec(
    prog="hv-med",
    description="Hybrid CNN-Transformer 3D medical segmentation (MONAI), scored by Dice.",
    data_config=MedicalDataConfig,
    model_config=MedicalModelConfig,
    build=build_task,
    vertical=MEDICAL,
    headline="val/dice",
    mode="max",
    path_fields=("data.dataset", "data.prepared"),
    validate=_validate,
    bench=lambda argv: _bench(argv),
    example_input=lambda cfg: _example_input(cfg),
    commands={
        "prepare": ("preprocess a raw MSD/nnU-Net dataset: DATASET -o PREPARED", prepare_main),
        "evaluate": ("Dice/HD95 of predictions against references: PRED GT -o OUT", evaluate_main),
        "predict": (
            "segment scans (NIfTI, folders, DICOM): INPUT... -o OUT --checkpoint CKPT",
            lambda argv: _predict(argv),
        ),
    },
)


def _example_input(plan: MedicalPlan):
    """Two patch-sized inputs with the plan's channel count (a 2D patch for 2D networks)."""
    import torch

    return torch.randn(2, len(plan.modalities), *plan.patch_size)


def _bench(argv: Sequence[str]) -> int:
    from .bench import main as bench_main

    return bench_main(argv)


def _predict(argv: Sequence[str]) -> int:
    from .predict import predict_main

    return predict_main(SPEC, argv)


main = build_cli(SPEC)

if __name__ == "__main__":
    sys.exit(main())
