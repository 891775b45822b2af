"""Medical dataset discovery and validation: MSD and nnU-Net v2 raw layouts, DICOM series.

``discover_dataset`` reads a dataset folder into a :class:`MedicalDataset` (cases with one path
per channel, labels always ``int -> name``); ``check_case`` / ``check_dataset`` read every file
with nibabel and turn each kind of bad input into one-line :class:`InputError` naming the file.
MONAI is imported inside the functions that use it: importing it costs seconds, and callers that
only validate (or only build CLIs) should not pay for it.
"""

from __future__ import annotations

import gzip
import json
import re
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import nibabel as nib
import numpy as np

from shared.engine.io import InputError, atomic_write, file_stem

__all__ = [
    "save_nifti",
    "Case",
    "CaseArrays",
    "MedicalDataset",
    "check_case",
    "check_dataset",
    "discover_dataset",
    "load_case_arrays",
    "make_progress",
    "quiet_reader_registration",
    "ras_spacing_and_shape",
    "read_dicom_series",
    "read_labels",
]

NIFTI_ENDINGS = (".nii.gz", ".nii")
# Absolute tolerance (mm) for image/label affines: NIfTI stores them as float32 (and qforms as
# quaternions), so copies of one geometry differ in the 5th-6th digit.
AFFINE_ATOL = 1e-3
MAX_LISTED_VALUES = 8


@dataclass
class Case:
    """One case: ``images`` holds one path per channel, or one 4D file holding all channels."""

    case_id: str
    images: list[Path]
    label: Path | None = None
    channels_in_file: int = 1
    """Channels stored in each image file: >1 only for an MSD 4D image (last axis = channels)."""

    def files(self) -> list[Path]:
        """Every input file of the case (images, then label)."""
        return [*self.images, *([self.label] if self.label is not None else [])]


@dataclass
class MedicalDataset:
    """A discovered dataset: layout, channels, label names and training (and test) cases."""

    name: str
    layout: Literal["msd", "nnunet"]
    root: Path
    modalities: list[str]
    labels: dict[int, str]
    cases: list[Case]
    test_cases: list[Case] = field(default_factory=list)

    @property
    def num_channels(self) -> int:
        """Number of image channels (modalities)."""
        return len(self.modalities)

    def datalist(self, test: bool = False) -> list[dict[str, Any]]:
        """MONAI-style items ``{"image": path or [paths], "label": path, "case": id}``."""
        items = []
        for case in self.test_cases if test else self.cases:
            paths = [str(p) for p in case.images]
            item: dict[str, Any] = {"image": paths[0] if len(paths) == 1 else paths}
            if case.label is not None:
                item["label"] = str(case.label)
            item["case"] = case.case_id
            items.append(item)
        return items


# --------------------------------------------------------------------------------------------
# Discovery
# --------------------------------------------------------------------------------------------


def discover_dataset(root: Path) -> MedicalDataset:
    """Read ``root/dataset.json`` and detect the MSD or nnU-Net v2 raw layout.

    Raises ``InputError`` for a missing/unknown ``dataset.json``, no training cases, label values
    that are not consecutive from 0, missing image, label or channel files.
    """
    root = Path(root)
    if root.name == "dataset.json" and root.is_file():
        root = root.parent
    json_path = root / "dataset.json"
    if not root.is_dir():
        raise InputError(f"{root}: dataset folder not found")
    if not json_path.is_file():
        raise InputError(f"{json_path}: not found (expected an MSD or nnU-Net v2 dataset.json)")
    meta = _read_json(json_path)
    if "channel_names" in meta:
        dataset = _discover_nnunet(root, json_path, meta)
    elif "training" in meta and "modality" in meta:
        dataset = _discover_msd(root, json_path, meta)
    else:
        raise InputError(
            f"{json_path}: unknown dataset layout (expected MSD keys 'modality'+'training' or "
            "nnU-Net v2 keys 'channel_names'+'labels'+'file_ending')"
        )
    if not dataset.cases:
        raise InputError(f"{json_path}: dataset has no training cases")
    _check_trainable_labels(json_path, dataset.labels)
    return dataset


def read_labels(json_path: Path) -> dict[int, str]:
    """Class index -> name from an MSD or nnU-Net v2 ``dataset.json`` (layout detected as above)."""
    meta = _read_json(Path(json_path))
    if "channel_names" in meta:
        return _nnunet_labels(json_path, meta.get("labels"))
    return _msd_labels(json_path, meta.get("labels"))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{path}: not readable JSON: {err}") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object at top level")
    return data


def _channel_list(json_path: Path, key: str, mapping: Any) -> list[str]:
    """``{"0": "CT", "1": "T2"}`` -> ``["CT", "T2"]``, requiring indices 0..n-1."""
    if not isinstance(mapping, dict) or not mapping:
        raise InputError(f"{json_path}: '{key}' must be a non-empty object {{index: name}}")
    try:
        by_index = {int(k): str(v) for k, v in mapping.items()}
    except ValueError:
        raise InputError(f"{json_path}: '{key}' keys must be channel indices 0..n-1") from None
    if sorted(by_index) != list(range(len(by_index))):
        raise InputError(f"{json_path}: '{key}' keys must be 0..{len(by_index) - 1}")
    return [by_index[i] for i in range(len(by_index))]


def _check_labels(json_path: Path, labels: dict[int, str]) -> dict[int, str]:
    if 0 not in labels:
        raise InputError(f"{json_path}: 'labels' has no background class 0")
    if any(v < 0 for v in labels):
        raise InputError(f"{json_path}: 'labels' values must be >= 0")
    return dict(sorted(labels.items()))


def _check_trainable_labels(json_path: Path, labels: dict[int, str]) -> None:
    # A network has one output channel per label and label value v is channel v (as in
    # nnU-Net): a gap (0, 1, 3) would leave label 3 without a channel. Scoring (read_labels)
    # allows gaps: references such as BraTS's 0, 1, 2, 4 are scored as they are.
    if sorted(labels) != list(range(len(labels))):
        raise InputError(
            f"{json_path}: 'labels' values must be consecutive 0..{len(labels) - 1} for "
            f"training, got {_list_values(sorted(labels))}"
        )


def _msd_labels(json_path: Path, mapping: Any) -> dict[int, str]:
    """MSD labels are ``{"0": "background", "1": "tumour"}`` (index -> name)."""
    if not isinstance(mapping, dict) or not mapping:
        raise InputError(f"{json_path}: 'labels' must be a non-empty object {{index: name}}")
    try:
        labels = {int(k): str(v) for k, v in mapping.items()}
    except ValueError:
        raise InputError(
            f"{json_path}: MSD 'labels' keys must be integers (index -> name)"
        ) from None
    return _check_labels(json_path, labels)


def _nnunet_labels(json_path: Path, mapping: Any) -> dict[int, str]:
    """nnU-Net labels are ``{"background": 0, "tumour": 1}`` (name -> int): reverse them."""
    if not isinstance(mapping, dict) or not mapping:
        raise InputError(f"{json_path}: 'labels' must be a non-empty object {{name: value}}")
    labels: dict[int, str] = {}
    for name, value in mapping.items():
        if isinstance(value, list | tuple):
            raise InputError(
                f"{json_path}: label '{name}' is a region {value}; region-based labels are not "
                "supported"
            )
        if not isinstance(value, int) or isinstance(value, bool):
            raise InputError(f"{json_path}: label '{name}' must map to an integer, got {value!r}")
        if value in labels:
            raise InputError(f"{json_path}: labels '{labels[value]}' and '{name}' share {value}")
        labels[value] = str(name)
    return _check_labels(json_path, labels)


def _require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise InputError(f"{path}: {what} file not found")
    return path


def _discover_msd(root: Path, json_path: Path, meta: dict[str, Any]) -> MedicalDataset:
    from monai.data import load_decathlon_datalist

    modalities = _channel_list(json_path, "modality", meta.get("modality"))
    labels = _msd_labels(json_path, meta.get("labels"))
    if not isinstance(meta["training"], list):
        raise InputError(f"{json_path}: 'training' must be a list of {{image, label}} items")
    try:
        training = load_decathlon_datalist(json_path, True, "training", base_dir=root)
        test = (
            load_decathlon_datalist(json_path, False, "test", base_dir=root)
            if meta.get("test")
            else []
        )
    except (TypeError, ValueError, KeyError) as err:
        raise InputError(f"{json_path}: malformed datalist: {err}") from None
    channels = len(modalities)
    cases = [_msd_case(json_path, item, channels, need_label=True) for item in training]
    test_cases = [_msd_case(json_path, item, channels, need_label=False) for item in test]
    _check_unique(json_path, cases + test_cases)
    return MedicalDataset(
        name=str(meta.get("name", root.name)),
        layout="msd",
        root=root,
        modalities=modalities,
        labels=labels,
        cases=cases,
        test_cases=test_cases,
    )


def _msd_case(json_path: Path, item: dict[str, Any], channels: int, need_label: bool) -> Case:
    image = item.get("image")
    if not image:
        raise InputError(f"{json_path}: a datalist item has no 'image': {item}")
    images = [Path(p) for p in image] if isinstance(image, list | tuple) else [Path(image)]
    for path in images:
        _require_file(path, "image")
    label = item.get("label")
    if need_label and not label:
        raise InputError(f"{json_path}: training item for {images[0]} has no 'label'")
    label_path = _require_file(Path(label), "label") if label else None
    if len(images) == 1:
        per_file = channels  # one file: 3D for one modality, 4D (last axis) for several
    elif len(images) == channels:
        per_file = 1
    else:
        raise InputError(
            f"{images[0]}: case lists {len(images)} image files but dataset.json has "
            f"{channels} modalities"
        )
    return Case(file_stem(images[0]), images, label_path, channels_in_file=per_file)


def _check_unique(json_path: Path, cases: list[Case]) -> None:
    seen: set[str] = set()
    for case in cases:
        if case.case_id in seen:
            raise InputError(f"{json_path}: case id '{case.case_id}' appears twice")
        seen.add(case.case_id)


def _discover_nnunet(root: Path, json_path: Path, meta: dict[str, Any]) -> MedicalDataset:
    modalities = _channel_list(json_path, "channel_names", meta.get("channel_names"))
    labels = _nnunet_labels(json_path, meta.get("labels"))
    ending = meta.get("file_ending")
    if ending not in NIFTI_ENDINGS:
        raise InputError(
            f"{json_path}: file_ending {ending!r} not supported (NIfTI only: .nii.gz or .nii)"
        )
    images_tr, labels_tr = root / "imagesTr", root / "labelsTr"
    for folder in (images_tr, labels_tr):
        if not folder.is_dir():
            raise InputError(f"{folder}: folder not found (nnU-Net layout needs it)")
    by_case = _channel_files(images_tr, ending, len(modalities))
    label_files = {p.name[: -len(ending)]: p for p in labels_tr.glob(f"*{ending}")}
    no_label = sorted(set(by_case) - set(label_files))
    if no_label:
        raise InputError(f"{labels_tr / (no_label[0] + ending)}: label file not found")
    no_image = sorted(set(label_files) - set(by_case))
    if no_image:
        missing = images_tr / f"{no_image[0]}_0000{ending}"
        raise InputError(f"{missing}: image file not found for label {label_files[no_image[0]]}")
    cases = [
        _nnunet_case(images_tr, case_id, by_case[case_id], ending, modalities, label_files[case_id])
        for case_id in sorted(label_files)
    ]
    expected = meta.get("numTraining")
    if isinstance(expected, int) and cases and expected != len(cases):
        raise InputError(
            f"{json_path}: numTraining is {expected} but {labels_tr} holds {len(cases)} cases"
        )
    test_cases = []
    if (root / "imagesTs").is_dir():
        tests = _channel_files(root / "imagesTs", ending, len(modalities))
        test_cases = [
            _nnunet_case(root / "imagesTs", cid, tests[cid], ending, modalities, None)
            for cid in sorted(tests)
        ]
    return MedicalDataset(
        name=str(meta.get("name", root.name)),
        layout="nnunet",
        root=root,
        modalities=modalities,
        labels=labels,
        cases=cases,
        test_cases=test_cases,
    )


def _channel_files(folder: Path, ending: str, channels: int) -> dict[str, dict[int, Path]]:
    """``{case: {channel: path}}`` from ``{case}_{XXXX}{ending}`` names in ``folder``."""
    pattern = re.compile(rf"^(?P<case>.+)_(?P<channel>\d{{4}}){re.escape(ending)}$")
    found: dict[str, dict[int, Path]] = {}
    for path in sorted(folder.glob(f"*{ending}")):
        match = pattern.match(path.name)
        if match is None:
            raise InputError(f"{path}: name is not {{case}}_{{XXXX}}{ending} (nnU-Net layout)")
        channel = int(match["channel"])
        if channel >= channels:
            raise InputError(
                f"{path}: channel {channel} but dataset.json channel_names has {channels} channels"
            )
        found.setdefault(match["case"], {})[channel] = path
    return found


def _nnunet_case(
    folder: Path,
    case_id: str,
    files: dict[int, Path],
    ending: str,
    modalities: list[str],
    label: Path | None,
) -> Case:
    for channel, modality in enumerate(modalities):
        if channel not in files:
            expected = folder / f"{case_id}_{channel:04d}{ending}"
            raise InputError(
                f"{expected}: missing channel {channel} ({modality}) of case {case_id}"
            )
    return Case(case_id, [files[c] for c in range(len(modalities))], label, channels_in_file=1)


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


@dataclass
class CaseArrays:
    """A validated case in file axis order: one 3D array per channel, label, affine."""

    channels: list[np.ndarray]
    label: np.ndarray | None
    affine: np.ndarray


def _read_nifti(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read data (native dtype) and affine; any read failure becomes a one-line InputError."""
    try:
        image = nib.load(str(path))
        data = np.asanyarray(image.dataobj)
        affine = np.asarray(image.affine, dtype=np.float64)
    except Exception:  # nibabel/gzip/zlib raise many types for the same user problem
        raise InputError(f"{path}: unreadable NIfTI (truncated or corrupt)") from None
    return data, affine


def _spatial(path: Path, data: np.ndarray, channels_in_file: int) -> list[np.ndarray]:
    """Split a file into 3D channel arrays, checking its dimensionality."""
    # Trailing singleton axes (X, Y, Z, 1) are common in exported files and harmless.
    while data.ndim > 3 and data.shape[-1] == 1 and channels_in_file == 1:
        data = data[..., 0]
    if channels_in_file == 1:
        if data.ndim != 3:
            raise InputError(f"{path}: expected a 3D image, got {data.ndim}D shape {data.shape}")
        return [data]
    if data.ndim != 4 or data.shape[-1] != channels_in_file:
        raise InputError(
            f"{path}: expected a 4D image with {channels_in_file} channels on the last axis "
            f"(one per modality), got shape {data.shape}"
        )
    return [data[..., c] for c in range(channels_in_file)]


Geometry = tuple[Path, tuple[int, ...], np.ndarray]  # file, spatial shape, affine


def _same_geometry(case: Case, reference: Geometry, other: Geometry) -> None:
    first, shape_a, aff_a = reference
    other_path, shape_b, aff_b = other
    if tuple(shape_a) != tuple(shape_b):
        raise InputError(
            f"case {case.case_id}: {first} has spatial shape {tuple(shape_a)} but {other_path} has "
            f"{tuple(shape_b)}"
        )
    if not np.allclose(aff_a, aff_b, rtol=0, atol=AFFINE_ATOL):
        raise InputError(
            f"case {case.case_id}: {first} and {other_path} have different affines (orientation, "
            "spacing or origin differ)"
        )


def _list_values(values: Iterable[Any]) -> str:
    values = list(values)
    shown = ", ".join(
        f"{v:g}" if isinstance(v, float) else str(v) for v in values[:MAX_LISTED_VALUES]
    )
    return shown + (f", ... ({len(values)} values)" if len(values) > MAX_LISTED_VALUES else "")


def _check_label_values(path: Path, label: np.ndarray, allowed: dict[int, str]) -> None:
    values = np.unique(label)
    if np.issubdtype(values.dtype, np.floating):
        if not np.all(np.isfinite(values)):
            raise InputError(f"{path}: label contains NaN or infinite values")
        fractional = values[values != np.round(values)]
        if fractional.size:
            raise InputError(
                f"{path}: non-integer label values {_list_values(fractional.tolist())}"
            )
    bad = [int(v) for v in values.tolist() if int(v) not in allowed]
    if bad:
        raise InputError(
            f"{path}: label values {_list_values(bad)} not in dataset labels {sorted(allowed)}"
        )


def load_case_arrays(case: Case, dataset: MedicalDataset) -> CaseArrays:
    """Read and validate one case with nibabel; ``InputError`` on the first problem found."""
    channels: list[np.ndarray] = []
    geometry: Geometry | None = None
    for path in case.images:
        data, affine = _read_nifti(path)
        if not np.issubdtype(data.dtype, np.number) or not np.all(np.isfinite(data)):
            raise InputError(f"{path}: image contains non-numeric, NaN or infinite values")
        parts = _spatial(path, data, case.channels_in_file)
        if geometry is None:
            geometry = (path, parts[0].shape, affine)
        else:
            _same_geometry(case, geometry, (path, parts[0].shape, affine))
        channels.extend(parts)
    if len(channels) != dataset.num_channels:
        raise InputError(
            f"{case.images[0]}: case {case.case_id} has {len(channels)} channels, dataset.json "
            f"lists {dataset.num_channels} modalities"
        )
    assert geometry is not None  # discovery guarantees at least one image file
    label = None
    if case.label is not None:
        label_data, label_affine = _read_nifti(case.label)
        label = _spatial(case.label, label_data, 1)[0]
        _same_geometry(case, geometry, (case.label, label.shape, label_affine))
        _check_label_values(case.label, label, dataset.labels)
    return CaseArrays(channels, label, geometry[2])


def check_case(case: Case, dataset: MedicalDataset) -> None:
    """Validate one case by reading every file; raises a one-line ``InputError`` on bad input.

    Checks: readable NIfTI, 3D channel files (MSD: 4D with one channel per modality on the last
    axis), matching spatial shapes and affines across images and label, finite image values,
    whole-number label values that are all listed in the dataset labels.
    """
    load_case_arrays(case, dataset)


def make_progress(description_width: int = 28) -> Any:
    """A rich progress bar on stderr (stdout stays clean for tables and JSON).

    The finished bar stays on screen; a bar left by an error is removed, so a refused input
    leaves only its one error line on stderr.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    class _Progress(Progress):
        def __exit__(self, kind: Any, value: Any, trace: Any) -> None:
            if kind is not None:
                self.live.transient = True
            super().__exit__(kind, value, trace)

    columns = (
        f"{{task.description:<{description_width}}}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    return _Progress(*columns, console=Console(stderr=True), transient=False)


def _run_in_threads(
    items: list[Any], work: Callable[[Any], Any], description: str, workers: int = 1
) -> list[Any]:
    """Apply ``work`` to every item (threads when ``workers > 1``) with a progress bar.

    Results come back in item order; the first failing item (in item order) re-raises.
    """
    results: list[Any] = []
    with make_progress() as progress:
        task = progress.add_task(description, total=len(items))
        if workers <= 1:
            for item in items:
                results.append(work(item))
                progress.advance(task)
            return results
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(work, item) for item in items]
            try:
                for future in futures:
                    results.append(future.result())
                    progress.advance(task)
            finally:
                for future in futures:
                    future.cancel()
    return results


def check_dataset(dataset: MedicalDataset, workers: int = 1) -> None:
    """Validate every training and test case (threads when ``workers > 1``: reading is I/O and
    zlib, which release the GIL); raises the first error in case order."""
    cases = dataset.cases + dataset.test_cases
    _run_in_threads(cases, lambda c: check_case(c, dataset), "checking cases", workers)


def ras_spacing_and_shape(
    affine: np.ndarray, shape: tuple[int, ...]
) -> tuple[list[float], list[int]]:
    """Voxel spacing and shape along the R, A, S axes (what they become after reorientation)."""
    spacing = nib.affines.voxel_sizes(affine)
    ornt = nib.orientations.io_orientation(affine)
    ras_spacing, ras_shape = [0.0] * 3, [0] * 3
    for axis in range(3):
        ras_spacing[int(ornt[axis, 0])] = float(spacing[axis])
        ras_shape[int(ornt[axis, 0])] = int(shape[axis])
    return ras_spacing, ras_shape


# --------------------------------------------------------------------------------------------
# DICOM
# --------------------------------------------------------------------------------------------


@contextmanager
def quiet_reader_registration() -> Iterator[None]:
    """Silence MONAI's per-``LoadImage`` warning that the GPU DICOM decoder (nvImageCodec) is
    missing: ``LoadImage`` builds every reader, and on CPU machines that warning is pure noise."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="NvImgCodecPydicomReader", category=UserWarning)
        yield


def _dicom_files(folder: Path) -> list[Path]:
    from pydicom.misc import is_dicom

    return sorted(p for p in folder.iterdir() if p.is_file() and is_dicom(str(p)))


def read_dicom_series(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one DICOM series folder into ``(array X x Y x Z, RAS affine 4x4)``.

    Uses MONAI's ``PydicomReader`` (slices sorted by InstanceNumber, affine converted to RAS like
    NIfTI); ``InputError`` if the folder is missing, holds no DICOM files or several series.
    """
    import pydicom

    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: DICOM folder not found")
    files = _dicom_files(folder)
    if not files:
        raise InputError(f"{folder}: no DICOM files in folder")
    try:
        headers = [pydicom.dcmread(str(p), stop_before_pixels=True) for p in files]
    except Exception as err:  # pydicom raises several types for damaged headers
        raise InputError(f"{folder}: unreadable DICOM header: {err}") from None
    series = {str(getattr(h, "SeriesInstanceUID", "")) for h in headers}
    if len(series) > 1:
        raise InputError(f"{folder}: holds {len(series)} DICOM series; pass a folder with one")
    missing = [p.name for p, h in zip(files, headers, strict=True) if "InstanceNumber" not in h]
    if missing:
        raise InputError(f"{folder / missing[0]}: DICOM slice has no InstanceNumber (cannot sort)")
    return _load_dicom_with_monai(folder)


def _load_dicom_with_monai(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    from monai.data import PydicomReader
    from monai.transforms import LoadImage

    # fname_regex=None: keep only files pydicom recognises (a stray README would otherwise fail).
    with quiet_reader_registration():
        loader = LoadImage(reader=PydicomReader(fname_regex=None), image_only=True)
    try:
        image = loader(str(folder))
    except Exception as err:  # pixel data problems surface deep inside pydicom/MONAI
        raise InputError(f"{folder}: DICOM series could not be read: {err}") from None
    return np.asarray(image), np.asarray(image.affine, dtype=np.float64)


def save_nifti(path: Path, array: np.ndarray, affine: np.ndarray) -> Path:
    """Write ``array`` as a gzipped NIfTI atomically (temporary file, then rename).

    Streamed through gzip: no uncompressed or compressed copy of a large volume is held.
    """
    image = nib.Nifti1Image(array, affine)

    def write(tmp: Path) -> None:
        with gzip.open(tmp, "wb", compresslevel=1) as handle:
            holder = nib.FileHolder(fileobj=handle)
            image.to_file_map({"image": holder, "header": holder})

    return atomic_write(path, write)
