"""A kiln revision against this checkout on whole workloads: two processes, interleaved.

`bench/kernels_ab.py` times two builds of one operation, called again and again in one
process. That misleads where an operation's cost depends on what runs around it: a layer
called alone keeps its weights in cache, while inside ResNet-18 every call's weights come from
memory. (Winograd on ResNet-18's 7x7 layers measured 1.2x faster alone, and made the whole
network 1.02x slower.) Judge such a change here.

This checks out REV into a temporary git worktree. The workloads' kiln modes (bench/workloads.py)
are then served from that tree and from this checkout, in two processes. Each process imports
its own tree's kiln and compiles that tree's kernels. Their batches are timed round by round
(`timing.interleaved`, with its rest before each batch), and the report gives each side's
median and the median of new / old by round.

    PYTHONPATH=. python bench/revs_ab.py HEAD~1 W4
    PYTHONPATH=. python bench/revs_ab.py 6a0f915 W2 W4 --mode "kiln hybridize (native)" --rounds 21
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
NATIVE = "kiln hybridize (native)"


def _fmt(seconds: float) -> str:
    return f"{seconds * 1e3:8.2f} ms" if seconds >= 1e-3 else f"{seconds * 1e6:8.1f} us"


def serve(tree: str) -> None:
    """The serving side: the workloads with `tree`'s kiln (ahead of any other on the path)."""
    sys.path[:0] = [tree, HERE]
    import kiln
    import workloads
    from timing import serve as serve_requests

    if os.path.dirname(os.path.dirname(os.path.abspath(kiln.__file__))) != os.path.abspath(tree):
        raise SystemExit(f"kiln came from {kiln.__file__}, not from {tree}")
    serve_requests(workloads.BUILDERS, {"tree": tree})


def start(tree: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve", tree],
                            text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    if not proc.stdout.readline().startswith("{"):
        raise SystemExit(f"the server for {tree} failed to start (exit {proc.wait()})")
    return proc


def compare(rev: str, names: list[str], mode: str, rounds: int) -> list[str]:
    sys.path.insert(0, HERE)
    import workloads
    from timing import Remote, interleaved, request

    lines = [f"new (this checkout) against old ({rev}), {mode}, {rounds} rounds"]
    with tempfile.TemporaryDirectory(prefix="kiln-rev-") as tmp:
        tree = os.path.join(tmp, "tree")
        subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", "-q", tree, rev],
                       check=True)
        procs = {}
        try:
            procs = {"old": start(tree), "new": start(ROOT)}
            for name in names:
                calls = workloads.CALLS[name]
                candidates = {}
                for side, proc in procs.items():
                    modes = request(proc, {"build": name, "warmup": min(20, calls)})["modes"]
                    if mode not in modes:
                        raise SystemExit(f"{side} has no mode {mode!r} for {name}: {modes}")
                    candidates[side] = Remote(proc, name, mode)
                got = interleaved(candidates, calls, rounds=rounds)
                old, new = got["old"]["rounds"], got["new"]["rounds"]
                by_round = statistics.median(n / o for n, o in zip(new, old))
                lines.append(f"  {name:4s} old {_fmt(statistics.median(old))}  "
                             f"new {_fmt(statistics.median(new))}  "
                             f"new/old by round {by_round:.3f}")
                print(lines[-1], flush=True)
        finally:
            for proc in procs.values():
                proc.stdin.close()
                proc.wait()
            subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", tree],
                           check=False)
    return lines


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--serve"]:      # the serving process (see start)
        serve(argv[1])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("rev", help="the git revision to compare against (old)")
    ap.add_argument("workloads", nargs="*", default=["W4"], help="default: W4")
    ap.add_argument("--mode", default=NATIVE, help=f"the kiln mode to time (default: {NATIVE})")
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args(argv)
    compare(args.rev, args.workloads, args.mode, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
