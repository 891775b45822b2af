"""The child process of a product benchmark: ``python shared/bench/child.py <run>/job.json``.

Runs the job's ``entry`` (``module:function``, the vertical's train-then-evaluate code) and writes
``result.json`` beside the job: ``{"metrics": {name: number or null}, "info": {...}}``. On any
error, the traceback goes to the log (stdout/stderr) and ``error.json`` holds one line for the
report; the exit status is 1.

Started by path, not ``-m``: importing ``shared`` (torch and every block) first would cost each
child seconds before its own module, and an import error in the job's module would then escape
the one-line report. So this file imports only the standard library, and writes its two files
with its own temp-file-and-rename instead of :func:`shared.engine.io.atomic_write_json`.
"""

from __future__ import annotations

import importlib
import json
import math
import numbers
import os
import sys
import traceback
from pathlib import Path
from typing import Any

ERROR_CHARS = 300


def jsonable_metrics(metrics: dict[str, Any]) -> dict[str, float | None]:
    """Numbers as JSON floats; NaN, infinities and non-numbers become null (counted as NaN)."""
    def number(value: Any) -> float | None:
        # numbers.Real: numpy's scalars too (a float32 Dice must not turn into a missing value).
        real = isinstance(value, numbers.Real) and not isinstance(value, bool)
        return float(value) if real and math.isfinite(value) else None

    return {str(key): number(value) for key, value in metrics.items()}


def one_line(error: BaseException) -> str:
    """``Type: first line of the message``, at most :data:`ERROR_CHARS` characters."""
    lines = str(error).strip().splitlines() or [""]
    return f"{type(error).__name__}: {lines[0]}"[:ERROR_CHARS]


def _write_json(path: Path, data: Any) -> None:
    """Write, then rename: a reader never sees half a file."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(temporary, path)


def main(job_file: str) -> int:
    """Run one job; 0 when ``result.json`` was written, 1 when ``error.json`` was."""
    job_path = Path(job_file)
    job = json.loads(job_path.read_text())
    try:
        module, function = job["entry"].split(":")
        result = getattr(importlib.import_module(module), function)(job)
        output = {"metrics": jsonable_metrics(result["metrics"]), "info": result.get("info", {})}
    except (Exception, SystemExit) as error:  # a CLI's SystemExit is a failed run too
        traceback.print_exc()
        _write_json(job_path.with_name("error.json"), {"error": one_line(error)})
        return 1
    _write_json(job_path.with_name("result.json"), output)
    return 0


if __name__ == "__main__":
    # Started by path, sys.path[0] is this folder: its modules (report, cli...) must not shadow
    # top-level ones. The job's modules are found from the working directory, as with -m.
    sys.path[0] = os.getcwd()
    sys.exit(main(sys.argv[1]))
