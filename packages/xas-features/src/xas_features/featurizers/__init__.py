"""Featurizers by name. Backends are imported only when a featurizer is built."""

from __future__ import annotations

from importlib import import_module
from typing import Any

from xas_features.errors import FeaturizerError
from xas_features.featurizers.base import SiteFeaturizer, config_hash, feature_key

# name -> (module, class) ; modules import their heavy backends lazily
FEATURIZERS: dict[str, tuple[str, str]] = {
    "m3gnet": ("xas_features.featurizers.m3gnet", "M3GNetFeaturizer"),
    "chgnet": ("xas_features.featurizers.chgnet", "CHGNetFeaturizer"),
    "acsf": ("xas_features.featurizers.dscribe_pca", "ACSFFeaturizer"),
    "soap": ("xas_features.featurizers.dscribe_pca", "SOAPFeaturizer"),
    "descriptors": ("xas_features.descriptors", "DescriptorFeaturizer"),
}


def get_featurizer(name: str, **config: Any) -> SiteFeaturizer:
    """Build the featurizer called ``name`` with keyword settings ``config``."""
    if name not in FEATURIZERS:
        raise FeaturizerError(f"unknown featurizer {name!r}; choose one of {sorted(FEATURIZERS)}")
    module, cls = FEATURIZERS[name]
    return getattr(import_module(module), cls)(**config)


__all__ = ["FEATURIZERS", "SiteFeaturizer", "config_hash", "feature_key", "get_featurizer"]
