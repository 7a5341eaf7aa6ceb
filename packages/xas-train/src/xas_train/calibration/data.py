"""Measured spectra paired with the inputs of a pretrained forward model.

A measured spectrum averages every absorbing site of its sample, so each spectrum is paired
with the model inputs of all symmetry-inequivalent absorbing sites of its linked structure
and their multiplicities: the model's prediction for the spectrum is the multiplicity-weighted
mean of its site predictions (as in :func:`xas_models.predict`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xas_train.errors import TrainError


@dataclass
class MeasuredSet:
    """Measured spectra of one element with the model inputs of their sites.

    Attributes:
        element: absorbing element.
        energy: the model's energy grid for ``element`` (eV), [K].
        y: measured edge-step-normalised spectra interpolated on ``energy``, float32 [N, K].
        names: sample name of each spectrum, [N].
        compounds: reduced formula of the linked structure (groups repeated measurements), [N].
        material_ids: store material id of each spectrum, [N].
        site_inputs: per spectrum, the model inputs of its inequivalent absorbing sites
            (features float32 [n_sites, D], or a list of crystal graphs).
        weights: per spectrum, the site multiplicities normalised to sum 1, [n_sites].
        is_graph: inputs are crystal graphs.
        provenance: where the measured data came from (store, samples, beamlines).
    """

    element: str
    energy: np.ndarray
    y: np.ndarray
    names: list[str]
    compounds: list[str]
    material_ids: list[str]
    site_inputs: list[Any]
    weights: list[np.ndarray]
    is_graph: bool
    provenance: dict[str, Any]

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def batch(self, rows: np.ndarray) -> tuple[Any, torch.Tensor]:
        """Model inputs of every site of spectra ``rows`` and the averaging matrix
        ``[len(rows), n_sites_total]`` (row i averages spectrum i's sites)."""
        rows = [int(r) for r in rows]
        counts = [len(self.weights[r]) for r in rows]
        avg = torch.zeros(len(rows), sum(counts))
        start = 0
        for i, (r, n) in enumerate(zip(rows, counts, strict=True)):
            avg[i, start : start + n] = torch.from_numpy(self.weights[r]).float()
            start += n
        if self.is_graph:
            from xas_features.graphs import collate_graphs

            return collate_graphs([g for r in rows for g in self.site_inputs[r]]), avg
        x = np.concatenate([self.site_inputs[r] for r in rows]).astype(np.float32)
        return torch.from_numpy(x), avg


def forward_average(module: torch.nn.Module, inputs: Any, avg: torch.Tensor) -> torch.Tensor:
    """Site-averaged predicted spectra ``[n, K]`` (differentiable)."""
    out = module(inputs)
    out = out["spectrum"] if isinstance(out, dict) else out
    return avg.to(out.dtype) @ out


def load_measured_set(
    store: str | Path, element: str, meta: Any, symprec: float = 0.01, split: str | None = None
) -> MeasuredSet:
    """Read the ``EXP`` spectra of ``element`` from an xas-data store (see
    ``xas-data ingest-measured``) and compute the inputs of the checkpoint ``meta``'s model.

    Raises:
        TrainError: no EXP spectra of ``element``, spectra without a linked structure, or a
            model that does not predict ``element``.
    """
    from xas_data.store import XASDataset
    from xas_data.structures import inequivalent_absorbing_sites
    from xas_models import model_inputs
    from xas_models.predict import GRAPH_FEATURIZER, site_graphs

    if element not in meta.elements:
        raise TrainError(
            f"the pretrained model predicts {meta.elements}, not {element}; choose a model "
            f"trained on {element} simulations"
        )
    path = Path(store)
    if not path.exists():
        raise TrainError(
            f"measured store {str(path)!r} not found; make it with `xas-data ingest-measured "
            "FILES --out STORE`"
        )
    ds = XASDataset.open(path)
    if (element, "EXP") not in ds.groups():
        present = sorted(e for e, f in ds.groups() if f == "EXP")
        raise TrainError(
            f"{path} holds no EXP spectra of {element} (EXP elements: {present}); ingest "
            f"measured {element} spectra with `xas-data ingest-measured`"
        )
    sel = ds.select(element, "EXP", split)
    if len(sel) == 0:
        raise TrainError(f"no EXP {element} spectra in split {split!r} of {path}")
    grid = meta.grid_for(element)
    energy = grid.start + grid.step * np.arange(grid.n_points)
    y_store = sel.intensities().astype(np.float64)
    y = np.stack([np.interp(energy, sel.energy, row) for row in y_store]).astype(np.float32)
    cols = sel.sites()
    sources = ds.root["materials/source"][:]
    metas = [json.loads(sources[int(m)]) if sources[int(m)] else {} for m in cols["material"]]
    names, compounds, mids, structures, site_rows, weights = [], [], [], [], [], []
    unlinked = []
    for material, source in zip(cols["material"], metas, strict=True):
        material = int(material)
        structure = ds.structure(material)
        mid = str(ds.material_ids[material])
        if structure is None or len(structure) == 0:
            unlinked.append(source.get("sample", mid))
            continue
        sites = inequivalent_absorbing_sites(structure, element, symprec=symprec)
        mult = np.array([s.multiplicity for s in sites], dtype=np.float64)
        names.append(str(source.get("sample", mid)))
        compounds.append(structure.composition.reduced_formula)
        mids.append(mid)
        structures.append(structure)
        site_rows.append([s.index for s in sites])
        weights.append(mult / mult.sum())
    if unlinked:
        raise TrainError(
            f"{len(unlinked)} EXP {element} spectra have no linked structure ({unlinked[:5]}); "
            "re-ingest them with --cif SAMPLE=PATH or without --keep-unmatched"
        )
    is_graph = meta.featurizer.name == GRAPH_FEATURIZER
    flat_structures = [s for s, rows in zip(structures, site_rows, strict=True) for _ in rows]
    flat_sites = [i for rows in site_rows for i in rows]
    if is_graph:
        flat = site_graphs(meta, flat_structures, flat_sites)
    else:
        flat = np.asarray(model_inputs(meta, flat_structures, flat_sites), dtype=np.float32)
    site_inputs, start = [], 0
    for rows in site_rows:
        site_inputs.append(flat[start : start + len(rows)])
        start += len(rows)
    beamlines = sorted({m.get("beamline", "") for m in metas} - {""})
    files = sorted({Path(str(m.get("source_file", ""))).name for m in metas} - {""})
    provenance = {
        "store": str(path.resolve()),
        "dataset": ds.name,
        "license": str(ds.attrs.get("license", "")),
        "n_spectra": len(names),
        "samples": sorted(set(names)),
        "compounds": sorted(set(compounds)),
        "beamlines": beamlines,
        "source_files": files,
        "structures": "AMCSD mineral CIFs (larixite) linked by name/formula",
    }
    return MeasuredSet(
        element, energy, y, names, compounds, mids, site_inputs, weights, is_graph, provenance
    )
