"""kiln.utils (also gluon.utils): Timer, Benchmark, split_and_load, clip_global_norm."""

import re
import time

import numpy as onp
import pytest

from kiln import KilnError, gluon, np, utils
from kiln.base import ShapeError
from kiln.test_utils import assert_almost_equal


def test_timer():
    timer = utils.Timer()
    time.sleep(0.01)
    first = timer.stop()
    timer.start()
    time.sleep(0.02)
    second = timer.stop()
    assert first >= 0.009 and second >= 0.019
    assert timer.sum() == pytest.approx(first + second)
    assert timer.avg() == pytest.approx((first + second) / 2)
    assert timer.cumsum() == pytest.approx([first, first + second])
    with pytest.raises(KilnError, match="no time recorded"):
        utils.Timer().avg()


def test_benchmark_prints_description_and_seconds(capsys):
    with utils.Benchmark("matmul x10") as bench:
        time.sleep(0.005)
    out = capsys.readouterr().out
    assert re.fullmatch(r"matmul x10: \d+\.\d{4} sec\n", out)
    assert float(out.split(": ")[1].split()[0]) == pytest.approx(bench.elapsed, abs=1e-4)


def test_gluon_utils_alias():
    assert gluon.utils is utils


def test_split_and_load():
    x = np.array(onp.arange(24, dtype=onp.float32).reshape(6, 4))
    parts = utils.split_and_load(x, [None, None, None])
    assert [p.shape for p in parts] == [(2, 4)] * 3
    assert_almost_equal(parts[2], x.asnumpy()[4:])
    assert utils.split_and_load(x, ctx_list=[None])[0].shape == (6, 4)
    uneven = utils.split_data(x, 4, even_split=False)
    assert [p.shape[0] for p in uneven] == [2, 2, 1, 1]
    by_col = utils.split_data(x, 2, batch_axis=1)
    assert_almost_equal(by_col[1], x.asnumpy()[:, 2:])
    with pytest.raises(ShapeError, match="cannot be evenly split into 4 slices"):
        utils.split_data(x, 4)


def test_clip_global_norm():
    rng = onp.random.default_rng(0)
    a, b = rng.standard_normal((3, 4)), rng.standard_normal(5)
    arrays = [np.array(a.astype(onp.float32)), np.array(b.astype(onp.float32))]
    bufs = [x._data for x in arrays]
    norm = onp.sqrt((a ** 2).sum() + (b ** 2).sum())
    total = utils.clip_global_norm(arrays, 1.0)
    assert total == pytest.approx(norm, rel=1e-5)
    assert_almost_equal(arrays[0], a / norm, rtol=1e-5, atol=1e-6)
    assert_almost_equal(arrays[1], b / norm, rtol=1e-5, atol=1e-6)
    assert arrays[0]._data is bufs[0]                      # in place
    unchanged = [np.array(a.astype(onp.float32))]
    utils.clip_global_norm(unchanged, 100.0)               # below the limit: untouched
    assert_almost_equal(unchanged[0], a, rtol=1e-6)
    with pytest.warns(UserWarning, match="nan or inf"):
        utils.clip_global_norm([np.array([onp.inf, 1.0])], 1.0)
