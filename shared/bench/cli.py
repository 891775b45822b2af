"""The ``python -m shared.bench`` command line: one subcommand per benchmark module."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import backbone, engine

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; each benchmark module adds its own subcommand."""
    parser = argparse.ArgumentParser(
        prog="python -m shared.bench",
        description="Benchmarks for hybridvision. Run from the repository root; CPU, fp32, "
        "random weights only. Each writes <name>.md, <name>.json and <name>.png.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    backbone.add_parser(commands)
    engine.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse ``argv`` (default ``sys.argv[1:]``) and run the subcommand."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if hasattr(args, "validate"):
        args.validate(parser, args)
    return args.handler(args, argv)
