"""Precision policy: under autocast, attention runs in fp32 when asked and in the autocast dtype
when not, checked on the tensors that actually reach ``scaled_dot_product_attention``; and the
engine's ``--trainer.attention_fp32`` reaches every attention layer of a bf16-mixed run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from shared import SpatialSelfAttention
from shared.toy import main as toy_main


@pytest.fixture
def sdpa_calls(monkeypatch) -> Iterator[list[dict]]:
    """Every call of SDPA, with the q/k/v dtypes and the attention layer that made it."""
    calls: list[dict] = []
    current: list[nn.Module | None] = [None]
    original = F.scaled_dot_product_attention

    def record(q, k, v, *args, **kwargs):
        calls.append({"layer": current[0], "dtypes": (q.dtype, k.dtype, v.dtype)})
        return original(q, k, v, *args, **kwargs)

    def enter(module: nn.Module, _inputs) -> None:
        if isinstance(module, SpatialSelfAttention):
            current[0] = module

    # shared.attention calls it as F.scaled_dot_product_attention: F is torch.nn.functional.
    monkeypatch.setattr(F, "scaled_dot_product_attention", record)
    handle = nn.modules.module.register_module_forward_pre_hook(enter)
    try:
        yield calls
    finally:
        handle.remove()


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("window", [None, 3])  # 3 on a 4-wide map: padded, shifted, masked
@pytest.mark.parametrize(
    ("fp32", "expected"), [(True, torch.float32), (False, torch.bfloat16)]
)
def test_qkv_dtype_inside_sdpa_under_autocast(sdpa_calls, dims, window, fp32, expected) -> None:
    layer = SpatialSelfAttention(dims, 16, num_heads=2, attention_fp32=fp32, window_size=window,
                                 shift=window is not None)  # fmt: skip
    x = torch.randn(2, 16, *([4] * dims))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x)
    assert sdpa_calls, "attention must go through F.scaled_dot_product_attention"
    assert all(call["dtypes"] == (expected,) * 3 for call in sdpa_calls), sdpa_calls
    assert torch.isfinite(out.float()).all()


def test_without_autocast_fp32_setting_changes_nothing(sdpa_calls) -> None:
    layer = SpatialSelfAttention(2, 16, num_heads=2, attention_fp32=True)
    x = torch.randn(1, 16, 4, 4)
    reference = layer(x)
    layer.attention_fp32 = False
    torch.testing.assert_close(layer(x), reference, rtol=0, atol=0)
    assert {call["dtypes"] for call in sdpa_calls} == {(torch.float32,) * 3}


@pytest.mark.parametrize(("fp32", "expected"), [("true", torch.float32), ("false", torch.bfloat16)])
def test_engine_attention_precision_reaches_every_layer(
    sdpa_calls, tmp_path: Path, fp32: str, expected: torch.dtype
) -> None:
    code = toy_main([
        "train", "--data.num_train", "4", "--data.num_val", "4", "--trainer.batch_size", "4",
        "--trainer.max_epochs", "1",
        "--trainer.precision", "bf16-mixed", "--trainer.attention_fp32", fp32,
        "--trainer.progress", "false", "--run.runs_dir", str(tmp_path), "--run.name", "bf16",
    ])  # fmt: skip
    assert code == 0
    layers = {id(call["layer"]) for call in sdpa_calls}
    assert None not in {call["layer"] for call in sdpa_calls}, "an SDPA call outside attention"
    # hybrid_tiny: two hybrid stages of depth 2 and 1, one attention layer per block.
    assert len(layers) >= 3, f"only {len(layers)} attention layers ran"
    wrong = [call for call in sdpa_calls if call["dtypes"] != (expected,) * 3]
    assert not wrong, f"{len(wrong)} of {len(sdpa_calls)} SDPA calls not {expected}: {wrong[:3]}"
