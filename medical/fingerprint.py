"""The dataset fingerprint (nnU-Net's "dataset analysis"), cached per case.

Per case: RAS spacing and shape, the share of tissue per channel, and a fixed number of sampled
foreground voxels (label > 0); over the dataset: the median spacing and shape and per-channel
intensity statistics of the samples. Every case weighs the same in those statistics, as in
nnU-Net. A case whose input files are unchanged is neither re-read nor re-validated.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from shared.engine.io import atomic_write

from .cache import input_signature, read_json_or, write_json_if_changed
from .data import Case, MedicalDataset, load_case_arrays, ras_spacing_and_shape
from .normalization import tissue_mask
from .pool import run_jobs

__all__ = ["FOREGROUND_SAMPLES_PER_CASE", "SAMPLE_SEED", "compute_fingerprint"]

# nnU-Net samples a fixed number of foreground voxels per case (with replacement, seed 1234) so
# that every case weighs the same in the dataset statistics.
FOREGROUND_SAMPLES_PER_CASE = 10_000
SAMPLE_SEED = 1234


def compute_fingerprint(
    dataset: MedicalDataset, out: Path, workers: int = 1, force: bool = False
) -> dict[str, Any]:
    """Validate and fingerprint every training case; write ``out/fingerprint.json``.

    Spacing and shape are along R, A, S (the axes the target spacing applies to). A case whose
    input files are unchanged since the last fingerprint is neither re-read nor re-validated.
    Sampled foreground voxels are cached in ``out/fingerprint_samples.npz``.
    """
    json_path, samples_path = out / "fingerprint.json", out / "fingerprint_samples.npz"
    previous = {} if force else read_json_or(json_path, {}).get("cases", {})
    samples = {} if force else _load_samples(samples_path)
    entries: dict[str, dict[str, Any]] = {}
    jobs = []
    for case in dataset.cases:
        old = previous.get(case.case_id)
        current = old and "tissue_fraction" in old  # older fingerprints lack it: re-analyse
        if current and case.case_id in samples and old.get("inputs") == input_signature(case):
            entries[case.case_id] = old
        else:
            jobs.append((case, dataset))

    def collect(result: tuple[str, dict[str, Any], np.ndarray]) -> None:
        case_id, entry, case_samples = result
        entries[case_id], samples[case_id] = entry, case_samples

    run_jobs(_analyse_case, jobs, workers, "fingerprint", collect)
    case_ids = [c.case_id for c in dataset.cases]
    fingerprint = _fingerprint_summary(dataset, {cid: entries[cid] for cid in case_ids}, samples)
    kept = {cid: samples[cid] for cid in case_ids}
    if jobs or set(samples) != set(kept):
        _save_samples(samples_path, kept)
    write_json_if_changed(json_path, fingerprint)
    return fingerprint


def _analyse_case(job: tuple[Case, MedicalDataset]) -> tuple[str, dict[str, Any], np.ndarray]:
    """Validate one case (``check_case``'s checks) and measure it for the fingerprint."""
    case, dataset = job
    inputs = input_signature(case)  # before reading: a file changed meanwhile reads as changed
    arrays = load_case_arrays(case, dataset)
    shape = arrays.channels[0].shape
    spacing, ras_shape = ras_spacing_and_shape(arrays.affine, shape)
    foreground = arrays.label > 0 if arrays.label is not None else np.zeros(shape, bool)
    count = int(foreground.sum())
    samples = np.zeros((len(arrays.channels), 0), np.float32)
    if count:
        rng = np.random.default_rng(SAMPLE_SEED)
        pick = rng.integers(0, count, FOREGROUND_SAMPLES_PER_CASE)
        samples = np.stack([c[foreground][pick] for c in arrays.channels]).astype(np.float32)
    entry = {
        "inputs": inputs,
        "spacing": spacing,
        "shape": ras_shape,
        "original_spacing": [float(s) for s in nib.affines.voxel_sizes(arrays.affine)],
        "original_shape": [int(s) for s in shape],
        "foreground_voxels": count,
        # Share of the scan that is tissue, per channel: the normalisation plan's mask decision.
        "tissue_fraction": [float(tissue_mask(c).mean()) for c in arrays.channels],
    }
    return case.case_id, entry, samples


def _intensity_stats(samples: np.ndarray) -> dict[str, float | int | None]:
    """nnU-Net's foreground intensity properties of one channel's sampled voxels."""
    if samples.size == 0:
        keys = ("mean", "std", "median", "percentile_00_5", "percentile_99_5", "min", "max")
        return {**dict.fromkeys(keys), "samples": 0}
    values = samples.astype(np.float64)
    low, high = np.percentile(values, [0.5, 99.5])
    return {
        "mean": float(values.mean()),
        "std": float(values.std()),
        "median": float(np.median(values)),
        "percentile_00_5": float(low),
        "percentile_99_5": float(high),
        "min": float(values.min()),
        "max": float(values.max()),
        "samples": int(values.size),
    }


def _load_samples(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path) as archive:
            return {key: archive[key] for key in archive.files}
    except Exception:  # missing or damaged cache: re-analyse, never trust it
        return {}


def _save_samples(path: Path, samples: dict[str, np.ndarray]) -> None:
    def write(tmp: Path) -> None:
        # np.savez appends ".npz" to a path without it: write through a file object instead.
        buffer = io.BytesIO()
        np.savez(buffer, **samples)
        tmp.write_bytes(buffer.getvalue())

    atomic_write(path, write)


def _fingerprint_summary(
    dataset: MedicalDataset, entries: dict[str, dict[str, Any]], samples: dict[str, np.ndarray]
) -> dict[str, Any]:
    spacings = np.array([e["spacing"] for e in entries.values()])
    shapes = np.array([e["shape"] for e in entries.values()])
    intensity = []
    for c, modality in enumerate(dataset.modalities):
        values = np.concatenate([samples[cid][c] for cid in entries])
        tissue = float(np.median([e["tissue_fraction"][c] for e in entries.values()]))
        intensity.append(
            {
                "channel": c,
                "modality": modality,
                **_intensity_stats(values),
                "median_tissue_fraction": round(tissue, 6),
            }
        )
    return {
        "name": dataset.name,
        "layout": dataset.layout,
        "modalities": dataset.modalities,
        "spacing_axes": "RAS",
        "median_spacing": [round(float(s), 6) for s in np.median(spacings, axis=0)],
        "median_shape": [float(s) for s in np.median(shapes, axis=0)],
        "foreground_samples_per_case": FOREGROUND_SAMPLES_PER_CASE,
        "intensity": intensity,
        "cases": entries,
    }
