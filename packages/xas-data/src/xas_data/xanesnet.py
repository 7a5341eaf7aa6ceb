"""Ingest XANESNET data (molecular complexes, FDMNES K-edge spectra) into a store.

Two layouts are read:

* the npz/json form (``../shared/data/xanesnet-fe``): ``spectra.npz`` with ``name``,
  ``energy_preconv``/``mu_preconv`` (convolved, the target) and optionally
  ``energy_raw``/``mu_raw``, plus ``structures_xyz.json`` ({name: xyz text});
* XANESNET's folder layout: ``xyz/<name>.xyz`` and ``xanes/<name>.txt`` (FDMNES output: two
  header lines, then ``energy mu`` columns), either directly in the folder or in its
  ``train/`` and ``test/`` subfolders (the ``test/`` molecules get the split ``test``).

The first atom of every xyz is the absorber. Molecules are stored as pymatgen ``Molecule``
(no lattice), spectra on their own grid as fidelity ``FDMNES``; materials without a given
split are split 90/10 train/val by material. A molecule whose xyz or spectrum is bad (absorber
not first, wrong atom count, unknown element, overlapping atoms, grid mismatch) is skipped with
a one-line reason, listed in the store's provenance (``rejected``) and in the returned report.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xas_data import curation
from xas_data.build import GroupData, write_store
from xas_data.errors import XASDataError
from xas_data.molecules import parse_xyz
from xas_data.splits import greedy_material_split
from xas_data.store import XASDataset

XANESNET_LICENSE = "GPL-3.0 (XANESNET training data, NewcastleRSE/XANESNET)"
FIDELITY = "FDMNES"
SPLIT_FRACTIONS = (0.9, 0.1, 0.0)


@dataclass
class MoleculeSpectra:
    """Readable molecules with their spectra, and the ones that failed (name -> reason)."""

    names: list[str] = field(default_factory=list)
    molecules: list = field(default_factory=list)
    energy: np.ndarray | None = None  # eV [K]
    intensity: list[np.ndarray] = field(default_factory=list)  # each [K]
    splits: dict[str, str] = field(default_factory=dict)  # name -> given split (folder test/)
    raw_energy: np.ndarray | None = None  # eV [R]
    raw: list[np.ndarray] = field(default_factory=list)  # each [R]
    rejected: dict[str, str] = field(default_factory=dict)

    def add(self, name, molecule, spectrum, raw=None) -> None:
        self.names.append(name)
        self.molecules.append(molecule)
        self.intensity.append(np.asarray(spectrum, dtype=np.float32))
        if raw is not None:
            self.raw.append(np.asarray(raw, dtype=np.float32))


def _check_spectrum(mu: np.ndarray, name: str) -> None:
    if not np.all(np.isfinite(mu)):
        raise XASDataError(f"{name}: the spectrum holds NaN or infinite values; recompute it")


def read_npz_form(folder: str | Path, absorber: str = "Fe") -> MoleculeSpectra:
    """Molecules and spectra of the npz/json form (see the module docstring)."""
    folder = Path(folder)
    npz, xyz_json = folder / "spectra.npz", folder / "structures_xyz.json"
    for path in (npz, xyz_json):
        if not path.is_file():
            raise XASDataError(
                f"{path}: missing; point to a folder with spectra.npz and structures_xyz.json "
                "(e.g. ../shared/data/xanesnet-fe) or to XANESNET's xyz/ + xanes/ folders"
            )
    data = np.load(npz)
    texts = json.loads(xyz_json.read_text())
    out = MoleculeSpectra(energy=np.asarray(data["energy_preconv"], dtype=np.float64))
    has_raw = "mu_raw" in data.files
    if has_raw:
        out.raw_energy = np.asarray(data["energy_raw"], dtype=np.float64)
    mu, raw = data["mu_preconv"], data["mu_raw"] if has_raw else None
    for i, name in enumerate(data["name"].astype(str)):
        try:
            if name not in texts:
                raise XASDataError(f"{name}: no xyz in structures_xyz.json; add it or drop it")
            molecule = parse_xyz(texts[name], name, absorber)
            _check_spectrum(mu[i], name)
            out.add(name, molecule, mu[i], None if raw is None else raw[i])
        except XASDataError as exc:
            out.rejected[name] = str(exc)
    return out


def read_fdmnes_spectrum(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(energy eV [K], mu [K]) from an FDMNES/XANESNET text file: leading non-numeric header
    lines are skipped, then the first two columns are read."""
    path = Path(path)
    rows = []
    for line in path.read_text(errors="replace").splitlines():
        parts = line.split()
        try:
            values = [float(v) for v in parts[:2]]
        except ValueError:
            if rows:
                raise XASDataError(f"{path}: non-numeric line {line!r} inside the data") from None
            continue
        if len(values) == 2:
            rows.append(values)
    if len(rows) < 2:
        raise XASDataError(f"{path}: no 'energy mu' columns found; give an FDMNES spectrum")
    energy, mu = np.asarray(rows, dtype=np.float64).T
    if np.any(np.diff(energy) <= 0):
        raise XASDataError(f"{path}: energies are not increasing; sort the spectrum")
    return energy, mu


def _folder_parts(folder: Path) -> list[tuple[Path, str]]:
    parts = [(folder / s, s) for s in ("train", "test") if (folder / s / "xyz").is_dir()]
    if parts:
        return parts
    if (folder / "xyz").is_dir():
        return [(folder, "")]
    raise XASDataError(
        f"{folder}: no xyz/ folder (nor train/xyz, test/xyz); XANESNET's layout is "
        "xyz/<name>.xyz + xanes/<name>.txt"
    )


def read_folder_form(folder: str | Path, absorber: str = "Fe") -> MoleculeSpectra:
    """Molecules and spectra of XANESNET's folder layout (see the module docstring)."""
    folder = Path(folder)
    out = MoleculeSpectra()
    for base, split in _folder_parts(folder):
        for xyz in sorted((base / "xyz").glob("*.xyz")):
            name = xyz.stem
            try:
                spectrum = base / "xanes" / f"{name}.txt"
                if not spectrum.is_file():
                    raise XASDataError(f"{name}: no spectrum {spectrum}; add it or drop the xyz")
                molecule = parse_xyz(xyz.read_text(errors="replace"), str(xyz), absorber)
                energy, mu = read_fdmnes_spectrum(spectrum)
                _check_spectrum(mu, str(spectrum))
                if out.energy is None:
                    out.energy = energy
                elif energy.shape != out.energy.shape or not np.allclose(energy, out.energy):
                    raise XASDataError(
                        f"{spectrum}: its grid ({energy[0]:g}..{energy[-1]:g} eV, {energy.size} "
                        f"points) differs from the first one ({out.energy.size} points); "
                        "interpolate it onto the common grid"
                    )
                out.add(name, molecule, mu)
                if split == "test":
                    out.splits[name] = split
            except XASDataError as exc:
                out.rejected[name] = str(exc)
    return out


def read_xanesnet(path: str | Path, absorber: str = "Fe") -> MoleculeSpectra:
    """The npz/json form when ``path`` holds ``spectra.npz``, else the folder layout."""
    path = Path(path)
    if (path / "spectra.npz").is_file():
        return read_npz_form(path, absorber)
    return read_folder_form(path, absorber)


def _groups(data: MoleculeSpectra) -> list[GroupData]:
    by_element = defaultdict(list)
    for i, molecule in enumerate(data.molecules):
        by_element[molecule[0].specie.symbol].append(i)
    groups = []
    for element, rows in sorted(by_element.items()):
        extras = {"mu_raw": np.stack([data.raw[i] for i in rows])} if data.raw else {}
        groups.append(
            GroupData(
                element,
                FIDELITY,
                [data.names[i] for i in rows],
                [0] * len(rows),
                [1] * len(rows),
                data.energy,
                np.stack([data.intensity[i] for i in rows]),
                extras,
            )
        )
    return groups


def ingest_xanesnet(
    path: str | Path,
    out: str | Path,
    absorber: str = "Fe",
    seed: int = 42,
    overwrite: bool = False,
) -> tuple[XASDataset, dict[str, str]]:
    """Store XANESNET molecules and FDMNES spectra; returns (store, {name: reason rejected}).

    Raises ``XASDataError`` when no molecule at all could be read.
    """
    data = read_xanesnet(path, absorber)
    if not data.names:
        first = next(iter(data.rejected.values()), "no xyz files")
        raise XASDataError(f"{path}: no molecule could be stored ({first})")
    groups = _groups(data)
    n_in = len(data.names) + len(data.rejected)
    records = [
        curation.record_step(
            "read_xanesnet",
            {
                "target": "convolved FDMNES spectrum (mu_preconv), own grid",
                "raw_grid_eV": None if data.raw_energy is None else data.raw_energy.tolist(),
                "absorber": "first atom of each xyz",
                "rejected": data.rejected,
            },
            n_in,
            len(data.names),
            0.0,
        ).to_dict()
    ]
    structures = {n: (m, f"xanesnet:{n}") for n, m in zip(data.names, data.molecules, strict=True)}
    write_store(
        groups,
        structures,
        out,
        "xanesnet-fe",
        records,
        split_fractions=SPLIT_FRACTIONS,
        seed=seed,
        license=XANESNET_LICENSE,
        description="XANESNET Fe K-edge FDMNES spectra of Fe molecular complexes (molecules)",
        source={
            "kind": "XANESNET training set (molecules, FDMNES)",
            "path": str(Path(path).resolve()),
            "license": XANESNET_LICENSE,
            "structures": "pymatgen Molecule (non-periodic, no lattice)",
        },
        overwrite=overwrite,
    )
    if data.splits:
        ds = XASDataset.open(out, mode="a")
        cols = ds.sites(columns=("material", "split"))
        names = ds.material_ids[cols["material"]]
        rest = [n for n in data.names if n not in data.splits]
        assignment = greedy_material_split(rest, SPLIT_FRACTIONS, seed) if rest else {}
        assignment |= data.splits
        splits = np.array([assignment[n] for n in names], dtype=str)
        ds.set_splits(
            splits,
            method="XANESNET test/ folder kept as test; the rest 90/10 train/val by material",
            seed=seed,
        )
    return XASDataset.open(out), data.rejected
