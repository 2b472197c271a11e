"""Datasets: indexable collections of samples (MXNet Gluon's `gluon.data.Dataset`)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as _np

from ...base import KilnError, ShapeError
from ...ndarray import ndarray, wrap

__all__ = ["Dataset", "SimpleDataset", "ArrayDataset"]


class Dataset:
    """Base class: `dataset[i]` is one sample and `len(dataset)` their number.

    `transform(fn)` applies fn to every sample (fn(*sample) for tuple samples);
    `transform_first(fn)` applies fn to the first element only (the data, not the label).
    """

    def __getitem__(self, idx):
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__")

    def __len__(self) -> int:
        raise NotImplementedError(f"{type(self).__name__} must define __len__")

    def transform(self, fn: Callable, lazy: bool = True) -> Dataset:
        """A dataset of fn(sample); eager (computed now) with lazy=False."""
        trans = _LazyTransformDataset(self, fn)
        if lazy:
            return trans
        return SimpleDataset([trans[i] for i in range(len(trans))])

    def transform_first(self, fn: Callable, lazy: bool = True) -> Dataset:
        """A dataset whose samples have fn applied to their first element."""
        return self.transform(_TransformFirst(fn), lazy)

    def filter(self, fn: Callable) -> Dataset:
        """The samples for which fn(sample) is true."""
        from .sampler import FilterSampler

        return _SampledDataset(self, FilterSampler(fn, self))

    def shard(self, num_shards: int, index: int) -> Dataset:
        """The index-th of num_shards contiguous parts (sizes differ by at most one)."""
        if not 0 <= index < num_shards:
            raise KilnError(f"shard: index {index} must be in [0, {num_shards})")
        length = len(self)
        size, extra = divmod(length, num_shards)
        start = index * size + min(index, extra)
        end = start + size + (1 if index < extra else 0)
        return _SampledDataset(self, range(start, end))

    def take(self, count: int | None) -> Dataset:
        """The first `count` samples (all of them when count is None)."""
        if count is None or count >= len(self):
            return self
        return _SampledDataset(self, range(count))

    def sample(self, sampler) -> Dataset:
        """The samples at the indices `sampler` yields."""
        return _SampledDataset(self, sampler)


class SimpleDataset(Dataset):
    """A dataset over a list (or anything indexable with a length)."""

    def __init__(self, data):
        self._data = data

    def __len__(self) -> int:
        return len(self._data)

    def __getitem__(self, idx):
        return self._data[idx]


class _LazyTransformDataset(Dataset):
    def __init__(self, data: Dataset, fn: Callable):
        self._data = data
        self._fn = fn

    def __len__(self) -> int:
        return len(self._data)

    def __getitem__(self, idx):
        item = self._data[idx]
        if isinstance(item, tuple):
            return self._fn(*item)
        return self._fn(item)


class _TransformFirst:
    def __init__(self, fn: Callable):
        self._fn = fn

    def __call__(self, x, *args):
        if args:
            return (self._fn(x),) + args
        return self._fn(x)


class _SampledDataset(Dataset):
    def __init__(self, data: Dataset, indices):
        self._data = data
        self._indices = list(indices)

    def __len__(self) -> int:
        return len(self._indices)

    def __getitem__(self, idx):
        return self._data[self._indices[idx]]


class ArrayDataset(Dataset):
    """Samples taken position by position from several arrays of the same length.

    `ArrayDataset(X, y)[i]` is `(X[i], y[i])`; with one array it is `X[i]`. Arrays may be kiln
    arrays, NumPy arrays or lists (kept as they are).
    """

    def __init__(self, *args):
        if not args:
            raise KilnError("ArrayDataset needs at least one array")
        self._length = len(args[0])
        self._data = []
        for i, data in enumerate(args):
            if len(data) != self._length:
                raise ShapeError(
                    f"All arrays must have the same length; array[0] has length "
                    f"{self._length} while array[{i}] has length {len(data)}.")
            self._data.append(data)

    def __getitem__(self, idx):
        if len(self._data) == 1:
            return _item(self._data[0], idx)
        return tuple(_item(d, idx) for d in self._data)

    def __len__(self) -> int:
        return self._length

    def _gather(self, indices: list[int]):
        """The batch at `indices`, stacked by fancy indexing (the DataLoader's fast path);
        None when some array is not a kiln or NumPy array."""
        out = []
        for d in self._data:
            if isinstance(d, ndarray):
                out.append(wrap(d._data[indices]))
            elif isinstance(d, _np.ndarray):
                out.append(wrap(d[indices]))
            else:
                return None
        return out[0] if len(out) == 1 else out


def _item(data, idx):
    # Index the NumPy buffer directly: a per-sample operator call would dominate loading.
    if isinstance(data, ndarray):
        return wrap(data._data[idx])
    return data[idx]
