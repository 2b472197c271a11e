"""Shape operators and the composed NumPy functions: forward against NumPy, gradients, errors."""

from __future__ import annotations

import numpy as onp
import pytest
from np_compare import assert_matches, rand

from kiln import autograd, np
from kiln.base import KilnError, ShapeError
from kiln.test_utils import check_gradient

X = rand(2, 3, 4, dtype="float32")


def _k(a):
    return np.array(a)


@pytest.mark.parametrize("newshape", [(6, 4), (-1,), (4, -1, 2), 24, (2, 3, 4), (1, 24, 1)])
def test_reshape(newshape):
    assert_matches(np.reshape(_k(X), newshape), onp.reshape(X, newshape))
    check_gradient(lambda a: np.reshape(a, newshape), [rand(2, 3, 4)])


def test_reshape_method_forms():
    assert_matches(_k(X).reshape(6, 4), X.reshape(6, 4))
    assert_matches(_k(X).reshape((6, 4)), X.reshape(6, 4))
    assert_matches(_k(X).reshape([-1, 2]), X.reshape(-1, 2))
    assert_matches(_k(X).flatten(), X.flatten())
    assert_matches(_k(X).ravel(), X.ravel())
    assert_matches(np.ravel(_k(X)), X.ravel())


def test_reshape_errors():
    with pytest.raises(ShapeError, match=r"reshape.*\(2, 3, 4\).*\(5, 5\)"):
        np.reshape(np.ones((2, 3, 4)), (5, 5))
    with pytest.raises(ShapeError, match="only one dimension can be -1"):
        np.ones((2, 3)).reshape(-1, -1)
    with pytest.raises(ShapeError, match="cannot reshape"):
        np.ones((2, 3)).reshape(4, -1)
    with pytest.raises(KilnError, match="order"):
        np.reshape(np.ones(4), (2, 2), order="F")


@pytest.mark.parametrize("axes", [None, (2, 0, 1), (-1, 0, 1), (0, -1, -2), (1, 0, 2)])
def test_transpose(axes):
    assert_matches(np.transpose(_k(X), axes), onp.transpose(X, axes))
    check_gradient(lambda a: np.transpose(a, axes), [rand(2, 3, 4)])


def test_transpose_method_forms_and_errors():
    assert_matches(_k(X).transpose(), X.transpose())
    assert_matches(_k(X).transpose(1, 2, 0), X.transpose(1, 2, 0))
    assert_matches(_k(X).transpose((2, 1, 0)), X.transpose((2, 1, 0)))
    assert_matches(_k(X).T, X.T)
    with pytest.raises(ShapeError, match="permutation"):
        np.transpose(_k(X), (0, 0, 1))
    with pytest.raises(ShapeError, match="out of bounds"):
        np.transpose(_k(X), (0, 1, 3))


def test_swapaxes_moveaxis():
    assert_matches(np.swapaxes(_k(X), 0, -1), onp.swapaxes(X, 0, -1))
    assert_matches(_k(X).swapaxes(1, 2), X.swapaxes(1, 2))
    for src, dst in [(0, -1), (-1, 0), ((0, 1), (-1, -2)), (1, 1)]:
        assert_matches(np.moveaxis(_k(X), src, dst), onp.moveaxis(X, src, dst))
    check_gradient(lambda a: np.moveaxis(a, 0, -1), [rand(2, 3, 4)])


@pytest.mark.parametrize("axis", [0, 1, -1, 3, -4])
def test_expand_dims(axis):
    assert_matches(np.expand_dims(_k(X), axis), onp.expand_dims(X, axis))
    assert_matches(_k(X).expand_dims(axis), onp.expand_dims(X, axis))
    check_gradient(lambda a: np.expand_dims(a, axis), [rand(2, 3, 4)])


@pytest.mark.parametrize("axis", [None, 0, -1, (0, 2), 2])
def test_squeeze(axis):
    x = rand(1, 3, 1, dtype="float32")
    assert_matches(np.squeeze(_k(x), axis), onp.squeeze(x, axis))
    assert_matches(_k(x).squeeze(axis), onp.squeeze(x, axis))
    check_gradient(lambda a: np.squeeze(a, axis), [rand(1, 3, 1)])


def test_squeeze_of_a_non_unit_axis_fails_clearly():
    with pytest.raises(ShapeError, match="squeeze"):
        np.squeeze(np.ones((1, 3)), axis=1)


@pytest.mark.parametrize("axis", [0, 1, -1, None])
def test_concatenate(axis):
    a, b = rand(2, 3, dtype="float32"), rand(2, 3, dtype="float32", seed=1)
    assert_matches(np.concatenate([_k(a), _k(b)], axis=axis),
                   onp.concatenate([a, b], axis=axis))
    check_gradient(lambda p, q: np.concatenate([p, q, p], axis=axis), [rand(2, 3), rand(2, 3)])


def test_concatenate_uneven_and_mixed_dtypes():
    a = rand(2, 3, dtype="float32")
    b = rand(2, 1, dtype="float64", seed=1)
    c = onp.arange(4, dtype="int32").reshape(2, 2)
    assert_matches(np.concatenate([_k(a), _k(b), _k(c)], axis=1),
                   onp.concatenate([a, b, c], axis=1))
    assert_matches(np.concat((_k(a), b), axis=-1), onp.concatenate((a, b), axis=-1))
    # the gradient of the float32 operand comes back float32, not promoted
    x = _k(a)
    x.attach_grad()
    with autograd.record():
        y = np.concatenate([x, _k(b)], axis=1).sum()
    y.backward()
    assert x.grad.dtype == onp.float32
    check_gradient(lambda p, q: np.concatenate([p, q], axis=1), [rand(2, 3), rand(2, 1)])


def test_concatenate_errors():
    with pytest.raises(ShapeError, match="concatenate"):
        np.concatenate([np.ones((2, 3)), np.ones((3, 3))], axis=1)
    with pytest.raises(ShapeError):
        np.concatenate([])


@pytest.mark.parametrize("axis", [0, 1, 2, -1, -3])
def test_stack(axis):
    a, b = rand(2, 3, dtype="float32"), rand(2, 3, dtype="float32", seed=1)
    assert_matches(np.stack([_k(a), _k(b)], axis=axis), onp.stack([a, b], axis=axis))
    check_gradient(lambda p, q: np.stack([p, q], axis=axis), [rand(2, 3), rand(2, 3, seed=1)])
    with pytest.raises(ShapeError, match="stack"):
        np.stack([np.ones((2, 3)), np.ones((3, 2))])


@pytest.mark.parametrize("spec", [3, [2, 5], [3, -2], [3, 12], [5, 3], [0], [], [-20, 4]])
@pytest.mark.parametrize("axis", [0, -1])
def test_split(spec, axis):
    x = rand(9, 9, dtype="float32")
    got = np.split(_k(x), spec, axis=axis)
    want = onp.split(x, spec, axis=axis)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert_matches(g, w)
    # every piece, weighted differently, so a mix-up between pieces shows
    check_gradient(lambda a: np.concatenate(
        [np.ravel(p) * (i + 1) for i, p in enumerate(np.split(a, spec, axis=axis))]),
        [rand(9, 9)])


def test_split_overlapping_pieces_gradient():
    # np.split(x, [5, 3]) gives x[:5], x[5:3] (empty) and x[3:]: the pieces overlap.
    check_gradient(lambda a: np.stack([np.sum(p * (i + 1))
                                       for i, p in enumerate(np.split(a, [5, 3]))]),
                   [rand(8)])


def test_split_errors_and_array_split():
    with pytest.raises(ShapeError, match="array_split"):
        np.split(np.ones(10), 3)
    x = rand(10, 3, dtype="float32")
    for n in (3, 4, [2, 7]):
        got = np.array_split(_k(x), n)
        want = onp.array_split(x, n)
        assert [g.shape for g in got] == [w.shape for w in want]
        for g, w in zip(got, want):
            assert_matches(g, w)
    parts = _k(x).split(2)
    assert [p.shape for p in parts] == [(5, 3), (5, 3)]


@pytest.mark.parametrize("fn", ["hsplit", "vsplit", "dsplit"])
def test_hsplit_vsplit_dsplit(fn):
    x = rand(4, 4, 4, dtype="float32")
    got = getattr(np, fn)(_k(x), 2)
    for g, w in zip(got, getattr(onp, fn)(x, 2)):
        assert_matches(g, w)
    v = rand(6, dtype="float32")
    if fn == "hsplit":
        for g, w in zip(np.hsplit(_k(v), [2, 3]), onp.hsplit(v, [2, 3])):
            assert_matches(g, w)
    else:
        with pytest.raises(ShapeError, match=fn):
            getattr(np, fn)(_k(v), 2)


@pytest.mark.parametrize("src,shape", [((3, 1), (3, 4)), ((1, 4), (2, 1, 4)), ((3, 1), (2, 3, 4)),
                                       ((4,), (5, 2, 3, 4)), ((), (2,))])
def test_broadcast_to(src, shape):
    x = rand(*src, dtype="float32")
    assert_matches(np.broadcast_to(_k(x), shape), onp.broadcast_to(x, shape))
    assert_matches(_k(x).broadcast_to(shape), onp.broadcast_to(x, shape))
    check_gradient(lambda a: np.broadcast_to(a, shape), [x.astype("float64")])


def test_broadcast_to_errors_and_broadcast_arrays():
    with pytest.raises(ShapeError, match=r"broadcast_to.*\(3, 2\)"):
        np.broadcast_to(np.ones((3, 2)), (3, 3))
    a, b = rand(3, 1, dtype="float32"), rand(4, dtype="float32")
    for g, w in zip(np.broadcast_arrays(_k(a), _k(b)), onp.broadcast_arrays(a, b)):
        assert_matches(g, w)


@pytest.mark.parametrize("axis", [None, 0, -1, (0, 2)])
def test_flip(axis):
    assert_matches(np.flip(_k(X), axis), onp.flip(X, axis))
    assert_matches(_k(X).flip(axis), onp.flip(X, axis))
    check_gradient(lambda a: np.flip(a, axis) * a, [rand(2, 3, 4)])


def test_fliplr_flipud_rot90():
    m = rand(3, 4, 2, dtype="float32")
    assert_matches(np.fliplr(_k(m)), onp.fliplr(m))
    assert_matches(np.flipud(_k(m)), onp.flipud(m))
    for k in (-1, 0, 1, 2, 3, 5):
        assert_matches(np.rot90(_k(m), k), onp.rot90(m, k))
        assert_matches(np.rot90(_k(m), k, axes=(2, 0)), onp.rot90(m, k, axes=(2, 0)))
    check_gradient(lambda a: np.rot90(a) * np.rot90(a, 3, axes=(1, 0)), [rand(3, 3)])
    with pytest.raises(ShapeError):
        np.fliplr(np.ones(3))


@pytest.mark.parametrize("shift,axis", [(2, None), (-1, None), (1, 0), (-2, -1), ((1, 2), (0, 2)),
                                        (1, (0, 1)), (7, 1)])
def test_roll(shift, axis):
    assert_matches(np.roll(_k(X), shift, axis), onp.roll(X, shift, axis))
    check_gradient(lambda a: np.roll(a, shift, axis) * a, [rand(2, 3, 4)])


def test_roll_errors():
    with pytest.raises(ShapeError, match="roll"):
        np.roll(np.ones((2, 3)), (1, 2))
    with pytest.raises(ShapeError, match="roll"):
        np.roll(np.ones((2, 3)), (1, 2, 3), axis=(0, 1))


@pytest.mark.parametrize("reps", [2, (2,), (2, 1), (1, 3), (2, 2, 2), (3, 1, 1, 2)])
def test_tile(reps):
    x = rand(2, 3, dtype="float32")
    assert_matches(np.tile(_k(x), reps), onp.tile(x, reps))
    assert_matches(_k(x).tile(reps), onp.tile(x, reps))
    check_gradient(lambda a: np.tile(a, reps), [rand(2, 3)])
    check_gradient(lambda a: np.tile(a, reps), [rand(3)])


@pytest.mark.parametrize("repeats,axis", [(2, None), (2, 0), (3, -1), ([1, 0, 2], 1),
                                          ([2], 0), (onp.array([1, 2]), 0),
                                          ([1, 2, 0, 1, 1, 3], None)])
def test_repeat(repeats, axis):
    x = rand(2, 3, dtype="float32")
    assert_matches(np.repeat(_k(x), repeats, axis), onp.repeat(x, repeats, axis))
    assert_matches(_k(x).repeat(repeats, axis), onp.repeat(x, repeats, axis))
    check_gradient(lambda a: np.repeat(a, repeats, axis), [rand(2, 3)])


@pytest.mark.parametrize("pad_width", [1, (1, 2), ((0, 1), (2, 0)), ((1, 1),)])
@pytest.mark.parametrize("mode", ["constant", "edge", "reflect"])
def test_pad(pad_width, mode):
    x = rand(3, 4, dtype="float32")
    assert_matches(np.pad(_k(x), pad_width, mode=mode), onp.pad(x, pad_width, mode=mode))
    if mode == "constant":
        assert_matches(np.pad(_k(x), pad_width, constant_values=2.5),
                       onp.pad(x, pad_width, constant_values=2.5))
        check_gradient(lambda a: np.pad(a, pad_width), [rand(3, 4)])


def test_pad_gradient_of_other_modes_is_a_clear_error():
    x = np.ones((3,))
    x.attach_grad()
    with autograd.record():
        y = np.pad(x, 1, mode="edge")
    with pytest.raises(KilnError, match="constant"):
        y.backward()


# ----------------------------------------------------------------------------------------------
# composed functions: stacking, atleast_*, append, meshgrid, diff, average, ptp
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fn", ["atleast_1d", "atleast_2d", "atleast_3d"])
def test_atleast(fn):
    for x in (onp.float32(2.0) * onp.ones(()), rand(3, dtype="float32"),
              rand(2, 3, dtype="float32"), rand(2, 3, 4, dtype="float32")):
        assert_matches(getattr(np, fn)(_k(x)), getattr(onp, fn)(x))
    got = getattr(np, fn)(_k(rand(3, dtype="float32")), _k(rand(2, 2, dtype="float32")))
    want = getattr(onp, fn)(rand(3, dtype="float32"), rand(2, 2, dtype="float32"))
    assert [g.shape for g in got] == [w.shape for w in want]


@pytest.mark.parametrize("fn", ["hstack", "vstack", "dstack", "column_stack"])
def test_stacking(fn):
    for arrays in ([rand(3, dtype="float32"), rand(3, dtype="float32", seed=1)],
                   [rand(2, 3, dtype="float32"), rand(2, 3, dtype="float32", seed=1)],
                   [rand(2, 3, 4, dtype="float32"), rand(2, 3, 4, dtype="float32", seed=1)]):
        if fn == "column_stack" and arrays[0].ndim == 3:
            continue
        assert_matches(getattr(np, fn)([_k(a) for a in arrays]), getattr(onp, fn)(arrays))
    check_gradient(lambda a, b: getattr(np, fn)([a, b]), [rand(3), rand(3, seed=1)])


def test_column_stack_mixed():
    a, b = rand(3, dtype="float32"), rand(3, 2, dtype="float32")
    assert_matches(np.column_stack((_k(a), _k(b))), onp.column_stack((a, b)))


@pytest.mark.parametrize("axis", [None, 0, 1])
def test_append(axis):
    a = rand(2, 3, dtype="float32")
    b = rand(1, 3, dtype="float32", seed=1) if axis == 0 else rand(2, 1, dtype="float32", seed=1)
    assert_matches(np.append(_k(a), _k(b), axis=axis), onp.append(a, b, axis=axis))
    assert_matches(np.append(_k(a), [1.0, 2.0]), onp.append(a, onp.float32([1.0, 2.0])))


@pytest.mark.parametrize("indexing", ["xy", "ij"])
@pytest.mark.parametrize("sparse", [False, True])
def test_meshgrid(indexing, sparse):
    x, y, z = (rand(3, dtype="float32"), rand(2, dtype="float32", seed=1),
               rand(4, dtype="float32", seed=2))
    for args in ((x,), (x, y), (x, y, z)):
        got = np.meshgrid(*[_k(a) for a in args], indexing=indexing, sparse=sparse)
        want = onp.meshgrid(*args, indexing=indexing, sparse=sparse)
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert_matches(g, w)
    gx, _ = np.meshgrid(_k(x), _k(y))
    gx[0, 0] = 5.0  # writable, as NumPy's
    check_gradient(lambda a, b: np.meshgrid(a, b, indexing=indexing), [rand(3), rand(2)])
    with pytest.raises(KilnError, match="indexing"):
        np.meshgrid(_k(x), indexing="yx")


@pytest.mark.parametrize("n,axis", [(1, -1), (2, -1), (1, 0), (3, 1)])
def test_diff(n, axis):
    x = rand(4, 5, dtype="float32")
    assert_matches(np.diff(_k(x), n=n, axis=axis), onp.diff(x, n=n, axis=axis), atol=1e-5)
    check_gradient(lambda a: np.diff(a, n=n, axis=axis), [rand(4, 5)])
    assert_matches(np.diff(_k(x), prepend=0.0, append=_k(x[:, :1])),
                   onp.diff(x, prepend=0.0, append=x[:, :1]), atol=1e-5)


def test_ediff1d():
    x = rand(2, 3, dtype="float32")
    assert_matches(np.ediff1d(_k(x)), onp.ediff1d(x))
    assert_matches(np.ediff1d(_k(x), to_begin=_k(x[0, :1]), to_end=_k(x[1])),
                   onp.ediff1d(x, to_begin=x[0, :1], to_end=x[1]))
    check_gradient(np.ediff1d, [rand(2, 3)])


def test_average():
    x = rand(3, 4, dtype="float32")
    w = rand(3, 4, low=0.1, high=1, dtype="float32", seed=1)
    assert_matches(np.average(_k(x)), onp.average(x))
    assert_matches(np.average(_k(x), axis=1), onp.average(x, axis=1))
    assert_matches(np.average(_k(x), axis=0, weights=_k(w)), onp.average(x, axis=0, weights=w))
    w1 = w[0]
    assert_matches(np.average(_k(x), axis=1, weights=_k(w1)), onp.average(x, axis=1, weights=w1))
    avg, scale = np.average(_k(x), axis=1, weights=_k(w1), returned=True)
    want_avg, want_scale = onp.average(x, axis=1, weights=w1, returned=True)
    assert_matches(avg, want_avg)
    assert_matches(scale, want_scale)
    avg, scale = np.average(_k(x), axis=0, returned=True)
    assert_matches(scale, onp.average(x, axis=0, returned=True)[1])
    with pytest.raises(ShapeError, match="average"):
        np.average(_k(x), weights=_k(w1))
    check_gradient(lambda a, b: np.average(a, axis=0, weights=b),
                   [rand(3, 4), rand(3, 4, low=0.1, high=1)])


def test_ptp():
    x = rand(3, 4, dtype="float32")
    assert_matches(np.ptp(_k(x)), onp.ptp(x))
    assert_matches(np.ptp(_k(x), axis=1, keepdims=True), onp.ptp(x, axis=1, keepdims=True))
