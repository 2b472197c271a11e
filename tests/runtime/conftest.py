"""Fixtures for the C runtime's tests: the runtime built once per session."""

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
    return crt.Runtime(build_dir / "libkiln_runtime.so")


@pytest.fixture(scope="session")
def kiln_run(build_dir):
    return build_dir / "kiln-run"
