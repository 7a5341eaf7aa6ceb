"""``from_config`` / ``config_dict`` for architectures built from one pydantic config."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel

from xas_models.errors import parse_config


class ConfiguredModel:
    """Mixin for a ``torch.nn.Module`` whose ``__init__`` takes one validated config.

    A subclass sets ``config_class`` (the pydantic config), ``config_name`` (its registered
    architecture name, for messages), ``config_hints`` (key -> allowed values) and optionally
    ``config_example`` (a valid config literal shown when the input is not a dict), and keeps
    the parsed config as ``self.config``.
    """

    config_class: ClassVar[type[BaseModel]]
    config_name: ClassVar[str]
    config_hints: ClassVar[dict[str, str]]
    config_example: ClassVar[str] = "{}"
    config: Any

    @classmethod
    def from_config(cls, config: dict[str, Any] | BaseModel):
        """Build from a plain dict (as stored in checkpoints) or a parsed config; ModelError
        naming each bad key on an invalid one."""
        parsed = parse_config(
            config, cls.config_class, cls.config_name, cls.config_hints, cls.config_example
        )
        return cls(parsed)  # type: ignore[call-arg]

    def config_dict(self) -> dict[str, Any]:
        """The config as a JSON-serialisable dict (round-trips through :meth:`from_config`)."""
        return self.config.model_dump(mode="json")
