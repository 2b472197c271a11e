"""Datasets, samplers, DataLoader, transforms and the digits loader."""

import threading

import numpy as onp
import pytest

from kiln import KilnError, np
from kiln.gluon import data as gdata
from kiln.gluon.data.vision import transforms
from kiln.ndarray import ndarray
from kiln.test_utils import assert_almost_equal

X = onp.arange(40, dtype=onp.float32).reshape(10, 4)
Y = onp.arange(10, dtype=onp.int32)


def _epoch(loader):
    return [[b.asnumpy() for b in batch] for batch in loader]


# ---- datasets -------------------------------------------------------------------------------

def test_array_dataset_items():
    ds = gdata.ArrayDataset(X, Y)
    assert len(ds) == 10
    x, y = ds[3]
    assert_almost_equal(x, X[3])
    assert int(y) == 3
    single = gdata.ArrayDataset(np.array(X))
    assert isinstance(single[2], ndarray) and single[2].shape == (4,)
    lists = gdata.ArrayDataset([1, 2, 3], ["a", "b", "c"])
    assert lists[1] == (2, "b")


def test_array_dataset_length_mismatch_names_both_lengths():
    with pytest.raises(KilnError, match=r"array\[0\] has length 10 while array\[1\] has "
                                        r"length 7"):
        gdata.ArrayDataset(X, Y[:7])


def test_simple_dataset_and_transforms():
    ds = gdata.SimpleDataset([(1, 10), (2, 20), (3, 30)])
    assert ds.transform(lambda a, b: a + b)[1] == 22
    assert ds.transform_first(lambda a: a * 100)[2] == (300, 30)
    eager = ds.transform_first(lambda a: -a, lazy=False)
    assert isinstance(eager, gdata.SimpleDataset) and eager[0] == (-1, 10)
    single = gdata.SimpleDataset([1, 2, 3])
    assert single.transform_first(lambda a: a * 2)[2] == 6


def test_dataset_filter_shard_take_sample():
    ds = gdata.SimpleDataset(list(range(10)))
    kept = ds.filter(lambda v: v % 3 == 0)
    assert len(kept) == 4 and [kept[i] for i in range(4)] == [0, 3, 6, 9]
    shards = [ds.shard(3, i) for i in range(3)]
    assert [len(s) for s in shards] == [4, 3, 3]
    assert [shards[1][i] for i in range(3)] == [4, 5, 6]
    assert len(ds.take(4)) == 4 and ds.take(None) is ds
    assert [ds.sample([9, 0])[i] for i in range(2)] == [9, 0]


# ---- samplers -------------------------------------------------------------------------------

def test_batch_sampler_modes():
    seq = gdata.SequentialSampler(7)
    keep = gdata.BatchSampler(seq, 3, "keep")
    assert list(keep) == [[0, 1, 2], [3, 4, 5], [6]] and len(keep) == 3
    discard = gdata.BatchSampler(seq, 3, "discard")
    assert list(discard) == [[0, 1, 2], [3, 4, 5]] and len(discard) == 2
    roll = gdata.BatchSampler(seq, 3, "rollover")
    assert list(roll) == [[0, 1, 2], [3, 4, 5]]
    assert roll._prev == [6] and len(roll) == 2     # (1 left over + 7) // 3
    assert list(roll) == [[6, 0, 1], [2, 3, 4]]       # the leftover starts the next epoch
    with pytest.raises(KilnError, match="'keep', 'discard', or 'rollover'"):
        gdata.BatchSampler(seq, 3, "drop")


def test_interval_and_random_samplers():
    assert list(gdata.IntervalSampler(7, 3)) == [0, 3, 6, 1, 4, 2, 5]
    assert list(gdata.IntervalSampler(7, 3, rollover=False)) == [0, 3, 6]
    np.random.seed(3)
    a = list(gdata.RandomSampler(20))
    np.random.seed(3)
    b = list(gdata.RandomSampler(20))
    assert a == b and sorted(a) == list(range(20)) and a != list(range(20))


# ---- DataLoader -----------------------------------------------------------------------------

def test_dataloader_batches_in_order():
    loader = gdata.DataLoader(gdata.ArrayDataset(X, Y), batch_size=4)
    batches = _epoch(loader)
    assert len(loader) == 3 and len(batches) == 3
    assert_almost_equal(batches[0][0], X[:4])
    assert_almost_equal(batches[2][1], Y[8:])
    assert batches[0][1].dtype == onp.int32


@pytest.mark.parametrize("mode,sizes", [("keep", [4, 4, 2]), ("discard", [4, 4]),
                                        ("rollover", [4, 4])])
def test_dataloader_last_batch(mode, sizes):
    loader = gdata.DataLoader(gdata.ArrayDataset(X, Y), batch_size=4, last_batch=mode)
    assert len(loader) == len(sizes)
    assert [len(b[1]) for b in _epoch(loader)] == sizes
    if mode == "rollover":
        assert len(loader) == 3                 # (2 left over + 10) // 4
        second = _epoch(loader)
        assert_almost_equal(second[0][1], onp.array([8, 9, 0, 1], onp.int32))
        assert len(second) == 3


def test_dataloader_shuffle_is_reproducible_with_seed():
    ds = gdata.ArrayDataset(X, Y)
    np.random.seed(42)
    first = _epoch(gdata.DataLoader(ds, batch_size=3, shuffle=True))
    np.random.seed(42)
    again = _epoch(gdata.DataLoader(ds, batch_size=3, shuffle=True))
    for a, b in zip(first, again):
        assert_almost_equal(a[1], b[1])
    order = onp.concatenate([b[1] for b in first])
    assert sorted(order.tolist()) == list(range(10)) and order.tolist() != list(range(10))
    for xb, yb in first:                                  # data and labels stay paired
        assert_almost_equal(xb, X[yb])
    np.random.seed(43)
    other = onp.concatenate([b[1] for b in _epoch(gdata.DataLoader(ds, 3, shuffle=True))])
    assert other.tolist() != order.tolist()


def test_dataloader_workers_give_the_same_batches():
    calls = set()

    def slow_double(x):
        calls.add(threading.get_ident())
        return x * 2

    ds = gdata.ArrayDataset(X, Y).transform_first(slow_double)
    np.random.seed(7)
    plain = _epoch(gdata.DataLoader(ds, batch_size=3, shuffle=True))
    np.random.seed(7)
    threaded = _epoch(gdata.DataLoader(ds, batch_size=3, shuffle=True, num_workers=3))
    assert len(plain) == len(threaded) == 4
    for a, b in zip(plain, threaded):
        assert_almost_equal(a[0], b[0])
        assert_almost_equal(a[1], b[1])
    assert len(calls) > 1                                 # other threads did load batches


def test_dataloader_worker_errors_propagate():
    def broken(x):
        raise ValueError("bad sample")

    loader = gdata.DataLoader(gdata.SimpleDataset(list(range(6))).transform(broken),
                              batch_size=2, num_workers=2)
    with pytest.raises(ValueError, match="bad sample"):
        list(loader)


def test_dataloader_batchify_and_samplers():
    ds = gdata.SimpleDataset([(onp.full(2, i, onp.float32), i) for i in range(5)])
    batches = list(gdata.DataLoader(ds, batch_size=2))      # default batchify on tuples
    assert isinstance(batches[0], list) and batches[0][0].shape == (2, 2)
    assert batches[0][1].tolist() == [0, 1]
    loader = gdata.DataLoader(ds, batch_size=2, batchify_fn=lambda s: len(s))
    assert list(loader) == [2, 2, 1]
    sampler = gdata.BatchSampler(gdata.SequentialSampler(5, start=0), 5)
    full = list(gdata.DataLoader(ds, batch_sampler=sampler))
    assert full[0][1].tolist() == [0, 1, 2, 3, 4]
    custom = list(gdata.DataLoader(ds, batch_size=2, sampler=[4, 3, 2, 1, 0]))
    assert custom[0][1].tolist() == [4, 3]


def test_dataloader_argument_errors():
    ds = gdata.ArrayDataset(X, Y)
    with pytest.raises(KilnError, match="batch_size must be specified"):
        gdata.DataLoader(ds)
    with pytest.raises(KilnError, match="shuffle must not be specified"):
        gdata.DataLoader(ds, 2, shuffle=True, sampler=gdata.SequentialSampler(10))
    with pytest.raises(KilnError, match="must not be specified if batch_sampler"):
        gdata.DataLoader(ds, 2, batch_sampler=gdata.BatchSampler(range(10), 2))
    with pytest.raises(KilnError, match="last_batch must be one of"):
        gdata.DataLoader(ds, 2, last_batch="drop")


# ---- transforms ------------------------------------------------------------------------------

def test_to_tensor_normalize_compose_cast():
    img = onp.random.default_rng(0).integers(0, 256, (5, 6, 3)).astype(onp.uint8)
    t = transforms.ToTensor()(img)
    assert t.shape == (3, 5, 6) and t.dtype == onp.float32
    assert_almost_equal(t, img.transpose(2, 0, 1) / 255.0, rtol=1e-6)
    batch = transforms.ToTensor()(onp.stack([img, img]))
    assert batch.shape == (2, 3, 5, 6)
    mean, std = [0.1, 0.2, 0.3], [0.5, 1.0, 2.0]
    n = transforms.Normalize(mean, std)(t)
    want = (img.transpose(2, 0, 1) / 255.0 - onp.array(mean)[:, None, None]) / \
        onp.array(std)[:, None, None]
    assert_almost_equal(n, want, rtol=1e-5, atol=1e-6)
    composed = transforms.Compose([transforms.ToTensor(), transforms.Normalize(0.5, 0.25)])
    assert_almost_equal(composed(img), (img.transpose(2, 0, 1) / 255.0 - 0.5) / 0.25,
                        rtol=1e-5, atol=1e-5)
    assert transforms.Cast("float16")(t).dtype == onp.float16
    assert transforms.ToTensor()(onp.zeros((8, 8))).shape == (1, 8, 8)
    with pytest.raises(KilnError, match="3 mean values for 1 channels"):
        transforms.Normalize(mean, 1.0)(onp.zeros((1, 2, 2), onp.float32))


def test_transform_first_with_dataloader():
    imgs = onp.random.default_rng(1).integers(0, 256, (6, 4, 4, 1)).astype(onp.uint8)
    ds = gdata.ArrayDataset(imgs, onp.arange(6)).transform_first(transforms.ToTensor())
    x, y = next(iter(gdata.DataLoader(ds, batch_size=6)))
    assert x.shape == (6, 1, 4, 4)
    assert_almost_equal(x, imgs.transpose(0, 3, 1, 2) / 255.0, rtol=1e-6)


# ---- digits --------------------------------------------------------------------------------

def test_load_digits():
    pytest.importorskip("sklearn")
    train, test = gdata.load_digits(test_fraction=0.25, seed=1)
    assert len(train) + len(test) == 1797
    assert abs(len(test) - 1797 * 0.25) < 10
    x, y = train[0]
    assert x.shape == (64,) and x.dtype == onp.float32 and 0 <= x.min() and x.max() <= 1
    labels = onp.array([int(test[i][1]) for i in range(len(test))])
    assert set(labels.tolist()) == set(range(10))         # stratified: every class held out
    again, _ = gdata.load_digits(test_fraction=0.25, seed=1)
    assert_almost_equal(again[5][0], train[5][0])
    images, _ = gdata.load_digits(flatten=False)
    assert images[0][0].shape == (1, 8, 8)


def test_load_digits_without_sklearn(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_sklearn(name, *args, **kwargs):
        if name.startswith("sklearn"):
            raise ImportError("No module named 'sklearn'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_sklearn)
    with pytest.raises(KilnError, match="pip install scikit-learn"):
        gdata.load_digits()
