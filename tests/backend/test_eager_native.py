"""kiln/ops/_native.py: the eager operators' native loops (softmax cross-entropy, relu, relu's
gradient mask, sums over a leading axis) against NumPy, and the operators on both paths."""

from __future__ import annotations

import numpy as onp
import pytest

from kiln import autograd, gluon, np, npx
from kiln.ops import _native

pytestmark = pytest.mark.usefixtures("require_native")


@pytest.fixture
def fn():
    _native.use_native(None)
    yield _native.function
    _native.use_native(None)


def _ce_reference(x, labels):
    """float64 loss and softmax - one_hot, labels clipped into range."""
    x = x.astype(onp.float64)
    idx = onp.clip(labels, 0, x.shape[1] - 1)
    z = x - x.max(1, keepdims=True)
    lse = onp.log(onp.exp(z).sum(1))
    rows = onp.arange(len(x))
    p = onp.exp(z - lse[:, None])
    p[rows, idx] -= 1
    return lse - z[rows, idx], p


@pytest.mark.parametrize("rows,classes", [(1, 1), (3, 1), (7, 10), (256, 10), (33, 17),
                                          (5, 1000)])
def test_softmax_ce_matches_float64(fn, rows, classes):
    rng = onp.random.default_rng(rows * 100 + classes)
    x = (rng.standard_normal((rows, classes)) * 4).astype(onp.float32)
    labels = rng.integers(-2, classes + 2, size=rows)          # some out of range: clipped
    ct = rng.standard_normal(rows).astype(onp.float32)
    loss_ref, p_ref = _ce_reference(x, labels)
    ce = fn("softmax_ce_f32")
    loss = ce(x, labels, None)
    assert loss.shape == (rows,) and loss.dtype == onp.float32
    onp.testing.assert_allclose(loss, loss_ref, rtol=1e-5, atol=1e-5)
    grad = ce(x, labels, ct)
    assert grad.shape == (rows, classes) and grad.dtype == onp.float32
    onp.testing.assert_allclose(grad, p_ref * ct[:, None], rtol=1e-5, atol=1e-6)


def test_softmax_ce_declines_what_it_does_not_take(fn):
    ce = fn("softmax_ce_f32")
    x = onp.ones((4, 3), onp.float32)
    labels = onp.zeros(4, onp.int64)
    assert ce(x.astype(onp.float64), labels, None) is None          # dtype of the logits
    assert ce(x, labels.astype(onp.int32), None) is None            # dtype of the labels
    assert ce(x[None], labels, None) is None                        # 3-D
    assert ce(x[:, ::2], labels, None) is None                      # not C-ordered
    assert ce(x, labels[:3], None) is None                          # one label short
    assert ce(x[:0], labels[:0], None) is None                      # empty
    assert ce(x, labels, onp.ones(4, onp.float64)) is None          # cotangent dtype
    assert ce(x, labels, onp.ones(3, onp.float32)) is None          # cotangent length


def test_multiply_mask_is_numpys_product(fn):
    rng = onp.random.default_rng(1)
    g = rng.standard_normal((37, 41)).astype(onp.float32)
    g[0, :4] = [onp.nan, onp.inf, -onp.inf, -0.0]
    mask = rng.random((37, 41)) > 0.5
    mask[0, :4] = False                      # NaN * False and inf * False are NaN in NumPy
    got = fn("multiply_mask_f32")(g, mask)
    with onp.errstate(invalid="ignore"):          # inf * False: NaN, as intended
        ref = g * mask
    onp.testing.assert_array_equal(got, ref)
    assert onp.array_equal(onp.signbit(got), onp.signbit(ref))
    mm = fn("multiply_mask_f32")
    assert mm(g, mask[:, :40]) is None                               # shapes differ
    assert mm(g[:, ::2], mask[:, ::2]) is None                       # not C-ordered
    assert mm(g.astype(onp.float64), mask) is None                   # dtype
    assert mm(mask, g) is None                                       # operand order


def test_relu_is_numpys_maximum(fn):
    x = onp.array([[-1.5, 0.0, -0.0, 2.0], [onp.nan, onp.inf, -onp.inf, 1e-40]], onp.float32)
    got = fn("relu_f32")(x)
    ref = onp.maximum(x, 0, dtype=onp.float32)
    onp.testing.assert_array_equal(got, ref)                         # NaN stays NaN
    assert not onp.signbit(got[0, 2])                                # -0.0 becomes 0.0
    assert fn("relu_f32")(x.astype(onp.float64)) is None
    assert fn("relu_f32")(x[:, ::2]) is None


@pytest.mark.parametrize("shape,axis", [((256, 256), 0), ((5, 1), 0), ((1, 9), 0),
                                        ((4, 6, 3), 1), ((4, 6, 3), -3), ((2, 3, 4, 5), 2)])
def test_sum_axis_adds_rows_as_numpy_does(fn, shape, axis):
    rng = onp.random.default_rng(sum(shape))
    x = rng.standard_normal(shape).astype(onp.float32)
    got = fn("sum_axis_f32")(x, axis)
    ref = x.sum(axis=axis)
    assert got.shape == ref.shape and got.dtype == onp.float32
    onp.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6)
    onp.testing.assert_allclose(got, x.astype(onp.float64).sum(axis=axis), rtol=1e-5,
                                atol=1e-5)


def test_sum_axis_declines_the_last_axis_and_empty_arrays(fn):
    s = fn("sum_axis_f32")
    x = onp.ones((3, 4), onp.float32)
    assert s(x, 1) is None and s(x, -1) is None          # NumPy's pairwise sum stays
    assert s(onp.ones((0, 4), onp.float32), 0) is None
    assert s(x.T, 0) is None                             # not C-ordered
    assert s(x, 2) is None and s(x, -3) is None          # no such axis: NumPy raises


def _mlp_step(native: bool):
    """A training step of a relu MLP with softmax cross-entropy: loss and gradients."""
    _native.use_native(None if native else False)
    try:
        rng = onp.random.default_rng(7)
        x = np.array(rng.standard_normal((64, 30)).astype(onp.float32))
        y = np.array(rng.integers(0, 10, size=64))
        net = gluon.nn.HybridSequential()
        net.add(gluon.nn.Dense(48, activation="relu"), gluon.nn.Dense(10))
        net.initialize()
        net(x)
        for i, p in enumerate(net.collect_params().values()):
            p.set_data(np.array(onp.random.default_rng(i).standard_normal(p.shape)
                                .astype(onp.float32) * 0.3))
        loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
        with autograd.record():
            loss = loss_fn(net(x), y)
            total = loss.sum()
        total.backward()
        return [loss.asnumpy()] + [p.grad().asnumpy() for p in net.collect_params().values()]
    finally:
        _native.use_native(None)


def test_training_step_agrees_with_the_numpy_path():
    for got, ref in zip(_mlp_step(True), _mlp_step(False)):
        onp.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5 * onp.abs(ref).max())


def test_operators_fall_back_for_other_layouts():
    """The fronts hand NumPy what the loops decline: the results are the same operators'."""
    rng = onp.random.default_rng(3)
    xd = rng.standard_normal((6, 5, 4)).astype(onp.float32)
    x = np.array(xd)
    onp.testing.assert_array_equal(npx.relu(x[:, ::2]).asnumpy(),
                                   onp.maximum(xd[:, ::2], 0))
    onp.testing.assert_allclose(np.sum(x, axis=2).asnumpy(), xd.sum(axis=2), rtol=1e-6)
    onp.testing.assert_allclose(np.sum(x, axis=1, keepdims=True).asnumpy(),
                                xd.sum(axis=1, keepdims=True), rtol=1e-6)
    mask = xd > 0
    onp.testing.assert_array_equal((x * np.array(mask)).asnumpy(), xd * mask)


# ----------------------------------------------------------------------------------------------
# convolution, pooling and sigmoid: the kernel library's loops against the NumPy engine
# ----------------------------------------------------------------------------------------------

def _both_paths(compute, loops):
    """compute() with the native loops, then without: two lists of NumPy arrays. Each binding
    function in `loops` must have computed (not declined) at least that many results on the
    native run: the forward and each gradient."""
    results = []
    taken = dict.fromkeys(loops, 0)
    for flag in (None, False):
        _native.use_native(flag)
        for name in loops if flag is None else ():
            def counted(*args, _fn=_native.function(name), _name=name):
                out = _fn(*args)
                taken[_name] += out is not None
                return out
            _native._FUNCTIONS[name] = counted
        try:
            results.append([a.asnumpy() for a in compute()])
        finally:
            _native.use_native(None)
    assert all(taken[name] >= count for name, count in loops.items()), taken
    return results


def _close(native, reference, tol=2e-5):
    for got, ref in zip(native, reference):
        assert got.shape == ref.shape and got.dtype == ref.dtype
        onp.testing.assert_allclose(got, ref, rtol=tol, atol=tol * max(1.0, onp.abs(ref).max()))


# (data shape, weight shape, stride, pad, dilate, groups)
CONVS = [
    ((2, 3, 12, 11), (4, 3, 3, 3), (1, 1), (1, 1), (1, 1), 1),
    ((2, 4, 13, 12), (6, 2, 3, 2), (2, 1), (0, 1), (1, 2), 2),     # groups, mixed geometry
    ((1, 6, 9, 9), (6, 1, 3, 3), (1, 1), (1, 1), (1, 1), 6),       # depthwise
    ((3, 5, 8, 7), (7, 5, 1, 1), (2, 2), (0, 0), (1, 1), 1),       # 1x1 stride 2
    ((2, 3, 15), (4, 3, 4), (2,), (1,), (1,), 1),                  # 1-D
    ((2, 1, 28, 28), (6, 1, 5, 5), (1, 1), (2, 2), (1, 1), 1),     # LeNet's first layer
]


@pytest.mark.parametrize("xs,ws,stride,pad,dilate,groups", CONVS)
def test_convolution_and_its_gradients_match_the_numpy_engine(xs, ws, stride, pad, dilate,
                                                                groups):
    rng = onp.random.default_rng(len(xs) * 10 + ws[0])
    xd = rng.standard_normal(xs).astype(onp.float32)
    wd = rng.standard_normal(ws).astype(onp.float32)
    bd = rng.standard_normal(ws[0]).astype(onp.float32)

    def compute():
        x, w, b = np.array(xd), np.array(wd), np.array(bd)
        for a in (x, w, b):
            a.attach_grad()
        with autograd.record():
            y = npx.convolution(x, w, b, kernel=ws[2:], stride=stride, pad=pad, dilate=dilate,
                                num_filter=ws[0], num_group=groups)
            loss = (y * y).sum()
        loss.backward()
        return [y, x.grad, w.grad, b.grad]

    native, reference = _both_paths(compute, {"conv2d_f32": 3})
    _close(native, reference)


def test_deconvolution_with_adj_and_bias_matches_the_numpy_engine():
    rng = onp.random.default_rng(11)
    xd = rng.standard_normal((2, 4, 5, 6)).astype(onp.float32)
    wd = rng.standard_normal((4, 3, 3, 3)).astype(onp.float32)
    bd = rng.standard_normal(3).astype(onp.float32)

    def compute():
        x, w = np.array(xd), np.array(wd)
        x.attach_grad()
        w.attach_grad()
        with autograd.record():
            y = npx.deconvolution(x, w, np.array(bd), kernel=(3, 3), stride=(2, 2), pad=(1, 1),
                                  adj=(1, 0), num_filter=3, no_bias=False)
            loss = (y * y).sum()
        loss.backward()
        return [y, x.grad, w.grad]

    native, reference = _both_paths(compute, {"conv2d_f32": 3})
    assert native[0].shape == (2, 3, 10, 11)
    _close(native, reference)


POOLS = [
    ((2, 3, 9, 10), dict(kernel=(3, 3), stride=(2, 2), pad=(1, 1), pool_type="max")),
    ((2, 3, 9, 10), dict(kernel=(2, 2), stride=(2, 2), pool_type="avg")),
    ((2, 3, 9, 10), dict(kernel=(3, 2), stride=(2, 1), pad=(1, 1), pool_type="avg",
                         count_include_pad=False)),
    ((2, 3, 9, 10), dict(kernel=(3, 3), stride=(2, 2), pool_type="sum",
                         pooling_convention="full")),
    ((2, 3, 7, 5), dict(global_pool=True, pool_type="max")),
    ((2, 3, 11), dict(kernel=(3,), stride=(2,), pad=(1,), pool_type="max")),      # 1-D
]


@pytest.mark.parametrize("shape,kw", POOLS)
def test_pooling_and_its_gradient_match_the_numpy_engine(shape, kw):
    rng = onp.random.default_rng(len(shape))
    xd = rng.standard_normal(shape).astype(onp.float32)
    flat = xd.reshape(-1)
    flat[1::7] = flat[0:-1:7][:len(flat[1::7])]         # ties: the first maximum takes it

    def compute():
        x = np.array(xd)
        x.attach_grad()
        with autograd.record():
            y = npx.pooling(x, **kw)
            loss = (y * np.array(onp.arange(y.size, dtype=onp.float32).reshape(y.shape))).sum()
        loss.backward()
        return [y, x.grad]

    native, reference = _both_paths(compute, {"pool2d_f32": 2})
    _close(native, reference, tol=1e-6)


def test_sigmoid_matches_numpy():
    x = onp.concatenate([onp.linspace(-100, 100, 4001), [0.0, onp.inf, -onp.inf]]) \
        .astype(onp.float32)
    native, reference = _both_paths(lambda: [npx.sigmoid(np.array(x))], {"act_f32": 1})
    onp.testing.assert_allclose(native[0], reference[0], rtol=2e-6, atol=1e-7)
    exact = 1.0 / (1.0 + onp.exp(-x.astype(onp.float64)))
    onp.testing.assert_allclose(native[0], exact, rtol=2e-6, atol=1e-7)
    assert onp.isnan(npx.sigmoid(np.array(onp.array([onp.nan], onp.float32))).asnumpy()).all()


def test_conv_and_pool_decline_what_they_do_not_take(fn):
    conv, pool = fn("conv2d_f32"), fn("pool2d_f32")
    x = onp.ones((1, 2, 5, 5), onp.float32)
    w = onp.ones((3, 2, 3, 3), onp.float32)
    good = (1, 2, 5, 5, 3, 3, 3, 1, 1, 0, 0, 1, 1, 1, 3, 3)
    assert conv(0, good, x, w, None).shape == (1, 3, 3, 3)
    wrong_out = good[:14] + (4, 3)                       # not the size the geometry gives
    assert conv(0, wrong_out, x, w, None) is None
    assert conv(0, good, x.astype(onp.float64), w, None) is None
    assert conv(0, good, x[:, :1], w, None) is None      # fewer elements than the geometry
    assert conv(0, good, x, w, onp.ones(2, onp.float32)) is None     # bias length
    assert conv(3, good, x, w, None) is None             # no such mode
    assert conv(0, good[:15], x, w, None) is None        # a field short
    assert conv(1, good, onp.ones((1, 3, 3, 3), onp.float32), w, None).shape == x.shape
    assert conv(2, good, x, onp.ones((1, 3, 3, 3), onp.float32), None).shape == w.shape
    geometry = (1, 2, 5, 5, 2, 2, 2, 2, 0, 0, 2, 2)
    assert pool(geometry, 0, 1, x, None, None).shape == (1, 2, 2, 2)
    assert pool(geometry, 3, 1, x, None, None) is None                  # no such type
    assert pool(geometry[:11], 0, 1, x, None, None) is None
    y = onp.ones((1, 2, 2, 2), onp.float32)
    assert pool(geometry, 0, 1, x, y, y).shape == x.shape
    assert pool(geometry, 0, 1, x, y[:, :1], y) is None                 # dy's size
