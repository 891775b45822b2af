"""Atomic file writes, safe checkpoint loading and the file-name rule for run folders.

Every file a run writes goes to a temporary file in the same folder and is renamed into place,
so an interrupted run never leaves a half-written ``summary.json``, config or plot.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import signal
import tempfile
import threading
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import yaml

__all__ = [
    "InputError",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "atomic_write_yaml",
    "file_stem",
    "load_checkpoint",
    "load_state_dict_strict",
    "sigterm_as_exit",
]


# File types whose ending has two parts: "scan.nii.gz" is the file "scan", not "scan.nii".
MULTI_PART_ENDINGS = (".nii.gz", ".ome.tif", ".ome.tiff")


class InputError(ValueError):
    """A user-facing problem with an input (file, folder, config value): CLIs exit with code 2."""


def file_stem(path: str | Path) -> str:
    """A file's name without its type ending: ``a.b.tif`` -> ``a.b``, ``scan.nii.gz`` -> ``scan``.

    The one rule for naming outputs after inputs (and cases after files): only the type ending
    goes, so ``a.b.tif`` and ``a.c.tif`` keep distinct names. Known two-part endings
    (:data:`MULTI_PART_ENDINGS`, any letter case) go whole; otherwise the last suffix goes.
    """
    name = Path(path).name
    lower = name.lower()
    for ending in MULTI_PART_ENDINGS:
        if lower.endswith(ending) and len(name) > len(ending):
            return name[: -len(ending)]
    return Path(name).stem


def _umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` then rename ``tmp_path`` onto ``path`` (same folder, atomic).

    Readers see the old file or the new one, never a half-written one. When ``write`` fails, the
    folders this call created for ``path`` are removed again (if still empty).
    """
    target = Path(path)
    created = [p for p in [target.parent, *target.parent.parents] if not p.exists()]
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        # mkstemp makes owner-only files; give the result the usual umask-based mode.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        for folder in created:  # innermost first
            try:
                folder.rmdir()
            except OSError:  # no longer empty: something else writes there now
                break
        raise
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _exit_on_sigterm(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """Within the block, SIGTERM raises ``SystemExit(143)`` instead of ending the process.

    Python's default SIGTERM ends the process without running ``finally`` blocks, so a ``kill``
    or a job scheduler's stop left the temporary files of :func:`atomic_write` and the video
    writers behind; as an exception it unwinds like Ctrl-C's ``KeyboardInterrupt`` and they are
    removed. Only the main thread may set signal handlers; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write bytes atomically."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write text atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_json(path: str | Path, data: Any) -> Path:
    """Write pretty JSON atomically (NaN written as ``NaN``, as Python's json does)."""
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def atomic_write_yaml(path: str | Path, data: Any) -> Path:
    """Write YAML atomically, keys in insertion order."""
    return atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; ``InputError`` naming the file if unusable."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: checkpoint not found")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        # One line, whatever torch says: its weights_only messages run over many lines.
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        if not zipfile.is_zipfile(path):  # torch.save has written zip archives since 1.6
            raise InputError(
                f"{path}: not a readable checkpoint (not a file written by torch.save, or cut "
                f"short): {first}"
            ) from None
        if isinstance(err, pickle.UnpicklingError):
            raise InputError(
                f"{path}: refused to load: it holds Python objects that weights_only=True does "
                "not load (only tensors and plain types are trusted)"
            ) from None
        raise InputError(
            f"{path}: not a readable checkpoint (truncated or corrupt): {first}"
        ) from None
    if not isinstance(checkpoint, dict):
        raise InputError(
            f"{path}: expected a checkpoint dictionary, got {type(checkpoint).__name__}"
        )
    return checkpoint


def load_state_dict_strict(
    model: torch.nn.Module, state_dict: dict[str, torch.Tensor], source: str | Path
) -> None:
    """Load weights, turning a key or shape mismatch into an ``InputError`` naming ``source``."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    wrong_shape = [
        k for k in expected if k in state_dict and state_dict[k].shape != expected[k].shape
    ]
    if missing or unexpected or wrong_shape:
        details = []
        if missing:
            details.append(f"{len(missing)} missing keys (e.g. {missing[0]})")
        if unexpected:
            details.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})")
        if wrong_shape:
            details.append(f"{len(wrong_shape)} shape mismatches (e.g. {wrong_shape[0]})")
        raise InputError(
            f"{source}: checkpoint is for a different architecture: " + "; ".join(details)
        )
    model.load_state_dict(state_dict)
