"""Synthetic 3D phantoms and the embedded MNI152 demo volume, written in MSD layout.

* :func:`make_phantom` draws organ-like ellipsoids (smooth random deformation), tissue texture,
  Rician-like noise and a smooth multiplicative bias field on an anisotropic grid: data for tests
  and scaling benchmarks, as many cases as needed, from a seed.
* :func:`write_mni_demo` turns the MNI152 2009a T1 template that nilearn ships (real MRI,
  197x233x189 at 1 mm) into a 3-class segmentation dataset: background / grey matter / white
  matter from nilearn's probability maps. A voxel is grey (white) matter where that probability
  is >= 0.5 and larger than the other's; everything else is background. To keep evaluation voxels
  out of training, the volume is cut into slabs along the inferior-superior axis: the training
  cases are slabs from the lower part and the validation case is the top slab (no shared voxels).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from shared.engine.io import atomic_write_json

from .data import save_nifti

__all__ = [
    "MNI_HELD_OUT",
    "PhantomConfig",
    "make_phantom",
    "write_dicom_series",
    "write_mni_demo",
    "write_phantom_dataset",
]

MNI_FILES = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}
MNI_THRESHOLD = 0.5


@dataclass
class PhantomConfig:
    """Size and appearance of a synthetic case."""

    shape: tuple[int, int, int] = (64, 64, 40)
    spacing: tuple[float, float, float] = (1.0, 1.0, 2.5)
    num_organs: int = 2
    noise: float = 0.08
    bias_strength: float = 0.3


def _smooth_noise(shape: tuple[int, ...], sigma: float, rng: np.random.Generator) -> np.ndarray:
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return field / (np.abs(field).max() + 1e-8)


def make_phantom(cfg: PhantomConfig, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One ``(image float32, label uint8)`` pair; label 0 is background, 1..num_organs organs."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in cfg.shape], indexing="ij"), -1)
    physical = grid * np.asarray(cfg.spacing)
    extent = np.asarray(cfg.shape) * np.asarray(cfg.spacing)
    body_radius = extent * 0.45
    body = (((physical - extent / 2) / body_radius) ** 2).sum(-1) <= 1
    label = np.zeros(cfg.shape, np.uint8)
    image = np.where(body, 0.3, 0.0) + 0.05 * _smooth_noise(cfg.shape, 2, rng) * body
    deformation = 0.25 * _smooth_noise(cfg.shape, 6, rng)
    for organ in range(1, cfg.num_organs + 1):
        centre = extent / 2 + rng.uniform(-0.2, 0.2, 3) * extent
        radii = extent * rng.uniform(0.1, 0.18, 3)
        inside = (((physical - centre) / radii) ** 2).sum(-1) <= 1 + deformation
        inside &= body & (label == 0)
        label[inside] = organ
        texture = 0.06 * _smooth_noise(cfg.shape, 1.5, rng)
        image[inside] = 0.3 + 0.25 * organ + texture[inside]
    bias = 1 + cfg.bias_strength * _smooth_noise(cfg.shape, 12, rng)
    noisy = np.hypot(image * bias + cfg.noise * rng.standard_normal(cfg.shape),
                     cfg.noise * rng.standard_normal(cfg.shape))  # fmt: skip
    return (1000 * noisy).astype(np.float32), label


def _affine(spacing: tuple[float, float, float]) -> np.ndarray:
    return np.diag([*spacing, 1.0])


def _write_msd(
    root: Path,
    name: str,
    modality: str,
    labels: dict[int, str],
    cases: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]],
    validation: list[str],
) -> Path:
    for case_id, image, label, affine in cases:
        save_nifti(root / "imagesTr" / f"{case_id}.nii.gz", image, affine)
        save_nifti(root / "labelsTr" / f"{case_id}.nii.gz", label, affine)
    manifest = {
        "name": name,
        "modality": {"0": modality},
        "labels": {str(k): v for k, v in labels.items()},
        "numTraining": len(cases),
        "training": [
            {"image": f"./imagesTr/{c[0]}.nii.gz", "label": f"./labelsTr/{c[0]}.nii.gz"}
            for c in cases
        ],
        "test": [],
        # Not part of MSD: which cases the demo keeps out of training.
        "validation_cases": validation,
    }
    atomic_write_json(root / "dataset.json", manifest)
    return root


def write_phantom_dataset(
    root: Path, num_cases: int = 4, cfg: PhantomConfig | None = None, seed: int = 0
) -> Path:
    """A synthetic MSD-layout dataset of ``num_cases`` phantoms (last case for validation)."""
    cfg = cfg or PhantomConfig()
    cases = [
        (f"phantom_{i:03d}", *make_phantom(cfg, seed + i), _affine(cfg.spacing))
        for i in range(num_cases)
    ]
    labels = {0: "background", **{i: f"organ{i}" for i in range(1, cfg.num_organs + 1)}}
    return _write_msd(root, "Phantom", "MRI", labels, cases, [cases[-1][0]])


def _mni_path(key: str) -> Path:
    return Path(str(resources.files("nilearn") / "datasets" / "data" / MNI_FILES[key]))


MNI_HELD_OUT = ("top", "ends")
"""Which slabs of the MNI demo brain are held out: ``top`` (the superior slab; the demo's) or
``ends`` (the inferior and the superior slab, two held-out volumes around the training slabs)."""


def write_mni_demo(
    root: Path, num_train_slabs: int = 2, downsample: int = 2, held_out: str = "top"
) -> Path:
    """The MNI152 T1 demo dataset (real MRI) in MSD layout, split into disjoint slabs.

    ``downsample`` (2 -> 2 mm voxels) keeps the CPU demo short. Slabs are cut along the
    inferior-superior axis of the brain's bounding box; ``held_out`` (:data:`MNI_HELD_OUT`)
    names the validation slabs: the top one, or the bottom and the top one (then the
    ``num_train_slabs`` training slabs lie between them).
    """
    if held_out not in MNI_HELD_OUT:
        raise ValueError(f"held_out must be one of {MNI_HELD_OUT}, got {held_out!r}")
    t1 = nib.load(str(_mni_path("t1")))
    gm = np.asarray(nib.load(str(_mni_path("gm"))).dataobj, dtype=np.float32)
    wm = np.asarray(nib.load(str(_mni_path("wm"))).dataobj, dtype=np.float32)
    image = np.asarray(t1.dataobj, dtype=np.float32)
    label = np.zeros(image.shape, np.uint8)
    label[(gm >= MNI_THRESHOLD) & (gm >= wm)] = 1
    label[(wm >= MNI_THRESHOLD) & (wm > gm)] = 2
    step = downsample
    image, label = image[::step, ::step, ::step], label[::step, ::step, ::step]
    affine = t1.affine.copy()
    affine[:3, :3] *= step
    brain = np.argwhere(label > 0)
    low, high = brain.min(0), brain.max(0) + 1
    image = image[low[0] : high[0], low[1] : high[1]]
    label = label[low[0] : high[0], low[1] : high[1]]
    affine[:3, 3] += affine[:3, :3] @ np.array([low[0], low[1], 0])
    z_low, z_high = low[2], high[2]
    num_held_out = 1 if held_out == "top" else 2
    edges = np.linspace(z_low, z_high, num_train_slabs + num_held_out + 1).round().astype(int)
    cases = []
    for index, (start, stop) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
        slab_affine = affine.copy()
        slab_affine[:3, 3] += affine[:3, :3] @ np.array([0, 0, start])
        case_id = f"mni_slab{index}"
        cases.append((case_id, image[..., start:stop], label[..., start:stop], slab_affine))
    labels = {0: "background", 1: "grey_matter", 2: "white_matter"}
    validation = [cases[-1][0]] if held_out == "top" else [cases[0][0], cases[-1][0]]
    return _write_msd(root, "MNI152Brain", "MRI", labels, cases, validation)


def write_dicom_series(
    volume: np.ndarray, folder: Path, spacing: tuple[float, float, float] = (1.0, 1.0, 2.0)
) -> Path:
    """Write an ``(X, Y, Z)`` int16 volume as a CT DICOM series (one file per Z slice).

    Pixel rows run along Y and columns along X; the patient axes follow DICOM's LPS convention.
    For tests and demos of DICOM input; real series come from scanners.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    data = np.asarray(volume, dtype=np.int16)
    series, study = generate_uid(), generate_uid()
    for k in range(data.shape[2]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = study, series, "CT"
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [0.0, 0.0, spacing[2] * k]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing = [spacing[1], spacing[0]]  # row spacing (Y), column spacing (X)
        ds.SliceThickness = spacing[2]
        ds.Rows, ds.Columns = data.shape[1], data.shape[0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.PixelData = np.ascontiguousarray(data[:, :, k].T).tobytes()
        ds.save_as(folder / f"slice_{k:04d}.dcm", enforce_file_format=True)
    return folder
