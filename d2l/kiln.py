"""The few Dive into Deep Learning helpers the book's kiln-tab code uses (`from d2l import kiln as
d2l`): `Timer`, `Benchmark`, `Accumulator`, `try_gpu`.

This file is a namespace-package portion: it works with or without the real `d2l` package
installed, and adds only the `d2l.kiln` module.
"""

from __future__ import annotations

from kiln.utils import Benchmark, Timer

import kiln

__all__ = ["Timer", "Benchmark", "Accumulator", "try_gpu", "cpu"]


class Accumulator:
    """Sums over `n` variables."""

    def __init__(self, n: int):
        self.data = [0.0] * n

    def add(self, *args) -> None:
        self.data = [a + float(b) for a, b in zip(self.data, args)]

    def reset(self) -> None:
        self.data = [0.0] * len(self.data)

    def __getitem__(self, idx: int) -> float:
        return self.data[idx]


def try_gpu(i: int = 0):
    """kiln computes on the CPU."""
    return kiln.cpu()


cpu = kiln.cpu
