"""The OmniXAS "XAS block": an MLP mapping per-site features to a spectrum on a fixed grid.

Architecture (for each width in ``hidden_widths``)::

    Linear -> BatchNorm1d (optional) -> SiLU -> Dropout

followed by a final ``Linear -> Softplus`` so predicted spectra are non-negative.

Inputs are first standardised with the buffers ``input_mean`` and ``input_scale`` (identity
until :meth:`XASBlock.set_input_scaling` is called), so a checkpoint carries its own feature
scaling and consumes raw featurizer output.

Mixed precision: under ``torch.autocast`` (fp32 weights) the hidden Linear layers run in
bf16/fp16; the standardisation, BatchNorm and the output layer stay fp32
(:mod:`xas_models.precision`).

Input: ``(batch, input_dim)`` float features of the absorbing site (e.g. M3GNet/ACSF/SOAP
descriptors from xas-features). Output: ``(batch, output_dim)`` absorption coefficient mu(E)
(arbitrary normalised units) at ``output_dim`` energy points of the model's energy grid
(OmniXAS uses 141 points).
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import nn

from xas_models.configured import ConfiguredModel
from xas_models.errors import ModelError
from xas_models.precision import precise, working_dtype
from xas_models.registry import register_model

#: Default hidden widths: two layers of 400. A reasonable generic starting point for
#: descriptor-sized inputs (64-1000 features); per-element published models store their own tuned
#: widths in their checkpoint config.
DEFAULT_HIDDEN_WIDTHS: tuple[int, ...] = (400, 400)


class XASBlockConfig(BaseModel):
    """Validated hyper-parameters of :class:`XASBlock`. Unknown keys are rejected.

    Attributes:
        input_dim: number of features per site (> 0).
        output_dim: number of energy points of the predicted spectrum (> 0), default 141.
        hidden_widths: width of each hidden layer (each > 0; may be empty for a linear model),
            default ``[400, 400]``.
        dropout: dropout probability after each hidden activation, in [0, 1), default 0.5.
        batchnorm: insert BatchNorm1d after each hidden Linear, default True.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_dim: int = Field(gt=0)
    output_dim: int = Field(default=141, gt=0)
    hidden_widths: list[int] = Field(default_factory=lambda: list(DEFAULT_HIDDEN_WIDTHS))
    dropout: float = Field(default=0.5, ge=0.0, lt=1.0)
    batchnorm: bool = True

    @field_validator("hidden_widths")
    @classmethod
    def _positive_widths(cls, v: list[int]) -> list[int]:
        bad = [w for w in v if w <= 0]
        if bad:
            raise ValueError(f"every hidden width must be > 0, got {bad}")
        return v


_FIELD_HINTS: dict[str, str] = {
    "input_dim": "an integer > 0 (number of features per site)",
    "output_dim": "an integer > 0 (number of energy points, default 141)",
    "hidden_widths": "a list of integers > 0, e.g. [400, 400]",
    "dropout": "a float in [0, 1), default 0.5",
    "batchnorm": "true or false",
}


@register_model("xasblock")
class XASBlock(ConfiguredModel, nn.Module):
    """OmniXAS XAS-block MLP: ``(batch, input_dim)`` features -> ``(batch, output_dim)`` mu(E) >= 0."""

    config_class = XASBlockConfig
    config_name = "xasblock"
    config_hints = _FIELD_HINTS
    config_example = "{'input_dim': 64}"

    def __init__(self, config: XASBlockConfig) -> None:
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        width_in = config.input_dim
        for width in config.hidden_widths:
            layers.append(nn.Linear(width_in, width))
            if config.batchnorm:
                layers.append(nn.BatchNorm1d(width))
            layers.append(nn.SiLU())
            layers.append(nn.Dropout(config.dropout))
            width_in = width
        layers.append(nn.Linear(width_in, config.output_dim))
        layers.append(nn.Softplus())
        self.net = nn.Sequential(*layers)
        self.register_buffer("input_mean", torch.zeros(config.input_dim))
        self.register_buffer("input_scale", torch.ones(config.input_dim))

    @torch.no_grad()
    def set_input_scaling(self, mean: torch.Tensor, scale: torch.Tensor) -> None:
        """Standardise inputs as ``(x - mean) / scale``; both ``(input_dim,)``, scale > 0."""
        mean = torch.as_tensor(mean, dtype=self.input_mean.dtype).reshape(-1)
        scale = torch.as_tensor(scale, dtype=self.input_scale.dtype).reshape(-1)
        if mean.numel() != self.config.input_dim or scale.numel() != self.config.input_dim:
            raise ModelError(
                f"input scaling needs {self.config.input_dim} values, got mean {mean.numel()} "
                f"and scale {scale.numel()}; compute them over the training features"
            )
        if not bool(torch.all(scale > 0)) or not bool(torch.all(torch.isfinite(mean))):
            raise ModelError("input scale must be finite and > 0 and mean finite; floor the std")
        self.input_mean.copy_(mean)
        self.input_scale.copy_(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predict spectra.

        Args:
            x: ``(batch, input_dim)`` float features.

        Returns:
            ``(batch, output_dim)`` non-negative mu(E) on the model's energy grid.
        """
        if x.ndim != 2 or x.shape[1] != self.config.input_dim:
            raise ModelError(
                f"expected features of shape (batch, {self.config.input_dim}), got "
                f"{tuple(x.shape)}; featurize with the featurizer this model was trained on"
            )
        dtype = working_dtype(self)
        h = (x.to(dtype) - self.input_mean.to(dtype)) / self.input_scale.to(dtype)
        return self._layers(h)

    def _layers(self, h: torch.Tensor) -> torch.Tensor:
        """Run ``net`` on standardised features; under autocast the hidden Linear layers run
        in 16 bits while BatchNorm and the output Linear run in full precision (fp32
        statistics, a spectrum without 16-bit rounding)."""
        last = len(self.net) - 2  # the output Linear, before Softplus
        for i, layer in enumerate(self.net):
            exact = i == last or isinstance(layer, nn.BatchNorm1d)
            h = precise(layer, h) if exact else layer(h)
        return h
