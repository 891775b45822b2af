"""Reading multispectral chips and scenes: layouts, bands, nodata, splits and per-band statistics.

Every raster goes through rasterio (GeoTIFF of any band count and dtype; PNG/JPG through GDAL's
drivers, without a CRS). A dataset is a EuroSAT-style tree ``<root>/<Class>/<Class>_<n>.tif``
(any class-folder tree of GeoTIFF/PNG/JPG reads the same way: UC Merced, AID, NWPU-RESISC45) or
a CSV manifest with ``path,label`` columns. The :class:`Preprocessing` decided once per dataset
(bands and their order, reflectance scale, per-band mean/std, chip size, class names) travels in
the checkpoint, so training, evaluation and prediction read pixels the same way.

Band names come from each file's band descriptions. EuroSAT's GeoTIFFs carry none, so a file
with 13 bands and no descriptions is named by :data:`EUROSAT_BANDS` (Sentinel-2 in EuroSAT's
order, B8A last); a file with descriptions always uses its own, and any other description-less
file has ``band1``, ``band2``, ... (select those by 1-based index).
"""

from __future__ import annotations

import csv
import json
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.windows import Window
from rich.progress import track
from torch.utils.data import Dataset

from shared.engine import InputError, atomic_write_json, file_stem

__all__ = [
    "EUROSAT_BANDS",
    "IMAGE_ENDINGS",
    "ChipDataset",
    "check_consistency",
    "read_stats",
    "STATS_FILE",
    "Preprocessing",
    "Sample",
    "compute_stats",
    "band_names",
    "default_scale",
    "open_raster",
    "read_pixels",
    "resolve_bands",
    "scan_dataset",
    "split_files",
    "split_samples",
    "write_stats",
]

IMAGE_ENDINGS = (".tif", ".tiff", ".png", ".jpg", ".jpeg")
STATS_FILE = "stats.json"
"""Written by ``hv-rs stats`` at the dataset root; training uses it when its bands match."""
SPLITS = ("train", "val", "test")
EUROSAT_BANDS = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11", "B12", "B8A",
)  # fmt: skip
"""Sentinel-2 bands in EuroSAT's file order: B01-B12, then B8A last (as torchgeo reads them)."""


@dataclass
class Sample:
    """One labelled chip."""

    path: Path
    label: int


@dataclass
class Preprocessing:
    """How pixels become network input; decided once per dataset and stored in the checkpoint."""

    bands: list[str]
    """Band names in network order (see :func:`band_names`)."""
    band_indexes: list[int]
    """1-based band indexes read from each file (rasterio's convention)."""
    scale: float
    """Reflectance divisor applied before normalisation (10000 for Sentinel-2 uint16)."""
    mean: list[float]
    std: list[float]
    chip_size: int
    class_names: list[str]
    source_band_count: int = 0
    """Bands in each training file; inputs with another count are refused (0: not checked)."""

    def to_dict(self) -> dict:
        """Plain types only: checkpoints are loaded with ``weights_only=True``."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Preprocessing:
        """Inverse of :meth:`to_dict`."""
        return cls(**data)


@contextmanager
def open_raster(path: Path) -> Iterator[rasterio.DatasetReader]:
    """Open a raster read-only; an unreadable or truncated file is a one-line ``InputError``."""
    try:
        with warnings.catch_warnings():
            # PNG/JPG chips and plain arrays have no georeferencing; callers warn once if needed.
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                yield src
    except RasterioIOError as err:
        raise InputError(f"{path}: not a readable raster (corrupt or truncated?): {err}") from None


def default_scale(dtype: str) -> float:
    """Reflectance divisor by storage type: Sentinel-2 L1C/L2A uint16 DN are reflectance x 10000."""
    return {"uint8": 255.0, "uint16": 10000.0, "int16": 10000.0}.get(dtype, 1.0)


def band_names(src: rasterio.DatasetReader) -> list[str]:
    """The name of each band: its description; for a 13-band file without any description,
    EuroSAT's Sentinel-2 order (:data:`EUROSAT_BANDS`); otherwise ``band<i>``."""
    if src.count == len(EUROSAT_BANDS) and not any(src.descriptions):
        return list(EUROSAT_BANDS)
    return [d or f"band{i}" for i, d in enumerate(src.descriptions, start=1)]


def resolve_bands(
    src: rasterio.DatasetReader, bands: Sequence[str | int] | None, path: Path
) -> tuple[list[int], list[str]]:
    """1-based indexes and names for ``bands``, given by name (:func:`band_names`) or index."""
    names = band_names(src)
    if not bands:
        return list(range(1, src.count + 1)), names
    indexes = []
    for band in bands:
        text = str(band)
        if text.isdigit():
            index = int(text)
            if not 1 <= index <= src.count:
                raise InputError(f"{path}: band index {index} outside 1..{src.count}")
        elif text in names:
            index = names.index(text) + 1
        else:
            raise InputError(f"{path}: no band named {text!r} (bands: {', '.join(names)})")
        indexes.append(index)
    return indexes, [names[i - 1] for i in indexes]


def read_pixels(
    src: rasterio.DatasetReader,
    pre: Preprocessing,
    path: Path,
    window: Window | None = None,
    expected_count: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Scaled float32 ``(C, H, W)`` pixels and a ``(H, W)`` valid mask for one chip or window.

    A file whose band count differs from the dataset's (``expected_count``) is refused; nodata
    and masked pixels are filled with the band mean, so they normalise to 0.
    """
    if expected_count is not None and src.count != expected_count:
        raise InputError(
            f"{path}: has {src.count} bands, the model expects {expected_count} "
            f"({', '.join(pre.bands)})"
        )
    try:
        data = src.read(pre.band_indexes, window=window, masked=True)
    except RasterioIOError as err:
        raise InputError(f"{path}: read failed (corrupt or truncated?): {err}") from None
    pixels = np.asarray(data.filled(0), dtype=np.float32) / np.float32(pre.scale)
    if not np.isfinite(pixels).all():
        # NaN or inf not declared as nodata: it would spread through normalisation and the model.
        raise InputError(
            f"{path}: NaN or infinite pixel values (declare them as the raster's nodata value)"
        )
    valid = ~np.ma.getmaskarray(data).any(axis=0)
    if not valid.all():
        fill = np.asarray(pre.mean, dtype=np.float32)[:, None, None]
        pixels = np.where(valid[None], pixels, fill)
    return pixels, valid


def _class_folders(root: Path) -> list[Sample] | None:
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        return None
    samples: list[Sample] = []
    for label, folder in enumerate(folders):
        files = sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_ENDINGS)
        if not files:
            raise InputError(f"{folder}: empty class folder (no {'/'.join(IMAGE_ENDINGS)} files)")
        samples += [Sample(f, label) for f in files]
    return samples


def _manifest(path: Path) -> tuple[list[Sample], list[str]]:
    try:
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise InputError(f"{path}: unreadable CSV manifest: {err}") from None
    if not rows or not {"path", "label"} <= set(rows[0]):
        raise InputError(f"{path}: a manifest needs a header with 'path' and 'label' columns")
    class_names = sorted({row["label"] for row in rows})
    samples = []
    for row in rows:
        file = Path(row["path"])
        file = file if file.is_absolute() else path.parent / file
        if not file.is_file():
            raise InputError(f"{path}: listed file {file} not found")
        samples.append(Sample(file, class_names.index(row["label"])))
    return samples, class_names


def scan_dataset(root: Path) -> tuple[list[Sample], list[str]]:
    """Labelled chips and class names of a class-folder tree or a CSV manifest (``path,label``)."""
    root = Path(root)
    if root.is_file() and root.suffix.lower() == ".csv":
        return _manifest(root)
    if not root.is_dir():
        raise InputError(f"{root}: dataset not found (a class-folder tree or a .csv manifest)")
    samples = _class_folders(root)
    if samples is None:
        raise InputError(f"{root}: no class folders (expected <root>/<Class>/<Class>_<n>.tif)")
    return samples, sorted(p.name for p in root.iterdir() if p.is_dir() and p.name[0] != ".")


def split_files(root: Path) -> dict[str, set[str]] | None:
    """Split lists shipped with a dataset: ``{split}.txt`` or torchgeo's ``eurosat-{split}.txt``."""
    found = {}
    for split in SPLITS:
        for name in (f"{split}.txt", f"eurosat-{split}.txt"):
            if (root / name).is_file():
                found[split] = {
                    file_stem(line.strip()) for line in (root / name).open() if line.strip()
                }
    return found if {"train", "val"} <= set(found) else None


def split_samples(
    samples: list[Sample],
    root: Path,
    val_fraction: float,
    test_fraction: float,
    seed: int,
) -> tuple[dict[str, list[Sample]], list[str]]:
    """Train/val/test lists: the dataset's split files when present, else a seeded stratified split.

    Hand-written rather than scikit-learn's ``train_test_split(stratify=...)``, which refuses any
    class with fewer than two members: here a class with one image goes to training whole, and
    the returned notes say so (the caller prints them).
    """
    notes: list[str] = []
    listed = split_files(Path(root)) if Path(root).is_dir() else None
    if listed is not None:
        splits = {
            split: [s for s in samples if file_stem(s.path) in listed.get(split, set())]
            for split in SPLITS
        }
        if not splits["train"] or not splits["val"]:
            raise InputError(f"{root}: split files name no existing chips for train or val")
        return splits, notes
    rng = np.random.default_rng(seed)
    splits = {split: [] for split in SPLITS}
    by_class: dict[int, list[Sample]] = {}
    for sample in samples:
        by_class.setdefault(sample.label, []).append(sample)
    for label, members in sorted(by_class.items()):
        order = [members[i] for i in rng.permutation(len(members))]
        if len(order) < 3:
            notes.append(
                f"class {label} ({order[0].path.parent.name}) has {len(order)} image(s): "
                "all used for training, none held out"
            )
            splits["train"] += order
            continue
        n_val = max(1, round(len(order) * val_fraction))
        n_test = max(1, round(len(order) * test_fraction)) if test_fraction > 0 else 0
        splits["val"] += order[:n_val]
        splits["test"] += order[n_val : n_val + n_test]
        splits["train"] += order[n_val + n_test :]
    if not splits["val"]:
        raise InputError(f"{root}: too few images per class for a validation split (need >= 3)")
    return splits, notes


def check_consistency(samples: list[Sample], dataset: Path) -> tuple[int, str, list[str]]:
    """Band count and dtype of the dataset; every chip must match. Returns warnings (mixed CRS)."""
    counts: dict[int, Path] = {}
    crs_seen: dict[str, Path] = {}
    dtype = "float32"
    for sample in track(
        samples, description="checking chips", transient=True, disable=len(samples) < 500
    ):
        with open_raster(sample.path) as src:
            counts.setdefault(src.count, sample.path)
            # Keyed by WKT: to_string() searches PROJ's EPSG tables for a file whose CRS carries
            # no code (0.15 s a chip for the Landsat chips' State Plane CRS: 90 s for 600 chips).
            crs_seen.setdefault(src.crs.to_wkt() if src.crs else "none", sample.path)
            dtype = src.dtypes[0]
        if len(counts) > 1:
            (first, a), (second, b) = list(counts.items())[:2]
            raise InputError(
                f"{b}: has {second} bands, but {a} has {first}: one band count per dataset"
            )
    warns = []
    if len(crs_seen) > 1:
        listing = ", ".join(f"{CRS.from_wkt(wkt).to_string() if wkt != 'none' else wkt} "
                            f"(e.g. {path.name})" for wkt, path in crs_seen.items())  # fmt: skip
        warns.append(f"{dataset}: chips in several CRS: {listing}")
    return next(iter(counts)), dtype, warns


def compute_stats(
    paths: Sequence[Path], band_indexes: list[int], scale: float
) -> tuple[list[float], list[float]]:
    """Per-band mean and std of valid pixels, streamed file by file (bounded memory)."""
    total = np.zeros(len(band_indexes))
    total_sq = np.zeros(len(band_indexes))
    count = 0
    for path in track(list(paths), description="band statistics", transient=True):
        with open_raster(path) as src:
            data = src.read(band_indexes, masked=True).astype(np.float64) / scale
        valid = ~np.ma.getmaskarray(data).any(axis=0)
        pixels = np.asarray(data.filled(0))[:, valid]
        total += pixels.sum(axis=1)
        total_sq += (pixels**2).sum(axis=1)
        count += int(valid.sum())
    if count == 0:
        raise InputError(f"{paths[0] if paths else 'dataset'}: no valid pixels for statistics")
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    return mean.tolist(), np.maximum(std, 1e-6).tolist()


def write_stats(root: Path, bands: list[str], scale: float, mean: list[float], std: list[float],
                out: Path | None = None) -> Path:  # fmt: skip
    """Store statistics with the dataset (``<root>/stats.json``) or at ``out``."""
    target = out or (Path(root) / STATS_FILE)
    return atomic_write_json(target, {"bands": bands, "scale": scale, "mean": mean, "std": std})


def read_stats(
    root: Path, bands: list[str], scale: float
) -> tuple[list[float], list[float]] | None:
    """Stored statistics when they were computed for the same bands and scale."""
    path = Path(root) / STATS_FILE
    if not Path(root).is_dir() or not path.is_file():
        return None
    try:
        stats = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise InputError(f"{path}: unreadable statistics file: {err}") from None
    if stats.get("bands") != bands or stats.get("scale") != scale:
        return None
    return stats["mean"], stats["std"]


class ChipDataset(Dataset):
    """Labelled chips as ``{"image": (C, S, S) float tensor, "label": int, "path": str}``.

    Each item opens its file (handles cannot be pickled to DataLoader workers, and one chip per
    file means nothing is gained by keeping them open); ``transform`` is an albumentations
    pipeline on ``(H, W, C)`` float32 arrays (see :mod:`remote_sensing.transforms`). ``random``:
    the pipeline augments, and each item seeds it from torch's generator.
    """

    def __init__(
        self,
        samples: list[Sample],
        pre: Preprocessing,
        transform: Callable,
        expected_count: int,
        random: bool = False,
    ) -> None:
        self.samples, self.pre, self.transform = samples, pre, transform
        self.expected_count = expected_count
        self.random = random

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        sample = self.samples[index]
        with open_raster(sample.path) as src:
            pixels, _ = read_pixels(src, self.pre, sample.path, expected_count=self.expected_count)
        if self.random:
            # albumentations keeps its own generator, which no global seed reaches (a fresh
            # random state per Compose): draw its seed from torch's, which the engine seeds
            # (each DataLoader worker differently) and restores on resume, so a seeded run
            # augments the same way every time.
            self.transform.set_random_seed(int(torch.randint(0, 2**31 - 1, ()).item()))
        image = self.transform(image=pixels.transpose(1, 2, 0))["image"]
        tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
        return {"image": tensor, "label": sample.label, "path": str(sample.path)}
