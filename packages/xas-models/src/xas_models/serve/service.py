"""What the web API does, without the web framework: read uploads, run the zoo's models (loaded
once and kept), and turn the results into JSON-ready dicts.

Each function wraps the public API of xas-models and xas-data: :func:`xas_models.predict`,
:func:`xas_models.zoo.list_pretrained`, :func:`xas_models.inverse.predict_descriptors`,
:func:`xas_data.structures.check_structure` and the measured-spectrum readers. User mistakes
raise :class:`xas_data.errors.XASDataError` (a one-line message naming the fix); the web layer
answers them with a 4xx status.
"""

from __future__ import annotations

import dataclasses
import re
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from xas_data.errors import SpectrumError, StructureError, XASDataError
from xas_models.errors import ModelError

#: default largest upload (bytes): a CIF of a 500-atom cell is ~50 kB, a measured spectrum
#: with a few thousand points ~100 kB
DEFAULT_MAX_UPLOAD_BYTES = 2_000_000
#: default largest structure (atoms in the cell) the server predicts
DEFAULT_MAX_ATOMS = 500
#: vacuum (Angstrom) around a plain XYZ molecule or cluster, boxed into a periodic cell
XYZ_VACUUM = 10.0
#: structure formats by file suffix ("POSCAR"/"CONTCAR" names have no suffix)
STRUCTURE_FORMATS = {".cif": "cif", ".vasp": "poscar", ".poscar": "poscar", ".xyz": "xyz"}
#: first choices for the default forward and inverse models (else the first of each task)
PREFERRED_FORWARD = "xasblock-chgnet-default-feff-fast-universal"
PREFERRED_INVERSE = "spt-default-feff-fast"
_LATTICE_RE = re.compile(r'Lattice="([^"]+)"', re.IGNORECASE)


@dataclasses.dataclass
class ServeSettings:
    """Settings of one server.

    Attributes:
        zoo: zoo folder or URL (``None``: the default zoo, see :mod:`xas_models.zoo`).
        models: zoo model names served (empty: every model of the zoo).
        max_upload_bytes: largest accepted upload / request body in bytes.
        max_atoms: largest structure (atoms in the cell) accepted.
        token: bearer token every API call must carry (``None``: no token).
    """

    zoo: str | None = None
    models: list[str] = dataclasses.field(default_factory=list)
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    max_atoms: int = DEFAULT_MAX_ATOMS
    token: str | None = None


def upload_text(data: bytes, name: str, limit: int) -> str:
    """The text of an upload; ``XASDataError`` for an empty, oversized or binary one."""
    if not data.strip():
        raise XASDataError(f"{name}: the upload is empty; choose a non-empty file")
    if len(data) > limit:
        raise XASDataError(f"{name}: {len(data)} bytes exceed the limit of {limit} bytes")
    if b"\x00" in data:
        raise XASDataError(f"{name}: a binary file; upload a text file (CIF, POSCAR, XYZ, XDI)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        try:
            return data.decode("latin-1")
        except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
            raise XASDataError(f"{name}: not a text file; upload a text file") from None


def structure_format(name: str, text: str, fmt: str | None = None) -> str:
    """``cif``, ``poscar`` or ``xyz``: ``fmt`` when given, else from the file name, else from
    the text (``data_`` block: CIF; a first line with one integer: XYZ; else POSCAR)."""
    if fmt:
        fmt = fmt.lower()
        if fmt not in ("cif", "poscar", "xyz"):
            raise StructureError(f"format {fmt!r} is unknown; use cif, poscar or xyz")
        return fmt
    suffix = Path(name).suffix.lower()
    if suffix in STRUCTURE_FORMATS:
        return STRUCTURE_FORMATS[suffix]
    if re.search(r"^\s*data_", text, re.MULTILINE):
        return "cif"
    first = text.strip().splitlines()[0].strip()
    return "xyz" if first.isdigit() else "poscar"


def _xyz_structure(text: str):
    """A periodic ``Structure`` from XYZ text: the extended-XYZ ``Lattice="..."`` when the
    comment line has one, else the molecule in a box with :data:`XYZ_VACUUM` of vacuum."""
    from pymatgen.core import Lattice, Molecule, Structure

    molecule = Molecule.from_str(text, fmt="xyz")
    lines = text.strip().splitlines()
    match = _LATTICE_RE.search(lines[1]) if len(lines) > 1 else None
    if match:
        matrix = np.array([float(v) for v in match.group(1).split()]).reshape(3, 3)
        return Structure(
            Lattice(matrix), molecule.species, molecule.cart_coords, coords_are_cartesian=True
        )
    extent = molecule.cart_coords.max(0) - molecule.cart_coords.min(0)
    a, b, c = (float(x) + XYZ_VACUUM for x in extent)
    return molecule.get_boxed_structure(a, b, c)


def parse_structure(text: str, name: str, max_atoms: int, fmt: str | None = None):
    """The checked ``Structure`` of an uploaded CIF, POSCAR or XYZ text (Angstrom).

    Raises:
        StructureError: unparsable text, or a structure that
            :func:`xas_data.structures.check_structure` refuses (more than ``max_atoms``
            atoms, overlapping atoms, a broken lattice, partial occupancies, ...).
    """
    from pymatgen.core import Structure

    from xas_data.structures import check_cif_formula, check_structure

    fmt = structure_format(name, text, fmt)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if fmt == "xyz":
                structure = _xyz_structure(text)
            else:
                structure = Structure.from_str(text, fmt=fmt)
    except Exception as exc:  # pymatgen raises many types for malformed text
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise StructureError(
            f"{name}: cannot read it as {fmt.upper()} ({reason}); upload a valid CIF, POSCAR "
            "or XYZ file"
        ) from None
    check_structure(structure, name, max_atoms=max_atoms)
    if fmt == "cif":
        check_cif_formula(structure, text, name)
    return structure


def edge_features(energy: np.ndarray, mu: np.ndarray) -> dict[str, float]:
    """E0 (eV, maximum of dmu/dE) and the white line (energy in eV and height of max mu)."""
    from xas_models.cli import edge_energy

    k = int(np.argmax(mu))
    return {
        "e0_ev": edge_energy(energy, mu),
        "white_line_ev": float(energy[k]),
        "white_line_mu": float(mu[k]),
    }


def prediction_json(p: Any) -> dict[str, Any]:
    """:meth:`StructurePrediction.to_dict` plus E0 / white line of each site and the average."""
    doc = p.to_dict()
    for site, s in zip(doc["sites"], p.sites, strict=True):
        site.update(edge_features(s.energy, s.mu))
    doc["average"] = edge_features(p.average_energy, p.average_mu)
    return doc


def entry_json(entry: Any) -> dict[str, Any]:
    """A zoo entry as the API lists it (no file hashes or paths)."""
    from xas_models.cli import headline_metric
    from xas_models.zoo import below_baseline

    keep = ("name", "version", "architecture", "task", "elements", "edge", "fidelity", "license")
    doc = {k: getattr(entry, k) for k in keep}
    doc["featurizer"] = entry.featurizer.name
    doc["published"] = entry.published
    doc["headline_metric"] = headline_metric(entry.metrics)
    doc["below_baseline"] = below_baseline(entry.metrics) if entry.task == "forward" else []
    doc["metrics"] = entry.metrics
    return doc


class ModelService:
    """The zoo's models for one server: listed on demand, each loaded once (on first use) and
    kept in memory; runs are serialised by a lock (torch modules and the featurizers' networks
    are shared)."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self._loaded: dict[tuple[str, str], Any] = {}
        self._load_lock = threading.Lock()
        self._run_lock = threading.Lock()

    # -- catalogue ------------------------------------------------------------------------
    def entries(self) -> list[Any]:
        """The served zoo entries (every version), sorted by name and version."""
        from xas_models.zoo import list_pretrained

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            entries = list_pretrained(self.settings.zoo)
        wanted = set(self.settings.models)
        return [e for e in entries if not wanted or e.name in wanted]

    def latest(self, task: str) -> dict[str, Any]:
        """Model name -> newest entry of each served model of ``task`` (forward / inverse)."""
        newest: dict[str, Any] = {}
        for e in self.entries():  # sorted by version: the last one wins
            if e.task == task:
                newest[e.name] = e
        return newest

    def entry(self, name: str, version: str = "latest") -> Any:
        """The served entry ``name`` at ``version``; ``ModelError`` naming the choices."""
        found = [e for e in self.entries() if e.name == name]
        if version != "latest":
            found = [e for e in found if e.version == version]
        if not found:
            names = sorted({e.name for e in self.entries()})
            raise ModelError(
                f"model {name!r} (version {version}) is not served; choose one of: "
                + ", ".join(names)
            )
        return found[-1]

    def default_model(self, task: str) -> str:
        """The preferred served model of ``task``, else the first one."""
        names = list(self.latest(task))
        preferred = PREFERRED_FORWARD if task == "forward" else PREFERRED_INVERSE
        if preferred in names:
            return preferred
        if not names:
            raise ModelError(f"no {task} model is served; start the server with one (--models)")
        return names[0]

    def model_card(self, name: str, version: str = "latest") -> str:
        """The model card (``README.md`` of the checkpoint folder; "" when absent)."""
        entry = self.entry(name, version)
        card = Path(entry.source) / entry.path / "README.md" if entry.source else None
        if card is None or not card.is_file():
            return ""
        return card.read_text(encoding="utf-8", errors="replace")

    # -- models ---------------------------------------------------------------------------
    def load(self, name: str, version: str = "latest") -> Any:
        """The :class:`~xas_models.predict.LoadedModel` of a served model, loaded once."""
        from xas_models.predict import resolve_model

        entry = self.entry(name, version)
        key = (entry.name, entry.version)
        with self._load_lock:
            if key not in self._loaded:
                self._loaded[key] = resolve_model(entry.name, entry.version, self.settings.zoo)
            return self._loaded[key]

    def loaded_names(self) -> list[str]:
        """``name version`` of every model in memory."""
        return [f"{n} {v}" for n, v in self._loaded]

    def warm_up(self) -> None:
        """Load the default forward and inverse models and run the forward one once on a
        two-atom structure of its first element, so that the featurizer's network is loaded
        before the first request."""
        from pymatgen.core import Lattice, Structure

        forward = self.load(self.default_model("forward"))
        el = forward.meta.elements[0]
        probe = Structure(Lattice.cubic(4.2), [el, "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
        self.predict_structure(probe, "warm-up", [forward.name])
        if self.latest("inverse"):
            self.load(self.default_model("inverse"))

    # -- forward ----------------------------------------------------------------------------
    def predict_structure(
        self, structure: Any, source: str, models: list[str]
    ) -> tuple[list[Any], list[str]]:
        """Spectra of every absorbing element of ``structure`` that each of ``models``
        predicts: ``(StructurePrediction list, notes)``; a model that covers none of the
        elements is skipped with a note, and ``ModelError`` if no model covers any."""
        from xas_models.predict import predict

        present = {el.symbol for el in structure.composition.elements}
        results: list[Any] = []
        notes: list[str] = []
        for name in models:
            loaded = self.load(name)
            if not present & set(loaded.meta.elements):
                notes.append(f"{name} predicts {', '.join(loaded.meta.elements)}: none here")
                continue
            with self._run_lock, warnings.catch_warnings():
                warnings.simplefilter("ignore")
                found = predict(structure, model=(loaded.module, loaded.meta))
            label = {"source": source, "model_name": loaded.name}
            label["model_version"] = loaded.version
            results += [dataclasses.replace(p, **label) for p in found]
        if not results:
            formula = structure.composition.reduced_formula
            raise ModelError(
                f"{source} ({formula}) contains no element the chosen models predict ("
                + "; ".join(notes)
                + "); upload a structure with one of those elements or choose another model"
            )
        return results, notes

    # -- inverse ----------------------------------------------------------------------------
    def read_spectra(self, text: str, name: str, element: str | None) -> list[Any]:
        """Measured spectra of an uploaded XDI, XAS Data Library JSON or two-column text
        (read by :func:`xas_data.experiment_ingest.read_measured_sources` from a file the
        server names; the client's file name only chooses the reader by its suffix)."""
        from xas_data.experiment_ingest import read_measured_sources

        suffix = ".json" if Path(name).suffix.lower() == ".json" else ".txt"
        with tempfile.TemporaryDirectory(prefix="xas-serve-") as tmp:
            path = Path(tmp) / f"spectrum{suffix}"
            path.write_text(text, encoding="utf-8")
            try:
                spectra = read_measured_sources([path], element)
            except XASDataError as exc:
                raise type(exc)(str(exc).replace(str(path), name)) from None
        if element:
            spectra = [s for s in spectra if s.element == element]
        if not spectra:
            raise SpectrumError(f"{name}: holds no {element or ''} spectra; check the file")
        return spectra

    def describe(self, spectrum: Any, model: str) -> dict[str, Any]:
        """Normalised curve (on the model's grid, eV) and descriptors of one measured
        spectrum, as a JSON-ready dict."""
        from xas_data.experiment_processing import process_spectrum
        from xas_models.inverse import predict_descriptors

        loaded = self.load(model)
        el = spectrum.element
        if el not in loaded.meta.elements:
            raise ModelError(
                f"model {loaded.name} describes {', '.join(loaded.meta.elements)} spectra, "
                f"not {el}; choose an inverse model for {el}"
            )
        grid = loaded.meta.grid_for(el)
        energy = grid.start + grid.step * np.arange(grid.n_points)
        processed = process_spectrum(spectrum, energy)
        with self._run_lock:
            out = predict_descriptors(processed.mu_norm, energy, el, (loaded.module, loaded.meta))
        return {
            "name": spectrum.name,
            "element": el,
            "model": loaded.name,
            "model_version": loaded.version,
            "e0_ev": processed.e0,
            "energy_eV": energy.tolist(),
            "mu_norm": processed.mu_norm.tolist(),
            "notes": list(processed.notes),
            "descriptors": {k: descriptor_json(p) for k, p in out.items()},
        }


def descriptor_json(p: Any) -> dict[str, Any]:
    """A :class:`~xas_models.inverse.DescriptorPrediction` as a JSON-ready dict."""
    return {
        "kind": p.kind,
        "value": p.value,
        "std": p.std,
        "probabilities": {f"{c:g}": q for c, q in p.probabilities.items()},
        "in_domain": p.in_domain,
        "warnings": list(p.warnings),
    }
