"""RankAAE: a rank-constrained adversarial autoencoder for XAS spectra.

An interpretable latent space for spectra (typically simulated spectra plus measured spectra
mapped onto the simulation domain with :mod:`xas_models.sdm`)::

    z     = encoder(x)            MLP  [B, K] -> [B, n_latent]
    x_hat = decoder(z)            MLP  [B, n_latent] -> [B, K]
    D(z)                          MLP  [B, n_latent] -> [B] logit "z is a prior sample"

Losses (:func:`rankaae_losses`):

* ``reconstruction``: ``mean((x_hat - x)^2)``.
* ``rank``: for every aligned descriptor ``name -> latent dim a`` (config ``aligned``) the
  pairwise ranking loss ``mean_{(i, j): d_i > d_j} softplus(-(z_ia - z_ja))`` over the ordered
  pairs of the batch whose labels are both present (finite) and differ; it is small when
  ``z_a`` is ordered like the descriptor. Summed over the aligned descriptors (a descriptor
  without such a pair contributes 0).
* ``adversarial`` (generator): ``BCE(D(z), 1)``: the encoder makes ``z`` look like ``N(0, I)``.
* ``discriminator``: ``BCE(D(z.detach()), 0) + BCE(D(p), 1)``, ``p ~ N(0, I)``.

:func:`train_step` does one step with two optimizers (autoencoder, then discriminator).
:class:`LatentRegressorEnsemble` maps latent vectors to descriptors (e.g. OS and CN) with an
ensemble of small MLPs whose spread is an uncertainty estimate. :class:`RankAAEDescriber`
("rankaae-describer") holds a trained autoencoder and its regressor ensemble as one
checkpointable module (spectra -> descriptors with a std); :func:`nearest_class` rounds a
regressed value to the nearest class (e.g. OS 2.4 -> 2).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from torch import nn

from xas_models.configured import ConfiguredModel
from xas_models.errors import ModelError
from xas_models.registry import register_model

#: Default loss weights of :func:`train_step` (keys of :func:`rankaae_losses`).
DEFAULT_WEIGHTS: dict[str, float] = {"reconstruction": 1.0, "rank": 1.0, "adversarial": 0.05}


class RankAAEConfig(BaseModel):
    """Validated hyper-parameters of :class:`RankAAE`. Unknown keys are rejected.

    Attributes:
        input_dim: energy points K of the spectra (>= 2), default 141.
        n_latent: latent dimensions (>= 1), default 5.
        encoder_hidden: hidden widths of the encoder (each > 0), default [128, 64].
        decoder_hidden: hidden widths of the decoder (each > 0), default [64, 128].
        disc_hidden: hidden widths of the discriminator (each > 0), default [64, 64].
        aligned: descriptor name -> latent dimension ordered like it (distinct dims in
            ``[0, n_latent)``), default ``{}`` (no rank constraint).
        dropout: dropout after each hidden layer of encoder and decoder, in [0, 1), default 0.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_dim: int = Field(default=141, ge=2)
    n_latent: int = Field(default=5, ge=1)
    encoder_hidden: list[int] = Field(default_factory=lambda: [128, 64])
    decoder_hidden: list[int] = Field(default_factory=lambda: [64, 128])
    disc_hidden: list[int] = Field(default_factory=lambda: [64, 64])
    aligned: dict[str, int] = Field(default_factory=dict)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)

    @field_validator("encoder_hidden", "decoder_hidden", "disc_hidden")
    @classmethod
    def _positive_widths(cls, v: list[int]) -> list[int]:
        bad = [w for w in v if w <= 0]
        if bad:
            raise ValueError(f"every width must be > 0, got {bad}")
        return v

    @field_validator("aligned")
    @classmethod
    def _aligned_dims(cls, v: dict[str, int], info: ValidationInfo) -> dict[str, int]:
        n_latent = info.data.get("n_latent")
        if n_latent is not None:
            bad = {k: a for k, a in v.items() if not 0 <= a < n_latent}
            if bad:
                raise ValueError(f"aligned dims {bad} are outside [0, n_latent={n_latent})")
        dims = list(v.values())
        if len(set(dims)) != len(dims):
            raise ValueError(f"two descriptors share a latent dim in {v}")
        if any(not k for k in v):
            raise ValueError("aligned descriptor names must be non-empty")
        return v


_FIELD_HINTS: dict[str, str] = {
    "input_dim": "an integer >= 2 (energy points per spectrum, default 141)",
    "n_latent": "an integer >= 1, default 5",
    "encoder_hidden": "a list of integers > 0, e.g. [128, 64]",
    "decoder_hidden": "a list of integers > 0, e.g. [64, 128]",
    "disc_hidden": "a list of integers > 0, e.g. [64, 64]",
    "aligned": "a dict descriptor name -> distinct latent dim in [0, n_latent), e.g. "
    "{'OS': 0, 'CN': 1}",
    "dropout": "a float in [0, 1), default 0.0",
}


def _mlp(
    widths: Sequence[int], act: Callable[[], nn.Module] | None = None, dropout: float = 0.0
) -> nn.Sequential:
    layers: list[nn.Module] = []
    n = len(widths) - 1
    for i in range(n):
        layers.append(nn.Linear(widths[i], widths[i + 1]))
        if i < n - 1:
            layers.append(act() if act is not None else nn.SiLU())
            if dropout:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


@register_model("rankaae")
class RankAAE(ConfiguredModel, nn.Module):
    """Rank-constrained adversarial autoencoder: ``[B, K]`` spectra <-> ``[B, n_latent]`` z."""

    config_class = RankAAEConfig
    config_name = "rankaae"
    config_hints = _FIELD_HINTS
    config_example = "{'input_dim': 141, 'n_latent': 5, 'aligned': {'OS': 0, 'CN': 1}}"

    def __init__(self, config: RankAAEConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.encoder = _mlp([c.input_dim, *c.encoder_hidden, c.n_latent], dropout=c.dropout)
        self.decoder = _mlp([c.n_latent, *c.decoder_hidden, c.input_dim], dropout=c.dropout)
        self.discriminator = _mlp([c.n_latent, *c.disc_hidden, 1], act=lambda: nn.LeakyReLU(0.2))

    def autoencoder_parameters(self) -> Iterator[nn.Parameter]:
        """Encoder and decoder parameters (for the autoencoder optimizer)."""
        yield from self.encoder.parameters()
        yield from self.decoder.parameters()

    def discriminator_parameters(self) -> Iterator[nn.Parameter]:
        """Discriminator parameters (for the discriminator optimizer)."""
        yield from self.discriminator.parameters()

    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 2 or x.shape[1] != self.config.input_dim:
            raise ModelError(
                f"expected spectra of shape (batch, {self.config.input_dim}), got "
                f"{tuple(x.shape)}; interpolate onto the model's energy grid first"
            )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Latent vectors ``[B, n_latent]`` of spectra ``x [B, K]``."""
        self._check_input(x)
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Spectra ``[B, K]`` of latent vectors ``z [B, n_latent]``."""
        if z.ndim != 2 or z.shape[1] != self.config.n_latent:
            raise ModelError(
                f"expected latent vectors of shape (batch, {self.config.n_latent}), got "
                f"{tuple(z.shape)}"
            )
        return self.decoder(z)

    def discriminate(self, z: torch.Tensor) -> torch.Tensor:
        """Discriminator logits ``[B]`` (> 0: looks like a prior sample)."""
        return self.discriminator(z).squeeze(-1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x_hat [B, K], z [B, n_latent])``."""
        z = self.encode(x)
        return self.decoder(z), z


def pairwise_rank_loss(z: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """Smooth ranking loss of a latent coordinate ``z [B]`` against labels ``d [B]``.

    ``mean softplus(-(z_i - z_j))`` over ordered pairs with ``d_i > d_j``, both finite; the
    sum of ``z * 0`` (exactly 0, keeps the graph) when there is no such pair.
    """
    d = d.to(z.dtype).reshape(-1)
    ok = torch.isfinite(d)
    pair = (
        ok[:, None]
        & ok[None, :]
        & (torch.where(ok, d, 0.0)[:, None] > torch.where(ok, d, 0.0)[None, :])
    )
    if not bool(pair.any()):
        return z.sum() * 0.0
    dz = z[:, None] - z[None, :]
    return F.softplus(-dz[pair]).mean()


def rankaae_losses(
    model: RankAAE,
    x: torch.Tensor,
    descriptors: Mapping[str, torch.Tensor] | None = None,
    *,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """All RankAAE losses of a batch (see the module docstring).

    Args:
        model: the autoencoder.
        x: ``[B, K]`` spectra.
        descriptors: descriptor name -> ``[B]`` labels (NaN = missing); the aligned ones enter
            the rank loss, others are ignored. An aligned descriptor that is absent adds 0.
        generator: random generator for the prior samples (default: torch's global one).

    Returns:
        ``reconstruction``, ``rank``, ``adversarial`` (generator term), ``discriminator``
        (scalars), ``rank/<name>`` per aligned descriptor, and ``z`` (the latent batch).
    """
    x_hat, z = model(x)
    out: dict[str, torch.Tensor] = {"reconstruction": F.mse_loss(x_hat, x)}
    rank = z.sum() * 0.0
    for name, dim in model.config.aligned.items():
        if descriptors is None or name not in descriptors:
            term = z.sum() * 0.0
        else:
            d = torch.as_tensor(descriptors[name], device=z.device).reshape(-1)
            if d.shape[0] != z.shape[0]:
                raise ModelError(
                    f"descriptor {name!r}: {d.shape[0]} labels for a batch of {z.shape[0]}"
                )
            term = pairwise_rank_loss(z[:, dim], d)
        out[f"rank/{name}"] = term
        rank = rank + term
    out["rank"] = rank
    fake = model.discriminate(z)
    out["adversarial"] = F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))
    prior = torch.randn(z.shape, generator=generator, dtype=z.dtype).to(z.device)
    real = model.discriminate(prior)
    fake_d = model.discriminate(z.detach())
    out["discriminator"] = F.binary_cross_entropy_with_logits(
        real, torch.ones_like(real)
    ) + F.binary_cross_entropy_with_logits(fake_d, torch.zeros_like(fake_d))
    out["z"] = z
    return out


def _optimizer_params(opt: torch.optim.Optimizer) -> set[int]:
    return {id(p) for group in opt.param_groups for p in group["params"]}


def train_step(
    model: RankAAE,
    opt_ae: torch.optim.Optimizer,
    opt_disc: torch.optim.Optimizer,
    x: torch.Tensor,
    labels: Mapping[str, torch.Tensor] | None = None,
    weights: Mapping[str, float] | None = None,
    *,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """One RankAAE training step with two optimizers.

    1. autoencoder: ``opt_ae`` (over :meth:`RankAAE.autoencoder_parameters` only) minimises
       ``w_rec * reconstruction + w_rank * rank + w_adv * adversarial``;
    2. discriminator: ``opt_disc`` (over :meth:`RankAAE.discriminator_parameters`) minimises
       ``discriminator`` (on the z of this batch, detached, against fresh prior samples).

    Args:
        weights: loss weights, keys ``reconstruction``, ``rank``, ``adversarial`` (defaults
            :data:`DEFAULT_WEIGHTS`; missing keys keep their default).

    Returns:
        The float value of every loss term (before the updates), plus ``total`` (the weighted
        autoencoder objective).
    """
    w = dict(DEFAULT_WEIGHTS)
    for key, value in (weights or {}).items():
        if key not in DEFAULT_WEIGHTS:
            raise ModelError(f"unknown loss weight {key!r}; use {sorted(DEFAULT_WEIGHTS)}")
        w[key] = float(value)
    disc_ids = {id(p) for p in model.discriminator_parameters()}
    ae_ids = {id(p) for p in model.autoencoder_parameters()}
    if _optimizer_params(opt_ae) & disc_ids or _optimizer_params(opt_disc) & ae_ids:
        raise ModelError(
            "opt_ae must hold only model.autoencoder_parameters() and opt_disc only "
            "model.discriminator_parameters()"
        )
    model.train()
    losses = rankaae_losses(model, x, labels, generator=generator)
    total = (
        w["reconstruction"] * losses["reconstruction"]
        + w["rank"] * losses["rank"]
        + w["adversarial"] * losses["adversarial"]
    )
    opt_ae.zero_grad(set_to_none=True)
    total.backward()
    opt_ae.step()
    # the discriminator loss uses z.detach(): its graph does not involve the updated weights
    opt_disc.zero_grad(set_to_none=True)
    losses["discriminator"].backward()
    opt_disc.step()
    result = {k: float(v.detach()) for k, v in losses.items() if k != "z"}
    result["total"] = float(total.detach())
    return result


#: Alias exported from ``xas_models`` (``train_step`` is too generic a top-level name).
rankaae_train_step = train_step


class LatentRegressorEnsemble(nn.Module):
    """Ensemble of small MLPs ``z [N, n_latent] -> y [N, n_outputs]`` (e.g. OS and CN).

    Members differ by initialisation and, with ``bootstrap=True``, by their bootstrap
    resample of the training pairs. Targets are standardised internally (buffers ``y_mean``,
    ``y_std``); NaN targets are ignored per output. :meth:`predict` returns the mean over
    members and their standard deviation (population, ddof=0) as an uncertainty.
    """

    def __init__(
        self,
        n_members: int,
        n_latent: int,
        n_outputs: int = 1,
        hidden: Sequence[int] = (32,),
    ) -> None:
        super().__init__()
        if n_members < 2:
            raise ModelError(f"an ensemble needs n_members >= 2 for a spread, got {n_members}")
        if n_latent < 1 or n_outputs < 1 or any(h <= 0 for h in hidden):
            raise ModelError(
                f"n_latent ({n_latent}), n_outputs ({n_outputs}) and hidden widths "
                f"({list(hidden)}) must be > 0"
            )
        self.n_latent, self.n_outputs = n_latent, n_outputs
        self.members = nn.ModuleList(_mlp([n_latent, *hidden, n_outputs]) for _ in range(n_members))
        self.register_buffer("y_mean", torch.zeros(n_outputs))
        self.register_buffer("y_std", torch.ones(n_outputs))

    def _z(self, z: torch.Tensor | np.ndarray) -> torch.Tensor:
        z = torch.as_tensor(z, dtype=self.y_mean.dtype, device=self.y_mean.device)
        if z.ndim != 2 or z.shape[1] != self.n_latent:
            raise ModelError(f"expected z of shape (n, {self.n_latent}), got {tuple(z.shape)}")
        return z

    def fit(
        self,
        z: torch.Tensor | np.ndarray,
        y: torch.Tensor | np.ndarray,
        *,
        steps: int = 300,
        lr: float = 1e-2,
        weight_decay: float = 1e-4,
        bootstrap: bool = True,
        seed: int = 0,
    ) -> list[float]:
        """Fit every member by full-batch Adam for ``steps`` steps on ``(z, y)`` pairs.

        Args:
            z: ``[N, n_latent]`` latent vectors (e.g. ``model.encode(x).detach()``).
            y: ``[N]`` (n_outputs 1) or ``[N, n_outputs]`` targets, NaN = missing.
            seed: seeds the initialisation and the bootstrap resamples.

        Returns:
            The mean member loss (standardised MSE) at every step.
        """
        z = self._z(z)
        y = torch.as_tensor(y, dtype=z.dtype, device=z.device)
        if y.ndim == 1:
            y = y[:, None]
        if y.shape != (z.shape[0], self.n_outputs):
            raise ModelError(
                f"expected y of shape ({z.shape[0]}, {self.n_outputs}) or ({z.shape[0]},), "
                f"got {tuple(y.shape)}"
            )
        ok = torch.isfinite(y)
        if not bool(ok.any(dim=0).all()):
            raise ModelError("every output needs at least one finite target to fit")
        with torch.no_grad():
            for j in range(self.n_outputs):
                col = y[ok[:, j], j]
                self.y_mean[j] = col.mean()
                self.y_std[j] = col.std(unbiased=False).clamp_min(1e-6)
        ys = torch.where(ok, (y - self.y_mean) / self.y_std, 0.0)
        gen = torch.Generator().manual_seed(seed)
        n = z.shape[0]
        counts = []
        for member in self.members:
            for layer in member:
                if isinstance(layer, nn.Linear):  # seeded re-initialisation
                    bound = 1.0 / math.sqrt(layer.in_features)
                    with torch.no_grad():
                        layer.weight.copy_(
                            (torch.rand(layer.weight.shape, generator=gen) * 2 - 1) * bound
                        )
                        layer.bias.copy_(
                            (torch.rand(layer.bias.shape, generator=gen) * 2 - 1) * bound
                        )
            if bootstrap:
                idx = torch.randint(0, n, (n,), generator=gen)
                counts.append(torch.bincount(idx, minlength=n).to(z.dtype))
            else:
                counts.append(torch.ones(n, dtype=z.dtype))
        weight = torch.stack(counts).to(z.device)[:, :, None] * ok  # [M, N, n_outputs]
        denom = weight.sum(dim=1).clamp_min(1.0)  # [M, n_outputs]
        opt = torch.optim.Adam(self.parameters(), lr=lr, weight_decay=weight_decay)
        history = []
        self.train()
        for _ in range(steps):
            pred = torch.stack([m(z) for m in self.members])  # [M, N, n_outputs]
            loss = ((weight * (pred - ys) ** 2).sum(dim=1) / denom).mean()
            opt.zero_grad(set_to_none=True)
            (loss * len(self.members)).backward()  # each member: its own mean loss
            opt.step()
            history.append(float(loss.detach()))
        self.eval()
        return history

    @torch.no_grad()
    def predict(self, z: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean, std)`` over members, each ``[N, n_outputs]`` in target units."""
        z = self._z(z)
        pred = torch.stack([m(z) for m in self.members]) * self.y_std + self.y_mean
        return pred.mean(dim=0), pred.std(dim=0, unbiased=False)


def nearest_class(values: torch.Tensor | np.ndarray, classes: Sequence[float]) -> np.ndarray:
    """Each value of ``values [N]`` replaced by the nearest of ``classes`` (a tie goes to the
    smaller class; NaN stays NaN), float64 ``[N]``. E.g. a regressed OS of 2.4 -> class 2."""
    v = np.asarray(torch.as_tensor(values).detach().cpu().numpy(), dtype=np.float64).ravel()
    c = np.sort(np.asarray(list(classes), dtype=np.float64))
    if c.size == 0 or not np.isfinite(c).all():
        raise ModelError(f"classes must be a non-empty list of finite numbers, got {list(classes)}")
    idx = np.abs(v[:, None] - c[None, :]).argmin(axis=1)  # first (smallest) class on a tie
    return np.where(np.isfinite(v), c[idx], np.nan)


class RankAAEDescriberConfig(BaseModel):
    """Validated config of :class:`RankAAEDescriber`. Unknown keys are rejected.

    Attributes:
        autoencoder: the :class:`RankAAEConfig` of the autoencoder (as a dict).
        descriptors: names of the regressed descriptors, in output column order (distinct,
            non-empty).
        n_members: members of the latent regressor ensemble (>= 2), default 5.
        hidden: hidden widths of every member MLP (each > 0), default [32].
        classes: descriptor -> its class values (classification descriptors such as OS and
            CN, for :meth:`RankAAEDescriber.nearest_class`); keys must be in ``descriptors``.
        std_scale: descriptor -> factor applied to the ensemble spread (fitted on a validation
            split so that the 1-sigma interval covers 68 %), default 1.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    autoencoder: dict[str, Any]
    descriptors: list[str] = Field(min_length=1)
    n_members: int = Field(default=5, ge=2)
    hidden: list[int] = Field(default_factory=lambda: [32])
    classes: dict[str, list[float]] = Field(default_factory=dict)
    std_scale: dict[str, float] = Field(default_factory=dict)

    @field_validator("descriptors")
    @classmethod
    def _distinct(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v) or any(not n for n in v):
            raise ValueError(f"descriptor names must be distinct and non-empty, got {v}")
        return v

    @field_validator("hidden")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if any(w <= 0 for w in v):
            raise ValueError(f"every width must be > 0, got {v}")
        return v

    @field_validator("classes")
    @classmethod
    def _classes_known(cls, v: dict[str, list[float]], info: ValidationInfo) -> dict[str, list]:
        names = set(info.data.get("descriptors") or [])
        extra = sorted(set(v) - names)
        if extra:
            raise ValueError(f"classes given for {extra}, which are not in descriptors")
        empty = sorted(k for k, c in v.items() if not c)
        if empty:
            raise ValueError(f"empty class list for {empty}")
        return v


_DESCRIBER_HINTS: dict[str, str] = {
    "autoencoder": "a RankAAE config dict, e.g. {'input_dim': 141, 'n_latent': 5}",
    "descriptors": "a list of distinct descriptor names, e.g. ['OS', 'CN']",
    "n_members": "an integer >= 2",
    "hidden": "a list of integers > 0, e.g. [32]",
    "classes": "a dict descriptor -> non-empty list of class values, e.g. {'OS': [1, 2, 3]}",
    "std_scale": "a dict descriptor -> positive factor on the ensemble spread",
}


@dataclass(frozen=True)
class DescriberTask:
    """One output of :class:`RankAAEDescriber`: always ``kind="regression"`` (a value and an
    ensemble std); ``classes`` lists the class values of a classification descriptor."""

    name: str
    kind: str = "regression"
    classes: tuple[float, ...] = ()


@register_model("rankaae-describer")
class RankAAEDescriber(ConfiguredModel, nn.Module):
    """A trained :class:`RankAAE` plus a :class:`LatentRegressorEnsemble` on its latent space,
    as one module: spectra ``[B, K]`` -> latent ``[B, n_latent]`` -> descriptors with an
    ensemble uncertainty.

    ``forward``/:meth:`predict` return ``{name: {"value": [B], "std": [B]}}``, the format of
    regression outputs of :class:`xas_models.inverse.InverseEnsemble`, and :attr:`tasks` lists
    every output as a regression, so :func:`xas_models.predict_descriptors` can use a
    checkpoint of this model (inputs: post-edge-normalised spectra on the checkpoint's grid).
    """

    config_class = RankAAEDescriberConfig
    config_name = "rankaae-describer"
    config_hints = _DESCRIBER_HINTS
    config_example = "{'autoencoder': {'input_dim': 141}, 'descriptors': ['OS', 'CN']}"

    def __init__(self, config: RankAAEDescriberConfig) -> None:
        super().__init__()
        self.config = config
        self.autoencoder = RankAAE.from_config(dict(config.autoencoder))
        self.regressor = LatentRegressorEnsemble(
            config.n_members,
            self.autoencoder.config.n_latent,
            len(config.descriptors),
            tuple(config.hidden),
        )

    @classmethod
    def from_parts(
        cls,
        autoencoder: RankAAE,
        regressor: LatentRegressorEnsemble,
        descriptors: Sequence[str],
        classes: Mapping[str, Sequence[float]] | None = None,
    ) -> RankAAEDescriber:
        """One module holding copies of a trained ``autoencoder`` and ``regressor``, whose
        outputs are ``descriptors`` (in column order)."""
        if regressor.n_latent != autoencoder.config.n_latent:
            raise ModelError(
                f"the regressor takes {regressor.n_latent} latent dims but the autoencoder has "
                f"{autoencoder.config.n_latent}; fit the regressor on this autoencoder's latents"
            )
        if regressor.n_outputs != len(descriptors):
            raise ModelError(
                f"the regressor has {regressor.n_outputs} outputs for {len(descriptors)} "
                f"descriptors {list(descriptors)}; pass one name per output column"
            )
        linears = [m for m in regressor.members[0] if isinstance(m, nn.Linear)]
        config = RankAAEDescriberConfig(
            autoencoder=autoencoder.config_dict(),
            descriptors=[str(d) for d in descriptors],
            n_members=len(regressor.members),
            hidden=[layer.out_features for layer in linears[:-1]],
            classes={k: [float(c) for c in v] for k, v in (classes or {}).items()},
        )
        out = cls(config)
        out.autoencoder.load_state_dict(autoencoder.state_dict())
        out.regressor.load_state_dict(regressor.state_dict())
        return out.eval()

    @property
    def descriptors(self) -> list[str]:
        """Output descriptor names, in column order."""
        return list(self.config.descriptors)

    @property
    def tasks(self) -> list[DescriberTask]:
        """One regression task per descriptor (for :func:`xas_models.predict_descriptors`)."""
        return [
            DescriberTask(n, "regression", tuple(self.config.classes.get(n, ())))
            for n in self.config.descriptors
        ]

    def _as_input(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        param = next(self.autoencoder.encoder.parameters())
        return torch.as_tensor(x, dtype=param.dtype, device=param.device)

    @torch.no_grad()
    def encode(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Latent vectors ``[B, n_latent]`` of spectra ``x [B, K]`` (eval mode)."""
        self.eval()
        return self.autoencoder.encode(self._as_input(x))

    @torch.no_grad()
    def predict(self, x: torch.Tensor | np.ndarray) -> dict[str, dict[str, torch.Tensor]]:
        """``{name: {"value": [B], "std": [B]}}``: ensemble mean and spread (population std,
        in descriptor units) of every descriptor for spectra ``x [B, K]``."""
        mean, std = self.regressor.predict(self.encode(x))
        scale = self.config.std_scale
        return {
            name: {"value": mean[:, j], "std": std[:, j] * float(scale.get(name, 1.0))}
            for j, name in enumerate(self.config.descriptors)
        }

    def set_std_scale(self, scale: Mapping[str, float]) -> None:
        """Multiply the spread of descriptor ``name`` by ``scale[name]`` (finite, > 0) from now
        on (kept in the config, so checkpoints keep it)."""
        from xas_models.inverse import merged_std_scale

        merged = merged_std_scale(self.config.std_scale, dict(scale), self.descriptors, "an output")
        self.config = self.config.model_copy(update={"std_scale": merged})

    def forward(self, x: torch.Tensor) -> dict[str, dict[str, torch.Tensor]]:
        """Same as :meth:`predict`."""
        return self.predict(x)

    def nearest_class(self, name: str, values: torch.Tensor | np.ndarray) -> np.ndarray:
        """Predicted ``values [B]`` of descriptor ``name`` rounded to its nearest class
        (float64 ``[B]``); ModelError when ``name`` has no classes in the config."""
        if name not in self.config.classes:
            raise ModelError(
                f"descriptor {name!r} has no classes in this model (classes for "
                f"{sorted(self.config.classes)}); use the regressed value"
            )
        return nearest_class(values, self.config.classes[name])
