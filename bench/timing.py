"""Timing that holds up on a shared, noisy machine: interleaved rounds, minimum and median."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def per_call(fn: Callable[[], object], calls: int) -> float:
    """Seconds per call of `fn` over `calls` back-to-back calls."""
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


#: Seconds of rest before each timed batch. A candidate that used NumPy's threaded BLAS leaves
#: its threads spinning for a while after its last product; without the rest they take a core
#: from whichever candidate comes next (measured: ResNet-18 on the native backend, 45 ms right
#: after the numpy backend's modes, 28 ms after another native mode). Untimed calls follow
#: the rest for WARM seconds, so that no candidate is timed while the core wakes up and its
#: thread pools spin up again (the peers, each in a process of its own, run without rests).
REST = 0.1
WARM = 0.03


def med(f: Callable[[], object], n: int, reps: int = 7, warm: int | None = None) -> float:
    """Median seconds per call over `reps` runs of `n` back-to-back calls, after `warm` calls
    (default n / 10): the measure of bench/native_bench.py and its peer script."""
    for _ in range(warm if warm is not None else max(1, n // 10)):
        f()
    return statistics.median(per_call(f, n) for _ in range(reps))


def interleaved(candidates: dict[str, Callable[[], object]], calls: int, rounds: int = 7,
                warmup: int = 20) -> dict[str, dict]:
    """Time each candidate in turn, round after round, so drift hits all alike; the order
    rotates from round to round and each batch starts after a short rest (REST), so no
    candidate always follows the same one.

    Returns {name: {"min": s, "median": s}} in seconds per call.
    """
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    names = list(candidates)
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            time.sleep(REST)
            fn = candidates[name]
            until = time.perf_counter() + WARM
            fn()
            while time.perf_counter() < until:
                fn()
            samples[name].append(per_call(fn, calls))
    return {name: {"min": min(s), "median": statistics.median(s)} for name, s in samples.items()}
