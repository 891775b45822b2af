"""``hv-med predict``: sliding-window segmentation of new scans, saved in their own geometry.

Everything comes from the checkpoint's :class:`~medical.plan.MedicalPlan` (the engine's
inference contract, :func:`shared.engine.contract.load_for_inference`): the run's preprocessing
(RAS, resampling, crop, normalisation), label names and network settings, so predict works from
any folder and without the prepared data. Each input (a NIfTI file, a folder of them, or a DICOM
series folder) is checked against the plan (channel count: error; modality, spacing, normalised
intensity range: a warning naming the file), goes through sliding-window inference with gaussian
blending (the stitching buffer lives on the CPU), optional flip test-time augmentation, then
MONAI's ``Invertd`` undoes crop, resampling and orientation, so the label map is written with
the input's original shape, spacing and affine.

Scans go through Lightning's predict loop (the engine's inference trainer), so
``--trainer.devices N --trainer.num_nodes M --trainer.strategy ddp`` shares a folder of scans
among N x M processes: each rank segments a disjoint share and writes each output once,
atomically.

Memory: one class-probability buffer is the only full-size multi-channel array; softmax, flips
and argmax work on slabs of it, and probabilities are inverted one class at a time and only when
asked for (a 512x512x300 CT stays under 4 GiB resident, see docs/benchmarks/medical.md).
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
from monai.transforms import Invertd
from rich.console import Console

from shared.cli import TaskSpec, parse_inference_command
from shared.engine.config import OptimConfig
from shared.engine.contract import load_for_inference
from shared.engine.io import InputError, file_stem
from shared.engine.jobs import run_over_inputs
from shared.engine.trainer import set_attention_precision

from .data import NIFTI_ENDINGS, ras_spacing_and_shape, read_dicom_series, save_nifti
from .normalization import strided_sample
from .plan import MEDICAL, MedicalPlan
from .prepare import build_pipeline
from .task import RunConfig, SegmentationTask

__all__ = [
    "ScanInput",
    "write_segmentation",
    "check_input",
    "collect_inputs",
    "load_predictor",
    "predict_main",
    "segment",
]

# Slab thickness (voxels along the last axis) for softmax, flips and argmax on the full buffer.
SLAB = 16
# "Far" from the training data: a spacing outside [min / 2, 2 * max] of the training scans', or
# a normalised 0.5/99.5 percentile beyond the training range widened by half its width.
SPACING_FACTOR = 2.0
RANGE_MARGIN = 0.5


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


def _slabs(size: int) -> Iterator[slice]:
    for start in range(0, size, SLAB):
        yield slice(start, min(start + SLAB, size))


def _softmax_(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over classes (dim 1) in place, slab by slab: no second full-size buffer."""
    for z in _slabs(logits.shape[-1]):
        logits[..., z] = logits[..., z].float().softmax(1)
    return logits


def _add_flipped_(total: torch.Tensor, probs: torch.Tensor, axes: tuple[int, ...]) -> None:
    """``total += probs.flip(axes)`` slab by slab along an axis that is not flipped."""
    along = next(a for a in (4, 3, 2) if a not in axes)
    for s in _slabs(probs.shape[along]):
        index = [slice(None)] * probs.ndim
        index[along] = s
        total[tuple(index)] += probs[tuple(index)].flip(axes)


def _probabilities(task: Any, image: torch.Tensor, flips: bool) -> torch.Tensor:
    """Class probabilities (1, C, ...) on the CPU, averaged over axis flips when ``flips``.

    A 2D network sees each slice alone, so a flip across its slice axis would only repeat the
    plain pass: that axis is skipped.
    """
    total = _softmax_(task.infer(image).float())
    if flips:
        slice_axis = getattr(task, "slice_axis", None)
        flipped = [(a,) for a in (2, 3, 4) if slice_axis is None or a != slice_axis + 2]
        for axes in flipped:
            probs = _softmax_(task.infer(image.flip(axes)).float())
            _add_flipped_(total, probs, axes)
            del probs
        total /= len(flipped) + 1
    return total


def _argmax(probs: torch.Tensor) -> torch.Tensor:
    """(1, ...) uint8 label map of (1, C, ...) probabilities, slab by slab (no int64 copy)."""
    label = torch.empty((1, *probs.shape[2:]), dtype=torch.uint8)
    for z in _slabs(probs.shape[-1]):
        label[..., z] = probs[0, ..., z].argmax(0).to(torch.uint8)
    return label


def _pipeline_input(scan: ScanInput, scratch: Path) -> tuple[str | list[str], str | None]:
    """NIfTI files pass through (a list for channel files); a DICOM series becomes a NIfTI.

    Also the DICOM Modality tag when there is one (NIfTI does not record the modality).
    """
    if len(scan.files) > 1:
        return [str(file) for file in scan.files], None
    source = scan.files[0]
    if not source.is_dir():
        return str(source), None
    array, affine = read_dicom_series(source)
    converted = scratch / f"{source.name}.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(array, dtype=np.float32), affine), str(converted))
    return str(converted), _dicom_modality(source)


def _dicom_modality(folder: Path) -> str | None:
    import pydicom

    for file in sorted(folder.iterdir()):
        try:
            return str(pydicom.dcmread(file, stop_before_pixels=True).get("Modality") or "") or None
        except Exception:  # not every file in a series folder is DICOM
            continue
    return None


def _input_channels(scan: ScanInput) -> int:
    """Channels from headers only: channel files, or a 4D NIfTI's last axis (MSD layout)."""
    if len(scan.files) > 1 or scan.files[0].is_dir():
        return len(scan.files)
    try:
        shape = nib.load(str(scan.files[0])).shape
    except Exception as err:
        raise InputError(f"{scan.files[0]}: not a readable NIfTI ({type(err).__name__})") from None
    return shape[3] if len(shape) == 4 else 1


def _check_finite(scan: ScanInput) -> None:
    """Refuse NIfTI inputs holding NaN or infinite voxels (the normalisation would hide them
    and the label map would be computed from made-up values). Integer files cannot hold them
    and are not read here."""
    for file in scan.files:
        if file.is_dir():  # DICOM series: integer pixel data
            continue
        try:
            image = nib.load(str(file))
            if not np.issubdtype(image.get_data_dtype(), np.floating):
                continue
            finite = bool(np.isfinite(np.asanyarray(image.dataobj)).all())
        except Exception as err:  # nibabel/gzip/zlib raise many types for a damaged file
            raise InputError(f"{file}: not a readable NIfTI ({type(err).__name__})") from None
        if not finite:
            raise InputError(f"{file}: NaN or infinite voxel values; nothing can be predicted")


def _is_ct(modality: str) -> bool:
    return modality.strip().upper() == "CT"


def check_input(
    scan: ScanInput, plan: MedicalPlan, image: Any, dicom_modality: str | None
) -> list[str]:
    """Warnings (each naming the file) where a preprocessed scan does not resemble the training
    data: modality, spacing far from the training scans', normalised intensity range."""
    name, warnings = scan.files[0], []
    modalities = plan.modalities
    if dicom_modality and _is_ct(dicom_modality) != _is_ct(modalities[0]):
        warnings.append(f"{name}: DICOM modality {dicom_modality}, the model was trained on "
                        f"{modalities[0]}")  # fmt: skip
    spacing_range = plan.source_spacing_range
    if spacing_range:
        original = np.asarray(image.meta["original_affine"], dtype=np.float64)
        spacing, _ = ras_spacing_and_shape(original, tuple(image.meta["spatial_shape"])[:3])
        low, high = np.asarray(spacing_range[0]), np.asarray(spacing_range[1])
        if np.any(spacing < low / SPACING_FACTOR) or np.any(spacing > high * SPACING_FACTOR):
            warnings.append(
                f"{name}: spacing {tuple(round(float(s), 3) for s in spacing)} mm is far from the "
                f"training scans' ({_mm(low)} to {_mm(high)} mm)"
            )
    for c, expected in enumerate(plan.intensity_range or []):
        low, high = np.percentile(strided_sample(image[c]), [0.5, 99.5])
        margin = RANGE_MARGIN * (expected[1] - expected[0])
        if low < expected[0] - margin or high > expected[1] + margin:
            warnings.append(
                f"{name}: channel {c} ({modalities[c]}) spans {low:.2f} to {high:.2f} after "
                f"normalisation, training data {expected[0]:.2f} to {expected[1]:.2f} (wrong "
                "modality or channel order?)"
            )
    for c, expected in enumerate(plan.tissue_fraction or []):
        share = float(np.count_nonzero(image[c]) / image[c].numel())
        if share < expected[0] / 2 or share > min(1.0, 2 * expected[1]):
            warnings.append(
                f"{name}: channel {c} ({modalities[c]}) is {share:.0%} tissue after "
                f"normalisation, training scans {expected[0]:.0%} to {expected[1]:.0%} (a few "
                "extreme voxels, or another modality?)"
            )
    return warnings


def _mm(values: np.ndarray) -> tuple[float, ...]:
    return tuple(round(float(v), 3) for v in values)


def _autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The training precision's autocast (``bf16-mixed``, ``16-mixed``), or nothing for fp32."""
    if precision.startswith("bf16"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision.startswith("16"):
        return torch.autocast(device.type, dtype=torch.float16)
    return contextlib.nullcontext()


def segment(
    task: Any,
    plan: MedicalPlan,
    scan: ScanInput,
    flips: bool,
    probabilities: bool = True,
    precision: str = "32-true",
    warn: Any = None,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Label map, class probabilities (C first; None unless ``probabilities``) and affine, all
    in the input's own geometry. ``warn(message)`` receives :func:`check_input`'s warnings."""
    expected = len(plan.modalities)
    channels = _input_channels(scan)
    if channels != expected:
        raise InputError(f"{scan.files[0]}: {channels} channel(s), the model expects {expected}")
    _check_finite(scan)
    pipeline = build_pipeline(plan.target_spacing, plan.normalization, False)
    with tempfile.TemporaryDirectory() as scratch:
        try:
            source, dicom_modality = _pipeline_input(scan, Path(scratch))
            item = pipeline({"image": source})
        except InputError:
            raise
        except Exception as err:  # MONAI wraps reader errors in RuntimeError chains
            raise InputError(
                f"{scan.files[0]}: could not be read or preprocessed ({type(err).__name__})"
            ) from None
    image = item["image"]
    for message in check_input(scan, plan, image, dicom_modality):
        (warn or _warn)(message)
    module = isinstance(task, torch.nn.Module)
    device = next(task.parameters()).device if module else torch.device("cpu")
    with torch.inference_mode(), _autocast(precision, device):
        probs = _probabilities(task, image.as_tensor().float()[None], flips)
    label = _label_in_input_grid(item, pipeline, _argmax(probs))
    affine = np.asarray(image.meta["original_affine"], dtype=np.float64)
    if not probabilities:
        return label, None, affine
    return label, _probabilities_in_input_grid(item, pipeline, probs[0]), affine


def _invert(item: dict, pipeline: Any, value: torch.Tensor, nearest: bool) -> torch.Tensor:
    """``value`` (channel first, on the preprocessed grid) mapped back to the input's grid."""
    image = item["image"]
    # The map carries the image's transform history, so Invertd can undo crop, spacing, RAS.
    data = {"image": image, "value": type(image)(value, meta=image.meta)}
    data["value"].applied_operations = list(image.applied_operations)
    inverse = Invertd(keys="value", transform=pipeline, orig_keys="image", nearest_interp=nearest)
    return inverse(data)["value"]


def _label_in_input_grid(item: dict, pipeline: Any, label: torch.Tensor) -> np.ndarray:
    inverted = _invert(item, pipeline, label.float(), nearest=True)
    return inverted[0].numpy().round().astype(np.uint8)


def _probabilities_in_input_grid(item: dict, pipeline: Any, probs: torch.Tensor) -> np.ndarray:
    """Class by class (one full-size channel at a time), into one float32 array."""
    out = None
    for c in range(probs.shape[0]):
        channel = _invert(item, pipeline, probs[c : c + 1].clone(), nearest=False)[0].numpy()
        if out is None:
            out = np.empty((probs.shape[0], *channel.shape), np.float32)
        out[c] = channel
    assert out is not None
    # Undoing the crop pads with zeros: outside the foreground box (and partly at its blurred
    # edge) the classes' probabilities sum to less than 1. That missing mass is background.
    out[0] += np.clip(1.0 - out.sum(0), 0.0, None)
    return out


def _warn(message: str) -> None:
    print(f"hv-med predict: warning: {message}", file=sys.stderr)


def load_predictor(
    checkpoint: Path, cfg: RunConfig | None = None
) -> tuple[SegmentationTask, MedicalPlan]:
    """The network with the checkpoint's weights, wrapped for sliding-window inference, and the
    run's plan, from the checkpoint alone (:func:`shared.engine.contract.load_for_inference`).

    ``cfg``: the run's settings as given now; under mixed precision attention stays fp32 when
    ``--trainer.attention_fp32`` says so, as in training.
    """
    network, plan = load_for_inference(checkpoint, MEDICAL)
    task = SegmentationTask(
        network,
        plan.class_names,
        tuple(plan.patch_size),
        plan.sw_batch_size,
        plan.sw_overlap,
        optim=OptimConfig(),
        slice_axis=plan.slice_axis,  # set for 2D networks: slice-by-slice inference
    ).eval()
    if cfg is not None and cfg.trainer.precision != "32-true":
        set_attention_precision(task, cfg.trainer.attention_fp32)
    return task, plan


def _arguments(parser: Any) -> None:
    parser.add_argument("inputs", nargs="+", type=str, help="NIfTI files, folders, DICOM dirs")
    parser.add_argument("-o", "--out", type=str, required=True, help="output folder")
    parser.add_argument("--checkpoint", type=str, required=True, help="a run's .ckpt file")
    parser.add_argument("--tta", action="store_true", help="average over flips on 3 axes")
    parser.add_argument("--overlap", type=float, default=None, help="sliding-window overlap")
    parser.add_argument(
        "--device",
        default="auto",
        help="shorthand for one device: cpu or cuda:N (auto: the --trainer.accelerator/devices "
        "settings, one GPU if present)",
    )
    parser.add_argument(
        "--probabilities", action="store_true", help="also save class probabilities (4D NIfTI)"
    )


def write_segmentation(
    task: SegmentationTask, plan: MedicalPlan, scan: ScanInput, target: Path, flips: bool,
    probabilities: bool, precision: str,
) -> Path:  # fmt: skip
    """Segment one scan and write its label map (and probabilities when asked); its path.

    Each file is written atomically (:func:`medical.data.save_nifti`). The volume and the
    stitching buffer stay on the CPU; only the windows go to the task's device.
    """
    label, probs, affine = segment(task, plan, scan, flips, probabilities, precision)
    save_nifti(target, label, affine)
    del label
    if probs is not None:
        # Channels last, as NIfTI tools expect a 4D image: (X, Y, Z, classes).
        probs_file = target.with_name(f"{scan.name}_probs.nii.gz")
        save_nifti(probs_file, np.moveaxis(probs, 0, -1), affine)
    return target


def predict_main(spec: TaskSpec, argv: Sequence[str]) -> int:
    """``hv-med predict INPUT... -o OUT --checkpoint CKPT [--tta] [--overlap F] [config flags]``.

    Options and config flags (``--trainer.precision bf16-mixed``...) go through one parser, in any
    order. The run's ``config.yaml`` next to the checkpoint, when present, is the base.
    ``--trainer.devices N --trainer.num_nodes M --trainer.strategy ddp`` shares the scans among
    N x M processes (Lightning's distributed predict), each scan written once.
    """
    args, cfg = parse_inference_command(spec, "predict", __doc__ or "", argv, _arguments)
    out, checkpoint = Path(args.out), Path(args.checkpoint)
    sources = collect_inputs([Path(p) for p in args.inputs])
    targets = [(scan, out / f"{scan.name}.nii.gz") for scan in sources]
    resolved_inputs = {file.resolve() for scan in sources for file in scan.files}
    for _, target in targets:
        if target.resolve() in resolved_inputs:
            raise InputError(f"{target}: would overwrite an input; choose another -o")
    task, plan = load_predictor(checkpoint, cfg)
    if args.overlap is not None:
        task.sw_overlap = args.overlap

    def run(job: tuple[ScanInput, Path]) -> Path:
        return write_segmentation(task, plan, *job, args.tta, args.probabilities,
                                  cfg.trainer.precision)  # fmt: skip

    # Lightning's predict loop: with --trainer.devices/num_nodes each process segments its share.
    trainer, _ = run_over_inputs(targets, run, cfg.trainer, network=task)
    if trainer.is_global_zero:
        labels = json.dumps(plan.labels)
        Console().print(f"hv-med predict: {len(sources)} input(s) -> {out}/ (labels {labels})")
    return 0
