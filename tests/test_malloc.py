"""kiln/_malloc.py: after `import kiln`, a large array freed and allocated again reuses the
process's memory instead of faulting fresh pages in (glibc only)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from kiln import _malloc

pytestmark = pytest.mark.skipif(not _malloc._glibc(), reason="glibc's malloc only")

# Allocate, touch and free 4 MB arrays (as an eager step's activations and gradients are):
# the minor page faults of the last ten rounds, after a warm-up.
PROBE = """
import resource
import numpy as np
import kiln
def rounds(k):
    for _ in range(k):
        arrays = [np.ones(1 << 20, np.float32) for _ in range(8)]
        del arrays
rounds(3)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
rounds(10)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(env_value: str | None) -> int:
    env = dict(os.environ)
    env.pop("KILN_MALLOC", None)
    if env_value is not None:
        env["KILN_MALLOC"] = env_value
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, check=True,
                         capture_output=True, text=True).stdout
    return int(out.split()[-1])


def test_freed_arrays_are_reused_without_page_faults():
    tuned, system = _faults(None), _faults("system")
    # 80 arrays of 4 MB are 80,000 pages: glibc's defaults fault most of them in again
    assert tuned < 2000, tuned
    assert system > 20000, system
