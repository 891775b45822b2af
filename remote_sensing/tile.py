"""``hv-rs tile``: cut a scene into georeferenced chips by windowed reads (bounded memory).

Each chip is read as one rasterio ``Window`` and written with the scene's profile, the window's
transform and the scene's CRS, so chips line up with the scene in QGIS. Chips with more than
``max_nodata`` of their pixels nodata or masked are skipped and counted.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window
from rich.progress import track

from shared.engine import InputError, atomic_write, file_stem

from .data import open_raster

__all__ = ["TileReport", "tile_scene", "window_grid"]


@dataclass
class TileReport:
    """What a tiling run did."""

    written: int
    skipped_nodata: int
    georeferenced: bool
    out_dir: Path


def window_grid(height: int, width: int, size: int, stride: int) -> list[Window]:
    """Windows of ``size`` every ``stride`` pixels that fit inside the scene (row-major)."""
    return [
        Window(col, row, size, size)
        for row in range(0, height - size + 1, stride)
        for col in range(0, width - size + 1, stride)
    ]


def tile_scene(scene: Path, out_dir: Path, size: int = 64, stride: int = 64,
               max_nodata: float = 0.5) -> TileReport:  # fmt: skip
    """Write ``out_dir/<scene>_r<row>_c<col>.tif`` chips; refuses to write into the input."""
    scene, out_dir = Path(scene), Path(out_dir)
    if size < 1 or stride < 1:
        raise InputError(f"--size and --stride must be >= 1, got {size} and {stride}")
    if out_dir.resolve() == scene.resolve() or scene.resolve().parent == out_dir.resolve():
        raise InputError(f"{out_dir}: the chip folder must not be the scene or its folder")
    with open_raster(scene) as src:
        if src.height < size or src.width < size:
            raise InputError(
                f"{scene}: {src.width}x{src.height} pixels, smaller than one chip ({size})"
            )
        if src.crs is None:
            warnings.warn(
                f"{scene}: no CRS; chips are written without georeferencing", stacklevel=2
            )
        profile = src.profile | {"height": size, "width": size, "driver": "GTiff",
                                 "tiled": False, "compress": "deflate"}  # fmt: skip
        profile.pop("blockxsize", None)
        profile.pop("blockysize", None)
        written = skipped = 0
        stem = file_stem(scene)
        for window in track(window_grid(src.height, src.width, size, stride), description="tiling"):
            data = src.read(window=window, masked=True)
            invalid = np.ma.getmaskarray(data).any(axis=0).mean()
            if invalid > max_nodata:
                skipped += 1
                continue
            chip_profile = profile | {"transform": src.window_transform(window)}
            target = out_dir / f"{stem}_r{window.row_off}_c{window.col_off}.tif"

            def write(tmp: Path, d=data, p=chip_profile) -> None:
                with rasterio.open(tmp, "w", **p) as dst:
                    dst.write(d.data)
                    dst.descriptions = src.descriptions

            atomic_write(target, write)
            written += 1
        georeferenced = src.crs is not None
    if written == 0:
        raise InputError(
            f"{scene}: every chip is more than {max_nodata:.0%} nodata; nothing written"
        )
    return TileReport(written, skipped, georeferenced, out_dir)
