"""xas-features: per-site features for XAS models and local structure descriptors.

Featurizers (``get_featurizer(name)``): ``m3gnet`` (OmniXAS transfer features), ``chgnet``,
``acsf``/``soap`` (+ PCA fitted on the training split), ``descriptors`` (OS, CN, OCN, CN2,
NNRS, MOOD, PSGO, NNOSM). ``featurize_dataset`` stores them in a dataset in site row order,
sharded across ranks under torchrun/srun. Crystal graphs for graph models: ``xas_features.graphs``.
"""

from xas_features.errors import FeaturizerError
from xas_features.featurizers import FEATURIZERS, SiteFeaturizer, feature_key, get_featurizer

__version__ = "0.1.0"


def __getattr__(name: str):
    """Import the Zarr-backed storage functions on first use (keeps CLI start-up fast)."""
    if name in ("featurize_dataset", "find_features"):
        from xas_features import storage

        return getattr(storage, name)
    raise AttributeError(f"module 'xas_features' has no attribute {name!r}")


__all__ = [
    "FEATURIZERS",
    "FeaturizerError",
    "SiteFeaturizer",
    "feature_key",
    "featurize_dataset",
    "find_features",
    "get_featurizer",
]
