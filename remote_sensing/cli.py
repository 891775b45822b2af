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
from jsonargparse.typing import PositiveInt
from rich.console import Console
from rich.table import Table

from shared.cli import OneLineArgumentParser, TaskSpec, build_cli, load_run, parse_inference_command
from shared.engine import InputError, atomic_write_json, file_stem

from .plan import REMOTE_SENSING, SceneClassifierPlan
from .task import RSDataConfig, RSModelConfig, build_task, validate

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


def _predict_arguments(parser) -> None:
    parser.add_argument("inputs", nargs="+", type=str,
                        help="a scene GeoTIFF, scenes or folders of scenes, or chip folders "
                        "(with -o OUT.csv)")  # fmt: skip
    parser.add_argument("-o", "--out", type=str, required=True,
                        help="class map .tif (one scene), a folder (several scenes: "
                        "OUT/<scene>.tif each), or a .csv (one row per chip)")  # fmt: skip
    parser.add_argument("--checkpoint", type=str, required=True, help="a run's .ckpt file")
    parser.add_argument("--probabilities", action="store_true", help="also per-class bands")
    parser.add_argument("--tta", action="store_true", help="average the D4 group at 2 scales")
    parser.add_argument("--batch", type=PositiveInt, default=64, help="chips per network call")


def _scene_jobs(inputs: list[Path], out: Path) -> list[tuple[Path, Path]]:
    """(scene, class map) pairs: one scene to ``out`` itself, several to ``out/<scene>.tif``."""
    from .data import IMAGE_ENDINGS

    for path in inputs:
        if not path.exists():
            raise InputError(f"{path}: input not found")
    if len(inputs) == 1 and inputs[0].is_file() and out.suffix.lower() in (".tif", ".tiff"):
        return [(inputs[0], out)]
    scenes: list[Path] = []
    for path in inputs:
        scenes += (sorted(f for f in path.iterdir() if f.suffix.lower() in IMAGE_ENDINGS)
                   if path.is_dir() else [path])  # fmt: skip
    if not scenes:
        raise InputError(f"{', '.join(map(str, inputs))}: no scenes (.tif/.png/.jpg) inside")
    if out.suffix.lower() in (".tif", ".tiff"):
        raise InputError(f"{out}: several scenes need an output folder, not one .tif")
    jobs, seen = [], {}
    sources = {s.resolve() for s in scenes}
    for scene in scenes:
        target = out / f"{file_stem(scene)}.tif"
        if target.resolve() in sources:
            raise InputError(f"{target}: would overwrite an input; choose another -o")
        if target in seen:
            raise InputError(f"{seen[target]} and {scene} would both write {target}")
        seen[target] = scene
        jobs.append((scene, target))
    return jobs


def predict_main(argv: Sequence[str]) -> int:
    """``hv-rs predict SCENE.tif -o MAP.tif``, ``SCENES/ -o MAPS/`` or ``CHIPS/ -o OUT.csv``.

    The checkpoint alone decides the preprocessing and the network. With ``--trainer.devices N
    --trainer.num_nodes M --trainer.strategy ddp`` the scenes (or chips) are shared among the
    N x M processes, each output written once.
    """
    from shared.engine.jobs import gather_results, run_over_inputs

    from .predict import chip_files, chip_rows, load_predictor, predict_scene, write_chip_csv

    args, cfg = parse_inference_command(SPEC, "predict", predict_main.__doc__ or "", argv,
                                        _predict_arguments)  # fmt: skip
    inputs, out = [Path(p) for p in args.inputs], Path(args.out)
    console = Console()
    if out.suffix.lower() == ".csv":
        files = chip_files(inputs)
        if out.resolve() in {f.resolve() for f in files}:
            raise InputError(f"{out}: the output would overwrite an input")
        predictor = load_predictor(Path(args.checkpoint), args.tta)
        chunks = [files[i : i + args.batch] for i in range(0, len(files), args.batch)]
        trainer, rows = run_over_inputs(chunks, lambda chunk: chip_rows(predictor, chunk),
                                        cfg.trainer, predictor.model)  # fmt: skip
        merged = gather_results(rows)
        if merged is not None:  # global rank 0 writes the one CSV, rows in input order
            write_chip_csv([r for i in sorted(merged) for r in merged[i]],
                           predictor.pre.class_names, out)  # fmt: skip
            console.print(f"hv-rs predict: {len(files)} chips -> {out}")
        return 0
    jobs = _scene_jobs(inputs, out)
    predictor = load_predictor(Path(args.checkpoint), args.tta)

    def run(job: tuple[Path, Path]) -> dict:
        scene, target = job
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            info = predict_scene(predictor, scene, target, args.probabilities, args.batch)
        for warning in caught:
            print(f"hv-rs predict: warning: {warning.message}", file=sys.stderr)
        return info

    trainer, infos = run_over_inputs(jobs, run, cfg.trainer, predictor.model)
    merged = gather_results(infos)
    for index in sorted(merged or {}):
        info = merged[index]
        console.print(
            f"hv-rs predict: {info['rows']}x{info['cols']} class map ({info['crs'] or 'no CRS'})"
            f" -> {info['out']}; classes {info['class_counts']}"
        )
    return 0


def evaluate_main(argv: Sequence[str]) -> int:
    """``hv-rs evaluate --checkpoint CKPT [--split test] [--views plain rotate d4 ...]``."""
    from .evaluate import VIEWS, evaluate_views
    from .metrics import format_f1, write_confusion

    parser = OneLineArgumentParser(prog="hv-rs evaluate", description=evaluate_main.__doc__)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--split", choices=("val", "test"), default="test")
    parser.add_argument("--views", nargs="+", choices=VIEWS, default=["plain", "rotate", "d4"])
    parser.add_argument("--tta", action="store_true")
    parser.add_argument("-o", "--out", type=Path, default=None, help="default: the run folder")
    args, config_flags = parser.parse_known_args(list(argv))
    # The run's preprocessing and network come from the checkpoint's plan; the dataset is only
    # scanned and split (no statistics pass, no width search).
    cfg, module, data = load_run(SPEC, args.checkpoint, config_flags, "evaluate")
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
        table.add_row(name, *[format_f1(scores[v]["per_class_f1"][name]) for v in scores])
    table.add_row("[bold]macro-F1", *[f"[bold]{scores[v]['macro_f1']:.3f}" for v in scores])
    table.add_row("accuracy", *[f"{scores[v]['accuracy']:.3f}" for v in scores])
    console = Console()
    console.print(table)
    console.print("written: " + ", ".join(str(f) for f in files))
    return 0


def _example_input(plan: SceneClassifierPlan) -> torch.Tensor:
    pre = plan.preprocessing
    return torch.randn(2, len(pre.bands), pre.chip_size, pre.chip_size)


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
    vertical=REMOTE_SENSING,
    headline="val/macro_f1",
    mode="max",
    path_fields=("data.root",),
    validate=validate,
    example_input=_example_input,
    bench=_bench,
    commands={
        "evaluate": ("macro-F1, per-class F1, confusion, rotated/scaled: --checkpoint CKPT",
                     evaluate_main),
        "predict": ("scenes -> class-map GeoTIFFs, chips -> CSV: INPUT... -o OUT --checkpoint "
                    "CKPT", predict_main),
        "tile": ("cut a scene into georeferenced chips: SCENE -o CHIPS --size 64", tile_main),
        "stats": ("per-band mean/std of a dataset, stored as DATASET/stats.json", stats_main),
    },
)  # fmt: skip

main = build_cli(SPEC)

if __name__ == "__main__":
    sys.exit(main())
