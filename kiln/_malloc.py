"""Large arrays' memory kept by the process between training steps, instead of being returned
to the operating system after every step and faulted back in page by page.

glibc's malloc serves an allocation above its mmap threshold (128 KiB at first, then raised
to the largest block freed) from fresh zeroed pages, and returns free memory at the top of
its heap to the system once more than the trim threshold (twice the mmap threshold) lies
there. An eager training step allocates and frees its activations and gradients every step;
with LeNet at batch 256 (4.8 MB activations) the heap was trimmed and regrown every step:
1,300-2,800 page faults, 20-24 ms a step against 15-16 ms without them. kiln therefore sets
fixed thresholds when it is imported: arrays up to 32 MiB come from the heap, and up to 128
MiB of free memory stays with the process (glibc's `mallopt`; PyTorch's CPU guides reach the
same end by loading jemalloc). `KILN_MALLOC=system` keeps glibc's own settings; on other C
libraries nothing changes.
"""

from __future__ import annotations

import ctypes
import os

__all__ = ["tune_malloc", "MMAP_THRESHOLD", "TRIM_THRESHOLD"]

MMAP_THRESHOLD = 32 << 20     # glibc's largest allowed value on 64-bit systems
TRIM_THRESHOLD = 128 << 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3     # mallopt parameters (malloc.h)


def _glibc() -> bool:
    try:
        return os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")
    except (AttributeError, ValueError, OSError):   # not a glibc system
        return False


def tune_malloc() -> bool:
    """Set the thresholds above (once per process); whether they were set."""
    if os.environ.get("KILN_MALLOC", "").strip().lower() == "system" or not _glibc():
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # the mmap threshold first: setting either ends glibc's dynamic adjustment of both
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and \
        bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
