"""The native runtime of this process: the kernel library, the CPython binding, BLAS and threads.

Both libraries are built once per machine into kiln's cache (see cache.py) and loaded once per
process:

    libkiln_kernels   runtime/kernels/*.c (C99, no Python), compiled with -march=native
    _kiln_native      kiln/backend/native/_binding.c: the Runner type that calls compiled
                      graphs, and the optimizer kernels, linked against the kernel library

    KILN_BLAS=mkl|numpy|scipy|none   which BLAS large matrix products use (default: Intel's MKL
                                 when the optional `mkl` package is installed and the CPU is
                                 Intel's, else NumPy's bundled OpenBLAS, else SciPy's through
                                 cython_blas, else kiln's own kernels)
    KILN_BLAS_THREADS=kiln|blas  who parallelises a large product: kiln's pool running
                                 single-threaded BLAS blocks (default, when the BLAS exports its
                                 thread-count functions; MKL then runs sequentially), or the
                                 BLAS's own threads
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
import warnings
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
_FAILED: dict[str, CompileError] = {}    # a runtime that failed to build is not retried
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
    memo = f"{tc.identity}|{src}|{blas_choice}|{os.environ.get('KILN_BLAS_THREADS', 'kiln')}"
    with _LOCK:
        rt = _RUNTIME.get(memo)
        if rt is None:
            if memo in _FAILED:
                raise _FAILED[memo]
            try:
                rt = _build(tc, src, blas_choice)
            except CompileError as e:
                _FAILED[memo] = e
                raise
            _RUNTIME[memo] = rt
        return rt


def _build(tc: Toolchain, src: Path, blas_choice: str) -> Runtime:
    files = _sources(src)
    kernels_key = digest("kernels", tc.identity, *[f.name + "\n" + f.read_text() for f in files])
    binding_src = _HERE / "_binding.c"
    np_include = _np.get_include()
    binding_text = binding_src.read_text() + (_HERE / "_binding_eager.c").read_text()
    binding_key = digest("binding", kernels_key, binding_text, sys.version,
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


_THREAD_SYMBOLS = (("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
                   ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
                   ("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
                   ("openblas_get_num_threads", "openblas_set_num_threads"))


def _numpy_openblas() -> tuple[int, int, tuple | None] | None:
    """(kind, address, thread functions) of the sgemm in NumPy's bundled OpenBLAS."""
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
                    threads = None
                    for get_name, set_name in _THREAD_SYMBOLS:
                        get_fn, set_fn = getattr(lib, get_name, None), getattr(lib, set_name,
                                                                              None)
                        if get_fn is not None and set_fn is not None:
                            threads = (ctypes.cast(get_fn, ctypes.c_void_p).value,
                                       ctypes.cast(set_fn, ctypes.c_void_p).value)
                            break
                    return kind, ctypes.cast(fn, ctypes.c_void_p).value, threads
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
    return 3, get_pointer(capsule, get_name(capsule)), None


# MKL's runtime-dispatch library, as the `mkl` wheel (pip install kiln[mkl]) or conda install it
_MKL_PATTERNS = ("lib/libmkl_rt.so*", "lib/libmkl_rt*.dylib", "Library/bin/mkl_rt*.dll")
_MKL_THREADING_INTEL, _MKL_THREADING_SEQUENTIAL = 0, 1
_MKL_INTERFACE_LP64 = 0


def _mkl_blas() -> tuple[int, int, tuple | None] | None:
    """(2, address, thread functions) of MKL's cblas_sgemm, when the `mkl` package is installed.

    MKL runs sequentially: kiln's pool splits a product into blocks, one MKL call per thread,
    as with OpenBLAS. So MKL starts no OpenMP threads of its own, which would spin for a while
    after each product and take a core from kiln's pool (KILN_BLAS_THREADS=blas gives MKL its
    OpenMP threads instead). On the project machine MKL's blocks ran the workloads' products
    1.13-2.17x faster than OpenBLAS's (bench/gemm.py).
    """
    roots = dict.fromkeys([sys.prefix, sys.base_prefix, os.environ.get("CONDA_PREFIX", "")])
    layer = _MKL_THREADING_SEQUENTIAL if _kiln_splits_products() else _MKL_THREADING_INTEL
    for root in filter(None, roots):
        for pattern in _MKL_PATTERNS:
            for path in sorted(glob.glob(os.path.join(root, pattern))):
                try:
                    lib = ctypes.CDLL(path)
                    # an MKL that another library already set up keeps its layer: not ours
                    if lib.MKL_Set_Threading_Layer(layer) != layer:
                        continue
                    lib.MKL_Set_Interface_Layer(_MKL_INTERFACE_LP64)
                    fns = [ctypes.cast(getattr(lib, name), ctypes.c_void_p).value
                           for name in ("cblas_sgemm", "MKL_Get_Max_Threads",
                                        "MKL_Set_Num_Threads")]
                except (OSError, AttributeError):   # not loadable, or not MKL's runtime
                    continue
                _LIBS[path] = lib
                return 2, fns[0], (fns[1], fns[2])
    return None


_BLAS_ORDER = ("mkl", "numpy", "scipy")
_BLAS_MISSING = {
    "mkl": "MKL's runtime library (libmkl_rt) was not found; pip install 'kiln[mkl]' installs it",
    "numpy": "NumPy's bundled OpenBLAS was not found (a NumPy built against another BLAS?)",
    "scipy": "SciPy's BLAS (scipy.linalg.cython_blas) was not found; is SciPy installed?",
}


def _intel_cpu() -> bool:
    """Whether this is an Intel CPU (Linux's /proc/cpuinfo, else the platform's string)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return "GenuineIntel" in line
    except OSError:
        pass
    import platform

    return "Intel" in platform.processor()


def _auto_order() -> list[str]:
    """MKL first on Intel CPUs, where it was measured faster; elsewhere (AMD, whose AVX-512
    MKL may not use) NumPy's OpenBLAS stays first until MKL is measured there too."""
    if _intel_cpu():
        return list(_BLAS_ORDER)
    return [name for name in _BLAS_ORDER if name != "mkl"] + ["mkl"]


def _install_blas(module, choice: str) -> str:
    """Hand the kernel library the first BLAS found (KILN_BLAS's choice first); its label."""
    finders = {"mkl": _mkl_blas, "numpy": _numpy_openblas, "scipy": _scipy_blas}
    auto = _auto_order()
    if choice == "none":
        order: list[str] = []
    elif choice in finders:
        order = [choice] + [name for name in auto if name != choice]
    else:
        if choice not in ("auto", ""):
            warnings.warn(f"KILN_BLAS={choice!r} is not one of auto, {', '.join(_BLAS_ORDER)} "
                          "or none; choosing automatically", RuntimeWarning, stacklevel=2)
        order = auto
    for name in order:
        found = finders[name]()
        if not found:
            if name == choice:
                warnings.warn(f"KILN_BLAS={choice}: {_BLAS_MISSING[choice]}; using the next "
                              "BLAS found instead", RuntimeWarning, stacklevel=2)
            continue
        module.set_blas(found[0], found[1])
        label = {1: f"{name} (cblas, 64-bit ints)", 2: f"{name} (cblas)",
                 3: f"{name} (Fortran sgemm)"}[found[0]]
        if found[2] is not None and _kiln_splits_products():
            module.set_blas_threads(*found[2])
            label += ", single-threaded blocks on kiln's pool"
        return label
    module.set_blas(0, 0)
    return "built-in"


def _kiln_splits_products() -> bool:
    """KILN_BLAS_THREADS: kiln's pool runs single-threaded BLAS blocks (default), or not."""
    return os.environ.get("KILN_BLAS_THREADS", "kiln") == "kiln"
