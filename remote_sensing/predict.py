"""``hv-rs predict``: a scene to a class-map GeoTIFF, or a folder of chips to a CSV.

The checkpoint carries the preprocessing (bands, scale, statistics, chip size, class names) and
the network (the inference contract, :mod:`remote_sensing.plan`), so prediction needs only it. A
scene is read one row of chip-sized windows at a time and the class map written row by row:
memory is bounded by one row whatever the scene size. The class map has one pixel per window,
the scene's CRS, the scene's transform scaled by the chip size, a colour table and the class
names in its tags; windows that are mostly nodata get the nodata value 255. A scene whose size
is not a multiple of the chip size gets one more row and column of class-map pixels: their
windows are aligned to the scene's bottom and right edges (overlapping their neighbours) so
every scene pixel gets a class; the class map then reaches up to a chip beyond those edges, as a
window grid must. A scene smaller than one chip is one window, resampled.
"""

from __future__ import annotations

import csv
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.transform import Affine
from rasterio.windows import Window
from rich.progress import track
from torch import nn

from shared.engine import InputError, atomic_write, load_for_inference

from .data import IMAGE_ENDINGS, Preprocessing, open_raster, read_pixels
from .model import tta_logits
from .plan import REMOTE_SENSING
from .transforms import eval_transform

__all__ = [
    "NODATA",
    "Predictor",
    "chip_files",
    "chip_rows",
    "load_predictor",
    "predict_chips",
    "predict_scene",
    "write_chip_csv",
]

NODATA = 255


@dataclass
class Predictor:
    """A trained network with the preprocessing it was trained with."""

    model: nn.Module
    pre: Preprocessing
    tta: bool = False

    def probabilities(self, chips: np.ndarray) -> np.ndarray:
        """Class probabilities for ``(N, C, H, W)`` scaled pixels (resized and normalised here)."""
        transform = eval_transform(self.pre)
        batch = np.stack([transform(image=c.transpose(1, 2, 0))["image"] for c in chips])
        device = next(self.model.parameters()).device  # the rank's device under DDP
        x = torch.from_numpy(np.ascontiguousarray(batch.transpose(0, 3, 1, 2))).to(device)
        with torch.no_grad():
            logits = tta_logits(self.model, x) if self.tta else self.model(x)
        return logits.softmax(-1).cpu().numpy()

    def check_bands(self, src: rasterio.DatasetReader, path: Path) -> None:
        """Refuse an input whose band count is not the training data's."""
        expected = self.pre.source_band_count or max(self.pre.band_indexes)
        if src.count != expected:
            raise InputError(
                f"{path}: has {src.count} bands, the model expects {expected} "
                f"(trained on {', '.join(self.pre.bands)})"
            )


def load_predictor(checkpoint: Path, tta: bool = False) -> Predictor:
    """Model and preprocessing from a checkpoint alone (the inference contract)."""
    model, plan = load_for_inference(checkpoint, REMOTE_SENSING)
    return Predictor(model, plan.preprocessing, tta)


def _colormap(count: int) -> dict[int, tuple[int, int, int, int]]:
    import matplotlib

    colours = matplotlib.colormaps["tab10" if count <= 10 else "tab20"]
    return {
        i: tuple(int(255 * c) for c in colours(i % colours.N)[:3]) + (255,) for i in range(count)
    }


def predict_scene(predictor: Predictor, scene: Path, out: Path, probabilities: bool = False,
                  batch_size: int = 64) -> dict:  # fmt: skip
    """Class map (and optionally ``<out stem>_probabilities.tif``) for one scene."""
    scene, out = Path(scene), Path(out)
    pre = predictor.pre
    if out.resolve() == scene.resolve():
        raise InputError(f"{out}: the output would overwrite the input scene")
    prob_path = out.with_name(f"{out.stem}_probabilities.tif")
    with open_raster(scene) as src:
        predictor.check_bands(src, scene)
        if src.crs is None:
            warnings.warn(f"{scene}: no CRS; the class map is written without one", stacklevel=2)
        size = pre.chip_size
        win_h, win_w = min(size, src.height), min(size, src.width)
        rows, cols = -(-src.height // win_h), -(-src.width // win_w)  # ceiling division
        # The last row and column read windows flush with the scene edge: full-size, real
        # pixels (no padding that the model never saw in training).
        lefts = [min(col * win_w, src.width - win_w) for col in range(cols)]
        profile = {
            "driver": "GTiff", "height": rows, "width": cols, "count": 1, "dtype": "uint8",
            "nodata": NODATA, "crs": src.crs, "compress": "deflate",
            "transform": src.transform @ Affine.scale(win_w, win_h),
        }  # fmt: skip
        classes = len(pre.class_names)
        counts = np.zeros(classes, dtype=np.int64)

        def write(tmp: Path, prob_tmp: Path | None = None) -> None:
            prob_profile = profile | {"count": classes, "dtype": "float32", "nodata": None}
            with rasterio.open(tmp, "w", **profile) as dst:
                probs_dst = rasterio.open(prob_tmp, "w", **prob_profile) if prob_tmp else None
                for row in track(range(rows), description=f"predicting {scene.name}"):
                    top = min(row * win_h, src.height - win_h)
                    strip = Window(0, top, src.width, win_h)
                    pixels, valid = read_pixels(src, pre, scene, window=strip)
                    chips = np.stack([pixels[:, :, x : x + win_w] for x in lefts])
                    valid_share = np.array([valid[:, x : x + win_w].mean() for x in lefts])
                    probs = np.concatenate([
                        predictor.probabilities(chips[i : i + batch_size])
                        for i in range(0, cols, batch_size)
                    ])  # fmt: skip
                    labels = probs.argmax(1).astype(np.uint8)
                    labels[valid_share < 0.5] = NODATA
                    counts[:] += np.bincount(labels[labels != NODATA], minlength=classes)
                    dst.write(labels[None, None, :], window=Window(0, row, cols, 1))
                    if probs_dst is not None:
                        probs_dst.write(probs.T[:, None, :].astype(np.float32),
                                        window=Window(0, row, cols, 1))  # fmt: skip
                if probs_dst is not None:
                    probs_dst.descriptions = tuple(pre.class_names)
                    probs_dst.close()
                if counts.sum() == 0:
                    raise InputError(f"{scene}: every window is mostly nodata; nothing written")
                dst.write_colormap(1, _colormap(classes))
                dst.set_band_description(1, "class")
                names = {f"class_{i}": n for i, n in enumerate(pre.class_names)}
                dst.update_tags(classes=json.dumps(pre.class_names), bands=json.dumps(pre.bands),
                                **names)  # fmt: skip

        if probabilities:
            atomic_write(
                prob_path, lambda prob_tmp: atomic_write(out, lambda t: write(t, prob_tmp))
            )
        else:
            atomic_write(out, write)
    return {
        "out": str(out), "rows": rows, "cols": cols, "window": [win_h, win_w],
        "crs": str(src.crs) if src.crs else None,
        "class_counts": dict(zip(pre.class_names, counts.tolist(), strict=True)),
        "probabilities": str(prob_path) if probabilities else None,
    }  # fmt: skip


def chip_files(inputs: list[Path]) -> list[Path]:
    """The chips named by ``inputs``: image files as given, folders searched recursively."""
    files: list[Path] = []
    for path in inputs:
        if not path.exists():
            raise InputError(f"{path}: input not found")
        if path.is_dir():
            found = sorted(f for f in path.rglob("*") if f.suffix.lower() in IMAGE_ENDINGS)
            if not found:
                raise InputError(f"{path}: no chips ({'/'.join(IMAGE_ENDINGS)})")
            files += found
        else:
            files.append(path)
    return files


def chip_rows(predictor: Predictor, files: list[Path]) -> list[list]:
    """One CSV row per chip: path, class, probability per class (chips may differ in size;
    each is resized by the evaluation transform)."""
    names = predictor.pre.class_names
    chips = []
    for file in files:
        with open_raster(file) as src:
            predictor.check_bands(src, file)
            pixels, _ = read_pixels(src, predictor.pre, file)
        chips.append(pixels)
    probs = np.concatenate([predictor.probabilities(c[None]) for c in chips])
    return [[str(f), names[int(p.argmax())], *np.round(p, 5).tolist()]
            for f, p in zip(files, probs, strict=True)]  # fmt: skip


def write_chip_csv(rows: list[list], class_names: list[str], out: Path) -> None:
    """The chips' CSV, written atomically."""

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path", "class", *[f"p_{n}" for n in class_names]])
            writer.writerows(rows)

    atomic_write(out, write)


def predict_chips(predictor: Predictor, folder: Path, out: Path, batch_size: int = 64) -> int:
    """One CSV row per chip in ``folder`` (one process; ``hv-rs predict`` shares them)."""
    files = chip_files([Path(folder)])
    if Path(out).resolve() in {f.resolve() for f in files}:
        raise InputError(f"{out}: the output would overwrite an input")
    rows = []
    for start in track(range(0, len(files), batch_size), description="predicting chips"):
        rows += chip_rows(predictor, files[start : start + batch_size])
    write_chip_csv(rows, predictor.pre.class_names, Path(out))
    return len(rows)
