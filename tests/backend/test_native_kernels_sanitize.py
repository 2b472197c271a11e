"""Kernels under AddressSanitizer + UndefinedBehaviorSanitizer, each driver built once for the
portable vector width (SSE) and once with -march=native (AVX-512 here): no sanitizer report, no
wrong value.

- c/conv_check.c runs kiln_conv2d_f32 on random geometries (odd sizes, strides, dilations,
  paddings, groups, batches, one and two threads) and on four that Winograd takes (each of its
  orders of work) against the definition;
- c/lstm_check.c runs the LSTM's forward and backward on random sizes (sequences of zero, one
  and more steps, both directions, one and two threads) against the definition in double.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KERNELS = ROOT / "runtime" / "kernels"
SAN = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer",
       "-g", "-O1"]


def _cc() -> str | None:
    return shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")


@pytest.mark.parametrize("driver, cases", [("conv_check", 250), ("lstm_check", 120)])
@pytest.mark.parametrize("arch", [[], ["-march=native"]], ids=["portable", "native"])
def test_kernels_under_sanitizers(tmp_path, arch, driver, cases):
    cc = _cc()
    if cc is None:
        pytest.skip("no C compiler")
    exe = tmp_path / driver
    sources = sorted(str(p) for p in KERNELS.glob("*.c"))
    cmd = [cc, "-std=gnu99", *SAN, *arch, "-pthread", f"-I{KERNELS}", *sources,
           "-fopenmp-simd", str(Path(__file__).parent / "c" / f"{driver}.c"), "-o", str(exe),
           "-lm"]
    build = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if build.returncode and "sanitize" in build.stderr:
        pytest.skip(f"the compiler cannot build with sanitizers: {build.stderr[-300:]}")
    assert build.returncode == 0, build.stderr[-3000:]
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1", UBSAN_OPTIONS="print_stacktrace=1")
    proc = subprocess.run([str(exe), str(cases)], capture_output=True, text=True, timeout=300,
                          env=env)
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
    assert proc.stdout.strip().endswith(f"{cases} cases, 0 wrong"), proc.stdout[-2000:]
