"""Convolution, deconvolution and the convolution weight gradient: forward against loop
references written here, gradients against finite differences, the adjoint identities that tie
the three operators together, every code path of the im2col engine, and the errors."""

import itertools

import numpy as onp
import pytest

from kiln import autograd, npx
from kiln import np as knp
from kiln.base import KilnError, ShapeError
from kiln.ops import conv as conv_ops
from kiln.ops import im2col
from kiln.test_utils import assert_almost_equal, check_gradient


# ----------------------------------------------------------------------------------------------
# references: the definitions, with loops
# ----------------------------------------------------------------------------------------------

def ref_conv(x, w, b=None, stride=None, dilate=None, pad=None, groups=1):
    """y[n, f, o] = sum over c in f's group and kernel offsets k of
    x_padded[n, c, o*stride + k*dilate] * w[f, c, k]."""
    nd = x.ndim - 2
    stride = stride or (1,) * nd
    dilate = dilate or (1,) * nd
    pad = pad or (0,) * nd
    kernel = w.shape[2:]
    xp = onp.pad(x, [(0, 0), (0, 0)] + [(p, p) for p in pad])
    out = [(xp.shape[2 + i] - dilate[i] * (kernel[i] - 1) - 1) // stride[i] + 1
           for i in range(nd)]
    n, c = x.shape[:2]
    f = w.shape[0]
    cg, fg = c // groups, f // groups
    y = onp.zeros((n, f) + tuple(out))
    for fi in range(f):
        grp = fi // fg
        for o in itertools.product(*(range(v) for v in out)):
            for k in itertools.product(*(range(v) for v in kernel)):
                pos = tuple(o[i] * stride[i] + k[i] * dilate[i] for i in range(nd))
                patch = xp[(slice(None), slice(grp * cg, (grp + 1) * cg)) + pos]
                y[(slice(None), fi) + o] += patch @ w[(fi, slice(None)) + k]
        if b is not None:
            y[:, fi] += b[fi]
    return y


def ref_deconv(x, w, b=None, stride=None, dilate=None, pad=None, adj=None, groups=1):
    """Scatter every input pixel through the kernel: out[o*stride + k*dilate - pad] +=
    x[c, o] * w[c, f, k], then crop; out size s*(i-1) + d*(k-1) + 1 - 2p + adj."""
    nd = x.ndim - 2
    stride = stride or (1,) * nd
    dilate = dilate or (1,) * nd
    pad = pad or (0,) * nd
    adj = adj or (0,) * nd
    kernel = w.shape[2:]
    n, c = x.shape[:2]
    fg = w.shape[1]
    f = fg * groups
    cg = c // groups
    full = [stride[i] * (x.shape[2 + i] - 1) + dilate[i] * (kernel[i] - 1) + 1 + adj[i]
            for i in range(nd)]
    y = onp.zeros((n, f) + tuple(full))
    for ci in range(c):
        grp = ci // cg
        for o in itertools.product(*(range(v) for v in x.shape[2:])):
            for k in itertools.product(*(range(v) for v in kernel)):
                pos = tuple(o[i] * stride[i] + k[i] * dilate[i] for i in range(nd))
                y[(slice(None), slice(grp * fg, (grp + 1) * fg)) + pos] += onp.outer(
                    x[(slice(None), ci) + o], w[(ci, slice(None)) + k])
    crop = tuple(slice(pad[i], full[i] - pad[i]) for i in range(nd))
    y = y[(slice(None), slice(None)) + crop]
    if b is not None:
        y = y + b.reshape((f,) + (1,) * nd)
    return y


def rand(rng, *shape):
    return rng.standard_normal(shape)


# (spatial, channels, filters, groups, kernel, stride, dilate, pad)
CASES = [
    ((7,), 3, 4, 1, 3, 1, 1, 0),
    ((9,), 4, 6, 2, 3, 2, 2, 1),
    ((6, 5), 3, 4, 1, 3, 1, 1, 1),
    ((7, 6), 4, 6, 2, 3, 2, 1, 1),
    ((7, 7), 4, 4, 4, 3, 1, 2, 2),          # depthwise, dilated
    ((6, 7), 2, 6, 2, 2, 3, 1, 0),          # stride larger than kernel
    ((5, 6), 3, 4, 1, 1, 1, 1, 0),          # 1x1
    ((7, 6), 4, 6, 2, 1, 2, 1, 0),          # strided 1x1 with groups
    ((5, 4), 3, 2, 1, 1, 1, 1, 1),          # 1x1 with padding: the general path
    ((4, 5, 4), 2, 3, 1, 3, 1, 1, 1),
    ((5, 4, 5), 4, 4, 2, 2, 2, 1, 1),
]


def _call(case, rng, dtype=onp.float64):
    spatial, c, f, g, k, s, d, p = case
    nd = len(spatial)
    x = rand(rng, 2, c, *spatial).astype(dtype)
    w = rand(rng, f, c // g, *(k,) * nd).astype(dtype)
    b = rand(rng, f).astype(dtype)
    geo = dict(stride=(s,) * nd, dilate=(d,) * nd, pad=(p,) * nd)
    return x, w, b, geo, g


@pytest.mark.parametrize("case", CASES)
def test_convolution_forward_matches_reference(case):
    rng = onp.random.default_rng(0)
    x, w, b, geo, g = _call(case, rng)
    y = npx.convolution(knp.array(x), knp.array(w), knp.array(b), num_group=g, **geo)
    assert_almost_equal(y, ref_conv(x, w, b, groups=g, **geo), rtol=1e-10, atol=1e-10)
    y = npx.convolution(knp.array(x), knp.array(w), num_group=g, no_bias=True, **geo)
    assert_almost_equal(y, ref_conv(x, w, groups=g, **geo), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("case", CASES)
def test_deconvolution_forward_matches_reference(case):
    rng = onp.random.default_rng(1)
    spatial, c, f, g, k, s, d, p = case
    nd = len(spatial)
    x = rand(rng, 2, c, *spatial)
    w = rand(rng, c, f // g, *(k,) * nd)
    b = rand(rng, f)
    for a in range(s):
        geo = dict(stride=(s,) * nd, dilate=(d,) * nd, pad=(p,) * nd, adj=(a,) * nd)
        y = npx.deconvolution(knp.array(x), knp.array(w), knp.array(b), num_group=g,
                              no_bias=False, **geo)
        assert_almost_equal(y, ref_deconv(x, w, b, groups=g, **geo), rtol=1e-10, atol=1e-10)


def test_deconvolution_ignores_bias_by_default_like_mxnet():
    rng = onp.random.default_rng(2)
    x, w, b = rand(rng, 1, 2, 4, 4), rand(rng, 2, 3, 3, 3), rand(rng, 3)
    y = npx.deconvolution(knp.array(x), knp.array(w), knp.array(b))
    assert_almost_equal(y, ref_deconv(x, w), rtol=1e-10, atol=1e-10)
    assert npx.deconvolution(knp.array(x), knp.array(w)).shape == (1, 3, 6, 6)


@pytest.mark.parametrize("in_size,kernel,stride,target", [
    ((5, 4), (3, 3), (2, 2), (10, 8)),
    ((5, 4), (4, 4), (2, 2), (9, 8)),
    ((5,), (3,), (3,), (14,)),
])
def test_deconvolution_target_shape_picks_pad_and_adj(in_size, kernel, stride, target):
    # MXNet's rule: total = s*(i-1) + k - target; pad = ceil(total/2), adj = total % 2.
    rng = onp.random.default_rng(3)
    x = rand(rng, 1, 2, *in_size)
    w = rand(rng, 2, 3, *kernel)
    y = npx.deconvolution(knp.array(x), knp.array(w), kernel=kernel, stride=stride,
                          target_shape=target, num_filter=3)
    assert y.shape == (1, 3) + target
    total = [stride[i] * (in_size[i] - 1) + kernel[i] - target[i] for i in range(len(target))]
    ref = ref_deconv(x, w, stride=stride, pad=tuple((t + 1) // 2 for t in total),
                     adj=tuple(t % 2 for t in total))
    assert_almost_equal(y, ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("case", CASES)
def test_adjoint_identities(case):
    """<w, wgrad(x, g)> = <conv(x, w), g> = <x, deconv(g, w)>, and the shapes line up."""
    rng = onp.random.default_rng(4)
    x, w, _, geo, grp = _call(case, rng)
    y = ref_conv(x, w, groups=grp, **geo)
    g = rand(rng, *y.shape)
    nd = x.ndim - 2
    kx, kw, kg = knp.array(x), knp.array(w), knp.array(g)
    wg = conv_ops.convolution_weight_grad(kx, kg, kernel=w.shape[2:], num_group=grp, **geo)
    adj = tuple(x.shape[2 + i] + 2 * geo["pad"][i] - (geo["stride"][i] * (y.shape[2 + i] - 1)
                + geo["dilate"][i] * (w.shape[2 + i] - 1) + 1) for i in range(nd))
    dx = npx.deconvolution(kg, kw, adj=adj, num_filter=x.shape[1], num_group=grp, **geo)
    assert wg.shape == w.shape and dx.shape == x.shape
    middle = float((y * g).sum())
    assert abs(float((w * wg.asnumpy()).sum()) - middle) < 1e-9 * max(1.0, abs(middle))
    assert abs(float((x * dx.asnumpy()).sum()) - middle) < 1e-9 * max(1.0, abs(middle))


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("chunk_bytes", [1, 2000, 1 << 20])
@pytest.mark.parametrize("case", [CASES[1], CASES[2], CASES[3], CASES[4], CASES[10]])
def test_chunking_does_not_change_results(monkeypatch, chunk_bytes, threads, case):
    """Chunks of one row of one sample, a few rows, and many samples, run in one or several
    threads, give the same numbers."""
    monkeypatch.setattr(im2col, "CHUNK_BYTES", chunk_bytes)
    monkeypatch.setattr(im2col, "THREADS", threads)
    rng = onp.random.default_rng(5)
    x, w, b, geo, g = _call(case, rng)
    x = onp.concatenate([x, x[::-1] * 0.5, x * 2.0])       # batch 6
    y = npx.convolution(knp.array(x), knp.array(w), knp.array(b), num_group=g, **geo)
    assert_almost_equal(y, ref_conv(x, w, b, groups=g, **geo), rtol=1e-10, atol=1e-10)
    gy = rand(rng, *y.shape)
    inner = float((ref_conv(x, w, groups=g, **geo) * gy).sum())
    kx, kw, kg = knp.array(x), knp.array(w), knp.array(gy)
    wg = conv_ops.convolution_weight_grad(kx, kg, kernel=w.shape[2:], num_group=g, **geo)
    assert_almost_equal(float((w * wg.asnumpy()).sum()), inner, rtol=1e-9)
    kx.attach_grad()
    with autograd.record():
        out = npx.convolution(kx, kw, num_group=g, **geo)
    out.backward(kg)
    assert_almost_equal(float((x * kx.grad.asnumpy()).sum()), inner, rtol=1e-9)


@pytest.mark.parametrize("case", [CASES[0], CASES[3], CASES[4], CASES[7], CASES[9]])
def test_convolution_gradients(case):
    rng = onp.random.default_rng(6)
    x, w, b, geo, g = _call(case, rng)
    x, w = x[:1, :, ...], w
    check_gradient(lambda x, w, b: npx.convolution(x, w, b, num_group=g, **geo), [x, w, b])


@pytest.mark.parametrize("case", [CASES[1], CASES[3], CASES[4]])
def test_deconvolution_gradients(case):
    rng = onp.random.default_rng(7)
    spatial, c, f, g, k, s, d, p = case
    nd = len(spatial)
    x = rand(rng, 1, c, *spatial)
    w = rand(rng, c, f // g, *(k,) * nd)
    b = rand(rng, f)
    geo = dict(stride=(s,) * nd, dilate=(d,) * nd, pad=(p,) * nd, adj=(s - 1,) * nd)
    check_gradient(lambda x, w, b: npx.deconvolution(x, w, b, num_group=g, no_bias=False,
                                                     **geo), [x, w, b])


def test_weight_grad_gradients():
    rng = onp.random.default_rng(8)
    x, w, _, geo, g = _call(CASES[3], rng)
    x = x[:1]
    gy = rand(rng, *ref_conv(x, w, groups=g, **geo).shape)
    check_gradient(lambda x, gy: conv_ops.convolution_weight_grad(x, gy, kernel=w.shape[2:],
                                                             num_group=g, **geo), [x, gy])


def _second_order(fn, inputs, wrt):
    """Check the gradient (w.r.t. every input) of d<fn(inputs), probe>/d inputs[wrt]."""
    probe = {}

    def first(*xs):
        with autograd.record():
            out = fn(*xs)
        if "p" not in probe:
            probe["p"] = onp.random.default_rng(9).standard_normal(out.shape)
        return autograd.grad(out, [xs[wrt]], head_grads=[knp.array(probe["p"])],
                             create_graph=True, retain_graph=True)[0]
    check_gradient(first, inputs, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("wrt", [0, 1])
def test_convolution_second_order(wrt):
    rng = onp.random.default_rng(10)
    x = rand(rng, 1, 2, 5, 4)
    w = rand(rng, 4, 1, 3, 2) * 0.5

    def fn(x, w):
        return knp.tanh(npx.convolution(x, w, stride=(2, 1), pad=(1, 1), num_group=2))
    _second_order(fn, [x, w], wrt)


def test_deconvolution_second_order():
    rng = onp.random.default_rng(11)
    x = rand(rng, 1, 2, 3, 3)
    w = rand(rng, 2, 2, 2, 2) * 0.5

    def fn(x, w):
        return knp.tanh(npx.deconvolution(x, w, stride=(2, 2), pad=(1, 0), adj=(1, 0)))
    _second_order(fn, [x, w], 0)
    _second_order(fn, [x, w], 1)


def test_gradient_skips_inputs_nobody_needs():
    """The data gradient of a first layer is not computed (it is never used)."""
    rng = onp.random.default_rng(12)
    x = knp.array(rand(rng, 2, 1, 6, 6).astype(onp.float32))
    w = knp.array(rand(rng, 3, 1, 3, 3).astype(onp.float32))
    w.attach_grad()
    with autograd.record():
        y = npx.convolution(x, w)
    node = y._node
    grads = node.vjp(node.inputs, None, [knp.ones(y.shape)], **node.attrs)
    assert grads[0] is None and grads[1].shape == w.shape


def test_float32_in_float32_out():
    rng = onp.random.default_rng(13)
    x = knp.array(rand(rng, 2, 3, 8, 8).astype(onp.float32))
    w = knp.array(rand(rng, 4, 3, 3, 3).astype(onp.float32))
    b = knp.array(rand(rng, 4).astype(onp.float32))
    assert npx.convolution(x, w, b, pad=1).dtype == onp.float32
    assert npx.deconvolution(x, knp.array(rand(rng, 3, 2, 3, 3).astype(onp.float32))
                             ).dtype == onp.float32


def test_attrs_are_complete_and_normalised():
    rng = onp.random.default_rng(14)
    x = knp.array(rand(rng, 1, 2, 5, 5))
    w = knp.array(rand(rng, 4, 2, 3, 3))
    w.attach_grad()
    with autograd.record():
        y = npx.convolution(x, w, kernel=[3, 3], stride=2, pad=[1, 1], num_filter=4)
    attrs = y._node.attrs
    assert set(attrs) == set(conv_ops.Convolution.attrs)
    assert attrs["kernel"] == (3, 3) and attrs["stride"] == (2, 2) and attrs["pad"] == (1, 1)
    assert attrs["dilate"] == (1, 1) and attrs["no_bias"] is True
    assert all(isinstance(attrs[k], tuple) for k in ("kernel", "stride", "dilate", "pad"))
    assert conv_ops.Convolution.mx_name == "Convolution"
    assert conv_ops.Deconvolution.mx_name == "Deconvolution"
    assert conv_ops.Deconvolution.attrs["no_bias"] is True


def test_errors_name_the_problem():
    x = knp.zeros((1, 6, 5, 5))
    with pytest.raises(ShapeError, match="num_group"):
        npx.convolution(x, knp.zeros((4, 1, 3, 3)), num_group=4)    # 6 channels, 4 groups
    with pytest.raises(ShapeError, match="larger than the padded input"):
        npx.convolution(x, knp.zeros((2, 6, 7, 7)))
    with pytest.raises(ShapeError, match="expected"):
        npx.convolution(x, knp.zeros((2, 5, 3, 3)))
    with pytest.raises(ShapeError, match="3, 4 or 5 dimensions"):
        npx.convolution(knp.zeros((6, 5)), knp.zeros((2, 6, 3)))
    with pytest.raises(ShapeError, match="kernel"):
        npx.convolution(x, knp.zeros((2, 6, 3, 3)), kernel=(3, 3, 3))
    with pytest.raises(KilnError, match="layout"):
        npx.convolution(x, knp.zeros((2, 6, 3, 3)), layout="NHWC")
    with pytest.raises(ShapeError, match="adj"):
        npx.deconvolution(x, knp.zeros((6, 2, 3, 3)), stride=2, adj=2)
    with pytest.raises(ShapeError, match="bias"):
        npx.convolution(x, knp.zeros((2, 6, 3, 3)), knp.zeros(3))


def test_random_geometries_against_reference():
    """Many random 1-D/2-D/3-D geometries: forward, data and weight gradients (through the
    adjoint identity) against the loop reference."""
    rng = onp.random.default_rng(15)
    done = 0
    while done < 30:
        nd = int(rng.integers(1, 4))
        groups = int(rng.choice([1, 2, 3]))
        c, f = groups * int(rng.integers(1, 3)), groups * int(rng.integers(1, 3))
        kernel = tuple(int(k) for k in rng.integers(1, 4, nd))
        stride = tuple(int(s) for s in rng.integers(1, 3, nd))
        dilate = tuple(int(d) for d in rng.integers(1, 3, nd))
        pad = tuple(int(p) for p in rng.integers(0, 3, nd))
        spatial = tuple(int(s) for s in rng.integers(3, 8 if nd < 3 else 5, nd))
        geo = dict(stride=stride, dilate=dilate, pad=pad)
        if any(spatial[i] + 2 * pad[i] < dilate[i] * (kernel[i] - 1) + 1 for i in range(nd)):
            continue
        x = rng.standard_normal((2, c) + spatial)
        w = rng.standard_normal((f, c // groups) + kernel)
        y = ref_conv(x, w, groups=groups, **geo)
        assert_almost_equal(npx.convolution(knp.array(x), knp.array(w), num_group=groups,
                                            **geo), y, rtol=1e-10, atol=1e-10)
        g = rng.standard_normal(y.shape)
        kx = knp.array(x)
        kw = knp.array(w)
        kx.attach_grad()
        kw.attach_grad()
        with autograd.record():
            out = npx.convolution(kx, kw, num_group=groups, **geo)
        out.backward(knp.array(g))
        inner = float((y * g).sum())
        assert abs(float((x * kx.grad.asnumpy()).sum()) - inner) < 1e-9 * max(1, abs(inner))
        assert abs(float((w * kw.grad.asnumpy()).sum()) - inner) < 1e-9 * max(1, abs(inner))
        done += 1


def test_empty_batch():
    x = knp.zeros((0, 3, 8, 8))
    w = knp.ones((4, 3, 3, 3))
    x.attach_grad()
    w.attach_grad()
    for geo in (dict(pad=1), dict(stride=2), dict(kernel=(3, 3), dilate=2)):
        with autograd.record():
            y = npx.convolution(x, w, **geo)
        y.backward()
        assert y.shape[:2] == (0, 4) and x.grad.shape == x.shape
        assert (w.grad.asnumpy() == 0).all()
    assert npx.deconvolution(knp.zeros((0, 4, 3, 3)), knp.ones((4, 2, 3, 3))).shape == (0, 2, 5, 5)
