"""Cross-package checks: every member imports, has its own version, and dependencies point
one way (xas-data <- xas-features <- xas-models <- xas-train; xas-eval -> xas-data)."""

from __future__ import annotations

import importlib
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["xas-data", "xas-features", "xas-models", "xas-train", "xas-eval"]
ALLOWED = {
    "xas-data": set(),
    "xas-features": {"xas-data"},
    "xas-models": {"xas-data", "xas-features"},
    "xas-train": {"xas-data", "xas-features", "xas-models", "xas-eval"},
    "xas-eval": {"xas-data", "xas-features", "xas-models"},
}


def _project(name: str) -> dict:
    return tomllib.loads((ROOT / "packages" / name / "pyproject.toml").read_text())["project"]


@pytest.mark.parametrize("name", PACKAGES)
def test_member_metadata_and_import(name):
    project = _project(name)
    module = importlib.import_module(name.replace("-", "_"))
    assert module.__version__ == project["version"]
    assert project["license"] and project["readme"] == "README.md"
    assert (ROOT / "packages" / name / "README.md").stat().st_size > 100


@pytest.mark.parametrize("name", PACKAGES)
def test_dependencies_point_one_way_with_version_ranges(name):
    deps = _project(name)["dependencies"]
    siblings = {}
    for dep in deps:
        match = re.match(r"(xas-[a-z]+)(.*)", dep)
        if match:
            siblings[match.group(1)] = match.group(2)
    assert set(siblings) <= ALLOWED[name], (
        f"{name} may not depend on {set(siblings) - ALLOWED[name]}"
    )
    for sibling, spec in siblings.items():
        assert ">=" in spec and "<" in spec, f"{name} -> {sibling} needs a version range"
