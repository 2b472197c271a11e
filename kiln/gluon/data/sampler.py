"""Samplers: the order in which a DataLoader visits a dataset, and how it forms batches."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as _np

from ...base import KilnError
from ...ops.random import generator

__all__ = ["Sampler", "SequentialSampler", "RandomSampler", "BatchSampler", "FilterSampler",
           "IntervalSampler"]

LAST_BATCH_MODES = ("keep", "discard", "rollover")


class Sampler:
    """Base class: iterating yields sample indices (or, for batch samplers, lists of them)."""

    def __iter__(self) -> Iterator:
        raise NotImplementedError(f"{type(self).__name__} must define __iter__")

    def __len__(self) -> int:
        raise NotImplementedError(f"{type(self).__name__} must define __len__")


class SequentialSampler(Sampler):
    """start, start + 1, ..., start + length - 1."""

    def __init__(self, length: int, start: int = 0):
        self._length = int(length)
        self._start = int(start)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self._start, self._start + self._length))

    def __len__(self) -> int:
        return self._length


class RandomSampler(Sampler):
    """A fresh random permutation of range(length) per epoch, drawn from kiln's generator
    (so `kiln.np.random.seed` makes the order repeat)."""

    def __init__(self, length: int):
        self._length = int(length)

    def __iter__(self) -> Iterator[int]:
        return iter(generator().permutation(self._length).tolist())

    def __len__(self) -> int:
        return self._length


class FilterSampler(Sampler):
    """The indices of the samples of `dataset` for which `fn(sample)` is true."""

    def __init__(self, fn, dataset):
        self._indices = [i for i, sample in enumerate(dataset) if fn(sample)]

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices)

    def __len__(self) -> int:
        return len(self._indices)


class IntervalSampler(Sampler):
    """0, k, 2k, ..., then 1, k+1, ... (with rollover=True) for length and interval k."""

    def __init__(self, length: int, interval: int, rollover: bool = True):
        if interval < 1 or interval > length:
            raise KilnError(f"IntervalSampler: interval {interval} must be in [1, {length}]")
        self._length, self._interval, self._rollover = length, interval, rollover

    def __iter__(self) -> Iterator[int]:
        starts = range(self._interval) if self._rollover else range(1)
        for start in starts:
            yield from range(start, self._length, self._interval)

    def __len__(self) -> int:
        if self._rollover:
            return self._length
        return len(range(0, self._length, self._interval))


class BatchSampler(Sampler):
    """Group the indices of `sampler` into lists of `batch_size`.

    last_batch: 'keep' yields the short last batch, 'discard' drops it, 'rollover' carries its
    samples into the next epoch's first batch.
    """

    def __init__(self, sampler: Sampler | Sequence[int], batch_size: int,
                 last_batch: str = "keep"):
        if not isinstance(batch_size, (int, _np.integer)) or batch_size < 1:
            raise KilnError(f"batch_size must be a positive integer, not {batch_size!r}")
        if last_batch not in LAST_BATCH_MODES:
            raise KilnError(f"last_batch must be one of 'keep', 'discard', or 'rollover', "
                            f"not {last_batch!r}")
        self._sampler = sampler
        self._batch_size = int(batch_size)
        self._last_batch = last_batch
        self._prev: list[int] = []

    def __iter__(self) -> Iterator[list[int]]:
        batch, self._prev = self._prev, []
        for i in self._sampler:
            batch.append(i)
            if len(batch) == self._batch_size:
                yield batch
                batch = []
        if batch:
            if self._last_batch == "keep":
                yield batch
            elif self._last_batch == "rollover":
                self._prev = batch

    def __len__(self) -> int:
        n = len(self._sampler)
        if self._last_batch == "keep":
            return (n + self._batch_size - 1) // self._batch_size
        if self._last_batch == "discard":
            return n // self._batch_size
        return (len(self._prev) + n) // self._batch_size
