"""CLI chassis: builds ``train``, ``evaluate``, ``predict``, ``bench`` and ``export`` for a task.

A vertical describes itself once in a :class:`TaskSpec`; :func:`build_cli` returns its ``main``.
Every config field is a flag (``--optim.lr 1e-4``), ``--config run.yaml`` loads a file (flags
after it win), ``--resume runs/<name>`` continues a run. Bad arguments or unreadable inputs exit
with code 2 and one line on stderr; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from jsonargparse import ActionConfigFile, ArgumentParser, Namespace, set_parsing_settings
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_only
from rich.console import Console
from rich.table import Table
from torch.utils.data import DataLoader, Dataset

from .engine.config import (
    OptimConfig,
    RegularizationConfig,
    RunFolderConfig,
    TrainerConfig,
    validate_common,
)
from .engine.io import (
    InputError,
    atomic_write,
    atomic_write_json,
    atomic_write_text,
    load_checkpoint,
    load_state_dict_strict,
)
from .engine.module import HybridTask
from .engine.trainer import fit, parse_devices

__all__ = [
    "TaskSpec",
    "RunConfig",
    "build_cli",
    "PredictionFileWriter",
    "load_run",
    "OneLineArgumentParser",
]

COMMANDS = ("train", "evaluate", "predict", "bench", "export")
QUIET_WARNINGS = (
    ".*'set_vital' is deprecated.*",
    ".*isinstance\\(treespec, LeafSpec\\)` is deprecated.*",
    ".*is smaller than the logging interval.*",
    ".*nvImageCodec.*",
)

# Field docstrings of the config dataclasses become the --help text of their flags.
set_parsing_settings(docstring_parse_attribute_docstrings=True)


@dataclass
class RunConfig:
    """The resolved configuration of one run: task sections plus the shared engine sections."""

    data: Any
    model: Any
    optim: OptimConfig
    trainer: TrainerConfig
    regularization: RegularizationConfig
    run: RunFolderConfig

    @property
    def run_dir(self) -> Path:
        """``<runs_dir>/<name>``."""
        return Path(self.run.runs_dir) / self.run.name


@dataclass
class TaskSpec:
    """What a vertical supplies to get its CLI.

    ``build(cfg)`` returns the LightningModule and data module; ``validate(cfg)`` raises
    :class:`InputError` for bad task values (e.g. a missing data folder). For prediction,
    ``predict_dataset(paths, cfg)`` yields dicts with ``image`` and ``path``, and
    ``write_prediction(output, source_path, out_path)`` writes one result to ``out_path``
    (a temporary name the chassis renames). ``bench(argv)`` runs the task benchmark.
    """

    prog: str
    description: str
    data_config: type
    model_config: type
    build: Callable[[RunConfig], tuple[HybridTask, pl.LightningDataModule]]
    headline: str
    mode: str = "max"
    validate: Callable[[RunConfig], None] | None = None
    predict_dataset: Callable[[list[Path], RunConfig], Dataset] | None = None
    write_prediction: Callable[[torch.Tensor, Path, Path], None] | None = None
    prediction_suffix: str = ".pt"
    example_input: Callable[[RunConfig], torch.Tensor] | None = None
    bench: Callable[[list[str]], int] | None = None
    commands: dict[str, tuple[str, Callable[[list[str]], int]]] = field(default_factory=dict)
    """Extra or replacement subcommands: name -> (one-line help, main(argv) -> exit code)."""


class OneLineArgumentParser(argparse.ArgumentParser):
    """Plain argparse for task-specific commands; errors exit 2 with one line via the chassis."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise InputError(message)


class _Parser(ArgumentParser):
    """jsonargparse parser whose errors are one line and exit code 2."""

    def error(self, message: str, *args: Any, **kwargs: Any) -> None:  # noqa: D102
        raise InputError(" ".join(str(message).split()))


def _config_parser(spec: TaskSpec, command: str, description: str) -> _Parser:
    parser = _Parser(prog=f"{spec.prog} {command}", description=description, exit_on_error=False)
    parser.add_argument(
        "--config", action=ActionConfigFile, help="YAML config file (flags after it win)"
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    parser.add_class_arguments(spec.data_config, "data", help="dataset")
    parser.add_class_arguments(spec.model_config, "model", help="network")
    parser.add_class_arguments(OptimConfig, "optim", help="optimiser and schedule")
    parser.add_class_arguments(TrainerConfig, "trainer", help="length, precision, devices")
    parser.add_class_arguments(RegularizationConfig, "regularization", help="regularisers")
    parser.add_class_arguments(RunFolderConfig, "run", help="run folder runs_dir/name")
    return parser


def _to_run_config(spec: TaskSpec, parser: _Parser, ns: Namespace) -> RunConfig:
    init = (
        parser.instantiate(ns) if hasattr(parser, "instantiate") else parser.instantiate_classes(ns)
    )
    cfg = RunConfig(
        data=init.data,
        model=init.model,
        optim=init.optim,
        trainer=init.trainer,
        regularization=init.regularization,
        run=init.run,
    )
    validate_common(cfg.optim, cfg.trainer, cfg.regularization)
    parse_devices(cfg.trainer.devices)
    if spec.validate is not None:
        spec.validate(cfg)
    return cfg


def _dump_config(parser: _Parser, ns: Namespace) -> str:
    clean = ns.clone()
    for key in ("config", "debug", "resume", "__path__"):
        if key in clean:
            del clean[key]
    return parser.dump(clean, skip_check=True)


def _print_summary(console: Console, title: str, values: dict[str, Any]) -> None:
    table = Table(title=title, show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in values.items():
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    console.print(table)


def _train(spec: TaskSpec, argv: list[str], console: Console) -> int:
    parser = _config_parser(spec, "train", f"Train a {spec.prog} model into runs/<name>/.")
    parser.add_argument("--resume", type=str, default=None, help="run folder to continue")
    argv = list(argv)
    resume_dir: Path | None = None
    if "--resume" in argv:
        index = argv.index("--resume")
        if index + 1 >= len(argv):
            raise InputError("--resume needs a run folder, e.g. --resume runs/my-run")
        resume_dir = Path(argv[index + 1])
        if not (resume_dir / "config.yaml").is_file():
            raise InputError(f"{resume_dir}: not a run folder (no config.yaml)")
        # The saved config is the base; flags given now override it.
        argv = ["--config", str(resume_dir / "config.yaml"), *argv]
    ns = parser.parse_args(argv)
    cfg = _to_run_config(spec, parser, ns)
    run_dir = resume_dir or cfg.run_dir
    if resume_dir is not None:
        cfg.run.runs_dir, cfg.run.name = str(resume_dir.parent), resume_dir.name
    elif rank_zero_only.rank == 0 and (run_dir / "checkpoints").exists() and not cfg.run.overwrite:
        raise InputError(
            f"{run_dir}: run folder already exists; continue it with --resume {run_dir}, "
            "pick another --run.name, or pass --run.overwrite true"
        )
    if rank_zero_only.rank == 0:
        atomic_write_text(run_dir / "config.yaml", _dump_config(parser, ns))
    # Seed before building: weight initialisation must repeat too.
    pl.seed_everything(cfg.trainer.seed, workers=True, verbose=False)
    module, datamodule = spec.build(cfg)
    trainer = fit(
        module,
        datamodule,
        cfg.trainer,
        run_dir,
        spec.headline,
        spec.mode,
        grad_clip=cfg.optim.grad_clip,
        resume=resume_dir is not None,
    )
    if trainer.is_global_zero:
        import json

        summary = json.loads((run_dir / "summary.json").read_text())
        final = {k: v for k, v in summary["final_metrics"].items() if k.startswith("val/")}
        _print_summary(console, f"{spec.prog} train: {run_dir}", final)
        console.print(f"best {spec.headline} = {summary['best_value']}  ->  {run_dir}/")
    return 0


def load_run(
    spec: TaskSpec, checkpoint: Path, argv: list[str], command: str
) -> tuple[RunConfig, HybridTask, pl.LightningDataModule]:
    """Config (the run's config.yaml, then ``argv``) and module with the checkpoint's weights."""
    parser = _config_parser(spec, command, "")
    run_config = checkpoint.parent.parent / "config.yaml"
    prefix = ["--config", str(run_config)] if run_config.is_file() else []
    ns = parser.parse_args([*prefix, *argv])
    cfg = _to_run_config(spec, parser, ns)
    state = load_checkpoint(checkpoint)
    if "state_dict" not in state:
        raise InputError(f"{checkpoint}: not a Lightning checkpoint (no state_dict)")
    module, datamodule = spec.build(cfg)
    load_state_dict_strict(module, state["state_dict"], checkpoint)
    return cfg, module, datamodule


def _take_option(argv: list[str], flag: str, requirement: str) -> tuple[Path, list[str]]:
    """Remove ``flag VALUE`` from ``argv``; ``InputError(requirement)`` when it is missing."""
    if flag not in argv or argv.index(flag) + 1 >= len(argv):
        raise InputError(requirement)
    index = argv.index(flag)
    return Path(argv[index + 1]), argv[:index] + argv[index + 2 :]


def _split_checkpoint(argv: list[str], command: str) -> tuple[Path, list[str]]:
    return _take_option(
        argv, "--checkpoint", f"{command} needs --checkpoint runs/<name>/checkpoints/best.ckpt"
    )


def _inference_trainer(cfg: RunConfig, callbacks: list[pl.Callback] | None = None) -> pl.Trainer:
    """A Trainer for validate/predict on the run's devices, without logs or checkpoints."""
    return pl.Trainer(
        accelerator=cfg.trainer.accelerator,
        devices=parse_devices(cfg.trainer.devices),
        num_nodes=cfg.trainer.num_nodes,
        strategy=cfg.trainer.strategy,
        precision=cfg.trainer.precision,
        logger=False,
        callbacks=callbacks or [],
        enable_progress_bar=cfg.trainer.progress,
        enable_model_summary=False,
    )


def _evaluate(spec: TaskSpec, argv: list[str], console: Console) -> int:
    checkpoint, rest = _split_checkpoint(argv, "evaluate")
    cfg, module, datamodule = load_run(spec, checkpoint, rest, "evaluate")
    trainer = _inference_trainer(cfg)
    results = trainer.validate(module, datamodule=datamodule, verbose=False)[0]
    if trainer.is_global_zero:
        out = checkpoint.parent.parent / "evaluation.json"
        atomic_write_json(out, {"checkpoint": str(checkpoint), "metrics": results})
        _print_summary(console, f"{spec.prog} evaluate: {checkpoint}", results)
        console.print(f"written: {out}")
    return 0


class PredictionFileWriter(BasePredictionWriter):
    """Writes each prediction to ``out_dir/<input stem><suffix>`` atomically, on every rank.

    With DDP, Lightning's predict loop gives each rank a disjoint share of the inputs (no
    padding duplicates), so an archive of scans is one command spread over all devices.
    """

    def __init__(
        self, out_dir: Path, suffix: str, write: Callable[[torch.Tensor, Path, Path], None]
    ):
        super().__init__(write_interval="batch")
        self.out_dir = Path(out_dir)
        self.suffix = suffix
        self.write = write

    def write_on_batch_end(
        self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0
    ) -> None:  # noqa: D102
        for output, source in zip(prediction, batch["path"], strict=True):
            source = Path(source)
            target = self.out_dir / f"{source.name.split('.')[0]}{self.suffix}"
            atomic_write(target, lambda tmp, o=output, s=source: self.write(o.cpu(), s, tmp))


def _predict(spec: TaskSpec, argv: list[str], console: Console) -> int:
    if spec.predict_dataset is None or spec.write_prediction is None:
        raise InputError(f"{spec.prog} has no predict command yet")
    checkpoint, rest = _split_checkpoint(argv, "predict")
    out_dir, rest = _take_option(rest, "-o", "predict needs -o OUTPUT_DIR")
    inputs = []
    while rest and not rest[0].startswith("--"):
        inputs.append(Path(rest.pop(0)))
    if not inputs:
        raise InputError("predict needs at least one input file or folder")
    files: list[Path] = []
    for path in inputs:
        if not path.exists():
            raise InputError(f"{path}: input not found")
        files += sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    if not files:
        raise InputError(f"{', '.join(map(str, inputs))}: no input files")
    resolved = {f.resolve() for f in files}
    if out_dir.resolve() in {f.parent for f in resolved} and spec.prediction_suffix in {
        f.suffix for f in files
    }:
        raise InputError(f"{out_dir}: output folder holds the inputs; choose another -o")
    cfg, module, _ = load_run(spec, checkpoint, rest, "predict")
    dataset = spec.predict_dataset(files, cfg)
    loader = DataLoader(
        dataset, batch_size=cfg.trainer.batch_size, num_workers=cfg.trainer.num_workers
    )
    writer = PredictionFileWriter(out_dir, spec.prediction_suffix, spec.write_prediction)
    trainer = _inference_trainer(cfg, [writer])
    trainer.predict(module, dataloaders=loader, return_predictions=False)
    if trainer.is_global_zero:
        console.print(f"{spec.prog} predict: {len(files)} inputs -> {out_dir}/")
    return 0


def _export(spec: TaskSpec, argv: list[str], console: Console) -> int:
    if spec.example_input is None:
        raise InputError(f"{spec.prog} has no export command yet")
    checkpoint, rest = _split_checkpoint(argv, "export")
    target, rest = _take_option(rest, "-o", "export needs -o OUTPUT.pt2")
    cfg, module, _ = load_run(spec, checkpoint, rest, "export")
    model = module.model.eval()
    example = spec.example_input(cfg)
    program = torch.export.export(model, (example,))
    atomic_write(target, lambda tmp: torch.export.save(program, tmp))
    console.print(f"{spec.prog} export: torch.export program -> {target} (load: torch.export.load)")
    return 0


def _usage(spec: TaskSpec) -> str:
    lines = {
        "train": "train a model into runs/<name>/ (config.yaml, checkpoints, metrics, plots)",
        "evaluate": "score a checkpoint on the validation data: --checkpoint CKPT",
        "predict": "run a checkpoint on files or folders: INPUT... -o OUT --checkpoint CKPT",
        "bench": "the task benchmark (a command, prints a table)",
        "export": "save a checkpoint's network as a torch.export program: -o OUT.pt2",
    }
    unavailable = {
        "bench": spec.bench is None,
        "export": spec.example_input is None,
        "predict": spec.predict_dataset is None,
    }
    lines = {name: text for name, text in lines.items() if not unavailable.get(name)}
    lines |= {name: text for name, (text, _) in spec.commands.items()}
    listing = "".join(f"  {name:<10} {text}\n" for name, text in lines.items())
    return (
        f"usage: {spec.prog} COMMAND [options]\n\n{spec.description}\n\ncommands:\n"
        f"{listing}\n"
        f"'{spec.prog} COMMAND --help' lists every option; any option can go in a YAML file\n"
        "passed with --config; '--trainer.devices 2 --trainer.strategy ddp' uses 2 devices.\n"
    )


def build_cli(spec: TaskSpec) -> Callable[[Sequence[str] | None], int]:
    """Return ``main(argv) -> exit code`` for ``spec``'s command-line tool."""

    def main(argv: Sequence[str] | None = None) -> int:
        # Lightning's informational banners (GPU available..., tips) and a few known, harmless
        # library deprecation notices drown the report a CLI user reads.
        logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
        for pattern in QUIET_WARNINGS:
            warnings.filterwarnings("ignore", message=pattern)
        args = list(sys.argv[1:] if argv is None else argv)
        debug = "--debug" in args
        args = [a for a in args if a != "--debug"]
        console = Console()
        if not args or args[0] in ("-h", "--help"):
            print(_usage(spec))
            return 0 if args else 2
        command, rest = args[0], args[1:]
        handlers = {"train": _train, "evaluate": _evaluate, "predict": _predict, "export": _export}
        try:
            if command in spec.commands:
                return spec.commands[command][1](rest)
            if command == "bench":
                if spec.bench is None:
                    raise InputError(f"{spec.prog} has no benchmark yet")
                return spec.bench(rest)
            if command not in handlers:
                raise InputError(
                    f"unknown command {command!r}; choose one of {', '.join(COMMANDS)}"
                )
            if command != "train" and rest and rest[0] in ("-h", "--help"):
                _config_parser(spec, command, _usage(spec)).print_help()
                return 0
            return handlers[command](spec, rest, console)
        except (InputError, FileNotFoundError) as err:
            if debug:
                traceback.print_exc()
            print(f"{spec.prog} {command}: error: {err}", file=sys.stderr)
            return 2

    return main
