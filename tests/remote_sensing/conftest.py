"""Small raster fixtures for the remote-sensing tests: chips and scenes written to tmp files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

# EuroSAT's band order (B8A after B12), written here rather than imported so the tests check the
# code's table against it.
EUROSAT_ORDER = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11",
                 "B12", "B8A"]  # fmt: skip


def write_tif(path: Path, data: np.ndarray, crs: str | None = "EPSG:32633", nodata=None,
              descriptions: list[str] | None = None, origin=(500000.0, 4000000.0),
              res: float = 10.0) -> Path:  # fmt: skip
    """Write ``(C, H, W)`` data as a GeoTIFF (no CRS when ``crs`` is None)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {"driver": "GTiff", "count": data.shape[0], "height": data.shape[1],
               "width": data.shape[2], "dtype": str(data.dtype), "nodata": nodata}  # fmt: skip
    if crs is not None:
        profile |= {"crs": crs, "transform": from_origin(*origin, res, res)}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        if descriptions:
            dst.descriptions = tuple(descriptions)
    return path


def make_eurosat(root: Path, bands: int, per_class: int = 4, size: int = 32,
                 classes=("Forest", "River", "SeaLake"), seed: int = 0) -> Path:  # fmt: skip
    """EuroSAT layout of uint16 chips; each class has its own brightness so it is learnable.

    Bands are described with the first ``bands`` names of EuroSAT's order (all 13 for 13).
    """
    rng = np.random.default_rng(seed)
    names = EUROSAT_ORDER[:bands]
    for label, name in enumerate(classes):
        for n in range(1, per_class + 1):
            data = rng.integers(500, 1500, (bands, size, size)) + 1500 * label
            write_tif(root / name / f"{name}_{n}.tif", data.astype(np.uint16), descriptions=names)
    return root


@pytest.fixture
def eurosat4(tmp_path: Path) -> Path:
    """A 4-band EuroSAT-layout folder, 3 classes x 4 chips."""
    return make_eurosat(tmp_path / "eurosat4", 4)


class Rasters:
    """The helpers above, handed to tests as a fixture (importlib mode: no conftest imports)."""

    eurosat_order = EUROSAT_ORDER
    write_tif = staticmethod(write_tif)
    make_eurosat = staticmethod(make_eurosat)


@pytest.fixture
def rasters() -> type[Rasters]:
    """Raster-writing helpers."""
    return Rasters
