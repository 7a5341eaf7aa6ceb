"""CHGNet transfer features: the absorbing site's atom embedding from the pretrained CHGNet.

The feature of absorbing site ``i`` is CHGNet's 64-d atom feature of atom ``i`` as returned by
``CHGNet(..., return_atom_feas=True)``: the atom features after the second-to-last atom
convolution (the layer CHGNet reads magnetic moments from), before the last convolution and
the energy readout. Learned embedding without unit, float32, shape ``[n_sites, 64]``.

The weights ship inside the chgnet wheel (``CHGNet.load(model_name="0.3.0")``, offline).
Structures are converted once each with CHGNet's ``CrystalGraphConverter`` and
``batch_size`` distinct structures go through one ``CHGNet.forward`` call;
``per_structure_reference`` is the slow path of one ``CHGNet.predict_structure`` call per
structure.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from xas_data.molecules import as_periodic
from xas_features.errors import FeaturizerError, missing_extra
from xas_features.featurizers.base import (
    backend_version,
    check_sites,
    group_by_structure,
    require_ordered,
)

if TYPE_CHECKING:
    from pymatgen.core import Structure

DEFAULT_MODEL = "0.3.0"
FEATURE_DIM = 64


def _chgnet_version() -> str:
    """Installed chgnet version (read from package metadata, without importing chgnet)."""
    return backend_version("chgnet", "chgnet", "chgnet")


class _StopForward(Exception):
    """Raised by a forward hook to end a CHGNet pass once the atom features exist."""


class CHGNetFeaturizer:
    """Absorbing-site atom features of the pretrained CHGNet (64-d, float32).

    Args:
        model_name: pretrained checkpoint shipped with chgnet (``"0.3.0"``, ``"0.2.0"`` or
            ``"r2scan"``).
        batch_size: distinct structures per forward pass (8 is fastest on a CPU core, where
            bigger batches fall out of cache; raise it on a GPU).
        device: torch device of the forward pass (``"cpu"`` is bitwise deterministic).

    The model is loaded on the first ``featurize`` call.
    """

    name = "chgnet"

    def __init__(self, model_name: str = DEFAULT_MODEL, batch_size: int = 8, device: str = "cpu"):
        if int(batch_size) < 1:
            raise FeaturizerError(f"batch_size must be >= 1, got {batch_size}")
        known = ("0.3.0", "0.2.0", "r2scan")
        if model_name not in known:
            raise FeaturizerError(
                f"unknown CHGNet model {model_name!r}; choose one of {list(known)}"
            )
        self.model_name = model_name
        self.version = f"{_chgnet_version()}-model{model_name}"
        self.batch_size = int(batch_size)
        self.device = device
        self._model: Any = None
        self._converter: Any = None

    @property
    def dim(self) -> int:
        """Feature dimension D = 64 (CHGNet atom feature size)."""
        return FEATURE_DIM

    def config(self) -> dict[str, Any]:
        """Settings hashed into the storage key (the batch size does not change the output)."""
        return {
            "model": self.model_name,
            "layer": "atom_fea (before the last atom conv)",
        }

    # -- model -------------------------------------------------------------------------

    @property
    def model(self) -> Any:
        """The ``chgnet.model.CHGNet`` in eval mode (loaded quietly on first use)."""
        if self._model is None:
            try:
                from chgnet.model import CHGNet
            except ImportError as exc:  # pragma: no cover - checked in __init__
                raise missing_extra("chgnet", "chgnet") from exc
            # CHGNet prints "CHGNet v0.3.0 initialized with ... parameters" when built
            with contextlib.redirect_stdout(io.StringIO()):
                model = CHGNet.load(
                    model_name=self.model_name, use_device=self.device, verbose=False
                )
            if int(model.atom_fea_dim) != FEATURE_DIM:
                raise FeaturizerError(
                    f"CHGNet {self.model_name} has {model.atom_fea_dim}-d atom features, "
                    f"expected {FEATURE_DIM}"
                )
            self._model = model.eval()
        return self._model

    @property
    def cutoff(self) -> float:
        """Atom graph cutoff radius of the model in angstrom."""
        return float(self.model.graph_converter.atom_graph_cutoff)

    @property
    def converter(self) -> Any:
        """CHGNet's graph converter with the model's cutoffs; isolated atoms are checked
        here per absorbing site instead of per structure."""
        if self._converter is None:
            from chgnet.graph import CrystalGraphConverter

            reference = self.model.graph_converter
            self._converter = CrystalGraphConverter(
                atom_graph_cutoff=reference.atom_graph_cutoff,
                bond_graph_cutoff=reference.bond_graph_cutoff,
                algorithm=reference.algorithm,
                on_isolated_atoms="ignore",
            )
        return self._converter

    # -- validation --------------------------------------------------------------------

    def _check_structure(self, structure: Structure) -> None:
        """Ordered structure with every element in the model's embedding, else error."""
        formula = structure.composition.reduced_formula
        require_ordered(structure, "CHGNet")
        max_z = int(self.model.atom_embedding.embedding.num_embeddings)
        for site in structure:
            z = int(site.specie.Z)
            if not 1 <= z <= max_z:
                raise FeaturizerError(
                    f"element {site.specie.symbol} (Z={z}) of {formula} is not covered by "
                    f"CHGNet {self.model_name} (Z = 1..{max_z}); drop materials with it"
                )

    def _check_absorbers(self, structure: Structure, graph: Any, sites: Sequence[int]) -> None:
        """Each absorbing site must have a neighbour within the atom graph cutoff."""
        import torch

        atom_graph = graph.atom_graph.reshape(-1, 2)
        degree = torch.bincount(atom_graph[:, 0].long(), minlength=len(structure))
        for site in sites:
            if int(degree[site]) == 0:
                raise FeaturizerError(
                    f"site {site} ({structure[site].specie.symbol}) of "
                    f"{structure.composition.reduced_formula} has no neighbour within the "
                    f"CHGNet cutoff of {self.cutoff:g} A; its features would be meaningless - "
                    "drop this site or check the structure (lattice, units)"
                )

    def _graph(self, structure: Structure, sites: Sequence[int]) -> Any:
        self._check_structure(structure)
        graph = self.converter(structure)
        self._check_absorbers(structure, graph, sites)
        return graph

    # -- featurization -----------------------------------------------------------------

    def featurize(self, structures: Sequence[Structure], sites: Sequence[int]) -> np.ndarray:
        """Atom features of site ``sites[i]`` of ``structures[i]``: float32 ``[n, 64]``.

        Distinct structure objects are converted once; ``batch_size`` of them share one
        forward pass.
        """
        check_sites(structures, sites)
        structures = as_periodic(structures)  # molecules: boxed, vacuum > cutoff
        out = np.zeros((len(structures), FEATURE_DIM), dtype=np.float32)
        if not len(structures):
            return out
        groups = list(group_by_structure(structures).values())
        for lo in range(0, len(groups), self.batch_size):
            chunk = groups[lo : lo + self.batch_size]
            graphs = [
                self._graph(structures[rows[0]], [int(sites[r]) for r in rows]).to(self.device)
                for rows in chunk
            ]
            atom_fea = self.atom_features(graphs)
            offsets = np.cumsum([0] + [int(g.atomic_number.numel()) for g in graphs])
            index = [int(offsets[k]) + int(sites[r]) for k, rows in enumerate(chunk) for r in rows]
            out[[r for rows in chunk for r in rows]] = atom_fea[index]
        return out

    def atom_features(self, graphs: Sequence[Any]) -> np.ndarray:
        """CHGNet ``atom_fea`` of every atom of ``graphs`` in one forward pass.

        The same tensor as ``CHGNet(graphs, return_atom_feas=True)["atom_fea"]`` (output of
        atom convolution ``n_conv - 2``), read by a forward hook that stops the pass there:
        the remaining bond/angle updates, the last atom convolution and the energy readout
        do not influence it and are skipped.

        Args:
            graphs: ``CrystalGraph`` objects on the model's device.

        Returns:
            float32 ``[sum of atoms, 64]``, graphs concatenated in order.
        """
        import torch

        model = self.model
        captured: list[Any] = []

        def stop_after(_module: Any, _inputs: Any, output: Any) -> None:
            captured.append(output)
            raise _StopForward

        handle = model.atom_conv_layers[model.n_conv - 2].register_forward_hook(stop_after)
        try:
            with torch.no_grad():
                model(list(graphs), task="e")
        except _StopForward:
            pass
        finally:
            handle.remove()
        if len(captured) != 1:
            raise FeaturizerError(  # pragma: no cover - chgnet changed its layer order
                f"CHGNet {self.model_name}: expected one pass through atom convolution "
                f"{model.n_conv - 2}, saw {len(captured)}"
            )
        return captured[0].float().cpu().numpy()

    def per_structure_reference(
        self, structures: Sequence[Structure], sites: Sequence[int]
    ) -> np.ndarray:
        """The slow reference: CHGNet's own per-structure prediction, one structure per call.

        Each structure is converted (``CrystalGraphConverter``, as ``predict_structure``
        does) and predicted alone with ``CHGNet.predict_graph(graph, batch_size=1)``.
        Returns float32 ``[n, 64]`` equal to ``featurize`` up to float rounding.
        """
        check_sites(structures, sites)
        structures = as_periodic(structures)  # molecules: boxed, vacuum > cutoff
        import torch

        model = self.model
        out = np.zeros((len(structures), FEATURE_DIM), dtype=np.float32)
        for rows in group_by_structure(structures).values():
            structure = structures[rows[0]]
            graph = self._graph(structure, [int(sites[r]) for r in rows]).to(self.device)
            with torch.no_grad():
                prediction = model.predict_graph(
                    graph, task="e", return_atom_feas=True, batch_size=1
                )
            values = np.asarray(prediction["atom_fea"], dtype=np.float32)
            out[rows] = values[[int(sites[r]) for r in rows]]
        return out


__all__ = ["DEFAULT_MODEL", "CHGNetFeaturizer"]
