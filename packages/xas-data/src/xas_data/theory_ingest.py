"""Read back K-edge spectra of the higher-fidelity codes (VASP, XSpectra, OCEAN) into stores.

Formats read (what each code writes; a two-column ``energy intensity`` text works for all):

* VASP core-hole runs (``ICORELEVEL = 2``, ``CH_LSPEC``): the ``OUTCAR`` block
  ``frequency dependent IMAGINARY DIELECTRIC FUNCTION`` with rows ``E X Y Z XY YZ ZX``; the
  spectrum is ``(X + Y + Z) / 3`` (epsilon_2), energies are VASP's transition energies (eV).
* XSpectra (Quantum ESPRESSO): ``xanes.dat`` (``#`` header, then ``energy sigma_tot [...]``,
  eV relative to the Fermi level); a site folder averages its ``dipole*/xanes.dat``.
* OCEAN: ``absspct_<El>_.<nnnn>_<nl>_<pp>`` (``<nnnn>``: the n-th atom of ``<El>``, columns
  ``energy ... epsilon_2 ...``, epsilon_2 read from column 3); a site averages its photons.

Runs are found either in the tree ``xas-data simulate --code ... --write-inputs`` (Lightshow)
wrote, ``<root>/<material id>/<VASP|XSpectra|OCEAN>/...`` with ``<root>/<id>/POSCAR``, or as
one file / run folder plus its structure. Spectra are stored as fidelity ``VASP``,
``XSPECTRA`` or ``OCEAN`` on the code's own energy grid (no shift, no normalisation).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xas_data import curation
from xas_data.errors import SpectrumError, StoreError, XASDataError
from xas_data.schema import check_energy
from xas_data.store import XASDataset

FIDELITY = {"vasp": "VASP", "xspectra": "XSPECTRA", "ocean": "OCEAN"}
LIGHTSHOW_FOLDER = {"vasp": "VASP", "xspectra": "XSpectra", "ocean": "OCEAN"}
ENERGY_REFERENCE = {
    "vasp": "VASP transition energies (eV), not aligned to experiment",
    "xspectra": "eV relative to the Fermi level (XSpectra)",
    "ocean": "eV on OCEAN's relative scale",
}
QUANTITY = {
    "vasp": "epsilon_2, mean of xx yy zz",
    "xspectra": "cross section sigma_tot",
    "ocean": "epsilon_2",
}
_OCEAN_NAME = re.compile(r"absspct_(?P<el>[A-Z][a-z]?)_\.(?P<n>\d+)_(?P<nl>\w+?)_(?P<p>\d+)$")


@dataclass
class TheorySpectrum:
    """One site spectrum of a theory code.

    Attributes:
        code: vasp, xspectra or ocean.
        material_id, site_index, multiplicity, element: the absorbing site.
        energy: strictly increasing energies (eV), float64 [n].
        intensity: the code's spectrum on ``energy``, float64 [n].
        source: the file(s) read.
    """

    code: str
    material_id: str
    site_index: int
    multiplicity: int
    element: str
    energy: np.ndarray
    intensity: np.ndarray
    source: str


# ---------------------------------------------------------------- text tables
def _fail(path: Path, problem: str, fix: str) -> SpectrumError:
    return SpectrumError(f"{path}: {problem}; {fix}")


def parse_rows(path: Path, lines: list[str], first_line: int = 1) -> np.ndarray:
    """Whitespace-separated numbers of ``lines`` (``#`` comments skipped) -> float64 [n, c].

    Raises ``SpectrumError`` naming ``path`` and the line for text, ragged (truncated) rows.
    """
    rows, width = [], None
    for number, line in enumerate(lines, start=first_line):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            row = [float(x.replace("D", "E").replace("d", "e")) for x in text.split()]
        except ValueError:
            raise _fail(
                path,
                f"line {number} is not numbers ({text[:40]!r})",
                "give whitespace-separated columns 'energy intensity ...' (comments start with #)",
            ) from None
        if width is not None and len(row) != width:
            raise _fail(
                path,
                f"line {number} has {len(row)} columns, the lines before {width} "
                "(truncated or mixed file)",
                "copy the complete output file from the run again",
            )
        width = len(row)
        rows.append(row)
    if len(rows) < 2:
        raise _fail(path, f"{len(rows)} data rows", "a spectrum needs >= 2 rows; is it empty?")
    return np.asarray(rows, dtype=np.float64)


def read_table(path: Path, column: int) -> tuple[np.ndarray, np.ndarray]:
    """Energy (column 0) and ``column`` of a text table -> (energy [n], intensity [n])."""
    table = parse_rows(path, path.read_text(errors="replace").splitlines())
    if table.shape[1] <= column:
        raise _fail(
            path,
            f"{table.shape[1]} column(s), the intensity is read from column {column + 1}",
            "give 'energy intensity' columns (or the code's own output file)",
        )
    return table[:, 0], table[:, column]


def _checked(path: Path, energy: np.ndarray, intensity: np.ndarray):
    """Validate a spectrum read from ``path``; errors name the file."""
    try:
        energy = check_energy(energy, str(path))
    except SpectrumError as exc:
        raise SpectrumError(f"{exc} (is the file complete?)") from None
    if not np.all(np.isfinite(intensity)):
        raise _fail(path, "NaN/inf intensities", "re-run or re-copy the output")
    return energy, intensity


# ---------------------------------------------------------------- per-code readers
def read_vasp_outcar(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """epsilon_2 of a core-hole OUTCAR: the first IMAGINARY DIELECTRIC FUNCTION block.

    Returns (energy [n] eV, (X + Y + Z) / 3 [n]). The block must be followed by VASP's REAL
    block; a file cut before it is reported as truncated.
    """
    lines = path.read_text(errors="replace").splitlines()
    start = next((i for i, ln in enumerate(lines) if "IMAGINARY DIELECTRIC FUNCTION" in ln), None)
    if start is None:
        raise _fail(
            path,
            "no 'IMAGINARY DIELECTRIC FUNCTION' block",
            "pass the OUTCAR of a finished core-hole run (ICORELEVEL = 2, CH_LSPEC = .TRUE.)",
        )
    end = next((i for i in range(start, len(lines)) if "REAL DIELECTRIC" in lines[i]), None)
    if end is None:
        raise _fail(
            path,
            f"the dielectric block from line {start + 1} does not end (truncated OUTCAR)",
            "copy the complete OUTCAR once VASP has finished",
        )
    body = [ln for ln in lines[start + 1 : end] if not ln.strip().startswith(("E(ev)", "-"))]
    table = parse_rows(path, body, first_line=start + 2)
    if table.shape[1] < 4:
        raise _fail(path, f"{table.shape[1]} columns in the dielectric block", "need E X Y Z")
    return table[:, 0], table[:, 1:4].mean(axis=1)


def read_vasp(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A VASP run folder (its OUTCAR), an OUTCAR, or an 'energy intensity' text file."""
    if path.is_dir():
        if not (path / "OUTCAR").is_file():
            raise _fail(path, "no OUTCAR in this folder", "run VASP there first")
        path = path / "OUTCAR"
    if path.name.startswith("OUTCAR") or "DIELECTRIC" in path.read_text(errors="replace")[: 2**20]:
        return _checked(path, *read_vasp_outcar(path))
    return _checked(path, *read_table(path, 1))


def read_xspectra(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """An XSpectra ``xanes.dat`` (or text file), or a site folder: mean of its ``xanes.dat``."""
    if not path.is_dir():
        return _checked(path, *read_table(path, 1))
    files = sorted(path.rglob("xanes.dat"))
    if not files:
        raise _fail(path, "no xanes.dat below this folder", "run XSpectra there first")
    spectra = [read_xspectra(f) for f in files]
    energy = spectra[0][0]
    for f, (e, _) in zip(files, spectra, strict=True):
        if e.shape != energy.shape or not np.allclose(e, energy):
            raise _fail(f, "energy grid differs from " + str(files[0]), "use the same &plot card")
    return energy, np.mean([y for _, y in spectra], axis=0)


def ocean_site_files(folder: Path, element: str, n_th: int) -> list[Path]:
    """OCEAN ``absspct`` files of the ``n_th`` (1-based) ``element`` atom below ``folder``."""
    found = []
    for f in sorted(folder.rglob("absspct_*")):
        match = _OCEAN_NAME.match(f.name)
        if match and match["el"] == element and int(match["n"]) == n_th:
            found.append(f)
    return found


def read_ocean(path: Path, files: list[Path] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """An OCEAN ``absspct`` file (epsilon_2, column 3), a two-column text, or the mean of
    ``files`` (the photons of one site)."""
    if files:
        spectra = [read_ocean(f) for f in files]
        return spectra[0][0], np.mean([y for _, y in spectra], axis=0)
    table = parse_rows(path, path.read_text(errors="replace").splitlines())
    column = 2 if _OCEAN_NAME.match(path.name) else 1
    if table.shape[1] <= column:
        raise _fail(path, f"{table.shape[1]} column(s)", f"need >= {column + 1} (energy ...)")
    return _checked(path, table[:, 0], table[:, column])


# ---------------------------------------------------------------- finding runs
def _structure_site(structure, element: str, site: int | None) -> tuple[int, int]:
    """(site index, multiplicity): ``site`` or the first inequivalent ``element`` site."""
    from xas_data.structures import inequivalent_absorbing_sites

    sites = inequivalent_absorbing_sites(structure, element)
    if site is None:
        return sites[0].index, sites[0].multiplicity
    if not 0 <= site < len(structure) or structure[site].specie.symbol != element:
        raise XASDataError(
            f"site {site} is not a {element} atom of {structure.composition.reduced_formula}; "
            f"use one of {[s.index for s in sites]}"
        )
    return site, next((s.multiplicity for s in sites if s.index == site), 1)


def _nth_of_element(structure, element: str, site: int) -> int:
    """1-based rank of atom ``site`` among the ``element`` atoms (OCEAN's file numbering)."""
    return sum(1 for s in structure[: site + 1] if s.specie.symbol == element)


def read_site(code: str, path: Path, structure, element: str, site: int) -> tuple:
    """(energy, intensity) of one site of ``code`` from a file or run folder ``path``."""
    if code == "vasp":
        return read_vasp(path)
    if code == "xspectra":
        return read_xspectra(path)
    if path.is_dir():
        files = ocean_site_files(path, element, _nth_of_element(structure, element, site))
        if not files:
            raise _fail(path, f"no absspct_{element}_ file of site {site}", "run OCEAN there")
        return read_ocean(path, files)
    return read_ocean(path)


def _site_folders(code_dir: Path, code: str, structure) -> list[tuple[Path, str, int]]:
    """(run path, element, site index) of each Lightshow site folder under ``code_dir``."""
    if code != "ocean":
        runs = []
        for folder in sorted(code_dir.iterdir()):
            index, _, element = folder.name.partition("_")
            if folder.is_dir() and index.isdigit() and element:
                runs.append((folder, element, int(index)))
        return runs
    runs = []
    for folder in sorted(p for p in code_dir.iterdir() if p.is_dir()):
        for i, s in enumerate(structure):
            if s.specie.symbol == folder.name:
                nth = _nth_of_element(structure, folder.name, i)
                if ocean_site_files(folder, folder.name, nth):
                    runs.append((folder, folder.name, i))
    return runs


def _has_output(code: str, run: Path) -> bool:
    if code == "vasp":
        return (run / "OUTCAR").is_file()
    if code == "xspectra":
        return any(run.rglob("xanes.dat"))
    return True  # OCEAN folders are listed only with their absspct files


def lightshow_tree_spectra(root: Path, code: str) -> tuple[list[TheorySpectrum], dict, int]:
    """Spectra of every finished ``code`` run in a Lightshow tree under ``root``.

    Returns (spectra, {material id: (Structure, source)}, number of run folders without output).
    """
    from xas_data.structures import read_structure

    spectra, structures, pending = [], {}, 0
    for code_dir in sorted(root.glob(f"*/{LIGHTSHOW_FOLDER[code]}")):
        mid = code_dir.parent.name
        structure = read_structure(code_dir.parent / "POSCAR")
        mult_file = code_dir.parent / "multiplicity.json"
        mult = json.loads(mult_file.read_text()) if mult_file.exists() else {}
        for run, element, site in _site_folders(code_dir, code, structure):
            if not _has_output(code, run):
                pending += 1
                continue
            energy, intensity = read_site(code, run, structure, element, site)
            multiplicity = int(mult.get(str(site), 1))
            spectra.append(
                TheorySpectrum(code, mid, site, multiplicity, element, energy, intensity, str(run))
            )
            structures[mid] = (structure, f"lightshow:{code_dir.parent}")
    return spectra, structures, pending


def is_lightshow_tree(path: Path, code: str) -> bool:
    """True when ``path`` holds ``<id>/<VASP|XSpectra|OCEAN>`` folders (Lightshow's layout)."""
    return path.is_dir() and any(path.glob(f"*/{LIGHTSHOW_FOLDER[code]}"))


def single_spectrum(
    path: Path, code: str, structure_path: Path, element: str, material_id: str | None, site
) -> tuple[TheorySpectrum, object]:
    """One site's spectrum from a file / run folder, with its structure file."""
    from xas_data.schema import check_element
    from xas_data.structures import read_structure

    structure = read_structure(structure_path)
    element = check_element(element)
    site, multiplicity = _structure_site(structure, element, site)
    energy, intensity = read_site(code, path, structure, element, site)
    mid = material_id or structure_path.stem
    spectrum = TheorySpectrum(code, mid, site, multiplicity, element, energy, intensity, str(path))
    return spectrum, structure


# ---------------------------------------------------------------- store
def _on_grid(spectra: list[TheorySpectrum], grid: np.ndarray | None):
    """Intensities [n, K] on ``grid`` (default: the first spectrum's own grid) and how many
    spectra had to be linearly interpolated (zero outside their own range)."""
    grid = spectra[0].energy if grid is None else grid
    rows, n_interp = [], 0
    for s in spectra:
        if s.energy.shape == grid.shape and np.allclose(s.energy, grid, atol=1e-9):
            rows.append(s.intensity)
        else:
            rows.append(np.interp(grid, s.energy, s.intensity, left=0.0, right=0.0))
            n_interp += 1
    return grid, np.asarray(rows), n_interp


def _groups(spectra: list[TheorySpectrum]) -> dict[tuple[str, str], list[TheorySpectrum]]:
    groups: dict[tuple[str, str], list[TheorySpectrum]] = {}
    for s in sorted(spectra, key=lambda s: (s.material_id, s.site_index)):
        groups.setdefault((s.element, FIDELITY[s.code]), []).append(s)
    return groups


def _read_record(code: str, path: Path, n: int, n_interp: int, pending: int) -> dict:
    params = {
        "code": code,
        "path": str(path),
        "quantity": QUANTITY[code],
        "energy_reference": ENERGY_REFERENCE[code],
        "interpolated_onto_group_grid": n_interp,
        "runs_without_output": pending,
    }
    return curation.record_step("read_theory_spectra", params, n, n, 0.0).to_dict()


def _append(out: Path, groups, structures, records) -> XASDataset:
    """Append groups to an existing store (its grids kept; materials keep their split)."""
    ds = XASDataset.open(out, mode="a")
    mids = sorted(structures)
    ds.add_materials(mids, [structures[m][0] for m in mids], [structures[m][1] for m in mids])
    cols = ds.sites(columns=("material", "split"))
    known = ds.material_ids[cols["material"]].tolist()
    split_of = dict(zip(known, cols["split"].tolist(), strict=True))
    stored, n_interp = set(ds.groups()), 0
    for (element, fidelity), spectra in groups.items():
        grid = ds.select(element, fidelity).energy if (element, fidelity) in stored else None
        grid, intensity, n = _on_grid(spectra, grid)
        n_interp += n
        ids = [s.material_id for s in spectra]
        ds.append_spectra(
            element,
            fidelity,
            grid,
            ids,
            [s.site_index for s in spectra],
            intensity,
            splits=[split_of.get(m, "") for m in ids],
            multiplicities=[s.multiplicity for s in spectra],
        )
    for record in records:
        record["params"]["interpolated_onto_group_grid"] = n_interp
        ds.add_provenance(record.pop("step"), **record)
    return XASDataset.open(out)


def ingest_theory(
    path: str | Path,
    out: str | Path,
    code: str,
    structure: str | Path | None = None,
    element: str | None = None,
    material_id: str | None = None,
    site: int | None = None,
    append: bool = False,
    overwrite: bool = False,
    license: str = "",
) -> XASDataset:
    """Store the ``code`` spectra found at ``path`` as fidelity ``VASP``/``XSPECTRA``/``OCEAN``.

    ``path``: a Lightshow tree (every finished run is read) or one output file / run folder,
    which then needs ``structure`` and ``element`` (``site``: default the first inequivalent
    ``element`` site; ``material_id``: default the structure file's stem). ``append`` adds to
    the store at ``out`` (its grids are kept, other spectra are interpolated onto them).
    """
    from xas_data.build import write_store

    if code not in FIDELITY:
        raise XASDataError(f"unknown code {code!r}; choose one of {sorted(FIDELITY)}")
    path, out = Path(path), Path(out)
    spectra, structures, pending = collect_spectra(
        path, code, structure, element, material_id, site
    )
    groups = _groups(spectra)
    n_interp = sum(_on_grid(g, None)[2] for g in groups.values())
    records = [_read_record(code, path, len(spectra), n_interp, pending)]
    if append:
        if not out.exists():
            raise StoreError(f"{out}: no store to append to; drop --append to create it")
        return _append(out, groups, structures, records)
    return write_store(
        [_group_data(key, members) for key, members in groups.items()],
        structures,
        out,
        f"theory-{code}",
        records,
        license=license,
        description=f"{FIDELITY[code]} K-edge spectra read from {path.name}",
        source={"kind": f"{code} theory output", "path": str(path.resolve())},
        overwrite=overwrite,
    )


def collect_spectra(path: Path, code: str, structure, element, material_id, site):
    """(spectra, {id: (Structure, source)}, run folders without output) found at ``path``."""
    if not path.exists():
        raise XASDataError(f"{path}: no such file or folder; point to the {code} output")
    if is_lightshow_tree(path, code):
        spectra, structures, pending = lightshow_tree_spectra(path, code)
        if not spectra:
            raise XASDataError(
                f"{path}: no finished {code} run ({pending} run folders without output); "
                "run the inputs written by `xas-data simulate --write-inputs` first"
            )
        return spectra, structures, pending
    if structure is None or element is None:
        raise XASDataError(
            f"{path}: one {code} output needs --structure (CIF/POSCAR) and --element; "
            "or point to the folder `xas-data simulate --write-inputs` wrote"
        )
    one, parsed = single_spectrum(path, code, Path(structure), element, material_id, site)
    return [one], {one.material_id: (parsed, f"{code}:{path}")}, 0


def _group_data(key: tuple[str, str], members: list[TheorySpectrum]):
    """``build.GroupData`` of one (element, fidelity) group on its first member's grid."""
    from xas_data.build import GroupData

    grid, intensity, _ = _on_grid(members, None)
    ids = [s.material_id for s in members]
    sites = [s.site_index for s in members]
    mults = [s.multiplicity for s in members]
    return GroupData(key[0], key[1], ids, sites, mults, grid, intensity)
