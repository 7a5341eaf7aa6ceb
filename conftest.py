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


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """A running single-node Slurm (``tests/support/xas_slurm.py``): found running, or started
    with ``../shared/tools/slurm-single-node.sh start`` and then stopped after the session.
    Skipped without root or the script, except under ``CI=true`` (then it fails)."""
    from xas_slurm import SlurmCluster

    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm-cluster"))
    try:
        yield cluster.ensure_started()
    finally:
        cluster.stop()


def pytest_collection_modifyitems(config, items):
    """Tests on the real Slurm run last (in their order), so the cluster they start is up for
    as short a time as possible and no other test sees it."""
    items.sort(key=lambda item: "slurm_cluster" in getattr(item, "fixturenames", ()))
