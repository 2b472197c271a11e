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


def interleaved(candidates: dict[str, Callable[[], object]], calls: int, rounds: int = 7,
                warmup: int = 20) -> dict[str, dict]:
    """Time each candidate in turn, round after round, so drift hits all alike.

    Returns {name: {"min": s, "median": s}} in seconds per call.
    """
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, fn in candidates.items():
            samples[name].append(per_call(fn, calls))
    return {name: {"min": min(s), "median": statistics.median(s)} for name, s in samples.items()}
