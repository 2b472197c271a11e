"""`python -m bench` (or `kiln bench`): every workload x kiln mode x installed peer, side by side.

    python -m bench                       # all workloads kiln can run now
    python -m bench W1 W2 --no-peers      # some workloads, kiln only
    python -m bench --out bench-results   # also write results.json and a bar chart

Peers run in their own environments (`../shared/peers/setup.sh` builds them under
$KILN_PEERS, default /tmp/kiln-peers) as subprocesses that serve timing requests, so each
workload's rounds interleave kiln's modes and the peers' in time and a shared, noisy machine's
drift hits all alike (the C floor of W1 too, one run of its program per round). Times are per
call; the table quotes the median of the interleaved rounds, the ratio to the fastest peer, and
"by round": the median of each round's own ratio to that peer.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from timing import Remote, interleaved, request  # noqa: E402

PEERS_DIR = os.environ.get("KILN_PEERS", "/tmp/kiln-peers")
FLOOR_SOURCE = os.path.join(os.path.dirname(os.path.dirname(HERE)), "shared", "peers",
                            "seed_mlp_floor.c")


def start_peers() -> list:
    """The peer environments' serving processes (torch_peer.py, mxnet_peer.py) that exist."""
    procs = []
    for env, script in (("tp", "torch_peer.py"), ("mx", "mxnet_peer.py")):
        python = os.path.join(PEERS_DIR, env, "bin", "python")
        if not os.path.exists(python):
            print(f"  (peer env {env} not found under {PEERS_DIR}: "
                  "../shared/peers/setup.sh builds it)")
            continue
        proc = subprocess.Popen([python, os.path.join(HERE, "peers", script)], text=True,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        if not proc.stdout.readline().startswith("{"):
            print(f"  peer {script} failed to start (exit {proc.wait()})")
            continue
        procs.append(proc)
    return procs


def peer_candidates(procs: list, name: str, warmup: int) -> dict:
    """{mode: Remote} for what each peer runs of workload `name`."""
    candidates = {}
    for proc in procs:
        try:
            modes = request(proc, {"build": name, "warmup": warmup})["modes"]
        except (OSError, RuntimeError) as e:
            print(f"  a peer failed on {name}: {e}")
            continue
        candidates.update({mode: Remote(proc, name, mode) for mode in modes})
    return candidates


class Floor:
    """The seed MLP as a plain C loop (the hardware floor), a W1 candidate timed in its own
    program: one run (five repetitions of 100000 calls) per round, its median repetition."""

    mode = "C floor (seed_mlp_floor.c)"

    def __init__(self, exe: str):
        self.exe = exe

    def batch(self, calls: int) -> float:
        out = subprocess.run([self.exe], capture_output=True, text=True, check=True).stdout
        times = sorted(float(line.split(":")[1].split("us")[0]) * 1e-6
                       for line in out.splitlines() if line.startswith("C floor"))
        return times[len(times) // 2]

    @classmethod
    def build(cls) -> Floor | None:
        """The floor compiled, when a C compiler and the peers' source are there."""
        cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
        if cc is None or not os.path.exists(FLOOR_SOURCE):
            return None
        exe = os.path.join(tempfile.mkdtemp(prefix="kiln-floor-"), "floor")
        subprocess.run([cc, "-O3", "-march=native", "-o", exe, FLOOR_SOURCE], check=True)
        return cls(exe)


def run_all(names: list[str], scale: float, procs: list, rounds: int | None = None,
            floor: Floor | None = None) -> list[dict]:
    """Each workload's kiln modes and peers' modes, timed in interleaved rounds."""
    import workloads

    rows = []
    for name in names:
        builder = workloads.BUILDERS.get(name)
        if builder is None:
            continue
        try:
            candidates = builder()
        except Exception as e:
            print(f"  {name}: kiln cannot run this workload: {type(e).__name__}: {e}")
            continue
        calls = max(1, int(workloads.CALLS[name] * scale))
        warmup = min(20, calls)
        candidates.update(peer_candidates(procs, name, warmup))
        if name == "W1" and floor is not None:
            candidates[floor.mode] = floor
        n_rounds = rounds or (7 if calls > 10 else 5)
        for mode, r in interleaved(candidates, calls, rounds=n_rounds, warmup=warmup).items():
            rows.append({"workload": name, "mode": mode, **r})
        print(f"  {name}: {len(candidates)} modes timed", flush=True)
    for mode, seconds in workloads.compile_latency().items():
        rows.append({"workload": "compile", "mode": mode, "min": seconds, "median": seconds})
    return rows


def _fmt(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:9.1f} us"
    if seconds < 1:
        return f"{seconds * 1e3:9.2f} ms"
    return f"{seconds:9.2f} s "


def report(rows: list[dict]) -> str:
    import workloads

    lines = []
    by_workload: dict[str, list[dict]] = {}
    for r in rows:
        by_workload.setdefault(r["workload"], []).append(r)
    for name, group in by_workload.items():
        title = workloads.WORKLOADS.get(name, "compile latency (hybridize -> first result)")
        lines.append(f"\n{name}: {title}")
        peers = [r for r in group if not r["mode"].startswith("kiln")]
        fastest = min(peers, key=lambda r: r["median"], default=None)
        for r in sorted(group, key=lambda r: r["median"]):
            ratio = ""
            if fastest is not None:
                ratio = f"   {r['median'] / fastest['median']:5.2f}x fastest peer"
                paired = _paired(r, fastest)
                if paired is not None and r is not fastest:
                    ratio += f" (by round {paired:.2f}x)"
            lines.append(f"  {r['mode']:44s}{_fmt(r['median'])}  (min {_fmt(r['min']).strip()})"
                         f"{ratio}")
    return "\n".join(lines)


def _paired(row: dict, peer: dict) -> float | None:
    """The median over rounds of row's time / peer's time in the same round: rounds are
    interleaved, so a stretch of load that slows both cancels out of each ratio."""
    a, b = row.get("rounds"), peer.get("rounds")
    if not a or not b or len(a) != len(b):
        return None
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def write_chart(rows: list[dict], path: str) -> str | None:
    """A bar chart of kiln's time / fastest peer's per workload (PNG with matplotlib, else SVG)."""
    bars = []
    for name in sorted({r["workload"] for r in rows}):
        group = [r for r in rows if r["workload"] == name]
        peers = [r["median"] for r in group if not r["mode"].startswith("kiln")]
        if not peers:
            continue
        best = min(peers)
        bars += [(f"{name} {r['mode'][5:]}", r["median"] / best) for r in group
                 if r["mode"].startswith("kiln")]
    if not bars:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return _write_svg(bars, path + ".svg")
    fig, ax = plt.subplots(figsize=(9, 0.35 * len(bars) + 1))
    ax.barh([b[0] for b in bars], [b[1] for b in bars],
            color=["#2ca02c" if b[1] <= 1 else "#d62728" for b in bars])
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_xlabel("kiln time / fastest peer (lower is better)")
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path + ".png", dpi=120)
    return path + ".png"


def _write_svg(bars, path: str) -> str:
    width, row, left = 760, 22, 330
    scale = (width - left - 40) / max(max(b[1] for b in bars), 1.5)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" '
             f'height="{row * len(bars) + 40}" font-family="Helvetica" font-size="11">']
    for i, (label, ratio) in enumerate(bars):
        y = 10 + i * row
        color = "#2ca02c" if ratio <= 1 else "#d62728"
        parts.append(f'<text x="{left - 6}" y="{y + 14}" text-anchor="end">{label}</text>')
        parts.append(f'<rect x="{left}" y="{y + 3}" width="{ratio * scale:.1f}" height="14" '
                     f'fill="{color}"/>')
        parts.append(f'<text x="{left + ratio * scale + 4:.1f}" y="{y + 14}">{ratio:.2f}x'
                     "</text>")
    x1 = left + scale
    parts.append(f'<line x1="{x1:.1f}" y1="5" x2="{x1:.1f}" y2="{row * len(bars) + 15}" '
                 'stroke="black"/>')
    parts.append("</svg>")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(parts))
    return path


def main(argv=None) -> int:
    import workloads

    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("workloads", nargs="*", default=list(workloads.WORKLOADS))
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply calls per round")
    parser.add_argument("--rounds", type=int, help="interleaved rounds per workload (default 7; "
                        "5 where a round is under 11 calls)")
    parser.add_argument("--out", help="folder for results.json and the chart")
    args = parser.parse_args(argv)
    names = args.workloads
    print(f"kiln benchmarks: {', '.join(names)}")
    procs = [] if args.no_peers else start_peers()
    floor = Floor.build() if not args.no_peers and "W1" in names else None
    try:
        rows = run_all(names, args.scale, procs, args.rounds, floor)
    finally:
        for proc in procs:
            proc.stdin.close()
            proc.wait()
    print(report(rows))
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "results.json"), "w") as f:
            json.dump(rows, f, indent=1)
        chart = write_chart(rows, os.path.join(args.out, "ratios"))
        if chart:
            print(f"\nchart: {chart}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
