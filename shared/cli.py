"""CLI chassis: builds ``train``, ``evaluate``, ``predict``, ``bench`` and ``export`` for a task.

A vertical describes itself once in a :class:`TaskSpec`; :func:`build_cli` returns its ``main``.
Every config field is a flag (``--optim.lr 1e-4``), ``--config run.yaml`` loads a file (flags
after it win), ``--resume runs/<name>`` continues a run. A command that reads a run (``evaluate``,
``predict``, ``export``, ``--resume``) takes that run's ``config.yaml`` as the base and the flags
given now on top. Bad arguments or unreadable inputs exit with code 2 and one line on stderr;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import re
import shutil
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
    RunConfig,
    RunFolderConfig,
    TrainerConfig,
    plain_values,
    validate_common,
)
from .engine.contract import (
    Vertical,
    load_for_inference,
    plan_entry,
    read_checkpoint,
)
from .engine.io import (
    InputError,
    atomic_write,
    atomic_write_json,
    atomic_write_text,
    file_stem,
    load_state_dict_strict,
    sigterm_as_exit,
)
from .engine.module import HybridTask
from .engine.trainer import build_inference_trainer, fit, parse_devices, set_attention_precision

# RunConfig lives in the engine (nothing there may import this module); re-exported here so
# ``from shared.cli import RunConfig`` keeps working for the verticals.
__all__ = [
    "TaskSpec",
    "RunConfig",
    "build_cli",
    "PredictionFileWriter",
    "load_run",
    "OneLineArgumentParser",
    "parse_inference_command",
    "parse_task_command",
    "refuse_network_flags",
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
class TaskSpec:
    """What a vertical supplies to get its CLI.

    ``build(cfg, plan)`` returns the LightningModule and data module: ``plan`` is ``None`` when
    training (the task decides the plan from the data and stores it in its checkpoints) and a
    trained run's plan when evaluating (network and preprocessing as trained, only the data
    from ``cfg``). ``vertical`` is the task's inference contract
    (:class:`shared.engine.contract.Vertical`): every command that reads a checkpoint loads it
    through the contract, so another vertical's checkpoint is refused in one line.
    ``validate(cfg)`` raises
    :class:`InputError` for bad task values (e.g. a missing data folder) and for engine flags
    the task cannot honour (:func:`shared.engine.reject_regularization`). For prediction,
    ``predict_dataset(paths, cfg)`` yields dicts with ``image`` (one input, no batch axis) and
    ``path``, and ``write_prediction(output, source_path, out_path)`` writes one result to
    ``out_path`` (a temporary name the chassis renames); the output is named
    ``<input name without its type ending><prediction_suffix>``. ``example_input(plan)`` is a
    batch of two network inputs for ``export`` (the batch axis is exported dynamic).
    ``bench(argv)`` runs the task benchmark.
    """

    prog: str
    description: str
    data_config: type
    model_config: type
    build: Callable[[RunConfig, Any], tuple[HybridTask, pl.LightningDataModule]]
    headline: str
    vertical: Vertical
    mode: str = "max"
    validate: Callable[[RunConfig], None] | None = None
    predict_dataset: Callable[[list[Path], RunConfig], Dataset] | None = None
    write_prediction: Callable[[torch.Tensor, Path, Path], None] | None = None
    prediction_suffix: str = ".pt"
    example_input: Callable[[Any], torch.Tensor] | None = None
    bench: Callable[[list[str]], int] | None = None
    commands: dict[str, tuple[str, Callable[[list[str]], int]]] = field(default_factory=dict)
    """Extra or replacement subcommands: name -> (one-line help, main(argv) -> exit code)."""
    path_fields: tuple[str, ...] = ()
    """Dotted config keys that name files or folders (``"data.root"``): ``train`` stores them
    as absolute paths in the run's config.yaml, so commands that reread it (``evaluate``,
    ``export``) work from any folder."""
    defaults: dict[str, Any] = field(default_factory=dict)
    """Config defaults the task sets over the engine's, by dotted key (``{"optim.lr": 1e-3}``);
    config files and flags still override them."""


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
    if spec.defaults:
        parser.set_defaults(spec.defaults)
    return parser


def _to_run_config(spec: TaskSpec, parser: _Parser, ns: Namespace) -> RunConfig:
    init = (
        parser.instantiate(ns) if hasattr(parser, "instantiate") else parser.instantiate_classes(ns)
    )
    cfg = RunConfig(
        data=plain_values(init.data),
        model=plain_values(init.model),
        optim=plain_values(init.optim),
        trainer=plain_values(init.trainer),
        regularization=plain_values(init.regularization),
        run=plain_values(init.run),
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


def _peek_option(argv: list[str], *names: str) -> str | None:
    """The value of one option (``--x V`` or ``--x=V``), read before the full parse.

    The full parse needs the run's ``config.yaml`` as its base, and which run that is comes from
    this option (``--checkpoint``, ``--resume``); everything else is left to the full parser.
    """
    peek = OneLineArgumentParser(add_help=False, allow_abbrev=False)
    peek.add_argument(*names, dest="value", default=None)
    known, _ = peek.parse_known_args(argv)
    return known.value


def _parse(
    spec: TaskSpec, parser: _Parser, argv: list[str], base: Path | None = None
) -> tuple[Namespace, RunConfig]:
    """Parse ``argv`` on top of the config file ``base`` (when it exists); validate the result."""
    prefix = ["--config", str(base)] if base is not None and base.is_file() else []
    ns = parser.parse_args([*prefix, *argv])
    return ns, _to_run_config(spec, parser, ns)


def refuse_network_flags(argv: Sequence[str], command: str) -> None:
    """``InputError`` for a ``--model.*`` flag given to a command that reads a checkpoint.

    The network is rebuilt from the checkpoint's plan (the inference contract), so such a flag
    could not take effect; refusing it beats ignoring it.
    """
    for arg in argv:
        if arg.startswith("--model."):
            flag = arg.split("=", 1)[0]
            raise InputError(
                f"{flag}: {command} rebuilds the network the checkpoint was trained with (its "
                "plan); --model flags cannot change it"
            )


def _run_config_file(spec: TaskSpec, checkpoint: Path) -> Path:
    """``runs/<name>/config.yaml`` for ``runs/<name>/checkpoints/<file>.ckpt``.

    The checkpoint is checked against the task's vertical first (one line naming the file and
    what it is): another vertical's run config would otherwise fail to parse with a message
    about its keys.
    """
    read_checkpoint(checkpoint, spec.vertical)
    return checkpoint.parent.parent / "config.yaml"


def _checkpoint_option(parser: _Parser) -> None:
    parser.add_argument(
        "--checkpoint",
        type=str,
        default=None,
        help="a run's checkpoint, e.g. runs/<name>/checkpoints/best.ckpt; that run's config.yaml "
        "is the base configuration and flags given here override it",
    )


def _require_checkpoint(argv: list[str], command: str) -> Path:
    checkpoint = _peek_option(argv, "--checkpoint")
    if not checkpoint:
        raise InputError(f"{command} needs --checkpoint runs/<name>/checkpoints/best.ckpt")
    return Path(checkpoint)


def _train_parser(spec: TaskSpec) -> _Parser:
    parser = _config_parser(spec, "train", f"Train a {spec.prog} model into runs/<name>/.")
    parser.add_argument(
        "--resume",
        type=str,
        default=None,
        help="run folder to continue (its config.yaml is the base; flags given now override it)",
    )
    return parser


def _absolute_paths(spec: TaskSpec, ns: Namespace, cfg: RunConfig) -> None:
    """Rewrite the task's path fields that are set and relative as absolute, in both forms."""
    for key in spec.path_fields:
        value = ns.get(key)
        if value and not Path(value).is_absolute():
            absolute = str(Path(value).resolve())
            ns[key] = absolute
            group, name = key.split(".", 1)
            setattr(getattr(cfg, group), name, absolute)


def _train(spec: TaskSpec, argv: list[str], console: Console) -> int:
    parser = _train_parser(spec)
    resume = _peek_option(argv, "--resume")
    resume_dir = Path(resume) if resume else None
    if resume_dir is not None and not (resume_dir / "config.yaml").is_file():
        raise InputError(f"{resume_dir}: not a run folder (no config.yaml)")
    ns, cfg = _parse(spec, parser, argv, resume_dir / "config.yaml" if resume_dir else None)
    run_dir = resume_dir or cfg.run_dir
    # The folders a fresh run creates (run_dir, then missing parents): removed on a refusal.
    made = [] if resume_dir else [p for p in [run_dir, *run_dir.parents] if not p.exists()]
    if resume_dir is not None:
        cfg.run.runs_dir, cfg.run.name = str(resume_dir.parent), resume_dir.name
    elif rank_zero_only.rank == 0 and (run_dir / "checkpoints").exists() and not cfg.run.overwrite:
        raise InputError(
            f"{run_dir}: run folder already exists; continue it with --resume {run_dir}, "
            "pick another --run.name, or pass --run.overwrite true"
        )
    _absolute_paths(spec, ns, cfg)
    # Seed before building: weight initialisation must repeat too.
    pl.seed_everything(cfg.trainer.seed, workers=True, verbose=False)
    # Build before the run folder is written: bad data found while building (unreadable files,
    # clips smaller than the crop...) is refused without leaving a half-made run behind.
    module, datamodule = spec.build(cfg, None)
    if rank_zero_only.rank == 0:
        atomic_write_text(run_dir / "config.yaml", _dump_config(parser, ns))
    try:
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
    except InputError:
        # Bad data met while training (a chip of the validation split, a batch too small...)
        # before any checkpoint: the run folder this call made holds nothing worth keeping.
        checkpoints = run_dir / "checkpoints"
        if made and rank_zero_only.rank == 0 and not any(checkpoints.glob("*.ckpt")):
            shutil.rmtree(run_dir, ignore_errors=True)
            for parent in made[1:]:
                try:
                    parent.rmdir()
                except OSError:  # another run writes there too
                    break
        raise
    if trainer.is_global_zero:
        import json

        summary = json.loads((run_dir / "summary.json").read_text())
        final = {k: v for k, v in summary["final_metrics"].items() if k.startswith("val/")}
        _print_summary(console, f"{spec.prog} train: {run_dir}", final)
        if summary["best_value"] is None:  # no validation ran: say what the run did instead
            loss = summary["final_metrics"].get("train/loss_epoch")
            console.print(
                f"trained {summary['global_step']} steps in {summary['seconds_this_attempt']:.0f}"
                f" s, last epoch's train/loss {'n/a' if loss is None else f'{loss:.4g}'}; no "
                f"validation ran, so no {spec.headline}  ->  {run_dir}/"
            )
        else:
            console.print(f"best {spec.headline} = {summary['best_value']}  ->  {run_dir}/")
    return 0


def _restore(
    spec: TaskSpec, cfg: RunConfig, checkpoint: Path
) -> tuple[HybridTask, pl.LightningDataModule]:
    """The task built from ``cfg`` and the checkpoint's plan, with the checkpoint's weights.

    The checkpoint is read through the inference contract (another vertical's checkpoint is one
    line); precision settings are applied as in training.
    """
    state, plan = read_checkpoint(checkpoint, spec.vertical)
    module, datamodule = spec.build(cfg, plan)
    load_state_dict_strict(module, state["state_dict"], checkpoint)
    if cfg.trainer.precision != "32-true":  # as in training: attention stays fp32 if asked
        set_attention_precision(module, cfg.trainer.attention_fp32)
    return module, datamodule


def load_run(
    spec: TaskSpec, checkpoint: Path, argv: list[str], command: str
) -> tuple[RunConfig, HybridTask, pl.LightningDataModule]:
    """Config (the run's config.yaml, then ``argv``) and module with the checkpoint's weights.

    ``argv`` holds config flags only; for task commands with options of their own.
    """
    refuse_network_flags(argv, command)
    parser = _config_parser(spec, command, "")
    _, cfg = _parse(spec, parser, list(argv), _run_config_file(spec, checkpoint))
    return cfg, *_restore(spec, cfg, checkpoint)


def parse_task_command(
    spec: TaskSpec,
    command: str,
    description: str,
    argv: Sequence[str],
    add_arguments: Callable[[ArgumentParser], None],
    base: Path | None = None,
) -> tuple[Namespace, RunConfig]:
    """Parse a task command's own options and every config flag with one parser.

    For ``TaskSpec.commands`` that read a run: ``add_arguments(parser)`` adds the command's own
    arguments, ``base`` is the run's ``config.yaml`` (flags in ``argv`` win). One parser, so a
    config flag may come before or after the inputs without being misread as one.
    """
    parser = _config_parser(spec, command, description)
    add_arguments(parser)
    return _parse(spec, parser, list(argv), base)


def parse_inference_command(
    spec: TaskSpec,
    command: str,
    description: str,
    argv: Sequence[str],
    add_arguments: Callable[[ArgumentParser], None],
) -> tuple[Namespace, RunConfig]:
    """Parse a command that runs a checkpoint over inputs (predict, upscale).

    ``add_arguments`` adds the command's own options (it must add ``--checkpoint``). The run's
    ``config.yaml`` beside the checkpoint, when present, is the base and flags given now win;
    the task's data checks are skipped (the plan in the checkpoint is what inference needs, the
    training data may be gone) and ``--model.*`` flags are refused. ``--device cpu|cuda:N``,
    when the command adds it, becomes the trainer flags for one device.
    """
    refuse_network_flags(argv, command)
    checkpoint = _peek_option(list(argv), "--checkpoint")
    base = _run_config_file(spec, Path(checkpoint)) if checkpoint else None
    no_data_checks = dataclasses.replace(spec, validate=None)
    ns, cfg = parse_task_command(no_data_checks, command, description, argv, add_arguments, base)
    device = ns.get("device")
    if device not in (None, "auto"):
        _one_device(cfg.trainer, device)
    return ns, cfg


def _one_device(trainer: TrainerConfig, device: str) -> None:
    """``--device cpu`` / ``cuda`` / ``cuda:N``: one device, as the trainer flags would say it."""
    if device == "cpu":
        trainer.accelerator, trainer.devices = "cpu", "1"
    elif re.fullmatch(r"cuda(:\d+)?", device):
        trainer.accelerator = "gpu"
        trainer.devices = f"{device.partition(':')[2] or 0},"
    else:
        raise InputError(f"--device must be auto, cpu or cuda:N, got {device!r}")
    trainer.num_nodes, trainer.strategy = 1, "auto"


def _evaluate_parser(spec: TaskSpec) -> _Parser:
    parser = _config_parser(
        spec, "evaluate", "Score a checkpoint on the validation data; writes evaluation.json."
    )
    _checkpoint_option(parser)
    return parser


def _evaluate(spec: TaskSpec, argv: list[str], console: Console) -> int:
    checkpoint = _require_checkpoint(argv, "evaluate")
    refuse_network_flags(argv, "evaluate")
    _, cfg = _parse(spec, _evaluate_parser(spec), argv, _run_config_file(spec, checkpoint))
    module, datamodule = _restore(spec, cfg, checkpoint)
    trainer = build_inference_trainer(cfg.trainer)
    results = trainer.validate(module, datamodule=datamodule, verbose=False)[0]
    if trainer.is_global_zero:
        out = checkpoint.parent.parent / "evaluation.json"
        atomic_write_json(out, {"checkpoint": str(checkpoint), "metrics": results})
        _print_summary(console, f"{spec.prog} evaluate: {checkpoint}", results)
        console.print(f"written: {out}")
    return 0


class PredictionFileWriter(BasePredictionWriter):
    """Writes each prediction to ``out_dir/<input name><suffix>`` atomically, on every rank.

    The input name loses only its type ending (:func:`shared.engine.io.file_stem`), so
    ``a.b.tif`` and ``a.c.tif`` give ``a.b<suffix>`` and ``a.c<suffix>``. With DDP, Lightning's
    predict loop gives each rank a disjoint share of the inputs (no padding duplicates), so an
    archive of scans is one command spread over all devices.
    """

    def __init__(
        self, out_dir: Path, suffix: str, write: Callable[[torch.Tensor, Path, Path], None]
    ):
        super().__init__(write_interval="batch")
        self.out_dir = Path(out_dir)
        self.suffix = suffix
        self.write = write

    def target(self, source: Path) -> Path:
        """Where the prediction for ``source`` goes."""
        return self.out_dir / f"{file_stem(source)}{self.suffix}"

    def write_on_batch_end(
        self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0
    ) -> None:  # noqa: D102
        for output, source in zip(prediction, batch["path"], strict=True):
            source = Path(source)
            atomic_write(
                self.target(source), lambda tmp, o=output, s=source: self.write(o.cpu(), s, tmp)
            )


def _predict_parser(spec: TaskSpec) -> _Parser:
    parser = _config_parser(
        spec,
        "predict",
        "Run a checkpoint on input files or folders, one input at a time (inputs may differ in "
        f"size); writes OUT/<input name>{spec.prediction_suffix}.",
    )
    parser.add_argument("inputs", nargs="*", help="input files or folders (all files inside)")
    parser.add_argument("-o", "--out", type=str, default=None, help="output folder")
    _checkpoint_option(parser)
    return parser


def _input_files(inputs: list[Path]) -> list[Path]:
    """Files named by ``inputs``: files as given, folders by their files in name order."""
    if not inputs:
        raise InputError("predict needs at least one input file or folder")
    files: list[Path] = []
    for path in inputs:
        if not path.exists():
            raise InputError(f"{path}: input not found")
        files += sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    if not files:
        raise InputError(f"{', '.join(map(str, inputs))}: no input files")
    return files


def _check_targets(files: list[Path], writer: PredictionFileWriter) -> None:
    """Refuse outputs that would overwrite an input or each other."""
    inputs = {f.resolve() for f in files}
    seen: dict[Path, Path] = {}
    for file in files:
        target = writer.target(file).resolve()
        if target in inputs:
            raise InputError(
                f"{writer.out_dir}: output folder holds the inputs ({target.name} would be "
                "overwritten); choose another -o"
            )
        if target in seen:
            raise InputError(f"{seen[target]} and {file} would both write {target}")
        seen[target] = file


def _predict(spec: TaskSpec, argv: list[str], console: Console) -> int:
    if spec.predict_dataset is None or spec.write_prediction is None:
        raise InputError(f"{spec.prog} has no predict command yet")
    checkpoint = _require_checkpoint(argv, "predict")
    refuse_network_flags(argv, "predict")
    ns, cfg = _parse(spec, _predict_parser(spec), argv, _run_config_file(spec, checkpoint))
    if not ns.out:
        raise InputError("predict needs -o OUTPUT_DIR")
    files = _input_files([Path(p) for p in ns.inputs])
    writer = PredictionFileWriter(Path(ns.out), spec.prediction_suffix, spec.write_prediction)
    _check_targets(files, writer)
    module, _ = _restore(spec, cfg, checkpoint)
    # Batch 1: whole inputs may differ in size (default collate cannot stack them), and the
    # training batch size was chosen for crops, not for whole images or volumes.
    loader = DataLoader(
        spec.predict_dataset(files, cfg), batch_size=1, num_workers=cfg.trainer.num_workers
    )
    trainer = build_inference_trainer(cfg.trainer, [writer])
    trainer.predict(module, dataloaders=loader, return_predictions=False)
    if trainer.is_global_zero:
        console.print(f"{spec.prog} predict: {len(files)} inputs -> {writer.out_dir}/")
    return 0


def _export_parser(spec: TaskSpec) -> _Parser:
    parser = _Parser(
        prog=f"{spec.prog} export",
        description="Save a checkpoint's network as a torch.export program (.pt2) with a dynamic "
        f"batch axis; the run's plan goes inside as {EXPORT_PLAN_FILE} "
        f"(torch.export.load(path, extra_files={{'{EXPORT_PLAN_FILE}': ''}})). Needs only the "
        "checkpoint.",
        exit_on_error=False,
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    parser.add_argument("-o", "--out", type=str, default=None, help="output .pt2 file")
    _checkpoint_option(parser)
    return parser


EXPORT_PLAN_FILE = "hybridvision.json"
"""The plan entry (what :data:`shared.engine.contract.CHECKPOINT_KEY` holds) inside a .pt2."""


def _export(spec: TaskSpec, argv: list[str], console: Console) -> int:
    if spec.example_input is None:
        raise InputError(f"{spec.prog} has no export command yet")
    ns = _export_parser(spec).parse_args(argv)
    if not ns.checkpoint:
        raise InputError("export needs --checkpoint runs/<name>/checkpoints/best.ckpt")
    if not ns.out:
        raise InputError("export needs -o OUTPUT.pt2")
    checkpoint, target = Path(ns.checkpoint), Path(ns.out)
    if target.resolve() == checkpoint.resolve():
        raise InputError(f"{target}: the output would overwrite the checkpoint")
    network, plan = load_for_inference(checkpoint, spec.vertical)
    example = spec.example_input(plan)
    # A batch of two with a dynamic batch axis: an example of one would fix the batch size at 1.
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(network, (example,), dynamic_shapes=({0: batch},))
    extra = {EXPORT_PLAN_FILE: json.dumps(plan_entry(spec.vertical, plan))}
    atomic_write(target, lambda tmp: _save_program(program, tmp, extra))
    console.print(
        f"{spec.prog} export: torch.export program, input {tuple(example.shape[1:])} per item, "
        f"plan inside as {EXPORT_PLAN_FILE} -> {target}"
    )
    return 0


def _save_program(
    program: torch.export.ExportedProgram, path: Path, extra_files: dict[str, str]
) -> None:
    # Through a file object: given a path, torch warns that the temporary name lacks ".pt2".
    with open(path, "wb") as handle:
        torch.export.save(program, handle, extra_files=extra_files)


def _usage(spec: TaskSpec) -> str:
    lines = {
        "train": "train a model into runs/<name>/ (config.yaml, checkpoints, metrics, plots)",
        "evaluate": "score a checkpoint on the validation data: --checkpoint CKPT",
        "predict": "run a checkpoint on files or folders: INPUT... -o OUT --checkpoint CKPT",
        "bench": "the task benchmark (a command, prints a table)",
        "export": "the network as a torch.export program, from the checkpoint alone: -o OUT.pt2",
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
        # A kill (SIGTERM) unwinds like Ctrl-C, so no command leaves a temporary file behind.
        with sigterm_as_exit():
            return run(argv)

    def run(argv: Sequence[str] | None = None) -> int:
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
        parsers = {
            "train": _train_parser,
            "evaluate": _evaluate_parser,
            "predict": _predict_parser,
            "export": _export_parser,
        }
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
            if rest and rest[0] in ("-h", "--help"):
                parsers[command](spec).print_help()
                return 0
            return handlers[command](spec, rest, console)
        except (InputError, FileNotFoundError) as err:
            if debug:
                traceback.print_exc()
            # One line whatever the message holds (library errors quoted inside may have many).
            print(f"{spec.prog} {command}: error: {' '.join(str(err).split())}", file=sys.stderr)
            return 2

    return main
