"""Exceptions raised by xas-models for user mistakes. Every message names the problem and the fix."""

from __future__ import annotations

from xas_data.errors import XASDataError


class ModelError(XASDataError):
    """A model cannot be built or loaded: bad config, unknown name, mismatched checkpoint."""
