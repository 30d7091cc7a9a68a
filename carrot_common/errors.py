"""Errors shared by the policy loaders (no imports: a CLI can catch them without loading PyYAML or pydantic)."""


class ConfigError(ValueError):
    """A policy file that cannot be used; the message names file, key and bad value."""
