"""Medical segmentation task on the shared engine: data module, loss, sliding-window validation.

Training samples patches from prepared cases (``hv-med prepare``), balanced between foreground
and background, with MONAI augmentations; the loss is Dice + cross-entropy (with deep
supervision when the model returns several scales); validation runs MONAI sliding-window
inference (gaussian blending) on whole prepared volumes and reports Dice per class and the
foreground mean (``val/dice``, the headline metric that picks the best checkpoint) by
``hv-med evaluate``'s rule. Every checkpoint carries the :class:`~medical.plan.MedicalPlan`
(preprocessing, labels, network settings) through the engine's inference contract, so
``hv-med predict`` needs nothing else.

``--model.spatial_dims 2`` is nnU-Net's 2d configuration: a 2D network trained on slices across
the through-plane (coarsest) axis of the prepared volumes, validated and predicting slice by
slice with MONAI's ``SliceInferer``; the plan records ``spatial_dims`` and ``slice_axis``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from jsonargparse.typing import OpenUnitInterval, PositiveFloat, PositiveInt
from monai.data import CacheDataset, DataLoader, list_data_collate
from monai.inferers import SliceInferer, sliding_window_inference
from monai.losses import DeepSupervisionLoss, DiceCELoss
from monai.metrics import Cumulative, compute_dice
from monai.networks.utils import one_hot
from torchmetrics import MetricCollection

from shared.engine import (
    HalfOpenUnitInterval,
    HybridTask,
    InputError,
    RunConfig,
    TaskDataModule,
    evaluation_loader,
    resumable_loader,
)
from shared.layers import channels_last

from .model import ABLATION_PRESETS, ARCHS, MEDICAL_PRESETS, PRESETS
from .plan import MEDICAL, MedicalPlan, NetworkPlan, build_network
from .transforms import train_transforms, val_transforms

__all__ = [
    "MedicalDataConfig",
    "MedicalModelConfig",
    "MedicalDataModule",
    "network_patch",
    "SegmentationTask",
    "prediction_plan",
    "slice_axis",
    "split_cases",
]

# What training reads from a prepared folder's dataset.json (written by hv-med prepare).
MANIFEST_KEYS = ("modalities", "labels", "target_spacing", "normalization", "cases")

# Choices and ranges as types: the parser refuses a bad value with one line naming the flag.
Arch = Literal[ARCHS]  # type: ignore[valid-type]
Preset = Literal[(*MEDICAL_PRESETS, *ABLATION_PRESETS, *PRESETS)]  # type: ignore[valid-type]


@dataclass
class MedicalDataConfig:
    """Where the data is and how patches are drawn."""

    dataset: str | None = None
    """Raw dataset folder in MSD or nnU-Net layout (prepared automatically, cached)."""
    prepared: str | None = None
    """Prepared folder (from 'hv-med prepare'); default prepared/<dataset folder name>."""
    patch_size: tuple[PositiveInt, PositiveInt, PositiveInt] = (64, 64, 64)
    """Training patch and sliding-window ROI (each a multiple of 32)."""
    samples_per_case: PositiveInt = 2
    """Patches drawn from each case per step (half centred on foreground)."""
    val_fraction: OpenUnitInterval = 0.2
    """Share of cases kept for validation when the dataset names none, in (0, 1)."""
    target_spacing: tuple[PositiveFloat, PositiveFloat, PositiveFloat] | None = None
    """Resampling spacing in mm; default the dataset's median spacing."""
    sw_overlap: HalfOpenUnitInterval = 0.5
    """Sliding-window overlap during validation, in [0, 1)."""
    sw_batch_size: PositiveInt = 2
    workers: int = 2
    """Processes for preparation."""


@dataclass
class MedicalModelConfig:
    """The segmentation network."""

    arch: Arch = "hybrid"
    """Network: hybrid (ours), cnn (our attention-free control at matched parameters), or a
    MONAI baseline: unet, segresnet, swinunetr (feature size 24). preset and deep_supervision
    apply to hybrid and cnn only."""
    preset: Preset = "med_cpu"
    """HybridUNet preset: med_cpu, med_12gb, med_24gb (or a shared backbone preset)."""
    deep_supervision: bool = False
    pure_cnn: bool = False
    """Attention removed, widened to matched parameters (benchmark baseline)."""
    spatial_dims: int = 3
    """3: a 3D network on patches; 2: nnU-Net's 2d configuration (strongly anisotropic data): a
    2D network trained on slices across the plan's through-plane axis, predicting volumes slice
    by slice; the patch is data.patch_size without its entry along that axis."""


def prepared_dir(cfg: MedicalDataConfig) -> Path:
    """The prepared folder for a data config (never inside the user's raw dataset)."""
    if cfg.prepared:
        return Path(cfg.prepared)
    if not cfg.dataset:
        raise InputError("give --data.dataset RAW_DATASET or --data.prepared PREPARED_FOLDER")
    return Path("prepared") / Path(cfg.dataset).resolve().name


def slice_axis(target_spacing: Sequence[float]) -> int:
    """The through-plane axis that 2D networks slice across: the coarsest spacing (nnU-Net's
    lowest-resolution axis); on ties the last such axis (axial slices in RAS order)."""
    coarsest = max(target_spacing)
    return max(axis for axis, spacing in enumerate(target_spacing) if spacing == coarsest)


def network_patch(cfg: RunConfig, manifest: dict[str, Any]) -> tuple[tuple[int, ...], int | None]:
    """The network's patch (sliding-window ROI) and, for 2D networks, the slice axis."""
    patch = tuple(cfg.data.patch_size)
    if cfg.model.spatial_dims == 3:
        return patch, None
    axis = slice_axis(manifest["target_spacing"])
    return patch[:axis] + patch[axis + 1 :], axis


def split_cases(cases: list[dict], manifest: dict, val_fraction: float) -> tuple[list, list]:
    """Train/validation split: the dataset's ``validation_cases`` if any, else the last share."""
    named = set(manifest.get("validation_cases") or [])
    if named:
        val = [c for c in cases if c["case"] in named]
        train = [c for c in cases if c["case"] not in named]
    else:
        count = max(1, round(len(cases) * val_fraction))
        train, val = cases[:-count], cases[-count:]
    if not train or not val:
        raise InputError(
            f"need at least one training and one validation case, got {len(train)} and {len(val)}"
        )
    return train, val


def prediction_plan(manifest: dict[str, Any], cfg: RunConfig) -> MedicalPlan:
    """What ``hv-med predict`` needs from a run (nnU-Net's plans.json role).

    The preprocessing (spacing, normalisation), what the data looked like (channel modalities,
    source spacings, normalised intensity range: predict's input check), the label names, and
    the network and sliding-window settings. The pure-CNN control's width is filled in once
    the network is built (:func:`build_task`).
    """
    ranges = [entry["intensity_range"] for entry in manifest["cases"] if "intensity_range" in entry]
    channels = len(manifest["modalities"])
    intensity = (
        [[min(r[c][0] for r in ranges), max(r[c][1] for r in ranges)] for c in range(channels)]
        if ranges
        else None
    )
    patch, axis = network_patch(cfg, manifest)
    fractions = [e["tissue_fraction"] for e in manifest["cases"] if "tissue_fraction" in e]
    tissue = (
        [[min(f[c] for f in fractions), max(f[c] for f in fractions)] for c in range(channels)]
        if fractions
        else None
    )
    arch = "cnn" if cfg.model.pure_cnn else cfg.model.arch
    return MedicalPlan(
        modalities=list(manifest["modalities"]),
        labels={str(k): v for k, v in manifest["labels"].items()},
        target_spacing=list(manifest["target_spacing"]),
        normalization=list(manifest["normalization"]),
        network=NetworkPlan(arch, cfg.model.preset, cfg.model.spatial_dims,
                            cfg.model.deep_supervision),  # fmt: skip
        patch_size=tuple(patch),
        sw_batch_size=cfg.data.sw_batch_size,
        sw_overlap=cfg.data.sw_overlap,
        slice_axis=axis,
        name=manifest.get("name"),
        source_spacing_range=manifest.get("source_spacing_range"),
        intensity_range=intensity,
        tissue_fraction=tissue,
    )


class MedicalDataModule(TaskDataModule):
    """Prepared cases -> cached MONAI datasets -> patch loaders."""

    def __init__(
        self,
        cfg: MedicalDataConfig,
        batch_size: int,
        seed: int,
        num_workers: int = 0,
        slice_axis: int | None = None,
    ) -> None:
        super().__init__(batch_size, seed, num_workers)
        self.cfg = cfg
        self.folder = prepared_dir(cfg)
        # 2D networks: training patches are slices across this axis of the prepared volumes.
        self.slice_axis = slice_axis

    def prepare_data(self) -> None:
        """Run (or reuse) the clinical preprocessing once, on rank 0."""
        from .prepare import prepare_dataset

        if self.cfg.dataset:
            prepare_dataset(
                Path(self.cfg.dataset),
                self.folder,
                target_spacing=self.cfg.target_spacing,
                workers=self.cfg.workers,
            )

    def manifest(self) -> dict[str, Any]:
        """The prepared dataset's manifest (labels, modalities, spacing, cases).

        ``validation_cases`` (a hybridvision extension of the raw dataset.json that the demo
        datasets use) is carried over from the raw dataset when present.
        """
        path = self.folder / "dataset.json"
        if not path.is_file():
            raise InputError(f"{self.folder}: not a prepared dataset (run 'hv-med prepare')")
        try:
            manifest = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise InputError(f"{path}: not readable JSON: {err}") from None
        missing = [key for key in MANIFEST_KEYS if key not in manifest]
        if missing:  # e.g. --data.prepared given a raw MSD/nnU-Net folder
            raise InputError(
                f"{path}: not a prepared-dataset manifest (no {missing[0]!r}); give the raw "
                "folder as --data.dataset, or run 'hv-med prepare'"
            )
        raw = Path(manifest.get("source_root", "")) / "dataset.json"
        if "validation_cases" not in manifest and raw.is_file():
            manifest["validation_cases"] = json.loads(raw.read_text()).get("validation_cases")
        return manifest

    def setup(self, stage: str | None = None) -> None:  # noqa: D102
        from .prepare import load_prepared

        cases = [
            {"image": str(c["image"]), "label": str(c["label"]), "case": c["case"]}
            for c in load_prepared(self.folder)
        ]
        train, val = split_cases(cases, self.manifest(), self.cfg.val_fraction)
        patch = tuple(self.cfg.patch_size)
        if self.slice_axis is not None:
            patch = patch[: self.slice_axis] + patch[self.slice_axis + 1 :]
        train_tf = train_transforms(patch, self.cfg.samples_per_case, self.slice_axis)
        train_tf.set_random_state(seed=self.seed)
        self.train_set = CacheDataset(train, train_tf, progress=False)
        self.val_set = CacheDataset(val, val_transforms(), progress=False)

    def train_dataloader(self):  # noqa: D102
        # Each case yields samples_per_case patches; list_data_collate flattens them.
        return resumable_loader(
            self.train_set,
            self.batch_size,
            collate_fn=list_data_collate,
            num_workers=self.num_workers,
        )

    def val_dataloader(self) -> DataLoader:  # noqa: D102
        return evaluation_loader(self.val_set, 1, num_workers=self.num_workers)


class SegmentationTask(HybridTask):
    """Dice + CE training, sliding-window validation with per-class Dice.

    ``label_smoothing`` smooths the cross-entropy half of the loss (MONAI ``DiceCELoss``).
    ``plan`` (:class:`~medical.plan.MedicalPlan`) goes into every checkpoint (the engine's
    inference contract).

    Validation Dice follows ``hv-med evaluate`` (nnU-Net): per case and class, a prediction of a
    class the reference lacks scores 0, a class empty in both is NaN and left out; per class the
    mean over cases, and ``val/dice`` the mean over classes.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        class_names: list[str],
        patch_size: tuple[int, ...],
        sw_batch_size: int,
        sw_overlap: float,
        label_smoothing: float = 0.0,
        plan: MedicalPlan | None = None,
        slice_axis: int | None = None,
        **kwargs: Any,
    ) -> None:
        loss = DiceCELoss(to_onehot_y=True, softmax=True, label_smoothing=label_smoothing)
        super().__init__(model, loss, MetricCollection({}), vertical=MEDICAL, plan=plan, **kwargs)
        self.deep_loss = DeepSupervisionLoss(loss)
        self.class_names = class_names
        self.patch_size, self.sw_batch_size, self.sw_overlap = patch_size, sw_batch_size, sw_overlap
        # A 2D network (patch_size has two entries) infers volumes slice by slice across this axis.
        self.slice_axis = slice_axis
        # Per-case, per-class Dice rows; MONAI's Cumulative all-gathers them across DDP ranks.
        self.dice = Cumulative()
        # Channels-last weights and inputs: the same values, about twice the CPU training speed
        # of the full-resolution levels (oneDNN); every arch gets it, so speeds compare.
        self.memory_format = channels_last(len(patch_size))
        self.model.to(memory_format=self.memory_format)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """Model output for channels-first or channels-last input (the same values)."""
        return self.model(x.contiguous(memory_format=self.memory_format))

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        """Dice + CE on a batch of patches (all deep-supervision scales when present)."""
        output = self(batch["image"])
        if isinstance(output, list | tuple):
            loss = self.deep_loss(list(output), batch["label"])
        else:
            loss = self.loss_fn(output, batch["label"])
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True,
                 batch_size=batch["image"].shape[0])  # fmt: skip
        return loss

    def infer(self, image: torch.Tensor) -> torch.Tensor:
        """Sliding-window logits for whole volumes (gaussian blending).

        Windows run on the model's device; the full-size stitching buffer stays on the input's
        device (keep inputs on the CPU so a 512x512x300 CT fits next to a GPU model). A 2D network
        runs MONAI's ``SliceInferer``: the same sliding window on every slice across
        ``slice_axis``.
        """
        if self.slice_axis is not None:
            inferer = SliceInferer(
                spatial_dim=self.slice_axis,
                roi_size=self.patch_size,
                sw_batch_size=self.sw_batch_size,
                overlap=self.sw_overlap,
                mode="gaussian",
                sw_device=next(self.model.parameters()).device,
                device=image.device,
            )
            return inferer(image, self)
        return sliding_window_inference(
            image,
            roi_size=self.patch_size,
            sw_batch_size=self.sw_batch_size,
            predictor=self,
            overlap=self.sw_overlap,
            mode="gaussian",
            sw_device=next(self.model.parameters()).device,
            device=image.device,
        )

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        """Per-volume Dice of the argmax prediction."""
        logits = self.infer(batch["image"])
        self.log("val/loss", self.loss_fn(logits, batch["label"]), on_epoch=True,
                 sync_dist=True, batch_size=1)  # fmt: skip
        classes = logits.shape[1]
        prediction = one_hot(logits.argmax(1, keepdim=True), classes)
        reference = one_hot(batch["label"].long(), classes)
        # ignore_empty=False: a false positive on a class absent from the reference scores 0
        # (MONAI would give 1 when both are empty: that case is NaN, as in hv-med evaluate).
        dice = compute_dice(prediction, reference, include_background=False, ignore_empty=False)
        spatial = tuple(range(2, prediction.ndim))
        both_empty = (prediction[:, 1:].sum(spatial) == 0) & (reference[:, 1:].sum(spatial) == 0)
        self.dice.extend(dice.masked_fill(both_empty, float("nan")))

    def on_validation_epoch_end(self) -> None:  # noqa: D102
        per_class = self.dice.get_buffer().float().nanmean(0)
        self.dice.reset()
        names = self.class_names or [f"class{i}" for i in range(1, per_class.numel() + 1)]
        for name, value in zip(names, per_class, strict=False):
            self.log(f"val/dice_{name}", value, sync_dist=False)
        # nnU-Net's foreground mean: classes empty in every case (NaN) are left out.
        self.log("val/dice", per_class.nanmean(), prog_bar=True)


def build_task(
    cfg: RunConfig, plan: MedicalPlan | None = None
) -> tuple[SegmentationTask, MedicalDataModule]:
    """Module and data module for a run config (used by the hv-med CLI).

    ``plan``: a trained run's plan (evaluate): its network is rebuilt as trained, with no width
    search; the data still comes from ``cfg``.
    """
    from .model import build_medical_model

    data = MedicalDataModule(cfg.data, cfg.trainer.batch_size, cfg.trainer.seed,
                             cfg.trainer.num_workers)  # fmt: skip
    if cfg.data.dataset and not (data.folder / "dataset.json").is_file():
        data.prepare_data()
    manifest = data.manifest()
    if plan is None:
        plan = prediction_plan(manifest, cfg)
        net = plan.network
        model = build_medical_model(
            net.spatial_dims,
            len(plan.modalities),
            len(plan.labels),
            net.preset,
            deep_supervision=net.deep_supervision,
            drop_path_rate=cfg.regularization.drop_path_rate,
            arch=net.arch,
        )
        # The control's matched width goes into the plan: prediction never searches again.
        net.cnn_width_scale = getattr(model, "cnn_width_scale", None)
    else:
        model = build_network(plan)
    data.slice_axis = plan.slice_axis
    task = SegmentationTask(
        model,
        plan.class_names,
        tuple(plan.patch_size),
        plan.sw_batch_size,
        plan.sw_overlap,
        label_smoothing=cfg.regularization.label_smoothing,
        plan=plan,
        slice_axis=data.slice_axis,
        optim=cfg.optim,
        regularization=cfg.regularization,  # MixUp/CutMix: refused by HybridTask as well
    )
    return task, data
