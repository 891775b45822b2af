"""Shared pytest fixtures: deterministic seeds and small thread counts for CI's 2 cores."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
