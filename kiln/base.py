"""Errors, dtype helpers and the environment switches shared by all of kiln."""

from __future__ import annotations

import os

import numpy as _np

__all__ = [
    "KilnError",
    "ShapeError",
    "DTypeError",
    "SymbolicValueError",
    "DeferredInitializationError",
    "FormatError",
    "default_dtype",
    "as_dtype",
    "env_flag",
    "env_list",
]


class KilnError(Exception):
    """Base class of every error kiln raises on purpose."""


class ShapeError(KilnError, ValueError):
    """Operands whose shapes do not fit the operator."""


class DTypeError(KilnError, TypeError):
    """Operands whose dtypes do not fit the operator."""


class SymbolicValueError(KilnError, TypeError):
    """A concrete value was asked of a symbol (while tracing a hybridized block)."""


class DeferredInitializationError(KilnError, RuntimeError):
    """A parameter was used before its shape was known."""


class FormatError(KilnError, ValueError):
    """A model, parameter or graph file that kiln cannot read."""


# float32 is the default floating type, as in MXNet's numpy mode.
default_dtype = _np.dtype(_np.float32)

_DTYPE_ALIASES = {"bfloat16": None}


def as_dtype(dtype) -> _np.dtype:
    """Normalise a dtype given as a NumPy dtype, a type or a string."""
    if dtype is None:
        return default_dtype
    if isinstance(dtype, _np.dtype):
        return dtype
    try:
        return _np.dtype(dtype)
    except TypeError as e:
        raise DTypeError(f"unknown dtype {dtype!r}") from e


def env_flag(name: str, default: bool = False) -> bool:
    """A boolean environment switch: unset gives `default`, "0"/"false"/"" give False."""
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() not in ("", "0", "false", "no", "off")


def env_list(name: str) -> list[str]:
    """A comma-separated environment switch, e.g. KILN_DISABLE_PASSES=cse,fold."""
    value = os.environ.get(name, "")
    return [item.strip() for item in value.split(",") if item.strip()]


def env_int(name: str, default: int = 0) -> int:
    value = os.environ.get(name)
    if not value:
        return default
    try:
        return int(value)
    except ValueError as e:
        raise KilnError(f"environment variable {name}={value!r} is not an integer") from e
