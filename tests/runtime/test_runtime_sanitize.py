"""The loader under AddressSanitizer + UndefinedBehaviorSanitizer (-fno-sanitize-recover): a
corpus of mutated model files (corpus.py: truncations at many offsets, bit flips, random byte
edits, edited header fields, mutated JSON) through runtime/fuzz/fuzz_load.c's standalone
driver, which loads each case from memory and, when that succeeds, runs it. Every case must
end in an error code or a result: no sanitizer report, no crash, no hang (a timeout). The
control-flow files (MXNet's _foreach, _while_loop, _cond, nested, and its fused RNN) have a
corpus of their own, with mutations inside their subgraphs."""

import subprocess
from pathlib import Path

import numpy as onp

import corpus
import crt

DATA = Path(__file__).resolve().parents[1] / "io" / "data" / "mxnet"
MODELS = ["mlp_np", "lenet_legacy", "resnet_np", "misc_legacy", "misc_np"]


def _run_driver(build, paths, tmp_path):
    """The standalone fuzz driver over every case: (cases loaded, cases run)."""
    listing = tmp_path / "cases.txt"
    listing.write_text("\n".join(paths))
    proc = subprocess.run([str(build / "fuzz-driver"), "--list", str(listing)],
                          capture_output=True, text=True, timeout=240)
    last = [ln for ln in proc.stderr.splitlines() if ln.startswith("case ")][-1:]
    report = [ln for ln in proc.stderr.splitlines() if not ln.startswith("case ")]
    assert proc.returncode == 0 and not report, (last, "\n".join(report[-40:]))
    summary = proc.stdout.strip().splitlines()[-1]
    assert summary.startswith(f"ran {len(paths)} cases"), summary
    loaded, ran = (int(w) for w in summary.replace(",", " ").split()[3::2])
    return loaded, ran


def test_mutated_files_under_sanitizers(tmp_path):
    build = crt.build("asan", "build/asan")
    paths = []
    for name in MODELS:
        js = (DATA / f"{name}-symbol.json").read_bytes()
        params = (DATA / f"{name}-0000.params").read_bytes()
        shape = onp.load(DATA / f"{name}_x.npy").shape
        for i, (_, data) in enumerate(corpus.cases(js, params, shape, seed=len(paths),
                                                   n_random=25)):
            path = tmp_path / f"{name}-{i}"
            path.write_bytes(data)
            paths.append(str(path))
    loaded, ran = _run_driver(build, paths, tmp_path)
    # the corpus must reach the runner too, not only the parsers
    assert len(paths) > 5000 and loaded > 500 and ran > 400, (loaded, ran)


def test_mutated_control_flow_files_under_sanitizers(tmp_path):
    """The same for control flow and the fused RNN: JSON mutations of the top graph, of the
    subgraphs list and inside every body (the params reader is covered above)."""
    build = crt.build("asan", "build/asan")
    paths = []
    for name, js, params, shape in corpus.control_flow_models():
        for i, (_, data) in enumerate(corpus.cases(js, params, shape, seed=len(paths),
                                                   n_random=20, mutate_params=False,
                                                   per_body=150)):
            path = tmp_path / f"{name}-{i}"
            path.write_bytes(data)
            paths.append(str(path))
    loaded, ran = _run_driver(build, paths, tmp_path)
    assert len(paths) > 3000 and loaded > 500 and ran > 300, (loaded, ran)


def test_npy_reader_under_sanitizers(tmp_path):
    """kiln-run's .npy reader on truncated and edited headers: an error, never a crash."""
    build = crt.build("asan", "build/asan")
    name = "mlp_np"
    args = [str(build / "kiln-run"), str(DATA / f"{name}-symbol.json"),
            str(DATA / f"{name}-0000.params")]
    good = (DATA / f"{name}_x.npy").read_bytes()
    header_end = good.index(b"\n") + 1
    variants = [good[:cut] for cut in range(0, header_end + 8)]
    variants += [good.replace(b"'descr': '<f4'", b"'descr': '>f4'"),
                 good.replace(b"'descr': '<f4'", b"'descr': '<c8'"),
                 good.replace(b"False", b"True "),
                 good.replace(b"(3, 10)", b"(3, 99)"),
                 good.replace(b"(3, 10)", b"(99999999999999999999, 1)"),
                 good[:6] + b"\x07" + good[7:], good[:8] + b"\xff\xff" + good[10:]]
    for i, data in enumerate(variants):
        path = tmp_path / f"x{i}.npy"
        path.write_bytes(data)
        proc = subprocess.run([*args, str(path)], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 1 and "kiln-run:" in proc.stderr, (i, proc.stderr[-2000:])
