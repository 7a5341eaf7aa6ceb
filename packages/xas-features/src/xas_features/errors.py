"""Errors of xas-features: each names the cause and the fix."""

from __future__ import annotations

from xas_data.errors import MissingExtraError, XASDataError


class FeaturizerError(XASDataError):
    """A featurizer cannot handle its input (unknown element, bad site, isolated atom...)."""


def missing_extra(module: str, extra: str) -> MissingExtraError:
    """The error for an optional backend that is not installed (names the pip extra)."""
    return MissingExtraError(module, extra, package="xas-features")


__all__ = ["FeaturizerError", "MissingExtraError", "missing_extra"]
