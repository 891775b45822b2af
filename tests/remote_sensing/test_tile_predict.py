"""Tiling and scene prediction: georeferencing kept, nodata skipped, bad input refused."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio

from remote_sensing.data import Preprocessing
from remote_sensing.model import build_model
from remote_sensing.predict import NODATA, Predictor, predict_chips, predict_scene
from remote_sensing.tile import tile_scene
from shared.engine import InputError


def _predictor(bands: int = 4, chip: int = 32) -> Predictor:
    pre = Preprocessing([f"B{i}" for i in range(bands)], list(range(1, bands + 1)), 10000.0,
                        [0.1] * bands, [0.05] * bands, chip, ["a", "b", "c"], bands)  # fmt: skip
    return Predictor(build_model("hybrid", bands, 3, chip).eval(), pre)


def _scene(rasters, path: Path, bands: int = 4, nodata_rows: int = 0, crs="EPSG:32633") -> Path:
    data = np.random.default_rng(0).integers(500, 3000, (bands, 70, 100)).astype(np.uint16)
    data[:, :nodata_rows] = 0
    return rasters.write_tif(path, data, crs=crs, nodata=0)


def test_tile_keeps_crs_and_window_transforms_and_skips_nodata(tmp_path: Path, rasters) -> None:
    scene = _scene(rasters, tmp_path / "scene.tif", nodata_rows=32)
    report = tile_scene(scene, tmp_path / "chips", size=32, stride=32)
    # 2 rows x 3 columns of windows; the first row is all nodata.
    assert (report.written, report.skipped_nodata) == (3, 3)
    with rasterio.open(scene) as src, rasterio.open(tmp_path / "chips/scene_r32_c64.tif") as chip:
        assert chip.crs == src.crs and chip.shape == (32, 32)
        assert chip.transform == src.window_transform(rasterio.windows.Window(64, 32, 32, 32))
        np.testing.assert_array_equal(chip.read(), src.read(window=((32, 64), (64, 96))))


def test_tile_refuses_all_nodata_and_warns_without_crs(tmp_path: Path, rasters) -> None:
    empty = _scene(rasters, tmp_path / "empty.tif", nodata_rows=70)
    with pytest.raises(InputError, match="empty.tif: every chip"):
        tile_scene(empty, tmp_path / "out", 32, 32)
    assert not (tmp_path / "out").exists()
    plain = _scene(rasters, tmp_path / "plain.tif", crs=None)
    with pytest.warns(UserWarning, match="no CRS"):
        report = tile_scene(plain, tmp_path / "plain_chips", 32, 32)
    assert not report.georeferenced and report.written == 6
    with pytest.raises(InputError, match="must not be the scene"):
        tile_scene(plain, tmp_path, 32, 32)


def test_predict_scene_writes_a_georeferenced_class_map(tmp_path: Path, rasters) -> None:
    scene = _scene(rasters, tmp_path / "scene.tif", nodata_rows=32)
    info = predict_scene(_predictor(), scene, tmp_path / "map.tif", probabilities=True)
    with rasterio.open(scene) as src, rasterio.open(tmp_path / "map.tif") as out:
        # 70 x 100 pixels in 32 px windows: the edge strips (6 rows, 4 columns) get a row and
        # a column of windows of their own, aligned to the scene edge.
        assert out.crs == src.crs and out.shape == (3, 4) == (info["rows"], info["cols"])
        assert out.transform.a == src.transform.a * 32 and out.transform.c == src.transform.c
        labels = out.read(1)
        assert (labels[0] == NODATA).all() and (labels[1:] < 3).all()
        assert json.loads(out.tags()["classes"]) == ["a", "b", "c"]
        assert len(out.colormap(1)) >= 3
    with rasterio.open(tmp_path / "map_probabilities.tif") as probs:
        assert probs.count == 3
        np.testing.assert_allclose(probs.read()[:, 1].sum(0), 1.0, atol=1e-5)


def test_every_pixel_of_an_odd_sized_scene_gets_a_class(tmp_path: Path, rasters) -> None:
    data = np.random.default_rng(2).integers(500, 3000, (4, 75, 101)).astype(np.uint16)
    scene = rasters.write_tif(tmp_path / "odd.tif", data)
    predict_scene(_predictor(), scene, tmp_path / "odd_map.tif")
    with rasterio.open(scene) as src, rasterio.open(tmp_path / "odd_map.tif") as out:
        labels = out.read(1)
        rows, cols = np.mgrid[0 : src.height, 0 : src.width]
        # Scene pixel centres -> map coordinates -> class-map pixel holding each one.
        xs, ys = rasterio.transform.xy(src.transform, rows.ravel(), cols.ravel())
        map_rows, map_cols = rasterio.transform.rowcol(out.transform, xs, ys)
        classes = labels[np.asarray(map_rows), np.asarray(map_cols)]
        assert out.shape == (3, 4) and (classes < 3).all()
        # The edge windows read real pixels: the last column's windows end at the scene edge.
        assert out.bounds.right >= src.bounds.right and out.bounds.bottom <= src.bounds.bottom


def test_predict_scene_without_crs_and_odd_size(tmp_path: Path, rasters) -> None:
    data = np.random.default_rng(1).integers(500, 3000, (4, 21, 27)).astype(np.uint16)
    scene = rasters.write_tif(tmp_path / "small.tif", data, crs=None)
    with pytest.warns(UserWarning, match="no CRS"):
        predict_scene(_predictor(), scene, tmp_path / "small_map.tif")
    with rasterio.open(tmp_path / "small_map.tif") as out:
        assert out.crs is None and out.shape == (1, 1)


def test_predict_refuses_bad_input_without_partial_output(tmp_path: Path, rasters) -> None:
    scene13 = _scene(rasters, tmp_path / "s13.tif", bands=13)
    with pytest.raises(InputError, match="s13.tif: has 13 bands, the model expects 4"):
        predict_scene(_predictor(), scene13, tmp_path / "m.tif")
    empty = _scene(rasters, tmp_path / "empty.tif", nodata_rows=70)
    with pytest.raises(InputError, match="empty.tif: every window is mostly nodata"):
        predict_scene(_predictor(), empty, tmp_path / "m.tif")
    scene = _scene(rasters, tmp_path / "s.tif")
    with pytest.raises(InputError, match="overwrite the input"):
        predict_scene(_predictor(), scene, scene)
    corrupt = tmp_path / "corrupt.tif"
    corrupt.write_bytes(scene.read_bytes()[:200])
    with pytest.raises(InputError, match="corrupt.tif"):
        predict_scene(_predictor(), corrupt, tmp_path / "m.tif")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corrupt.tif", "empty.tif", "s.tif",
                                                          "s13.tif"]  # fmt: skip


def test_predict_chip_folder_to_csv(tmp_path: Path, rasters) -> None:
    root = rasters.make_eurosat(tmp_path / "chips", 4, per_class=2)
    count = predict_chips(_predictor(), root, tmp_path / "out.csv")
    lines = (tmp_path / "out.csv").read_text().splitlines()
    assert count == 6 and lines[0] == "path,class,p_a,p_b,p_c" and len(lines) == 7
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        odd = rasters.write_tif(root / "odd" / "x.tif", np.ones((4, 30, 33), np.uint16), crs=None)
    assert predict_chips(_predictor(), odd.parent, tmp_path / "odd.csv") == 1
