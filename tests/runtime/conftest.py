"""Fixtures for the C runtime's tests: the runtime built once per session."""

import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import crt  # noqa: E402


@pytest.fixture(scope="session")
def build_dir():
    return crt.build()


@pytest.fixture(scope="session")
def runtime(build_dir):
    # KILN_RT_LIB: another build of the library, e.g. one with sanitizers (then run pytest
    # with LD_PRELOAD=$(cc -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0)
    return crt.Runtime(os.environ.get("KILN_RT_LIB") or build_dir / "libkiln_runtime.so")


@pytest.fixture(scope="session")
def kiln_run(build_dir):
    return build_dir / "kiln-run"
