"""XANE(3): an E(3)-equivariant graph network predicting the XANES of absorbing sites.

Architecture (N atoms, E edges, A absorbers, G graphs)::

    z [N] -> Embedding(max_z + 1, embed_dim) -> Linear(embed_dim x 0e -> irreps_hidden) = h
    repeat n_layers:
        Y   = spherical harmonics (l <= lmax) of the edge direction            [E, (lmax+1)^2]
        w   = MLP(radial basis(|r|)) * cosine cutoff(|r|)                      [E, weight_numel]
        m   = TP(h[src], Y; w)           (fully connected, per-edge weights)  [E, irreps_mid]
        agg = mean of m over the incoming edges of each target + Linear(h)    [N, irreps_mid]
        out = Gate(EquivariantLayerNorm(agg))                                 [N, irreps_hidden]
        h   = sigmoid(alpha) * out + (1 - sigmoid(alpha)) * h     (adaptive gated residual)
    readout of each absorber a (graph g):
        s_a     = l=0 channels of h[a]
        pool_a  = softmax_j(q(s_a) . k(s_j) / sqrt(d)) v(s_j) over all atoms j of graph g
                  (mean of s_j when attention_pool is off)
        norms_a = |h[a]_l| for every l=1 and l=2 channel (absorber_norms)
        r_a     = MLP([s_a, pool_a, norms_a])
        spectrum_a = amplitudes(r_a) @ B + background(r_a)   [A, output_dim]
        e0_a       = MLP(r_a.detach())                        [A]

``irreps_mid`` is ``irreps_hidden`` plus one gate scalar per l > 0 channel when ``gate`` is on,
else ``irreps_hidden`` (no nonlinearity at all between layers in the ablation).

Energy axis of the readout: the spectrum is evaluated on ``E_k = linspace(energy_min,
energy_max, output_dim)`` in eV (defaults 0..50 eV, relative to any reference the user chooses,
e.g. the grid start of the checkpoint's ``EnergyGrid``; only differences matter). The Gaussian
basis ``B[g, k] = exp(-(E_k - c_g)^2 / (2 w_g^2))`` has ``n_gaussians_out`` Gaussians split
(as evenly as possible) over ``gaussian_widths`` (standard deviations ``w_g`` in eV, fixed) with
learnable centres ``c_g`` (eV) initialised evenly over the energy window. The background is
``height * sigmoid((E_k - edge) / width)`` with edge, width (eV) and height predicted from
``r_a`` (edge constrained to the window, width > 0).

Pooling set: the attention (or mean) pool runs over every atom of the absorber's structure,
the absorber itself included. This keeps a site's prediction independent of which other sites are
flagged as absorbers, and makes it invariant to supercells (duplicated atoms leave a
softmax-weighted or plain mean unchanged); excluding the absorber would not be.

Invariance: edge vectors enter only through spherical harmonics (equivariant) and distances
(invariant); the readout uses only l=0 features and norms, so spectra and E0 are invariant to
rotations, translations, site permutations and supercells of the input structure (given an
invariant graph: see ``xas_features.graphs``).

Mixed precision: under ``torch.autocast`` (fp32 weights) the tensor products, radial MLPs and
readout MLP run in bf16/fp16; the radial basis, spherical harmonics, message means, layer norms,
node features, attention softmax and the output head (Gaussian basis, background, E0) stay fp32,
and :func:`xane3_loss` computes its derivative terms in fp32 (:mod:`xas_models.precision`).

Use graphs from ``xas_features.graphs.build_crystal_graph`` with ``cutoff >= r_max`` (edges
beyond ``r_max`` get zero weight). :func:`xane3_loss` is the training loss (spectrum MSE +
annealed derivative terms + L1 on E0).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from e3nn import o3
from e3nn.nn import Gate
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from torch import nn

from xas_models.configured import ConfiguredModel
from xas_models.errors import ModelError
from xas_models.precision import full_precision, working_dtype
from xas_models.registry import register_model


class XANE3Config(BaseModel):
    """Validated hyper-parameters of :class:`XANE3` (paper defaults). Unknown keys are rejected.

    Attributes:
        n_layers: number of interaction blocks (4).
        lmax: largest degree of the edge spherical harmonics (2).
        irreps_hidden: node feature irreps, e3nn syntax ("32x0e+16x1o+8x2e"); needs >= 1 0e.
        n_radial: size of the radial basis (16).
        radial_basis: "bessel" (sqrt(2/r_max) sin(n pi r / r_max) / r) or "gaussian".
        radial_hidden: width of the two hidden layers of the radial MLP (48: with the paper defaults the model has 1.15 M parameters, the paper reports 1.19 M).
        r_max: radial cutoff in Angstrom (5.0); smooth cosine envelope to zero at r_max.
        max_z: largest atomic number embedded (94).
        embed_dim: element embedding width (64).
        readout_hidden: width of the readout MLP (256).
        output_dim: number of energy points of the spectrum (150).
        energy_min, energy_max: energy window of the output grid in eV (0, 50).
        n_gaussians_out: number of Gaussians of the output basis (200).
        gaussian_widths: Gaussian standard deviations in eV ([0.1, 0.5, 1, 2, 4]).
        layer_norm, gate, residual, attention_pool, absorber_norms, background, e0_head:
            ablation switches (all True), see the module docstring.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_layers: int = Field(default=4, ge=1)
    lmax: int = Field(default=2, ge=0, le=6)
    irreps_hidden: str = "32x0e+16x1o+8x2e"
    n_radial: int = Field(default=16, gt=0)
    radial_basis: Literal["bessel", "gaussian"] = "bessel"
    radial_hidden: int = Field(default=48, gt=0)
    r_max: float = Field(default=5.0, gt=0)
    max_z: int = Field(default=94, ge=1, le=118)
    embed_dim: int = Field(default=64, gt=0)
    readout_hidden: int = Field(default=256, gt=0)
    output_dim: int = Field(default=150, gt=1)
    energy_min: float = 0.0
    energy_max: float = 50.0
    n_gaussians_out: int = Field(default=200, gt=0)
    gaussian_widths: list[float] = Field(default_factory=lambda: [0.1, 0.5, 1.0, 2.0, 4.0])
    layer_norm: bool = True
    gate: bool = True
    residual: bool = True
    attention_pool: bool = True
    absorber_norms: bool = True
    background: bool = True
    e0_head: bool = True

    @field_validator("irreps_hidden")
    @classmethod
    def _valid_irreps(cls, v: str) -> str:
        try:
            irreps = o3.Irreps(v)
        except (ValueError, AssertionError) as err:
            raise ValueError(f"not an e3nn irreps string ({err})") from None
        if irreps.count("0e") == 0:
            raise ValueError("needs at least one 0e (scalar) channel for the readout")
        return str(irreps.sort().irreps.simplify())  # canonical order: scalars first

    @field_validator("gaussian_widths")
    @classmethod
    def _positive_widths(cls, v: list[float]) -> list[float]:
        if not v or any(not w > 0 for w in v):
            raise ValueError(f"needs one or more widths > 0 (eV), got {v}")
        return v

    @model_validator(mode="after")
    def _window(self) -> XANE3Config:
        if not self.energy_max > self.energy_min:
            raise ValueError(
                f"energy_max ({self.energy_max}) must exceed energy_min ({self.energy_min})"
            )
        if self.n_gaussians_out < len(self.gaussian_widths):
            raise ValueError("n_gaussians_out must be >= the number of gaussian_widths")
        return self


_FIELD_HINTS: dict[str, str] = {
    "n_layers": "an integer >= 1 (default 4)",
    "lmax": "an integer in 0..6 (default 2)",
    "irreps_hidden": "an e3nn irreps string with a 0e part, e.g. '32x0e+16x1o+8x2e'",
    "n_radial": "an integer > 0 (default 16)",
    "radial_basis": "'bessel' or 'gaussian'",
    "radial_hidden": "an integer > 0 (default 48)",
    "r_max": "a cutoff > 0 in Angstrom (default 5.0)",
    "max_z": "an integer in 1..118 (default 94)",
    "embed_dim": "an integer > 0 (default 64)",
    "readout_hidden": "an integer > 0 (default 256)",
    "output_dim": "an integer > 1 (energy points, default 150)",
    "energy_min": "a float in eV below energy_max (default 0)",
    "energy_max": "a float in eV above energy_min (default 50)",
    "n_gaussians_out": "an integer >= len(gaussian_widths) (default 200)",
    "gaussian_widths": "a non-empty list of widths > 0 in eV (default [0.1, 0.5, 1, 2, 4])",
    "layer_norm": "true or false",
    "gate": "true or false",
    "residual": "true or false",
    "attention_pool": "true or false",
    "absorber_norms": "true or false",
    "background": "true or false",
    "e0_head": "true or false",
}


# ----------------------------------------------------------------------------- building blocks


class RadialBasis(nn.Module):
    """Radial basis of edge lengths: ``r`` [E] (Angstrom) -> [E, n] (dimensionless)."""

    def __init__(self, n: int, r_max: float, kind: str) -> None:
        super().__init__()
        self.r_max = float(r_max)
        self.kind = kind
        self.register_buffer("freq", torch.arange(1, n + 1, dtype=torch.float32) * math.pi / r_max)
        self.register_buffer("centres", torch.linspace(0.0, r_max, n))
        self.sigma = r_max / n

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        """Basis values in ``r``'s dtype, at least fp32 (``freq``/``centres`` are never
        rounded to 16 bits)."""
        dtype = torch.promote_types(r.dtype, torch.float32)
        r = r.to(dtype).unsqueeze(-1)
        freq, centres = self.freq.to(dtype), self.centres.to(dtype)
        if self.kind == "bessel":
            safe = r.clamp_min(1e-9)
            # sin(f r) / r -> f as r -> 0 (self loops)
            values = torch.where(r > 1e-9, torch.sin(freq * safe) / safe, freq)
            return math.sqrt(2.0 / self.r_max) * values
        return torch.exp(-0.5 * ((r - centres) / self.sigma) ** 2)


def cosine_cutoff(r: torch.Tensor, r_max: float) -> torch.Tensor:
    """Smooth envelope ``0.5 (cos(pi r / r_max) + 1)`` for ``r < r_max``, 0 beyond; [E]."""
    return torch.where(r < r_max, 0.5 * (torch.cos(math.pi * r / r_max) + 1.0), torch.zeros_like(r))


class EquivariantLayerNorm(nn.Module):
    """Layer norm for e3nn features ``[N, irreps.dim]`` -> same shape, equivariant.

    All 0e channels are normalised together by ``nn.LayerNorm`` (centred, affine). Every other
    block ``mul x (l, p)`` is divided by its RMS over channels and components (no centring:
    ``v / sqrt(mean_{u,m} v_um^2 + eps)``) and scaled by a learnable per-channel weight, which
    commutes with the block's Wigner-D rotation and with parity.
    """

    def __init__(self, irreps: o3.Irreps, eps: float = 1e-5) -> None:
        super().__init__()
        self.irreps = o3.Irreps(irreps)
        self.eps = eps
        self.scalar_slices = [
            s
            for (mul, ir), s in zip(self.irreps, self.irreps.slices(), strict=True)
            if ir == o3.Irrep("0e")
        ]
        n_scalar = self.irreps.count("0e")
        self.scalar_norm = nn.LayerNorm(n_scalar, eps=eps) if n_scalar else None
        self.blocks = [
            (s, mul, ir.dim)
            for (mul, ir), s in zip(self.irreps, self.irreps.slices(), strict=True)
            if ir != o3.Irrep("0e")
        ]
        self.weights = nn.ParameterList(
            [nn.Parameter(torch.ones(mul)) for _, mul, _ in self.blocks]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised ``x``, computed in full precision (at least fp32) even under autocast."""
        with full_precision(x.device):
            return self._normalise(x.to(working_dtype(self)))

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.empty_like(x)
        if self.scalar_norm is not None:
            idx = torch.cat(
                [torch.arange(s.start, s.stop, device=x.device) for s in self.scalar_slices]
            )
            out[:, idx] = self.scalar_norm(x[:, idx])
        for (s, mul, dim), weight in zip(self.blocks, self.weights, strict=True):
            v = x[:, s].reshape(-1, mul, dim)
            rms = torch.sqrt(v.pow(2).mean(dim=(1, 2), keepdim=True) + self.eps)
            out[:, s] = (v / rms * weight[None, :, None]).reshape(-1, mul * dim)
        return out


def _mlp(sizes: list[int], act: type[nn.Module] = nn.SiLU) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(act())
    return nn.Sequential(*layers)


class InteractionBlock(nn.Module):
    """One message-passing layer: ``h`` [N, irreps_hidden] -> [N, irreps_hidden]."""

    def __init__(self, cfg: XANE3Config, irreps_hidden: o3.Irreps, irreps_sh: o3.Irreps) -> None:
        super().__init__()
        scalars = o3.Irreps([(mul, ir) for mul, ir in irreps_hidden if ir.l == 0])
        gated = o3.Irreps([(mul, ir) for mul, ir in irreps_hidden if ir.l > 0])
        if cfg.gate and gated.num_irreps > 0:
            acts = [torch.nn.functional.silu if ir.p == 1 else torch.tanh for _, ir in scalars]
            gates = o3.Irreps(f"{gated.num_irreps}x0e")
            self.gate: nn.Module = Gate(scalars, acts, gates, [torch.sigmoid], gated)
            irreps_mid = self.gate.irreps_in
        else:
            self.gate = nn.Identity()
            irreps_mid = irreps_hidden
        self.tp = o3.FullyConnectedTensorProduct(
            irreps_hidden, irreps_sh, irreps_mid, shared_weights=False, internal_weights=False
        )
        self.radial = _mlp(
            [cfg.n_radial, cfg.radial_hidden, cfg.radial_hidden, self.tp.weight_numel]
        )
        self.self_linear = o3.Linear(irreps_hidden, irreps_mid)
        self.norm: nn.Module = EquivariantLayerNorm(irreps_mid) if cfg.layer_norm else nn.Identity()
        self.alpha = nn.Parameter(torch.zeros(1)) if cfg.residual else None

    def forward(
        self,
        h: torch.Tensor,
        src: torch.Tensor,
        dst: torch.Tensor,
        sh: torch.Tensor,
        radial: torch.Tensor,
        envelope: torch.Tensor,
        inv_count: torch.Tensor,
    ) -> torch.Tensor:
        """One layer; the radial MLP, tensor product and self-interaction may run in 16 bits
        under autocast, while the message mean, the norm and ``h`` stay in ``h``'s dtype."""
        weights = self.radial(radial) * envelope.unsqueeze(-1)
        messages = self.tp(h[src], sh, weights)
        agg = torch.zeros(h.shape[0], messages.shape[1], dtype=h.dtype, device=h.device)
        agg.index_add_(0, dst, messages.to(h.dtype))
        agg = agg * inv_count.unsqueeze(-1) + self.self_linear(h).to(h.dtype)
        out = self.gate(self.norm(agg)).to(h.dtype)
        if self.alpha is None:
            return out
        mix = torch.sigmoid(self.alpha)
        return mix * out + (1.0 - mix) * h


# ----------------------------------------------------------------------------- the model


@register_model("xane3")
class XANE3(ConfiguredModel, nn.Module):
    """XANE(3): crystal graph batch -> spectra ``[A, output_dim]`` and E0 ``[A]`` per absorber."""

    config_class = XANE3Config
    config_name = "xane3"
    config_hints = _FIELD_HINTS

    def __init__(self, config: XANE3Config) -> None:
        super().__init__()
        self.config = config
        cfg = config
        self.irreps_hidden = o3.Irreps(cfg.irreps_hidden)
        self.irreps_sh = o3.Irreps.spherical_harmonics(cfg.lmax)
        self.embedding = nn.Embedding(cfg.max_z + 1, cfg.embed_dim)
        self.embed_linear = o3.Linear(o3.Irreps(f"{cfg.embed_dim}x0e"), self.irreps_hidden)
        self.radial_basis = RadialBasis(cfg.n_radial, cfg.r_max, cfg.radial_basis)
        self.layers = nn.ModuleList(
            InteractionBlock(cfg, self.irreps_hidden, self.irreps_sh) for _ in range(cfg.n_layers)
        )

        # readout
        self.scalar_index = [
            i
            for (mul, ir), s in zip(self.irreps_hidden, self.irreps_hidden.slices(), strict=True)
            if ir == o3.Irrep("0e")
            for i in range(s.start, s.stop)
        ]
        self.register_buffer("_scalar_idx", torch.tensor(self.scalar_index), persistent=False)
        n0 = len(self.scalar_index)
        self.norm_blocks = [
            (s, mul, ir.dim)
            for (mul, ir), s in zip(self.irreps_hidden, self.irreps_hidden.slices(), strict=True)
            if ir.l in (1, 2)
        ]
        n_norms = sum(mul for _, mul, _ in self.norm_blocks) if cfg.absorber_norms else 0
        if cfg.attention_pool:
            self.query = nn.Linear(n0, n0)
            self.key = nn.Linear(n0, n0)
            self.value = nn.Linear(n0, n0)
        readout_in = 2 * n0 + n_norms
        self.readout = _mlp([readout_in, cfg.readout_hidden, cfg.readout_hidden])
        self.readout_act = nn.SiLU()
        self.amplitudes = nn.Linear(cfg.readout_hidden, cfg.n_gaussians_out)
        self.background_head = nn.Linear(cfg.readout_hidden, 3) if cfg.background else None
        self.e0 = _mlp([cfg.readout_hidden, cfg.readout_hidden // 2, 1]) if cfg.e0_head else None

        # output basis on the energy grid (eV)
        span = cfg.energy_max - cfg.energy_min
        self.register_buffer(
            "energies", torch.linspace(cfg.energy_min, cfg.energy_max, cfg.output_dim)
        )
        groups = torch.tensor_split(torch.arange(cfg.n_gaussians_out), len(cfg.gaussian_widths))
        widths, centres = [], []
        for width, group in zip(cfg.gaussian_widths, groups, strict=True):
            widths.append(torch.full((len(group),), float(width)))
            centres.append(torch.linspace(cfg.energy_min, cfg.energy_max, len(group)))
        self.register_buffer("widths", torch.cat(widths))
        self.centres = nn.Parameter(torch.cat(centres))
        self.span = span

    # ---------------------------------------------------------------- config

    # ---------------------------------------------------------------- forward

    def basis(self) -> torch.Tensor:
        """Gaussian output basis ``[n_gaussians_out, output_dim]`` on the energy grid, in the
        dtype of the learnable centres (fp32 in training)."""
        dtype = self.centres.dtype
        diff = self.energies.to(dtype)[None, :] - self.centres[:, None]
        return torch.exp(-0.5 * (diff / self.widths.to(dtype)[:, None]) ** 2)

    def node_features(self, batch: Any) -> torch.Tensor:
        """Node irreps after the interaction blocks: ``[N, irreps_hidden.dim]``."""
        dtype = working_dtype(self)
        z = batch.z
        if int(z.min()) < 1 or int(z.max()) > self.config.max_z:
            raise ModelError(
                f"atomic numbers must be in 1..{self.config.max_z}, got "
                f"{int(z.min())}..{int(z.max())}; raise max_z in the config"
            )
        src, dst = batch.edge_index[0], batch.edge_index[1]
        vec = batch.edge_vec.to(dtype)
        dist = vec.norm(dim=-1)
        unit = vec / dist.clamp_min(1e-9).unsqueeze(-1)  # zero vector (self loop) stays zero
        sh = o3.spherical_harmonics(
            self.irreps_sh, unit, normalize=False, normalization="component"
        )
        radial = self.radial_basis(dist).to(dtype)
        envelope = cosine_cutoff(dist, self.config.r_max)
        n = z.shape[0]
        count = torch.zeros(n, dtype=dtype, device=vec.device).index_add_(
            0, dst, torch.ones_like(dist)
        )
        inv_count = 1.0 / count.clamp_min(1.0)
        h = self.embed_linear(self.embedding(z)).to(dtype)
        for layer in self.layers:
            h = layer(h, src, dst, sh, radial, envelope, inv_count)
        return h

    def _pool(
        self, scalars: torch.Tensor, node_graph: torch.Tensor, absorbers: torch.Tensor
    ) -> torch.Tensor:
        """Pool scalars ``[N, n0]`` over the absorbers' graphs -> ``[A, n0]`` (module doc)."""
        n_graphs = int(node_graph.max()) + 1
        sizes = torch.bincount(node_graph, minlength=n_graphs)
        starts = torch.cumsum(sizes, 0) - sizes
        graph_a = node_graph[absorbers]
        reps = sizes[graph_a]
        pair_a = torch.repeat_interleave(
            torch.arange(absorbers.shape[0], device=scalars.device), reps
        )
        offsets = torch.arange(int(reps.sum()), device=scalars.device) - torch.repeat_interleave(
            torch.cumsum(reps, 0) - reps, reps
        )
        pair_j = starts[graph_a][pair_a] + offsets
        n_abs = absorbers.shape[0]
        if not self.config.attention_pool:
            total = torch.zeros(n_abs, scalars.shape[1], dtype=scalars.dtype, device=scalars.device)
            total.index_add_(0, pair_a, scalars[pair_j])
            return total / reps.to(scalars.dtype).unsqueeze(-1)
        # projections may run in 16 bits; the softmax and its sums in the scalars' dtype
        q = self.query(scalars[absorbers]).to(scalars.dtype)
        k = self.key(scalars).to(scalars.dtype)
        v = self.value(scalars).to(scalars.dtype)
        score = (q[pair_a] * k[pair_j]).sum(-1) / math.sqrt(q.shape[1])
        smax = torch.full((n_abs,), -torch.inf, dtype=score.dtype, device=score.device)
        smax = smax.scatter_reduce(0, pair_a, score, reduce="amax")
        weight = torch.exp(score - smax[pair_a])
        norm = torch.zeros(n_abs, dtype=score.dtype, device=score.device).index_add_(
            0, pair_a, weight
        )
        weight = weight / norm[pair_a]
        out = torch.zeros(n_abs, v.shape[1], dtype=v.dtype, device=v.device)
        return out.index_add_(0, pair_a, weight.unsqueeze(-1) * v[pair_j])

    def forward(self, batch: Any) -> dict[str, torch.Tensor | None]:
        """Predict the spectra of the flagged absorbers.

        Args:
            batch: a torch-geometric ``Data``/``Batch`` from ``build_crystal_graph`` /
                ``collate_graphs`` (fields z, edge_index, edge_vec [Angstrom], absorber_mask,
                batch).

        Returns:
            ``spectrum``: ``[A, output_dim]`` on ``linspace(energy_min, energy_max)`` eV, and
            ``e0``: ``[A]`` (None without ``e0_head``); rows in the order of
            ``batch.absorber_mask.nonzero()``.
        """
        absorbers = batch.absorber_mask.nonzero().squeeze(-1)
        if absorbers.numel() == 0:
            raise ModelError(
                "no absorber flagged in the batch; pass absorber_sites to build_crystal_graph"
            )
        h = self.node_features(batch)
        node_graph = getattr(batch, "batch", None)
        if node_graph is None:
            node_graph = torch.zeros(h.shape[0], dtype=torch.long, device=h.device)
        scalars = h[:, self._scalar_idx]
        features = [scalars[absorbers], self._pool(scalars, node_graph, absorbers)]
        if self.config.absorber_norms:
            ha = h[absorbers]
            for s, mul, dim in self.norm_blocks:
                v = ha[:, s].reshape(-1, mul, dim)
                features.append(torch.sqrt(v.pow(2).sum(-1) + 1e-12))
        r = self.readout_act(self.readout(torch.cat(features, dim=-1)))
        with full_precision(r.device):
            return self._output(r.to(h.dtype))

    def _output(self, r: torch.Tensor) -> dict[str, torch.Tensor | None]:
        """Spectrum and E0 from the readout features ``r`` [A, readout_hidden], in ``r``'s
        dtype (fp32 even in mixed-precision training: bf16 rounding of each energy point
        would set a floor under the curvature term of the loss)."""
        spectrum = self.amplitudes(r) @ self.basis()
        if self.background_head is not None:
            p = self.background_head(r)
            edge = self.config.energy_min + self.span * torch.sigmoid(p[:, :1])
            width = self.span * (0.002 + 0.1 * nn.functional.softplus(p[:, 1:2]))
            height = p[:, 2:3]
            energies = self.energies.to(r.dtype)[None, :]
            spectrum = spectrum + height * torch.sigmoid((energies - edge) / width)
        e0 = self.e0(r.detach()).squeeze(-1) if self.e0 is not None else None
        return {"spectrum": spectrum, "e0": e0}


# ----------------------------------------------------------------------------- loss


def xane3_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    e0_pred: torch.Tensor | None = None,
    e0_true: torch.Tensor | None = None,
    d1: float = 0.1,
    d2: float = 0.01,
    e0_weight: float = 0.1,
    epoch: int | None = None,
    anneal_epochs: int = 10,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """XANE(3) training loss.

    ``total = mse + a * d1 * mse(diff1) + a * d2 * mse(diff2) + e0_weight * L1(e0)``, where
    ``diff1``/``diff2`` are first/second finite differences along the energy axis (per grid
    step, spectrum units) of ``pred`` and ``target`` [A, K], and ``a = min(epoch /
    anneal_epochs, 1)`` anneals the derivative weights linearly from 0 (``a = 1`` when
    ``epoch`` is None or ``anneal_epochs`` is 0). The E0 term (eV) is added when both
    ``e0_pred`` and ``e0_true`` ([A]) are given.

    Returns:
        ``(total, parts)``; ``parts`` holds detached ``mse``, ``d1``, ``d2``, ``e0`` (unweighted
        terms) and ``anneal`` (the factor a).
    """
    if pred.shape != target.shape:
        raise ModelError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    dtype = torch.promote_types(torch.promote_types(pred.dtype, target.dtype), torch.float32)
    pred, target = pred.to(dtype), target.to(dtype)  # differences in fp32 (or wider)
    if e0_pred is not None:
        e0_pred = e0_pred.to(dtype)
    if epoch is None or anneal_epochs <= 0:
        anneal = 1.0
    else:
        anneal = min(max(epoch, 0) / anneal_epochs, 1.0)
    mse = torch.mean((pred - target) ** 2)
    zero = pred.new_zeros(())
    g1 = (
        torch.mean((torch.diff(pred, dim=-1) - torch.diff(target, dim=-1)) ** 2)
        if pred.shape[-1] > 1
        else zero
    )
    g2 = (
        torch.mean((torch.diff(pred, n=2, dim=-1) - torch.diff(target, n=2, dim=-1)) ** 2)
        if pred.shape[-1] > 2
        else zero
    )
    total = mse + anneal * d1 * g1 + anneal * d2 * g2
    e0 = zero
    if e0_pred is not None and e0_true is not None:
        e0 = torch.mean(torch.abs(e0_pred - e0_true.to(e0_pred)))
        total = total + e0_weight * e0
    parts = {
        "mse": mse.detach(),
        "d1": g1.detach(),
        "d2": g2.detach(),
        "e0": e0.detach(),
        "anneal": torch.tensor(anneal),
    }
    return total, parts


__all__ = ["XANE3", "EquivariantLayerNorm", "XANE3Config", "xane3_loss"]
