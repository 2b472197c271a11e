"""Helpers shared by the `kiln.np` operator tests: compare kiln results with NumPy's."""

from __future__ import annotations

import numpy as onp

from kiln.ndarray import ndarray
from kiln.test_utils import assert_almost_equal


def rand(*shape, low: float = -1.0, high: float = 1.0, dtype="float64", seed: int = 0):
    """A reproducible NumPy array of uniform values in [low, high)."""
    rng = onp.random.default_rng(seed)
    return rng.uniform(low, high, size=shape).astype(dtype)


def assert_matches(actual, expected, rtol: float = 1e-5, atol: float = 1e-6,
                   check_dtype: bool = True) -> None:
    """`actual` (a kiln array) equals `expected` (NumPy's result) in shape, dtype and values."""
    assert isinstance(actual, ndarray), f"expected a kiln array, got {type(actual).__name__}"
    expected = onp.asarray(expected)
    assert actual.shape == expected.shape, f"shape {actual.shape} != NumPy's {expected.shape}"
    if check_dtype:
        assert actual.dtype == expected.dtype, f"dtype {actual.dtype} != NumPy's {expected.dtype}"
    assert_almost_equal(actual, expected, rtol=rtol, atol=atol, names=("kiln", "numpy"))
