"""The inference contract: one plan entry per checkpoint, one loader, one-line refusals.

Legacy checkpoints: ``tests/golden/legacy_checkpoints/*.pt`` hold the metadata of checkpoints
that the pre-contract code (commit a55b4d5) wrote, with the shapes of their real weights
(``make_legacy.py`` beside them made them). A converted plan must rebuild exactly those shapes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

from medical.plan import MEDICAL, MedicalPlan, NetworkPlan
from remote_sensing.data import Preprocessing
from remote_sensing.plan import REMOTE_SENSING, SceneClassifierPlan
from remote_sensing.plan import NetworkPlan as RSNetworkPlan
from shared.engine import CHECKPOINT_KEY, InputError, load_for_inference, read_checkpoint
from shared.engine.contract import plan_entry, plan_from_plain, plan_to_plain
from shared.layers import count_parameters
from shared.matching import match_width_scale
from video_sr.model import PRESETS
from video_sr.plan import VIDEO_SR, VSRPlan

LEGACY = Path(__file__).parent / "golden" / "legacy_checkpoints"


def medical_plan(arch: str = "hybrid", scale: float | None = None) -> MedicalPlan:
    return MedicalPlan(
        modalities=["MRI"],
        labels={"0": "background", "1": "organ1", "2": "organ2"},
        target_spacing=[1.0, 1.0, 2.0],
        normalization=[{"channel": 0, "modality": "MRI", "scheme": "zscore", "mask": "tissue"}],
        network=NetworkPlan(arch, "med_cpu", 3, False, scale),
        patch_size=(32, 32, 32),
    )


def rs_plan(arch: str = "hybrid") -> SceneClassifierPlan:
    pre = Preprocessing(["B02", "B03", "B04", "B08"], [1, 2, 3, 4], 10000.0, [0.1] * 4, [0.05] * 4,
                        32, ["Forest", "River", "SeaLake"], 4)  # fmt: skip
    return SceneClassifierPlan(pre, RSNetworkPlan(arch, "hybrid_tiny", True, None))


def vsr_plan() -> VSRPlan:
    return VSRPlan(4, 3, "BI", "hybrid", "vsr_tiny", PRESETS["vsr_tiny"])


def save_checkpoint(path: Path, vertical, plan, network: nn.Module | None = None) -> Path:
    """What the engine writes: the task's state_dict (network under ``model.``) and the plan."""
    network = network or vertical.build_network(plan)
    state = {f"model.{k}": v for k, v in network.state_dict().items()}
    torch.save({"state_dict": state, CHECKPOINT_KEY: plan_entry(vertical, plan)}, path)
    return path


@pytest.mark.parametrize(
    "vertical, make_plan",
    [(MEDICAL, medical_plan), (REMOTE_SENSING, rs_plan), (VIDEO_SR, vsr_plan)],
    ids=["medical", "remote_sensing", "video_sr"],
)
def test_plan_round_trips_through_a_checkpoint(tmp_path: Path, vertical, make_plan) -> None:
    plan = make_plan()
    network = vertical.build_network(plan)
    with torch.no_grad():
        for parameter in network.parameters():  # weights that differ from a fresh build
            parameter.add_(torch.randn_like(parameter))
    path = save_checkpoint(tmp_path / "run.ckpt", vertical, plan, network)
    loaded, loaded_plan = load_for_inference(path, vertical)
    assert loaded_plan == plan
    assert not loaded.training
    for (name, value), (_, original) in zip(loaded.state_dict().items(),
                                            network.state_dict().items(), strict=True):  # fmt: skip
        assert torch.equal(value, original), name
    # The stored entry is plain data: JSON can hold it (and weights_only can load it).
    stored = torch.load(path, weights_only=True)[CHECKPOINT_KEY]
    assert json.loads(json.dumps(stored)) == stored
    assert (stored["vertical"], stored["schema"]) == (vertical.name, vertical.schema)


def test_plan_from_plain_rebuilds_tuples_and_nested_dataclasses() -> None:
    plain = plan_to_plain(vsr_plan())
    assert plain["network"]["window"] == [2, 8, 8]  # lists in the checkpoint
    plan = plan_from_plain(VSRPlan, plain)
    assert plan.network.window == (2, 8, 8) and plan == vsr_plan()
    plain["network"]["unknown_field"] = 1
    with pytest.raises(InputError, match="plan: its VSRPlan does not match .*unknown_field"):
        plan_from_plain(VSRPlan, plain)


def test_other_verticals_schemas_and_non_checkpoints_are_one_line(tmp_path: Path) -> None:
    rs = save_checkpoint(tmp_path / "rs.ckpt", REMOTE_SENSING, rs_plan())
    with pytest.raises(InputError) as caught:
        read_checkpoint(rs, MEDICAL)
    message = str(caught.value)
    assert message == (f"{rs}: a remote_sensing checkpoint (from 'hv-rs train'); hv-med needs a "
                       "medical checkpoint from 'hv-med train'")  # fmt: skip
    state = torch.load(rs, weights_only=True)
    state[CHECKPOINT_KEY]["schema"] = 7
    torch.save(state, tmp_path / "future.ckpt")
    with pytest.raises(InputError, match="remote_sensing plan schema 7, this hybridvision reads "
                                         "schema 1"):  # fmt: skip
        read_checkpoint(tmp_path / "future.ckpt", REMOTE_SENSING)
    del state[CHECKPOINT_KEY]
    torch.save(state, tmp_path / "bare.ckpt")
    with pytest.raises(InputError, match="without a hybridvision plan"):
        read_checkpoint(tmp_path / "bare.ckpt", VIDEO_SR)
    torch.save({"weights": torch.zeros(2)}, tmp_path / "weights.pt")
    with pytest.raises(InputError, match="weights.pt: a file of torch objects without network"):
        read_checkpoint(tmp_path / "weights.pt", VIDEO_SR)
    (tmp_path / "notes.ckpt").write_text("not a checkpoint")
    with pytest.raises(InputError, match="notes.ckpt: not a readable checkpoint"):
        read_checkpoint(tmp_path / "notes.ckpt", VIDEO_SR)
    (tmp_path / "cut.ckpt").write_bytes(rs.read_bytes()[:4000])
    with pytest.raises(InputError, match="cut.ckpt: not a readable checkpoint"):
        read_checkpoint(tmp_path / "cut.ckpt", REMOTE_SENSING)
    with pytest.raises(InputError, match="missing.ckpt: checkpoint not found"):
        read_checkpoint(tmp_path / "missing.ckpt", MEDICAL)


LEGACY_CASES = {
    "medical_hybrid": MEDICAL,
    "medical_cnn": MEDICAL,
    "medical_2d": MEDICAL,
    "remote_sensing_hybrid": REMOTE_SENSING,
    "remote_sensing_cnn": REMOTE_SENSING,
    "video_sr_hybrid": VIDEO_SR,
    "video_sr_cnn": VIDEO_SR,
}


@pytest.mark.parametrize("name", sorted(LEGACY_CASES))
def test_checkpoints_written_before_the_contract_still_load(tmp_path: Path, name: str) -> None:
    vertical = LEGACY_CASES[name]
    legacy = torch.load(LEGACY / f"{name}.pt", weights_only=True)
    shapes = legacy.pop("state_dict_shapes")
    for key in ("made_by", "top_level_keys"):
        legacy.pop(key)
    generator = torch.Generator().manual_seed(0)
    legacy["state_dict"] = {
        k: torch.tensor(3) if k.endswith("batches_tracked") else torch.randn(s, generator=generator)
        for k, s in shapes.items()
    }
    path = tmp_path / f"{name}.ckpt"
    torch.save(legacy, path)
    network, plan = load_for_inference(path, vertical)  # strict: every key and shape must fit
    weights = {k.removeprefix("model."): v for k, v in legacy["state_dict"].items()
               if k.startswith("model.")}  # fmt: skip
    for key, value in network.state_dict().items():
        assert torch.equal(value, weights[key]), key
    assert isinstance(plan, vertical.plan_type)
    if name.endswith("_cnn") and vertical is not VIDEO_SR:
        assert plan.network.arch == "cnn" and plan.network.cnn_width_scale > 1
    other = MEDICAL if vertical is not MEDICAL else VIDEO_SR
    with pytest.raises(InputError, match=f"a {vertical.name} checkpoint \\(from '{vertical.prog} "):
        read_checkpoint(path, other)


def test_legacy_medical_plan_keeps_every_prediction_setting() -> None:
    legacy = torch.load(LEGACY / "medical_2d.pt", weights_only=True)
    old = legacy["hybridvision_plan"]
    plan = MEDICAL.legacy(legacy)
    assert plan.patch_size == tuple(old["patch_size"]) and plan.slice_axis == old["slice_axis"]
    assert plan.network.spatial_dims == 2 and plan.labels == old["labels"]
    assert plan.normalization == old["normalization"]
    assert plan.intensity_range == old["intensity_range"]
    assert plan.sw_overlap == old["sw_overlap"] and plan.sw_batch_size == old["sw_batch_size"]


def test_width_search_finds_the_closed_form_scale() -> None:
    def build(scale: float) -> nn.Module:
        width = round(100 * scale)
        return nn.Linear(width, width)  # width**2 + width parameters

    match = match_width_scale(build, target=150 * 150 + 150)
    assert match.params == 150 * 150 + 150 and match.scale == pytest.approx(1.5)
    # Whole channels: no scale hits 22,700 exactly; the closest count is 150 channels' 22,650.
    coarse = match_width_scale(build, target=22_700)
    assert coarse.params == 22_650 and coarse.error == pytest.approx(50 / 22_700)


def test_prediction_rebuilds_the_control_without_searching(tmp_path: Path, monkeypatch) -> None:
    import medical.model

    plan = medical_plan("cnn")
    train_network = MEDICAL.build_network(plan)  # training searches once ...
    plan.network.cnn_width_scale = train_network.cnn_width_scale  # ... and the plan keeps it
    path = save_checkpoint(tmp_path / "cnn.ckpt", MEDICAL, plan, train_network)

    def no_search(*args, **kwargs):
        raise AssertionError("prediction searched the control's width again")

    monkeypatch.setattr(medical.model, "match_width_scale", no_search)
    network, _ = load_for_inference(path, MEDICAL)
    assert count_parameters(network) == count_parameters(train_network)


@dataclass
class _Other:
    value: int


def test_plan_entry_refuses_a_plan_of_another_type() -> None:
    with pytest.raises(TypeError, match="medical expects a MedicalPlan plan"):
        plan_entry(MEDICAL, _Other(1))
