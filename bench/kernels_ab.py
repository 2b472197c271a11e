"""Two versions of the kernel library side by side: this checkout's and a git revision's.

A kernel change is judged on the machine it runs on, which here is shared and changes speed
from minute to minute: two builds timed in separate runs can differ by more than the change.
This builds both libraries, loads them into one process and times each operation round by
round, one library after the other (`timing.interleaved`), so both see the same stretch of
time; it prints the median per round of new / old and whether the two outputs are identical.

    PYTHONPATH=. python bench/kernels_ab.py HEAD~3                  # every case, both threads
    PYTHONPATH=. python bench/kernels_ab.py 6a0f915 --only stem,pool --threads 1 --rounds 31

Cases: ResNet-18's convolutions at batch 1 (stem, s2_64 ... c512; the direct, Winograd and
1x1 paths) and its max pooling (`pool`). Each call goes through ctypes (a few microseconds),
so kernels much faster than that are better compared in C. Neither library has a BLAS
installed; nothing here would use it.
"""

from __future__ import annotations

import argparse
import ctypes
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(ROOT / "bench"))

from kiln.backend.native.toolchain import find_toolchain, wait_all  # noqa: E402
from timing import interleaved  # noqa: E402

P = ctypes.c_void_p
FIELDS_CONV = ("n", "c", "h", "w", "f", "kh", "kw", "sh", "sw", "ph", "pw", "dh", "dw", "groups",
               "oh", "ow")
FIELDS_POOL = ("n", "c", "h", "w", "kh", "kw", "sh", "sw", "ph", "pw", "oh", "ow")


class Conv2d(ctypes.Structure):
    _fields_ = [(name, ctypes.c_long) for name in FIELDS_CONV]


class Pool2d(ctypes.Structure):
    _fields_ = [(name, ctypes.c_long) for name in FIELDS_POOL] + \
               [("type", ctypes.c_int), ("count_include_pad", ctypes.c_int)]


#: (channels, size, filters, kernel, stride, padding) of ResNet-18's convolutions at batch 1
CONVS = {"stem": (3, 224, 64, 7, 2, 3), "c64": (64, 56, 64, 3, 1, 1),
         "s2_64": (64, 56, 128, 3, 2, 1), "1x1_64": (64, 56, 128, 1, 2, 0),
         "c128": (128, 28, 128, 3, 1, 1), "s2_128": (128, 28, 256, 3, 2, 1),
         "1x1_128": (128, 28, 256, 1, 2, 0), "c256": (256, 14, 256, 3, 1, 1),
         "s2_256": (256, 14, 512, 3, 2, 1), "1x1_256": (256, 14, 512, 1, 2, 0),
         "c512": (512, 7, 512, 3, 1, 1)}
CASES = [*CONVS, "pool"]


def build(src: Path, out: Path) -> ctypes.CDLL:
    """The kernel library from the sources in `src`, linked with -Bsymbolic so that each
    library's calls stay inside it, loaded without exporting its symbols."""
    tc = find_toolchain()
    out.mkdir(parents=True, exist_ok=True)
    procs = [tc.compile_object(str(f), str(out / (f.stem + ".o")), [str(src)])
             for f in sorted(src.glob("*.c"))]
    wait_all(procs)
    lib = out / "lib.so"
    tc.link_shared(sorted(str(p) for p in out.glob("*.o")), str(lib),
                   ("-pthread", "-Wl,-Bsymbolic"))
    k = ctypes.CDLL(str(lib), mode=ctypes.RTLD_LOCAL)
    k.kiln_conv2d_f32.argtypes = [P] * 7 + [ctypes.c_int]
    k.kiln_conv2d_init.argtypes = [P]
    k.kiln_pool2d_f32.argtypes = [P, P, P]
    k.kiln_set_num_threads.argtypes = [ctypes.c_int]
    return k


def sources_at(rev: str, into: Path) -> Path:
    """runtime/kernels as it was at git revision `rev`."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "runtime/kernels"],
                             check=True, capture_output=True).stdout
    into.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "runtime" / "kernels"


def ptr(a: np.ndarray) -> int:
    return a.ctypes.data


def case_call(name: str, rng: np.random.Generator):
    """(make(lib) -> (run, output)) for one case: run() computes into output."""
    if name in CONVS:
        c, size, f, k, s, pad = CONVS[name]
        x = rng.standard_normal((1, c, size, size)).astype(np.float32)
        w = (rng.standard_normal((f, c, k, k)) / np.sqrt(c * k * k)).astype(np.float32)
        b = rng.standard_normal(f).astype(np.float32)

        def make(lib):
            p = Conv2d(1, c, size, size, f, k, k, s, s, pad, pad, 1, 1, 1, 0, 0)
            lib.kiln_conv2d_init(ctypes.byref(p))
            y = np.empty((1, f, p.oh, p.ow), np.float32)
            return (lambda: lib.kiln_conv2d_f32(ctypes.byref(p), ptr(x), ptr(w), None, ptr(b),
                                                None, ptr(y), 1)), y
        return make
    x = rng.standard_normal((1, 64, 112, 112)).astype(np.float32)

    def make(lib):
        p = Pool2d(1, 64, 112, 112, 3, 3, 2, 2, 1, 1, 56, 56, 0, 1)
        y = np.empty((1, 64, 56, 56), np.float32)
        return (lambda: lib.kiln_pool2d_f32(ctypes.byref(p), ptr(x), ptr(y))), y
    return make


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("rev", help="the git revision to compare this checkout against")
    parser.add_argument("--only", default=",".join(CASES), help="comma-separated cases")
    parser.add_argument("--threads", type=int, default=0, help="0: the default")
    parser.add_argument("--rounds", type=int, default=21)
    args = parser.parse_args()
    unknown = [name for name in args.only.split(",") if name not in CASES]
    if unknown:
        parser.error(f"unknown cases {unknown}; the cases are {', '.join(CASES)}")
    with tempfile.TemporaryDirectory(prefix="kiln-ab-") as tmp:
        tmp = Path(tmp)
        old = build(sources_at(args.rev, tmp / "src"), tmp / "old")
        new = build(ROOT / "runtime" / "kernels", tmp / "new")
        for lib in (old, new):
            lib.kiln_set_num_threads(args.threads)
        rng = np.random.default_rng(0)
        print(f"new (this checkout) against old ({args.rev}), {args.rounds} rounds")
        for name in args.only.split(","):
            make = case_call(name, rng)
            runs = {"old": make(old), "new": make(new)}
            for run, _ in runs.values():
                run()
            # calls per batch: about 20 ms of work
            start = time.perf_counter()
            runs["old"][0]()
            calls = max(1, int(0.02 / max(time.perf_counter() - start, 1e-7)))
            timed = interleaved({key: run for key, (run, _) in runs.items()}, calls,
                                rounds=args.rounds, warmup=1)
            ratio = statistics.median(n / o for n, o in zip(timed["new"]["rounds"],
                                                            timed["old"]["rounds"]))
            same = np.array_equal(runs["old"][1], runs["new"][1])
            print(f"  {name:8s} old {timed['old']['median'] * 1e6:8.1f} us  "
                  f"new {timed['new']['median'] * 1e6:8.1f} us  "
                  f"new/old by round {ratio:.3f}  {'identical' if same else 'outputs differ'}")


if __name__ == "__main__":
    main()
