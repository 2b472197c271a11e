"""Which BLAS the kernel library uses (KILN_BLAS), and that each one computes the same products.

The suite's own process runs on whichever BLAS comes first (MKL where the `mkl` package is
installed on an Intel CPU, else NumPy's OpenBLAS); the products of every BLAS present here are
checked in a process of their own, since the choice is made once per process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from kiln.backend.native import runtime

pytestmark = pytest.mark.usefixtures("require_native")


class FakeBinding:
    """Records what _install_blas hands the kernel library."""

    def __init__(self):
        self.blas = None
        self.threads = None

    def set_blas(self, kind, address):
        self.blas = (kind, address)

    def set_blas_threads(self, get, set_):
        self.threads = (get, set_)


def test_none_means_the_builtin_kernels():
    b = FakeBinding()
    assert runtime._install_blas(b, "none") == "built-in"
    assert b.blas == (0, 0)


@pytest.fixture
def both(monkeypatch):
    """MKL and NumPy's OpenBLAS both 'installed' (fake finders); yields the monkeypatch."""
    monkeypatch.setattr(runtime, "_mkl_blas", lambda: (2, 99, (7, 8)))
    monkeypatch.setattr(runtime, "_numpy_openblas", lambda: (1, 1234, (5, 6)))
    return monkeypatch


def test_a_missing_choice_warns_and_takes_the_next(both):
    both.setattr(runtime, "_mkl_blas", lambda: None)
    b = FakeBinding()
    with pytest.warns(RuntimeWarning, match=r"KILN_BLAS=mkl: .*pip install 'kiln\[mkl\]'"):
        label = runtime._install_blas(b, "mkl")
    assert label.startswith("numpy (cblas, 64-bit ints)")
    assert b.blas == (1, 1234) and b.threads == (5, 6)


def test_auto_prefers_mkl_on_intel_then_numpy(both):
    both.setattr(runtime, "_intel_cpu", lambda: True)
    b = FakeBinding()
    assert runtime._install_blas(b, "auto").startswith("mkl (cblas)")
    assert b.blas == (2, 99)
    assert runtime._install_blas(b, "numpy").startswith("numpy")
    assert b.blas == (1, 1234)


def test_auto_keeps_openblas_first_on_other_cpus(both):
    both.setattr(runtime, "_intel_cpu", lambda: False)
    b = FakeBinding()
    assert runtime._install_blas(b, "auto").startswith("numpy")
    assert runtime._install_blas(b, "mkl").startswith("mkl")     # asked for by name
    both.setattr(runtime, "_numpy_openblas", lambda: None)
    both.setattr(runtime, "_scipy_blas", lambda: None)
    assert runtime._install_blas(b, "auto").startswith("mkl")    # the only one there


def test_blas_threads_env_leaves_threading_to_the_blas(both):
    both.setenv("KILN_BLAS_THREADS", "blas")
    b = FakeBinding()
    assert runtime._install_blas(b, "numpy") == "numpy (cblas, 64-bit ints)"
    assert b.threads is None


def test_an_unknown_choice_warns():
    b = FakeBinding()
    with pytest.warns(RuntimeWarning, match="not one of auto, mkl, numpy, scipy or none"):
        runtime._install_blas(b, "openblas")
    assert b.blas is not None


CHECK = textwrap.dedent("""
    import ctypes, sys
    import numpy as np
    from kiln.backend.native.runtime import load_runtime
    from kiln.ops import _gemm

    rt = load_runtime()
    assert rt.blas.startswith(sys.argv[1]), rt.blas
    k = ctypes.CDLL(str(rt.kernels_lib))
    L, F, P = ctypes.c_long, ctypes.c_float, ctypes.c_void_p
    k.kiln_sgemm.argtypes = [ctypes.c_int, ctypes.c_int, L, L, L, F, P, L, P, L, F, P, L]
    rng = np.random.default_rng(0)
    worst = 0.0
    # one call (under 4e6 multiply-adds); split over the pool by columns; by rows, for a
    # narrow output and for one at least 4x taller than wide
    for m, n, k_ in [(67, 300, 45), (300, 260, 80), (32, 1024, 256), (700, 64, 96),
                     (1040, 256, 40)]:
        for ta in (0, 1):
            for tb in (0, 1):
                a = rng.standard_normal((k_, m) if ta else (m, k_)).astype(np.float32)
                b = rng.standard_normal((n, k_) if tb else (k_, n)).astype(np.float32)
                c = rng.standard_normal((m, n)).astype(np.float32)
                a64 = (a.T if ta else a).astype(np.float64)
                b64 = (b.T if tb else b).astype(np.float64)
                want = 0.5 * (a64 @ b64) + 2.0 * c
                k.kiln_sgemm(ta, tb, m, n, k_, 0.5, a.ctypes.data, a.shape[1], b.ctypes.data,
                             b.shape[1], 2.0, c.ctypes.data, n)
                worst = max(worst, float(np.abs(c - want).max() / np.sqrt(k_)))
                got = _gemm.matmul(a.T if ta else a, b.T if tb else b)
                worst = max(worst, float(np.abs(got - a64 @ b64).max() / np.sqrt(k_)))
    print(worst)
""")


def _blas_present(name: str) -> bool:
    return {"mkl": runtime._mkl_blas, "numpy": runtime._numpy_openblas}[name]() is not None


@pytest.mark.parametrize("name", ["mkl", "numpy"])
def test_each_blas_computes_the_same_products(name):
    if not _blas_present(name):
        pytest.skip(f"{name}'s BLAS is not installed here")
    env = dict(os.environ, KILN_BLAS=name)
    done = subprocess.run([sys.executable, "-c", CHECK, name], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert float(done.stdout.strip().splitlines()[-1]) < 1e-5
