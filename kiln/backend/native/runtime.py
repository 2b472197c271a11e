"""The native runtime of this process: the kernel library, the CPython binding, BLAS and threads.

Both libraries are built once per machine into kiln's cache (see cache.py) and loaded once per
process:

    libkiln_kernels   runtime/kernels/*.c (C99, no Python), compiled with -march=native
    _kiln_native      kiln/backend/native/_binding.c: the Runner type that calls compiled
                      graphs, and the optimizer kernels, linked against the kernel library

    KILN_BLAS=numpy|scipy|none   which BLAS large matrix products use (default: NumPy's bundled
                                 OpenBLAS, else SciPy's through cython_blas, else kiln's own)
    KILN_KERNELS_DIR=path        where the kernel sources are (default: runtime/kernels of the
                                 source tree kiln runs from)
    KILN_NUM_THREADS / OMP_NUM_THREADS    threads of kiln's own parallel loops; BLAS threads
                                 follow OpenBLAS's own settings (OPENBLAS_NUM_THREADS)
"""

from __future__ import annotations

import ctypes
import glob
import importlib.util
import os
import sys
import sysconfig
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as _np

from .cache import digest, lookup_or_build
from .toolchain import CompileError, Toolchain, find_toolchain, wait_all

__all__ = ["Runtime", "load_runtime", "kernels_source_dir", "load_library"]

_HERE = Path(__file__).resolve().parent


def kernels_source_dir() -> Path | None:
    """The directory holding kiln_kernels.h and the kernel sources, or None."""
    env = os.environ.get("KILN_KERNELS_DIR")
    candidates = [Path(env)] if env else []
    candidates += [_HERE / "kernels", _HERE.parents[2] / "runtime" / "kernels"]
    for c in candidates:
        if (c / "kiln_kernels.h").is_file():
            return c
    return None


@dataclass
class Runtime:
    toolchain: Toolchain
    kernels_src: Path
    kernels_lib: Path
    kernels_key: str
    binding: object            # the _kiln_native module
    blas: str                  # which BLAS large products use
    key: str                   # enters every graph's cache key
    build_seconds: float = 0.0


_LOCK = threading.Lock()
_RUNTIME: dict[str, Runtime] = {}
_LIBS: dict[str, ctypes.CDLL] = {}


def _sources(src: Path) -> list[Path]:
    return sorted(p for p in src.iterdir() if p.suffix in (".c", ".h"))


def load_runtime() -> Runtime:
    """Build (first time on this machine) and load the kernel library and the binding.

    Raises CompileError when there is no compiler or compilation fails.
    """
    tc = find_toolchain()
    src = kernels_source_dir()
    if src is None:
        raise CompileError("kiln's C kernel sources (runtime/kernels/kiln_kernels.h) were not "
                           "found; set KILN_KERNELS_DIR to that folder")
    blas_choice = os.environ.get("KILN_BLAS", "auto").lower()
    memo = f"{tc.identity}|{src}|{blas_choice}"
    with _LOCK:
        rt = _RUNTIME.get(memo)
        if rt is None:
            rt = _build(tc, src, blas_choice)
            _RUNTIME[memo] = rt
        return rt


def _build(tc: Toolchain, src: Path, blas_choice: str) -> Runtime:
    files = _sources(src)
    kernels_key = digest("kernels", tc.identity, *[f.name + "\n" + f.read_text() for f in files])
    binding_src = _HERE / "_binding.c"
    np_include = _np.get_include()
    binding_key = digest("binding", kernels_key, binding_src.read_text(), sys.version,
                         sysconfig.get_config_var("EXT_SUFFIX") or "", _np.__version__,
                         np_include)
    py_include = sysconfig.get_paths()["include"]
    total = 0.0

    def build_kernels(d: Path) -> None:
        procs = [tc.compile_object(str(f), str(d / (f.stem + ".o")), [str(src)])
                 for f in files if f.suffix == ".c"]
        wait_all(procs)
        tc.link_shared(sorted(str(p) for p in d.glob("*.o")), str(d / "lib.so"),
                       ("-pthread",))
        for p in d.glob("*.o"):
            p.unlink()

    kernels = lookup_or_build("kernels", kernels_key, build_kernels)
    total += kernels.build_seconds
    _load(kernels.library, global_symbols=True)

    def build_binding(d: Path) -> None:
        tc.build_shared(str(binding_src), str(d / "lib.so"),
                        include_dirs=[str(src), py_include, np_include],
                        libs=(str(kernels.library), f"-Wl,-rpath,{kernels.directory}"))

    binding_entry = lookup_or_build("binding", binding_key, build_binding)
    total += binding_entry.build_seconds
    module = _import_binding(binding_entry.library)
    blas = _install_blas(module, blas_choice)
    key = digest("runtime", kernels_key, binding_key, str(kernels.directory))
    return Runtime(tc, src, kernels.library, kernels_key, module, blas, key, total)


def _load(path: Path, global_symbols: bool = False) -> ctypes.CDLL:
    key = str(path)
    lib = _LIBS.get(key)
    if lib is None:
        mode = ctypes.RTLD_GLOBAL if global_symbols else ctypes.RTLD_LOCAL
        try:
            lib = ctypes.CDLL(key, mode=mode)
        except OSError as e:
            raise CompileError(f"cannot load the compiled library {path}: {e}") from None
        _LIBS[key] = lib
    return lib


def load_library(path: Path) -> ctypes.CDLL:
    """dlopen a compiled graph library (once per path in this process)."""
    return _load(path)


def _import_binding(path: Path):
    name = "_kiln_native"
    existing = sys.modules.get(name)
    if existing is not None and getattr(existing, "__file__", None) == str(path):
        return existing
    spec = importlib.util.spec_from_file_location(name, str(path))
    if spec is None or spec.loader is None:
        raise CompileError(f"cannot import the kiln binding from {path}")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except ImportError as e:
        raise CompileError(f"cannot import the kiln binding from {path}: {e}") from None
    sys.modules[name] = module
    return module


# ----------------------------------------------------------------------------------------------
# BLAS
# ----------------------------------------------------------------------------------------------

# (symbol, kind): kind 1 = cblas with 64-bit ints, 2 = cblas with 32-bit ints
_CBLAS_SYMBOLS = (("scipy_cblas_sgemm64_", 1), ("cblas_sgemm64_", 1), ("scipy_cblas_sgemm", 2),
                  ("cblas_sgemm", 2))


def _numpy_openblas() -> tuple[int, int] | None:
    """(kind, address) of the sgemm in NumPy's bundled OpenBLAS."""
    root = Path(_np.__file__).resolve().parent
    patterns = [str(root.parent / "numpy.libs" / "lib*openblas*"),
                str(root / ".dylibs" / "lib*openblas*")]
    for pattern in patterns:
        for path in sorted(glob.glob(pattern)):
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            for symbol, kind in _CBLAS_SYMBOLS:
                fn = getattr(lib, symbol, None)
                if fn is not None:
                    _LIBS[path] = lib
                    return kind, ctypes.cast(fn, ctypes.c_void_p).value
    return None


def _scipy_blas() -> tuple[int, int] | None:
    """(3, address) of SciPy's Fortran sgemm (cython_blas's capsule)."""
    try:
        from scipy.linalg import cython_blas
    except ImportError:
        return None
    capsule = cython_blas.__pyx_capi__.get("sgemm")
    if capsule is None:
        return None
    get_name = ctypes.pythonapi.PyCapsule_GetName
    get_name.restype = ctypes.c_char_p
    get_name.argtypes = [ctypes.py_object]
    get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    get_pointer.restype = ctypes.c_void_p
    get_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
    return 3, get_pointer(capsule, get_name(capsule))


def _install_blas(module, choice: str) -> str:
    finders = {"numpy": _numpy_openblas, "scipy": _scipy_blas}
    order = ["numpy", "scipy"] if choice in ("auto", "") else [choice]
    for name in order:
        if name == "none":
            break
        finder = finders.get(name)
        found = finder() if finder else None
        if found:
            module.set_blas(found[0], found[1])
            return {1: f"{name} (cblas, 64-bit ints)", 2: f"{name} (cblas)",
                    3: f"{name} (Fortran sgemm)"}[found[0]]
    module.set_blas(0, 0)
    return "built-in"
