"""Clinical preprocessing of an MSD / nnU-Net dataset into cached, crash-safe ``.npy`` cases.

``prepare_dataset(root, out)`` does what nnU-Net's planning + preprocessing does, with MONAI:

1. fingerprint (``out/fingerprint.json``): per-case RAS spacing and shape, the median spacing,
   per-channel intensity statistics over sampled foreground voxels (label > 0);
2. per case, the pipeline of :func:`build_pipeline`: load, channel first, RAS, resample to the
   target spacing, crop to the nonzero box, normalise by modality with the dataset's
   normalisation plan (:func:`normalization_plan`, decided once from the fingerprint and
   applied identically in training, validation and ``hv-med predict``);
3. ``out/cases/<case>/{image.npy, label.npy, meta.json}`` plus the manifest ``out/dataset.json``.

Caching: a case is redone only when one of its input files (size, mtime_ns) or the preparation
settings changed. Crash safety: a case is built in ``out/cases/.<case>.tmp-XXXX`` and renamed into
place when complete; the manifest lists it only after that, and only manifest entries are trusted.

This module is the orchestration and the per-case recipe; the pieces live beside it:
:mod:`medical.fingerprint` (step 1), :mod:`medical.normalization` (the plan and its transform),
:mod:`medical.cache` (signatures, manifest JSON, publishing, lock) and :mod:`medical.pool`
(the worker processes).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from monai.transforms import (
    Compose,
    CropForegroundd,
    EnsureChannelFirstd,
    LoadImaged,
    Orientationd,
    Spacingd,
)

from shared.engine.io import InputError

from .cache import (
    MANIFEST_FORMAT,
    check_output_folder,
    clean_cases_dir,
    hash_settings,
    input_signature,
    is_cached,
    json_text,
    locked,
    publish_folder,
    read_json_or,
    write_json_if_changed,
)
from .data import Case, MedicalDataset, discover_dataset, quiet_reader_registration
from .fingerprint import compute_fingerprint
from .normalization import ModalityNormalized, normalization_plan, strided_sample
from .pool import run_jobs

__all__ = ["PREPARE_VERSION", "PrepareReport", "build_pipeline", "load_prepared", "prepare_dataset"]

# Bump when the pipeline changes in a way that changes outputs: every case is then redone.
# 2: crop before normalising; z-score statistics over the tissue mask (issue 8).
# 3: voxels outside the tissue mask are set to 0 after the z-score, as nnU-Net does.
PREPARE_VERSION = 3
CROP_MARGIN = 2
"""Voxels kept around the nonzero box when cropping."""


@dataclass
class PrepareReport:
    """What ``prepare_dataset`` did."""

    prepared: int
    cached: int
    out: Path
    target_spacing: tuple[float, float, float]
    seconds: float


def prepare_dataset(
    root: Path,
    out: Path,
    target_spacing: tuple[float, float, float] | None = None,
    workers: int = 2,
    force: bool = False,
) -> PrepareReport:
    """Validate, fingerprint and preprocess a dataset into ``out`` (cached, crash-safe).

    ``target_spacing`` defaults to the fingerprint's median spacing (RAS axes, mm). Bad input
    raises ``InputError`` before anything of that case is written.
    """
    started = time.perf_counter()
    root, out = Path(root), Path(out)
    dataset = discover_dataset(root)
    if max(dataset.labels) > 255:
        raise InputError(f"{root / 'dataset.json'}: label values above 255 (labels are uint8)")
    check_output_folder(root, out)
    # The outermost folder this call creates (out itself, or a parent such as prepared/).
    created = next((p for p in [*reversed(out.absolute().parents), out.absolute()]
                    if not p.exists()), None)  # fmt: skip
    cases_dir = out / "cases"
    cases_dir.mkdir(parents=True, exist_ok=True)
    try:
        with locked(out):
            clean_cases_dir(cases_dir, {c.case_id for c in dataset.cases})
            fingerprint = compute_fingerprint(dataset, out, workers, force)
            target = _target(target_spacing, fingerprint)
            prepared, cached = _prepare_cases(dataset, out, fingerprint, target, workers, force)
    except InputError:
        # Refused before any case was prepared (every case is checked while fingerprinting):
        # leave no folder behind that this call made.
        if created is not None and not (out / "dataset.json").exists():
            shutil.rmtree(created, ignore_errors=True)
        raise
    return PrepareReport(prepared, cached, out, tuple(target), time.perf_counter() - started)


def load_prepared(out: Path) -> list[dict[str, Any]]:
    """Items ``{"image", "label", "meta": .npy/.json paths (str), "case", "spacing"}`` of a
    prepared folder, for MONAI datasets (``LoadImaged`` reads ``.npy``)."""
    out = Path(out)
    manifest_path = out / "dataset.json"
    if not manifest_path.is_file():
        raise InputError(f"{manifest_path}: not found (run prepare first)")
    manifest = read_json_or(manifest_path, None)
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise InputError(f"{manifest_path}: not a prepared-dataset manifest")
    items = []
    for entry in manifest["cases"]:
        item: dict[str, Any] = {"case": entry["case"], "spacing": manifest["target_spacing"]}
        for key in ("image", "label", "meta"):
            path = out / entry[key]
            if not path.is_file():
                raise InputError(f"{path}: prepared file missing (rerun prepare)")
            item[key] = str(path)
        items.append(item)
    return items


def _nonzero(x: Any) -> Any:
    """Foreground for cropping: any nonzero voxel (module level so the pipeline pickles)."""
    return x != 0


def build_pipeline(
    target_spacing: Sequence[float],
    normalization: list[dict[str, Any]],
    with_label: bool = True,
    margin: int = CROP_MARGIN,
) -> Any:
    """The per-case MONAI ``Compose``: load, channel first, RAS, resample, crop, normalise.

    ``normalization`` is :func:`normalization_plan`'s output. The crop to the nonzero box comes
    before normalisation, as in nnU-Net (normalised backgrounds are no longer zero). The crop box
    is stored under ``"foreground_start"`` / ``"foreground_end"`` (resampled-grid voxel indices).
    """
    keys = ["image", "label"] if with_label else ["image"]
    modes = ("bilinear", "nearest") if with_label else ("bilinear",)
    with quiet_reader_registration():
        load = LoadImaged(keys, reader="NibabelReader", image_only=True)
    return Compose(
        [
            load,
            EnsureChannelFirstd(keys),
            # Explicit labels: MONAI warns that the default will change to the tensor's space.
            Orientationd(keys, axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S"))),
            Spacingd(keys, pixdim=tuple(target_spacing), mode=modes),
            CropForegroundd(
                keys,
                source_key="image",
                select_fn=_nonzero,
                margin=margin,
                allow_smaller=True,  # never pad beyond the scanned field of view
                start_coord_key="foreground_start",
                end_coord_key="foreground_end",
            ),
            ModalityNormalized(["image"], normalization),
        ]
    )


def _target(target_spacing: Sequence[float] | None, fingerprint: dict[str, Any]) -> list[float]:
    if target_spacing is None:
        return list(fingerprint["median_spacing"])
    values = list(target_spacing)
    if len(values) != 3 or not all(np.isfinite(v) and v > 0 for v in values):
        raise InputError(f"target_spacing {target_spacing}: need three positive numbers (mm)")
    return [float(v) for v in values]


def _settings(
    dataset: MedicalDataset, target: list[float], normalization: list[dict[str, Any]]
) -> dict[str, Any]:
    """Everything besides the input files that decides a prepared case's content."""
    return {
        "version": PREPARE_VERSION,
        "modalities": dataset.modalities,
        "labels": {str(k): v for k, v in dataset.labels.items()},
        "target_spacing": target,
        "normalization": normalization,
        "crop_margin": CROP_MARGIN,
    }


def _manifest_header(
    dataset: MedicalDataset, settings: dict[str, Any], settings_hash: str
) -> dict[str, Any]:
    return {
        "format": MANIFEST_FORMAT,
        "name": dataset.name,
        "layout": dataset.layout,
        "source_root": str(dataset.root.absolute()),
        "modalities": dataset.modalities,
        "labels": settings["labels"],
        "target_spacing": settings["target_spacing"],
        "normalization": settings["normalization"],
        "settings_hash": settings_hash,
        "arrays": "image C x X x Y x Z float32, label 1 x X x Y x Z uint8, RAS axes",
    }


def _prepare_cases(
    dataset: MedicalDataset,
    out: Path,
    fingerprint: dict[str, Any],
    target: list[float],
    workers: int,
    force: bool,
) -> tuple[int, int]:
    """Prepare every case not cached, keeping the manifest current; ``(prepared, cached)``."""
    settings = _settings(dataset, target, normalization_plan(fingerprint))
    settings_hash = hash_settings(settings)
    old_entries = {e["case"]: e for e in read_json_or(out / "dataset.json", {}).get("cases", [])}
    entries: dict[str, dict[str, Any]] = {}
    jobs = []
    for case in dataset.cases:
        inputs = input_signature(case)
        entry = old_entries.get(case.case_id)
        if not force and is_cached(entry, inputs, settings_hash, out):
            entries[case.case_id] = entry
            continue
        jobs.append(
            {
                "case": case,
                "cases_dir": out / "cases",
                "inputs": inputs,
                "settings_hash": settings_hash,
                "target_spacing": target,
                "normalization": settings["normalization"],
            }
        )
    header = _manifest_header(dataset, settings, settings_hash)
    # RAS spacings of the scans the model was trained on: predict warns on a scan far outside.
    spacings = np.array([entry["spacing"] for entry in fingerprint["cases"].values()])
    header["source_spacing_range"] = [spacings.min(0).tolist(), spacings.max(0).tolist()]
    order = [c.case_id for c in dataset.cases]

    def write_manifest() -> None:
        # Only complete, current cases are listed: a rerun trusts nothing else.
        listed = [entries[cid] for cid in order if cid in entries]
        write_json_if_changed(out / "dataset.json", {**header, "cases": listed})

    def collect(entry: dict[str, Any]) -> None:
        entries[entry["case"]] = entry
        write_manifest()

    write_manifest()  # drop stale entries before their folders are replaced
    run_jobs(_prepare_case, jobs, workers, "preparing cases", collect)
    return len(jobs), len(dataset.cases) - len(jobs)


def _prepare_case(job: dict[str, Any]) -> dict[str, Any]:
    """Run the pipeline on one case and publish ``cases/<case>/`` atomically (folder rename)."""
    case: Case = job["case"]
    cases_dir: Path = job["cases_dir"]
    pipeline = build_pipeline(job["target_spacing"], job["normalization"])
    paths = [str(p) for p in case.images]
    data = pipeline({"image": paths[0] if len(paths) == 1 else paths, "label": str(case.label)})
    image = data["image"].numpy().astype(np.float32)
    label = np.rint(data["label"].numpy()).astype(np.uint8)
    meta = _case_meta(case, data, job)
    # What the network sees, for predict's check that a new scan resembles the training data.
    meta["intensity_range"] = [
        [float(v) for v in np.percentile(strided_sample(c), [0.5, 99.5])] for c in image
    ]
    # Share of voxels left nonzero (tissue, with the tissue mask): a few extreme voxels in a new
    # scan push the rest below the tissue level, which the intensity range alone cannot see.
    meta["tissue_fraction"] = [float(np.count_nonzero(c) / c.size) for c in image]
    tmp = Path(tempfile.mkdtemp(prefix=f".{case.case_id}.tmp-", dir=cases_dir))
    try:
        # Plain writes are fine here: the folder is invisible until the rename below.
        np.save(tmp / "image.npy", image)
        np.save(tmp / "label.npy", label)
        (tmp / "meta.json").write_text(json_text(meta), encoding="utf-8")
        publish_folder(tmp, cases_dir / case.case_id)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    folder = f"cases/{case.case_id}"
    return {
        "case": case.case_id,
        "inputs": job["inputs"],
        "settings_hash": job["settings_hash"],
        "image": f"{folder}/image.npy",
        "label": f"{folder}/label.npy",
        "meta": f"{folder}/meta.json",
        "shape": list(image.shape),
        "intensity_range": meta["intensity_range"],
        "tissue_fraction": meta["tissue_fraction"],
    }


def _case_meta(case: Case, data: dict[str, Any], job: dict[str, Any]) -> dict[str, Any]:
    image = data["image"]
    affine = np.asarray(image.affine, dtype=np.float64)
    start = np.asarray(data["foreground_start"], dtype=np.float64)
    # Cropping only translates the grid: undo it to get the affine right after resampling.
    resampled = affine.copy()
    resampled[:3, 3] -= affine[:3, :3] @ start
    original = np.asarray(image.meta["original_affine"], dtype=np.float64)
    return {
        "case": case.case_id,
        # Rounded: the affine round trip leaves float noise (1.5000000000000002).
        "spacing": [round(float(s), 6) for s in image.pixdim[:3]],
        "shape": list(image.shape),
        "label_shape": list(data["label"].shape),
        "affine": affine.tolist(),
        "affine_resampled": resampled.tolist(),
        "crop_box": {
            "start": [int(v) for v in data["foreground_start"]],
            "end": [int(v) for v in data["foreground_end"]],
        },
        "original_shape": [int(v) for v in image.meta["spatial_shape"]][:3],
        "original_affine": original.tolist(),
        "original_spacing": [round(float(s), 6) for s in nib.affines.voxel_sizes(original)],
        "orientation": "RAS",
        "normalization": job["normalization"],
        "source_files": {
            "images": [str(p) for p in case.images],
            "label": str(case.label) if case.label else None,
        },
        "settings_hash": job["settings_hash"],
    }
