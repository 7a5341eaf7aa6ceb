"""Registry of model architectures by name.

A model class registers itself with :func:`register_model`; checkpoints store the name, and
:func:`build_model` rebuilds the model from ``(name, config)``. A registered class must provide a
``from_config(config: dict) -> torch.nn.Module`` classmethod.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from xas_models.errors import ModelError

T = TypeVar("T", bound=type)

_REGISTRY: dict[str, type] = {}


def register_model(name: str) -> Callable[[T], T]:
    """Class decorator registering a model class under ``name``.

    Raises:
        ModelError: ``name`` is already taken by another class, or the class has no ``from_config``.
    """

    def decorator(cls: T) -> T:
        if not callable(getattr(cls, "from_config", None)):
            raise ModelError(
                f"model class {cls.__name__} has no from_config(config) classmethod; add one "
                "so that checkpoints can rebuild it"
            )
        existing = _REGISTRY.get(name)
        if existing is not None and existing is not cls:
            raise ModelError(
                f"model name {name!r} is already registered to {existing.__qualname__}; "
                "choose another name"
            )
        _REGISTRY[name] = cls
        return cls

    return decorator


def available_models() -> list[str]:
    """Names of the registered architectures (built-ins included), sorted."""
    _import_builtins()
    return sorted(_REGISTRY)


#: Built-in architectures and the modules defining them; imported on first lookup so that a
#: registry query works whichever xas_models module was imported first. Graph models need the
#: ``graph`` extra (torch-geometric, e3nn).
_BUILTINS: dict[str, tuple[str, str | None]] = {
    "xasblock": ("xas_models.xasblock", None),
    "cgxas": ("xas_models.cgxas", "graph"),
    "xane3": ("xas_models.xane3", "graph"),
    "spt": ("xas_models.spt", None),
    "rankaae": ("xas_models.rankaae", None),
    "rankaae-describer": ("xas_models.rankaae", None),
    "inverse_ensemble": ("xas_models.inverse", None),
    "forward_ensemble": ("xas_models.forward_ensemble", None),
}


def _import_builtin(name: str) -> None:
    import importlib

    module, extra = _BUILTINS[name]
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise ModelError(
            f"the {name!r} architecture needs the {extra} extra ({exc.name} is missing): "
            f'pip install "xas-models[{extra}]"'
        ) from None


def _import_builtins() -> None:
    for name in _BUILTINS:
        try:
            _import_builtin(name)
        except ModelError:
            pass  # optional architecture without its extra: listed once installed


def get_model_class(name: str) -> type:
    """The class registered under ``name``; ModelError listing the known names otherwise."""
    if name not in _REGISTRY and name in _BUILTINS:
        _import_builtin(name)
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(repr(n) for n in available_models()) or "(none)"
        raise ModelError(
            f"unknown model architecture {name!r}; available: {known}. "
            "Use one of these names (or import the module that registers it)."
        ) from None


def build_model(name: str, config: dict[str, Any]) -> nn.Module:
    """Build the model registered as ``name`` from a plain config dict.

    Raises:
        ModelError: unknown ``name`` or invalid ``config``.
    """
    return get_model_class(name).from_config(config)


def model_name(model: nn.Module) -> str:
    """The registered name of ``model``'s class; ModelError if the class is not registered."""
    for name, cls in _REGISTRY.items():
        if type(model) is cls:
            return name
    known = ", ".join(repr(n) for n in available_models()) or "(none)"
    raise ModelError(
        f"model class {type(model).__qualname__} is not registered (registered: {known}); "
        "decorate it with @register_model(name) before saving it"
    )
