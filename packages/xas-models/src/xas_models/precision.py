"""Mixed-precision helpers shared by the models.

The models train with fp32 weights under ``torch.autocast`` (bf16/fp16 matmuls on GPUs, see
``xas_train.trainer.autocast_section``). A few steps lose too much in 16 bits: input
standardisation, normalisation statistics, sums over many messages and the output layer that
writes the spectrum (bf16 keeps 8 bits, so a spectrum rounded to bf16 carries point-to-point
noise of ~0.4 % that dominates its second differences). Those steps run outside autocast in
the parameters' dtype: fp32 in training, float64 in some tests, and a model cast as a whole
(``model.bfloat16()``, buffers included) still runs in one dtype.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn


def working_dtype(module: nn.Module) -> torch.dtype:
    """The dtype ``module`` computes in outside autocast: that of its first floating-point
    parameter (fp32 if it has none)."""
    for param in module.parameters():
        if param.is_floating_point():
            return param.dtype
    return torch.float32


def full_precision(device: torch.device | str) -> contextlib.AbstractContextManager:
    """A context in which autocast is off for ``device`` (ops run in their inputs' dtype)."""
    kind = torch.device(device).type
    return (
        torch.autocast(kind, enabled=False) if kind in ("cpu", "cuda") else contextlib.nullcontext()
    )


def precise(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``module(x)`` outside autocast, in its :func:`working_dtype` (fp32 for fp32 weights)."""
    with full_precision(x.device):
        return module(x.to(working_dtype(module)))
