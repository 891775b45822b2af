"""Normalisation is one rule per dataset: a scan's background storage does not change its Dice.

Real archives mix sites that store the background as exact zeros (skull-stripped, masked) with
sites whose background is noise. Here two training sets of phantoms differ only in that (noise
background / exactly-zero background), and each is tested on a held-out phantom stored both
ways. The "network" is a histogram classifier of the normalised intensity, fitted on the prepared
training cases: like a trained network it has learnt the intensity scale of the
training data, so it is right exactly as far as ``hv-med predict``'s normalisation of the new
scan matches the preparation's. It runs through ``predict.segment`` (preprocessing, sliding
window, inversion to the scan's grid), and Dice is ``hv-med evaluate``'s.

Measured (this file's data): with the tissue rule the mismatched storage changes Dice by
0.0000 (noise-trained) and 0.0008 (zero-trained); with the old rule (z-score over nonzero
voxels) by -0.177 (0.952 -> 0.775) and +0.011. The tolerance, 0.005, is six times the largest
difference the tissue rule shows (the storages differ only outside the body, where the noise
tail above the tissue threshold shifts the statistics slightly) and half the smallest the old
rule shows.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from medical.metrics import dice_per_class
from medical.phantom import PhantomConfig, make_phantom
from medical.plan import MedicalPlan, NetworkPlan
from medical.predict import ScanInput, segment
from medical.prepare import load_prepared, prepare_dataset

CFG = PhantomConfig(shape=(40, 40, 20), spacing=(1.5, 1.5, 3.0), noise=0.05)
AFFINE = np.diag([*CFG.spacing, 1.0])
TOLERANCE = 0.005


def _scan(seed: int, background: str) -> tuple[np.ndarray, np.ndarray]:
    """A phantom with its noise background (``"noise"``) or zeroed outside the body."""
    image, label = make_phantom(CFG, seed)
    if background == "zero":
        # The same seed without noise is nonzero exactly inside the body.
        body = make_phantom(replace(CFG, noise=0.0), seed)[0] > 0
        image = np.where(body, image, 0.0).astype(np.float32)
    return image, label


def _prepared(root: Path, background: str) -> Path:
    raw = root / f"raw_{background}"
    for folder in ("imagesTr", "labelsTr"):
        (raw / folder).mkdir(parents=True)
    for seed in range(2):
        image, label = _scan(seed, background)
        nib.save(nib.Nifti1Image(image, AFFINE), str(raw / "imagesTr" / f"c{seed}_0000.nii.gz"))
        nib.save(nib.Nifti1Image(label, AFFINE), str(raw / "labelsTr" / f"c{seed}.nii.gz"))
    (raw / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "T2"}, "labels": {"background": 0, "a": 1, "b": 2},
        "numTraining": 2, "file_ending": ".nii.gz",
    }))  # fmt: skip
    out = root / f"prepared_{background}"
    prepare_dataset(raw, out, target_spacing=CFG.spacing, workers=1)
    return out


class IntensityClassifier:
    """Stands in for a trained network: the most probable class of each voxel's normalised
    intensity, from class-wise intensity histograms of the prepared training cases."""

    EDGES = torch.linspace(-6.0, 10.0, 161)

    def __init__(self, prepared: Path) -> None:
        items = load_prepared(prepared)
        values = torch.cat([torch.from_numpy(np.load(i["image"])[0]).ravel() for i in items])
        classes = torch.cat([torch.from_numpy(np.load(i["label"])[0]).ravel() for i in items])
        bins = torch.bucketize(values, self.EDGES)
        counts = torch.stack([torch.bincount(bins[classes == c], minlength=162) for c in range(3)])
        self.log_joint = torch.log(counts.double() + 0.5).float()  # class x bin, smoothed

    def infer(self, image: torch.Tensor) -> torch.Tensor:  # noqa: D102
        bins = torch.bucketize(image[:, 0], self.EDGES)
        return self.log_joint[:, bins].movedim(0, 1)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, tuple[IntensityClassifier, dict]]:
    root = tmp_path_factory.mktemp("norm")
    result = {}
    for background in ("noise", "zero"):
        prepared = _prepared(root, background)
        manifest = json.loads((prepared / "dataset.json").read_text())
        result[background] = (IntensityClassifier(prepared), manifest)
    return result


def _dice(model: IntensityClassifier, manifest: dict, background: str, tmp: Path) -> float:
    image, truth = _scan(7, background)
    path = tmp / f"test_{background}.nii.gz"
    nib.save(nib.Nifti1Image(image, AFFINE), str(path))
    plan = MedicalPlan(modalities=manifest["modalities"], labels=manifest["labels"],
                       target_spacing=manifest["target_spacing"],
                       normalization=manifest["normalization"], network=NetworkPlan(),
                       patch_size=(32, 32, 32))  # fmt: skip
    label, _, _ = segment(model, plan, ScanInput("test", [path]), flips=False)
    return float(np.nanmean(list(dice_per_class(label, truth, [1, 2]).values())))


@pytest.mark.parametrize("train", ["noise", "zero"])
def test_test_scan_background_does_not_change_dice(models, train: str, tmp_path: Path) -> None:
    model, manifest = models[train]
    assert manifest["normalization"][0]["mask"] == "tissue"  # decided once, from the fingerprint
    other = "zero" if train == "noise" else "noise"
    matched = _dice(model, manifest, train, tmp_path)
    mismatched = _dice(model, manifest, other, tmp_path)
    assert matched > 0.9, f"the classifier itself works ({matched:.3f})"
    gap = abs(mismatched - matched)
    assert gap <= TOLERANCE, f"{train} training: {matched=:.4f} {mismatched=:.4f}"
