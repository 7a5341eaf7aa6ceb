"""M3GNet transfer features: the absorbing site's node embedding from a pretrained potential.

As in OmniXAS, the feature of absorbing site ``i`` is the 64-d node feature of atom ``i``
after the LAST graph convolution (interaction block) of matgl's universal potential
``M3GNet-MP-2021.2.8-PES``, before the readout / energy head. The features carry no unit
(learned embedding), float32, shape ``[n_sites, 64]``.

matgl >= 4 is built on PyTorch Geometric: a structure becomes a ``torch_geometric`` ``Data``
graph through ``matgl.ext.pymatgen.Structure2Graph`` (model ``element_types`` and ``cutoff``),
and ``M3GNet.forward`` runs ``nblocks`` pairs (``three_body_interactions[i]``,
``graph_layers[i]``). This featurizer collates many structure graphs into one
``torch_geometric.data.Batch`` per forward pass and runs the model's own layers in the order
of ``M3GNet.forward``, stopping before the readout, with each block restricted to the bonds
that can reach the absorbing atoms (``M3GNetFeaturizer.absorber_node_features``).
``per_structure_reference`` is the slow one-structure-at-a-time path through matgl's
``M3GNet.predict_structure``; the tests check that both agree to 1e-5.

Weights: ``matgl.load_model("M3GNet-MP-2021.2.8-PES")`` by default (downloaded and cached
by matgl), or a local model folder (``model.json``, ``model.pt``, ``state.pt``) given as
``model_path`` or through the ``XAS_M3GNET_MODEL`` environment variable.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
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

MODEL_NAME = "M3GNet-MP-2021.2.8-PES"
MODEL_ENV = "XAS_M3GNET_MODEL"
MODEL_FILES = ("model.json", "model.pt", "state.pt")
FEATURE_DIM = 64


def _matgl_version() -> str:
    """Installed matgl version (read from package metadata, without importing matgl)."""
    return backend_version("matgl", "matgl", "m3gnet")


def resolve_model_path(model_path: str | os.PathLike[str] | None) -> Path | None:
    """The local model folder to load, or ``None`` for ``matgl.load_model(MODEL_NAME)``.

    ``model_path`` wins over the ``XAS_M3GNET_MODEL`` environment variable. A folder that
    does not exist or lacks one of ``model.json``/``model.pt``/``state.pt`` raises
    ``FeaturizerError`` naming the path and the fix.
    """
    source = "model_path"
    if model_path is None or str(model_path) == "":
        env = os.environ.get(MODEL_ENV, "")
        if not env:
            return None
        model_path, source = env, f"${MODEL_ENV}"
    path = Path(model_path).expanduser()
    missing = [name for name in MODEL_FILES if not (path / name).is_file()]
    if missing:
        what = "does not exist" if not path.is_dir() else f"lacks {', '.join(missing)}"
        raise FeaturizerError(
            f"M3GNet model folder {path} (from {source}) {what}; point {source} at a folder "
            f"holding the matgl model {MODEL_NAME} ({', '.join(MODEL_FILES)}), or unset "
            f"model_path and ${MODEL_ENV} to use matgl.load_model({MODEL_NAME!r}) "
            "(downloads and caches the weights)"
        )
    return path


class M3GNetFeaturizer:
    """Absorbing-site node features of the pretrained M3GNet potential (64-d, float32).

    Args:
        model_path: local matgl model folder (``model.json``, ``model.pt``, ``state.pt``) of
            ``M3GNet-MP-2021.2.8-PES``; default: ``$XAS_M3GNET_MODEL``, else
            ``matgl.load_model("M3GNet-MP-2021.2.8-PES")``. Not part of ``config()``, so the
            storage key is the same wherever the weights come from.
        batch_size: distinct structures collated into one graph per forward pass.
        device: torch device of the forward pass (``"cpu"`` is bitwise deterministic).

    The model is loaded on the first ``featurize`` call (``import matgl`` takes seconds).
    """

    name = "m3gnet"

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        batch_size: int = 32,
        device: str = "cpu",
    ) -> None:
        if int(batch_size) < 1:
            raise FeaturizerError(f"batch_size must be >= 1, got {batch_size}")
        self.version = f"matgl{_matgl_version()}-MP-2021.2.8"
        self.model_path = resolve_model_path(model_path)
        self.batch_size = int(batch_size)
        self.device = device
        self._model: Any = None  # matgl M3GNet (the potential's graph model), once loaded

    @property
    def dim(self) -> int:
        """Feature dimension D = 64 (M3GNet node embedding size)."""
        return FEATURE_DIM

    def config(self) -> dict[str, Any]:
        """Settings hashed into the storage key: model and layer (not the local path or the
        batch size, which do not change the output)."""
        return {
            "model": MODEL_NAME,
            "layer": "graph_layers[-1].node_feat",
        }

    # -- model -------------------------------------------------------------------------

    @property
    def model(self) -> Any:
        """The ``matgl.models.M3GNet`` graph model in eval mode (loaded on first use)."""
        if self._model is None:
            self._model = self._load()
        return self._model

    def _load(self) -> Any:
        try:
            import matgl
        except ImportError as exc:  # pragma: no cover - checked in __init__
            raise missing_extra("matgl", "m3gnet") from exc
        major = matgl.__version__.split(".")[0]
        if major.isdigit() and int(major) < 4:
            raise FeaturizerError(
                f"matgl {matgl.__version__} is too old: the M3GNet featurizer needs matgl>=4 "
                "(PyTorch Geometric graphs); upgrade with: pip install -U 'matgl>=4'"
            )
        source = str(self.model_path) if self.model_path is not None else MODEL_NAME
        try:
            loaded = matgl.load_model(source)
        except Exception as exc:
            raise FeaturizerError(
                f"could not load the M3GNet model from {source}: {exc}; set model_path or "
                f"${MODEL_ENV} to a local folder holding {MODEL_NAME} "
                f"({', '.join(MODEL_FILES)}), or allow matgl to download it"
            ) from exc
        model = getattr(loaded, "model", loaded)
        if type(model).__name__ != "M3GNet" or not hasattr(model, "graph_layers"):
            raise FeaturizerError(
                f"{source} holds a {type(model).__name__} model, not M3GNet; "
                f"use the matgl model {MODEL_NAME}"
            )
        if getattr(model, "include_state", False):
            raise FeaturizerError(
                f"{source}: this M3GNet uses global state features; use the matgl model "
                f"{MODEL_NAME}"
            )
        if int(getattr(model, "units", FEATURE_DIM)) != FEATURE_DIM:
            raise FeaturizerError(
                f"{source}: M3GNet node features are {model.units}-d, expected {FEATURE_DIM}; "
                f"use the matgl model {MODEL_NAME}"
            )
        return model.to(self.device).eval()

    @property
    def cutoff(self) -> float:
        """Graph cutoff radius of the model in angstrom."""
        return float(self.model.cutoff)

    def _converter(self) -> Any:
        from matgl.ext.pymatgen import Structure2Graph

        return Structure2Graph(element_types=tuple(self.model.element_types), cutoff=self.cutoff)

    # -- validation --------------------------------------------------------------------

    def _check_structure(self, structure: Structure) -> None:
        """Ordered structure with every element known to the model, else FeaturizerError."""
        formula = structure.composition.reduced_formula
        require_ordered(structure, "M3GNet")
        known = set(self.model.element_types)
        for site in structure:
            symbol = site.specie.symbol
            if symbol not in known:
                raise FeaturizerError(
                    f"element {symbol} of {formula} is not covered by {MODEL_NAME} "
                    f"({len(known)} elements); drop materials with {symbol}"
                )

    def _check_absorbers(self, structure: Structure, graph: Any, sites: Sequence[int]) -> None:
        """Each absorbing site must have a neighbour within the model cutoff."""
        import torch

        degree = torch.bincount(graph.edge_index[0].long(), minlength=len(structure))
        for site in sites:
            if int(degree[site]) == 0:
                raise FeaturizerError(
                    f"site {site} ({structure[site].specie.symbol}) of "
                    f"{structure.composition.reduced_formula} has no neighbour within the "
                    f"M3GNet cutoff of {self.cutoff:g} A; its features would be meaningless - "
                    "drop this site or check the structure (lattice, units)"
                )

    # -- featurization -----------------------------------------------------------------

    def featurize(self, structures: Sequence[Structure], sites: Sequence[int]) -> np.ndarray:
        """Node features of site ``sites[i]`` of ``structures[i]``: float32 ``[n, 64]``.

        Distinct structure objects are converted once and collated ``batch_size`` at a time
        into one graph per forward pass (see ``absorber_node_features``).
        """
        check_sites(structures, sites)
        structures = as_periodic(structures)  # molecules: boxed, vacuum > cutoff
        out = np.zeros((len(structures), FEATURE_DIM), dtype=np.float32)
        if not len(structures):
            return out
        import torch
        from torch_geometric.data import Batch

        converter = self._converter()
        groups = list(group_by_structure(structures).values())
        for lo in range(0, len(groups), self.batch_size):
            chunk = groups[lo : lo + self.batch_size]
            graphs, lattices, nodes, rows = [], [], [], []
            offset = 0
            for group in chunk:
                structure = structures[group[0]]
                group_sites = [int(sites[r]) for r in group]
                self._check_structure(structure)
                graph, lattice, _ = converter.get_graph(structure)
                self._check_absorbers(structure, graph, group_sites)
                graphs.append(graph)
                lattices.append(lattice[0])
                nodes.extend(offset + site for site in group_sites)
                rows.extend(group)
                offset += len(structure)
            batch = Batch.from_data_list(graphs)
            lattice = torch.stack(lattices)
            out[rows] = self.absorber_node_features(batch, lattice, torch.tensor(nodes))
        return out

    def absorber_node_features(self, batch: Any, lattice: Any, nodes: Any) -> np.ndarray:
        """Node features after the last M3GNet block of the atoms ``nodes`` of ``batch``.

        Runs the model's own layers (bond expansion, three-body line graph and basis,
        embedding, ``three_body_interactions[i]`` + ``graph_layers[i]``) exactly as
        ``M3GNet.forward`` does, minus the readout, and prunes each block to the bonds that
        can reach the requested atoms: block ``L`` (last) only updates bonds leaving the
        absorbing atoms ``S_L``, block ``l`` the bonds leaving
        ``S_l = S_(l+1) + neighbours of S_(l+1)``. M3GNet aggregates bond messages onto the
        bond's source atom and three-body terms over bond pairs sharing that source atom,
        so the skipped bonds never influence the requested rows (checked against
        ``M3GNet.predict_structure`` in the tests).

        Args:
            batch: collated ``torch_geometric`` batch of ``Structure2Graph`` graphs.
            lattice: float32 ``[B, 3, 3]`` lattice matrices (angstrom), one per graph.
            nodes: int ``[n]`` batch-global atom indices to return.

        Returns:
            float32 ``[n, 64]`` node features (no unit).
        """
        import torch
        from matgl.graph._compute import (
            compute_pair_vector_and_distance,
            compute_theta_and_phi,
            create_line_graph,
        )
        from matgl.utils.cutoff import polynomial_cutoff

        model, device = self.model, self.device
        with torch.no_grad():
            batch = batch.to(device)
            lattice = lattice.to(device=device, dtype=torch.float32)
            nodes = nodes.to(device=device, dtype=torch.long)
            edge_index = batch.edge_index
            src, dst = edge_index[0].long(), edge_index[1].long()
            node_batch = batch.batch.long()
            edge_batch = node_batch[src]
            num_nodes, num_bonds, num_graphs = batch.num_nodes, edge_index.size(1), batch.num_graphs
            # cartesian positions and periodic image shifts (angstrom)
            pos = torch.bmm(batch.frac_coords.unsqueeze(1), lattice[node_batch]).squeeze(1)
            offshift = torch.bmm(batch.pbc_offset.unsqueeze(1), lattice[edge_batch]).squeeze(1)

            bond_vec, bond_dist = compute_pair_vector_and_distance(pos, edge_index, offshift)
            rbf = model.bond_expansion(bond_dist)
            line_graph = create_line_graph(
                edge_index, bond_dist, bond_vec, offshift, num_nodes, model.threebody_cutoff
            )
            line = line_graph["line_edge_index"].long()
            n_triple = line_graph["n_triple_ij"]
            angles = compute_theta_and_phi(bond_vec, bond_dist, line)
            three_basis = model.basis_expansion(
                angles["triple_bond_lengths"], angles["cos_theta"], angles["phi"]
            )
            three_cutoff = polynomial_cutoff(bond_dist, model.threebody_cutoff)
            node_feat, edge_feat, state_feat = model.embedding(batch.node_type, rbf, None)

            # bonds each block must update, from the last block backwards
            needed = torch.zeros(num_nodes, dtype=torch.bool, device=device)
            needed[nodes] = True
            keeps = []
            for _ in range(model.n_blocks):
                keep = needed[src]
                keeps.append(keep)
                needed = needed.clone()
                needed[dst[keep]] = True
            keeps.reverse()

            for block, keep in enumerate(keeps):
                bonds = keep.nonzero().squeeze(1)
                triples = keep[line[0]]
                if not bool(keep[line[1][triples]].all()):  # pragma: no cover - matgl changed
                    raise FeaturizerError(
                        "matgl's three-body line graph no longer pairs bonds of one source "
                        f"atom; the pruned M3GNet forward needs updating ({self.version})"
                    )
                renumber = torch.full((num_bonds,), -1, dtype=torch.long, device=device)
                renumber[bonds] = torch.arange(bonds.numel(), device=device)
                sub_edge = model.three_body_interactions[block](
                    dst[bonds],
                    renumber[line[:, triples]],
                    n_triple[bonds],
                    bonds.numel(),
                    three_basis[triples],
                    three_cutoff[bonds],
                    node_feat,
                    edge_feat[bonds],
                )
                sub_edge, node_feat, state_feat = model.graph_layers[block](
                    edge_index[:, bonds],
                    sub_edge,
                    node_feat,
                    state_feat,
                    rbf[bonds],
                    node_batch,
                    edge_batch[bonds],
                    num_nodes,
                    num_graphs,
                )
                edge_feat = edge_feat.index_copy(0, bonds, sub_edge)
            return node_feat[nodes].float().cpu().numpy()

    def per_structure_reference(
        self, structures: Sequence[Structure], sites: Sequence[int]
    ) -> np.ndarray:
        """The slow reference: one ``M3GNet.predict_structure`` call per structure.

        Reads the node features of the last graph convolution from the model's
        ``feature_dict["gc_<nblocks>"]`` (as OmniXAS did, one structure at a time); the
        graph converter passed to ``predict_structure`` is matgl's ``Structure2Graph`` plus
        the same absorber checks as ``featurize``. CPU only (``predict_structure`` builds
        its graph on the CPU). Returns float32 ``[n, 64]`` equal to ``featurize`` up to
        float rounding.
        """
        check_sites(structures, sites)
        structures = as_periodic(structures)  # molecules: boxed, vacuum > cutoff
        import torch

        model = self.model
        out = np.zeros((len(structures), FEATURE_DIM), dtype=np.float32)
        last = f"gc_{model.n_blocks}"
        for rows in group_by_structure(structures).values():
            structure = structures[rows[0]]
            self._check_structure(structure)
            checked = _CheckedConverter(self, [int(sites[r]) for r in rows])
            with torch.no_grad():
                model.predict_structure(structure, graph_converter=checked)
            node_feat = model.feature_dict[last]["node_feat"].float().cpu().numpy()
            out[rows] = node_feat[[int(sites[r]) for r in rows]]
        return out


class _CheckedConverter:
    """matgl's ``Structure2Graph`` that also checks the absorbing sites (graph built once)."""

    def __init__(self, featurizer: M3GNetFeaturizer, sites: Sequence[int]) -> None:
        self.featurizer = featurizer
        self.sites = sites
        self.converter = featurizer._converter()

    def get_graph(self, structure: Structure) -> tuple[Any, Any, Any]:
        graph, lattice, state = self.converter.get_graph(structure)
        self.featurizer._check_absorbers(structure, graph, self.sites)
        return graph, lattice, state


__all__ = ["MODEL_ENV", "MODEL_NAME", "M3GNetFeaturizer", "resolve_model_path"]
