"""CGXAS: a crystal-graph network predicting site XANES spectra (after Lin et al.).

Input is a crystal graph from :func:`xas_features.graphs.build_crystal_graph` (or a batch of
them from ``collate_graphs``); output is one spectrum per absorbing site (``absorber_mask``),
``output_dim`` values of mu(E) >= 0 on the model's energy grid (eV grid stored in the
checkpoint metadata, not in the model).

Architecture::

    h0 = Linear(x)                                         node embedding    [N, H]
    e  = edge basis(|r_ij|)                                edge features     [E, D]
    for t = 1..n_conv:                                     gated conv modules
        z_ij = [h_i, h_j, e_ij]                            for edge j -> i (source j, target i)
        m_i  = sum_j sigmoid(W_f z_ij + b_f) * softplus(W_s z_ij + b_s)    (index_add_)
        h_t  = h_{t-1} + SiLU(W_p Norm(m_i) + b_p)         norm: LayerNorm or BatchNorm1d
    v  = sum_{t=1..n_conv} h_t / t!                        factorial-weighted node vectors
    y  = MLP([v_a, onehot(element of a)])                  for each absorber a: SiLU hidden,
                                                           ReLU output -> mu(E) >= 0

Edge features (``edge_features``), functions of the interatomic distance r (Angstrom) only, so
every feature is invariant under rotations, translations, site permutations and supercells:

* ``"gaussian"``: ``exp(-((r - mu_k) / w)^2)``, ``n_gaussians`` centres ``mu_k`` evenly spaced
  on ``[0, cutoff]``, width ``w`` = the centre spacing.
* ``"plane_wave"``: a radial plane-wave basis. A plane wave ``exp(i k.r)`` is not rotation
  invariant; its average over all directions of ``k`` is the spherical Bessel function
  ``j0(k r) = sin(k r) / (k r)`` (the cos(k.r) part averages to j0, the sin(k.r) part to 0). We
  use ``j0(k_n r)`` with ``k_n = n pi / cutoff``, ``n = 1..n_plane_waves`` (1/Angstrom): the
  standing waves of a sphere of radius ``cutoff``, an orthogonal basis for radial functions
  that also represents the oscillating (EXAFS-like) ``sin(2 k r)`` dependence of scattering.
* ``"both"``: the two concatenated (``n_gaussians + n_plane_waves`` features).

Element mask: one network serves every absorbing element in ``elements``. The site vector of
an absorber is concatenated with the one-hot vector of its element's position in ``elements``
before the MLP head, so the head's first layer holds a learnable per-element bias (the
element-conditioning); the absorber's element is read from ``batch.z``. Absorbers of an element
not in ``elements`` raise :class:`ModelError`.

Only plain torch ops are used (``index_add_``); no pyg-lib / torch-scatter.

Mixed precision: under ``torch.autocast`` (fp32 weights) the Linear layers of the gates,
perceptrons and head run in bf16/fp16; the edge basis, message sums, norms, the residual
node vectors and the head's output layer stay fp32 (:mod:`xas_models.precision`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import nn

from xas_models.configured import ConfiguredModel
from xas_models.errors import ModelError
from xas_models.precision import precise, working_dtype
from xas_models.registry import register_model

if TYPE_CHECKING:
    from torch_geometric.data import Batch, Data

#: Largest atomic number handled by the element lookup table.
MAX_Z = 118


class CGXASConfig(BaseModel):
    """Validated hyper-parameters of :class:`CGXAS`. Unknown keys are rejected.

    Attributes:
        node_dim: node feature size F of the graphs (``CrystalGraphConfig.node_dim``), > 0.
        output_dim: energy points of the predicted spectrum (> 0), default 100.
        hidden_dim: width H of the node vectors (> 0), default 64.
        n_conv: number of gated graph-convolution modules (>= 1), default 5.
        edge_features: ``"gaussian"``, ``"plane_wave"`` or ``"both"`` (module docstring).
        n_gaussians: number of Gaussian distance features (> 0), default 64.
        cutoff: graph cutoff radius in Angstrom (> 0), default 8.0; Gaussian centres span
            [0, cutoff] and plane-wave numbers are ``n pi / cutoff``.
        n_plane_waves: number of radial plane-wave features (> 0), default 16.
        mlp_hidden: widths of the head's hidden layers (each > 0), default [128, 128].
        elements: absorbing element symbols the network predicts (non-empty, unique).
        dropout: dropout probability after each hidden layer of the head, in [0, 1).
        norm: normalisation in the conv modules, ``"layer"`` (default) or ``"batch"``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    node_dim: int = Field(gt=0)
    output_dim: int = Field(default=100, gt=0)
    hidden_dim: int = Field(default=64, gt=0)
    n_conv: int = Field(default=5, ge=1)
    edge_features: Literal["gaussian", "plane_wave", "both"] = "gaussian"
    n_gaussians: int = Field(default=64, gt=0)
    cutoff: float = Field(default=8.0, gt=0)
    n_plane_waves: int = Field(default=16, gt=0)
    mlp_hidden: list[int] = Field(default_factory=lambda: [128, 128])
    elements: list[str] = Field(min_length=1)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    norm: Literal["batch", "layer"] = "layer"

    @field_validator("mlp_hidden")
    @classmethod
    def _positive_widths(cls, v: list[int]) -> list[int]:
        bad = [w for w in v if w <= 0]
        if bad:
            raise ValueError(f"every hidden width must be > 0, got {bad}")
        return v

    @field_validator("elements")
    @classmethod
    def _known_elements(cls, v: list[str]) -> list[str]:
        from pymatgen.core.periodic_table import Element

        bad = [s for s in v if not Element.is_valid_symbol(s)]
        if bad:
            raise ValueError(f"unknown element symbol(s) {bad}")
        if len(set(v)) != len(v):
            raise ValueError(f"duplicate element symbols in {v}")
        return v

    @property
    def edge_dim(self) -> int:
        """Number of edge features D."""
        return {
            "gaussian": self.n_gaussians,
            "plane_wave": self.n_plane_waves,
            "both": self.n_gaussians + self.n_plane_waves,
        }[self.edge_features]


_FIELD_HINTS: dict[str, str] = {
    "node_dim": "an integer > 0 (CrystalGraphConfig.node_dim)",
    "output_dim": "an integer > 0 (number of energy points, default 100)",
    "hidden_dim": "an integer > 0, default 64",
    "n_conv": "an integer >= 1, default 5",
    "edge_features": "one of 'gaussian', 'plane_wave', 'both'",
    "n_gaussians": "an integer > 0, default 64",
    "cutoff": "a float > 0 (Angstrom), default 8.0",
    "n_plane_waves": "an integer > 0, default 16",
    "mlp_hidden": "a list of integers > 0, e.g. [128, 128]",
    "elements": "a non-empty list of unique element symbols, e.g. ['Fe', 'Cu']",
    "dropout": "a float in [0, 1), default 0.0",
    "norm": "one of 'layer', 'batch'",
}


class EdgeBasis(nn.Module):
    """Rotation-invariant edge features of distances: ``[E]`` Angstrom -> ``[E, D]``."""

    def __init__(self, config: CGXASConfig) -> None:
        super().__init__()
        self.kind = config.edge_features
        centres = torch.linspace(0.0, config.cutoff, config.n_gaussians)
        width = config.cutoff / max(config.n_gaussians - 1, 1)
        self.register_buffer("centres", centres, persistent=False)
        self.gamma = 1.0 / width**2
        n = torch.arange(1, config.n_plane_waves + 1, dtype=torch.float32)
        self.register_buffer("wavenumbers", n * math.pi / config.cutoff, persistent=False)

    def forward(self, dist: torch.Tensor) -> torch.Tensor:
        """Features ``[E, D]`` of distances ``dist`` ``[E]`` (Angstrom), in ``dist``'s dtype
        (at least fp32: the centres and wavenumbers are never rounded to 16 bits)."""
        dtype = torch.promote_types(dist.dtype, torch.float32)
        dist = dist.to(dtype).unsqueeze(-1)
        feats = []
        if self.kind in ("gaussian", "both"):
            feats.append(torch.exp(-self.gamma * (dist - self.centres.to(dtype)) ** 2))
        if self.kind in ("plane_wave", "both"):
            # j0(k r) = sin(k r) / (k r); torch.sinc(x) = sin(pi x) / (pi x), finite at r = 0
            feats.append(torch.sinc(dist * self.wavenumbers.to(dtype) / math.pi))
        return torch.cat(feats, dim=-1)


class GatedConv(nn.Module):
    """One gated graph-convolution module (CGCNN-style gate, norm, perceptron, residual).

    ``h [N, H], e [E, D], edge_index [2, E] (source j, target i) -> h' [N, H]``.
    """

    def __init__(self, hidden_dim: int, edge_dim: int, norm: str) -> None:
        super().__init__()
        self.gate = nn.Linear(2 * hidden_dim + edge_dim, 2 * hidden_dim)
        self.norm: nn.Module = (
            nn.LayerNorm(hidden_dim) if norm == "layer" else nn.BatchNorm1d(hidden_dim)
        )
        self.perceptron = nn.Linear(hidden_dim, hidden_dim)
        self.act = nn.SiLU()
        self.softplus = nn.Softplus()

    def forward(self, h: torch.Tensor, e: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        """One update; the gate and perceptron may run in 16 bits under autocast, while the
        message sum, the norm and the residual stream ``h`` stay in ``h``'s dtype (fp32)."""
        src, dst = edge_index[0], edge_index[1]
        z = torch.cat((h[dst], h[src], e.to(h.dtype)), dim=-1)
        filt, core = self.gate(z).chunk(2, dim=-1)
        msg = torch.sigmoid(filt) * self.softplus(core)
        agg = torch.zeros_like(h).index_add_(0, dst, msg.to(h.dtype))
        return h + self.act(self.perceptron(precise(self.norm, agg))).to(h.dtype)


@register_model("cgxas")
class CGXAS(ConfiguredModel, nn.Module):
    """CGXAS crystal-graph network: crystal graph -> ``[n_absorbers, output_dim]`` mu(E) >= 0."""

    config_class = CGXASConfig
    config_name = "cgxas"
    config_hints = _FIELD_HINTS
    config_example = "{'node_dim': 111, 'elements': ['Fe']}"

    def __init__(self, config: CGXASConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Linear(config.node_dim, config.hidden_dim)
        self.edge_basis = EdgeBasis(config)
        self.convs = nn.ModuleList(
            GatedConv(config.hidden_dim, config.edge_dim, config.norm) for _ in range(config.n_conv)
        )
        self.register_buffer(
            "conv_weights",
            torch.tensor([1.0 / math.factorial(t) for t in range(1, config.n_conv + 1)]),
            persistent=False,
        )
        layers: list[nn.Module] = []
        width_in = config.hidden_dim + len(config.elements)
        for width in config.mlp_hidden:
            layers += [nn.Linear(width_in, width), nn.SiLU(), nn.Dropout(config.dropout)]
            width_in = width
        layers += [nn.Linear(width_in, config.output_dim), nn.ReLU()]
        self.head = nn.Sequential(*layers)
        from pymatgen.core.periodic_table import Element

        lookup = torch.full((MAX_Z + 1,), -1, dtype=torch.long)
        for i, symbol in enumerate(config.elements):
            lookup[Element(symbol).Z] = i
        self.register_buffer("element_index", lookup, persistent=False)

    @torch.no_grad()
    def init_output(self, mean_spectrum: torch.Tensor, weight_scale: float = 0.1) -> None:
        """Start the head's output layer at ``mean_spectrum`` ``[output_dim]``.

        The output layer's bias is set to the mean training spectrum and its weights are
        scaled by ``weight_scale``, so the ReLU output starts in its linear regime for every
        energy point (from a default init about half the outputs start at zero with no
        gradient, and training then needs ~10x more epochs to beat the mean spectrum).
        """
        last = self.head[-2]
        mean = torch.as_tensor(mean_spectrum, dtype=last.bias.dtype).reshape(-1)
        if mean.numel() != last.bias.numel():
            raise ModelError(
                f"mean spectrum has {mean.numel()} points, the model outputs {last.bias.numel()}"
            )
        last.bias.copy_(mean)
        last.weight.mul_(weight_scale)

    def node_vectors(self, batch: Data | Batch) -> torch.Tensor:
        """Factorial-weighted sum of the conv-module outputs, ``[N, hidden_dim]``."""
        x = batch.x
        if x.ndim != 2 or x.shape[1] != self.config.node_dim:
            raise ModelError(
                f"expected node features of shape (N, {self.config.node_dim}), got "
                f"{tuple(x.shape)}; build the graphs with the CrystalGraphConfig this model "
                "was configured for (node_dim = max_z + 11)"
            )
        dtype = working_dtype(self)
        h = self.embed(x.to(dtype)).to(dtype)
        e = self.edge_basis(batch.edge_dist)  # distances and basis in full precision
        out = torch.zeros_like(h)
        for weight, conv in zip(self.conv_weights, self.convs, strict=True):
            h = conv(h, e, batch.edge_index)
            out = out + weight * h
        return out

    def _absorber_elements(self, batch: Data | Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(absorber node indices ``[A]``, their element index in ``elements`` ``[A]``)."""
        nodes = batch.absorber_mask.nonzero().flatten()
        z = batch.z[nodes]
        if bool((z > MAX_Z).any()) or bool((z < 0).any()):
            raise ModelError(f"atomic numbers outside 0..{MAX_Z} among absorbers: {z.tolist()}")
        idx = self.element_index[z]
        if bool((idx < 0).any()):
            from pymatgen.core.periodic_table import Element

            bad = sorted({Element.from_Z(int(v)).symbol for v in z[idx < 0].tolist()})
            raise ModelError(
                f"absorber element(s) {bad} not predicted by this cgxas model (elements: "
                f"{self.config.elements}); unflag those sites in absorber_mask or use a model "
                "trained for them"
            )
        return nodes, idx

    def forward(self, batch: Data | Batch) -> torch.Tensor:
        """Predict one spectrum per absorbing site.

        Args:
            batch: a crystal graph or batch of graphs (fields of ``build_crystal_graph``; uses
                ``x``, ``z``, ``edge_index``, ``edge_dist`` in Angstrom, ``absorber_mask``).

        Returns:
            ``[n_absorbers, output_dim]`` non-negative mu(E), rows in the order of
            ``batch.absorber_mask.nonzero()``.
        """
        nodes, idx = self._absorber_elements(batch)
        v = self.node_vectors(batch)[nodes]
        onehot = nn.functional.one_hot(idx, len(self.config.elements)).to(v.dtype)
        h = torch.cat((v, onehot), dim=-1)
        last = len(self.head) - 2  # the output Linear, before ReLU
        for i, layer in enumerate(self.head):
            h = precise(layer, h) if i == last else layer(h)
        return h

    def forward_average(self, batch: Data | Batch) -> tuple[torch.Tensor, list[str]]:
        """Average the site spectra of the same element within each graph.

        Returns:
            (``[n_groups, output_dim]`` mean spectra, element symbol of each group). Groups are
            ordered by graph, then by the element's position in ``config.elements``; a graph
            contributes one group per absorbing element it contains.
        """
        spectra = self.forward(batch)
        nodes, idx = self._absorber_elements(batch)
        graph = getattr(batch, "batch", None)
        graph = torch.zeros_like(nodes) if graph is None else graph[nodes]
        key = graph * len(self.config.elements) + idx
        keys, inverse = torch.unique(key, sorted=True, return_inverse=True)
        sums = spectra.new_zeros(len(keys), spectra.shape[1]).index_add_(0, inverse, spectra)
        counts = torch.bincount(inverse, minlength=len(keys)).to(spectra.dtype)
        symbols = [self.config.elements[int(k) % len(self.config.elements)] for k in keys]
        return sums / counts.unsqueeze(-1), symbols


__all__ = ["CGXAS", "CGXASConfig"]
