"""Published checkpoint format: one folder per model.

Layout::

    <folder>/model.json         metadata (see :class:`CheckpointMeta`), format_version 1
    <folder>/model.safetensors  torch state_dict (safetensors; never pickle)
    <folder>/README.md          model card generated from model.json

:func:`save_checkpoint` writes into a temporary sibling folder and renames it into place, so a
reader never sees a half-written checkpoint. :func:`load_checkpoint` rebuilds the model from the
registry, loads the weights strictly and refuses checkpoints that do not fit the caller's
featurizer or energy grid.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from xas_models import __version__
from xas_models.errors import ModelError
from xas_models.registry import build_model, get_model_class, model_name

FORMAT_VERSION = 1
META_FILE = "model.json"
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "README.md"
GRID_TOLERANCE_EV = 1e-6
#: Bounds checked on ``model.json`` before anything is allocated: energy points per grid, and
#: parameters + buffers of the model the config describes (200 MB of float32).
MAX_GRID_POINTS = 100_000
MAX_PARAMETERS = 50_000_000

_SUPPORTED_FORMATS = (FORMAT_VERSION,)


class EnergyGrid(BaseModel):
    """Uniform energy grid of the predicted spectra: ``start + step * i`` eV, ``i < n_points``."""

    model_config = ConfigDict(extra="forbid")

    start: float = Field(description="first energy, eV")
    step: float = Field(gt=0, description="spacing, eV")
    n_points: int = Field(gt=0, le=MAX_GRID_POINTS)

    def matches(self, other: EnergyGrid, tol: float = GRID_TOLERANCE_EV) -> bool:
        """True when start and step agree within ``tol`` eV and n_points is equal."""
        return (
            self.n_points == other.n_points
            and math.isclose(self.start, other.start, rel_tol=0.0, abs_tol=tol)
            and math.isclose(self.step, other.step, rel_tol=0.0, abs_tol=tol)
        )

    def describe(self) -> str:
        """Human-readable summary, e.g. ``start=0 eV, step=0.25 eV, n_points=141``."""
        return f"start={self.start:g} eV, step={self.step:g} eV, n_points={self.n_points}"


class FeaturizerInfo(BaseModel):
    """The featurizer whose output the model consumes."""

    model_config = ConfigDict(extra="forbid")

    name: str
    version: str
    key: str = Field(default="", description="cache key / settings hash of the featurizer")


class CheckpointMeta(BaseModel):
    """Contents of ``model.json``.

    ``architecture`` and ``config`` may be left unset when saving: they are filled from the model.
    ``format_version`` and ``package_versions`` are always set by :func:`save_checkpoint`.
    """

    model_config = ConfigDict(extra="forbid")

    format_version: int = FORMAT_VERSION
    architecture: str | None = None
    config: dict[str, Any] | None = None
    package_versions: dict[str, str] = Field(default_factory=dict)
    energy_grid: EnergyGrid
    energy_grids: dict[str, EnergyGrid] = Field(
        default_factory=dict,
        description="per-element grids of a multi-element (universal) model; output index k "
        "of element X is at energy_grids[X].start + k * step eV",
    )
    elements: list[str]
    edge: str = "K"
    fidelity: str
    featurizer: FeaturizerInfo
    training_data: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)

    def grid_for(self, element: str) -> EnergyGrid:
        """The energy grid of ``element``'s predictions; ModelError if the model lacks it."""
        if element in self.energy_grids:
            return self.energy_grids[element]
        if element in self.elements and (len(self.elements) == 1 or not self.energy_grids):
            return self.energy_grid
        raise ModelError(
            f"this {self.architecture} model predicts {self.elements}, not {element!r}; "
            "use a model trained on that element"
        )


def _model_config(model: nn.Module) -> dict[str, Any]:
    get = getattr(model, "config_dict", None)
    if not callable(get):
        raise ModelError(
            f"{type(model).__qualname__} has no config_dict() method; add one returning the "
            "dict that from_config() accepts"
        )
    return dict(get())


def render_model_card(meta: CheckpointMeta) -> str:
    """Markdown model card generated from ``meta`` (architecture, config, featurizer, grid,
    training data, metrics)."""

    def table(d: dict[str, Any], head: tuple[str, str]) -> list[str]:
        if not d:
            return ["(none recorded)"]
        rows = [f"| {head[0]} | {head[1]} |", "|---|---|"]
        rows += [
            f"| {k} | {json.dumps(v) if not isinstance(v, str) else v} |" for k, v in d.items()
        ]
        return rows

    title = f"{meta.architecture} — {'/'.join(meta.elements)} {meta.edge}-edge ({meta.fidelity})"
    lines = [
        f"# {title}",
        "",
        "Generated from `model.json`; do not edit by hand.",
        "",
        "## Architecture",
        "",
        f"`{meta.architecture}` (checkpoint format {meta.format_version}).",
        "",
        *table(meta.config or {}, ("parameter", "value")),
        "",
        "## Featurizer",
        "",
        f"- name: `{meta.featurizer.name}`",
        f"- version: `{meta.featurizer.version}`",
        f"- key: `{meta.featurizer.key}`",
        "",
        "## Energy grid",
        "",
        f"{meta.energy_grid.describe()}",
        *[f"- {el}: {g.describe()}" for el, g in meta.energy_grids.items()],
        "",
        "## Training data",
        "",
        *table(meta.training_data, ("field", "value")),
        "",
        "## Metrics",
        "",
        *table(meta.metrics, ("metric", "value")),
        "",
        "## Package versions",
        "",
        *table(meta.package_versions, ("package", "version")),
        "",
    ]
    return "\n".join(lines)


def save_checkpoint(
    folder: str | os.PathLike[str],
    model: nn.Module,
    meta: CheckpointMeta,
    *,
    overwrite: bool = False,
) -> CheckpointMeta:
    """Write ``model`` and ``meta`` as a checkpoint folder, atomically.

    Files are written into a temporary sibling folder that is then renamed to ``folder``.

    Args:
        folder: destination folder; must not exist unless ``overwrite`` is True.
        model: a registered model (e.g. :class:`~xas_models.xasblock.XASBlock`).
        meta: metadata; ``architecture``/``config`` are filled from the model when unset and
            must match it when set.
        overwrite: replace an existing ``folder``.

    Returns:
        The metadata as written.
    """
    dest = Path(folder)
    if dest.exists() and not overwrite:
        raise ModelError(
            f"checkpoint folder {str(dest)!r} already exists; pass overwrite=True to replace it "
            "or choose another folder"
        )
    arch = model_name(model)
    config = _model_config(model)
    if meta.architecture is not None and meta.architecture != arch:
        raise ModelError(
            f"meta.architecture is {meta.architecture!r} but the model is {arch!r}; "
            "leave meta.architecture unset or make them agree"
        )
    if meta.config is not None and meta.config != config:
        raise ModelError(
            f"meta.config {meta.config} differs from the model's config {config}; "
            "leave meta.config unset or make them agree"
        )
    out_dim = config.get("output_dim")
    if out_dim is not None and out_dim != meta.energy_grid.n_points:
        raise ModelError(
            f"the model predicts {out_dim} energy points but meta.energy_grid has "
            f"n_points={meta.energy_grid.n_points}; make the grid match the model's output_dim"
        )
    meta = meta.model_copy(
        update={
            "format_version": FORMAT_VERSION,
            "architecture": arch,
            "config": config,
            "package_versions": {"xas-models": __version__, "torch": torch.__version__},
        }
    )

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.tmp-{uuid.uuid4().hex}"
    old: Path | None = None
    try:
        tmp.mkdir()
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format_version": str(FORMAT_VERSION)})
        (tmp / META_FILE).write_text(
            json.dumps(meta.model_dump(mode="json"), indent=2) + "\n", encoding="utf-8"
        )
        (tmp / CARD_FILE).write_text(render_model_card(meta), encoding="utf-8")
        if dest.exists():
            old = dest.parent / f".{dest.name}.old-{uuid.uuid4().hex}"
            dest.rename(old)
        tmp.rename(dest)
    except BaseException:
        if old is not None and not dest.exists():
            old.rename(dest)
            old = None
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return meta


def _read_meta(folder: Path) -> CheckpointMeta:
    path = folder / META_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ModelError(
            f"{str(path)!r} is not valid JSON ({exc}); re-export the checkpoint"
        ) from None
    if not isinstance(raw, dict):
        raise ModelError(f"{str(path)!r} must hold a JSON object; re-export the checkpoint")
    version = raw.get("format_version")
    if version not in _SUPPORTED_FORMATS:
        raise ModelError(
            f"checkpoint {str(folder)!r} has format_version {version!r}, but this xas-models "
            f"({__version__}) reads only {list(_SUPPORTED_FORMATS)}; upgrade xas-models or "
            "re-export the checkpoint"
        )
    try:
        meta = CheckpointMeta.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ModelError(
            f"invalid {str(path)!r}: {problems}; fix or re-export the checkpoint"
        ) from None
    if meta.architecture is None or meta.config is None:
        raise ModelError(
            f"{str(path)!r} lacks 'architecture' or 'config'; re-export it with save_checkpoint"
        )
    return meta


def _check_featurizer(meta: CheckpointMeta, expected: str) -> None:
    name, _, version = expected.partition("@")
    found = meta.featurizer
    if found.name != name or (version and found.version != version):
        raise ModelError(
            f"featurizer mismatch: expected {expected!r}, checkpoint was trained on "
            f"'{found.name}@{found.version}'; featurize with '{found.name}' version "
            f"{found.version} or use a checkpoint trained on {expected!r}"
        )


def _check_grid(
    meta: CheckpointMeta, expected: dict[str, Any] | EnergyGrid, element: str | None = None
) -> None:
    try:
        grid = expected if isinstance(expected, EnergyGrid) else EnergyGrid.model_validate(expected)
    except ValidationError as exc:
        raise ModelError(
            f"expected_grid {expected!r} is not a valid grid ({exc.error_count()} errors); "
            "pass {'start': eV, 'step': eV, 'n_points': int}"
        ) from None
    own = meta.energy_grid if element is None else meta.grid_for(element)
    if not own.matches(grid):
        raise ModelError(
            f"energy grid mismatch: expected {grid.describe()}, checkpoint has "
            f"{own.describe()} (tolerance {GRID_TOLERANCE_EV:g} eV); interpolate "
            "onto the checkpoint's grid or use a checkpoint on your grid"
        )


def _check_model_size(meta: CheckpointMeta, folder: Path) -> None:
    """Refuse a config describing more than :data:`MAX_PARAMETERS` numbers, counted on a
    model built on PyTorch's ``meta`` device (no memory is allocated). A config the meta
    device cannot build is left to ``from_config``'s own validation."""
    assert meta.architecture is not None and meta.config is not None
    try:
        with torch.device("meta"):
            shell = build_model(meta.architecture, meta.config)
    except ModelError:
        raise
    except Exception:  # noqa: BLE001 - e.g. code needing real tensors in __init__
        return
    n = sum(t.numel() for t in [*shell.parameters(), *shell.buffers()])
    if n > MAX_PARAMETERS:
        raise ModelError(
            f"{str(folder / META_FILE)!r} describes a {meta.architecture} model with {n:,} "
            f"parameters, more than the {MAX_PARAMETERS:,} this xas-models loads (check "
            "hidden widths and dimensions in its config); re-export the checkpoint"
        )


def _load_weights(model: nn.Module, path: Path, arch: str) -> None:
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(
            f"cannot read weights {str(path)!r} ({exc}); re-export the checkpoint"
        ) from None
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    shapes = sorted(
        f"{k}: expected {expected[k]}, found {found[k]}"
        for k in set(expected) & set(found)
        if expected[k] != found[k]
    )
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:5]}{'...' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}")
        if shapes:
            parts.append(f"shape mismatches {shapes[:5]}{'...' if len(shapes) > 5 else ''}")
        raise ModelError(
            f"weights in {str(path)!r} do not fit architecture {arch!r} with the config in "
            f"{META_FILE}: " + "; ".join(parts) + ". The weights belong to another architecture "
            "or config; re-export the checkpoint with save_checkpoint"
        )
    model.load_state_dict(state, strict=True)


def load_checkpoint(
    folder: str | os.PathLike[str],
    expected_featurizer: str | None = None,
    expected_grid: dict[str, Any] | EnergyGrid | None = None,
    element: str | None = None,
) -> tuple[nn.Module, CheckpointMeta]:
    """Load a checkpoint folder written by :func:`save_checkpoint`.

    Args:
        folder: the checkpoint folder.
        expected_featurizer: ``"name"`` or ``"name@version"`` of the caller's featurizer; a
            mismatch is refused.
        expected_grid: ``{"start": eV, "step": eV, "n_points": int}`` of the caller's energy
            grid; refused unless start/step agree within 1e-6 eV and n_points is equal.
        element: compare ``expected_grid`` with this element's grid (multi-element models).

    Returns:
        ``(model, meta)`` with the model on CPU in eval mode.

    Raises:
        ModelError: missing folder/file, unknown format_version or architecture, a grid of
            more than :data:`MAX_GRID_POINTS` points or a model of more than
            :data:`MAX_PARAMETERS` parameters (checked before allocating), weights that do
            not fit, or a featurizer/grid mismatch.
    """
    root = Path(folder)
    if not root.is_dir():
        raise ModelError(
            f"checkpoint folder {str(root)!r} does not exist; check the path or download the model"
        )
    for name in (META_FILE, WEIGHTS_FILE):
        if not (root / name).is_file():
            raise ModelError(
                f"checkpoint {str(root)!r} is missing {name!r}; re-download or re-export it"
            )
    meta = _read_meta(root)
    assert meta.architecture is not None and meta.config is not None
    get_model_class(meta.architecture)  # ModelError naming the known names / missing extra
    if expected_featurizer is not None:
        _check_featurizer(meta, expected_featurizer)
    if expected_grid is not None:
        _check_grid(meta, expected_grid, element)
    _check_model_size(meta, root)
    model = build_model(meta.architecture, meta.config)
    _load_weights(model, root / WEIGHTS_FILE, meta.architecture)
    model.eval()
    return model, meta
