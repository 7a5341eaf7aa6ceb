"""Fixtures: a toy store whose spectra are a smooth function of the site features, and a
helper writing run configs around it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from pymatgen.core import Lattice, Structure

from xas_data.store import XASDataset

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

TOY_DIM = 8
TOY_POINTS = 40


def toy_spectra(x: np.ndarray, energy: np.ndarray) -> np.ndarray:
    """Edge position, edge width and a white-line peak set by the first three features."""
    e = (energy - energy[0]) / (energy[-1] - energy[0])  # 0..1
    e0 = 0.35 + 0.1 * np.tanh(x[:, :1])
    width = 0.03 + 0.01 * (1 + np.tanh(x[:, 1:2]))
    peak = 0.6 + 0.3 * np.tanh(x[:, 2:3])
    edge = 1 / (1 + np.exp(-(e - e0) / width))
    white = peak * np.exp(-(((e - e0 - 0.08) / 0.05) ** 2))
    return (edge + white).astype(np.float32)


def make_toy_store(path: Path, n_per_element: int = 60, seed: int = 0) -> Path:
    """Cu and Ni FEFF groups plus Cu VASP, one site per material, 70/15/15 split by material,
    features ``toy`` (8 dims) from which the spectra follow exactly."""
    rng = np.random.default_rng(seed)
    ds = XASDataset.create(path, "toy", chunk_rows=16)
    elements = {"Cu": 8983.0, "Ni": 8333.0}
    ids, structures = [], []
    for element in elements:
        for i in range(n_per_element):
            a = 3.5 + 0.01 * i
            ids.append(f"mp-{element.lower()}{i:03d}")
            structures.append(
                Structure(Lattice.cubic(a), [element, "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
            )
    ds.add_materials(ids, structures, ["toy"] * len(ids))
    xs = []
    for k, (element, start) in enumerate(elements.items()):
        energy = start + 0.5 * np.arange(TOY_POINTS)
        x = rng.normal(size=(n_per_element, TOY_DIM)).astype(np.float32)
        x[:, 3] = k  # element flag, so one network can tell the elements apart
        mids = ids[k * n_per_element : (k + 1) * n_per_element]
        splits = np.array(["train"] * n_per_element, dtype=object)
        splits[int(0.7 * n_per_element) : int(0.85 * n_per_element)] = "val"
        splits[int(0.85 * n_per_element) :] = "test"
        ds.append_spectra(
            element,
            "FEFF",
            energy,
            mids,
            [0] * n_per_element,
            toy_spectra(x, energy),
            splits=list(splits),
        )
        xs.append(x)
        if element == "Cu":  # a second, "higher" fidelity: sharper and shifted spectra
            ds.append_spectra(
                element,
                "VASP",
                energy,
                mids,
                [0] * n_per_element,
                1.1 * toy_spectra(x + 0.2, energy),
                splits=list(splits),
            )
            xs.append(x)
    values = ds.create_features(
        "toy-v1-0000", TOY_DIM, attrs={"featurizer": "toy", "version": "1", "complete": True}
    )
    values[:] = np.concatenate(xs)
    return path


@pytest.fixture(scope="session")
def toy_store(tmp_path_factory) -> Path:
    return make_toy_store(tmp_path_factory.mktemp("toy") / "toy.zarr")


def config_writer(folder: Path, toy_store: Path):
    """``write(name, replace=(), **sections)`` -> path of a YAML config on the toy store in
    ``folder`` (runs under ``folder / "runs"``); sections are merged into the defaults, except
    those named in ``replace``."""

    def write(name: str = "run", replace: tuple[str, ...] = (), **sections) -> Path:
        config = {
            "name": name,
            "recipe": "expert",
            "data": {
                "dataset": str(toy_store),
                "features": ["toy"],
                "elements": ["Cu"],
                "fidelity": "FEFF",
            },
            "model": {"hidden_widths": [32, 32], "dropout": 0.1},
            "training": {
                "lr": 3e-3,
                "batch_size": 16,
                "max_epochs": 30,
                "patience": 100,
                "checkpoint_every": 0,
            },
            "mlflow": {"enabled": False},
            "output_dir": str(folder / "runs"),
        }
        for key, value in sections.items():
            if isinstance(value, dict) and isinstance(config.get(key), dict) and key not in replace:
                config[key] = {**config[key], **value}
            else:
                config[key] = value
        path = folder / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config))
        return path

    return write


@pytest.fixture
def write_config(tmp_path, toy_store):
    """``write_config(name, replace=(), **sections)`` -> path of a YAML config on the toy store;
    sections are merged into the defaults, except those named in ``replace``."""
    return config_writer(tmp_path, toy_store)


@pytest.fixture(scope="module")
def module_write_config(tmp_path_factory, toy_store):
    """``write_config`` for module-scoped fixtures (a run shared by the tests of a module)."""
    return config_writer(tmp_path_factory.mktemp("module-runs"), toy_store)


@pytest.fixture
def subprocess_env() -> dict[str, str]:
    """The environment for launching trainers: no inherited process-group variables."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {
            "RANK",
            "WORLD_SIZE",
            "LOCAL_RANK",
            "LOCAL_WORLD_SIZE",
            "MASTER_ADDR",
            "MASTER_PORT",
            "GROUP_RANK",
            "ROLE_RANK",
            "TORCHELASTIC_RUN_ID",
        }
    }
    env["OMP_NUM_THREADS"] = "1"
    env["HF_HUB_OFFLINE"] = "1"
    return env
