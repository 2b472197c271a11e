"""The seed MLP hybridized (`net(x)`, x of shape (1, 512)) against the same MLP in NumPy.

    python tests/hybrid/bench_seed_mlp.py [KILN_ROOT] [ROUNDS]

Prints the best time per call of each (rounds interleaved, minima kept: the machine is noisy)
and their ratio; the hybridized call should stay within about 1.2x of NumPy. Pass another
checkout's root to compare before/after a change (run both alternately, several times).
"""

import sys
import time

if len(sys.argv) > 1:
    sys.path.insert(0, sys.argv[1])

import numpy as onp

from kiln import np
from kiln.gluon import nn


def main(rounds: int = 30, calls: int = 1000) -> None:
    net = nn.HybridSequential()
    net.add(nn.Dense(256, activation="relu"), nn.Dense(128, activation="relu"), nn.Dense(2))
    net.initialize()
    x = np.random.normal(size=(1, 512))
    net(x)
    net.hybridize()
    net(x)
    w0, b0, w1, b1, w2, b2 = (net.collect_params()[k].data().asnumpy() for k in (
        "0.weight", "0.bias", "1.weight", "1.bias", "2.weight", "2.bias"))

    def numpy_mlp(a):
        h = onp.maximum(a @ w0.T + b0, 0)
        h = onp.maximum(h @ w1.T + b1, 0)
        return h @ w2.T + b2

    xn = x.asnumpy()
    assert onp.allclose(numpy_mlp(xn), net(x).asnumpy(), atol=1e-5)
    best = {"kiln": float("inf"), "numpy": float("inf")}
    for _ in range(rounds):
        for name, fn, arg in (("kiln", net, x), ("numpy", numpy_mlp, xn)):
            start = time.perf_counter()
            for _ in range(calls):
                fn(arg)
            best[name] = min(best[name], (time.perf_counter() - start) / calls)
    print(f"kiln {best['kiln'] * 1e6:.2f} us  numpy {best['numpy'] * 1e6:.2f} us  "
          f"ratio {best['kiln'] / best['numpy']:.3f}")


if __name__ == "__main__":
    main(int(sys.argv[2]) if len(sys.argv) > 2 else 30)
