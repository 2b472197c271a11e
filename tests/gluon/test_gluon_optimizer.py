"""Optimizers against NumPy reference implementations of their update rules (float64)."""

import math

import numpy as onp
import pytest

from kiln import KilnError, optimizer
from kiln.gluon import Parameter
from kiln.ndarray import wrap
from kiln.optimizer import lr_scheduler
from kiln.test_utils import assert_almost_equal

SHAPE = (5, 4)
STEPS = 4


def _prep(g, w, rescale, clip, wd):
    g = g * rescale
    if clip is not None:
        g = onp.clip(g, -clip, clip)
    return g + wd * w


def _prep_clip_last(g, w, rescale, clip, wd):
    # MXNet's Adam and RMSProp kernels clip after adding the weight decay
    g = g * rescale + wd * w
    return g if clip is None else onp.clip(g, -clip, clip)


# ---- reference rules: one function per optimizer, over a list of gradients -------------------

def ref_sgd(w, grads, lr, momentum=0.0, wd=0.0, rescale=1.0, clip=None):
    w = w.astype(onp.float64)
    mom = onp.zeros_like(w)
    for g in grads:
        g = _prep(g, w, rescale, clip, wd)
        if momentum:
            mom = momentum * mom - lr * g
            w = w + mom
        else:
            w = w - lr * g
    return w


def ref_nag(w, grads, lr, momentum=0.9, wd=0.0, rescale=1.0, clip=None):
    w = w.astype(onp.float64)
    mom = onp.zeros_like(w)
    for g in grads:
        g = _prep(g, w, rescale, clip, wd)
        mom = momentum * mom - lr * g
        w = w + momentum * mom - lr * g
    return w


def ref_adam(w, grads, lr, beta1=0.9, beta2=0.999, epsilon=1e-8, wd=0.0, rescale=1.0,
             clip=None):
    w = w.astype(onp.float64)
    m = onp.zeros_like(w)
    v = onp.zeros_like(w)
    for t, g in enumerate(grads, start=1):
        g = _prep_clip_last(g, w, rescale, clip, wd)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        lr_t = lr * math.sqrt(1 - beta2 ** t) / (1 - beta1 ** t)
        w = w - lr_t * m / (onp.sqrt(v) + epsilon)
    return w


def ref_adamw(w, grads, lr, beta1=0.9, beta2=0.999, epsilon=1e-6, wd=0.0, rescale=1.0,
              clip=None, correct_bias=True):
    w = w.astype(onp.float64)
    m = onp.zeros_like(w)
    v = onp.zeros_like(w)
    for t, g in enumerate(grads, start=1):
        g = _prep(g, w, rescale, clip, 0.0)          # decoupled: no wd in the gradient
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        lr_t = lr * math.sqrt(1 - beta2 ** t) / (1 - beta1 ** t) if correct_bias else lr
        w = w - lr_t * (m / (onp.sqrt(v) + epsilon) + wd * w)
    return w


def ref_rmsprop(w, grads, lr, rho=0.9, momentum=0.9, epsilon=1e-8, centered=False, wd=0.0,
                rescale=1.0, clip=None, clip_weights=None):
    w = w.astype(onp.float64)
    n = onp.zeros_like(w)
    v = onp.zeros_like(w)
    mom = onp.zeros_like(w)
    for g in grads:
        g = _prep_clip_last(g, w, rescale, clip, wd)
        v = rho * v + (1 - rho) * g * g
        if centered:
            n = rho * n + (1 - rho) * g
            mom = momentum * mom - lr * g / onp.sqrt(v - n * n + epsilon)
            w = w + mom
        else:
            w = w - lr * g / onp.sqrt(v + epsilon)
        if clip_weights:
            w = onp.clip(w, -clip_weights, clip_weights)
    return w


def ref_adagrad(w, grads, lr, epsilon=1e-6, wd=0.0, rescale=1.0, clip=None):
    w = w.astype(onp.float64)
    h = onp.zeros_like(w)
    for g in grads:
        g = _prep(g, w, rescale, clip, wd)
        h = h + g * g
        w = w - lr * g / (onp.sqrt(h) + epsilon)
    return w


# (optimizer name, kiln options, reference function, reference options)
CASES = [
    ("sgd", {"learning_rate": 0.1}, ref_sgd, {"lr": 0.1}),
    ("sgd", {"learning_rate": 0.1, "momentum": 0.9, "wd": 0.01}, ref_sgd,
     {"lr": 0.1, "momentum": 0.9, "wd": 0.01}),
    ("sgd", {"learning_rate": 0.05, "momentum": 0.5, "wd": 0.1, "rescale_grad": 0.25,
             "clip_gradient": 0.3}, ref_sgd,
     {"lr": 0.05, "momentum": 0.5, "wd": 0.1, "rescale": 0.25, "clip": 0.3}),
    ("nag", {"learning_rate": 0.1, "momentum": 0.9, "wd": 0.01}, ref_nag,
     {"lr": 0.1, "momentum": 0.9, "wd": 0.01}),
    ("nag", {"learning_rate": 0.1, "momentum": 0.7, "clip_gradient": 0.5, "rescale_grad": 2.0},
     ref_nag, {"lr": 0.1, "momentum": 0.7, "clip": 0.5, "rescale": 2.0}),
    ("adam", {"learning_rate": 0.01}, ref_adam, {"lr": 0.01}),
    ("adam", {"learning_rate": 0.01, "beta1": 0.8, "beta2": 0.99, "epsilon": 1e-6, "wd": 0.05,
              "clip_gradient": 0.4, "rescale_grad": 0.5}, ref_adam,
     {"lr": 0.01, "beta1": 0.8, "beta2": 0.99, "epsilon": 1e-6, "wd": 0.05, "clip": 0.4,
      "rescale": 0.5}),
    ("adamw", {"learning_rate": 0.01, "wd": 0.1}, ref_adamw, {"lr": 0.01, "wd": 0.1}),
    ("adamw", {"learning_rate": 0.01, "wd": 0.1, "correct_bias": False, "clip_gradient": 0.2},
     ref_adamw, {"lr": 0.01, "wd": 0.1, "correct_bias": False, "clip": 0.2}),
    ("rmsprop", {"learning_rate": 0.01, "wd": 0.01}, ref_rmsprop, {"lr": 0.01, "wd": 0.01}),
    ("rmsprop", {"learning_rate": 0.01, "wd": 0.5, "clip_gradient": 0.3, "epsilon": 1e-3},
     ref_rmsprop, {"lr": 0.01, "wd": 0.5, "clip": 0.3, "epsilon": 1e-3}),
    ("rmsprop", {"learning_rate": 0.01, "centered": True, "momentum": 0.8, "rho": 0.95,
                 "clip_weights": 0.6, "rescale_grad": 0.5},
     ref_rmsprop, {"lr": 0.01, "centered": True, "momentum": 0.8, "rho": 0.95,
                   "clip_weights": 0.6, "rescale": 0.5}),
    ("adagrad", {"learning_rate": 0.1, "wd": 0.02, "clip_gradient": 0.5}, ref_adagrad,
     {"lr": 0.1, "wd": 0.02, "clip": 0.5}),
]


def _data(seed=0, dtype=onp.float32):
    rng = onp.random.default_rng(seed)
    w = rng.standard_normal(SHAPE).astype(dtype)
    grads = [rng.standard_normal(SHAPE).astype(dtype) for _ in range(STEPS)]
    return w, grads


def _run(opt, w0, grads, index=0):
    weight = wrap(w0.copy())
    buf = weight._data
    updater = optimizer.get_updater(opt)
    for g in grads:
        grad = wrap(g.copy())
        updater(index, grad, weight)
        assert_almost_equal(grad, g, rtol=0, atol=0)      # the gradient is left alone
    assert weight._data is buf, "the update must write into the weight's own buffer"
    return weight


@pytest.mark.parametrize("name,kw,ref,ref_kw", CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_update_matches_reference(name, kw, ref, ref_kw):
    w0, grads = _data()
    weight = _run(optimizer.create(name, **kw), w0, grads)
    expected = ref(w0, grads, **ref_kw)
    assert_almost_equal(weight, expected, rtol=1e-5, atol=1e-6)
    assert weight.dtype == onp.float32


@pytest.mark.parametrize("name,kw,ref,ref_kw",
                         [CASES[i] for i in (1, 3, 6, 7, 9, 10, 12)],
                         ids=[CASES[i][0] for i in (1, 3, 6, 7, 9, 10, 12)])
def test_lr_mult_and_wd_mult_from_parameter(name, kw, ref, ref_kw):
    w0, grads = _data(1)
    p = Parameter("weight", shape=SHAPE, lr_mult=0.5, wd_mult=3.0)
    opt = optimizer.create(name, **kw, param_dict={0: p})
    weight = _run(opt, w0, grads)
    ref_kw = dict(ref_kw, lr=ref_kw["lr"] * 0.5, wd=ref_kw.get("wd", 0.0) * 3.0)
    assert_almost_equal(weight, ref(w0, grads, **ref_kw), rtol=1e-5, atol=1e-6)


def test_lr_mult_by_index_and_name():
    w0, grads = _data(2)
    opt = optimizer.SGD(learning_rate=0.1, param_idx2name={3: "fc.weight"})
    opt.set_lr_mult({0: 2.0, "fc.weight": 0.0})
    opt.set_wd_mult({})
    w_a = _run(opt, w0, grads, index=0)
    assert_almost_equal(w_a, ref_sgd(w0, grads, lr=0.2), rtol=1e-5, atol=1e-6)
    w_b = _run(opt, w0, grads, index=3)
    assert_almost_equal(w_b, w0, rtol=0, atol=0)        # lr_mult 0 by name: frozen


def test_update_counts_and_adam_time_step_per_index():
    opt = optimizer.Adam(learning_rate=0.01)
    w0, grads = _data(3)
    updater = optimizer.get_updater(opt)
    a, b = wrap(w0.copy()), wrap(w0.copy())
    updater(0, wrap(grads[0]), a)
    updater(0, wrap(grads[1]), a)
    updater(1, wrap(grads[0]), b)        # index 1 starts at t = 1 although num_update is 2
    assert opt.num_update == 2
    assert opt._index_update_count == {0: 2, 1: 1}
    assert_almost_equal(b, ref_adam(w0, grads[:1], lr=0.01), rtol=1e-5, atol=1e-6)


def test_list_update_form():
    w0, grads = _data(4)
    opt = optimizer.SGD(learning_rate=0.1, momentum=0.9)
    ws = [wrap(w0.copy()), wrap(w0.copy() * 2)]
    states = [opt.create_state(i, w) for i, w in enumerate(ws)]
    opt.update([0, 1], ws, [wrap(grads[0]), wrap(grads[1])], states)
    assert_almost_equal(ws[0], ref_sgd(w0, grads[:1], 0.1, 0.9), rtol=1e-5, atol=1e-6)
    assert_almost_equal(ws[1], ref_sgd(w0 * 2, grads[1:2], 0.1, 0.9), rtol=1e-5, atol=1e-6)


def test_states_are_float32():
    for name in ("sgd", "nag", "adam", "adamw", "rmsprop", "adagrad"):
        opt = optimizer.create(name, momentum=0.9) if name in ("sgd", "nag") else \
            optimizer.create(name)
        state = opt.create_state(0, wrap(onp.zeros(SHAPE, onp.float32)))
        arrays = state if isinstance(state, tuple) else (state,)
        assert all(a.dtype == onp.float32 and a.shape == SHAPE for a in arrays), name


def test_multi_precision_keeps_float32_master_copy():
    w0, grads = _data(5)
    w16 = w0.astype(onp.float16)
    opt = optimizer.SGD(learning_rate=0.1, momentum=0.9, multi_precision=True)
    weight = wrap(w16.copy())
    updater = optimizer.get_updater(opt)
    for g in grads:
        updater(0, wrap(g.astype(onp.float16)), weight)
    master, mom = updater.states[0]
    assert master.dtype == onp.float32 and mom.dtype == onp.float32
    expected = ref_sgd(w16.astype(onp.float64), [g.astype(onp.float16) for g in grads],
                       0.1, 0.9)
    assert_almost_equal(master, expected, rtol=1e-5, atol=1e-5)
    assert weight.dtype == onp.float16
    assert_almost_equal(weight, expected.astype(onp.float16), rtol=1e-3, atol=1e-3)


def test_float16_without_multi_precision_warns():
    opt = optimizer.SGD(learning_rate=0.1)
    with pytest.warns(UserWarning, match="multi_precision=True"):
        opt.create_state_multi_precision(0, wrap(onp.zeros(3, onp.float16)))


def test_scheduler_drives_learning_rate():
    w0, grads = _data(6)
    sched = lr_scheduler.FactorScheduler(step=1, factor=0.5)
    opt = optimizer.SGD(learning_rate=1.0, lr_scheduler=sched)
    assert sched.base_lr == 1.0                     # an explicit learning_rate wins
    weight = _run(opt, w0, grads)
    # the rate at update t (1-based) is scheduler(t): 1, 0.5, 0.25, 0.125
    w = w0.astype(onp.float64)
    for t, g in enumerate(grads, start=1):
        w = w - 0.5 ** (t - 1) * g
    assert_almost_equal(weight, w, rtol=1e-5, atol=1e-6)
    with pytest.raises(KilnError, match="lr_scheduler"):
        opt.set_learning_rate(0.1)


def test_set_learning_rate_and_defaults():
    assert optimizer.SGD().learning_rate == 0.01
    assert optimizer.NAG().learning_rate == 0.1
    assert optimizer.Adam().learning_rate == 0.001
    assert optimizer.AdaGrad().learning_rate == 0.01
    opt = optimizer.create("SGD", learning_rate=0.3)
    opt.set_learning_rate(0.7)
    assert opt.learning_rate == 0.7


def test_registry_and_errors():
    assert isinstance(optimizer.create("adamw"), optimizer.AdamW)
    assert isinstance(optimizer.create("RMSProp"), optimizer.RMSProp)
    with pytest.raises(KilnError, match="unknown optimizer 'sgdd'.*sgd"):
        optimizer.create("sgdd")
    with pytest.raises(KilnError, match="unknown option.*momentun"):
        optimizer.create("sgd", momentun=0.9)
    with pytest.raises(KilnError, match="momentum must be in"):
        optimizer.SGD(momentum=1.5)

    @optimizer.register
    class Frozen(optimizer.Optimizer):
        def _step(self, index, weight, grad, state, lr, wd):
            pass

    assert isinstance(optimizer.create("frozen"), Frozen)


def test_shape_mismatch_names_parameter():
    opt = optimizer.SGD(param_idx2name={0: "dense0.weight"})
    with pytest.raises(KilnError, match=r"gradient of shape \(3,\).*dense0.weight.*\(2,\)"):
        opt.update(0, wrap(onp.zeros(2, onp.float32)), wrap(onp.zeros(3, onp.float32)), None)


def test_rmsprop_accepts_mxnet1_names():
    opt = optimizer.RMSProp(gamma1=0.8, gamma2=0.7)
    assert (opt.rho, opt.momentum) == (0.8, 0.7)
    assert optimizer.AdaGrad(eps=1e-3).epsilon == 1e-3


def test_updater_states_round_trip():
    w0, grads = _data(7)
    opt = optimizer.Adam(learning_rate=0.01)
    updater = optimizer.get_updater(opt)
    weight = wrap(w0.copy())
    updater(0, wrap(grads[0]), weight)
    blob = updater.get_states()
    assert blob[:8] == (0x112).to_bytes(8, "little")   # MXNet's array-list format, not pickle
    opt2 = optimizer.Adam(learning_rate=0.01)
    updater2 = optimizer.get_updater(opt2)
    updater2.set_states(blob)
    assert opt2.num_update == 1
    weight2 = wrap(weight._data.copy())
    updater(0, wrap(grads[1]), weight)
    updater2(0, wrap(grads[1]), weight2)
    assert_almost_equal(weight2, weight, rtol=0, atol=0)
    with pytest.raises(KilnError, match="states of a Adam optimizer cannot be loaded into a SGD"):
        optimizer.get_updater(optimizer.SGD()).set_states(blob)


def test_subnormal_states_are_flushed():
    # momenta of parameters with zero gradient decay into subnormals, which are slow on x86
    opt = optimizer.Adam(learning_rate=0.01)
    updater = optimizer.get_updater(opt)
    weight = wrap(onp.ones(4, onp.float32))
    updater(0, wrap(onp.full(4, 1.0, onp.float32)), weight)
    mean, var = updater.states[0]
    mean._data[:] = onp.float32(1e-40)                   # subnormal in float32
    zero = wrap(onp.zeros(4, onp.float32))
    for _ in range(62):
        updater(0, zero, weight)
    assert (mean._data != 0).all()                       # not yet: flushed every 64 updates
    updater(0, zero, weight)
    assert (mean._data == 0).all()
    assert (var._data > 0).all()                         # normal values are kept
