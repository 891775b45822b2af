"""``hv-med evaluate``: score folders of predicted NIfTI label maps against references.

Files match by case name; every case's geometry is checked against its reference from the
headers before any voxel is read. The per-case, per-class Dice and HD95 come from
:mod:`medical.metrics` (nnU-Net's conventions, NaN policy included); this module writes what the
command promises: ``summary.json`` (nnU-Net-like), ``metrics.csv``, an overlay figure of the
worst cases, and the rich summary table.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from shared.engine.io import InputError, atomic_write, atomic_write_json, file_stem

from .data import NIFTI_ENDINGS
from .metrics import NAN_POLICY, dice_per_class, hd95_per_class

__all__ = ["evaluate_folders", "format_summary_table"]


# nnU-Net names image channels {case}_0000.nii.gz; labels and predictions are {case}.nii.gz.
_IMAGE_CHANNEL_SUFFIX = "_0000"
# Header affines are stored as float32: allow that rounding, nothing a resampling would cause.
_AFFINE_ATOL = 1e-3


# --------------------------------------------------------------------------------------------
# Folder discovery and loading
# --------------------------------------------------------------------------------------------


def _nifti_files(folder: Path, role: str) -> dict[str, Path]:
    """Case name -> NIfTI file in ``folder`` (other files, e.g. nnU-Net's json, are ignored)."""
    if not folder.is_dir():
        raise InputError(f"{folder}: {role} folder not found")
    cases: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.name.endswith(NIFTI_ENDINGS) or not path.is_file():
            continue
        case = file_stem(path)
        if case in cases:
            raise InputError(f"{path}: {role} case '{case}' also given as {cases[case].name}")
        cases[case] = path
    return cases


def _reference_files(gt_dir: Path) -> dict[str, Path]:
    """Reference files: ``gt_dir/{case}.nii[.gz]``, or an nnU-Net/MSD dataset's ``labelsTr``."""
    cases = _nifti_files(gt_dir, "reference")
    if not cases and (gt_dir / "labelsTr").is_dir():
        cases = _nifti_files(gt_dir / "labelsTr", "reference")
    if not cases:
        raise InputError(f"{gt_dir}: no reference .nii/.nii.gz files")
    return cases


def _match_cases(pred_dir: Path, gt_dir: Path) -> list[tuple[str, Path, Path]]:
    """(case, prediction, reference) for every reference case; InputError on any mismatch."""
    refs = _reference_files(gt_dir)
    preds = _nifti_files(pred_dir, "prediction")
    missing = [c for c in refs if c not in preds]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise InputError(
            f"{pred_dir}: no prediction for reference case '{missing[0]}' "
            f"({refs[missing[0]].name}){more}"
        )
    extra = [c for c in preds if c not in refs]
    if extra:
        more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
        raise InputError(f"{preds[extra[0]]}: prediction has no reference case in {gt_dir}{more}")
    return [(c, preds[c], refs[c]) for c in sorted(refs)]


def _load_header(path: Path) -> nib.Nifti1Image:
    try:
        return nib.load(path)
    except Exception as err:  # nibabel raises several types for truncated/foreign files
        raise InputError(f"{path}: not a readable NIfTI file: {err}") from None


def _spatial_shape(img: nib.Nifti1Image) -> tuple[int, ...]:
    """The shape with trailing singleton axes dropped (some tools save labels as X,Y,Z,1)."""
    shape = tuple(img.shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    return shape


def _check_geometry(case: str, pred: nib.Nifti1Image, gt: nib.Nifti1Image) -> None:
    """Header-only checks, run for every case before any voxel is read (fail fast)."""
    gt_shape, pred_shape = _spatial_shape(gt), _spatial_shape(pred)
    if len(gt_shape) != 3:
        raise InputError(f"case '{case}': reference is {len(gt_shape)}D {gt_shape}, expected 3D")
    if pred_shape != gt_shape:
        raise InputError(
            f"case '{case}': prediction shape {pred_shape} != reference shape {gt_shape}"
        )
    if not np.allclose(pred.affine, gt.affine, rtol=0, atol=_AFFINE_ATOL):
        raise InputError(
            f"case '{case}': prediction affine differs from the reference affine "
            f"(max difference {np.abs(pred.affine - gt.affine).max():.4g})"
        )


def _load_labels(img: nib.Nifti1Image, path: Path, case: str, role: str) -> np.ndarray:
    """Integer label map; InputError naming the file when it holds non-integer values."""
    data = np.asanyarray(img.dataobj).reshape(_spatial_shape(img))
    if np.issubdtype(data.dtype, np.integer) or data.dtype == bool:
        return data.astype(np.int64, copy=False)
    non_integer = ~np.isfinite(data) | (data != np.round(data))
    if non_integer.any():
        raise InputError(
            f"{path}: {role} for case '{case}' has non-integer value "
            f"{data[non_integer].flat[0]!r}; expected an integer label map"
        )
    return data.astype(np.int64)


# --------------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------------


def _nanmean(values: Iterable[float]) -> float:
    """Mean of the non-NaN values; NaN (without numpy's warning) when there are none."""
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


def _json_number(value: float) -> float | None:
    return None if math.isnan(value) else value


def _class_names(class_ids: list[int], labels: dict[int, str] | None) -> dict[int, str]:
    names = {c: (labels[c] if labels else str(c)) for c in class_ids}
    if len(set(names.values())) != len(names):
        raise InputError(f"labels: class names must be unique, got {sorted(names.values())}")
    return names


def _build_summary(
    rows: list[dict[str, Any]], names: dict[int, str], labels_given: bool
) -> dict[str, Any]:
    """nnU-Net-like summary; NaN becomes None so the dict equals the JSON file."""
    per_case = []
    for row in rows:
        per_case.append(
            {
                "case": row["case"],
                "prediction_file": row["prediction_file"],
                "reference_file": row["reference_file"],
                "dice": {names[c]: _json_number(row["dice"][c]) for c in names},
                "hd95": {names[c]: _json_number(row["hd95"][c]) for c in names},
            }
        )
    mean = {
        names[c]: {
            "dice": _nanmean(r["dice"][c] for r in rows),
            "hd95": _nanmean(r["hd95"][c] for r in rows),
        }
        for c in names
    }
    foreground = {m: _nanmean(v[m] for v in mean.values()) for m in ("dice", "hd95")}
    return {
        "labels": {str(c): n for c, n in names.items()},
        "labels_source": "argument" if labels_given else "union of values present",
        "num_cases": len(rows),
        "metric_per_case": per_case,
        "mean": {n: {m: _json_number(v) for m, v in d.items()} for n, d in mean.items()},
        "foreground_mean": {m: _json_number(v) for m, v in foreground.items()},
        "nan_policy": NAN_POLICY,
    }


def _write_csv(path: Path, rows: list[dict[str, Any]], names: dict[int, str]) -> None:
    def write(tmp: Path) -> None:
        with tmp.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["case", "class_id", "class_name", "dice", "hd95_mm"])
            for row in rows:
                for c, name in names.items():
                    writer.writerow([row["case"], c, name, row["dice"][c], row["hd95"][c]])

    atomic_write(path, write)  # NaN is written as "nan", which pandas and numpy read back


# --------------------------------------------------------------------------------------------
# Overlay figure
# --------------------------------------------------------------------------------------------


def _axial_axis(affine: np.ndarray) -> int:
    """The array axis that runs inferior-superior (axial slices are taken across it)."""
    codes = nib.aff2axcodes(affine)
    return next((i for i, code in enumerate(codes) if code in ("S", "I")), 2)


def _best_slice(gt: np.ndarray, pred: np.ndarray, axis: int) -> int:
    """Axial slice with the most reference foreground (prediction if the reference is empty)."""
    for labels in (gt, pred):
        counts = np.moveaxis(labels > 0, axis, 0).reshape(labels.shape[axis], -1).sum(1)
        if counts.any():
            return int(counts.argmax())
    return gt.shape[axis] // 2


def _axial_slice(volume: np.ndarray, k: int, axis: int) -> np.ndarray:
    """Slice ``k`` across ``axis``, turned a quarter so the first array axis runs across."""
    return np.rot90(np.take(volume, k, axis=axis))


def _image_file(image_dir: Path, case: str) -> Path:
    """The image for ``case``: ``{case}.nii[.gz]`` or nnU-Net's channel 0 ``{case}_0000``."""
    for stem in (case, case + _IMAGE_CHANNEL_SUFFIX):
        for suffix in NIFTI_ENDINGS:
            if (image_dir / f"{stem}{suffix}").is_file():
                return image_dir / f"{stem}{suffix}"
    raise InputError(
        f"{image_dir}: no image for case '{case}' ({case}.nii.gz or {case}_0000.nii.gz)"
    )


def _load_image(image_dir: Path, case: str, shape: tuple[int, ...]) -> np.ndarray:
    path = _image_file(image_dir, case)
    data = np.asanyarray(_load_header(path).dataobj).astype(np.float32)
    if data.ndim == 4:  # several channels or time points: show the first
        data = data[..., 0]
    if data.shape != shape:
        raise InputError(
            f"{path}: image shape {data.shape} != reference shape {shape} for '{case}'"
        )
    return data


def _label_colours(n: int) -> np.ndarray:
    """RGBA colours for label indices 1..n (index 0, background, transparent)."""
    from matplotlib import colormaps

    base = colormaps["tab20" if n > 10 else "tab10"]
    colours = np.zeros((n + 1, 4))
    colours[1:] = [base(i % base.N) for i in range(n)]
    return colours


def _colour_index(labels: np.ndarray, class_ids: list[int]) -> np.ndarray:
    """Label map -> 1-based position in ``class_ids`` (0 for background and unscored values)."""
    out = np.zeros(labels.shape, dtype=np.int64)
    for i, c in enumerate(class_ids, start=1):
        out[labels == c] = i
    return out


def _overlay_rows(
    cases: list[dict[str, Any]], image_dir: Path | None, class_ids: list[int]
) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """(title, image, reference, prediction) axial slices; labels as colour indices."""
    rows = []
    for row in cases:
        gt_img, pred_img = _load_header(row["gt_path"]), _load_header(row["pred_path"])
        gt = _load_labels(gt_img, row["gt_path"], row["case"], "reference")
        pred = _load_labels(pred_img, row["pred_path"], row["case"], "prediction")
        axis = _axial_axis(gt_img.affine)
        k = _best_slice(gt, pred, axis)
        image = _load_image(image_dir, row["case"], gt.shape) if image_dir else None
        title = f"{row['case']} (slice {k}, mean Dice {row['mean_dice']:.3f})"
        rows.append(
            (
                title,
                _axial_slice(image, k, axis) if image is not None else None,
                _colour_index(_axial_slice(gt, k, axis), class_ids),
                _colour_index(_axial_slice(pred, k, axis), class_ids),
            )
        )
    return rows


def _write_overlay(
    path: Path,
    cases: list[dict[str, Any]],
    image_dir: Path | None,
    names: dict[int, str],
) -> None:
    """image | reference | prediction at the slice with most foreground, one row per case."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    class_ids = list(names)
    colours = _label_colours(len(class_ids))
    cmap = ListedColormap(colours)
    rows = _overlay_rows(cases, image_dir, class_ids)
    fig = Figure(figsize=(9, 3 * len(rows) + 0.6), layout="constrained")
    FigureCanvasAgg(fig)  # Agg without pyplot: no global backend state
    axes = fig.subplots(len(rows), 3, squeeze=False)
    for ax_row, (title, image, gt, pred) in zip(axes, rows, strict=True):
        # Without an image the first panel repeats the reference, as the layout is fixed.
        panels = [("image", image) if image is not None else ("reference", gt)]
        panels += [("reference", gt), ("prediction", pred)]
        for col, (ax, (label, data)) in enumerate(zip(ax_row, panels, strict=True)):
            ax.set_axis_off()
            ax.set_title(f"{title}\n{label}" if col == 0 else label, fontsize=8)
            if label == "image":
                # Percentile window: CT's air and metal would otherwise wash out soft tissue.
                lo, hi = np.percentile(data, [1, 99])
                ax.imshow(data, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
                continue
            ax.imshow(np.zeros_like(data), cmap="gray", vmin=0, vmax=1)
            ax.imshow(data, cmap=cmap, vmin=0, vmax=len(colours) - 1, interpolation="nearest")
    handles = [Patch(color=colours[i + 1], label=names[c]) for i, c in enumerate(class_ids)]
    if handles:
        fig.legend(
            handles=handles, loc="outside lower center", ncol=min(len(handles), 6), fontsize=8
        )
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))


# --------------------------------------------------------------------------------------------
# Folder evaluation
# --------------------------------------------------------------------------------------------


def _evaluate_case(
    case: str, pred_path: Path, gt_path: Path, class_ids: list[int] | None
) -> dict[str, Any]:
    """Dice and HD95 of one case for ``class_ids`` (None: the classes present in this case)."""
    gt_img, pred_img = _load_header(gt_path), _load_header(pred_path)
    gt = _load_labels(gt_img, gt_path, case, "reference")
    pred = _load_labels(pred_img, pred_path, case, "prediction")
    if class_ids is None:
        # Classes absent from this case are NaN for both metrics; filled in later.
        class_ids = sorted(int(v) for v in np.union1d(np.unique(gt), np.unique(pred)) if v != 0)
    spacing = [float(z) for z in gt_img.header.get_zooms()[:3]]
    return {
        "case": case,
        "prediction_file": pred_path.name,
        "reference_file": gt_path.name,
        "pred_path": pred_path,
        "gt_path": gt_path,
        "dice": dice_per_class(pred, gt, class_ids),
        "hd95": hd95_per_class(pred, gt, class_ids, spacing),
    }


def _evaluate_all(
    matched: list[tuple[str, Path, Path]], class_ids: list[int] | None
) -> list[dict[str, Any]]:
    """Evaluate every case with a rich progress bar on stderr."""
    rows = []
    columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("evaluating", total=len(matched))
        for case, pred_path, gt_path in matched:
            progress.update(task, description=f"evaluating {case}")
            rows.append(_evaluate_case(case, pred_path, gt_path, class_ids))
            progress.advance(task)
    return rows


def _fill_absent(rows: list[dict[str, Any]], class_ids: list[int]) -> None:
    """A class no file of a case contains is empty in both: NaN Dice and HD95."""
    for row in rows:
        for metric in ("dice", "hd95"):
            row[metric] = {c: row[metric].get(c, math.nan) for c in class_ids}
        row["mean_dice"] = _nanmean(row["dice"].values())


def _worst_cases(rows: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """The ``n`` cases with the lowest mean Dice (all-NaN cases last): the ones to look at."""
    return sorted(rows, key=lambda r: (math.isnan(r["mean_dice"]), r["mean_dice"]))[:n]


def evaluate_folders(
    pred_dir: Path,
    gt_dir: Path,
    out_dir: Path,
    labels: dict[int, str] | None = None,
    image_dir: Path | None = None,
    num_overlays: int = 3,
) -> dict[str, Any]:
    """Score predicted NIfTI label maps against references, nnU-Net style.

    Files match by case name (``{case}.nii.gz`` or ``.nii``); ``gt_dir`` may also be an
    nnU-Net/MSD dataset folder holding ``labelsTr``. ``labels`` maps class id -> name (0,
    background, is never scored); without it the classes are the union of non-zero values
    found. Writes ``summary.json``, ``metrics.csv`` and, if ``num_overlays`` > 0,
    ``overlay.png`` (the ``num_overlays`` cases with the lowest mean Dice) into ``out_dir``,
    atomically. Returns the summary as written (NaN as None).
    """
    pred_dir, gt_dir, out_dir = Path(pred_dir), Path(gt_dir), Path(out_dir)
    if num_overlays < 0:
        raise InputError(f"num_overlays must be >= 0, got {num_overlays}")
    if image_dir is not None and not Path(image_dir).is_dir():
        raise InputError(f"{image_dir}: image folder not found")
    matched = _match_cases(pred_dir, gt_dir)
    for case, pred_path, gt_path in matched:
        _check_geometry(case, _load_header(pred_path), _load_header(gt_path))
    given = sorted(int(c) for c in labels if int(c) != 0) if labels else None
    rows = _evaluate_all(matched, given)
    class_ids = given if given is not None else sorted({c for r in rows for c in r["dice"]})
    _fill_absent(rows, class_ids)
    names = _class_names(class_ids, {int(k): v for k, v in labels.items()} if labels else None)
    summary = _build_summary(rows, names, labels_given=bool(labels))
    atomic_write_json(out_dir / "summary.json", summary)
    _write_csv(out_dir / "metrics.csv", rows, names)
    if num_overlays > 0:
        worst = _worst_cases(rows, num_overlays)
        _write_overlay(
            out_dir / "overlay.png", worst, Path(image_dir) if image_dir else None, names
        )
    return summary


def _cell(value: float | None, fmt: str) -> str:
    return "n/a" if value is None or math.isnan(value) else format(value, fmt)


def format_summary_table(summary: dict[str, Any]) -> Table:
    """A rich ``Table`` of per-class mean Dice / HD95 and the foreground mean."""
    table = Table(title=f"Segmentation metrics ({summary.get('num_cases', '?')} cases)")
    table.add_column("class")
    table.add_column("Dice", justify="right")
    table.add_column("HD95 (mm)", justify="right")
    means = summary["mean"]
    for i, (name, values) in enumerate(means.items()):
        table.add_row(
            name,
            _cell(values["dice"], ".4f"),
            _cell(values["hd95"], ".2f"),
            end_section=i == len(means) - 1,
        )
    fg = summary["foreground_mean"]
    table.add_row(
        "foreground mean", _cell(fg["dice"], ".4f"), _cell(fg["hd95"], ".2f"), style="bold"
    )
    return table
