"""Exceptions with messages meant for a person: each names the file, value or setting at fault."""


class MdbdError(Exception):
    """Base class: the command line prints these without a traceback and exits with status 2."""


class ConfigError(MdbdError, ValueError):
    """An unknown profile, preset or field, or a value out of range."""


class DataError(MdbdError):
    """A missing, corrupt or inconsistent dataset file."""


class WeightsError(MdbdError):
    """Backbone weights that cannot be obtained, converted or verified."""


class CheckpointError(MdbdError):
    """A missing checkpoint, or one that does not match the requested model."""
