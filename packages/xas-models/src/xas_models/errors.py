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
