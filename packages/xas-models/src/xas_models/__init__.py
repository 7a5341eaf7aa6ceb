"""xas-models: model definitions and the published checkpoint format.

- :class:`XASBlock` / :class:`XASBlockConfig`: the OmniXAS per-site MLP (registered "xasblock").
- :func:`register_model`, :func:`build_model`, :func:`available_models`: architecture registry.
- :func:`save_checkpoint`, :func:`load_checkpoint`, :class:`CheckpointMeta`: checkpoint folders.
"""

__version__ = "0.1.0"

from xas_models.checkpoint import (  # noqa: E402
    CheckpointMeta,
    EnergyGrid,
    FeaturizerInfo,
    load_checkpoint,
    render_model_card,
    save_checkpoint,
)
from xas_models.errors import ModelError  # noqa: E402
from xas_models.registry import available_models, build_model, register_model  # noqa: E402
from xas_models.xasblock import XASBlock, XASBlockConfig  # noqa: E402

__all__ = [
    "CheckpointMeta",
    "EnergyGrid",
    "FeaturizerInfo",
    "ModelError",
    "XASBlock",
    "XASBlockConfig",
    "__version__",
    "available_models",
    "build_model",
    "load_checkpoint",
    "register_model",
    "render_model_card",
    "save_checkpoint",
]
