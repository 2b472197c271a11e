"""The C runtime from Python, for the tests: building it with the system compiler (`make -C
runtime`) and calling libkiln_runtime.so through ctypes.

    lib = build()                       # runtime/build/, or pytest.skip without a compiler
    rt = Runtime(lib / "libkiln_runtime.so")
    model = rt.load_files("net-symbol.json", "net-0000.params")
    model.set_input(0, x); model.run(); y = model.output(0)
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from pathlib import Path

import numpy as onp
import pytest

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ROOT / "runtime"
STATUS = ["OK", "ARGUMENT", "IO", "JSON", "GRAPH", "UNSUPPORTED", "ATTRIBUTE", "PARAMS", "SHAPE",
          "LIMIT", "NOMEM", "STATE"]


def have_compiler() -> bool:
    return shutil.which("make") is not None and (
        shutil.which(os.environ.get("CC", "cc")) is not None or shutil.which("gcc") is not None)


def build(target: str = "all", build_dir: str = "build") -> Path:
    """Build a runtime make target; the build directory. Skips the test without a compiler."""
    if not have_compiler():
        pytest.skip("no C compiler (cc) and make to build the runtime")
    proc = subprocess.run(["make", "-C", str(RUNTIME), "-j2", target], capture_output=True,
                          text=True, timeout=300)
    if proc.returncode:
        raise AssertionError(f"make {target} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return RUNTIME / build_dir


class RuntimeError_(Exception):
    """A kiln_status other than KILN_OK, with kiln_last_error()'s message."""

    def __init__(self, status: int, message: str):
        super().__init__(f"{STATUS[status] if status < len(STATUS) else status}: {message}")
        self.status = STATUS[status] if status < len(STATUS) else str(status)
        self.message = message


class _Options(ctypes.Structure):
    _fields_ = [("max_memory", ctypes.c_uint64), ("num_threads", ctypes.c_int)]


class Runtime:
    def __init__(self, so_path: Path):
        lib = self.lib = ctypes.CDLL(str(so_path))
        p, i64p = ctypes.c_void_p, ctypes.POINTER(ctypes.c_int64)
        lib.kiln_last_error.restype = ctypes.c_char_p
        lib.kiln_model_load_files.argtypes = [ctypes.c_char_p, ctypes.c_char_p,
                                              ctypes.POINTER(p)]
        lib.kiln_model_load_memory_opts.argtypes = [ctypes.c_char_p, ctypes.c_size_t,
                                                    ctypes.c_char_p, ctypes.c_size_t,
                                                    ctypes.POINTER(_Options), ctypes.POINTER(p)]
        lib.kiln_model_free.argtypes = [p]
        for name in ("kiln_model_num_inputs", "kiln_model_num_outputs"):
            getattr(lib, name).argtypes = [p]
        for name in ("kiln_model_input_name", "kiln_model_output_name"):
            getattr(lib, name).argtypes = [p, ctypes.c_int]
            getattr(lib, name).restype = ctypes.c_char_p
        lib.kiln_model_set_input.argtypes = [p, ctypes.c_int, ctypes.POINTER(ctypes.c_float),
                                             i64p, ctypes.c_int]
        lib.kiln_model_run.argtypes = [p]
        lib.kiln_model_get_output.argtypes = [p, ctypes.c_int,
                                              ctypes.POINTER(ctypes.POINTER(ctypes.c_float)),
                                              ctypes.POINTER(i64p), ctypes.POINTER(ctypes.c_int)]
        lib.kiln_model_output_shape.argtypes = [p, ctypes.c_int, ctypes.POINTER(i64p),
                                                ctypes.POINTER(ctypes.c_int)]
        lib.kiln_model_memory.argtypes = [p]
        lib.kiln_model_memory.restype = ctypes.c_uint64
        lib.kiln_model_set_max_loop_steps.argtypes = [p, ctypes.c_uint64]

    def check(self, status: int) -> None:
        if status:
            raise RuntimeError_(status, self.lib.kiln_last_error().decode("utf-8", "replace"))

    def load_files(self, symbol, params) -> Model:
        handle = ctypes.c_void_p()
        self.check(self.lib.kiln_model_load_files(str(symbol).encode(),
                                                  None if params is None else
                                                  str(params).encode(), ctypes.byref(handle)))
        return Model(self, handle)

    def load_memory(self, js: bytes, params: bytes | None, max_memory: int = 0) -> Model:
        handle = ctypes.c_void_p()
        opts = _Options(max_memory, 0)
        self.check(self.lib.kiln_model_load_memory_opts(
            js, len(js), params, 0 if params is None else len(params), ctypes.byref(opts),
            ctypes.byref(handle)))
        return Model(self, handle)


class Model:
    def __init__(self, rt: Runtime, handle: ctypes.c_void_p):
        self.rt, self.lib, self.h = rt, rt.lib, handle

    def __del__(self):
        if getattr(self, "h", None):
            self.lib.kiln_model_free(self.h)
            self.h = None

    @property
    def inputs(self) -> list[str]:
        return [self.lib.kiln_model_input_name(self.h, i).decode()
                for i in range(self.lib.kiln_model_num_inputs(self.h))]

    @property
    def outputs(self) -> list[str]:
        return [self.lib.kiln_model_output_name(self.h, i).decode()
                for i in range(self.lib.kiln_model_num_outputs(self.h))]

    def set_input(self, i: int, x) -> None:
        x = onp.ascontiguousarray(x, dtype=onp.float32)
        dims = (ctypes.c_int64 * max(1, x.ndim))(*x.shape)
        self.rt.check(self.lib.kiln_model_set_input(
            self.h, i, x.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), dims, x.ndim))

    def run(self) -> None:
        self.rt.check(self.lib.kiln_model_run(self.h))

    def set_max_loop_steps(self, steps: int) -> None:
        self.rt.check(self.lib.kiln_model_set_max_loop_steps(self.h, steps))

    def outputs_all(self) -> list[onp.ndarray]:
        return [self.output(k) for k in range(len(self.outputs))]

    def output(self, i: int = 0) -> onp.ndarray:
        data = ctypes.POINTER(ctypes.c_float)()
        dims = ctypes.POINTER(ctypes.c_int64)()
        ndim = ctypes.c_int()
        self.rt.check(self.lib.kiln_model_get_output(self.h, i, ctypes.byref(data),
                                                     ctypes.byref(dims), ctypes.byref(ndim)))
        shape = tuple(dims[k] for k in range(ndim.value))
        count = int(onp.prod(shape)) if shape else 1
        return onp.ctypeslib.as_array(data, shape=(count,)).reshape(shape).copy()

    def __call__(self, *xs) -> onp.ndarray:
        for i, x in enumerate(xs):
            self.set_input(i, x)
        self.run()
        return self.output(0)
