"""Fixtures of the backend tests: a private compilation cache, and the `backend` parameter that
runs a test once per backend ('numpy' always, 'native' when a C compiler is present)."""

from __future__ import annotations

import os
import tempfile

import pytest

from kiln.backend.native.toolchain import compiler_available


def _native_skip_reason() -> str | None:
    if not compiler_available():
        return "no C compiler: the native backend is unavailable"
    from kiln.backend.native.runtime import kernels_source_dir

    if kernels_source_dir() is None:
        return "the C kernel sources (runtime/kernels) are not present"
    return None


NATIVE_SKIP = _native_skip_reason()


@pytest.fixture
def require_native():
    """Skip the test when the native backend cannot be built here (no C compiler)."""
    if NATIVE_SKIP is not None:
        pytest.skip(NATIVE_SKIP)


@pytest.fixture(scope="session", autouse=True)
def _test_cache():
    """A cache of the tests' own (kept between runs, so the kernel library is built once),
    unless whoever runs the tests sets KILN_CACHE_DIR."""
    if "KILN_CACHE_DIR" in os.environ:
        yield os.environ["KILN_CACHE_DIR"]
        return
    uid = os.getuid() if hasattr(os, "getuid") else 0
    path = os.path.join(tempfile.gettempdir(), f"kiln-test-cache-{uid}")
    os.environ["KILN_CACHE_DIR"] = path
    yield path
    os.environ.pop("KILN_CACHE_DIR", None)


@pytest.fixture(params=["numpy", "native"])
def backend(request) -> str:
    if request.param == "native" and NATIVE_SKIP is not None:
        pytest.skip(NATIVE_SKIP)
    return request.param
