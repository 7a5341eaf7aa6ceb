"""xas-models: model definitions, the published checkpoint format, the zoo client and predict.

- :class:`XASBlock` / :class:`XASBlockConfig`: the OmniXAS per-site MLP (registered "xasblock").
- :class:`CGXAS` (crystal-graph network, "cgxas") and :class:`XANE3` (E(3)-equivariant network,
  "xane3", with :func:`xane3_loss`): graph models on ``xas_features.graphs`` crystal graphs
  (the ``graph`` extra).
- :class:`SPT` (spectral pattern translator, "spt", with :func:`spt_loss`): spectrum ->
  local-structure descriptors; :class:`RankAAE` (rank-constrained adversarial autoencoder,
  "rankaae", with :func:`rankaae_losses`, :func:`rankaae_train_step`) and
  :class:`LatentRegressorEnsemble`.
- :func:`register_model`, :func:`build_model`, :func:`available_models`: architecture registry.
- :func:`save_checkpoint`, :func:`load_checkpoint`, :class:`CheckpointMeta`: checkpoint folders.
- :func:`list_pretrained`, :func:`load_pretrained`, :class:`ZooEntry`: published models.
- :func:`predict`, :class:`StructurePrediction`, :class:`SitePrediction`, :func:`write_csv`,
  :func:`write_json`, :func:`plot_predictions`: spectra of structures.
- :func:`resolve_model` / :class:`LoadedModel`: a zoo name, checkpoint folder or
  ``(module, meta)`` pair loaded once, for code that runs a model itself.

The torch-based parts are imported on first access (``xas_models.XASBlock`` etc.), so that
``import xas_models`` and the ``xas`` command line start quickly; accessing any of them also
registers the built-in architectures.
"""

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

from xas_models.errors import ModelError  # noqa: E402
from xas_models.predict import (  # noqa: E402
    LoadedModel,
    SitePrediction,
    StructurePrediction,
    model_inputs,
    plot_predictions,
    predict,
    resolve_model,
    write_csv,
    write_json,
)
from xas_models.zoo import ZooEntry, list_pretrained, load_pretrained  # noqa: E402

# torch-based exports, imported on first access
_LAZY: dict[str, str] = {
    "CheckpointMeta": "xas_models.checkpoint",
    "EnergyGrid": "xas_models.checkpoint",
    "FeaturizerInfo": "xas_models.checkpoint",
    "load_checkpoint": "xas_models.checkpoint",
    "render_model_card": "xas_models.checkpoint",
    "save_checkpoint": "xas_models.checkpoint",
    "available_models": "xas_models.registry",
    "build_model": "xas_models.registry",
    "register_model": "xas_models.registry",
    "XASBlock": "xas_models.xasblock",
    "XASBlockConfig": "xas_models.xasblock",
    # graph models (the ``graph`` extra)
    "CGXAS": "xas_models.cgxas",
    "CGXASConfig": "xas_models.cgxas",
    "XANE3": "xas_models.xane3",
    "XANE3Config": "xas_models.xane3",
    "xane3_loss": "xas_models.xane3",
    # forward deep ensemble with a calibrated spread
    "ForwardEnsemble": "xas_models.forward_ensemble",
    # inverse models (spectrum -> descriptors)
    "InverseEnsemble": "xas_models.inverse",
    "DescriptorPrediction": "xas_models.inverse",
    "predict_descriptors": "xas_models.inverse",
    # inverse model (spectrum -> descriptors) and rank-constrained adversarial autoencoder
    "SPT": "xas_models.spt",
    "SPTConfig": "xas_models.spt",
    "SPTTask": "xas_models.spt",
    "spt_loss": "xas_models.spt",
    "RankAAE": "xas_models.rankaae",
    "RankAAEConfig": "xas_models.rankaae",
    "LatentRegressorEnsemble": "xas_models.rankaae",
    "RankAAEDescriber": "xas_models.rankaae",
    "RankAAEDescriberConfig": "xas_models.rankaae",
    "rankaae_losses": "xas_models.rankaae",
    "rankaae_train_step": "xas_models.rankaae",
    # spectral domain mapping (numpy only; ``from xas_models.sdm import ...`` skips torch)
    "SDMResult": "xas_models.sdm",
    "SpectralDomainMapper": "xas_models.sdm",
    "kmeans": "xas_models.sdm",
    "project_simplex": "xas_models.sdm",
    "sdm_map": "xas_models.sdm",
}


# lazy exports that need no torch (importing them must not import the models)
_TORCH_FREE = {"xas_models.sdm"}


def __getattr__(name: str) -> Any:
    """Import the torch-based exports on first use (and register the built-in models)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'xas_models' has no attribute {name!r}")
    if module not in _TORCH_FREE:
        import_module("xas_models.xasblock")  # registers "xasblock"
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "CGXAS",
    "CGXASConfig",
    "CheckpointMeta",
    "DescriptorPrediction",
    "InverseEnsemble",
    "EnergyGrid",
    "FeaturizerInfo",
    "LatentRegressorEnsemble",
    "ModelError",
    "RankAAE",
    "RankAAEConfig",
    "RankAAEDescriber",
    "RankAAEDescriberConfig",
    "SDMResult",
    "SPT",
    "SPTConfig",
    "SPTTask",
    "SitePrediction",
    "SpectralDomainMapper",
    "StructurePrediction",
    "XASBlock",
    "XANE3",
    "XANE3Config",
    "XASBlockConfig",
    "ZooEntry",
    "__version__",
    "available_models",
    "build_model",
    "kmeans",
    "list_pretrained",
    "load_checkpoint",
    "load_pretrained",
    "plot_predictions",
    "LoadedModel",
    "model_inputs",
    "predict",
    "predict_descriptors",
    "resolve_model",
    "project_simplex",
    "rankaae_losses",
    "rankaae_train_step",
    "register_model",
    "render_model_card",
    "save_checkpoint",
    "sdm_map",
    "spt_loss",
    "write_csv",
    "write_json",
    "xane3_loss",
]
