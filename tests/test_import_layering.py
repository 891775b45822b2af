"""`import shared` (what timm registration of our presets needs) loads no training framework."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = (
    "lightning",
    "lightning.pytorch",
    "pytorch_lightning",
    "lightning_fabric",
    "jsonargparse",
)


def test_import_shared_does_not_import_lightning() -> None:
    # A fresh interpreter: in the test process other tests have long imported Lightning.
    code = (
        "import shared, sys, timm; "
        f"loaded = [m for m in {FORBIDDEN!r} if m in sys.modules]; "
        "assert not loaded, f'import shared imported {loaded}'; "
        "assert 'hybrid_tiny' in timm.list_models('hybrid_*')"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
