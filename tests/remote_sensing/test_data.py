"""Dataset scanning, splits, band selection, statistics and bad input."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio

from remote_sensing.data import (
    EUROSAT_BANDS,
    Preprocessing,
    compute_stats,
    open_raster,
    read_pixels,
    resolve_bands,
    scan_dataset,
    split_samples,
)
from remote_sensing.task import RSDataConfig, plan_dataset
from shared.engine import InputError


def test_eurosat_layout_13_bands_scaled_and_split(tmp_path: Path, rasters) -> None:
    root = rasters.make_eurosat(tmp_path / "ds", 13, per_class=6)
    plan = plan_dataset(RSDataConfig(root=str(root), chip_size=32), seed=1)
    assert plan.pre.class_names == ["Forest", "River", "SeaLake"]
    assert plan.band_count == 13 and plan.pre.scale == 10000.0
    assert len(plan.pre.mean) == 13
    sizes = {k: len(v) for k, v in plan.splits.items()}
    assert sum(sizes.values()) == 18 and sizes["val"] == 3 and sizes["test"] == 3
    # Stratified: every class in validation.
    assert {s.label for s in plan.splits["val"]} == {0, 1, 2}
    # The same seed gives the same split.
    again = plan_dataset(RSDataConfig(root=str(root), chip_size=32), seed=1)
    assert [s.path for s in again.splits["val"]] == [s.path for s in plan.splits["val"]]


def test_band_selection_by_name_and_index(eurosat4: Path, rasters) -> None:
    chip = next(eurosat4.glob("Forest/*.tif"))
    with open_raster(chip) as src:
        assert resolve_bands(src, ["B04", "2"], chip) == ([4, 2], ["B04", "B02"])
        with pytest.raises(InputError, match="no band named 'B09'"):
            resolve_bands(src, ["B09"], chip)


def _constant_bands(count: int) -> np.ndarray:
    """``count`` uint16 bands where band ``i`` (1-based) holds ``100 * i`` everywhere."""
    return np.stack([np.full((8, 8), 100 * i, np.uint16) for i in range(1, count + 1)])


def test_eurosat_names_read_the_right_bands_of_undescribed_13_band_chips(
    tmp_path: Path, rasters
) -> None:
    assert list(EUROSAT_BANDS) == rasters.eurosat_order
    for name in ("Forest", "River"):  # EuroSAT's GeoTIFFs carry no band descriptions
        for n in (1, 2, 3):
            rasters.write_tif(tmp_path / "ds" / name / f"{name}_{n}.tif", _constant_bands(13))
    chip = tmp_path / "ds" / "Forest" / "Forest_1.tif"
    with open_raster(chip) as src:
        assert not any(src.descriptions)
        indexes, names = resolve_bands(src, ["B8A", "B12", "B08"], chip)
        assert (indexes, names) == ([13, 12, 8], ["B8A", "B12", "B08"])
    cfg = RSDataConfig(root=str(tmp_path / "ds"), bands=["B04", "B03", "B02"], chip_size=8)
    plan = plan_dataset(cfg, seed=0)
    assert plan.pre.band_indexes == [4, 3, 2] and plan.pre.bands == ["B04", "B03", "B02"]
    np.testing.assert_allclose(plan.pre.mean, [0.04, 0.03, 0.02], rtol=1e-6)
    with open_raster(chip) as src:
        pixels, _ = read_pixels(src, plan.pre, chip, expected_count=13)
    np.testing.assert_allclose(pixels[:, 0, 0], [0.04, 0.03, 0.02], rtol=1e-6)


def test_a_file_with_descriptions_keeps_its_own_names(tmp_path: Path, rasters) -> None:
    """Descriptions win over the EuroSAT table, and other band counts get no Sentinel-2 names."""
    own = list(reversed(rasters.eurosat_order))
    chip = rasters.write_tif(tmp_path / "own.tif", _constant_bands(13), descriptions=own)
    with open_raster(chip) as src:
        indexes, _ = resolve_bands(src, ["B04", "B03", "B02"], chip)
        pre = Preprocessing(["B04", "B03", "B02"], indexes, 1.0, [0.0] * 3, [1.0] * 3, 8, ["a"])
        pixels, _ = read_pixels(src, pre, chip)
    assert indexes == [10, 11, 12] and pixels[:, 0, 0].tolist() == [1000.0, 1100.0, 1200.0]
    twelve = rasters.write_tif(tmp_path / "twelve.tif", _constant_bands(12))
    with open_raster(twelve) as src, pytest.raises(InputError, match="no band named 'B04'"):
        resolve_bands(src, ["B04"], twelve)


def test_one_image_class_goes_to_training_with_a_note(tmp_path: Path, rasters) -> None:
    root = rasters.make_eurosat(tmp_path / "ds", 4, per_class=5, classes=("A", "B"))
    rasters.make_eurosat(tmp_path / "ds", 4, per_class=1, classes=("C",))
    samples, _ = scan_dataset(root)
    splits, notes = split_samples(samples, root, 0.2, 0.2, 0)
    assert any("has 1 image" in n for n in notes)
    assert [s.label for s in splits["train"]].count(2) == 1


def test_split_files_are_used(eurosat4: Path, rasters) -> None:
    (eurosat4 / "train.txt").write_text("Forest_1.tif\nRiver_1.tif\n")
    (eurosat4 / "val.txt").write_text("SeaLake_1.jpg\n")  # matched by name, any ending
    splits, _ = split_samples(scan_dataset(eurosat4)[0], eurosat4, 0.2, 0.2, 0)
    assert [s.path.name for s in splits["val"]] == ["SeaLake_1.tif"]
    assert len(splits["train"]) == 2 and not splits["test"]


def test_csv_manifest_and_png(tmp_path: Path, eurosat4: Path, rasters) -> None:
    manifest = tmp_path / "m.csv"
    rows = [f"{p},{p.parent.name}" for p in sorted(eurosat4.rglob("*.tif"))]
    manifest.write_text("path,label\n" + "\n".join(rows) + "\n")
    samples, classes = scan_dataset(manifest)
    assert len(samples) == 12 and classes == ["Forest", "River", "SeaLake"]


def test_streaming_stats_match_numpy(eurosat4: Path, rasters) -> None:
    files = sorted(eurosat4.rglob("*.tif"))
    mean, std = compute_stats(files, [1, 3], 10000.0)
    stack = []
    for file in files:
        with rasterio.open(file) as src:
            stack.append(src.read([1, 3]).reshape(2, -1))
    stack = np.concatenate(stack, axis=1) / 10000.0
    np.testing.assert_allclose(mean, stack.mean(1), rtol=1e-6)
    np.testing.assert_allclose(std, stack.std(1), rtol=1e-5)


def test_nodata_pixels_are_left_out_of_stats(tmp_path: Path, rasters) -> None:
    data = np.full((1, 8, 8), 100, dtype=np.uint16)
    data[0, :4] = 0
    path = rasters.write_tif(tmp_path / "a.tif", data, nodata=0)
    mean, std = compute_stats([path], [1], 1.0)
    assert mean == [100.0] and std[0] < 1e-3


def test_empty_class_folder_is_refused(eurosat4: Path, rasters) -> None:
    (eurosat4 / "Empty").mkdir()
    with pytest.raises(InputError, match="Empty: empty class folder"):
        scan_dataset(eurosat4)


def test_corrupt_tiff_names_the_file(eurosat4: Path, rasters) -> None:
    bad = eurosat4 / "Forest" / "Forest_9.tif"
    bad.write_bytes(next(eurosat4.glob("River/*.tif")).read_bytes()[:300])
    with pytest.raises(InputError, match="Forest_9.tif"):
        plan_dataset(RSDataConfig(root=str(eurosat4)), 0)


def test_other_band_count_is_refused_naming_both(eurosat4: Path, rasters) -> None:
    rasters.write_tif(eurosat4 / "Forest" / "Forest_9.tif", np.ones((13, 32, 32), np.uint16))
    with pytest.raises(InputError, match="Forest_9.tif: has 13 bands.*has 4"):
        plan_dataset(RSDataConfig(root=str(eurosat4)), 0)


def test_mixed_crs_warns_with_both(eurosat4: Path, rasters) -> None:
    rasters.write_tif(eurosat4 / "Forest" / "Forest_9.tif", np.ones((4, 32, 32), np.uint16),
              crs="EPSG:4326", origin=(10.0, 50.0), res=0.001)  # fmt: skip
    rasters.write_tif(eurosat4 / "River" / "River_9.tif", np.ones((4, 32, 32), np.uint16), crs=None)
    plan = plan_dataset(RSDataConfig(root=str(eurosat4)), 0)
    note = next(n for n in plan.notes if "several CRS" in n)
    assert "EPSG:32633" in note and "EPSG:4326" in note and "none" in note
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # chips without CRS still load
        assert plan.band_count == 4
