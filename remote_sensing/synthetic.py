"""Embedded demo data: the real Sentinel-2 chip xarray-spatial ships, and a procedural
scene-classification set drawn with its pixels, written in EuroSAT's on-disk layout.

No labelled satellite archive ships offline. The chip (``xrspatial/datasets/sentinel-2``,
xarray-spatial 0.5.3: 6 bands B02, B03, B04, B08, B11, B12, 300 x 200 pixels, EPSG:32719) is
an arid scene with almost no water or vegetation, so the four spectral pools are the chip's most
water-like (highest NDWI, darkest NIR), greenest (NDVI), most built-up-like (NDBI) and median
(bare) pixels: real spectra, relative labels. Classes are defined by spatial structure (rivers,
lakes, crop rows, road, house grids, industrial blocks, forest and pasture textures), drawn at a
random orientation and ground scale, so a classifier must learn structure, not "up".
The nc files' ``transform`` attribute says 10 m, but their pixel-centre coordinates are 20 m
apart (6 km x 4 km): the coordinates are used.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin
from rich.progress import track
from scipy.ndimage import gaussian_filter

from shared.engine import InputError, atomic_write

__all__ = ["BANDS", "CLASSES", "load_sentinel2_chip", "write_demo_dataset", "write_scene"]

BANDS = ["B02", "B03", "B04", "B08", "B11", "B12"]
_FILES = ["blue", "green", "red", "nir", "swir1", "swir2"]
CLASSES = ["AnnualCrop", "Forest", "Highway", "Industrial", "Pasture", "Residential", "River",
           "SeaLake"]  # fmt: skip
WATER, VEG, LOWVEG, BUILT, BARE = range(5)


def load_sentinel2_chip() -> tuple[np.ndarray, dict]:
    """The real chip as ``(6, 200, 300)`` reflectance x 10000 and its profile (no network)."""
    import xarray as xr

    try:
        folder = importlib.resources.files("xrspatial") / "datasets" / "sentinel-2"
    except ModuleNotFoundError:
        raise InputError("xarray-spatial (0.5.3) is not installed: pip install -e .") from None
    bands = []
    for name in _FILES:
        with xr.open_dataset(folder / f"{name}_band.nc", engine="scipy") as ds:
            array = ds["__xarray_dataarray_variable__"]
            bands.append(array.values.astype(np.float32))
            x, y = array["x"].values, array["y"].values
    res = float(x[1] - x[0])
    transform = from_origin(x[0] - res / 2, y[0] + res / 2, res, res)
    profile = {"driver": "GTiff", "crs": "EPSG:32719", "transform": transform}
    return np.stack(bands), profile


def write_scene(path: Path) -> Path:
    """The real chip as a georeferenced uint16 GeoTIFF with band names."""
    pixels, profile = load_sentinel2_chip()
    count, height, width = pixels.shape
    profile |= {"count": count, "height": height, "width": width, "dtype": "uint16"}

    def write(tmp: Path) -> None:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(np.clip(pixels, 0, 65535).astype(np.uint16))
            dst.descriptions = tuple(BANDS)

    return atomic_write(path, write)


def spectral_pools(pixels: np.ndarray) -> list[np.ndarray]:
    """``(N, 6)`` spectra per material (water, vegetation, low vegetation, built-up, bare)."""
    blue, green, red, nir, swir1, _ = pixels
    flat = pixels.reshape(len(pixels), -1).T
    ndvi = ((nir - red) / (nir + red)).ravel()
    ndwi = ((green - nir) / (green + nir)).ravel()
    ndbi = ((swir1 - nir) / (swir1 + nir)).ravel()
    brightness = pixels.sum(0).ravel()
    pct = np.percentile

    def pool(mask: np.ndarray) -> np.ndarray:
        return flat[mask]

    water = pool((ndwi >= pct(ndwi, 97)) & (nir.ravel() <= pct(nir, 30)))
    if len(water) < 50:
        water = pool(ndwi >= pct(ndwi, 98))
    return [
        water,
        pool(ndvi >= pct(ndvi, 95)),
        pool((ndvi >= pct(ndvi, 70)) & (ndvi < pct(ndvi, 90))),
        pool((ndbi >= pct(ndbi, 90)) & (brightness >= pct(brightness, 60))),
        pool((ndbi >= pct(ndbi, 40)) & (ndbi <= pct(ndbi, 60))),
    ]


def _smooth(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    field = gaussian_filter(rng.standard_normal((size, size)), sigma, mode="wrap")
    return (field - field.mean()) / (field.std() + 1e-6)


def _material_map(name: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """Material index per pixel for one chip of class ``name`` (random angle and ground scale)."""
    angle = rng.uniform(0, np.pi)
    scale = rng.uniform(0.7, 1.4) * size / 32
    yy, xx = np.mgrid[0:size, 0:size] - (size - 1) / 2
    u = (xx * np.cos(angle) + yy * np.sin(angle)) / scale
    v = (-xx * np.sin(angle) + yy * np.cos(angle)) / scale
    noise = _smooth(rng, size, 3 * scale)
    grass = np.where(noise > 0.8, BARE, LOWVEG)
    if name == "River":
        centre = 3 * np.sin(u / rng.uniform(3, 6) + rng.uniform(0, 6)) + rng.uniform(-4, 4)
        return np.where(
            np.abs(v - centre) < rng.uniform(1.5, 3.5), WATER, np.where(noise > 0, VEG, LOWVEG)
        )
    if name == "SeaLake":
        shore = rng.uniform(4, 14) + 2 * noise
        return np.where(v < shore, WATER, np.where(noise > 0.3, BARE, LOWVEG))
    if name == "Forest":
        return np.where(noise > 1.6, LOWVEG, VEG)
    if name == "AnnualCrop":
        period = rng.uniform(3, 5)
        field_id = np.floor(u / rng.uniform(8, 14)) + np.floor(v / rng.uniform(10, 16))
        rows = np.sin(2 * np.pi * (v + field_id * 1.3) / period) > 0
        return np.where(rows, VEG, BARE)
    if name == "Highway":
        return np.where(np.abs(v - rng.uniform(-4, 4)) < rng.uniform(0.8, 1.6), BUILT, grass)
    if name == "Residential":
        period = rng.uniform(4, 6)
        houses = (np.mod(u, period) < period * 0.55) & (np.mod(v, period) < period * 0.55)
        return np.where(houses, BUILT, np.where(noise > 0.5, VEG, LOWVEG))
    if name == "Industrial":
        period = rng.uniform(10, 16)
        blocks = (np.mod(u, period) < period * 0.75) & (np.mod(v, period) < period * 0.6)
        return np.where(blocks, BUILT, BARE)
    if name == "Pasture":
        return np.where(noise > 1.2, BARE, np.where(noise < -1.3, VEG, LOWVEG))
    raise ValueError(f"unknown class {name!r}")


def draw_chip(
    name: str, size: int, pools: list[np.ndarray], rng: np.random.Generator
) -> np.ndarray:
    """``(6, size, size)`` uint16 chip: pixel spectra drawn from the material pools, sensor blur."""
    materials = _material_map(name, size, rng)
    chip = np.empty((pools[0].shape[1], size, size), dtype=np.float32)
    for material, pool in enumerate(pools):
        where = materials == material
        picks = pool[rng.integers(0, len(pool), int(where.sum()))]
        chip[:, where] = picks.T
    chip = gaussian_filter(chip, (0, 0.6, 0.6))  # the sensor's point-spread: mixed edges
    chip *= rng.uniform(0.9, 1.1)  # illumination differs between acquisitions
    return np.clip(chip, 0, 65535).astype(np.uint16)


def write_demo_dataset(root: Path, per_class: int = 120, size: int = 32, seed: int = 0,
                       classes: list[str] | None = None) -> Path:  # fmt: skip
    """EuroSAT layout ``root/<Class>/<Class>_<n>.tif``: georeferenced 6-band uint16 chips."""
    pixels, profile = load_sentinel2_chip()
    pools = spectral_pools(pixels)
    rng = np.random.default_rng(seed)
    jobs = [(name, n) for name in (classes or CLASSES) for n in range(1, per_class + 1)]
    res = profile["transform"].a
    for name, n in track(jobs, description="demo chips", transient=True):
        chip = draw_chip(name, size, pools, rng)
        # Each chip placed somewhere in the scene's UTM zone, as tiles of a larger area would be.
        west, north = 600000 + res * size * n, 4700000 - res * size * CLASSES.index(name)
        meta = {"driver": "GTiff", "count": len(chip), "height": size, "width": size,
                "dtype": "uint16", "crs": profile["crs"],
                "transform": from_origin(west, north, res, res)}  # fmt: skip
        _write_chip(root / name / f"{name}_{n}.tif", chip, meta)
    return root


def _write_chip(path: Path, chip: np.ndarray, meta: dict) -> None:
    def write(tmp: Path) -> None:
        with rasterio.open(tmp, "w", **meta) as dst:
            dst.write(chip)
            dst.descriptions = tuple(BANDS)

    atomic_write(path, write)
