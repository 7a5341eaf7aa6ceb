"""Exceptions raised by xas-models for user mistakes. Every message names the problem and the fix."""

from __future__ import annotations

from xas_data.errors import XASDataError


class ModelError(XASDataError):
    """A model cannot be built or loaded: bad config, unknown name, mismatched checkpoint."""


def config_error(exc, model_name: str, hints: dict[str, str]) -> ModelError:
    """A :class:`ModelError` naming each bad key of a pydantic ``ValidationError``.

    Args:
        exc: the ``pydantic.ValidationError`` of a model config.
        model_name: the registered architecture name, for the message.
        hints: key -> description of the allowed values (also the list of allowed keys).
    """
    allowed = ", ".join(hints)
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(config)"
        key = str(err["loc"][0]) if err["loc"] else ""
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown key {loc!r} (allowed keys: {allowed})")
        elif err["type"] == "missing":
            parts.append(f"missing key {loc!r}: expected {hints.get(key, 'a value')}")
        else:
            hint = hints.get(key, "a valid value")
            parts.append(f"key {loc!r}: {err['msg']} (got {err.get('input')!r}); expected {hint}")
    return ModelError(f"invalid {model_name} config: " + "; ".join(parts) + ". Fix the config.")


def parse_config(config, config_cls, model_name: str, hints: dict[str, str], example: str = "{}"):
    """``config`` (a dict as stored in checkpoints, or already a ``config_cls``) validated
    into ``config_cls`` (a pydantic model); :class:`ModelError` naming each bad key otherwise.

    Args:
        config_cls: the architecture's pydantic config class.
        model_name: the registered architecture name, for messages.
        hints: key -> allowed values (see :func:`config_error`).
        example: a valid config literal shown when ``config`` is not a dict.
    """
    from pydantic import ValidationError

    if isinstance(config, config_cls):
        return config
    if not isinstance(config, dict):
        raise ModelError(
            f"{model_name} config must be a dict, got {type(config).__name__}; pass e.g. {example}"
        )
    try:
        return config_cls.model_validate(config)
    except ValidationError as exc:
        raise config_error(exc, model_name, hints) from None
