"""`DataLoader`: batches of a Dataset, in order or shuffled, loaded by worker threads if asked
(MXNet Gluon's `gluon.data.DataLoader`)."""

from __future__ import annotations

import collections
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable, Iterator

import numpy as _np

from ...base import KilnError
from ...ndarray import ndarray, wrap
from .dataset import ArrayDataset, Dataset
from .sampler import LAST_BATCH_MODES, BatchSampler, RandomSampler, Sampler, SequentialSampler

__all__ = ["DataLoader", "default_batchify_fn"]


def default_batchify_fn(data: list):
    """Stack samples into a batch: arrays along a new first axis; tuple samples element by
    element, giving a list (data batch, label batch, ...)."""
    first = data[0]
    if isinstance(first, tuple):
        return [default_batchify_fn(list(part)) for part in zip(*data, strict=True)]
    if isinstance(first, ndarray):
        return wrap(_np.stack([d._data if isinstance(d, ndarray) else _np.asarray(d)
                               for d in data]))
    arr = _np.asarray(data)
    if arr.dtype == object:
        raise KilnError(f"default_batchify_fn cannot stack samples of type "
                        f"{type(first).__name__} (ragged shapes?); pass a batchify_fn")
    return wrap(arr)


class DataLoader:
    """Iterate over a dataset in mini-batches.

    dataset      any Dataset (or indexable with a length)
    batch_size   samples per batch (unless batch_sampler is given)
    shuffle      visit samples in a new random order each epoch (kiln.np.random.seed repeats it)
    sampler      the order of sample indices (instead of shuffle)
    last_batch   'keep' (default), 'discard' or 'rollover' the incomplete last batch
    batch_sampler  yields lists of indices (replaces batch_size/shuffle/sampler/last_batch)
    batchify_fn  list of samples -> batch (default: stack them)
    num_workers  threads that load batches ahead of use (0: load in the caller's thread);
                 batches come out in the same order either way
    prefetch     batches loaded ahead with workers (default 2 * num_workers)

    MXNet's pin_memory, thread_pool, timeout and try_nopython are accepted; kiln's workers are
    always threads (NumPy releases the GIL in its kernels).
    """

    def __init__(self, dataset: Dataset, batch_size: int | None = None, shuffle: bool = False,
                 sampler: Sampler | None = None, last_batch: str | None = None,
                 batch_sampler: Sampler | None = None, batchify_fn: Callable | None = None,
                 num_workers: int = 0, pin_memory: bool = False, pin_device_id: int = 0,
                 prefetch: int | None = None, thread_pool: bool = False, timeout: int = 120,
                 try_nopython=None):
        self._dataset = dataset
        if batch_sampler is None:
            if batch_size is None:
                raise KilnError("DataLoader: batch_size must be specified unless "
                                "batch_sampler is specified")
            if sampler is None:
                sampler = RandomSampler(len(dataset)) if shuffle else \
                    SequentialSampler(len(dataset))
            elif shuffle:
                raise KilnError("DataLoader: shuffle must not be specified if sampler is "
                                "specified (the sampler decides the order)")
            if last_batch is not None and last_batch not in LAST_BATCH_MODES:
                raise KilnError(f"DataLoader: last_batch must be one of 'keep', 'discard', or "
                                f"'rollover', not {last_batch!r}")
            batch_sampler = BatchSampler(sampler, batch_size, last_batch or "keep")
        elif batch_size is not None or shuffle or sampler is not None or \
                last_batch is not None:
            raise KilnError("DataLoader: batch_size, shuffle, sampler and last_batch must not "
                            "be specified if batch_sampler is specified.")
        if num_workers < 0:
            raise KilnError(f"DataLoader: num_workers must be >= 0, not {num_workers}")
        self._batch_sampler = batch_sampler
        self._num_workers = int(num_workers)
        self._prefetch = max(1, int(prefetch) if prefetch is not None else 2 * num_workers)
        self._timeout = timeout
        self._batchify_fn = batchify_fn
        # Batches of an ArrayDataset over arrays are gathered in one fancy-indexing operation.
        self._fast = batchify_fn is None and type(dataset) is ArrayDataset

    def _load(self, indices: list[int]):
        if self._fast:
            batch = self._dataset._gather(indices)
            if batch is not None:
                return batch
        batchify = self._batchify_fn or default_batchify_fn
        return batchify([self._dataset[i] for i in indices])

    def __iter__(self) -> Iterator:
        if self._num_workers == 0:
            for indices in self._batch_sampler:
                yield self._load(indices)
            return
        pool = ThreadPoolExecutor(max_workers=self._num_workers,
                                  thread_name_prefix="kiln-dataloader")
        pending: collections.deque = collections.deque()
        try:
            for indices in self._batch_sampler:
                pending.append(pool.submit(self._load, indices))
                if len(pending) > self._prefetch:
                    yield pending.popleft().result(timeout=self._timeout)
            while pending:
                yield pending.popleft().result(timeout=self._timeout)
        finally:
            for f in pending:
                f.cancel()
            pool.shutdown(wait=True)

    def __len__(self) -> int:
        return len(self._batch_sampler)
