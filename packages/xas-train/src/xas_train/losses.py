"""Spectrum losses by name: ``mse``, ``rse`` and ``derivative``.

All take ``pred`` and ``target`` of shape ``(batch, K)`` (K energy points on a uniform grid) and
return a scalar mean over the batch, so that averaging over micro-batches and ranks gives the
loss of the global batch.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from xas_train.errors import ConfigError

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def mse_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over all points and spectra."""
    return torch.mean((pred - target) ** 2)


def rse_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Mean relative squared error ``sum_k (y - yhat)^2 / sum_k y^2`` (CGXAS)."""
    num = torch.sum((pred - target) ** 2, dim=1)
    den = torch.sum(target**2, dim=1).clamp_min(eps)
    return torch.mean(num / den)


def derivative_loss(d1: float = 0.1, d2: float = 0.05) -> LossFn:
    """MSE plus ``d1`` x MSE of first differences plus ``d2`` x MSE of second differences.

    Differences are per grid step (no division by the step), so the weights are unit-free.
    Penalising derivative errors sharpens edges and peaks (XANE(3) uses the same idea).
    """

    def loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        err = pred - target
        total = torch.mean(err**2)
        if d1:
            total = total + d1 * torch.mean(torch.diff(err, n=1, dim=1) ** 2)
        if d2:
            total = total + d2 * torch.mean(torch.diff(err, n=2, dim=1) ** 2)
        return total

    return loss


LOSSES = ("mse", "rse", "derivative")


def make_loss(name: str, params: dict[str, float] | None = None) -> LossFn:
    """The loss called ``name`` with ``params``; ConfigError listing the choices otherwise."""
    params = dict(params or {})
    if name == "derivative":
        unknown = set(params) - {"d1", "d2"}
        if unknown:
            raise ConfigError(
                f"training.loss_params {sorted(unknown)} are not known for 'derivative'; "
                "use d1 and d2 (weights of the first/second-derivative terms)"
            )
        return derivative_loss(**params)
    if name in ("mse", "rse"):
        if params:
            raise ConfigError(f"loss {name!r} takes no training.loss_params; remove {params}")
        return mse_loss if name == "mse" else rse_loss
    raise ConfigError(f"unknown training.loss {name!r}; choose one of {', '.join(LOSSES)}")
