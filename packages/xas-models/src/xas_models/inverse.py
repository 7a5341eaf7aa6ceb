"""Inverse models (spectrum -> local-structure descriptors) as deep ensembles, and
:func:`predict_descriptors` for a measured or simulated spectrum.

An :class:`InverseEnsemble` holds ``n_members`` independently trained inverse models of one
architecture (``spt``) in one checkpoint. Its prediction per descriptor is the mean over the
members: for a classification descriptor the mean class probabilities (value = the most
probable class), for a regression descriptor the mean value and the standard deviation across
members (the ensemble uncertainty).

Inputs are spectra on the model's energy grid of the element (eV, ``meta.grid_for``), divided
by their post-edge level (the mean of the last ``tail`` points, recorded in the checkpoint's
``training_data.normalisation``), so simulated FEFF labels and edge-step-normalised
measurements share one scale.

:func:`predict_descriptors` limits each prediction to the classes the element may take and
checks the spectrum against the training domain (:mod:`xas_models.domain`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from xas_models.configured import ConfiguredModel
from xas_models.domain import DomainCheck, allowed_classes, check_domain, restrict_probabilities
from xas_models.errors import ModelError
from xas_models.registry import build_model, register_model

INVERSE_FEATURIZER = "spectrum"
"""``featurizer.name`` of inverse checkpoints: the input is the normalised spectrum itself."""


class InverseEnsembleConfig(BaseModel):
    """``member``: architecture name; ``member_config``: its config; ``n_members`` >= 1;
    ``std_scale``: regression task -> factor applied to the members' spread (fitted on a
    validation split so that the 1-sigma interval covers 68 %; default 1)."""

    model_config = ConfigDict(extra="forbid")

    member: str = "spt"
    member_config: dict[str, Any]
    n_members: int = Field(default=5, ge=1)
    std_scale: dict[str, float] = Field(default_factory=dict)


_HINTS = {
    "member": "an inverse architecture name, e.g. 'spt'",
    "member_config": "the member architecture's config (a mapping)",
    "n_members": "an integer >= 1",
    "std_scale": "a mapping regression task -> positive factor",
}


def merged_std_scale(
    current: dict[str, float], scale: dict[str, float], allowed: list[str], what: str
) -> dict[str, float]:
    """``current`` spread factors updated with ``scale`` (output name -> factor); ModelError
    for a name not in ``allowed`` (described as ``what``, e.g. "a regression task") or a
    factor that is not finite and > 0."""
    for name, value in scale.items():
        if name not in allowed:
            raise ModelError(f"{name!r} is not {what} (choose from {sorted(allowed)})")
        if not (np.isfinite(value) and value > 0):
            raise ModelError(f"std scale of {name!r} must be finite and > 0, got {value}")
    return {**current, **{k: float(v) for k, v in scale.items()}}


@register_model("inverse_ensemble")
class InverseEnsemble(ConfiguredModel, nn.Module):
    """Deep ensemble of inverse models: spectra ``[B, K]`` -> per-descriptor predictions."""

    config_class = InverseEnsembleConfig
    config_name = "inverse_ensemble"
    config_hints = _HINTS

    def __init__(self, config: InverseEnsembleConfig) -> None:
        super().__init__()
        self.config = config
        self.members = nn.ModuleList(
            build_model(config.member, dict(config.member_config)) for _ in range(config.n_members)
        )

    @classmethod
    def from_members(cls, members: list[nn.Module], member: str = "spt") -> InverseEnsemble:
        """An ensemble holding trained ``members`` (all of one architecture and config)."""
        configs = [m.config_dict() for m in members]
        if any(c != configs[0] for c in configs):
            raise ModelError("ensemble members must share one config (only seeds may differ)")
        ens = cls(
            InverseEnsembleConfig(member=member, member_config=configs[0], n_members=len(members))
        )
        for target, source in zip(ens.members, members, strict=True):
            target.load_state_dict(source.state_dict())
        return ens

    def set_std_scale(self, scale: dict[str, float]) -> None:
        """Multiply the spread of regression tasks by ``scale[name]`` (finite, > 0) from now on
        (stored in the config, so checkpoints keep it)."""
        names = [t.name for t in self.tasks if t.kind == "regression"]
        merged = merged_std_scale(self.config.std_scale, scale, names, "a regression task")
        self.config = self.config.model_copy(update={"std_scale": merged})

    @property
    def tasks(self) -> list[Any]:
        return list(self.members[0].config.tasks)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> dict[str, dict[str, torch.Tensor]]:
        """``{name: {"value", "probabilities"}}`` (classification) or ``{name: {"value",
        "std"}}`` (regression, std across members), each ``[B]`` / ``[B, C]``."""
        outs = [m.predict(x) for m in self.members]
        result: dict[str, dict[str, torch.Tensor]] = {}
        for task in self.tasks:
            if task.kind == "classification":
                proba = torch.stack([o[task.name]["probabilities"] for o in outs]).mean(0)
                classes = torch.tensor(task.classes, dtype=proba.dtype, device=proba.device)
                result[task.name] = {"value": classes[proba.argmax(-1)], "probabilities": proba}
            else:
                values = torch.stack([o[task.name]["value"] for o in outs])
                scale = float(self.config.std_scale.get(task.name, 1.0))
                result[task.name] = {
                    "value": values.mean(0),
                    "std": values.std(0, unbiased=False) * scale,
                }
        return result


@dataclass
class DescriptorPrediction:
    """One descriptor of one spectrum.

    Attributes:
        name, kind: descriptor and ``classification`` / ``regression``.
        value: the most probable allowed class, or the regressed number (for a descriptor with
            classes, e.g. RankAAE OS, clipped into their range when it lies more than 0.5
            outside it).
        std: ensemble spread (regression).
        probabilities: allowed class value -> probability, renormalised over the classes the
            element may take (classification).
        raw_value: the value before limiting to the allowed classes (argmax over all classes,
            or the unclipped regression); equals ``value`` when nothing was limited.
        allowed: the class values allowed for the element (empty: not limited).
        allowed_source: where ``allowed`` comes from (``training data`` / ``chemical table``).
        domain: the spectrum's distance from the training spectra
            (:class:`xas_models.domain.DomainCheck`; None when the checkpoint records none).
        warnings: one line per problem (outside the training domain, a clipped value).
    """

    name: str
    kind: str
    value: float
    std: float | None = None
    probabilities: dict[float, float] = field(default_factory=dict)
    raw_value: float | None = None
    allowed: tuple[float, ...] = ()
    allowed_source: str = ""
    domain: DomainCheck | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def in_domain(self) -> bool | None:
        """Whether the spectrum is inside the training domain (None: not checked)."""
        return None if self.domain is None else self.domain.in_domain


def _model_input(loaded: Any, element: str, spectrum: Any, energy: Any) -> tuple[np.ndarray, bool]:
    """``(inputs [N, K] on the element grid / post-edge level, single)`` of ``spectrum``."""
    from xas_models.spectra import post_edge_normalise

    meta = loaded.meta
    energy = np.asarray(energy, dtype=np.float64).ravel()
    y = np.asarray(spectrum, dtype=np.float64)
    single = y.ndim == 1
    y = np.atleast_2d(y)
    if y.shape[1] != energy.size:
        raise ModelError(f"spectrum has {y.shape[1]} points but energy {energy.size}")
    order = np.argsort(energy)
    energy, y = energy[order], y[:, order]
    grid = meta.grid_for(element)
    grid_e = grid.start + grid.step * np.arange(grid.n_points)
    tol = 2 * grid.step
    if energy[0] > grid_e[0] + tol or energy[-1] < grid_e[-1] - tol:
        raise ModelError(
            f"the spectrum spans {energy[0]:.1f}..{energy[-1]:.1f} eV but the model's {element} "
            f"grid is {grid_e[0]:.1f}..{grid_e[-1]:.1f} eV; give the spectrum over that range "
            "(energies in eV, absolute)"
        )
    on_grid = np.stack([np.interp(grid_e, energy, row) for row in y])
    tail = int(meta.training_data.get("normalisation", {}).get("tail", 20))
    try:
        return post_edge_normalise(on_grid, tail).astype(np.float32), single
    except ValueError as exc:
        raise ModelError(f"{exc} (model {loaded.name}'s {element} grid)") from None


def _classified(
    name: str, proba: np.ndarray, classes: list[float], allowed: tuple[float, ...], source: str
) -> list[DescriptorPrediction]:
    """Classification rows, probabilities renormalised over ``allowed`` (if any of them)."""
    raw = [float(classes[int(i)]) for i in proba.argmax(axis=1)]
    limited, kept, note = proba, classes, []
    if allowed:
        try:
            limited, kept = restrict_probabilities(proba, classes, allowed)
        except ModelError:
            kept, note = classes, [f"{name}: none of the model's classes is allowed; not limited"]
    rows = []
    for i, row in enumerate(limited):
        value = float(kept[int(row.argmax())])
        rows.append(
            DescriptorPrediction(
                name,
                "classification",
                value,
                probabilities={float(c): float(q) for c, q in zip(kept, row, strict=True)},
                raw_value=raw[i],
                allowed=tuple(kept) if allowed and not note else (),
                allowed_source=source if allowed and not note else "",
                warnings=list(note),
            )
        )
    return rows


def _regressed(
    name: str, value: np.ndarray, std: np.ndarray, allowed: tuple[float, ...], source: str
) -> list[DescriptorPrediction]:
    """Regression rows. A descriptor with allowed classes (RankAAE OS, CN) whose value lies
    more than half a unit outside their range (it would round to a class the element cannot
    take) is clipped to the range's end, with a warning."""
    rows = []
    for v, s in zip(value.tolist(), std.tolist(), strict=True):
        row = DescriptorPrediction(name, "regression", float(v), float(s), raw_value=float(v))
        if allowed:
            lo, hi = min(allowed), max(allowed)
            row.allowed, row.allowed_source = tuple(allowed), source
            if not lo - 0.5 <= v <= hi + 0.5:
                row.value = float(min(max(v, lo), hi))
                row.warnings.append(
                    f"{name} {v:.3g} is outside {lo:g}..{hi:g} ({source}); clipped to {row.value:g}"
                )
        rows.append(row)
    return rows


def predict_descriptors(
    spectrum: Any,
    energy: Any,
    element: str,
    model: Any = None,
    version: str = "latest",
    zoo: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Local-structure descriptors (OS, CN, ...) of the absorbing site from its K-edge spectrum.

    Only the classes the element may take are predicted (probabilities renormalised over
    them; regressed values with classes clipped into their range), and every prediction
    carries its spectrum's distance from the training domain (``domain``, with a warning when
    outside): see :mod:`xas_models.domain`.

    Args:
        spectrum: mu(E) ``[n]`` (any units: it is normalised by its post-edge level), or
            ``[N, n]`` for several spectra on the same energies.
        energy: energies ``[n]`` in eV, covering the model's grid for ``element``.
        element: absorbing element.
        model: an inverse zoo model name, a checkpoint folder or ``(module, meta)``.

    Returns:
        descriptor name -> :class:`DescriptorPrediction` (for ``[N, n]`` input: lists of them
        per descriptor are returned as ``{name: [..]}``).

    Raises:
        ModelError: not an inverse model, an element it was not trained on, energies that do
            not cover its grid, or a spectrum without a post-edge level.
    """
    from xas_models.predict import _element_symbol, resolve_model

    if model is None:
        raise ModelError("no model given; pass model=<inverse zoo name> (see 'xas models')")
    loaded = resolve_model(model, version, zoo)
    meta, module = loaded.meta, loaded.module
    if meta.featurizer.name != INVERSE_FEATURIZER:
        raise ModelError(
            f"{loaded.name} is a forward model (structure -> spectrum); use an inverse model "
            "(task 'inverse' in 'xas models') to predict descriptors from a spectrum"
        )
    element = _element_symbol(element)
    if element not in meta.elements:
        raise ModelError(
            f"{loaded.name} was trained on {meta.elements} spectra, not {element}; choose an "
            f"inverse model for {element}"
        )
    x, single = _model_input(loaded, element, spectrum, energy)
    module.eval()
    with torch.no_grad():
        out = module(torch.from_numpy(x))
    tasks = {t.name: t for t in module.tasks}
    allowed, source = allowed_classes(meta.training_data, meta.elements, module.tasks, element)
    checks = check_domain(meta.training_data, element, x)
    result: dict[str, Any] = {}
    for name, pred in out.items():
        limit = allowed.get(name, ())
        if tasks[name].kind == "classification":
            proba = pred["probabilities"].double().numpy()
            rows = _classified(name, proba, [float(c) for c in tasks[name].classes], limit, source)
        else:
            value, std = pred["value"].double().numpy(), pred["std"].double().numpy()
            rows = _regressed(name, value, std, limit, source)
        for i, row in enumerate(rows):
            row.domain = None if checks is None else checks[i]
            if checks is not None and not checks[i].in_domain:
                row.warnings.insert(0, checks[i].message)
        result[name] = rows[0] if single else rows
    return result
