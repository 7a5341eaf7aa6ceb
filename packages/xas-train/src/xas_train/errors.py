"""Errors raised by xas-train; each message names the problem and the fix."""


class TrainError(Exception):
    """A training run cannot start or continue (bad data, checkpoint or environment)."""


class ConfigError(TrainError):
    """A run configuration is invalid (unknown key, bad value, inconsistent recipe)."""
