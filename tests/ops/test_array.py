"""The array object: conversions to Python and NumPy, properties, repr, copies, devices, and
np.save/np.load."""

from __future__ import annotations

import copy as pycopy
import pickle

import numpy as onp
import pytest
from np_compare import assert_matches

import kiln
from kiln import np
from kiln.base import FormatError, KilnError, ShapeError


def test_asnumpy_is_a_copy():
    x = np.array([1.0, 2.0])
    a = x.asnumpy()
    assert isinstance(a, onp.ndarray) and a.dtype == onp.float32
    a[0] = 9
    assert x[0].item() == 1.0


def test_item_tolist_and_python_conversions():
    x = np.array([[1.5, 2.0], [3.0, 4.0]])
    assert x.item(1) == 2.0 and isinstance(x.item(1), float)
    assert x[1, 0].item() == 3.0
    assert x.tolist() == [[1.5, 2.0], [3.0, 4.0]]
    assert np.array(7, dtype="int32").item() == 7
    assert float(np.array(2.5)) == 2.5
    assert int(np.array(3.7)) == 3
    assert complex(np.array(1.0)) == 1 + 0j
    assert bool(np.array(1.0)) and not bool(np.array(0.0))
    with pytest.raises(ValueError):
        bool(np.array([1.0, 2.0]))
    assert [10, 20, 30][np.array(1, dtype="int64")] == 20  # __index__
    with pytest.raises(TypeError):
        [1, 2][np.array(1.0)]
    assert np.array([5.0]).asscalar() == 5.0
    with pytest.raises(ShapeError):
        np.array([1.0, 2.0]).asscalar()
    assert f"{np.array(3.14159):.2f}" == "3.14"


def test_properties():
    x = np.ones((2, 3, 4))
    assert x.shape == (2, 3, 4)
    assert x.dtype == onp.float32
    assert x.size == 24
    assert x.ndim == 3
    assert x.T.shape == (4, 3, 2)
    assert x.itemsize == 4 and x.nbytes == 96
    assert len(x.strides) == 3
    assert x.device == kiln.cpu() and x.ctx == kiln.cpu(0) and x.context == kiln.cpu()
    assert np.shape(x) == (2, 3, 4) and np.size(x) == 24 and np.ndim(x) == 3


def test_numpy_conversion_with_array_protocol():
    x = np.array([1.0, 2.0])
    a = onp.array(x)
    assert isinstance(a, onp.ndarray) and a.dtype == onp.float32
    assert onp.asarray(x, dtype="float64").dtype == onp.float64
    assert onp.array(x, copy=True) is not x._data
    assert onp.sum(onp.asarray(x)) == 3.0


def test_numpy_ufuncs_on_kiln_arrays_defer_to_kiln():
    x = np.array([1.0, 2.0])
    out = onp.float32(2) * x
    assert isinstance(out, np.ndarray) and out.dtype == onp.float32
    assert isinstance(onp.ones(2) + x, np.ndarray)
    with pytest.raises(TypeError):
        onp.exp(x)  # NumPy's functions refuse kiln arrays: use np.exp


def test_kiln_array_of_kiln_array_and_asarray():
    x = np.array([1.0, 2.0])
    y = np.array(x)
    assert y is not x and y._data is not x._data
    assert np.array(x, dtype="float64").dtype == onp.float64
    assert np.asarray(x) is x
    assert np.asarray(x, dtype="float64").dtype == onp.float64
    z = np.array(x, copy=False)
    assert z._data is x._data


def test_repr_looks_like_mxnet_numpy_mode():
    assert repr(np.array([1, 2])) == "array([1., 2.])"
    assert repr(np.array([[1.0, 2.0], [3.0, 4.0]])) == "array([[1., 2.],\n       [3., 4.]])"
    assert repr(np.array([1, 2], dtype="int64")) == "array([1, 2], dtype=int64)"
    assert repr(np.array([1, 2], dtype="float64")) == "array([1., 2.], dtype=float64)"
    assert repr(np.array([1, 2], dtype="int32")) == "array([1, 2], dtype=int32)"
    assert repr(np.array([True, False])) == "array([ True, False])"
    assert repr(np.array(2.0)) == "array(2.)"
    assert repr(np.zeros((0,))) == "array([])"
    long = repr(np.arange(100).reshape(4, 25))
    assert "dtype" not in long
    assert str(np.array([1.0, 2.0])) == "[1. 2.]"


def test_astype_and_copy_methods():
    x = np.array([1.7, -2.2])
    assert_matches(x.astype("int32"), onp.array([1.7, -2.2], "float32").astype("int32"))
    assert x.astype(onp.float64).dtype == onp.float64
    c = x.copy()
    c[0] = 0
    assert x[0].item() == pytest.approx(1.7)
    for other in (pycopy.copy(x), pycopy.deepcopy(x)):
        assert other._data is not x._data
        assert_matches(other, x.asnumpy())


def test_pickle_round_trip():
    x = np.array([[1.0, 2.0]])
    y = pickle.loads(pickle.dumps(x))
    assert_matches(y, x.asnumpy())


def test_device_methods_keep_mxnet_code_running():
    x = np.array([1.0, 2.0])
    assert x.as_in_context(kiln.cpu()) is x
    assert x.as_in_ctx(kiln.cpu()) is x and x.to_device(kiln.cpu()) is x
    y = x.copyto(kiln.cpu())
    assert y is not x
    assert_matches(y, x.asnumpy())
    z = np.zeros(2)
    assert x.copyto(z) is z
    assert_matches(z, x.asnumpy())
    x.wait_to_read()
    assert x.as_np_ndarray() is x and x.as_nd_ndarray() is x
    with pytest.raises(KilnError, match="CPU"):
        kiln.Device("gpu", 0)


def test_arrays_are_unhashable_and_compare_elementwise():
    x = np.array([1.0, 2.0])
    with pytest.raises(TypeError):
        hash(x)
    assert (x == x).dtype == onp.bool_
    none = None  # `x == None` is a plain False: Python code compares arrays with None
    assert (x == none) is False
    assert (x != none) is True


@pytest.mark.parametrize("dtype", ["float32", "float64", "int32", "uint8", "bool"])
def test_save_and_load_npy(tmp_path, dtype):
    x = np.array(onp.arange(6).reshape(2, 3).astype(dtype))
    path = tmp_path / "x.npy"
    np.save(path, x)
    y = np.load(path)
    assert isinstance(y, np.ndarray)
    assert_matches(y, x.asnumpy())
    np.save(tmp_path / "n.npy", onp.ones(2))  # NumPy arrays work too
    assert_matches(np.load(tmp_path / "n.npy"), onp.ones(2))


def test_savez_and_load_npz(tmp_path):
    a, b = np.array([1.0, 2.0]), np.array([[1, 2]], dtype="int64")
    np.savez(tmp_path / "ab.npz", a, weights=b)
    out = np.load(tmp_path / "ab.npz")
    assert set(out) == {"arr_0", "weights"}
    assert_matches(out["arr_0"], a.asnumpy())
    assert_matches(out["weights"], b.asnumpy())


def test_load_never_unpickles(tmp_path):
    path = tmp_path / "obj.npy"
    onp.save(path, onp.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(FormatError, match="obj.npy"):
        np.load(path)
    with pytest.raises(FormatError):
        np.load(tmp_path / "missing.npy")
    with pytest.raises(ValueError):
        np.save(tmp_path / "o.npy", onp.array([None], dtype=object))


def test_python_float_and_int_scalars_in_arithmetic_keep_kiln_type():
    x = np.array([1.0, 2.0])
    for out in (x + 1, 1 + x, x * 2.0, 2.0 ** x, 3 < x, x / 2, 1 / x, -x, abs(x)):
        assert isinstance(out, np.ndarray)
        assert out.dtype in (onp.float32, onp.bool_)


def test_eager_only_numpy_functions():
    x = np.array([3.0, 1.0, 2.0, 1.0])
    assert_matches(np.sort(x), onp.sort(x.asnumpy()))
    assert_matches(np.argsort(x), onp.argsort(x.asnumpy()))
    vals, counts = np.unique(x, return_counts=True)
    assert_matches(vals, onp.array([1.0, 2.0, 3.0], "float32"))
    assert_matches(counts, onp.array([2, 1, 1]))
    assert_matches(np.searchsorted(np.array([1.0, 2.0, 3.0]), x),
                   onp.searchsorted(onp.array([1.0, 2.0, 3.0], "float32"), x.asnumpy()))
    assert_matches(np.bincount(np.array([0, 1, 1], dtype="int64"),
                               weights=np.array([0.5, 1.0, 2.0])),
                   onp.bincount([0, 1, 1], weights=onp.array([0.5, 1.0, 2.0], "float32")))
    assert np.count_nonzero(x).item() == 4
    assert_matches(np.median(x), onp.median(x.asnumpy()))
    assert_matches(np.percentile(x, 50), onp.percentile(x.asnumpy(), 50))
    assert_matches(np.argwhere(x > 1.5), onp.argwhere(x.asnumpy() > 1.5))
    assert np.isscalar(1.0) and not np.isscalar(x)
    assert np.may_share_memory(x, x) and not np.shares_memory(x, x.copy())


def test_more_numpy_methods():
    x = onp.array([[3.0, 0.0, 2.0], [1.0, 5.0, 0.0], [4.0, 1.0, 2.0]], "float32")
    k = np.array(x)
    assert_matches(k.cumsum(), x.cumsum())
    assert_matches(k.cumsum(axis=1), x.cumsum(axis=1))
    assert_matches(k.diagonal(), x.diagonal())
    assert_matches(k.diagonal(1), x.diagonal(1))
    assert_matches(k.trace(), x.trace())
    for g, w in zip(k.nonzero(), x.nonzero()):
        assert_matches(g, w)
    assert_matches(k.prod(axis=0), x.prod(axis=0))
    assert_matches(k.clip(1.0, 3.0), x.clip(1.0, 3.0))
    assert_matches(k.round(), x.round())
    assert_matches(k.swapaxes(0, 1), x.swapaxes(0, 1))
    assert_matches(k.squeeze(), x.squeeze())
