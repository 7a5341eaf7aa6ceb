"""Predict K-edge spectra of crystal structures with a trained model.

:func:`predict` takes pymatgen ``Structure`` objects, ASE ``Atoms`` or CIF/POSCAR paths, finds
the symmetry-inequivalent absorbing sites of each predicted element, featurizes all sites of all
structures in one call of the model's featurizer, runs the model once (eval mode, no grad) and
returns one :class:`StructurePrediction` per structure and element: a spectrum per inequivalent
site and their multiplicity-weighted average, on the model's energy grid (eV).

Ensembles (:class:`~xas_models.forward_ensemble.ForwardEnsemble`) also give an uncertainty:
``sigma`` per energy point (``[K]``, same units as mu) of every site and of the average; the
average's sigma is the calibrated spread of the members' averaged spectra. Single models leave
``sigma`` / ``average_sigma`` as ``None`` and their outputs unchanged. The featurizer runs once
for all members.

Writers: :func:`write_csv` (long format), :func:`write_json`, :func:`plot_predictions`
(matplotlib, extra ``plot``). All write atomically (temporary file + ``os.replace``).

Heavy libraries (torch, pymatgen, the featurizer backends) are imported on first use.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xas_models.errors import ModelError

if TYPE_CHECKING:
    from pymatgen.core import Structure
    from torch import nn

    from xas_models.checkpoint import CheckpointMeta

#: pip requirement that provides each featurizer's backend
_EXTRAS = {
    "chgnet": "xas-models[chgnet]",
    "m3gnet": "xas-models[m3gnet]",
    "acsf": "xas-features[soap]",
    "soap": "xas-features[soap]",
}
#: featurizers built by name, kept for the life of the process (their networks load once)
_FEATURIZER_CACHE: dict[str, Any] = {}


@dataclass(frozen=True)
class SitePrediction:
    """Predicted spectrum of one symmetry-inequivalent absorbing site.

    Attributes:
        site_index: index of the site in the structure (the lowest index of its orbit).
        multiplicity: number of symmetry-equivalent sites it stands for (>= 1).
        energy: float64 ``[K]`` photon energies in eV (the model's grid for the element).
        mu: float64 ``[K]`` predicted absorption mu(E) (the model's normalised units, >= 0 for
            the XAS block); for an ensemble the members' mean.
        sigma: float64 ``[K]`` calibrated 1-sigma uncertainty of ``mu`` (ensembles: the
            members' standard deviation times the checkpoint's ``sigma_scale``); ``None`` for a
            single model.
    """

    site_index: int
    multiplicity: int
    energy: np.ndarray
    mu: np.ndarray
    sigma: np.ndarray | None = None


@dataclass(frozen=True)
class StructurePrediction:
    """Spectra of one absorbing element in one structure.

    Attributes:
        source: file name of the structure, or its reduced formula for in-memory structures.
        formula: reduced formula of the structure.
        element: absorbing element symbol.
        edge: absorption edge (e.g. ``"K"``).
        sites: one :class:`SitePrediction` per symmetry-inequivalent site of ``element``, by
            site index.
        average_energy: float64 ``[K]`` energies in eV (same grid as each site).
        average_mu: float64 ``[K]`` multiplicity-weighted mean of the site spectra,
            ``sum(m_i * mu_i) / sum(m_i)``.
        model_name: zoo name of the model (or the checkpoint folder / architecture).
        model_version: zoo version of the model (empty when not loaded from a zoo).
        structure_index: position of the structure in the input.
        average_sigma: float64 ``[K]`` calibrated 1-sigma uncertainty of ``average_mu``
            (ensembles: spread of the members' multiplicity-weighted averages x sigma_scale);
            ``None`` for a single model.
    """

    source: str
    formula: str
    element: str
    edge: str
    sites: list[SitePrediction]
    average_energy: np.ndarray
    average_mu: np.ndarray
    model_name: str
    model_version: str = ""
    structure_index: int = 0
    average_sigma: np.ndarray | None = None

    @property
    def n_sites(self) -> int:
        """Number of absorbing atoms in the cell (sum of the multiplicities)."""
        return sum(s.multiplicity for s in self.sites)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (energies in eV under ``energy_eV``, shared by all sites);
        ensembles add ``sigma`` to each site and ``average_sigma``."""
        doc = {
            "source": self.source,
            "formula": self.formula,
            "element": self.element,
            "edge": self.edge,
            "model": self.model_name,
            "model_version": self.model_version,
            "structure_index": self.structure_index,
            "energy_eV": self.average_energy.tolist(),
            "sites": [
                {"site_index": s.site_index, "multiplicity": s.multiplicity, "mu": s.mu.tolist()}
                | ({} if s.sigma is None else {"sigma": s.sigma.tolist()})
                for s in self.sites
            ],
            "average_mu": self.average_mu.tolist(),
        }
        if self.average_sigma is not None:
            doc["average_sigma"] = self.average_sigma.tolist()
        return doc


# -- inputs -------------------------------------------------------------------------------------


def _is_ase_atoms(obj: Any) -> bool:
    """True for ``ase.Atoms`` (and subclasses), without importing ASE."""
    ase = sys.modules.get("ase")
    atoms_cls = getattr(ase, "Atoms", None)
    return atoms_cls is not None and isinstance(obj, atoms_cls)


def _is_single(obj: Any) -> bool:
    from pymatgen.core import Structure

    return isinstance(obj, Structure | str | os.PathLike) or _is_ase_atoms(obj)


def _to_structure(obj: Any, position: int) -> tuple[Structure, str]:
    """``(structure, source label)`` of one input item."""
    from pymatgen.core import Structure

    from xas_data.structures import check_structure, read_structure

    if isinstance(obj, str | os.PathLike):
        path = Path(obj)
        return read_structure(path), path.name
    if isinstance(obj, Structure):
        formula = obj.composition.reduced_formula
        return check_structure(obj, f"structure {position} ({formula})"), formula
    if _is_ase_atoms(obj):
        if abs(float(obj.get_volume() if any(obj.pbc) else 0.0)) < 1e-8:
            raise ModelError(
                f"ASE Atoms {position} ({obj.get_chemical_formula()}) has no periodic cell; "
                "set atoms.cell and atoms.pbc = True (the featurizers need a crystal)"
            )
        from pymatgen.io.ase import AseAtomsAdaptor

        structure = AseAtomsAdaptor.get_structure(obj)
        formula = structure.composition.reduced_formula
        return check_structure(structure, f"ASE Atoms {position} ({formula})"), formula
    raise ModelError(
        f"input {position} is a {type(obj).__name__}; pass a pymatgen Structure, an ASE Atoms "
        "or the path of a CIF/POSCAR file (or a list of them)"
    )


def _as_structures(structures: Any) -> list[tuple[Structure, str]]:
    if _is_single(structures):
        items = [structures]
    elif isinstance(structures, Iterable):
        items = list(structures)
    else:
        items = [structures]
    return [_to_structure(obj, i) for i, obj in enumerate(items)]


def _element_symbol(element: str) -> str:
    from pymatgen.core import Element

    text = str(element).strip()
    symbol = text[:1].upper() + text[1:].lower()
    try:
        return Element(symbol).symbol
    except ValueError:
        raise ModelError(f"{element!r} is not an element symbol; pass e.g. 'Fe'") from None


# -- model --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to run: ``module`` (eval mode is the caller's job), its checkpoint
    ``meta``, and the ``name`` / ``version`` it was found under (version "" off the zoo)."""

    module: nn.Module
    meta: CheckpointMeta
    name: str
    version: str


def resolve_model(
    model: Any, version: str = "latest", zoo: str | os.PathLike[str] | None = None
) -> LoadedModel:
    """Load ``model``: a zoo name (at ``version``, from ``zoo`` or the default zoo), a
    checkpoint folder, or an already loaded ``(module, meta)`` pair.

    Raises:
        ModelError: a folder that does not exist, an unknown zoo name, or another type.
    """
    from torch import nn

    from xas_models.checkpoint import CheckpointMeta, load_checkpoint
    from xas_models.zoo import load_pretrained_entry

    if isinstance(model, tuple | list) and len(model) == 2:
        module, meta = model
        if not isinstance(module, nn.Module) or not isinstance(meta, CheckpointMeta):
            raise ModelError(
                "model=(module, meta) needs a torch.nn.Module and a CheckpointMeta, got "
                f"({type(module).__name__}, {type(meta).__name__}); pass what "
                "load_pretrained() or load_checkpoint() return"
            )
        return LoadedModel(module, meta, meta.architecture or type(module).__name__, "")
    if isinstance(model, str | os.PathLike):
        path = Path(model)
        if path.is_dir():
            module, meta = load_checkpoint(path)
            return LoadedModel(module, meta, str(path), "")
        if isinstance(model, os.PathLike) or os.sep in str(model):
            raise ModelError(
                f"checkpoint folder {str(model)!r} does not exist; pass an existing checkpoint "
                "folder or a zoo model name (see 'xas models')"
            )
        module, meta, entry = load_pretrained_entry(str(model), version, zoo)
        return LoadedModel(module, meta, entry.name, entry.version)
    raise ModelError(
        f"model must be a zoo name, a checkpoint folder or (module, meta), got "
        f"{type(model).__name__}"
    )


def _run_model(module: nn.Module, features: np.ndarray) -> np.ndarray:
    """Forward ``features`` [n, D] through ``module`` in eval mode without grad -> [n, K]."""
    import torch

    param = next(iter(module.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            out = module(torch.from_numpy(np.ascontiguousarray(features)).to(device, dtype))
    finally:
        module.train(was_training)
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != len(features):
        raise ModelError(
            f"the model returned {getattr(out, 'shape', type(out).__name__)} for "
            f"{len(features)} sites; predict() needs a model mapping (n, D) features to "
            "(n, K) spectra"
        )
    return out.detach().double().cpu().numpy()


# -- featurizers --------------------------------------------------------------------------------


def _missing_backend(name: str, exc: ImportError) -> ModelError:
    extra = _EXTRAS.get(name) or f"xas-features[{getattr(exc, 'extra', name)}]"
    short = extra[extra.index("[") + 1 : -1]
    return ModelError(
        f'the {name!r} featurizer needs the {short} extra: pip install "{extra}" ({exc})'
    )


def _build_featurizer(name: str) -> Any:
    from xas_features import FeaturizerError, get_featurizer

    if name in _FEATURIZER_CACHE:
        return _FEATURIZER_CACHE[name]
    try:
        featurizer = get_featurizer(name)
    except ImportError as exc:
        raise _missing_backend(name, exc) from None
    except FeaturizerError as exc:
        raise ModelError(f"cannot build the {name!r} featurizer: {exc}") from None
    _FEATURIZER_CACHE[name] = featurizer
    return featurizer


def _featurizers(meta: CheckpointMeta, label: str, given: Any) -> list[Any]:
    """The featurizers whose concatenated output the model consumes, key-checked."""
    from xas_features import FeaturizerError, feature_key

    names = meta.featurizer.name.split("+")
    if given is None:
        featurizers = [_build_featurizer(n) for n in names]
    elif isinstance(given, list | tuple):
        featurizers = list(given)
    else:
        featurizers = [given]
    expected = meta.featurizer.key
    try:
        found = "+".join(feature_key(f) for f in featurizers)
    except (FeaturizerError, AttributeError, TypeError) as exc:
        raise ModelError(f"cannot compute the feature key of the featurizer(s): {exc}") from None
    if expected and found != expected:
        raise ModelError(
            f"featurizer mismatch: model {label} was trained on features {expected!r} "
            f"({meta.featurizer.name} {meta.featurizer.version}) but the featurizer here gives "
            f"{found!r}; install the featurizer version the model was trained with, or use a "
            f"model trained on {found!r}"
        )
    return featurizers


def _featurize(featurizers: list[Any], structures: list[Structure], sites: list[int]) -> np.ndarray:
    """Concatenated float32 features ``[n, sum D]`` of site ``sites[i]`` of ``structures[i]``."""
    blocks = []
    for featurizer in featurizers:
        try:
            blocks.append(np.asarray(featurizer.featurize(structures, sites), dtype=np.float32))
        except ImportError as exc:
            raise _missing_backend(str(getattr(featurizer, "name", "?")), exc) from None
    return np.concatenate(blocks, axis=1) if len(blocks) > 1 else blocks[0]


#: ``featurizer.name`` of graph-model checkpoints (xas-train ``data.features: [graph]``)
GRAPH_FEATURIZER = "crystal-graph"


def site_graphs(meta: CheckpointMeta, structures: list[Structure], sites: list[int]) -> list:
    """One crystal graph per ``structures[i]`` with site ``sites[i]`` flagged as the absorber,
    built with the checkpoint's ``training_data.graph_config``."""
    settings = meta.training_data.get("graph_config")
    if not isinstance(settings, dict):
        raise ModelError(
            "this graph checkpoint does not record its crystal-graph settings "
            "(training_data.graph_config); re-train or re-export it with a current xas-train"
        )
    try:
        from xas_features.graphs import CrystalGraphConfig, build_crystal_graph

        config = CrystalGraphConfig(**settings)
        return [build_crystal_graph(s, [i], config) for s, i in zip(structures, sites, strict=True)]
    except ImportError as exc:
        raise ModelError(
            f'graph models need the graph extra: pip install "xas-models[graph]" ({exc})'
        ) from None


def graph_batch(meta: CheckpointMeta, structures: list[Structure], sites: list[int]) -> Any:
    """:func:`site_graphs` collated into one batch."""
    from xas_features.graphs import collate_graphs

    return collate_graphs(site_graphs(meta, structures, sites))


def model_inputs(
    meta: CheckpointMeta,
    structures: list[Structure],
    sites: list[int],
    featurizer: Any = None,
    label: str = "",
) -> Any:
    """What the checkpoint's model consumes for site ``sites[i]`` of ``structures[i]``.

    Per-site feature models get float32 features ``[n, D]`` from the checkpoint's featurizer
    (key-checked); graph models a collated crystal-graph batch (see :func:`graph_batch`).
    """
    if meta.featurizer.name == GRAPH_FEATURIZER:
        return graph_batch(meta, structures, sites)
    featurizers = _featurizers(meta, label or meta.architecture, featurizer)
    return _featurize(featurizers, structures, sites)


def _run_members(module: nn.Module, inputs: Any) -> np.ndarray:
    """Every member's spectra of an ensemble (``module.member_outputs``) for the same inputs
    (features ``[n, D]`` or a graph batch), eval mode, no grad -> float64 ``[M, n, K]``."""
    import torch

    if isinstance(inputs, np.ndarray):
        param = next(iter(module.parameters()))
        inputs = torch.from_numpy(np.ascontiguousarray(inputs)).to(param.device, param.dtype)
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            out = module.member_outputs(inputs)
    finally:
        module.train(was_training)
    return out.detach().double().cpu().numpy()


def _is_ensemble(module: Any) -> bool:
    """True for a forward ensemble (members' outputs and a calibrated spread factor)."""
    return callable(getattr(module, "member_outputs", None)) and hasattr(module, "sigma_scale")


def _run_graph_model(module: nn.Module, batch: Any) -> np.ndarray:
    """Spectra ``[n, K]`` of a graph model (CGXAS, XANE(3)) for a collated batch."""
    import torch

    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            out = module(batch)
    finally:
        module.train(was_training)
    out = out["spectrum"] if isinstance(out, dict) else out
    return out.detach().double().cpu().numpy()


# -- predict ------------------------------------------------------------------------------------


def predict(
    structures: Any,
    element: str | Sequence[str] | None = None,
    model: Any = None,
    version: str = "latest",
    zoo: str | os.PathLike[str] | None = None,
    *,
    featurizer: Any = None,
    symprec: float = 0.01,
) -> list[StructurePrediction]:
    """Predict the spectra of every symmetry-inequivalent absorbing site of each structure.

    Args:
        structures: one or many of: pymatgen ``Structure``, ASE ``Atoms`` (converted with
            pymatgen's ``AseAtomsAdaptor``; ASE itself is optional) or a path (str/Path) of a
            CIF/POSCAR file. Lengths in Angstrom.
        element: absorbing element(s) (``"Fe"`` or ``["Fe", "Ni"]``); ``None`` predicts every
            element of each structure that the model predicts.
        model: a zoo model name (see :func:`~xas_models.zoo.list_pretrained`), a checkpoint
            folder, or ``(module, meta)`` as returned by
            :func:`~xas_models.zoo.load_pretrained`.
        version: zoo version (``"latest"`` = highest); used with a zoo name only.
        zoo: zoo folder or URL (see :mod:`xas_models.zoo`); used with a zoo name only.
        featurizer: featurizer object(s) to use instead of building them from the model's
            metadata (their feature key must still match the model's).
        symprec: symmetry tolerance (Angstrom) for finding inequivalent sites.

    Returns:
        One :class:`StructurePrediction` per structure and element, in input order (elements
        in the order requested, or the model's order when ``element`` is None).

    Raises:
        ModelError: unknown model, an element the model does not predict (naming the model's
            elements), a structure lacking the requested element(s), a featurizer key that
            does not match the model's, or a missing featurizer backend.
        StructureError / FeaturizerError: an unreadable or unusable structure.
    """
    from xas_data.structures import inequivalent_absorbing_sites

    if model is None:
        raise ModelError(
            "no model given; pass model=<zoo name>, a checkpoint folder or (module, meta) "
            "(see 'xas models' for the zoo names)"
        )
    inputs = _as_structures(structures)
    if not inputs:
        return []
    loaded = resolve_model(model, version, zoo)
    meta = loaded.meta
    label = f"{loaded.name} {loaded.version}".strip()
    if element is None:
        requested: list[str] | None = None
    else:
        raw = [element] if isinstance(element, str) else list(element)
        requested = list(dict.fromkeys(_element_symbol(e) for e in raw))
        unknown = [e for e in requested if e not in meta.elements]
        if unknown:
            raise ModelError(
                f"model {label} predicts {meta.elements}, not {', '.join(unknown)}; choose one "
                f"of {meta.elements} or a model trained on {', '.join(unknown)} (see 'xas models')"
            )

    # jobs: (structure position, element, inequivalent sites)
    jobs: list[tuple[int, str, list[Any]]] = []
    for pos, (structure, source) in enumerate(inputs):
        present = {el.symbol for el in structure.composition.elements}
        formula = structure.composition.reduced_formula
        if requested is None:
            elements = [e for e in meta.elements if e in present]
            if not elements:
                raise ModelError(
                    f"{source} ({formula}) contains none of the elements model {label} "
                    f"predicts ({', '.join(meta.elements)}); use a model for "
                    f"{', '.join(sorted(present))}"
                )
        else:
            missing = [e for e in requested if e not in present]
            if missing:
                raise ModelError(
                    f"{source} ({formula}) contains no {', '.join(missing)}; drop --element "
                    "to predict every element of the structure that the model predicts"
                )
            elements = requested
        for el in elements:
            jobs.append((pos, el, inequivalent_absorbing_sites(structure, el, symprec=symprec)))

    grids = {el: meta.grid_for(el) for el in {j[1] for j in jobs}}
    rows_structures = [inputs[pos][0] for pos, _, sites in jobs for _ in sites]
    rows_sites = [s.index for _, _, sites in jobs for s in sites]
    inputs_all = model_inputs(meta, rows_structures, rows_sites, featurizer, label)
    members: np.ndarray | None = None  # ensembles: [M, n, K]
    if _is_ensemble(loaded.module):
        members = _run_members(loaded.module, inputs_all)
        mu_all = members.mean(0)
        scale = float(loaded.module.sigma_scale)
    elif meta.featurizer.name == GRAPH_FEATURIZER:
        mu_all = _run_graph_model(loaded.module, inputs_all)
    else:
        mu_all = _run_model(loaded.module, inputs_all)

    results: list[StructurePrediction] = []
    row = 0
    for pos, el, sites in jobs:
        grid = grids[el]
        if mu_all.shape[1] != grid.n_points:
            raise ModelError(
                f"model {label} outputs {mu_all.shape[1]} points but its {el} grid has "
                f"{grid.n_points}; the checkpoint is inconsistent: re-export it"
            )
        energy = grid.start + grid.step * np.arange(grid.n_points, dtype=np.float64)
        first = row
        site_preds = []
        for site in sites:
            sigma = None if members is None else members[:, row].std(0) * scale
            site_preds.append(
                SitePrediction(
                    int(site.index),
                    int(site.multiplicity),
                    energy.copy(),
                    mu_all[row].copy(),
                    sigma,
                )
            )
            row += 1
        weights = np.array([s.multiplicity for s in site_preds], dtype=np.float64)
        average = (weights[:, None] * np.stack([s.mu for s in site_preds])).sum(0) / weights.sum()
        average_sigma = None
        if members is not None:
            w = weights[None, :, None] / weights.sum()
            average_sigma = (w * members[:, first:row]).sum(1).std(0) * scale
        structure, source = inputs[pos]
        results.append(
            StructurePrediction(
                source=source,
                formula=structure.composition.reduced_formula,
                element=el,
                edge=meta.edge,
                sites=site_preds,
                average_energy=energy,
                average_mu=average,
                model_name=loaded.name,
                model_version=loaded.version,
                structure_index=pos,
                average_sigma=average_sigma,
            )
        )
    return results


# -- writers ------------------------------------------------------------------------------------


def _atomic_write(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` atomically (xas-data's temporary-sibling-then-rename) and return the path."""
    from xas_data.io_utils import atomic_write_bytes

    atomic_write_bytes(path, data)
    return Path(path)


CSV_COLUMNS = (
    "source",
    "formula",
    "element",
    "model",
    "site",
    "multiplicity",
    "energy_eV",
    "mu",
)


#: extra CSV column of ensemble predictions: the calibrated 1-sigma uncertainty of ``mu``
CSV_SIGMA_COLUMN = "sigma"


def write_csv(predictions: Sequence[StructurePrediction], path: str | os.PathLike[str]) -> Path:
    """Write predictions as a long-format CSV, atomically.

    Columns: ``source, formula, element, model, site, multiplicity, energy_eV, mu``: one row
    per energy point of each site spectrum (``site`` = site index) and of the average
    (``site`` = ``"average"``, ``multiplicity`` = number of absorbing atoms in the cell).
    When any prediction carries an uncertainty (ensembles), a last column ``sigma`` holds it
    (empty for predictions without one).
    """
    with_sigma = any(p.average_sigma is not None for p in predictions)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS + ((CSV_SIGMA_COLUMN,) if with_sigma else ()))
    for p in predictions:
        model = f"{p.model_name} {p.model_version}".strip()
        head = (p.source, p.formula, p.element, model)
        spectra = [(str(s.site_index), s.multiplicity, s.energy, s.mu, s.sigma) for s in p.sites]
        spectra.append(("average", p.n_sites, p.average_energy, p.average_mu, p.average_sigma))
        for site, mult, energy, mu, sigma in spectra:
            for k, (e, m) in enumerate(zip(energy, mu, strict=True)):
                row = (*head, site, mult, f"{e:.10g}", f"{m:.8g}")
                if with_sigma:
                    row += ("" if sigma is None else f"{sigma[k]:.8g}",)
                writer.writerow(row)
    return _atomic_write(path, buf.getvalue().encode("utf-8"))


def write_json(predictions: Sequence[StructurePrediction], path: str | os.PathLike[str]) -> Path:
    """Write predictions as JSON, atomically: ``{"predictions": [StructurePrediction.to_dict()]}``
    (energies in eV under ``energy_eV``)."""
    doc = {
        "format": "xas-models predictions",
        "version": 1,
        "predictions": [p.to_dict() for p in predictions],
    }
    return _atomic_write(path, (json.dumps(doc, indent=1) + "\n").encode("utf-8"))


def plot_predictions(
    predictions: Sequence[StructurePrediction], path: str | os.PathLike[str]
) -> Path:
    """Plot each structure/element (site spectra and their average) into one image, atomically;
    ensemble predictions get a shaded +-1 sigma band around the average.

    The format follows the suffix of ``path`` (``.png``, ``.pdf``, ``.svg``...).

    Raises:
        ModelError: matplotlib is not installed (``pip install "xas-models[plot]"``) or there
            is nothing to plot.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ModelError('plotting needs matplotlib: pip install "xas-models[plot]"') from None
    if not predictions:
        raise ModelError("no predictions to plot")
    n = len(predictions)
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(5.0 * ncols, 3.6 * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, p in zip(axes, predictions, strict=False):
        for s in p.sites:
            ax.plot(
                s.energy, s.mu, lw=0.9, alpha=0.8, label=f"site {s.site_index} (x{s.multiplicity})"
            )
        ax.plot(p.average_energy, p.average_mu, color="black", lw=1.8, label="average")
        if p.average_sigma is not None:
            ax.fill_between(
                p.average_energy,
                p.average_mu - p.average_sigma,
                p.average_mu + p.average_sigma,
                color="black",
                alpha=0.2,
                lw=0,
                label="average +- 1 sigma",
            )
        ax.set_title(f"{p.source}: {p.element} {p.edge}-edge", fontsize=10)
        ax.set_xlabel("energy (eV)")
        ax.set_ylabel("mu(E)")
        ax.legend(fontsize=7, frameon=False)
    for ax in axes[n:]:
        ax.set_visible(False)
    dest = Path(path)
    fmt = dest.suffix.lstrip(".").lower() or "png"
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=120)
    return _atomic_write(dest, buf.getvalue())


__all__ = [
    "CSV_COLUMNS",
    "CSV_SIGMA_COLUMN",
    "SitePrediction",
    "StructurePrediction",
    "plot_predictions",
    "predict",
    "write_csv",
    "write_json",
]
