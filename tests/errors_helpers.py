"""The error-contract tables' one helper: run a CLI on a bad invocation and check the refusal.

The README promises that a flag a task cannot honour is refused and that bad arguments exit 2
with one line. Each table (``tests/test_errors_{med,rs,vsr}.py``) lists :class:`Bad` rows;
:func:`check_refusal` runs one (in this process, or in a fresh ``python -m`` process when the
row asks) and asserts: exit code 2, exactly one stderr line, that line names the file or flag
at fault, no traceback anywhere, and no output written (the ``-o`` target, the run folder and
any other watched path are exactly as before the call).
"""

from __future__ import annotations

import importlib
import os
import shlex
import subprocess
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Bad:
    """One bad invocation.

    ``argv`` and the other texts are ``str.format`` templates over the table's paths (e.g.
    ``{ckpt}``) plus ``{out}`` and ``{runs}``: fresh, not yet existing paths of this row, to be
    used as ``-o`` target and ``--run.runs_dir``; both are always watched.
    """

    id: str
    argv: str
    names: str
    """Text the one error line must contain: the flag (``data.patch``) or file at fault."""
    watch: tuple[str, ...] = ()
    """Further paths that must be left exactly as they were (inputs, prepared folders)."""
    subprocess: bool = False
    """Run as ``python -m <cli>``: checks the real exit status and everything on stderr."""
    xfail: str | None = None
    """Reason, for a row the code does not meet yet (strict: it fails once the code does)."""


def rows(table: list[Bad]) -> list:
    """``pytest.param`` per row, with its id and (strict) xfail mark."""
    params = []
    for row in table:
        marks = [pytest.mark.xfail(strict=True, reason=row.xfail)] if row.xfail else []
        params.append(pytest.param(row, id=row.id, marks=marks))
    return params


@dataclass
class Outcome:
    """What a CLI call left: its exit code (``None`` if it raised), stdout and stderr."""

    code: int | None
    out: str
    err: str = field(repr=False)


def run_cli(module: str, argv: list[str], capfd: pytest.CaptureFixture, fresh: bool) -> Outcome:
    """``module.main(argv)`` in this process, or ``python -m module argv`` when ``fresh``.

    In this process, an exception escaping ``main`` is recorded with its traceback in ``err``
    (so the checks report it) instead of failing the test at the call.
    """
    if fresh:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        done = subprocess.run([sys.executable, "-m", module, *argv], capture_output=True,
                              text=True, env=env, cwd=ROOT, timeout=300)  # fmt: skip
        return Outcome(done.returncode, done.stdout, done.stderr)
    capfd.readouterr()
    try:
        code = importlib.import_module(module).main(argv)
    except BaseException:  # noqa: BLE001 - SystemExit and all: the contract forbids each
        code, extra = None, traceback.format_exc()
    else:
        extra = ""
    captured = capfd.readouterr()
    return Outcome(code, captured.out, captured.err + extra)


def snapshot(path: Path) -> object:
    """A comparable picture of ``path``: absent, a file's size and time, or a folder's tree."""
    if not path.exists():
        return None
    if path.is_file():
        stat = path.stat()
        return ("file", stat.st_size, stat.st_mtime_ns)
    return sorted(
        (str(p.relative_to(path)), p.is_dir(), p.stat().st_size if p.is_file() else 0,
         p.stat().st_mtime_ns if p.is_file() else 0)
        for p in path.rglob("*")
    )  # fmt: skip


def check_refusal(module: str, row: Bad, paths: dict[str, str], tmp_path: Path,
                  capfd: pytest.CaptureFixture) -> None:  # fmt: skip
    """Run ``row`` against ``module``'s CLI and assert the error contract (module docstring)."""
    values = {**paths, "out": str(tmp_path / "out"), "runs": str(tmp_path / "runs")}
    argv = shlex.split(row.argv.format(**values))
    watched = [Path(values["out"]), Path(values["runs"]),
               *(Path(w.format(**values)) for w in row.watch)]  # fmt: skip
    before = [snapshot(p) for p in watched]
    outcome = run_cli(module, argv, capfd, row.subprocess)
    everything = outcome.out + outcome.err
    assert "Traceback" not in everything, everything
    assert outcome.code == 2, f"exit {outcome.code}: {everything[-2000:]}"
    lines = outcome.err.strip().splitlines()
    assert len(lines) == 1, f"{len(lines)} stderr lines:\n{outcome.err}"
    assert row.names.format(**values) in lines[0], lines[0]
    for path, old in zip(watched, before, strict=True):
        assert snapshot(path) == old, f"{path} was created or changed by a refused call"


# --------------------------------------------------------------------------------------------
# One tiny trained run per vertical (session fixtures in tests/conftest.py): the checkpoints
# the predict/upscale rows need, and the other verticals' checkpoints for wrong-vertical rows.
# --------------------------------------------------------------------------------------------

QUIET = ["--trainer.progress", "false", "--trainer.max_steps", "1", "--trainer.max_epochs", "1",
         "--trainer.accelerator", "cpu"]  # fmt: skip


def make_med_run(root: Path) -> dict[str, str]:
    """A 2-case phantom dataset (MSD layout), prepared, and a one-step hv-med run on it."""
    from medical.cli import main
    from medical.phantom import PhantomConfig, write_phantom_dataset

    raw = write_phantom_dataset(root / "Phantoms", num_cases=2,
                                cfg=PhantomConfig(shape=(32, 32, 16), spacing=(1.0, 1.0, 2.0)))
    prepared = root / "prepared"
    assert main(["prepare", str(raw), "-o", str(prepared), "--workers", "1"]) == 0
    assert main(["train", "--data.prepared", str(prepared), "--data.patch_size", "[32, 32, 32]",
                 "--data.samples_per_case", "1", "--trainer.batch_size", "1", *QUIET,
                 "--run.runs_dir", str(root / "runs"), "--run.name", "med"]) == 0  # fmt: skip
    run = root / "runs" / "med"
    return {"raw": str(raw), "prepared": str(prepared), "run": str(run),
            "ckpt": str(run / "checkpoints" / "last.ckpt")}  # fmt: skip


def make_rs_run(root: Path) -> dict[str, str]:
    """A 4-band EuroSAT-layout folder (3 classes x 4 chips of 16 px) and a one-step hv-rs run."""
    from remote_sensing.cli import main

    from .remote_sensing.conftest import make_eurosat

    data = make_eurosat(root / "eurosat", 4, per_class=4, size=16)
    assert main(["train", "--data.root", str(data), "--data.chip_size", "16",
                 "--trainer.batch_size", "2", "--trainer.limit_val_batches", "1", *QUIET,
                 "--run.runs_dir", str(root / "runs"), "--run.name", "rs"]) == 0  # fmt: skip
    run = root / "runs" / "rs"
    return {"data": str(data), "run": str(run), "ckpt": str(run / "checkpoints" / "last.ckpt")}


def make_vsr_run(root: Path) -> dict[str, str]:
    """Two 32x32 GT-only clips (4 and 3 frames) and a one-step x4 hv-vsr run (vsr_tiny, T=3)."""
    from video_sr.cli import main

    from .video_sr.conftest import moving_frames, write_clip

    data = root / "clips"
    write_clip(data / "a", moving_frames(4, 32, 32, 0))
    write_clip(data / "b", moving_frames(3, 32, 32, 1))
    assert main(["train", "--data.root", str(data), "--data.patch", "8", "--data.num_frames", "3",
                 "--data.tile", "0", "--model.preset", "vsr_tiny", "--trainer.batch_size", "2",
                 *QUIET, "--run.runs_dir", str(root / "runs"),
                 "--run.name", "vsr"]) == 0  # fmt: skip
    run = root / "runs" / "vsr"
    return {"data": str(data), "run": str(run), "ckpt": str(run / "checkpoints" / "last.ckpt")}


def truncate(source: Path, target: Path, keep: float = 0.5) -> Path:
    """A copy of ``source`` cut to ``keep`` of its bytes (a download that stopped)."""
    data = source.read_bytes()
    target.write_bytes(data[: int(len(data) * keep)])
    return target
