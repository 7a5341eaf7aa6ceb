"""Fixtures for every test folder of the workspace (packages/*/tests, tests, benchmarks)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``$XAS_SHARED_DATA`` or ``../shared/data`` beside the repository; a test that needs it
    fails (not skips) under ``CI=true`` when it is missing."""
    env = os.environ.get("XAS_SHARED_DATA")
    path = Path(env) if env else Path(__file__).resolve().parent.parent / "shared" / "data"
    if not path.is_dir():
        message = f"shared data not found at {path}: set XAS_SHARED_DATA to the shared data folder"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path
