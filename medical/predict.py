"""``hv-med predict``: sliding-window segmentation of new scans, saved in their own geometry.

Each input (a NIfTI file, a folder of them, or a DICOM series folder) goes through the training
run's preprocessing (RAS, resampling, normalisation, crop), sliding-window inference with
gaussian blending (the stitching buffer lives on the CPU so a 512x512x300 CT fits), optional
flip test-time augmentation, then MONAI's ``Invertd`` undoes crop, resampling and orientation, so
the label map is written with the input's original shape, spacing and affine.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from monai.transforms import Invertd
from rich.console import Console
from rich.progress import Progress

from shared.cli import OneLineArgumentParser, load_run
from shared.engine.io import InputError, file_stem

from .data import NIFTI_ENDINGS, read_dicom_series, save_nifti
from .prepare import build_pipeline

__all__ = ["ScanInput", "collect_inputs", "predict_main", "segment"]


def _is_nifti(path: Path) -> bool:
    return path.name.endswith(NIFTI_ENDINGS)


def _is_dicom_dir(path: Path) -> bool:
    return path.is_dir() and any(
        f.suffix.lower() == ".dcm" or (f.is_file() and f.read_bytes()[128:132] == b"DICM")
        for f in list(path.iterdir())[:20]
    )


@dataclass
class ScanInput:
    """One scan: a NIfTI file, nnU-Net channel files ``<case>_<XXXX>``, or a DICOM folder."""

    name: str
    files: list[Path]


_CHANNEL_FILE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})\.nii(\.gz)?$")


def _group_nifti(files: list[Path]) -> list[ScanInput]:
    """nnU-Net channel files (``case_0000``, ``case_0001`` ...) become one multi-channel scan."""
    grouped: dict[str, list[tuple[int, Path]]] = {}
    singles = []
    for file in files:
        match = _CHANNEL_FILE.match(file.name)
        if match:
            grouped.setdefault(match["case"], []).append((int(match["channel"]), file))
        else:
            singles.append(ScanInput(file_stem(file), [file]))
    scans = []
    for case, channels in grouped.items():
        channels.sort()
        indexes = [index for index, _ in channels]
        if indexes != list(range(len(indexes))):
            raise InputError(
                f"{channels[0][1].parent / case}: channel files {indexes} are not "
                f"0..{len(indexes) - 1}"
            )
        scans.append(ScanInput(case, [file for _, file in channels]))
    return sorted(singles + scans, key=lambda scan: scan.name)


def collect_inputs(paths: Sequence[Path]) -> list[ScanInput]:
    """Scans named by ``paths``: NIfTI files, folders of them, DICOM series folders."""
    nifti: list[Path] = []
    scans: list[ScanInput] = []
    for path in paths:
        if not path.exists():
            raise InputError(f"{path}: input not found")
        if path.is_file():
            if not _is_nifti(path):
                raise InputError(f"{path}: not a NIfTI file (.nii or .nii.gz)")
            nifti.append(path)
        elif _is_dicom_dir(path):
            scans.append(ScanInput(path.name, [path]))
        else:
            inner = sorted(p for p in path.iterdir() if _is_nifti(p) or _is_dicom_dir(p))
            if not inner:
                raise InputError(f"{path}: no NIfTI files or DICOM series inside")
            nifti += [p for p in inner if p.is_file()]
            scans += [ScanInput(p.name, [p]) for p in inner if p.is_dir()]
    return sorted(scans + _group_nifti(nifti), key=lambda scan: scan.name)


def _tta_probabilities(task, image: torch.Tensor, flips: bool) -> torch.Tensor:
    """Softmax of sliding-window logits, averaged over axis flips when ``flips``."""
    axes_sets = [()] + ([(2,), (3,), (4,)] if flips else [])
    total = None
    for axes in axes_sets:
        flipped = image.flip(axes) if axes else image
        probs = task.infer(flipped).softmax(1)
        probs = probs.flip(axes) if axes else probs
        total = probs if total is None else total + probs
    return total / len(axes_sets)


def _pipeline_input(scan: ScanInput, scratch: Path) -> str | list[str]:
    """NIfTI files pass through (a list for channel files); a DICOM series becomes a NIfTI."""
    if len(scan.files) > 1:
        return [str(file) for file in scan.files]
    source = scan.files[0]
    if not source.is_dir():
        return str(source)
    array, affine = read_dicom_series(source)
    converted = scratch / f"{source.name}.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(array, dtype=np.float32), affine), str(converted))
    return str(converted)


def segment(
    task, manifest: dict, scan: ScanInput, flips: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Label map, class probabilities (C first) and affine, all in the input's own geometry."""
    pipeline = build_pipeline(manifest["target_spacing"], manifest["normalization"], False)
    with tempfile.TemporaryDirectory() as scratch:
        try:
            item = pipeline({"image": _pipeline_input(scan, Path(scratch))})
        except InputError:
            raise
        except Exception as err:  # MONAI wraps reader errors in RuntimeError chains
            raise InputError(
                f"{scan.files[0]}: could not be read or preprocessed ({type(err).__name__})"
            ) from None
    image = item["image"]
    expected = len(manifest["modalities"])
    if image.shape[0] != expected:
        raise InputError(
            f"{scan.files[0]}: {image.shape[0]} channel(s), the model expects {expected}"
        )
    with torch.inference_mode():
        probs = _tta_probabilities(task, image.unsqueeze(0).as_tensor().float(), flips)[0]
    # Both maps carry the image's transform history, so Invertd can undo crop, spacing, RAS.
    for key, value in (("pred", probs.argmax(0, keepdim=True).float()), ("probs", probs)):
        item[key] = type(image)(value, meta=image.meta)
        item[key].applied_operations = list(image.applied_operations)
    inverted = Invertd(
        keys=["pred", "probs"], transform=pipeline, orig_keys="image", nearest_interp=[True, False]
    )(item)
    label = inverted["pred"][0].numpy().round().astype(np.uint8)
    affine = np.asarray(image.meta["original_affine"], dtype=np.float64)
    # Undoing the crop pads with zeros: outside the foreground box (and partly at its blurred
    # edge) the classes' probabilities sum to less than 1. That missing mass is background.
    probs = inverted["probs"].numpy().astype(np.float32)
    probs[0] += np.clip(1.0 - probs.sum(0), 0.0, None)
    return label, probs, affine


def predict_main(spec, argv: Sequence[str]) -> int:
    """``hv-med predict INPUT... -o OUT --checkpoint CKPT [--tta] [--overlap F]``."""
    parser = OneLineArgumentParser(prog="hv-med predict", description=__doc__)
    parser.add_argument("inputs", nargs="+", type=Path, help="NIfTI files, folders, DICOM dirs")
    parser.add_argument("-o", "--out", type=Path, required=True, help="output folder")
    parser.add_argument("--checkpoint", type=Path, required=True, help="a run's .ckpt file")
    parser.add_argument("--tta", action="store_true", help="average over flips on 3 axes")
    parser.add_argument("--overlap", type=float, default=None, help="sliding-window overlap")
    parser.add_argument(
        "--device", default="auto", help="where windows run: auto (GPU if present), cpu, cuda:0"
    )
    parser.add_argument(
        "--probabilities", action="store_true", help="also save class probabilities (4D NIfTI)"
    )
    args, rest = parser.parse_known_args(list(argv))
    sources = collect_inputs(args.inputs)
    targets = [(scan, args.out / f"{scan.name}.nii.gz") for scan in sources]
    resolved_inputs = {file.resolve() for scan in sources for file in scan.files}
    for _, target in targets:
        if target.resolve() in resolved_inputs:
            raise InputError(f"{target}: would overwrite an input; choose another -o")
    cfg, task, data = load_run(spec, args.checkpoint, rest, "predict")
    if args.overlap is not None:
        task.sw_overlap = args.overlap
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device
    # Windows run on `device`; whole volumes and the stitching buffer stay on the CPU.
    task.to("cpu" if device == "auto" else device).eval()
    manifest = data.manifest()
    console = Console()
    with Progress(console=console, transient=True) as progress:
        job = progress.add_task("segmenting", total=len(sources))
        for scan, target in targets:
            label, probs, affine = segment(task, manifest, scan, args.tta)
            save_nifti(target, label, affine)
            if args.probabilities:
                # Channels last, as NIfTI tools expect a 4D image: (X, Y, Z, classes).
                probs_file = target.with_name(f"{scan.name}_probs.nii.gz")
                save_nifti(probs_file, np.moveaxis(probs, 0, -1), affine)
            progress.advance(job)
    labels = json.dumps(manifest["labels"])
    console.print(f"hv-med predict: {len(sources)} input(s) -> {args.out}/ (labels {labels})")
    return 0
