"""``hv-rs``: train, evaluate, predict, tile, stats, bench and export for multispectral scene
classification, on the shared CLI chassis.

``evaluate`` and ``predict`` replace the chassis defaults: evaluation scores a split (test by
default) plainly and under rotation and ground-scale change, with per-class F1 and a confusion
matrix; prediction turns a scene into a class-map GeoTIFF or a chip folder into a CSV.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from shared.cli import OneLineArgumentParser, TaskSpec, build_cli, load_run
from shared.engine import InputError, atomic_write_json, load_checkpoint

from .task import CHECKPOINT_KEY, RSDataConfig, RSModelConfig, build_task, validate

__all__ = ["SPEC", "main"]


def tile_main(argv: Sequence[str]) -> int:
    """``hv-rs tile SCENE.tif -o CHIPS/ --size 64 --stride 64``."""
    from .tile import tile_scene

    parser = OneLineArgumentParser(prog="hv-rs tile", description=tile_main.__doc__)
    parser.add_argument("scene", type=Path)
    parser.add_argument("-o", "--out", type=Path, required=True, help="chip folder")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--stride", type=int, default=64)
    parser.add_argument("--max-nodata", type=float, default=0.5, help="skip chips above this share")
    args = parser.parse_args(list(argv))
    if not 0 <= args.max_nodata <= 1:
        raise InputError(f"--max-nodata must be a share in [0, 1], got {args.max_nodata}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        report = tile_scene(args.scene, args.out, args.size, args.stride, args.max_nodata)
    for warning in caught:
        print(f"hv-rs tile: warning: {warning.message}", file=sys.stderr)
    Console().print(
        f"hv-rs tile: {report.written} chips written, {report.skipped_nodata} skipped "
        f"(mostly nodata), {'georeferenced' if report.georeferenced else 'no CRS'} -> "
        f"{report.out_dir}/"
    )
    return 0


def stats_main(argv: Sequence[str]) -> int:
    """``hv-rs stats DATASET``: per-band mean/std (streamed) stored as DATASET/stats.json."""
    from .data import (
        check_consistency,
        compute_stats,
        default_scale,
        open_raster,
        resolve_bands,
        scan_dataset,
        write_stats,
    )

    parser = OneLineArgumentParser(prog="hv-rs stats", description=stats_main.__doc__)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--bands", nargs="+", default=None, help="names or 1-based indexes")
    parser.add_argument("--scale", type=float, default=None, help="reflectance divisor")
    parser.add_argument("-o", "--out", type=Path, default=None, help="default DATASET/stats.json")
    args = parser.parse_args(list(argv))
    samples, _ = scan_dataset(args.dataset)
    _, dtype, notes = check_consistency(samples, args.dataset)
    for note in notes:
        print(f"hv-rs stats: warning: {note}", file=sys.stderr)
    with open_raster(samples[0].path) as src:
        indexes, names = resolve_bands(src, args.bands, samples[0].path)
    scale = float(args.scale or default_scale(dtype))
    mean, std = compute_stats([s.path for s in samples], indexes, scale)
    out = write_stats(args.dataset, names, scale, mean, std, args.out)
    table = Table(title=f"per-band statistics (reflectance / {scale:g})")
    for column in ("band", "mean", "std"):
        table.add_column(column)
    for name, m, s in zip(names, mean, std, strict=True):
        table.add_row(name, f"{m:.4f}", f"{s:.4f}")
    Console().print(table)
    Console().print(f"written: {out}")
    return 0


def predict_main(argv: Sequence[str]) -> int:
    """``hv-rs predict SCENE.tif -o MAP.tif`` or ``hv-rs predict CHIPS/ -o OUT.csv``."""
    from .predict import load_predictor, predict_chips, predict_scene

    parser = OneLineArgumentParser(prog="hv-rs predict", description=predict_main.__doc__)
    parser.add_argument("input", type=Path, help="a scene GeoTIFF or a folder of chips")
    parser.add_argument("-o", "--out", type=Path, required=True, help="class map .tif or .csv")
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--probabilities", action="store_true", help="also per-class bands")
    parser.add_argument("--tta", action="store_true", help="average the D4 group at 2 scales")
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args(list(argv))
    if args.batch < 1:
        raise InputError(f"--batch must be >= 1, got {args.batch}")
    if not args.input.exists():
        raise InputError(f"{args.input}: input not found")
    predictor = load_predictor(args.checkpoint, args.tta)
    console = Console()
    if args.input.is_dir():
        count = predict_chips(predictor, args.input, args.out, args.batch)
        console.print(f"hv-rs predict: {count} chips -> {args.out}")
        return 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        info = predict_scene(predictor, args.input, args.out, args.probabilities, args.batch)
    for warning in caught:
        print(f"hv-rs predict: warning: {warning.message}", file=sys.stderr)
    console.print(
        f"hv-rs predict: {info['rows']}x{info['cols']} class map ({info['crs'] or 'no CRS'}) "
        f"-> {info['out']}; classes {info['class_counts']}"
    )
    return 0


def evaluate_main(argv: Sequence[str]) -> int:
    """``hv-rs evaluate --checkpoint CKPT [--split test] [--views plain rotate d4 ...]``."""
    from .evaluate import VIEWS, evaluate_views
    from .metrics import write_confusion

    parser = OneLineArgumentParser(prog="hv-rs evaluate", description=evaluate_main.__doc__)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--split", choices=("val", "test"), default="test")
    parser.add_argument("--views", nargs="+", choices=VIEWS, default=["plain", "rotate", "d4"])
    parser.add_argument("--tta", action="store_true")
    parser.add_argument("-o", "--out", type=Path, default=None, help="default: the run folder")
    args, config_flags = parser.parse_known_args(list(argv))
    state = load_checkpoint(args.checkpoint)
    if CHECKPOINT_KEY not in state:
        raise InputError(f"{args.checkpoint}: not an hv-rs checkpoint (no {CHECKPOINT_KEY} entry)")
    cfg, module, data = load_run(SPEC, args.checkpoint, config_flags, "evaluate")
    from .data import Preprocessing

    data.plan.pre = Preprocessing.from_dict(state[CHECKPOINT_KEY])  # as trained
    if not data.plan.splits[args.split]:
        raise InputError(f"{cfg.data.root}: the {args.split} split is empty")
    scores = evaluate_views(module.model, data.dataset(args.split), data.plan.pre.class_names,
                            tuple(args.views), cfg.trainer.batch_size, args.tta,
                            cfg.trainer.seed)  # fmt: skip
    out_dir = args.out or args.checkpoint.parent.parent
    names = data.plan.pre.class_names
    files = write_confusion(scores["plain"], names, out_dir, args.split)
    result = {"checkpoint": str(args.checkpoint), "split": args.split, "tta": args.tta,
              "scores": scores}  # fmt: skip
    files.append(atomic_write_json(out_dir / f"evaluation_{args.split}.json", result))
    table = Table(title=f"hv-rs evaluate: {args.split} split ({scores['plain']['count']} chips)")
    table.add_column("class")
    for view in scores:
        table.add_column(f"F1 {view}", justify="right")
    for name in names:
        table.add_row(name, *[f"{scores[v]['per_class_f1'][name]:.3f}" for v in scores])
    table.add_row("[bold]macro-F1", *[f"[bold]{scores[v]['macro_f1']:.3f}" for v in scores])
    table.add_row("accuracy", *[f"{scores[v]['accuracy']:.3f}" for v in scores])
    console = Console()
    console.print(table)
    console.print("written: " + ", ".join(str(f) for f in files))
    return 0


def export_main(argv: Sequence[str]) -> int:
    """``hv-rs export --checkpoint CKPT -o MODEL.pt2``: the network as a torch.export program.

    Needs only the checkpoint (no dataset, no run folder): it carries the architecture, bands
    and chip size. The program takes normalised ``(N, bands, chip, chip)`` chips, any N; the
    preprocessing (band order, scale, per-band mean/std, class names) is saved inside the .pt2
    as ``hv_rs.json`` (``torch.export.load(path, extra_files={"hv_rs.json": ""})``).
    """
    import json

    from shared.engine import atomic_write

    from .predict import load_predictor

    parser = OneLineArgumentParser(prog="hv-rs export", description=export_main.__doc__)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("-o", "--out", type=Path, required=True, help="output .pt2 file")
    args = parser.parse_args(list(argv))
    if args.out.resolve() == args.checkpoint.resolve():
        raise InputError(f"{args.out}: the output would overwrite the checkpoint")
    predictor = load_predictor(args.checkpoint)
    pre = predictor.pre
    # Batch of 2 with a dynamic batch axis: an example of 1 would fix the batch size at 1.
    example = torch.randn(2, len(pre.bands), pre.chip_size, pre.chip_size)
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(predictor.model, (example,), dynamic_shapes=({0: batch},))
    extra = {"hv_rs.json": json.dumps(pre.to_dict())}

    def save(tmp: Path) -> None:
        # Through a file object: given a path, torch warns that the temporary name lacks .pt2.
        with open(tmp, "wb") as handle:
            torch.export.save(program, handle, extra_files=extra)

    atomic_write(args.out, save)
    Console().print(f"hv-rs export: torch.export program for {len(pre.bands)}-band "
                    f"{pre.chip_size} px chips ({', '.join(pre.bands)}) -> {args.out}")  # fmt: skip
    return 0


def _example_input(cfg) -> torch.Tensor:
    from .task import plan_dataset

    plan = plan_dataset(cfg.data, cfg.trainer.seed)
    return torch.randn(1, len(plan.pre.bands), cfg.data.chip_size, cfg.data.chip_size)


def _bench(argv: Sequence[str]) -> int:
    from .bench import main as bench_main

    return bench_main(argv)


SPEC = TaskSpec(
    prog="hv-rs",
    description="Hybrid CNN-Transformer scene classification of multispectral GeoTIFFs, "
    "scored by macro-F1.",
    data_config=RSDataConfig,
    model_config=RSModelConfig,
    build=build_task,
    headline="val/macro_f1",
    mode="max",
    path_fields=("data.root",),
    validate=validate,
    example_input=_example_input,
    bench=_bench,
    commands={
        "evaluate": ("macro-F1, per-class F1, confusion, rotated/scaled: --checkpoint CKPT",
                     evaluate_main),
        "predict": ("scene -> class-map GeoTIFF, chip folder -> CSV: INPUT -o OUT --checkpoint "
                    "CKPT", predict_main),
        "tile": ("cut a scene into georeferenced chips: SCENE -o CHIPS --size 64", tile_main),
        "stats": ("per-band mean/std of a dataset, stored as DATASET/stats.json", stats_main),
        "export": ("torch.export program from a checkpoint alone: --checkpoint CKPT -o M.pt2",
                   export_main),
    },
)  # fmt: skip

main = build_cli(SPEC)

if __name__ == "__main__":
    sys.exit(main())
