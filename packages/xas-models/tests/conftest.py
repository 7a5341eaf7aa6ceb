"""Fixtures: a tiny model zoo (built here, without xas-train) and an isolated zoo environment."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from pymatgen.core import Lattice, Structure

os.environ.setdefault("HF_HUB_OFFLINE", "1")

GRIDS = {
    "Cu": {"start": 8975.0, "step": 0.5, "n_points": 40},
    "Ni": {"start": 8325.0, "step": 0.5, "n_points": 40},
}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tiny_checkpoint(folder: Path, seed: int, key: str, name: str, version: str, dim: int):
    from xas_models import CheckpointMeta, EnergyGrid, FeaturizerInfo, XASBlock, save_checkpoint

    torch.manual_seed(seed)
    model = XASBlock.from_config(
        {"input_dim": dim, "output_dim": 40, "hidden_widths": [16], "dropout": 0.1}
    )
    model.set_input_scaling(torch.randn(dim) * 0.1, torch.rand(dim) + 0.5)
    grids = {el: EnergyGrid(**g) for el, g in GRIDS.items()}
    meta = CheckpointMeta(
        energy_grid=grids["Cu"],
        energy_grids=grids,
        elements=["Cu", "Ni"],
        edge="K",
        fidelity="FEFF",
        featurizer=FeaturizerInfo(name=name, version=version, key=key),
        training_data={"dataset": "tiny"},
        metrics={"Cu/median_pearson": 0.9, "Ni/median_pearson": 0.8},
    )
    return save_checkpoint(folder, model, meta)


def _entry(zoo: Path, name: str, version: str, meta) -> dict:
    rel = f"{name}/{version}"
    folder = zoo / rel
    return {
        "name": name,
        "version": version,
        "architecture": meta.architecture,
        "task": "forward",
        "elements": meta.elements,
        "edge": meta.edge,
        "fidelity": meta.fidelity,
        "featurizer": meta.featurizer.model_dump(),
        "energy_grids": {el: g.model_dump() for el, g in meta.energy_grids.items()},
        "training_data": meta.training_data,
        "metrics": meta.metrics,
        "license": "BSD-3-Clause",
        "mlflow_run_id": None,
        "path": rel,
        "files": {p.name: _sha256(p) for p in sorted(folder.iterdir()) if p.is_file()},
        "published": "2026-01-01T00:00:00Z",
    }


@pytest.fixture(scope="session")
def chgnet_featurizer():
    """The real CHGNet featurizer (its network loads on the first featurize call)."""
    from xas_features import get_featurizer

    return get_featurizer("chgnet")


@pytest.fixture(scope="session")
def tiny_zoo_source(tmp_path_factory, chgnet_featurizer) -> Path:
    """A zoo folder in the publish format with tiny CHGNet-feature XAS-block models for Cu, Ni:

    - ``tiny-cuni`` 0.9.0 and 0.10.0 (different weights);
    - ``tiny-badkey`` 0.1.0 whose featurizer key is not the installed CHGNet's;
    - ``tiny-concat`` 0.1.0 on CHGNet features concatenated twice (key ``k+k``, 128 features).
    """
    from xas_features import feature_key

    key = feature_key(chgnet_featurizer)
    version = chgnet_featurizer.version
    zoo = tmp_path_factory.mktemp("zoo-src")
    models = [
        ("tiny-cuni", "0.9.0", 1, key, "chgnet", version, 64),
        ("tiny-cuni", "0.10.0", 2, key, "chgnet", version, 64),
        ("tiny-badkey", "0.1.0", 3, "chgnet-v0.0.1-model0.3.0-deadbeef", "chgnet", "0.0.1", 64),
        ("tiny-concat", "0.1.0", 4, f"{key}+{key}", "chgnet+chgnet", f"{version}+{version}", 128),
    ]
    entries = []
    for name, ver, seed, fkey, fname, fver, dim in models:
        meta = _tiny_checkpoint(zoo / name / ver, seed, fkey, fname, fver, dim)
        entries.append(_entry(zoo, name, ver, meta))
    index = {"schema_version": 1, "models": entries}
    (zoo / "index.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    return zoo


@pytest.fixture
def tiny_zoo(tiny_zoo_source, tmp_path) -> Path:
    """A private copy of the tiny zoo (tests may tamper with it)."""
    dest = tmp_path / "zoo"
    shutil.copytree(tiny_zoo_source, dest)
    return dest


@pytest.fixture(autouse=True)
def isolated_zoo_env(monkeypatch, tmp_path):
    """No local zoo, no zoo URL, and a private download cache, unless a test sets them."""
    monkeypatch.setenv("XAS_MODEL_ZOO", "")
    monkeypatch.delenv("XAS_MODEL_ZOO_URL", raising=False)
    monkeypatch.setenv("XAS_MODELS_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="session")
def structures() -> dict[str, Structure]:
    """CuO (tenorite, one Cu site x4), NiO (rocksalt, one Ni site x4) and a Ni3O4 spinel
    primitive cell (Ni sites of multiplicity 2 and 4)."""
    return {
        "cuo": Structure.from_spacegroup(
            "C2/c",
            Lattice.monoclinic(4.684, 3.423, 5.129, 99.54),
            ["Cu", "O"],
            [[0.25, 0.25, 0], [0, 0.4184, 0.25]],
        ),
        "nio": Structure.from_spacegroup(
            "Fm-3m", Lattice.cubic(4.177), ["Ni", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]
        ),
        "spinel": Structure.from_spacegroup(
            "Fd-3m",
            Lattice.cubic(8.3),
            ["Ni", "Ni", "O"],
            [[0, 0, 0], [0.625, 0.625, 0.625], [0.385, 0.385, 0.385]],
        ).get_primitive_structure(),
    }
