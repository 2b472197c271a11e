"""Gradients take the fresh buffers their backward pass made (a hybridized block's compiled
backward graph, or eager gradient rules) instead of a copy (ndarray._accumulate_grad); what
users see does not change."""

from __future__ import annotations

import numpy as onp

from kiln import autograd, gluon, np, npx
from kiln.gluon import nn


def _net(backend, grad_req="write"):
    net = nn.HybridSequential()
    net.add(nn.Dense(8, activation="relu"), nn.Dense(3))
    net.initialize()
    x = np.array(onp.random.default_rng(0).standard_normal((5, 4)).astype("float32"))
    net(x)
    for p in net.collect_params().values():
        p.grad_req = grad_req
    eager = [(p.data().asnumpy()) for p in net.collect_params().values()]
    net.hybridize(backend=backend)
    return net, x, eager


def _loss(net, x):
    with autograd.record():
        loss = (net(x) ** 2).sum()
    loss.backward()


def _reference_grads(net, x):
    ref = nn.HybridSequential()
    ref.add(nn.Dense(8, activation="relu"), nn.Dense(3))
    ref.initialize()
    ref(x)
    for p, q in zip(net.collect_params().values(), ref.collect_params().values()):
        q.set_data(p.data())
    _loss(ref, x)
    return [q.grad().asnumpy() for q in ref.collect_params().values()]


def test_write_takes_fresh_buffers_and_keeps_the_gradient_objects(backend):
    net, x, _ = _net(backend)
    params = list(net.collect_params().values())
    holders = [p.grad() for p in params]
    first = [h._data for h in holders]
    _loss(net, x)
    _loss(net, x)
    assert all(h._data is not f for h, f in zip(holders, first))   # taken over, not copied
    ref = _reference_grads(net, x)
    seen = []
    for p, holder, r in zip(params, holders, ref):
        assert p.grad() is holder                      # the same wrapper object
        onp.testing.assert_allclose(holder.asnumpy(), r, rtol=1e-5, atol=1e-6)
        buf = holder._data
        assert buf.flags.c_contiguous and buf.flags.writeable
        assert not onp.shares_memory(buf, p.data()._data)
        assert all(not onp.shares_memory(buf, other) for other in seen)
        seen.append(buf)
    # zero_grad and the trainer work on the buffers taken over
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    before = [p.data().asnumpy() for p in params]
    trainer.step(1)
    for p, b, r in zip(params, before, ref):
        onp.testing.assert_allclose(p.data().asnumpy(), b - 0.1 * r, rtol=1e-5, atol=1e-6)
    net.zero_grad()
    assert all(not p.grad().asnumpy().any() for p in params)


def test_add_accumulates_in_place(backend):
    net, x, _ = _net(backend, grad_req="add")
    params = list(net.collect_params().values())
    buffers = [p.grad()._data for p in params]
    _loss(net, x)
    _loss(net, x)
    ref = _reference_grads(net, x)
    for p, buf, r in zip(params, buffers, ref):
        assert p.grad()._data is buf                   # 'add' writes into the same memory
        onp.testing.assert_allclose(buf, 2 * r, rtol=1e-5, atol=1e-6)


def test_gradients_returned_by_autograd_grad_are_never_taken_over(backend):
    """autograd.grad hands the cotangents to the caller: using one as a head gradient later
    must copy it, not alias it."""
    net, x, _ = _net(backend)
    w = net[0].weight.data()
    with autograd.record():
        loss = (net(x) ** 2).sum()
    (gw,) = autograd.grad(loss, [w])
    v = np.array(onp.zeros(gw.shape, "float32"))
    v.attach_grad()
    with autograd.record():
        y = v * 1.0
    y.backward(gw)
    assert not onp.shares_memory(v.grad._data, gw._data)
    v.grad[:] = 0
    assert gw.asnumpy().any()


def test_a_parameter_used_twice_sums_its_cotangents(backend):
    """The same input reached twice: the sum is a new array, taken over or copied, right."""
    class Twice(gluon.HybridBlock):
        def __init__(self):
            super().__init__()
            self.dense = nn.Dense(4)

        def forward(self, x):
            return self.dense(x) + self.dense(npx.relu(x))

    net = Twice()
    net.initialize()
    x = np.array(onp.random.default_rng(1).standard_normal((3, 4)).astype("float32"))
    net(x)
    with autograd.record():
        (net(x) ** 2).sum().backward()
    ref = net.dense.weight.grad().asnumpy().copy()
    net.hybridize(backend=backend)
    for _ in range(2):
        with autograd.record():
            (net(x) ** 2).sum().backward()
        onp.testing.assert_allclose(net.dense.weight.grad().asnumpy(), ref, rtol=1e-5,
                                    atol=1e-6)


def test_eager_write_takes_a_fresh_cotangent_buffer():
    """backward() without retain_graph: a variable takes the buffer its gradient rule made
    (no copy), and its gradient stays the same object."""
    x = np.array(onp.ones((2, 3), "float32"))
    x.attach_grad()
    holder, buf = x.grad, x.grad._data
    with autograd.record():
        y = (x * 2).sum()
    y.backward()
    assert x.grad is holder and holder._data is not buf
    assert (holder.asnumpy() == 2).all()


def test_eager_never_takes_a_buffer_that_something_else_holds():
    x, a, b = (np.array(onp.ones((2, 3), "float32")) for _ in range(3))
    for v in (x, a, b):
        v.attach_grad()
    # the user's head gradient passed straight through (x + 0.0 hands on its cotangent)
    head = np.array(onp.full((2, 3), 3.0, "float32"))
    with autograd.record():
        y = x + 0.0
    y.backward(head)
    assert not onp.shares_memory(x.grad._data, head._data)
    x.grad[:] = 7
    assert (head.asnumpy() == 3).all()
    # one cotangent for two variables (a + b): each gets its own buffer
    with autograd.record():
        z = a + b
    z.backward()
    assert not onp.shares_memory(a.grad._data, b.grad._data)
    a.grad[:] = 0
    assert (b.grad.asnumpy() == 1).all()
    # retain_graph: the graph may run again, so its cotangents are copied, never taken
    buf = x.grad._data
    with autograd.record():
        w = (x * 5).sum()
    w.backward(retain_graph=True)
    assert x.grad._data is buf and (buf == 5).all()
