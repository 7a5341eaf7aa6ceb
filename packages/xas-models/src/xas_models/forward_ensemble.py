"""Deep ensemble of forward models (features -> spectrum) in one checkpoint, with a calibrated
per-energy uncertainty.

:class:`ForwardEnsemble` (registered ``"forward_ensemble"``) holds ``n_members`` models of one
architecture and config (e.g. XAS blocks trained from different seeds). Its ``forward`` returns
the members' mean spectrum ``[B, K]``, so everything that runs a single forward model (the
trainer's evaluation, :func:`xas_models.predict`, ``xas-eval evaluate``) runs an ensemble
unchanged. :meth:`ForwardEnsemble.mean_and_sigma` adds the spread: the members' standard
deviation (population, ``ddof=0``) at each energy point times ``sigma_scale``, a factor fitted
on a validation split so that ``|y - mean| <= sigma`` holds for 68 % of the points there
(:func:`calibrate_sigma_scale`). ``sigma_scale`` is part of the config, so ``model.json`` and
the model card carry it.

The calibration helpers (:func:`calibrate_sigma_scale`, :func:`coverage`) are numpy only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from xas_models.configured import ConfiguredModel
from xas_models.errors import ModelError
from xas_models.registry import build_model, register_model

#: share of validation points the calibrated 1-sigma interval covers
TARGET_COVERAGE = 0.68
#: floor on the raw spread (same units as mu) so that points where all members agree exactly
#: do not divide by zero during calibration
SIGMA_FLOOR = 1e-12


class ForwardEnsembleConfig(BaseModel):
    """``member``: architecture name; ``member_config``: its config (shared by all members);
    ``n_members`` >= 1; ``sigma_scale``: factor on the members' spread (calibrated, > 0)."""

    model_config = ConfigDict(extra="forbid")

    member: str = "xasblock"
    member_config: dict[str, Any]
    n_members: int = Field(default=5, ge=1)
    sigma_scale: float = Field(default=1.0, gt=0)


_HINTS = {
    "member": "a forward architecture name, e.g. 'xasblock'",
    "member_config": "the member architecture's config (a mapping)",
    "n_members": "an integer >= 1",
    "sigma_scale": "a number > 0 (fitted by calibrate_sigma_scale)",
}


def _spectrum(output: Any) -> torch.Tensor:
    """Spectra ``[B, K]`` of a member's output (a tensor, or XANE(3)'s dict)."""
    return output["spectrum"] if isinstance(output, dict) else output


@register_model("forward_ensemble")
class ForwardEnsemble(ConfiguredModel, nn.Module):
    """Deep ensemble of forward models: inputs -> mean spectrum ``[B, K]``.

    Weights of member ``i`` are stored under ``members.<i>.`` in the one safetensors file.
    """

    config_class = ForwardEnsembleConfig
    config_name = "forward_ensemble"
    config_hints = _HINTS
    config_example = "{'member': 'xasblock', 'member_config': {...}, 'n_members': 5}"

    def __init__(self, config: ForwardEnsembleConfig) -> None:
        super().__init__()
        self.config = config
        self.members = nn.ModuleList(
            build_model(config.member, dict(config.member_config)) for _ in range(config.n_members)
        )

    @classmethod
    def from_members(
        cls, members: list[nn.Module], member: str = "xasblock", sigma_scale: float = 1.0
    ) -> ForwardEnsemble:
        """An ensemble holding copies of the trained ``members`` (one architecture and config;
        only their weights may differ)."""
        if not members:
            raise ModelError("an ensemble needs at least one member")
        configs = [m.config_dict() for m in members]
        if any(c != configs[0] for c in configs):
            raise ModelError(
                "ensemble members must share one config (only seeds / data may differ)"
            )
        ens = cls(
            ForwardEnsembleConfig(
                member=member,
                member_config=configs[0],
                n_members=len(members),
                sigma_scale=sigma_scale,
            )
        )
        for target, source in zip(ens.members, members, strict=True):
            target.load_state_dict(source.state_dict())
        ens.eval()
        return ens

    @property
    def sigma_scale(self) -> float:
        """The calibrated factor on the members' spread."""
        return float(self.config.sigma_scale)

    def set_sigma_scale(self, scale: float) -> None:
        """Use ``scale`` (finite, > 0) as the spread factor from now on (kept in checkpoints)."""
        if not (np.isfinite(scale) and scale > 0):
            raise ModelError(f"sigma_scale must be finite and > 0, got {scale}")
        self.config = self.config.model_copy(update={"sigma_scale": float(scale)})

    def member_outputs(self, x: Any) -> torch.Tensor:
        """Every member's spectra for the same inputs: ``[M, B, K]``."""
        return torch.stack([_spectrum(m(x)) for m in self.members])

    def forward(self, x: Any) -> torch.Tensor:
        """Mean spectrum over the members, ``[B, K]``."""
        return self.member_outputs(x).mean(0)

    def mean_and_sigma(self, x: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean, sigma)``, each ``[B, K]``: sigma = members' std (ddof 0) x sigma_scale."""
        outs = self.member_outputs(x)
        return outs.mean(0), outs.std(0, unbiased=False) * self.sigma_scale


def spread(member_outputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, raw sigma)`` over axis 0 of member predictions ``[M, ...]`` (std with ddof 0,
    before the calibration factor)."""
    arr = np.asarray(member_outputs, dtype=np.float64)
    return arr.mean(0), arr.std(0)


def calibrate_sigma_scale(
    y: np.ndarray, mean: np.ndarray, sigma: np.ndarray, target: float = TARGET_COVERAGE
) -> float:
    """The factor ``s`` such that ``|y - mean| <= s * sigma`` holds for a share ``target`` of
    the points (all spectra and energies pooled): the ``target`` quantile of
    ``|y - mean| / sigma``.

    Args:
        y, mean, sigma: arrays of one shape (e.g. ``[N, K]``); sigma is the raw spread.
        target: coverage wanted, in (0, 1).

    Raises:
        ModelError: mismatched shapes, no points, or a target outside (0, 1).
    """
    y, mean, sigma = (np.asarray(a, dtype=np.float64) for a in (y, mean, sigma))
    if not (y.shape == mean.shape == sigma.shape) or y.size == 0:
        raise ModelError(
            f"calibration needs y, mean and sigma of one non-empty shape, got {y.shape}, "
            f"{mean.shape}, {sigma.shape}"
        )
    if not 0.0 < target < 1.0:
        raise ModelError(f"target coverage must be in (0, 1), got {target}")
    z = np.abs(y - mean) / np.maximum(sigma, SIGMA_FLOOR)
    return float(np.quantile(z, target))


def coverage(y: np.ndarray, mean: np.ndarray, sigma: np.ndarray, k: float = 1.0) -> float:
    """Share of points with ``|y - mean| <= k * sigma`` (sigma already calibrated)."""
    y, mean, sigma = (np.asarray(a, dtype=np.float64) for a in (y, mean, sigma))
    return float(np.mean(np.abs(y - mean) <= k * sigma))


__all__ = [
    "TARGET_COVERAGE",
    "ForwardEnsemble",
    "ForwardEnsembleConfig",
    "calibrate_sigma_scale",
    "coverage",
    "spread",
]
