"""Spectrum losses by name: ``mse``, ``rse``, ``derivative`` and ``xane3``.

All take ``pred`` and ``target`` of shape ``(batch, K)`` (K energy points on a uniform grid) and
return a scalar mean over the batch, so that averaging over micro-batches and ranks gives the
loss of the global batch. Every loss computes in fp32 (or wider), also on the 16-bit outputs of
a mixed-precision forward pass: differences of neighbouring points lose most of their digits
in bf16.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from xas_train.errors import ConfigError

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def full_precision(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``pred`` and ``target`` in their common dtype, at least fp32."""
    dtype = torch.promote_types(torch.promote_types(pred.dtype, target.dtype), torch.float32)
    return pred.to(dtype), target.to(dtype)


def mse_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over all points and spectra."""
    pred, target = full_precision(pred, target)
    return torch.mean((pred - target) ** 2)


def rse_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Mean relative squared error ``sum_k (y - yhat)^2 / sum_k y^2`` (CGXAS)."""
    pred, target = full_precision(pred, target)
    num = torch.sum((pred - target) ** 2, dim=1)
    den = torch.sum(target**2, dim=1).clamp_min(eps)
    return torch.mean(num / den)


def derivative_loss(d1: float = 0.1, d2: float = 0.05) -> LossFn:
    """MSE plus ``d1`` x MSE of first differences plus ``d2`` x MSE of second differences.

    Differences are per grid step (no division by the step), so the weights are unit-free.
    Penalising derivative errors sharpens edges and peaks (XANE(3) uses the same idea).
    """

    def loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pred, target = full_precision(pred, target)
        err = pred - target
        total = torch.mean(err**2)
        if d1:
            total = total + d1 * torch.mean(torch.diff(err, n=1, dim=1) ** 2)
        if d2:
            total = total + d2 * torch.mean(torch.diff(err, n=2, dim=1) ** 2)
        return total

    return loss


class XANE3Loss:
    """The XANE(3) objective: MSE + annealed first/second-derivative terms + L1 on E0.

    Calling it with ``(pred, target)`` gives the full-weight spectrum objective (the validation
    loss: annealing factor 1, no E0 term); :meth:`train_loss` gives the training loss of one
    batch at ``epoch``: the derivative weights grow linearly from 0 to ``d1``/``d2`` over
    ``anneal_epochs``, and when the model returns an ``e0`` (eV above the first grid point) it
    is fitted to the target's edge energy (maximum of the central difference, in eV on a grid
    of ``energy_step`` eV) with weight ``e0_weight``. See :func:`xas_models.xane3_loss`.
    """

    PARAMS = ("d1", "d2", "e0_weight", "anneal_epochs")

    def __init__(
        self,
        d1: float = 0.1,
        d2: float = 0.01,
        e0_weight: float = 0.1,
        anneal_epochs: float = 10,
        energy_step: float = 1.0,
    ) -> None:
        from xas_models import xane3_loss  # needs the graph extra (e3nn), like the model

        self._loss = xane3_loss
        self.d1, self.d2, self.e0_weight = float(d1), float(d2), float(e0_weight)
        self.anneal_epochs = int(anneal_epochs)
        self.energy_step = float(energy_step)

    def edge_energy(self, target: torch.Tensor) -> torch.Tensor:
        """E0 of each target spectrum ``[B, K]`` in eV above the first grid point, ``[B]``."""
        central = target[:, 2:] - target[:, :-2]
        return (torch.argmax(central, dim=1) + 1).to(target.dtype) * self.energy_step

    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total, _ = self._loss(pred, target, d1=self.d1, d2=self.d2, epoch=None)
        return total

    def train_loss(self, output: object, target: torch.Tensor, epoch: int) -> torch.Tensor:
        """Loss of one batch: ``output`` is the model output (a tensor or XANE(3)'s dict)."""
        if isinstance(output, dict):
            pred, e0 = output["spectrum"].float(), output.get("e0")
        else:
            pred, e0 = output.float(), None
        total, _ = self._loss(
            pred,
            target,
            e0_pred=None if e0 is None else e0.float(),
            e0_true=None if e0 is None else self.edge_energy(target),
            d1=self.d1,
            d2=self.d2,
            e0_weight=self.e0_weight,
            epoch=epoch,
            anneal_epochs=self.anneal_epochs,
        )
        return total


LOSSES = ("mse", "rse", "derivative", "xane3")


def make_loss(
    name: str, params: dict[str, float] | None = None, energy_step: float = 1.0
) -> LossFn:
    """The loss called ``name`` with ``params``; ConfigError listing the choices otherwise.

    ``energy_step`` (eV) is the grid spacing, used by ``xane3`` for its E0 target.
    """
    params = dict(params or {})
    if name == "xane3":
        unknown = set(params) - set(XANE3Loss.PARAMS)
        if unknown:
            raise ConfigError(
                f"training.loss_params {sorted(unknown)} are not known for 'xane3'; use "
                f"{', '.join(XANE3Loss.PARAMS)}"
            )
        return XANE3Loss(**params, energy_step=energy_step)
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


def batch_loss(loss_fn: LossFn, output: object, target: torch.Tensor, epoch: int) -> torch.Tensor:
    """Training loss of one batch from the raw model ``output`` (tensor or dict) at ``epoch``."""
    train_loss = getattr(loss_fn, "train_loss", None)
    if train_loss is not None:
        return train_loss(output, target, epoch)
    pred = output["spectrum"] if isinstance(output, dict) else output
    return loss_fn(pred.float(), target)
