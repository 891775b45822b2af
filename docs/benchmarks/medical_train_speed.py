"""A training step of the medical networks, timed and profiled (medical_train_speed.md).

    python docs/benchmarks/medical_train_speed.py [--repeats 6] [--out docs/benchmarks]

One process, one torch thread. For each network (our hybrid ``med_cpu``, MONAI UNet, our
pure-CNN control) and each setting (fp32 channels-first, as before issue 18; fp32 channels-last,
what ``hv-med train`` does now; bf16 autocast channels-last): forward, Dice + CE, backward and
AdamW on a batch of 2 patches 64x64x32, 3 classes (the bench's patch). Settings and networks are
interleaved within each repeat, so a shared machine's changing load hits them alike; the table
gives the median seconds per step after one warm-up step and voxels/s, and the hybrid/UNet ratio
per setting. Then ``torch.profiler`` on one fp32 step of the hybrid in both layouts: the
operators that take the time (self CPU).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from monai.losses import DiceCELoss
from torch.profiler import ProfilerActivity, profile

from medical.model import build_medical_model
from shared.bench.report import machine_info
from shared.engine.io import atomic_write_text

PATCH = (64, 64, 32)
BATCH = 2
SETTINGS = {
    "fp32, channels-first (before)": (False, False),
    "fp32, channels-last (now)": (True, False),
    "bf16 autocast, channels-last": (True, True),
}
ARCHS = {"hybrid (ours)": "hybrid", "MONAI UNet": "unet", "pure CNN (ours)": "cnn"}


def _step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor,
          y: torch.Tensor, bf16: bool) -> float:  # fmt: skip
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    start = time.perf_counter()
    with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
        logits = model(x)
    loss = loss_fn(logits.float(), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return time.perf_counter() - start


def _setup(arch: str, channels_last: bool) -> tuple:
    torch.manual_seed(0)
    model = build_medical_model(3, 1, 3, arch=arch)
    x = torch.randn(BATCH, 1, *PATCH)
    y = torch.randint(0, 3, (BATCH, 1, *PATCH))
    if channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
        x = x.contiguous(memory_format=torch.channels_last_3d)
    return model, torch.optim.AdamW(model.parameters(), 1e-3), x, y


def _profile(channels_last: bool, rows: int = 8) -> list[str]:
    model, optimizer, x, y = _setup("hybrid", channels_last)
    _step(model, optimizer, x, y, False)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        _step(model, optimizer, x, y, False)
    events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in events)
    words = ("attention", "softmax", "layer_norm")
    attention = sum(e.self_cpu_time_total for e in events if any(w in e.key for w in words))
    lines = [
        f"| {e.key} | {e.self_cpu_time_total / 1e3:.0f} | "
        f"{100 * e.self_cpu_time_total / total:.1f} |"
        for e in events[:rows]
    ]
    lines.append(f"| attention ops (SDPA, softmax, layer norm) | {attention / 1e3:.0f} | "
                 f"{100 * attention / total:.1f} |")  # fmt: skip
    return lines


def main(argv: list[str] | None = None) -> int:
    """Time, profile, write ``medical_train_speed.md``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    runs = {(a, s): _setup(arch, SETTINGS[s][0]) for a, arch in ARCHS.items() for s in SETTINGS}
    times: dict[tuple[str, str], list[float]] = {key: [] for key in runs}
    for repeat in range(args.repeats + 1):  # the first step of each is a warm-up
        for key, (model, optimizer, x, y) in runs.items():
            seconds = _step(model, optimizer, x, y, SETTINGS[key[1]][1])
            if repeat:
                times[key].append(seconds)
        print(f"repeat {repeat}/{args.repeats}", file=sys.stderr)
    median = {key: statistics.median(values) for key, values in times.items()}
    voxels = BATCH * PATCH[0] * PATCH[1] * PATCH[2]
    table = ["| network | setting | s/step (median) | voxels/s |", "|---|---|---:|---:|"]
    for (name, setting), seconds in median.items():
        table.append(f"| {name} | {setting} | {seconds:.3f} | {voxels / seconds:,.0f} |")
    ratios = [f"- {s}: hybrid / UNet voxels/s = "
              f"**{median[('MONAI UNet', s)] / median[('hybrid (ours)', s)]:.2f}x**"
              for s in SETTINGS]  # fmt: skip
    machine = machine_info()
    text = "\n".join([
        "# Medical training step: speed and profile (issue 18)",
        "",
        f"- Reproduce: `python docs/benchmarks/medical_train_speed.py --repeats {args.repeats}`",
        f"- Machine: {machine.get('cpu', '?')}, 1 torch thread; torch {torch.__version__}; "
        "a shared machine (other jobs running): compare rows of this run, not absolute speeds",
        f"- Step: forward, Dice + CE, backward, AdamW; batch {BATCH} x {PATCH}, 3 classes; "
        f"median of {args.repeats} steps after a warm-up, settings interleaved per repeat",
        "",
        *table,
        "",
        "Hybrid / UNet speed ratio (the issue's goal: >= 0.5x):",
        "",
        *ratios,
        "",
        "## Where one fp32 step of the hybrid spends its time (torch.profiler, self CPU)",
        "",
        "Channels-first (before):",
        "",
        "| operator | ms | % |",
        "|---|---:|---:|",
        *_profile(False),
        "",
        "Channels-last (now):",
        "",
        "| operator | ms | % |",
        "|---|---:|---:|",
        *_profile(True),
        "",
    ])
    atomic_write_text(args.out / "medical_train_speed.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
