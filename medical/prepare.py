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
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import multiprocessing
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import contextmanager
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
    MapTransform,
    NormalizeIntensity,
    Orientationd,
    Spacingd,
    ThresholdIntensity,
)

from medical.data import (
    Case,
    MedicalDataset,
    discover_dataset,
    load_case_arrays,
    make_progress,
    quiet_reader_registration,
    ras_spacing_and_shape,
)
from shared.engine.io import InputError, atomic_write, atomic_write_json

__all__ = [
    "ModalityNormalized",
    "PrepareReport",
    "build_pipeline",
    "compute_fingerprint",
    "load_prepared",
    "normalization_plan",
    "prepare_dataset",
]

MANIFEST_FORMAT = "hybridvision.medical.prepared/1"
# Bump when the pipeline changes in a way that changes outputs: every case is then redone.
# 2: crop before normalising; z-score statistics over the tissue mask (issue 8).
# 3: voxels outside the tissue mask are set to 0 after the z-score, as nnU-Net does.
PREPARE_VERSION = 3
# nnU-Net samples a fixed number of foreground voxels per case (with replacement, seed 1234) so
# that every case weighs the same in the dataset statistics.
FOREGROUND_SAMPLES_PER_CASE = 10_000
SAMPLE_SEED = 1234
CROP_MARGIN = 2
CASE_FILES = ("image.npy", "label.npy", "meta.json")
# Tissue, for normalisation statistics: voxels above this fraction of the way from the scan's
# 0.5 to its 99.5 intensity percentile. Unlike "nonzero", this is the same set of voxels whether a
# site stored the background as exact zeros (skull-stripped, masked) or as an offset with noise,
# and it is unchanged by any positive affine change of intensities (so it is the same set before
# and after normalisation).
TISSUE_LEVEL = 0.2
# nnU-Net's planner uses the mask for normalisation only when it leaves out a real background
# (its rule: median relative size after cropping < 3/4); we apply the rule to the tissue fraction.
USE_MASK_BELOW = 0.75
# Percentiles and statistics are taken on at most this many evenly strided voxels: exact for
# small scans, and a 512x512x300 CT neither sorts nor copies 79 M voxels to normalise.
STATS_VOXELS = 2_000_000


@dataclass
class PrepareReport:
    """What ``prepare_dataset`` did."""

    prepared: int
    cached: int
    out: Path
    target_spacing: tuple[float, float, float]
    seconds: float


# --------------------------------------------------------------------------------------------
# Pipeline
# --------------------------------------------------------------------------------------------


def _nonzero(x: Any) -> Any:
    """Foreground for cropping: any nonzero voxel (module level so the pipeline pickles)."""
    return x != 0


def _strided(channel: Any) -> np.ndarray:
    """At most ``STATS_VOXELS`` evenly strided voxels of one channel, as float64 numpy."""
    flat = np.asarray(channel).reshape(-1)
    step = max(1, flat.size // STATS_VOXELS)
    return flat[::step].astype(np.float64)


def tissue_mask(values: np.ndarray) -> np.ndarray:
    """The tissue voxels of ``values`` (one channel): above ``TISSUE_LEVEL`` of its robust range."""
    sample = _strided(values)
    low, high = np.percentile(sample, [0.5, 99.5])
    return values > low + TISSUE_LEVEL * (high - low)


def zscore_statistics(channel: Any, mask: str) -> tuple[float, float]:
    """Mean and std of one channel over its tissue (``mask="tissue"``) or all voxels."""
    sample = _strided(channel)
    if mask == "tissue":
        inside = sample[tissue_mask(sample)]
        sample = inside if inside.size else sample  # a constant scan has no tissue above range
    return float(sample.mean()), max(float(sample.std()), 1e-8)


class _ZScore:
    """Per-image z-score with statistics over the plan's mask.

    With the tissue mask, voxels outside it are set to 0 (the tissue mean) afterwards, as
    nnU-Net does with ``use_mask_for_norm``: a scan whose background is 0 and one whose
    background is 3 +- noise then get identical inputs there. Left at the z-scored background
    value instead (about -5 on the MNI demo), the background/tissue split dominated the
    network's first group-norm statistics and the held-out Dice after 4 demo epochs fell from
    0.63 to 0.42 (``python -m medical.demo --epochs 4``).
    """

    def __init__(self, mask: str) -> None:
        self.mask = mask

    def __call__(self, channel: Any) -> Any:
        mean, std = zscore_statistics(channel, self.mask)
        normalized = NormalizeIntensity(subtrahend=mean, divisor=std)(channel)
        if self.mask == "tissue":
            normalized[~tissue_mask(channel)] = 0.0
        return normalized


class ModalityNormalized(MapTransform):
    """Normalise each channel by its own scheme (MONAI has no per-channel scheme switch).

    ``plan[c]["scheme"]`` is ``"ct"`` (clip to ``clip`` then ``(x - mean) / std`` with dataset
    values) or ``"zscore"`` (per-image z-score, statistics over the voxels ``plan[c]["mask"]``
    names: ``"tissue"`` or ``"image"``). The per-channel operations are MONAI's
    ``ThresholdIntensity`` and ``NormalizeIntensity``; only the dispatch is ours. Channels are
    normalised in place, one at a time, so a large scan is never held twice.
    """

    def __init__(self, keys: Sequence[str], plan: list[dict[str, Any]]) -> None:
        super().__init__(keys)
        self.ops: list[Callable[[Any], Any]] = []
        for channel in plan:
            if channel["scheme"] == "ct":
                low, high = channel["clip"]
                self.ops.append(
                    Compose(
                        [
                            ThresholdIntensity(low, above=True, cval=low),
                            ThresholdIntensity(high, above=False, cval=high),
                            NormalizeIntensity(subtrahend=channel["mean"], divisor=channel["std"]),
                        ]
                    )
                )
            else:
                self.ops.append(_ZScore(channel.get("mask", "tissue")))

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        """Normalise ``data[key]`` (C x spatial) channel by channel."""
        out = dict(data)
        for key in self.key_iterator(out):
            image = out[key]
            if image.shape[0] != len(self.ops):
                raise ValueError(f"{key}: {image.shape[0]} channels, plan has {len(self.ops)}")
            plain = image.as_tensor() if hasattr(image, "as_tensor") else image
            if not plain.is_floating_point():
                image = image.float()
                plain = image.as_tensor() if hasattr(image, "as_tensor") else image
            for c, op in enumerate(self.ops):
                plain[c] = op(plain[c : c + 1])[0]
            out[key] = image
        return out


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


# --------------------------------------------------------------------------------------------
# Input signatures, settings, JSON helpers
# --------------------------------------------------------------------------------------------


def _input_signature(case: Case) -> list[dict[str, Any]]:
    """Path, size and mtime_ns of every input file: a changed file changes the signature."""
    signature = []
    for path in case.files():
        stat = path.stat()
        signature.append(
            {"path": str(path.absolute()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        )
    return signature


def _settings_hash(settings: dict[str, Any]) -> str:
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _json_text(data: Any) -> str:
    """The exact text ``atomic_write_json`` writes (compared to skip identical rewrites)."""
    return json.dumps(data, indent=2, sort_keys=False) + "\n"


def _write_json_if_changed(path: Path, data: Any) -> bool:
    """Write only when the content differs, so a cached rerun touches no file."""
    try:
        if path.read_text(encoding="utf-8") == _json_text(data):
            return False
    except (OSError, UnicodeDecodeError):
        pass
    atomic_write_json(path, data)
    return True


def _read_json_or(path: Path, default: Any) -> Any:
    """Previous state (manifest, fingerprint); unreadable means "start afresh", never trust it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return default


# --------------------------------------------------------------------------------------------
# Workers
# --------------------------------------------------------------------------------------------


def _worker_init() -> None:
    """One torch thread per worker process: workers already use the cores, and OpenMP pools
    inherited through fork are not safe to reuse (PyTorch's DataLoader does the same)."""
    import torch

    torch.set_num_threads(1)


def _run_jobs(
    work: Callable[[Any], Any],
    jobs: list[Any],
    workers: int,
    description: str,
    on_result: Callable[[Any], None],
) -> None:
    """Run ``work(job)`` for every job (processes when ``workers > 1``) with a progress bar.

    ``on_result`` runs in this process as each job finishes. The first error cancels the
    remaining jobs and is re-raised.
    """
    if not jobs:
        return
    if workers <= 1 or len(jobs) == 1:
        with make_progress() as progress:
            task = progress.add_task(description, total=len(jobs))
            for job in jobs:
                on_result(work(job))
                progress.advance(task)
        return
    # fork: workers start in milliseconds with MONAI already imported (spawn re-imports it,
    # which takes many seconds); all jobs are submitted before the progress thread starts.
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    with ProcessPoolExecutor(min(workers, len(jobs)), context, _worker_init) as pool:
        pending = {pool.submit(work, job) for job in jobs}
        with make_progress() as progress:
            task = progress.add_task(description, total=len(jobs))
            try:
                while pending:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        on_result(future.result())
                        progress.advance(task)
            finally:
                for future in pending:
                    future.cancel()


# --------------------------------------------------------------------------------------------
# Fingerprint
# --------------------------------------------------------------------------------------------


def _analyse_case(job: tuple[Case, MedicalDataset]) -> tuple[str, dict[str, Any], np.ndarray]:
    """Validate one case (``check_case``'s checks) and measure it for the fingerprint."""
    case, dataset = job
    inputs = _input_signature(case)  # before reading: a file changed meanwhile reads as changed
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


def compute_fingerprint(
    dataset: MedicalDataset, out: Path, workers: int = 1, force: bool = False
) -> dict[str, Any]:
    """Validate and fingerprint every training case; write ``out/fingerprint.json``.

    Spacing and shape are along R, A, S (the axes the target spacing applies to). A case whose
    input files are unchanged since the last fingerprint is neither re-read nor re-validated.
    Sampled foreground voxels are cached in ``out/fingerprint_samples.npz``.
    """
    json_path, samples_path = out / "fingerprint.json", out / "fingerprint_samples.npz"
    previous = {} if force else _read_json_or(json_path, {}).get("cases", {})
    samples = {} if force else _load_samples(samples_path)
    entries: dict[str, dict[str, Any]] = {}
    jobs = []
    for case in dataset.cases:
        old = previous.get(case.case_id)
        current = old and "tissue_fraction" in old  # older fingerprints lack it: re-analyse
        if current and case.case_id in samples and old.get("inputs") == _input_signature(case):
            entries[case.case_id] = old
        else:
            jobs.append((case, dataset))

    def collect(result: tuple[str, dict[str, Any], np.ndarray]) -> None:
        case_id, entry, case_samples = result
        entries[case_id], samples[case_id] = entry, case_samples

    _run_jobs(_analyse_case, jobs, workers, "fingerprint", collect)
    case_ids = [c.case_id for c in dataset.cases]
    fingerprint = _fingerprint_summary(dataset, {cid: entries[cid] for cid in case_ids}, samples)
    kept = {cid: samples[cid] for cid in case_ids}
    if jobs or set(samples) != set(kept):
        _save_samples(samples_path, kept)
    _write_json_if_changed(json_path, fingerprint)
    return fingerprint


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


def normalization_plan(fingerprint: dict[str, Any]) -> list[dict[str, Any]]:
    """The dataset's normalisation, decided once from the fingerprint, per channel.

    CT: clip to the dataset's foreground 0.5/99.5 percentiles, z-score with its foreground
    mean/std (nnU-Net). Other modalities: per-image z-score applied to every voxel, with the
    statistics taken over the scan's tissue (:func:`tissue_mask`) when the dataset's scans have a
    background to leave out (median tissue fraction < ``USE_MASK_BELOW``, nnU-Net's
    ``use_mask_for_norm`` rule) and over the whole scan otherwise. nnU-Net's mask is "nonzero",
    which changes with how a site stores the background (exact zeros after skull stripping, or
    an offset with noise) and so gives test scans a different scale from training scans; the
    tissue mask does not.
    """
    plan = []
    for stats in fingerprint["intensity"]:
        channel, modality = stats["channel"], stats["modality"]
        if modality.strip().upper() != "CT":
            tissue = stats["median_tissue_fraction"]
            plan.append(
                {
                    "channel": channel,
                    "modality": modality,
                    "scheme": "zscore",
                    # Only the decision: the fraction itself (in fingerprint.json) moves with
                    # every added case and would make every cached case look stale.
                    "mask": "tissue" if tissue < USE_MASK_BELOW else "image",
                }
            )
            continue
        if not stats["samples"]:
            raise InputError(
                f"channel {channel} (CT): no foreground voxels (label > 0) in any case, cannot "
                "compute the CT intensity statistics"
            )
        plan.append(
            {
                "channel": channel,
                "modality": modality,
                "scheme": "ct",
                "clip": [stats["percentile_00_5"], stats["percentile_99_5"]],
                "mean": stats["mean"],
                "std": max(stats["std"], 1e-8),  # a constant foreground must not divide by 0
            }
        )
    return plan


# --------------------------------------------------------------------------------------------
# Per-case preparation
# --------------------------------------------------------------------------------------------


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
        [float(v) for v in np.percentile(_strided(c), [0.5, 99.5])] for c in image
    ]
    # Share of voxels left nonzero (tissue, with the tissue mask): a few extreme voxels in a new
    # scan push the rest below the tissue level, which the intensity range alone cannot see.
    meta["tissue_fraction"] = [float(np.count_nonzero(c) / c.size) for c in image]
    tmp = Path(tempfile.mkdtemp(prefix=f".{case.case_id}.tmp-", dir=cases_dir))
    try:
        # Plain writes are fine here: the folder is invisible until the rename below.
        np.save(tmp / "image.npy", image)
        np.save(tmp / "label.npy", label)
        (tmp / "meta.json").write_text(_json_text(meta), encoding="utf-8")
        _publish(tmp, cases_dir / case.case_id)
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


def _publish(tmp: Path, final: Path) -> None:
    """Move a complete case folder into place, replacing an older version of it."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
        os.rename(final, old)
    os.rename(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Orchestration
# --------------------------------------------------------------------------------------------


@contextmanager
def _locked(out: Path) -> Iterator[None]:
    """One prepare at a time per output folder (flock is released even if the process dies)."""
    with open(out / ".prepare.lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(f"{out}: another prepare is writing this folder") from None
        yield


OUR_NAMES = {
    "cases",
    "dataset.json",
    "fingerprint.json",
    "fingerprint_samples.npz",
    ".prepare.lock",
}


def _check_out(root: Path, out: Path) -> None:
    """Refuse to write into the dataset itself or into a folder holding someone else's files
    (prepare deletes stale folders under ``out/cases``)."""
    if out.resolve() == root.resolve():
        raise InputError(f"{out}: output folder must differ from the dataset folder")
    manifest = out / "dataset.json"
    if manifest.exists():
        if _read_json_or(manifest, {}).get("format") != MANIFEST_FORMAT:
            raise InputError(f"{manifest}: not a prepared-dataset manifest; refusing to overwrite")
        return
    foreign = (
        sorted(p.name for p in out.iterdir() if p.name not in OUR_NAMES) if out.is_dir() else []
    )
    if foreign:
        raise InputError(
            f"{out}: not empty and not a prepared folder (holds {foreign[0]}); use a new folder"
        )


def _target(target_spacing: Sequence[float] | None, fingerprint: dict[str, Any]) -> list[float]:
    if target_spacing is None:
        return list(fingerprint["median_spacing"])
    values = list(target_spacing)
    if len(values) != 3 or not all(np.isfinite(v) and v > 0 for v in values):
        raise InputError(f"target_spacing {target_spacing}: need three positive numbers (mm)")
    return [float(v) for v in values]


def _clean_cases_dir(cases_dir: Path, case_ids: set[str]) -> None:
    """Remove temp/old folders of interrupted runs and folders of cases no longer in the data."""
    for path in cases_dir.iterdir():
        name = path.name
        leftover = name.startswith(".") and (".tmp-" in name or ".old-" in name)
        stale = not name.startswith(".") and name not in case_ids
        if path.is_dir() and (leftover or stale):
            shutil.rmtree(path, ignore_errors=True)


def _is_cached(entry: dict[str, Any] | None, inputs: Any, settings_hash: str, out: Path) -> bool:
    if not entry or entry.get("inputs") != inputs or entry.get("settings_hash") != settings_hash:
        return False
    return all((out / "cases" / entry["case"] / name).is_file() for name in CASE_FILES)


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
    _check_out(root, out)
    # The outermost folder this call creates (out itself, or a parent such as prepared/).
    created = next((p for p in [*reversed(out.absolute().parents), out.absolute()]
                    if not p.exists()), None)  # fmt: skip
    cases_dir = out / "cases"
    cases_dir.mkdir(parents=True, exist_ok=True)
    try:
        with _locked(out):
            _clean_cases_dir(cases_dir, {c.case_id for c in dataset.cases})
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
    settings_hash = _settings_hash(settings)
    old_entries = {e["case"]: e for e in _read_json_or(out / "dataset.json", {}).get("cases", [])}
    entries: dict[str, dict[str, Any]] = {}
    jobs = []
    for case in dataset.cases:
        inputs = _input_signature(case)
        entry = old_entries.get(case.case_id)
        if not force and _is_cached(entry, inputs, settings_hash, out):
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
        _write_json_if_changed(out / "dataset.json", {**header, "cases": listed})

    def collect(entry: dict[str, Any]) -> None:
        entries[entry["case"]] = entry
        write_manifest()

    write_manifest()  # drop stale entries before their folders are replaced
    _run_jobs(_prepare_case, jobs, workers, "preparing cases", collect)
    return len(jobs), len(dataset.cases) - len(jobs)


def load_prepared(out: Path) -> list[dict[str, Any]]:
    """Items ``{"image", "label", "meta": .npy/.json paths (str), "case", "spacing"}`` of a
    prepared folder, for MONAI datasets (``LoadImaged`` reads ``.npy``)."""
    out = Path(out)
    manifest_path = out / "dataset.json"
    if not manifest_path.is_file():
        raise InputError(f"{manifest_path}: not found (run prepare first)")
    manifest = _read_json_or(manifest_path, None)
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
