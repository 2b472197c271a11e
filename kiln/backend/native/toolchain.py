"""The system C compiler: finding it, its flags, and compiling shared libraries with it.

    CC=gcc / CC="clang -fcolor-diagnostics"   the compiler (default: cc, gcc, clang on PATH)
    KILN_CFLAGS="-O2"                         extra flags, appended (they enter cache keys)
    KILN_NATIVE_ARCH=0                        no -march=native (portable code; slower)

`-march=native` is used when the compiler accepts it, so the code uses the vector units of the
machine it runs on; the CPU's identity then enters every cache key.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass

from ...base import KilnError

__all__ = ["CompileError", "Toolchain", "find_toolchain", "cpu_fingerprint"]

# Flags every compilation uses. gnu99: C99 plus GCC vector extensions and __thread; no
# -ffast-math (NaN and inf must behave as in NumPy), but errno-free math so sqrt vectorises.
BASE_FLAGS = ("-std=gnu99", "-O3", "-fPIC", "-pthread", "-fno-math-errno",
              "-fno-trapping-math", "-ffp-contract=fast", "-fopenmp-simd")


class CompileError(KilnError):
    """The C compiler failed (or is missing); `message` holds what it said."""

    def __init__(self, message: str, command: list[str] | None = None):
        super().__init__(message)
        self.message = message
        self.command = command or []


@dataclass(frozen=True)
class Toolchain:
    """A C compiler and the flags kiln compiles with."""

    cc: tuple[str, ...]
    version: str
    flags: tuple[str, ...]

    @property
    def identity(self) -> str:
        """What enters cache keys: the compiler, its version, the flags and the CPU."""
        return "\n".join([" ".join(self.cc), self.version, " ".join(self.flags),
                          cpu_fingerprint() if "-march=native" in self.flags else "generic"])

    def compile_object(self, source: str, output: str, include_dirs=(),
                       extra: tuple[str, ...] = ()) -> subprocess.Popen:
        """Start compiling `source` to the object file `output`; returns the process."""
        cmd = [*self.cc, *self.flags, *extra, *[f"-I{d}" for d in include_dirs], "-c", source,
               "-o", output]
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)

    def link_shared(self, objects: list[str], output: str, libs: tuple[str, ...] = ()) -> None:
        cmd = [*self.cc, *self.flags, "-shared", *objects, "-o", output, *libs, "-lm"]
        _run(cmd)

    def build_shared(self, source: str, output: str, include_dirs=(), libs: tuple[str, ...] = (),
                     extra: tuple[str, ...] = ()) -> None:
        """Compile and link one C file into a shared library (raises CompileError)."""
        cmd = [*self.cc, *self.flags, *extra, "-shared",
               *[f"-I{d}" for d in include_dirs], source, "-o", output, *libs, "-lm"]
        _run(cmd)


def _run(cmd: list[str]) -> None:
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              check=False)
    except OSError as e:
        raise CompileError(f"cannot run the C compiler {cmd[0]!r}: {e}", cmd) from None
    if proc.returncode != 0:
        raise CompileError(proc.stdout.strip() or f"{cmd[0]} exited with {proc.returncode}", cmd)


def wait_all(procs: list[subprocess.Popen]) -> None:
    """Wait for compile processes started by `compile_object`; raise on the first failure."""
    failure = None
    for p in procs:
        out, _ = p.communicate()
        if p.returncode != 0 and failure is None:
            failure = CompileError(out.strip() or f"compiler exited with {p.returncode}",
                                   list(p.args))
    if failure is not None:
        raise failure


def _compiler_command() -> tuple[str, ...] | None:
    env = os.environ.get("CC")
    if env is not None:
        parts = shlex.split(env)
        if not parts or shutil.which(parts[0]) is None:
            return None
        return tuple(parts)
    for name in ("cc", "gcc", "clang"):
        if shutil.which(name):
            return (name,)
    return None


def compiler_missing_reason() -> str:
    env = os.environ.get("CC")
    if env is not None:
        return f"the C compiler CC={env!r} was not found"
    return "no C compiler (cc, gcc or clang) was found on PATH"


@functools.lru_cache(maxsize=8)
def _probe(cc: tuple[str, ...], extra_flags: str, native_arch: bool) -> Toolchain:
    try:
        proc = subprocess.run([*cc, "--version"], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, check=False, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise CompileError(f"cannot run the C compiler {cc[0]!r}: {e}") from None
    if proc.returncode != 0:
        raise CompileError(f"{' '.join(cc)} --version failed: {proc.stdout.strip()}")
    version = proc.stdout.strip().splitlines()[0] if proc.stdout.strip() else "unknown"
    flags = list(BASE_FLAGS)
    if native_arch and _accepts(cc, "-march=native"):
        flags.append("-march=native")
    flags += shlex.split(extra_flags)
    return Toolchain(cc, version, tuple(flags))


def _accepts(cc: tuple[str, ...], flag: str) -> bool:
    with tempfile.TemporaryDirectory(prefix="kiln-cc-") as d:
        src = os.path.join(d, "t.c")
        with open(src, "w") as f:
            f.write("int kiln_probe(void) { return 0; }\n")
        try:
            proc = subprocess.run([*cc, flag, "-c", src, "-o", os.path.join(d, "t.o")],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  check=False, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return False
        return proc.returncode == 0


def find_toolchain() -> Toolchain:
    """The compiler to use now (CC and KILN_CFLAGS are read on every call); raises
    CompileError when there is none."""
    cc = _compiler_command()
    if cc is None:
        raise CompileError(compiler_missing_reason())
    native = os.environ.get("KILN_NATIVE_ARCH", "1").strip().lower() not in ("0", "false", "no")
    return _probe(cc, os.environ.get("KILN_CFLAGS", ""), native)


def compiler_available() -> bool:
    return _compiler_command() is not None


@functools.lru_cache(maxsize=1)
def cpu_fingerprint() -> str:
    """A short hash of the CPU's model and feature flags (code built with -march=native for
    one CPU may not run on another)."""
    text = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("model name", "flags", "Features", "CPU part")):
                    text += line
                    if line.startswith(("flags", "Features")):
                        break
    except OSError:
        import platform

        text = platform.processor() + platform.machine()
    return hashlib.sha256(text.encode()).hexdigest()[:16]
