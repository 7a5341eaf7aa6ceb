"""SPT, a Spectral Pattern Translator: spectrum -> several local-structure descriptors.

An inverse model: ``(batch, K)`` spectra on a uniform energy grid (normalised by the caller)
-> one output per descriptor task (the eight descriptors of ``xas_features.descriptors``:
classification OS, CN, OCN, CN2, PSGO; regression NNRS, MOOD, NNOSM, or any other named task).

Architecture (each branch switchable in :class:`SPTConfig`)::

    global context  c = MLP(x)                                        [B, d]    (use_global)
    frequency bands for each period p_i (i < n_bands):                          (use_bands)
        pad x to a multiple of p_i, reshape  [B, 1, ceil(K/p_i), p_i]
        (rows: consecutive periods, columns: phase within a period)
        (Conv2d 3x3 -> GroupNorm -> GELU) x len(band_channels), global avg pool, Linear
                                                                  -> v_i [B, d]
    band fusion   q_j = Q_j + W_j c   (n_queries spectral queries from the context)
                  a_ji = softmax_i(q_j . K v_i / sqrt(d)),  f = W_o mean_j sum_i a_ji V v_i
                  (use_query_fusion; otherwise f = mean_i v_i)                  [B, d]
    spectral graph  nodes = energy points, h_k = W [x_k, x_k - x_(k-1)] + P_k (learnable
                  position embedding); edges k <-> l for |k - l| <= graph_window;
                  graph_layers x (pre-norm multi-head attention restricted to the window, with
                  a learnable bias per head and offset l - k, + GELU MLP), residual;
                  g = Linear([mean_k h_k, max_k h_k])                 [B, d]    (use_graph)
    shared          r = MLP(concat(c, f, g))                          [B, shared_hidden[-1]]
    heads           classification: Linear(r) -> logits [B, n_classes]
                    regression:     Linear(r) -> standardised value [B]

Period choice (the model must not depend on the batch it is applied to): the periods are a
persistent buffer ``periods`` ([n_bands] integers) saved in checkpoints. Either the config
fixes them (``periods: [...]``), or they start at ``round(K / f)`` for ``f = 2, 3, 5, 8, ...``
and :meth:`SPT.set_periods` computes them once from training spectra: every spectrum minus
the straight line through its end points (so the periodic extension of the edge step does not
leak into every frequency), the mean amplitude ``|rfft|`` over the spectra, frequencies
``f >= 1`` sorted by decreasing amplitude (ties: lower ``f`` first), each turned into the period
``round(K / f)``, the first ``n_bands`` distinct periods kept. Deterministic.

Targets: classification tasks list their class values (``classes``, e.g. OS ``[2, 3, 4]``);
targets are given as class values and mapped to indices. Regression outputs are standardised
by the buffers ``target_mean`` / ``target_std`` (identity until
:meth:`SPT.set_target_scaling`); :meth:`SPT.predict` undoes it. Missing labels are NaN.

Every normalisation acts per sample (GroupNorm / LayerNorm), so an output never depends on the
other members of its batch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from torch import nn

from xas_models.configured import ConfiguredModel
from xas_models.errors import ModelError
from xas_models.registry import register_model

#: Frequencies of the initial periods ``round(K / f)`` before :meth:`SPT.set_periods`.
DEFAULT_FREQUENCIES: tuple[int, ...] = (2, 3, 5, 8, 13, 21, 34, 55)

#: Default tasks: the eight descriptors with typical transition-metal-oxide classes.
DEFAULT_TASKS: tuple[dict[str, Any], ...] = (
    {"name": "OS", "kind": "classification", "classes": [1, 2, 3, 4, 5, 6]},
    {"name": "CN", "kind": "classification", "classes": [2, 3, 4, 5, 6, 7, 8]},
    {"name": "OCN", "kind": "classification", "classes": [0, 1, 2, 3, 4, 5, 6, 7, 8]},
    {"name": "CN2", "kind": "classification", "classes": list(range(4, 25))},
    {"name": "PSGO", "kind": "classification", "classes": [1, 2, 3, 4, 6, 8, 12, 16, 24, 48]},
    {"name": "NNRS", "kind": "regression"},
    {"name": "MOOD", "kind": "regression"},
    {"name": "NNOSM", "kind": "regression"},
)

_CLASS_TOL = 1e-3  # a target matches a class value within this tolerance


class SPTTask(BaseModel):
    """One output of :class:`SPT`.

    Attributes:
        name: task name (e.g. a descriptor name ``"OS"``); non-empty, no ``"."``.
        kind: ``"classification"`` or ``"regression"``.
        classes: class values of a classification task (>= 2, unique; stored sorted);
            must be absent for regression.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    kind: Literal["classification", "regression"]
    classes: list[int] | None = None

    @field_validator("name")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        if "." in v or v != v.strip():
            raise ValueError(f"task name {v!r} must not contain '.' or surrounding spaces")
        return v

    @field_validator("classes")
    @classmethod
    def _sorted_unique(cls, v: list[int] | None) -> list[int] | None:
        if v is None:
            return v
        if len(set(v)) != len(v):
            raise ValueError(f"duplicate class values in {v}")
        return sorted(v)

    @model_validator(mode="after")
    def _classes_match_kind(self) -> SPTTask:
        if self.kind == "classification":
            if self.classes is None or len(self.classes) < 2:
                raise ValueError(
                    f"classification task {self.name!r} needs 'classes' with >= 2 values"
                )
        elif self.classes is not None:
            raise ValueError(f"regression task {self.name!r} must not have 'classes'")
        return self


class SPTConfig(BaseModel):
    """Validated hyper-parameters of :class:`SPT`. Unknown keys are rejected.

    Attributes:
        input_dim: energy points K of the input spectra (>= 8), default 141.
        tasks: the outputs (non-empty, unique names), default the eight descriptors
            (:data:`DEFAULT_TASKS`).
        d_model: width d of every branch vector (> 0), default 64.
        use_global: global-context MLP branch in the shared representation, default True.
        global_hidden: hidden widths of the context MLP (each > 0), default [128].
        use_bands: frequency-band 2D-conv branch, default True.
        n_bands: number of periods / bands (>= 1), default 3.
        periods: fixed periods (length n_bands, each in [2, input_dim]); None (default): start
            values ``round(K / f)``, set from data by :meth:`SPT.set_periods`.
        band_channels: channel widths of each band's conv stack (each > 0), default [8, 16].
        use_query_fusion: fuse the bands with context-conditioned attention queries (True,
            default) or by their mean (False).
        n_queries: number of spectral queries (>= 1), default 4.
        use_graph: spectral-graph attention branch, default True.
        graph_dim: node width of the spectral graph (> 0), default 32.
        graph_window: edges join points at most this many grid steps apart (>= 1), default 4.
        graph_layers: number of graph attention layers (>= 1), default 2.
        graph_heads: attention heads (>= 1, divides graph_dim), default 2.
        shared_hidden: widths of the shared MLP (each > 0, non-empty), default [128].
        dropout: dropout after each shared hidden layer, in [0, 1), default 0.1.
        standardise_input: standardise every energy point as ``(x - input_mean) /
            input_std`` before all branches (buffers ``[K]``, identity until
            :meth:`SPT.set_input_scaling`), default False (checkpoints without the buffers).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_dim: int = Field(default=141, ge=8)
    tasks: list[SPTTask] = Field(
        default_factory=lambda: [SPTTask(**t) for t in DEFAULT_TASKS], min_length=1
    )
    d_model: int = Field(default=64, gt=0)
    use_global: bool = True
    global_hidden: list[int] = Field(default_factory=lambda: [128])
    use_bands: bool = True
    n_bands: int = Field(default=3, ge=1)
    periods: list[int] | None = None
    band_channels: list[int] = Field(default_factory=lambda: [8, 16], min_length=1)
    use_query_fusion: bool = True
    n_queries: int = Field(default=4, ge=1)
    use_graph: bool = True
    graph_dim: int = Field(default=32, gt=0)
    graph_window: int = Field(default=4, ge=1)
    graph_layers: int = Field(default=2, ge=1)
    graph_heads: int = Field(default=2, ge=1)
    shared_hidden: list[int] = Field(default_factory=lambda: [128], min_length=1)
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0)
    standardise_input: bool = False

    @field_validator("global_hidden", "band_channels", "shared_hidden")
    @classmethod
    def _positive_widths(cls, v: list[int]) -> list[int]:
        bad = [w for w in v if w <= 0]
        if bad:
            raise ValueError(f"every width must be > 0, got {bad}")
        return v

    @field_validator("tasks")
    @classmethod
    def _unique_tasks(cls, v: list[SPTTask]) -> list[SPTTask]:
        names = [t.name for t in v]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate task names {dup}")
        return v

    # cross-field checks as field validators (fields are validated in definition order), so
    # that an error names the offending key
    @field_validator("n_bands")
    @classmethod
    def _bands_fit(cls, v: int, info: ValidationInfo) -> int:
        k = info.data.get("input_dim")
        if k is not None and v > k // 2:
            raise ValueError(f"n_bands={v} exceeds input_dim // 2 = {k // 2}")
        return v

    @field_validator("periods")
    @classmethod
    def _periods_fit(cls, v: list[int] | None, info: ValidationInfo) -> list[int] | None:
        if v is None:
            return v
        n_bands, k = info.data.get("n_bands"), info.data.get("input_dim")
        if n_bands is not None and len(v) != n_bands:
            raise ValueError(f"periods has {len(v)} values but n_bands is {n_bands}")
        if k is not None:
            bad = [p for p in v if not 2 <= p <= k]
            if bad:
                raise ValueError(f"periods {bad} are outside [2, input_dim={k}]")
        return v

    @field_validator("use_graph")
    @classmethod
    def _some_branch(cls, v: bool, info: ValidationInfo) -> bool:
        if not (v or info.data.get("use_global", True) or info.data.get("use_bands", True)):
            raise ValueError(
                "use_global, use_bands and use_graph are all false; enable at least one branch"
            )
        return v

    @field_validator("graph_heads")
    @classmethod
    def _heads_divide(cls, v: int, info: ValidationInfo) -> int:
        dim = info.data.get("graph_dim")
        if dim is not None and dim % v:
            raise ValueError(f"graph_heads={v} does not divide graph_dim={dim}")
        return v


_FIELD_HINTS: dict[str, str] = {
    "input_dim": "an integer >= 8 (energy points per spectrum, default 141)",
    "tasks": "a non-empty list of {name, kind: classification|regression, classes: [ints] "
    "(classification only)} with unique names",
    "d_model": "an integer > 0, default 64",
    "use_global": "true or false",
    "global_hidden": "a list of integers > 0, e.g. [128]",
    "use_bands": "true or false (at least one of use_global, use_bands, use_graph)",
    "n_bands": "an integer in [1, input_dim // 2], default 3",
    "periods": "null or n_bands integers in [2, input_dim]",
    "band_channels": "a non-empty list of integers > 0, e.g. [8, 16]",
    "use_query_fusion": "true or false",
    "n_queries": "an integer >= 1, default 4",
    "use_graph": "true or false",
    "graph_dim": "an integer > 0 divisible by graph_heads, default 32",
    "graph_window": "an integer >= 1 (grid steps), default 4",
    "graph_layers": "an integer >= 1, default 2",
    "graph_heads": "an integer >= 1 dividing graph_dim, default 2",
    "shared_hidden": "a non-empty list of integers > 0, e.g. [128]",
    "dropout": "a float in [0, 1), default 0.1",
    "standardise_input": "true or false",
}


def _mlp(widths: list[int], act: type[nn.Module] = nn.GELU) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(act())
    return nn.Sequential(*layers)


def dominant_periods(spectra: torch.Tensor, n_bands: int) -> list[int]:
    """The ``n_bands`` distinct dominant periods (grid points) of ``spectra`` ``[N, K]``.

    Each spectrum minus the line through its end points; mean ``|rfft|`` over spectra;
    frequencies ``f >= 1`` by decreasing amplitude (stable: ties keep lower ``f``); period
    ``round(K / f)`` clipped to ``[2, K]``; first ``n_bands`` distinct. If fewer distinct periods
    exist, the list is completed with the largest unused periods.
    """
    x = torch.as_tensor(spectra).detach().to("cpu", torch.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ModelError(f"spectra must be (n_spectra >= 1, K), got {tuple(x.shape)}")
    k = x.shape[1]
    if not bool(torch.isfinite(x).all()):
        raise ModelError("spectra contain NaN or inf; drop or fill those spectra first")
    t = torch.linspace(0.0, 1.0, k, dtype=x.dtype)
    line = x[:, :1] + (x[:, -1:] - x[:, :1]) * t
    amp = torch.fft.rfft(x - line, dim=1).abs().mean(dim=0)[1:].numpy()  # f = 1 .. K // 2
    order = np.argsort(-amp, kind="stable")
    periods: list[int] = []
    for idx in order:
        p = min(max(round(k / (idx + 1)), 2), k)
        if p not in periods:
            periods.append(p)
        if len(periods) == n_bands:
            return periods
    for p in range(k, 1, -1):  # pragma: no cover - only for tiny K
        if p not in periods:
            periods.append(p)
        if len(periods) == n_bands:
            break
    return periods


class BandConv(nn.Module):
    """One frequency band: ``[B, K]`` -> pad/reshape to ``[B, 1, ceil(K/p), p]`` -> conv -> ``[B, d]``."""

    def __init__(self, channels: list[int], d_model: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.GroupNorm(1, c), nn.GELU()]
            c_in = c
        self.conv = nn.Sequential(*layers)
        self.out = nn.Linear(c_in, d_model)

    def forward(self, x: torch.Tensor, period: int) -> torch.Tensor:
        b, k = x.shape
        rows = math.ceil(k / period)
        pad = rows * period - k
        if pad:
            x = torch.cat((x, x[:, -1:].expand(b, pad)), dim=1)  # repeat the last value
        img = x.reshape(b, 1, rows, period)
        return self.out(self.conv(img).mean(dim=(2, 3)))


class QueryFusion(nn.Module):
    """Attention of ``n_queries`` context-conditioned queries over the band vectors."""

    def __init__(self, d_model: int, n_queries: int) -> None:
        super().__init__()
        self.n_queries = n_queries
        self.queries = nn.Parameter(torch.randn(n_queries, d_model) / math.sqrt(d_model))
        self.from_context = nn.Linear(d_model, n_queries * d_model)
        self.key = nn.Linear(d_model, d_model)
        self.value = nn.Linear(d_model, d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, bands: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """``bands [B, n_bands, d]``, ``context [B, d]`` -> fused ``[B, d]``."""
        b, _, d = bands.shape
        q = self.queries + self.from_context(context).reshape(b, self.n_queries, d)
        scores = q @ self.key(bands).transpose(1, 2) / math.sqrt(d)  # [B, n_q, n_bands]
        fused = torch.softmax(scores, dim=-1) @ self.value(bands)  # [B, n_q, d]
        return self.out(fused.mean(dim=1))


class WindowGraphAttention(nn.Module):
    """Graph attention on the chain graph of energy points, edges within ``+-window``.

    Pre-norm residual block: multi-head attention of each node over its ``2 window + 1``
    neighbours (itself included; missing neighbours beyond the ends masked) with a learnable
    bias per head and offset, then a GELU MLP.
    """

    def __init__(self, dim: int, heads: int, window: int) -> None:
        super().__init__()
        self.heads, self.window = heads, window
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.offset_bias = nn.Parameter(torch.zeros(heads, 2 * window + 1))
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        b, k, dim = h.shape
        w, nh = self.window, self.heads
        hd = dim // nh
        q, kk, v = self.qkv(self.norm1(h)).chunk(3, dim=-1)
        q = q.reshape(b, k, nh, hd)
        # neighbour j = i + o for offsets o in -w..w, as shifted slices of the padded keys and
        # values (an unfold + einsum is ~15x slower on CPU)
        kp = F.pad(kk, (0, 0, w, w)).reshape(b, k + 2 * w, nh, hd)
        vp = F.pad(v, (0, 0, w, w)).reshape(b, k + 2 * w, nh, hd)
        scores = (
            torch.stack([(q * kp[:, o : o + k]).sum(-1) for o in range(2 * w + 1)], dim=-1)
            / math.sqrt(hd)
            + self.offset_bias
        )  # [B, K, nh, 2w+1]
        pos = torch.arange(k, device=h.device).unsqueeze(1) + torch.arange(
            -w, w + 1, device=h.device
        )
        valid = (pos >= 0) & (pos < k)  # [K, 2w+1]
        scores = scores.masked_fill(~valid[None, :, None, :], float("-inf"))
        att = torch.softmax(scores, dim=-1)
        out = sum(att[..., o, None] * vp[:, o : o + k] for o in range(2 * w + 1))
        out = out.reshape(b, k, dim)
        h = h + self.proj(out)
        return h + self.mlp(self.norm2(h))


class SpectralGraph(nn.Module):
    """Energy points as graph nodes -> ``graph_layers`` window attention -> pooled ``[B, d]``."""

    def __init__(self, config: SPTConfig) -> None:
        super().__init__()
        g = config.graph_dim
        self.embed = nn.Linear(2, g)
        self.position = nn.Parameter(torch.randn(config.input_dim, g) * 0.02)
        self.layers = nn.ModuleList(
            WindowGraphAttention(g, config.graph_heads, config.graph_window)
            for _ in range(config.graph_layers)
        )
        self.norm = nn.LayerNorm(g)
        self.out = nn.Linear(2 * g, config.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        diff = torch.diff(x, dim=1, prepend=x[:, :1])
        h = self.embed(torch.stack((x, diff), dim=-1)) + self.position
        for layer in self.layers:
            h = layer(h)
        h = self.norm(h)
        return self.out(torch.cat((h.mean(dim=1), h.amax(dim=1)), dim=-1))


@register_model("spt")
class SPT(ConfiguredModel, nn.Module):
    """Spectral Pattern Translator: ``(batch, K)`` spectra -> ``{task: logits [B, C] | value [B]}``."""

    config_class = SPTConfig
    config_name = "spt"
    config_hints = _FIELD_HINTS
    config_example = "{'input_dim': 141, 'tasks': [{'name': 'OS', 'kind': 'classification', 'classes': [2, 3, 4]}]}"

    def __init__(self, config: SPTConfig) -> None:
        super().__init__()
        self.config = config
        c, d = config, config.d_model
        need_context = c.use_global or (c.use_bands and c.use_query_fusion)
        self.context = _mlp([c.input_dim, *c.global_hidden, d]) if need_context else None
        if c.use_bands:
            self.bands = nn.ModuleList(BandConv(c.band_channels, d) for _ in range(c.n_bands))
            self.fusion = QueryFusion(d, c.n_queries) if c.use_query_fusion else None
        else:
            self.bands, self.fusion = None, None
        self.graph = SpectralGraph(c) if c.use_graph else None
        n_branches = int(c.use_global) + int(c.use_bands) + int(c.use_graph)
        layers: list[nn.Module] = []
        width = n_branches * d
        for hidden in c.shared_hidden:
            layers += [nn.Linear(width, hidden), nn.LayerNorm(hidden), nn.GELU()]
            layers.append(nn.Dropout(c.dropout))
            width = hidden
        self.shared = nn.Sequential(*layers)
        self.heads = nn.ModuleDict(
            {
                t.name: nn.Linear(width, len(t.classes) if t.classes else 1)
                for t in c.tasks  # classes is None for regression
            }
        )
        if c.periods is not None:
            periods = list(c.periods)
        else:
            periods = [min(max(round(c.input_dim / f), 2), c.input_dim) for f in _freqs(c)]
        self.register_buffer("periods", torch.tensor(periods, dtype=torch.long))
        n_reg = len(self.regression_tasks)
        self.register_buffer("target_mean", torch.zeros(n_reg))
        self.register_buffer("target_std", torch.ones(n_reg))
        if c.standardise_input:
            self.register_buffer("input_mean", torch.zeros(c.input_dim))
            self.register_buffer("input_std", torch.ones(c.input_dim))

    # ------------------------------------------------------------------ config
    @property
    def tasks(self) -> dict[str, SPTTask]:
        """Task specs by name, in config order."""
        return {t.name: t for t in self.config.tasks}

    @property
    def regression_tasks(self) -> list[str]:
        """Names of the regression tasks (order of ``target_mean`` / ``target_std``)."""
        return [t.name for t in self.config.tasks if t.kind == "regression"]

    # ------------------------------------------------------------------ buffers
    @torch.no_grad()
    def set_periods(self, spectra: torch.Tensor | np.ndarray) -> list[int]:
        """Set the band periods from training spectra ``[N, K]`` (see the module docstring).

        Returns the periods (``[]`` and no change when ``use_bands`` is false). ModelError when
        the config fixes ``periods``.
        """
        if self.config.periods is not None:
            raise ModelError(
                "this spt config fixes 'periods'; set periods to null in the config to "
                "compute them from data"
            )
        x = torch.as_tensor(spectra)
        self._check_input(x)
        if not self.config.use_bands:
            return []  # no bands: nothing to set (ablation runs call this unchanged)
        periods = dominant_periods(x, self.config.n_bands)
        self.periods.copy_(torch.tensor(periods, dtype=torch.long))
        return periods

    @torch.no_grad()
    def set_input_scaling(self, spectra: torch.Tensor | np.ndarray) -> None:
        """Set ``input_mean`` / ``input_std`` ``[K]`` from training spectra ``[N, K]`` (std
        floored at 1e-3 of its largest value). ModelError unless ``standardise_input``."""
        if not self.config.standardise_input:
            raise ModelError(
                "this spt config has standardise_input: false; set it to true to scale inputs"
            )
        x = torch.as_tensor(spectra).detach().to("cpu", torch.float64)
        self._check_input(x)
        std = x.std(dim=0, unbiased=False)
        self.input_mean.copy_(x.mean(dim=0).to(self.input_mean.dtype))
        self.input_std.copy_(
            std.clamp_min(1e-3 * float(std.max()) + 1e-12).to(self.input_std.dtype)
        )

    @torch.no_grad()
    def set_target_scaling(
        self,
        targets: Mapping[str, Any] | None = None,
        *,
        mean: Mapping[str, float] | None = None,
        std: Mapping[str, float] | None = None,
    ) -> None:
        """Standardise regression targets as ``(y - mean) / std`` per task.

        Either ``targets`` (task -> training labels, NaN = missing; mean and population std of
        the finite labels, std floored at 1e-6) or explicit ``mean`` / ``std`` dicts. Tasks not
        given keep their current scaling.
        """
        if targets is not None and (mean is not None or std is not None):
            raise ModelError("pass either targets or mean/std to set_target_scaling, not both")
        names = self.regression_tasks
        new_mean = dict(zip(names, self.target_mean.tolist(), strict=True))
        new_std = dict(zip(names, self.target_std.tolist(), strict=True))
        given = dict(targets or {})
        for name in list(given) + list(mean or {}) + list(std or {}):
            if name not in names:
                raise ModelError(
                    f"{name!r} is not a regression task of this model (regression tasks: "
                    f"{names}); scale only those"
                )
        for name, values in given.items():
            y = torch.as_tensor(values).detach().to("cpu", torch.float64).numpy().reshape(-1)
            y = y[np.isfinite(y)]
            if y.size == 0:
                raise ModelError(f"task {name!r} has no finite labels to compute its scaling")
            new_mean[name] = float(y.mean())
            new_std[name] = max(float(y.std()), 1e-6)
        for name, value in (mean or {}).items():
            new_mean[name] = float(value)
        for name, value in (std or {}).items():
            if not (math.isfinite(float(value)) and float(value) > 0):
                raise ModelError(f"std of task {name!r} must be finite and > 0, got {value}")
            new_std[name] = float(value)
        if names:
            self.target_mean.copy_(torch.tensor([new_mean[n] for n in names]))
            self.target_std.copy_(torch.tensor([new_std[n] for n in names]))

    # ------------------------------------------------------------------ forward
    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 2 or x.shape[1] != self.config.input_dim:
            raise ModelError(
                f"expected spectra of shape (batch, {self.config.input_dim}), got "
                f"{tuple(x.shape)}; interpolate onto the model's energy grid first"
            )

    def representation(self, x: torch.Tensor) -> torch.Tensor:
        """The shared representation ``[B, shared_hidden[-1]]`` of spectra ``x [B, K]``."""
        self._check_input(x)
        if self.config.standardise_input:
            x = (x - self.input_mean) / self.input_std
        parts = []
        ctx = self.context(x) if self.context is not None else None
        if self.config.use_global:
            parts.append(ctx)
        if self.bands is not None:
            vecs = torch.stack(
                [
                    band(x, int(p))
                    for band, p in zip(self.bands, self.periods.tolist(), strict=True)
                ],
                dim=1,
            )
            parts.append(self.fusion(vecs, ctx) if self.fusion is not None else vecs.mean(dim=1))
        if self.graph is not None:
            parts.append(self.graph(x))
        return self.shared(torch.cat(parts, dim=-1))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Outputs per task.

        Args:
            x: ``(batch, input_dim)`` normalised spectra.

        Returns:
            ``{name: logits [B, n_classes]}`` for classification tasks (class order =
            ``classes``) and ``{name: standardised value [B]}`` for regression tasks.
        """
        r = self.representation(x)
        out = {}
        for t in self.config.tasks:
            y = self.heads[t.name](r)
            out[t.name] = y if t.kind == "classification" else y.squeeze(-1)
        return out

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> dict[str, dict[str, torch.Tensor]]:
        """Predictions in eval mode (the training flag is restored afterwards).

        Returns:
            ``{name: {"value": [B], "probabilities": [B, C]}}`` for classification (value = the
            most probable class value, float) and ``{name: {"value": [B]}}`` for regression
            (de-standardised, target units).
        """
        was_training = self.training
        self.eval()
        try:
            out = self(x)
        finally:
            self.train(was_training)
        reg = {n: i for i, n in enumerate(self.regression_tasks)}
        result: dict[str, dict[str, torch.Tensor]] = {}
        for t in self.config.tasks:
            y = out[t.name]
            if t.kind == "classification":
                proba = torch.softmax(y, dim=-1)
                classes = torch.tensor(t.classes, dtype=y.dtype, device=y.device)
                result[t.name] = {"value": classes[proba.argmax(dim=-1)], "probabilities": proba}
            else:
                i = reg[t.name]
                result[t.name] = {"value": y * self.target_std[i] + self.target_mean[i]}
        return result

    def class_indices(self, name: str, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Map class values of task ``name`` to indices: ``(indices [n], valid mask [n])``.

        NaN values are invalid (index 0 in the output); a finite value that is not one of the
        task's classes raises ModelError.
        """
        task = self.tasks[name]
        assert task.classes is not None
        v = torch.as_tensor(values).to(torch.float64).reshape(-1)
        valid = torch.isfinite(v)
        classes = torch.tensor(task.classes, dtype=torch.float64, device=v.device)
        dist = (torch.where(valid, v, 0.0)[:, None] - classes[None, :]).abs()
        idx = dist.argmin(dim=1)
        bad = valid & (dist.gather(1, idx[:, None]).squeeze(1) > _CLASS_TOL)
        if bool(bad.any()):
            vals = sorted({float(a) for a in v[bad].tolist()})
            raise ModelError(
                f"task {name!r} has label values {vals[:10]} that are not among its classes "
                f"{task.classes}; add them to 'classes' or set those labels to NaN"
            )
        return idx, valid


def _freqs(config: SPTConfig) -> list[int]:
    """Frequencies of the initial periods: distinct periods of DEFAULT_FREQUENCIES (then 2, 3...)."""
    k, out, seen = config.input_dim, [], set()
    for f in list(DEFAULT_FREQUENCIES) + list(range(2, k + 1)):
        p = min(max(round(k / f), 2), k)
        if p not in seen:
            seen.add(p)
            out.append(f)
        if len(out) == config.n_bands:
            break
    return out


def spt_loss(
    outputs: Mapping[str, torch.Tensor],
    targets: Mapping[str, torch.Tensor],
    masks: Mapping[str, torch.Tensor] | None = None,
    *,
    model: SPT,
    weights: Mapping[str, float] | None = None,
    class_weights: Mapping[str, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Multi-task loss of :class:`SPT` outputs, averaged over the available labels per task.

    Classification: cross-entropy of the logits against the target class values (mapped to
    indices with the model's ``classes``). Regression: MSE of the standardised outputs against
    ``(y - target_mean) / target_std``. Each task's term is the mean over its labels that are
    finite and selected by ``masks[name]`` (bool ``[B]``, True = use; default all); a task with
    no such label in the batch (or absent from ``targets``) contributes exactly 0.

    Args:
        outputs: ``model(x)``.
        targets: task name -> ``[B]`` labels in target units (class values for classification),
            NaN = missing.
        masks: optional task name -> bool ``[B]`` selecting labels.
        model: the model that produced ``outputs`` (classes and target scaling).
        weights: optional task name -> weight of its term (default 1).
        class_weights: optional classification task name -> ``[n_classes]`` weights of its
            cross-entropy (class order = ``classes``; a weighted mean over the labels).

    Returns:
        ``(total, parts)``: the weighted sum (scalar) and the unweighted term of every task.
    """
    tasks = model.tasks
    for name in [*targets, *(masks or {}), *(weights or {}), *(class_weights or {})]:
        if name not in tasks:
            raise ModelError(
                f"{name!r} is not a task of this model (tasks: {list(tasks)}); drop it or add "
                "the task to the config"
            )
    reg = {n: i for i, n in enumerate(model.regression_tasks)}
    anchor = next(iter(outputs.values()))
    total = anchor.sum() * 0.0
    parts: dict[str, torch.Tensor] = {}
    for name, task in tasks.items():
        pred = outputs[name]
        if name not in targets:
            parts[name] = pred.sum() * 0.0
            continue
        y = torch.as_tensor(targets[name], device=pred.device).reshape(-1)
        if y.shape[0] != pred.shape[0]:
            raise ModelError(
                f"task {name!r}: {y.shape[0]} labels for a batch of {pred.shape[0]}; give one "
                "label (or NaN) per spectrum"
            )
        if task.kind == "classification":
            idx, valid = model.class_indices(name, y)
        else:
            y = y.to(pred.dtype)
            valid = torch.isfinite(y)
        if masks is not None and name in masks:
            valid = valid & torch.as_tensor(masks[name], device=pred.device).reshape(-1).bool()
        if not bool(valid.any()):
            parts[name] = pred.sum() * 0.0
            continue
        if task.kind == "classification":
            cw = (class_weights or {}).get(name)
            if cw is not None:
                cw = torch.as_tensor(cw, dtype=pred.dtype, device=pred.device)
                if cw.shape != (pred.shape[-1],):
                    raise ModelError(
                        f"class_weights[{name!r}] has shape {tuple(cw.shape)}; give one weight "
                        f"per class ({pred.shape[-1]})"
                    )
            term = F.cross_entropy(pred[valid], idx[valid].to(pred.device), weight=cw)
        else:
            i = reg[name]
            z = (y[valid] - model.target_mean[i]) / model.target_std[i]
            term = F.mse_loss(pred[valid], z)
        parts[name] = term
        total = total + float((weights or {}).get(name, 1.0)) * term
    return total, parts
