"""hv-med bench: the quick run goes through the product's code path and reports every number;
the goals and the misses cell are checked against golden numbers on made-up runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from medical.bench import (
    ABLATION,
    ABLATION_BASE,
    ABLATION_DEFAULT,
    ABLATION_V1,
    BENCH,
    ablation_goals,
    build_report,
    goals,
)
from medical.cli import main as hv_med
from medical.model import ABLATION_PRESETS, HybridUNet, resolve_config
from medical.plan import MEDICAL
from shared.bench import Row, Run
from shared.bench.report import render_markdown
from shared.engine import read_checkpoint
from shared.layers import count_parameters


def test_quick_bench_trains_predicts_and_scores_through_the_cli_path(tmp_path: Path) -> None:
    code = hv_med([
        "bench", "--quick", "--models", "hybrid", "MONAI UNet", "--seeds", "0",
        "--out-dir", str(tmp_path / "out"), "--work-dir", str(tmp_path / "work"),
    ])  # fmt: skip
    assert code == 0
    report = json.loads((tmp_path / "out" / "medical.json").read_text())
    assert [r["name"] for r in report["rows"]] == ["hybrid", "MONAI UNet"]
    markdown = (tmp_path / "out" / "medical.md").read_text()
    for row in report["rows"]:
        (run,) = row["runs"]
        metrics = run["metrics"]
        assert run["error"] is None and run["seed"] == 0 and run["info"]["steps"] == 2
        # One seed: the mean is the run's value and there is no standard deviation.
        assert row["stats"]["dice"] == {"mean": metrics["dice"], "std": None, "n": 1, "total": 1}
        assert 0.0 <= metrics["dice"] <= 1.0 and metrics["params"] > 0
        assert metrics["train_voxels_per_s"] > 0 and metrics["window_seconds_per_volume"] > 0
        assert metrics["predict_seconds_per_volume"] > 0
        # Measured VmHWM of a process that imported torch and MONAI: far above 0.2 GiB.
        assert 0.2 < metrics["peak_rss_gib"] < 16
        assert {"dice/organ1", "dice/organ2"} <= set(metrics)
        assert metrics["scored_pairs"] == 2 and 0 <= metrics["misses"] <= 2
        label = f"{row['name']} (ours)" if row["family"] == "ours" else row["name"]
        assert f"| {label} | organ1 {metrics['dice/organ1']:.3f} ± n/a, organ2 " in markdown
        assert f"| {metrics['dice']:.3f} ± n/a |" in markdown
        assert f"| {metrics['misses']:.0f} / 2 |" in markdown
    assert report["facts"]["held_out_cases"] == ["phantom_002"]
    # The attention probe: at a 32^3 patch the hybrid stages (reductions 16 and 32) attend
    # over 2^3 = 8 tokens and a single one; gates are conv shares in (0, 1). None for UNet.
    hybrid, unet = (row["runs"][0]["metrics"] for row in report["rows"])
    assert hybrid["attn_keys/stages.2.0"] == pytest.approx(8)
    assert hybrid["attn_keys/stages.3.0"] == pytest.approx(1)
    assert 0.0 < hybrid["attn_h/stages.2.0"] <= 1.0 and hybrid["attn_h/stages.3.0"] is None
    assert all(0.0 < hybrid[f"gate_conv/stages.{i}.0"] < 1.0 for i in (2, 3))
    assert not any(key.startswith(("attn_", "gate_")) for key in unet)
    assert "| hybrid (ours) | stages.2.0 | 8 |" in markdown
    # The UNet row really trained a MONAI UNet through hv-med train's config and task, and
    # hv-med predict rebuilt it from the checkpoint's plan.
    run = tmp_path / "work" / "runs" / "MONAI-UNet-seed0"
    assert yaml.safe_load((run / "config.yaml").read_text())["model"]["arch"] == "unet"
    assert read_checkpoint(run / "checkpoints" / "last.ckpt", MEDICAL)[1].network.arch == "unet"
    assert (run / "predictions" / "phantom_002.nii.gz").is_file()
    assert "Reproduce: `hv-med bench --quick" in markdown
    assert "Dice >= MONAI UNet: **" in markdown and "- Simple baseline: MONAI UNet" in markdown
    assert (tmp_path / "out" / "medical.png").read_bytes()[:4] == b"\x89PNG"
    # --render rewrites the same report from the JSON alone: same table, no training.
    assert hv_med(["bench", "--render", str(tmp_path / "out" / "medical.json"),
                   "--out-dir", str(tmp_path / "again")]) == 0  # fmt: skip
    table = [line for line in markdown.splitlines() if line.startswith("| ")]
    again = (tmp_path / "again" / "medical.md").read_text().splitlines()
    assert table == [line for line in again if line.startswith("| ")]


def _run(name: str, seed: int, dice: float, speed: float, misses: int = 0, **extra) -> Run:
    metrics = {"dice": dice, "dice/a": dice, "train_voxels_per_s": speed, "misses": misses,
               "scored_pairs": 2, "peak_rss_gib": 1.0, "params": 10.0,
               "case_dice/top": dice, "case_dice/bottom": dice - 0.1}  # fmt: skip
    return Run(name, seed, {**metrics, **extra}, {"classes": ["a"], "cases": ["bottom", "top"]})


def _row(name: str, *runs: Run) -> Row:
    variants = {**BENCH.variants, **ABLATION.variants}
    return Row(name, variants[name].family, True, list(runs))


def test_goals_and_misses_golden() -> None:
    ours = _row("hybrid", _run("hybrid", 0, 0.80, 100, 1), _run("hybrid", 1, 0.82, 100, 2))
    unet = _row("MONAI UNet", _run("MONAI UNet", 0, 0.85, 400))
    cnn = _row("pure CNN, matched params", _run("pure CNN, matched params", 0, 0.78, 90),
               _run("pure CNN, matched params", 1, 0.79, 90))  # fmt: skip
    assert goals([ours, cnn, unet]) == [
        "Dice >= MONAI UNet: **FAIL**, hybrid 0.810 vs 0.850 (-4.0 points; 2 vs 1 seeds).",
        "Training speed >= 0.5x MONAI UNet: **FAIL**, 0.25x (voxels/s, this run).",
        "Hybrid - pure CNN at matched parameters: +2.5 ± 0.7 Dice points (paired by seed, 2 "
        "seeds); the design brief claims +4.1.",
    ]
    facts = {"dataset": "x", "train_cases": [], "held_out_cases": [], "spacing": [1, 1, 1],
             "budget": {"steps": 4, "batch_size": 1, "samples_per_case": 2, "patch": [32, 32, 32],
                        "lr": 1e-3, "warmup_fraction": 0.1},
             "seeds": [0, 1], "slow_seeds": [0, 1]}  # fmt: skip
    markdown = render_markdown(build_report([ours, cnn, unet], facts, "hv-med bench"))
    assert ("| hybrid (ours) | a 0.810 ± 0.014 | bottom 0.710 ± 0.014, top 0.810 ± 0.014 | 0.00 "
            "| 0.810 ± 0.014 | - | 3 / 4 |") in markdown
    assert ("| MONAI UNet | a 0.850 ± n/a | bottom 0.750 ± n/a, top 0.850 ± n/a | 0.00 | "
            "0.850 ± n/a | - | 0 / 2 |") in markdown
    # A hybrid kept from an earlier invocation (--reuse) has no speed to compare.
    reused = _row("hybrid", Run("hybrid", 0, {"dice": 0.8, "train_voxels_per_s": None},
                                reused=True, stale=["train_voxels_per_s"]))  # fmt: skip
    assert goals([reused, unet])[1] == (
        "Training speed >= 0.5x MONAI UNet: n/a: hybrid's train_voxels_per_s was not measured "
        "in this invocation (kept from an earlier invocation (--reuse))."
    )


def test_ablation_goals_golden() -> None:
    base = _row(ABLATION_BASE, _run(ABLATION_BASE, 0, 0.80, 1), _run(ABLATION_BASE, 1, 0.84, 1))
    v1 = _row(ABLATION_V1, _run(ABLATION_V1, 0, 0.85, 1), _run(ABLATION_V1, 1, 0.86, 1))
    ours = _row(ABLATION_DEFAULT, _run(ABLATION_DEFAULT, 0, 0.86, 1),
                _run(ABLATION_DEFAULT, 1, 0.88, 1))  # fmt: skip
    assert ablation_goals([base, v1, ours]) == [
        f"{ABLATION_V1} - {ABLATION_BASE}: +3.5 ± 2.1 Dice points (paired by seed, 2 seeds).",
        f"{ABLATION_DEFAULT} - {ABLATION_BASE}: +5.0 ± 1.4 Dice points (paired by seed, 2 seeds).",
        "The default learns at least as fast as the core-v1 block: **PASS**, 0.870 vs 0.855 Dice "
        "at the same budget (+1.5 points).",
    ]


def test_ablation_variants_change_one_thing_each() -> None:
    """Each single-change row's preset differs from the core-v2 preset in exactly the field its
    name says (core v1 in all of its differences); every row trains through --model.preset."""
    base = resolve_config("med_cpu-core_v2")
    fields = {"residual_1.0": {"residual_strength"}, "batch_norm": {"norm"},
              "instance_norm": {"norm"}, "no_relu_after_sum": {"post_activation"},
              "gate_bias_2": {"gate_bias_init"}, "zero_init_last": {"zero_init_last"},
              "attention_third": {"attention_ratio"},
              "conv_shortcut": {"conv_shortcut", "post_activation"},
              "core_v1": {"norm", "attention_ratio", "conv_shortcut", "post_activation",
                          "residual_strength_per_stage"}}  # fmt: skip
    for name, config in ABLATION_PRESETS.items():
        if name.startswith("med_cpu-attention_from_r8"):  # the default, one more hybrid stage
            assert [s.kind for s in config.stages] == list("CHHH")
            init = "xavier" if name.endswith("xavier") else "trunc_normal"
            default = resolve_config("med_cpu")
            assert config == default.replace(stages=config.stages, attention_init=init)
            continue
        changed = {f for f in vars(base) if getattr(config, f) != getattr(base, f)}
        assert changed == fields.get(name.removeprefix("med_cpu-"), set()), name
    strengths = resolve_config("med_cpu-core_v1").residual_strengths()
    assert strengths[:2] == [[], []] and strengths[2:] == [[pytest.approx(13 / 30)], [0.3]]
    # The core-v1 network as commit 2c3624f built it: 3,393,187 parameters (its code, loaded
    # from git history, gave the same outputs and running statistics for the same weights).
    assert count_parameters(HybridUNet(3, 1, 3, "med_cpu-core_v1")) == 3_393_187
    for variant in ABLATION.variants.values():
        assert variant.options["arch"] == "hybrid"
        resolve_config(variant.options["preset"])
