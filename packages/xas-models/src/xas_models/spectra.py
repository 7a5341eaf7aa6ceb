"""Spectrum preprocessing shared by the inverse models and their evaluation (numpy only)."""

from __future__ import annotations

import numpy as np


def post_edge_normalise(spectra: np.ndarray, tail: int = 20) -> np.ndarray:
    """Spectra ``[N, K]`` divided by their mean over the last ``tail`` grid points.

    Puts simulated FEFF labels and edge-step-normalised measurements on one scale (the
    post-edge level ~1). Raises ValueError for a non-positive or non-finite post-edge level.
    """
    spectra = np.atleast_2d(np.asarray(spectra, dtype=np.float64))
    level = spectra[:, -tail:].mean(axis=1, keepdims=True)
    if np.any(~np.isfinite(level)) or np.any(level <= 0):
        raise ValueError(
            "some spectra have a non-positive post-edge level; pass K-edge spectra that cover "
            "the grid (the edge and ~30 eV above it)"
        )
    return spectra / level
