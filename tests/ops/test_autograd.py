"""The autograd API: recording scopes, gradient buffers, backward, grad, Function, errors."""

from __future__ import annotations

import numpy as onp
import pytest
from np_compare import assert_matches

from kiln import autograd, np, npx
from kiln.base import KilnError


def test_recording_and_training_scopes_nest_and_restore():
    assert not autograd.is_recording() and not autograd.is_training()
    with autograd.record():
        assert autograd.is_recording() and autograd.is_training()
        with autograd.pause():
            assert not autograd.is_recording() and not autograd.is_training()
            with autograd.train_mode():
                assert autograd.is_training() and not autograd.is_recording()
        with autograd.predict_mode():
            assert autograd.is_recording() and not autograd.is_training()
        assert autograd.is_recording() and autograd.is_training()
    with autograd.record(train_mode=False):
        assert autograd.is_recording() and not autograd.is_training()
        with autograd.pause(train_mode=True):
            assert autograd.is_training()
    assert not autograd.is_recording() and not autograd.is_training()


def test_scopes_restore_after_an_exception():
    with pytest.raises(RuntimeError), autograd.record():
        raise RuntimeError("boom")
    assert not autograd.is_recording()


def test_set_recording_and_set_training_return_the_previous_value():
    assert autograd.set_recording(True) is False
    assert autograd.set_recording(False) is True
    assert autograd.set_training(True) is False
    assert autograd.set_training(False) is True


def test_simple_backward_writes_grad():
    x = np.array([1.0, 2.0, 3.0])
    x.attach_grad()
    assert x.grad_req == "write"
    assert_matches(x.grad, onp.zeros(3, "float32"))
    with autograd.record():
        y = (x * x).sum()
    y.backward()
    assert_matches(x.grad, onp.array([2.0, 4.0, 6.0], "float32"))
    with autograd.record():
        y = (x * 3).sum()
    y.backward()  # 'write' replaces the previous gradient
    assert_matches(x.grad, onp.full(3, 3.0, "float32"))


def test_grad_req_add_accumulates_and_null_detaches():
    x = np.array([1.0, 2.0])
    x.attach_grad(grad_req="add")
    for _ in range(3):
        with autograd.record():
            y = (x * x).sum()
        y.backward()
    assert_matches(x.grad, 3 * onp.array([2.0, 4.0], "float32"))
    x.attach_grad(grad_req="null")
    assert x.grad is None and x.grad_req == "null"
    with autograd.record():
        z = x * 2
    assert z._node is None
    with pytest.raises(KilnError, match="grad_req"):
        x.attach_grad(grad_req="sometimes")


def test_gradients_accumulate_over_several_uses_of_one_variable():
    x = np.array([2.0, -1.0])
    x.attach_grad()
    with autograd.record():
        y = x * x + 3 * x + np.sin(x) * x
    y.backward()
    xv = onp.array([2.0, -1.0])
    want = 2 * xv + 3 + onp.cos(xv) * xv + onp.sin(xv)
    assert_matches(x.grad, want.astype("float32"), rtol=1e-5)


def test_head_gradients_and_several_heads():
    x = np.array([1.0, 2.0])
    x.attach_grad()
    with autograd.record():
        y = x * 2
    y.backward(np.array([10.0, 1.0]))
    assert_matches(x.grad, onp.array([20.0, 2.0], "float32"))
    with autograd.record():
        a = x * 2
        b = x * x
    autograd.backward([a, b], [np.ones(2), np.array([1.0, 0.0])])
    assert_matches(x.grad, onp.array([4.0, 2.0], "float32"))
    with autograd.record():
        c = x * 3
    c.backward()  # a non-scalar head without head gradient: ones, as MXNet
    assert_matches(x.grad, onp.full(2, 3.0, "float32"))
    with autograd.record():
        d = x * 3
    with pytest.raises(KilnError, match="head gradient"):
        d.backward(np.ones(3))


def test_second_backward_needs_retain_graph():
    x = np.array([1.0, 2.0])
    x.attach_grad(grad_req="add")
    with autograd.record():
        y = (np.exp(x) * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    want = 2 * (onp.exp([1.0, 2.0]) * (1 + onp.array([1.0, 2.0])))
    assert_matches(x.grad, want.astype("float32"), rtol=1e-5)
    with pytest.raises(KilnError, match="retain_graph=True"):
        y.backward()


def test_backward_outside_record_is_a_clear_error():
    x = np.array([1.0, 2.0])
    x.attach_grad()
    y = (x * 2).sum()  # computed outside record()
    with pytest.raises(KilnError, match="autograd.record"):
        y.backward()
    z = np.array([1.0]) * 2  # nothing needs a gradient
    with pytest.raises(KilnError, match="attach_grad"):
        z.backward()


def test_backward_of_a_leaf_head():
    x = np.array([1.0, 2.0])
    x.attach_grad()
    x.backward()
    assert_matches(x.grad, onp.ones(2, "float32"))


def test_autograd_grad_returns_without_writing():
    x = np.array([1.0, 2.0])
    y = np.array([3.0, 4.0])
    x.attach_grad()
    y.attach_grad()
    with autograd.record():
        z = (x * y).sum()
    gx, gy = autograd.grad(z, [x, y])
    assert_matches(gx, onp.array([3.0, 4.0], "float32"))
    assert_matches(gy, onp.array([1.0, 2.0], "float32"))
    assert_matches(x.grad, onp.zeros(2, "float32"))  # .grad untouched
    with autograd.record():
        w = (x * 2).sum()
    gx_only = autograd.grad(w, x)
    assert_matches(gx_only, onp.full(2, 2.0, "float32"))
    with autograd.record():
        v = (x * 2).sum()
    unused = autograd.grad(v, [y])  # a variable the head does not depend on: zeros
    assert_matches(unused[0], onp.zeros(2, "float32"))


def test_create_graph_gives_second_derivatives():
    x = np.array([0.5, 1.0, 2.0])
    x.attach_grad()
    with autograd.record():
        y = (x ** 3).sum()
        (g,) = autograd.grad(y, [x], create_graph=True)   # 3 x^2, recorded
        z = (g * g).sum()                                  # sum 9 x^4
    z.backward()
    assert_matches(g, 3 * onp.array([0.25, 1.0, 4.0], "float32"))
    assert_matches(x.grad, 36 * onp.array([0.125, 1.0, 8.0], "float32"), rtol=1e-5)


def test_second_derivative_of_tanh_via_grad_twice():
    x = np.array([0.3, -0.7])
    x.attach_grad()
    with autograd.record():
        y = np.tanh(x)
        (dy,) = autograd.grad(y, [x], create_graph=True)
    dy.backward()
    t = onp.tanh(onp.array([0.3, -0.7]))
    assert_matches(x.grad, (-2 * t * (1 - t * t)).astype("float32"), rtol=1e-5)


def test_detach_and_stop_gradient_cut_the_graph():
    x = np.array([1.0, 2.0])
    x.attach_grad()
    with autograd.record():
        y = x * x
        z = (y.detach() * x).sum()
    assert y.detach()._node is None
    z.backward()
    assert_matches(x.grad, onp.array([1.0, 4.0], "float32"))
    with autograd.record():
        w = (npx.stop_gradient(x * x) + x).sum()
    w.backward()
    assert_matches(x.grad, onp.ones(2, "float32"))


def test_pause_inside_record_records_nothing():
    x = np.array([1.0, 2.0])
    x.attach_grad()
    with autograd.record():
        with autograd.pause():
            c = x * 10
        y = (c * x).sum()
    assert c._node is None
    y.backward()
    assert_matches(x.grad, onp.array([10.0, 20.0], "float32"))


def test_gradient_through_integer_and_boolean_indexing():
    x = np.array([1.0, -2.0, 3.0])
    x.attach_grad()
    with autograd.record():
        y = x[np.array([2, 2, 0], dtype="int64")].sum() + (x[x < 0] * 5).sum()
    y.backward()
    assert_matches(x.grad, onp.array([1.0, 5.0, 2.0], "float32"))


def test_integer_inputs_get_no_gradient():
    i = np.array([1, 2], dtype="int32")
    x = np.array([1.0, 2.0])
    x.attach_grad()
    with autograd.record():
        y = (x * i).sum()
    y.backward()
    assert_matches(x.grad, onp.array([1.0, 2.0], "float32"))


def test_mark_variables():
    x = np.array([1.0, 2.0])
    g = np.zeros(2)
    autograd.mark_variables([x], [g])
    with autograd.record():
        y = (x * 4).sum()
    y.backward()
    assert x.grad is g
    assert_matches(g, onp.full(2, 4.0, "float32"))


def test_training_flag_of_backward():
    seen = []

    class Probe(autograd.Function):
        def forward(self, x):
            return x * 1

        def backward(self, dy):
            seen.append(autograd.is_training())
            return dy

    x = np.array([1.0])
    x.attach_grad()
    with autograd.record():
        y = Probe()(x)
    y.backward(train_mode=False)
    assert seen == [False]


class Sigmoid(autograd.Function):
    """A user-defined operator with its own backward."""

    def forward(self, x):
        y = 1 / (1 + np.exp(-x))
        self.save_for_backward(y)
        return y

    def backward(self, dy):
        (y,) = self.saved_tensors
        return dy * y * (1 - y)


def test_autograd_function():
    x = np.array([-1.0, 0.0, 2.0])
    x.attach_grad()
    with autograd.record():
        y = Sigmoid()(x)
        z = (y * 2).sum()
    z.backward()
    s = 1 / (1 + onp.exp(-onp.array([-1.0, 0.0, 2.0])))
    assert_matches(y, s.astype("float32"), rtol=1e-6)
    assert_matches(x.grad, (2 * s * (1 - s)).astype("float32"), rtol=1e-5)
    assert_matches(Sigmoid()(np.array([0.0])), onp.array([0.5], "float32"))  # outside record


def test_autograd_function_with_several_inputs_and_outputs():
    class MulAdd(autograd.Function):
        def forward(self, a, b):
            self.save_for_backward(a, b)
            return a * b, a + b

        def backward(self, d_prod, d_sum):
            a, b = self.saved_tensors
            return d_prod * b + d_sum, d_prod * a + d_sum

    a, b = np.array([2.0, 3.0]), np.array([5.0, 7.0])
    a.attach_grad()
    b.attach_grad()
    with autograd.record():
        p, s = MulAdd()(a, b)
        out = (p + 10 * s).sum()
    out.backward()
    assert_matches(a.grad, onp.array([15.0, 17.0], "float32"))
    assert_matches(b.grad, onp.array([12.0, 13.0], "float32"))


def test_function_base_class_requires_forward_and_backward():
    with pytest.raises(NotImplementedError):
        autograd.Function()(np.ones(1))


def test_products_skip_the_cotangents_nobody_needs():
    """A dense layer's (and matmul's) rule computes no product for an input that is neither a
    variable nor computed from one; the gradients that are wanted stay exact."""
    from kiln.ops.linalg import Matmul
    from kiln.ops.nn import FullyConnected

    rng = onp.random.default_rng(0)
    x = np.array(rng.standard_normal((5, 3)).astype("float32"))
    w = np.array(rng.standard_normal((4, 3)).astype("float32"))
    b = np.array(rng.standard_normal(4).astype("float32"))
    g = np.array(rng.standard_normal((5, 4)).astype("float32"))
    w.attach_grad()
    attrs = {"num_hidden": 4, "no_bias": False, "flatten": True}
    gx, gw, gb = FullyConnected.grad((x, w, b), None, (g,), **attrs)
    assert gx is None and gb is None
    onp.testing.assert_allclose(gw.asnumpy(), g.asnumpy().T @ x.asnumpy(), rtol=1e-5)
    ga, gm = Matmul.grad((g, w), None, (np.array(onp.ones((5, 3), "float32")),))
    assert ga is None and gm is not None
    assert autograd.needs_cotangent(w) and not autograd.needs_cotangent(x)

    for track_x in (False, True):
        x2 = np.array(x.asnumpy())
        if track_x:
            x2.attach_grad()
        with autograd.record():
            h = npx.fully_connected(x2, w, b, num_hidden=4)
            loss = (np.matmul(h, np.ones((4, 2))) ** 2).sum()
        loss.backward()
        hn = x.asnumpy() @ w.asnumpy().T + b.asnumpy()
        gh = 2 * (hn @ onp.ones((4, 2))) @ onp.ones((2, 4))
        onp.testing.assert_allclose(w.grad.asnumpy(), gh.T @ x.asnumpy(), rtol=1e-4)
        if track_x:
            onp.testing.assert_allclose(x2.grad.asnumpy(), gh @ w.asnumpy(), rtol=1e-4)
