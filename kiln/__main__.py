"""`kiln` command line: `kiln bench [...]` runs the benchmark suite of a source checkout,
`kiln tour` the seed tour."""

from __future__ import annotations

import os
import runpy
import sys


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: kiln bench [workloads...] [--no-peers] [--out DIR]\n       kiln tour")
        return 0
    command, rest = argv[0], argv[1:]
    if command == "tour":
        from .tour import main as tour

        tour()
        return 0
    if command == "bench":
        bench = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench")
        if not os.path.isdir(bench):
            print("kiln bench runs the benchmarks of a source checkout (the bench/ folder beside "
                  "the kiln package); this installation has none.", file=sys.stderr)
            return 2
        sys.argv = ["bench", *rest]
        sys.path.insert(0, os.path.dirname(bench))
        runpy.run_module("bench", run_name="__main__")
        return 0
    print(f"kiln: unknown command {command!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
