"""Typed environment values: checked when read, errors naming the variable and the value."""

from __future__ import annotations

import os

from .config import ConfigError


def _number(name: str, default, kind: type, minimum):
    raw = os.environ.get(name, "")
    if raw.strip() == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name}: expected {'an integer' if kind is int else 'a number'}, "
                          f"got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ConfigError(f"environment variable {name}: must be at least {minimum}, got {raw!r}")
    return value


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    """`$name` as an integer (`default` when unset or empty)."""
    return _number(name, default, int, minimum)


def env_float(name: str, default: float, *, minimum: float | None = None) -> float:
    """`$name` as a float (`default` when unset or empty)."""
    return _number(name, default, float, minimum)


_BOOLS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


def env_bool(name: str, default: bool) -> bool:
    """`$name` as a boolean: 1/true/yes/on or 0/false/no/off, any case (`default` when unset or empty)."""
    raw = os.environ.get(name, "")
    if raw.strip() == "":
        return default
    try:
        return _BOOLS[raw.strip().lower()]
    except KeyError:
        raise ConfigError(f"environment variable {name}: expected one of {', '.join(_BOOLS)}, got {raw!r}") from None
