"""Losses: per-sample values against NumPy formulas, and gradients against finite differences."""

import numpy as onp
import pytest

from kiln import KilnError, autograd, np
from kiln.gluon import loss as gloss
from kiln.test_utils import assert_almost_equal, check_gradient

RNG = onp.random.default_rng(0)
N, C = 4, 5


def _arr(a, dtype=onp.float32):
    return np.array(onp.asarray(a, dtype=dtype))


def _logsoftmax(x, axis=-1):
    z = x - x.max(axis=axis, keepdims=True)
    return z - onp.log(onp.exp(z).sum(axis=axis, keepdims=True))


def _softplus(x):
    return onp.log1p(onp.exp(-abs(x))) + onp.maximum(x, 0)


PRED = RNG.standard_normal((N, C))
TARGET = RNG.standard_normal((N, C))
SIGNS = onp.where(RNG.random((N, C)) > 0.5, 1.0, -1.0)
BINARY = (RNG.random((N, C)) > 0.5).astype(float)
CLASSES = RNG.integers(0, C, N)
SW = RNG.random((N, 1)) + 0.5


def test_l2_loss():
    got = gloss.L2Loss()(_arr(PRED), _arr(TARGET))
    assert_almost_equal(got, (0.5 * (PRED - TARGET) ** 2).mean(axis=1), rtol=1e-5)
    got = gloss.L2Loss(weight=3.0)(_arr(PRED), _arr(TARGET), _arr(SW))
    assert_almost_equal(got, (1.5 * (PRED - TARGET) ** 2 * SW).mean(axis=1), rtol=1e-5)


def test_l2_loss_reshapes_label_like_pred():
    pred = RNG.standard_normal((N, 1))
    label = RNG.standard_normal(N)
    got = gloss.L2Loss()(_arr(pred), _arr(label))
    assert got.shape == (N,)
    assert_almost_equal(got, 0.5 * (pred[:, 0] - label) ** 2, rtol=1e-5)


def test_l1_loss():
    got = gloss.L1Loss(weight=2.0)(_arr(PRED), _arr(TARGET), _arr(SW))
    assert_almost_equal(got, (2 * abs(PRED - TARGET) * SW).mean(axis=1), rtol=1e-5)


def test_softmax_cross_entropy_sparse():
    got = gloss.SoftmaxCrossEntropyLoss()(_arr(PRED), _arr(CLASSES, onp.int32))
    want = -_logsoftmax(PRED)[onp.arange(N), CLASSES]
    assert got.shape == (N,)
    assert_almost_equal(got, want, rtol=1e-5)
    # float labels work too, as in MXNet
    got = gloss.SoftmaxCrossEntropyLoss()(_arr(PRED), _arr(CLASSES))
    assert_almost_equal(got, want, rtol=1e-5)


def test_softmax_cross_entropy_dense_from_logits_axis_and_weights():
    probs = onp.exp(_logsoftmax(TARGET))
    got = gloss.SoftmaxCrossEntropyLoss(sparse_label=False, weight=0.5)(
        _arr(PRED), _arr(probs), _arr(SW))
    want = 0.5 * SW[:, 0] * -(probs * _logsoftmax(PRED)).sum(axis=1)
    assert_almost_equal(got, want, rtol=1e-5)
    logp = _logsoftmax(PRED)
    got = gloss.SoftmaxCELoss(from_logits=True)(_arr(logp), _arr(CLASSES))
    assert_almost_equal(got, -logp[onp.arange(N), CLASSES], rtol=1e-5)
    # classes along axis 1 of (N, C, T): the loss averages over T
    x = RNG.standard_normal((N, C, 3))
    lab = RNG.integers(0, C, (N, 3))
    got = gloss.SoftmaxCrossEntropyLoss(axis=1)(_arr(x), _arr(lab))
    ls = _logsoftmax(x, axis=1)
    want = -onp.take_along_axis(ls, lab[:, None, :], axis=1)[:, 0, :].mean(axis=1)
    assert_almost_equal(got, want, rtol=1e-5)


def test_sigmoid_bce_logits_is_stable():
    x = onp.array([[-100.0, -3.0, 0.0, 3.0, 100.0]])
    y = onp.array([[1.0, 0.0, 1.0, 1.0, 0.0]])
    got = gloss.SigmoidBinaryCrossEntropyLoss()(_arr(x), _arr(y))
    per = _softplus(x) - x * y                    # = -(y log s + (1-y) log(1-s))
    assert onp.isfinite(got.asnumpy()).all()
    assert_almost_equal(got, per.mean(axis=1), rtol=1e-5)


def test_sigmoid_bce_variants():
    sig = 1 / (1 + onp.exp(-PRED))
    want = -(BINARY * onp.log(sig) + (1 - BINARY) * onp.log(1 - sig))
    got = gloss.SigmoidBCELoss()(_arr(PRED), _arr(BINARY), _arr(SW))
    assert_almost_equal(got, (want * SW).mean(axis=1), rtol=1e-5)
    got = gloss.SigmoidBCELoss(from_sigmoid=True)(_arr(sig), _arr(BINARY))
    assert_almost_equal(got, want.mean(axis=1), rtol=1e-4)
    pw = RNG.random((1, C)) + 0.5
    want_pw = -(pw * BINARY * onp.log(sig) + (1 - BINARY) * onp.log(1 - sig))
    got = gloss.SigmoidBCELoss()(_arr(PRED), _arr(BINARY), None, _arr(pw))
    assert_almost_equal(got, want_pw.mean(axis=1), rtol=1e-5)
    got = gloss.SigmoidBCELoss(from_sigmoid=True)(_arr(sig), _arr(BINARY), None, _arr(pw))
    assert_almost_equal(got, want_pw.mean(axis=1), rtol=1e-4)


def test_huber_loss():
    d = abs(PRED - TARGET)
    for rho in (1.0, 0.5):
        want = onp.where(d > rho, d - 0.5 * rho, 0.5 / rho * d ** 2).mean(axis=1)
        assert_almost_equal(gloss.HuberLoss(rho=rho)(_arr(PRED), _arr(TARGET)), want,
                            rtol=1e-5)
    with pytest.raises(KilnError, match="rho must be positive"):
        gloss.HuberLoss(rho=0)


def test_hinge_losses():
    m = onp.maximum(0, 1 - PRED * SIGNS)
    assert_almost_equal(gloss.HingeLoss()(_arr(PRED), _arr(SIGNS)), m.mean(axis=1), rtol=1e-5)
    assert_almost_equal(gloss.SquaredHingeLoss()(_arr(PRED), _arr(SIGNS)),
                        (m ** 2).mean(axis=1), rtol=1e-5)
    m2 = onp.maximum(0, 2 - PRED * SIGNS)
    assert_almost_equal(gloss.HingeLoss(margin=2)(_arr(PRED), _arr(SIGNS)), m2.mean(axis=1),
                        rtol=1e-5)


def test_logistic_loss():
    want = onp.log1p(onp.exp(-PRED * SIGNS)).mean(axis=1)
    assert_almost_equal(gloss.LogisticLoss()(_arr(PRED), _arr(SIGNS)), want, rtol=1e-5)
    got = gloss.LogisticLoss(label_format="binary")(_arr(PRED), _arr((SIGNS + 1) / 2))
    assert_almost_equal(got, want, rtol=1e-5)
    with pytest.raises(KilnError, match="label_format"):
        gloss.LogisticLoss(label_format="ternary")


def test_kldiv_loss():
    p = onp.exp(_logsoftmax(TARGET))
    logq = _logsoftmax(PRED)
    want = (p * (onp.log(p) - logq)).mean(axis=1)
    assert_almost_equal(gloss.KLDivLoss()(_arr(logq), _arr(p)), want, rtol=1e-4)
    assert_almost_equal(gloss.KLDivLoss(from_logits=False)(_arr(PRED), _arr(p)), want,
                        rtol=1e-4)


def test_cosine_embedding_loss():
    a, b = PRED, TARGET
    label = onp.array([1, -1, 1, -1])
    cos = (a * b).sum(1) / onp.sqrt((a * a).sum(1) * (b * b).sum(1))
    want = onp.where(label == 1, 1 - cos, onp.maximum(0, cos - 0.1))
    got = gloss.CosineEmbeddingLoss(margin=0.1)(_arr(a), _arr(b), _arr(label))
    assert_almost_equal(got, want, rtol=1e-5, atol=1e-6)


def test_triplet_and_poisson_losses():
    pos, neg = TARGET, RNG.standard_normal((N, C))
    want = onp.maximum(0, ((pos - PRED) ** 2 - (neg - PRED) ** 2).sum(1) + 1)
    assert_almost_equal(gloss.TripletLoss()(_arr(PRED), _arr(pos), _arr(neg)), want, rtol=1e-5)
    counts = RNG.integers(0, 5, (N, C)).astype(float)
    want = (onp.exp(PRED) - counts * PRED).mean(axis=1)
    assert_almost_equal(gloss.PoissonNLLLoss()(_arr(PRED), _arr(counts)), want, rtol=1e-5)
    rate = onp.exp(PRED)
    stirling = onp.where(counts > 1, counts * onp.log(onp.maximum(counts, 1)) - counts +
                         0.5 * onp.log(2 * onp.pi * onp.maximum(counts, 1)), 0)
    want = (rate - counts * onp.log(rate + 1e-8) + stirling).mean(axis=1)
    got = gloss.PoissonNLLLoss(from_logits=False, compute_full=True)(_arr(rate), _arr(counts))
    assert_almost_equal(got, want, rtol=1e-4, atol=1e-5)


# ---- gradients ------------------------------------------------------------------------------

GRAD_CASES = [
    ("l2", lambda p, t: gloss.L2Loss()(p, t), TARGET),
    ("l1", lambda p, t: gloss.L1Loss()(p, t), TARGET),
    ("softmax_ce", lambda p, t: gloss.SoftmaxCrossEntropyLoss()(p, t), CLASSES),
    ("softmax_ce_dense",
     lambda p, t: gloss.SoftmaxCrossEntropyLoss(sparse_label=False)(p, t),
     onp.exp(_logsoftmax(TARGET))),
    ("sigmoid_bce", lambda p, t: gloss.SigmoidBinaryCrossEntropyLoss()(p, t), BINARY),
    ("huber", lambda p, t: gloss.HuberLoss(rho=0.7)(p, t), TARGET),
    ("hinge", lambda p, t: gloss.HingeLoss()(p, t), SIGNS),
    ("sq_hinge", lambda p, t: gloss.SquaredHingeLoss()(p, t), SIGNS),
    ("logistic", lambda p, t: gloss.LogisticLoss()(p, t), SIGNS),
    ("kldiv", lambda p, t: gloss.KLDivLoss(from_logits=False)(p, t),
     onp.exp(_logsoftmax(TARGET))),
]


@pytest.mark.parametrize("name,fn,label", GRAD_CASES, ids=[c[0] for c in GRAD_CASES])
def test_gradient(name, fn, label):
    check_gradient(fn, [PRED, label], wrt=[0])


def test_gradient_with_sample_weight_and_cosine():
    check_gradient(lambda p, t, w: gloss.L2Loss()(p, t, w), [PRED, TARGET, SW], wrt=[0, 2])
    label = onp.array([1.0, -1.0, 1.0, -1.0])
    check_gradient(lambda a, b, y: gloss.CosineEmbeddingLoss()(a, b, y),
                   [PRED, TARGET, label], wrt=[0, 1])


def test_losses_are_hybrid_blocks_and_backprop_through_a_layer():
    from kiln.gluon import HybridBlock, nn

    assert isinstance(gloss.L2Loss(), HybridBlock)
    np.random.seed(0)
    net = nn.Dense(C, in_units=C)
    net.initialize()
    with autograd.record():
        out = gloss.SoftmaxCrossEntropyLoss()(net(_arr(PRED)), _arr(CLASSES))
    out.backward()
    # d/dz of the mean CE over rows is softmax(z) - onehot(label), summed over the batch
    z = net(_arr(PRED)).asnumpy().astype(onp.float64)
    dz = onp.exp(_logsoftmax(z))
    dz[onp.arange(N), CLASSES] -= 1
    assert_almost_equal(net.bias.grad(), dz.sum(0), rtol=1e-4, atol=1e-6)
