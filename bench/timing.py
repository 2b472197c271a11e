"""Timing that holds up on a shared, noisy machine: interleaved rounds, minimum and median.

A candidate is a zero-argument callable, or an object whose `batch(calls)` times one batch
elsewhere and returns seconds per call: a `Remote` runs in another process (a peer framework
in its own environment, serving through `serve`), so that its rounds interleave with kiln's in
time instead of running after them.
"""

from __future__ import annotations

import json
import statistics
import sys
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
#: thread pools spin up again. Peers served from their own processes (`Remote`) get the same.
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

    Returns {name: {"min": s, "median": s, "rounds": [s, ...]}} in seconds per call, the
    rounds in order (round r of every candidate ran within the same stretch of time).
    """
    for fn in candidates.values():
        if not hasattr(fn, "batch"):   # a remote candidate warmed up when it was built
            for _ in range(warmup):
                fn()
    names = list(candidates)
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            time.sleep(REST)
            fn = candidates[name]        # with `batch`: timed elsewhere (Remote, the floor)
            samples[name].append(fn.batch(calls) if hasattr(fn, "batch") else
                                 warm_batch(fn, calls))
    return {name: {"min": min(s), "median": statistics.median(s), "rounds": s}
            for name, s in samples.items()}


def warm_batch(fn: Callable[[], object], calls: int) -> float:
    """Untimed calls for WARM seconds, then seconds per call over `calls` calls."""
    until = time.perf_counter() + WARM
    fn()
    while time.perf_counter() < until:
        fn()
    return per_call(fn, calls)


class Remote:
    """A candidate served by another process (`serve`): `batch(calls)` asks it to time one
    batch after its own warm-up and returns its seconds per call."""

    def __init__(self, process, workload: str, mode: str):
        self.process, self.workload, self.mode = process, workload, mode

    def batch(self, calls: int) -> float:
        reply = request(self.process, {"time": self.workload, "mode": self.mode, "calls": calls})
        return float(reply["seconds"])


def request(process, message: dict) -> dict:
    """Send one JSON line to a serving process and read its JSON reply."""
    process.stdin.write(json.dumps(message) + "\n")
    process.stdin.flush()
    while True:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"the peer process ended while asked {message}")
        if line.startswith("{"):
            return json.loads(line)


def serve(builders: dict[str, Callable[[], dict]], info: dict) -> None:
    """The peer's side of `Remote`: one JSON request per stdin line, one JSON reply per line.

    {"build": W} builds workload W (and warms its candidates up), replying with its modes;
    {"time": W, "mode": M, "calls": n} times one batch. stdin closing ends the process.
    """
    print(json.dumps(info), flush=True)
    built: dict[str, dict] = {}
    for line in sys.stdin:
        message = json.loads(line)
        if "build" in message:
            name = message["build"]
            try:
                built[name] = builders[name]() if name in builders else {}
            except Exception as e:   # a peer that cannot run a workload leaves it out
                print(f"# {name}: {type(e).__name__}: {e}", file=sys.stderr)
                built[name] = {}
            for fn in built[name].values():
                for _ in range(message.get("warmup", 5)):
                    fn()
            print(json.dumps({"modes": list(built[name])}), flush=True)
        else:
            fn = built[message["time"]][message["mode"]]
            print(json.dumps({"seconds": warm_batch(fn, message["calls"])}), flush=True)
