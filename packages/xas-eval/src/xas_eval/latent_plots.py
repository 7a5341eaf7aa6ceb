"""Plots of an interpretable latent space (e.g. a RankAAE, :mod:`xas_models.rankaae`): each
aligned latent dimension against its descriptor, measured standards in the latent plane raw
vs after spectral domain mapping, and the training losses.

Same conventions as :mod:`xas_eval.inverse_plots`: matplotlib's Agg canvas (no pyplot
state), PNGs written atomically; every function returns the path written.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from xas_eval.inverse_plots import _figure, _save

__all__ = ["plot_latent_alignment", "plot_latent_measured", "plot_losses"]


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return math.nan
    return float(spearmanr(a[ok], b[ok]).statistic)


def _latent(z, name: str = "z") -> np.ndarray:
    arr = np.asarray(z, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be [N, n_latent], got shape {arr.shape}")
    return arr


def _jitter(values: np.ndarray, seed: int = 0, amount: float = 0.12) -> np.ndarray:
    """Small horizontal jitter for integer-valued descriptors (so that points do not stack)."""
    finite = values[np.isfinite(values)]
    if finite.size and np.all(finite == np.round(finite)):
        return values + np.random.default_rng(seed).uniform(-amount, amount, values.shape)
    return values


def plot_latent_alignment(
    z,
    labels: Mapping[str, Any],
    aligned: Mapping[str, int],
    colour,
    path: str | Path,
    title: str = "",
    colour_label: str = "OS",
    background: tuple[Any, Mapping[str, Any]] | None = None,
) -> Path:
    """One panel per aligned descriptor: its value (x, jittered when integer) against latent
    dim ``aligned[name]`` of ``z [N, n_latent]`` (y), points coloured by ``colour [N]``
    (e.g. the OS; NaN in grey), Spearman rho in the panel title. ``background = (z_bg,
    labels_bg)`` draws further points (e.g. the training split) in light grey behind."""
    z = _latent(z)
    if not aligned:
        raise ValueError("no aligned descriptor to plot; pass aligned={'OS': 0, ...}")
    c = np.asarray(colour, dtype=np.float64).ravel()
    if c.shape[0] != z.shape[0]:
        raise ValueError(f"colour has {c.shape[0]} values for {z.shape[0]} latent vectors")
    fig = _figure(figsize=(4.6 * len(aligned) + 0.8, 4.2))
    axes = np.atleast_1d(fig.subplots(1, len(aligned)))
    finite = c[np.isfinite(c)]
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    image = None
    for ax, (name, dim) in zip(axes, aligned.items(), strict=True):
        y = np.asarray(labels[name], dtype=np.float64).ravel()
        if background is not None:
            zb = _latent(background[0], "background z")
            yb = np.asarray(background[1][name], dtype=np.float64).ravel()
            ax.scatter(_jitter(yb, 1), zb[:, dim], s=6, color="0.85", label="train", zorder=1)
        missing = ~np.isfinite(c)
        ax.scatter(_jitter(y)[missing], z[missing, dim], s=14, color="0.5", zorder=2)
        image = ax.scatter(
            _jitter(y)[~missing], z[~missing, dim], c=c[~missing], cmap="viridis",
            vmin=vmin, vmax=vmax, s=18, edgecolors="k", linewidths=0.3, zorder=3,
        )  # fmt: skip
        rho = _spearman(z[:, dim], y)
        rho_text = "n/a" if not math.isfinite(rho) else f"{rho:.2f}"
        ax.set_xlabel(name)
        ax.set_ylabel(f"latent z{dim}")
        ax.set_title(f"{name} vs z{dim}: Spearman {rho_text} (N={int(np.isfinite(y).sum())})")
        ax.grid(alpha=0.3)
        if background is not None:
            ax.legend(fontsize=7, loc="best")
    if image is not None:
        fig.colorbar(image, ax=list(axes), label=colour_label, shrink=0.85)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_latent_measured(
    z_sim,
    colour,
    z_raw,
    z_sdm,
    names: Sequence[str],
    path: str | Path,
    dims: tuple[int, int] = (0, 1),
    axis_labels: tuple[str, str] | None = None,
    colour_label: str = "OS",
    title: str = "",
) -> Path:
    """Simulated latents ``z_sim [Ns, n_latent]`` in the plane of ``dims`` coloured by
    ``colour [Ns]``, with the measured spectra as encoded raw (``z_raw [Nm, n_latent]``,
    crosses) and after SDM (``z_sdm``, stars), an arrow from each raw point to its mapped
    point, and the sample ``names [Nm]`` at the raw points (one label per distinct name; the
    mapped points tend to gather near the simulated data)."""
    zs, zr, zm = _latent(z_sim, "z_sim"), _latent(z_raw, "z_raw"), _latent(z_sdm, "z_sdm")
    if zr.shape != zm.shape or len(names) != zr.shape[0]:
        raise ValueError(
            f"z_raw {zr.shape}, z_sdm {zm.shape} and names ({len(names)}) must describe the "
            "same measured spectra"
        )
    a, b = dims
    c = np.asarray(colour, dtype=np.float64).ravel()
    fig = _figure(figsize=(6.4, 5.2))
    ax = fig.subplots()
    ok = np.isfinite(c)
    ax.scatter(zs[~ok, a], zs[~ok, b], s=8, color="0.7", label="simulated (no label)")
    image = ax.scatter(
        zs[ok, a], zs[ok, b], c=c[ok], cmap="viridis", s=10, alpha=0.6, label="simulated"
    )
    for i in range(zr.shape[0]):
        ax.annotate(
            "", xy=(zm[i, a], zm[i, b]), xytext=(zr[i, a], zr[i, b]),
            arrowprops={"arrowstyle": "->", "color": "0.3", "lw": 0.8},
        )  # fmt: skip
    ax.scatter(zr[:, a], zr[:, b], marker="x", s=50, color="C3", label="measured (raw)", zorder=4)
    ax.scatter(
        zm[:, a], zm[:, b], marker="*", s=110, color="C1", edgecolors="k", linewidths=0.5,
        label="measured (SDM)", zorder=5,
    )  # fmt: skip
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name in seen:
            continue
        seen.add(name)
        ax.annotate(str(name)[:24], (zr[i, a], zr[i, b]), fontsize=7, xytext=(4, 4),
                    textcoords="offset points")  # fmt: skip
    fig.colorbar(image, ax=ax, label=colour_label, shrink=0.85)
    xl, yl = axis_labels or (f"z{a}", f"z{b}")
    ax.set_xlabel(xl)
    ax.set_ylabel(yl)
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title, fontsize=10)
    return _save(fig, path)


def plot_losses(history: Sequence[Mapping[str, float]], path: str | Path, title: str = "") -> Path:
    """Per-epoch losses (keys ``train_reconstruction``, ``val_reconstruction``,
    ``train_rank``, ``val_rank``, ``train_adversarial``, ``train_discriminator`` where
    present) on a log scale, reconstruction / rank / adversarial side by side."""
    if not history:
        raise ValueError("no epochs to plot; train for at least one epoch")
    epochs = [h["epoch"] for h in history]
    panels = {
        "reconstruction": ("train_reconstruction", "val_reconstruction"),
        "rank": ("train_rank", "val_rank"),
        "adversarial": ("train_adversarial", "train_discriminator"),
    }
    fig = _figure(figsize=(13.0, 3.8))
    axes = fig.subplots(1, len(panels))
    for ax, (panel, keys) in zip(axes, panels.items(), strict=True):
        for key in keys:
            values = [h.get(key, math.nan) for h in history]
            if any(math.isfinite(v) for v in values):
                ax.plot(epochs, values, label=key.replace("_", " "))
        ax.set_xlabel("epoch")
        ax.set_title(panel)
        if panel != "adversarial":
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return _save(fig, path)
