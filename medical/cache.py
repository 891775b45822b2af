"""The prepared folder as a cache: input signatures, manifest JSON, publishing, lock, ownership.

A prepared case is current when its input files (path, size, mtime_ns: :func:`input_signature`)
and the preparation settings (:func:`hash_settings`) are those its manifest entry records and
its files are all there (:func:`is_cached`). Crash safety: a case is written into a hidden
temporary folder and renamed into place (:func:`publish_folder`); leftovers of interrupted runs
are removed (:func:`clean_cases_dir`). One prepare at a time per folder (:func:`locked`), and
never into a folder holding someone else's files (:func:`check_output_folder`).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from shared.engine.io import InputError, atomic_write_json

from .data import Case

__all__ = [
    "CASE_FILES",
    "MANIFEST_FORMAT",
    "check_output_folder",
    "clean_cases_dir",
    "hash_settings",
    "input_signature",
    "is_cached",
    "json_text",
    "locked",
    "publish_folder",
    "read_json_or",
    "write_json_if_changed",
]

MANIFEST_FORMAT = "hybridvision.medical.prepared/1"
"""``format`` of ``out/dataset.json``: only a folder carrying it is ever written into again."""
CASE_FILES = ("image.npy", "label.npy", "meta.json")
"""What ``out/cases/<case>/`` holds when complete."""
OUR_NAMES = {
    "cases",
    "dataset.json",
    "fingerprint.json",
    "fingerprint_samples.npz",
    ".prepare.lock",
}
"""Everything prepare writes at the top of ``out``; anything else is someone else's file."""


def input_signature(case: Case) -> list[dict[str, Any]]:
    """Path, size and mtime_ns of every input file: a changed file changes the signature."""
    signature = []
    for path in case.files():
        stat = path.stat()
        signature.append(
            {"path": str(path.absolute()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        )
    return signature


def hash_settings(settings: dict[str, Any]) -> str:
    """Short stable hash of the preparation settings, the cache key beside the input files."""
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def json_text(data: Any) -> str:
    """The exact text ``atomic_write_json`` writes (compared to skip identical rewrites)."""
    return json.dumps(data, indent=2, sort_keys=False) + "\n"


def write_json_if_changed(path: Path, data: Any) -> bool:
    """Write only when the content differs, so a cached rerun touches no file."""
    try:
        if path.read_text(encoding="utf-8") == json_text(data):
            return False
    except (OSError, UnicodeDecodeError):
        pass
    atomic_write_json(path, data)
    return True


def read_json_or(path: Path, default: Any) -> Any:
    """Previous state (manifest, fingerprint); unreadable means "start afresh", never trust it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return default


def is_cached(entry: dict[str, Any] | None, inputs: Any, settings_hash: str, out: Path) -> bool:
    """Whether a manifest entry is current: same inputs and settings, all files present."""
    if not entry or entry.get("inputs") != inputs or entry.get("settings_hash") != settings_hash:
        return False
    return all((out / "cases" / entry["case"] / name).is_file() for name in CASE_FILES)


def publish_folder(tmp: Path, final: Path) -> None:
    """Move a complete case folder into place, replacing an older version of it."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
        os.rename(final, old)
    os.rename(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def clean_cases_dir(cases_dir: Path, case_ids: set[str]) -> None:
    """Remove temp/old folders of interrupted runs and folders of cases no longer in the data."""
    for path in cases_dir.iterdir():
        name = path.name
        leftover = name.startswith(".") and (".tmp-" in name or ".old-" in name)
        stale = not name.startswith(".") and name not in case_ids
        if path.is_dir() and (leftover or stale):
            shutil.rmtree(path, ignore_errors=True)


@contextmanager
def locked(out: Path) -> Iterator[None]:
    """One prepare at a time per output folder (flock is released even if the process dies)."""
    with open(out / ".prepare.lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(f"{out}: another prepare is writing this folder") from None
        yield


def check_output_folder(root: Path, out: Path) -> None:
    """Refuse to write into the dataset itself or into a folder holding someone else's files
    (prepare deletes stale folders under ``out/cases``)."""
    if out.resolve() == root.resolve():
        raise InputError(f"{out}: output folder must differ from the dataset folder")
    manifest = out / "dataset.json"
    if manifest.exists():
        if read_json_or(manifest, {}).get("format") != MANIFEST_FORMAT:
            raise InputError(f"{manifest}: not a prepared-dataset manifest; refusing to overwrite")
        return
    foreign = (
        sorted(p.name for p in out.iterdir() if p.name not in OUR_NAMES) if out.is_dir() else []
    )
    if foreign:
        raise InputError(
            f"{out}: not empty and not a prepared folder (holds {foreign[0]}); use a new folder"
        )
