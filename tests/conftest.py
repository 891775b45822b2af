"""Shared pytest fixtures: deterministic seeds and small thread counts for CI's 2 cores."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


# Tiny trained runs shared by the error-contract tables (tests/test_errors_*.py): each table
# needs its own vertical's checkpoint and another vertical's (wrong-checkpoint rows).


@pytest.fixture(scope="session")
def med_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Paths of a prepared phantom dataset and a one-step hv-med run (``ckpt``, ``run``...)."""
    from .errors_helpers import make_med_run

    return make_med_run(tmp_path_factory.mktemp("med_run"))


@pytest.fixture(scope="session")
def rs_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Paths of a EuroSAT-layout folder and a one-step hv-rs run."""
    from .errors_helpers import make_rs_run

    return make_rs_run(tmp_path_factory.mktemp("rs_run"))


@pytest.fixture(scope="session")
def vsr_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Paths of two tiny clips and a one-step hv-vsr run."""
    from .errors_helpers import make_vsr_run

    return make_vsr_run(tmp_path_factory.mktemp("vsr_run"))
