"""Import time of a ResNet-18-sized params file (~45 MB of float32) against numpy.fromfile.

    python bench/io_import.py [--repeat 7]

The file (ResNet-18's 62 arrays with their real shapes, random values, MXNet's `arg:`/`aux:`
names) is generated in a temporary folder and removed afterwards. Each reader runs `repeat`
times; the best time counts (the file is in the page cache after the first read).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as onp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from kiln.io.params import load_params, save_params


def resnet18_shapes() -> dict:
    shapes = {"conv0_weight": (64, 3, 7, 7)}
    bn = lambda p, c: {f"{p}_{k}": (c,) for k in ("gamma", "beta", "running_mean",  # noqa: E731
                                                   "running_var")}
    shapes.update(bn("bn0", 64))
    cin = 64
    for stage, cout in enumerate((64, 128, 256, 512)):
        for block in range(2):
            p = f"stage{stage + 1}_{block}"
            c_in = cin if block == 0 else cout
            shapes[f"{p}_conv0_weight"] = (cout, c_in, 3, 3)
            shapes.update(bn(f"{p}_bn0", cout))
            shapes[f"{p}_conv1_weight"] = (cout, cout, 3, 3)
            shapes.update(bn(f"{p}_bn1", cout))
            if block == 0 and stage > 0:
                shapes[f"{p}_conv2_weight"] = (cout, c_in, 1, 1)
                shapes.update(bn(f"{p}_bn2", cout))
        cin = cout
    shapes["dense0_weight"] = (1000, 512)
    shapes["dense0_bias"] = (1000,)
    return shapes


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    rng = onp.random.default_rng(0)
    arrays = {}
    for name, shape in resnet18_shapes().items():
        prefix = "aux:" if "running" in name else "arg:"
        arrays[prefix + name] = rng.standard_normal(shape, dtype=onp.float32)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "resnet18-0000.params")
        save_params(path, arrays)
        size = os.path.getsize(path)
        loaded = load_params(path)
        assert all(onp.array_equal(loaded[k].asnumpy(), v) for k, v in arrays.items())
        t_kiln = best(lambda: load_params(path), args.repeat)
        t_numpy = best(lambda: onp.fromfile(path, dtype=onp.uint8), args.repeat)
    print(f"params file: {size / 1e6:.1f} MB, {len(arrays)} arrays")
    print(f"kiln load_params:  {t_kiln * 1e3:7.2f} ms")
    print(f"numpy.fromfile:    {t_numpy * 1e3:7.2f} ms")
    print(f"ratio: {t_kiln / t_numpy:.2f}x (target <= 1.5x)")


if __name__ == "__main__":
    main()
