"""Symbolic control flow: `npx.foreach`, `npx.while_loop`, `npx.cond` (and `F.contrib`'s).

Each is checked eagerly (a Python loop, recorded op by op) against the compiled graph (one node
with its bodies as subgraphs), outputs and gradients, and against central finite differences;
then the edge cases (zero and one steps, `max_iterations` reached, nesting), the IR, the passes
inside bodies, Gluon blocks with parameters used in bodies, and the error messages.
"""

from __future__ import annotations

import importlib.util

import numpy as onp
import pytest
from hybrid_helpers import assert_all_same, check_jit, gradients

import kiln
from kiln import autograd, gluon, np, npx
from kiln.base import KilnError, ShapeError, SymbolicValueError
from kiln.gluon import nn
from kiln.graph.ir import format_graph, parse_graph, verify
from kiln.test_utils import check_gradient, check_second_order

HAS_NATIVE = importlib.util.find_spec("kiln.backend.native") is not None


def _rand(*shape, seed=0, dtype="float32"):
    return np.array(onp.random.default_rng(seed).standard_normal(shape).astype(dtype))


def _count(graph, op: str) -> int:
    """Nodes of `op` in the graph and, recursively, in its bodies."""
    return sum((n.op == op) + sum(_count(g, op) for g in n.subgraphs) for n in graph.nodes)


# ----------------------------------------------------------------------------------------------
# the functions under test
# ----------------------------------------------------------------------------------------------

W = _rand(3, 3, seed=7) * 0.5


def rnn(x, h):
    """A tanh recurrence: per-step output and final state (captures W)."""
    def step(x_t, states):
        h_new = np.tanh(x_t @ W + states[0])
        return h_new * 2.0, [h_new]
    outs, states = npx.foreach(step, x, [h])
    return outs, states[0]


def two_data_two_states(a, b, s):
    def step(data, states):
        x_t, y_t = data
        s0, s1 = states
        return [x_t * s0, y_t.sum()], [s0 + y_t, s1 * 0.5 + x_t]
    (out0, out1), (s0, s1) = npx.foreach(step, [a, b], [s, s * 2.0])
    return out0, out1, s0, s1


def doubling(x, s, count=False):
    """Doubles until the sum passes 10: a data-dependent trip count."""
    def cond(i, v):
        return v.sum() < 10.0

    def func(i, v):
        return [v * x], [i + 1, v * 2.0 + x]
    outs, (i, v) = npx.while_loop(cond, func, [np.zeros(()), s], max_iterations=6)
    return (outs[0], v, i) if count else (outs[0], v)


def branch(x, y):
    return npx.cond(x.sum() > y.sum(), lambda a, b: a * b + W[0], lambda a, b: np.exp(a - b),
                    [x, y])


def cond_in_foreach(x, h):
    def step(x_t, states):
        h_new = npx.cond(x_t.sum() > 0, lambda a, s: np.tanh(a + s), lambda a, s: s * a,
                         [x_t, states[0]])
        return h_new, [h_new]
    outs, states = npx.foreach(step, x, [h])
    return outs, states[0]


def foreach_in_while(x, s):
    def func(i, v):
        inner, [last] = npx.foreach(lambda x_t, st: (x_t * st[0], [st[0] + x_t * v]), x, [v])
        return [inner.sum(axis=0)], [i + 1, np.sin(last)]
    outs, (i, v) = npx.while_loop(lambda i, v: i < 3, func, [np.zeros(()), s],
                                  max_iterations=5)
    return outs[0], v


# ----------------------------------------------------------------------------------------------
# eager against compiled, outputs and gradients; finite differences
# ----------------------------------------------------------------------------------------------

CASES = [
    pytest.param(rnn, (_rand(5, 2, 3), _rand(2, 3, seed=1)), id="foreach"),
    pytest.param(two_data_two_states, (_rand(4, 3), _rand(4, 3, seed=1), _rand(3, seed=2)),
                 id="foreach-nested-lists"),
    pytest.param(doubling, (_rand(2, seed=3) * 0.1, np.array([0.5, 0.25])), id="while_loop"),
    pytest.param(branch, (_rand(2, 3), _rand(2, 3, seed=1) + 1), id="cond-else"),
    pytest.param(branch, (_rand(2, 3) + 1, _rand(2, 3, seed=1)), id="cond-then"),
    pytest.param(cond_in_foreach, (_rand(6, 3), _rand(3, seed=1)), id="cond-in-foreach"),
    pytest.param(foreach_in_while, (_rand(4, 3) * 0.5, _rand(3, seed=1)), id="foreach-in-while"),
]


@pytest.mark.parametrize("fn, xs", CASES)
def test_compiled_equals_eager_outputs_and_gradients(fn, xs):
    check_jit(fn, *xs)
    check_jit(fn, *xs, static_alloc=True)


@pytest.mark.parametrize("fn, xs", CASES)
def test_gradients_match_finite_differences(fn, xs):
    check_gradient(fn, xs)
    check_gradient(kiln.jit(fn), xs)


@pytest.mark.skipif(not HAS_NATIVE, reason="kiln.backend.native is not on this branch")
@pytest.mark.parametrize("fn, xs", CASES)
def test_native_backend_equals_eager(fn, xs):
    check_jit(fn, *xs, backend="native")



def _has_compiler() -> bool:
    if not HAS_NATIVE:
        return False
    from kiln.backend.native.toolchain import compiler_available

    return compiler_available()


def _compiled_native(fn, xs):
    """The native forward and backward programs of `fn` compiled by kiln.jit under record()."""
    from kiln.backend import get_backend
    from kiln.graph.passes import run_pipeline

    compiled = kiln.jit(fn, backend="native")
    xs = [x.copy() for x in xs]
    for x in xs:
        x.attach_grad()
    with autograd.record():
        compiled(*xs)
    entry = list(compiled._cache.entries.values())[-1]
    backward = get_backend("native").compile(
        run_pipeline(entry.diff.backward, training=True), {}, {"label": "backward"})
    return entry.compiled, backward


@pytest.mark.skipif(not _has_compiler(), reason="needs the native backend and a C compiler")
@pytest.mark.parametrize("fn, xs", CASES)
def test_native_backend_runs_loops_and_branches_in_c(fn, xs):
    """Loops become C loops and branches C `if`s, forward and backward: no node calls back
    into Python (the backward of a while_loop is a foreach)."""
    forward, backward = _compiled_native(fn, xs)
    for program in (forward, backward):
        assert program.info["python_nodes"] == {}, program.info["python_nodes"]
        assert {"foreach", "while_loop", "cond"} & set(program.info["lowered"])
    assert "for (long s = 0; s < steps; s++)" in backward.source or \
        "cond_then" in backward.source


@pytest.mark.skipif(not _has_compiler(), reason="needs the native backend and a C compiler")
def test_native_loop_whose_body_has_no_c_lowering_runs_in_python_and_agrees():
    def f(x, h):
        outs, states = npx.foreach(lambda x_t, s: (np.cumsum(x_t) * s[0], [s[0] + x_t]), x, [h])
        return outs, states[0]
    xs = (_rand(4, 3), _rand(3, seed=1))
    forward, _ = _compiled_native(f, xs)
    assert forward.info["python_nodes"] == {"foreach": 1}
    check_jit(f, *xs, backend="native")


@pytest.mark.skipif(not _has_compiler(), reason="needs the native backend and a C compiler")
@pytest.mark.parametrize("steps", [0, 1, 4])
def test_native_foreach_of_zero_one_and_more_steps(steps):
    """Forward and (through check_jit's gradients) the reverse loop of the backward."""
    def f(x, h):
        outs, states = npx.foreach(lambda x_t, s: (np.tanh(x_t + s[0]), [s[0] * 0.5 + x_t]),
                                   x, [h])
        return outs, states[0]
    x, h = _rand(steps, 2, 3), _rand(2, 3, seed=1)
    check_jit(f, x, h, backend="native")
    check_jit(rnn, x, h, backend="native")

def test_second_order_through_a_loop_eager_and_compiled():
    def f(x):
        outs, _ = npx.foreach(lambda x_t, s: (np.sin(x_t) * s[0], [s[0] * x_t + 1.0]), x,
                              [np.ones((2,), dtype="float64")])
        return outs
    x = _rand(3, 2, dtype="float64")
    check_second_order(f, [x])
    check_second_order(kiln.jit(f), [x])


# ----------------------------------------------------------------------------------------------
# edge cases
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("steps", [0, 1])
def test_foreach_of_zero_and_one_steps(steps):
    x, h = _rand(steps, 2, 3), _rand(2, 3, seed=1)
    outs, last = rnn(x, h)
    assert outs.shape == (steps, 2, 3)
    if steps == 0:
        assert_all_same(last, h)
    check_jit(rnn, x, h)
    check_gradient(kiln.jit(rnn), [x, h])


@pytest.mark.parametrize("start, steps", [(20.0, 0), (9.0, 1), (0.001, 6)])
def test_while_loop_trip_counts_zero_one_and_max_iterations(start, steps):
    x, s = np.array([0.01, 0.02]), np.array([start, 0.0])
    outs, v, i = doubling(x, s, count=True)
    assert int(i.item()) == steps
    assert outs.shape == (6, 2)
    onp.testing.assert_array_equal(outs.asnumpy()[steps:], 0.0)  # rows past the last step
    check_jit(doubling, x, s)
    check_jit(doubling, x, s, backend="native")
    check_gradient(kiln.jit(doubling), [x, s])


def test_while_loop_backward_runs_only_the_steps_taken():
    x, s = np.array([0.1, 0.1]), np.array([1.0, 1.0])
    f = kiln.jit(lambda x, s: doubling(x, s)[1])
    x.attach_grad()
    s.attach_grad()
    with autograd.record():
        v = f(x, s)
    v.backward()
    # v = 2^n s + (2^n - 1) x after n = 3 steps (sums 2.2, 4.6, 9.4, 19.0)
    onp.testing.assert_allclose(s.grad.asnumpy(), [8.0, 8.0])
    onp.testing.assert_allclose(x.grad.asnumpy(), [7.0, 7.0])


def test_cond_with_a_python_or_constant_predicate_picks_the_branch_when_traced():
    f = kiln.jit(lambda x: npx.cond(True, lambda a: a * 2, lambda a: a * 3, [x]))
    x = _rand(3)
    assert_all_same(f(x), x * 2)
    assert _count(f.graph(x), "cond") == 0


def test_contrib_spellings_of_mxnet_1x():
    class Seed(gluon.HybridBlock):
        def hybrid_forward(self, F, x, h):
            outs, states = F.contrib.foreach(lambda x_t, s: (x_t + s[0], [s[0] * 2]), x, [h])
            picked = F.contrib.cond(x.sum() > 0, lambda: outs * 2, lambda: outs - 1)
            _, (count,) = F.contrib.while_loop(lambda c: c < 4, lambda c: (None, [c + 1]),
                                               [h.sum() * 0], max_iterations=9)
            return picked, count
    net = Seed()
    x, h = _rand(3, 2), _rand(2, seed=1)
    eager = net(x, h)
    net.hybridize()
    assert_all_same(net(x, h), eager)
    assert float(eager[1].item()) == 4.0


# ----------------------------------------------------------------------------------------------
# Gluon: parameters inside bodies, hybridized training
# ----------------------------------------------------------------------------------------------

class Recurrent(gluon.HybridBlock):
    """A cell written with npx.foreach: the Dense layers' parameters are read inside the body."""

    def __init__(self):
        super().__init__()
        self.i2h = nn.Dense(4, in_units=3, activation="tanh")
        self.h2o = nn.Dense(2, in_units=4)

    def forward(self, x, h):
        def step(x_t, states):
            h_new = self.i2h(x_t) + states[0] * 0.5
            return self.h2o(h_new), [h_new]
        outs, states = npx.foreach(step, x, [h])
        return outs, states[0]


def _param_grads(net, x, h):
    with autograd.record():
        outs, last = net(x, h)
        loss = (outs * outs).sum() + last.sum()
    loss.backward()
    return outs, {k: p.grad().asnumpy().copy() for k, p in net.collect_params().items()}


def test_block_parameters_used_in_a_body_are_graph_inputs_and_get_gradients():
    net = Recurrent()
    net.initialize()
    x, h = _rand(5, 2, 3), np.zeros((2, 4))
    eager_out, eager_grads = _param_grads(net, x, h)
    net.hybridize()
    for _ in range(2):
        out, grads = _param_grads(net, x, h)
        assert_all_same(out, eager_out)
        for k in eager_grads:
            assert_all_same(grads[k], eager_grads[k], k)
    entry = next(iter(net._cache.entries.values()))
    names = [n.name for n in entry.graph.inputs]
    assert {"i2h.weight", "h2o.bias"} <= set(names)
    assert _count(entry.graph, "foreach") == 1 and entry.graph.count("fully_connected") == 0


def test_training_a_hybridized_loop_lowers_the_loss():
    net = Recurrent()
    net.initialize(kiln.init.Xavier())
    net.hybridize()
    trainer = gluon.Trainer(net.collect_params(), "adam", {"learning_rate": 0.05})
    x, h = _rand(6, 4, 3), np.zeros((4, 4))
    target = _rand(6, 4, 2, seed=5)
    losses = []
    for _ in range(30):
        with autograd.record():
            outs, _ = net(x, h)
            loss = ((outs - target) ** 2).mean()
        loss.backward()
        trainer.step(1)
        losses.append(float(loss.item()))
    assert losses[-1] < 0.6 * losses[0]


# ----------------------------------------------------------------------------------------------
# the IR and the passes
# ----------------------------------------------------------------------------------------------

def test_one_node_per_loop_with_its_body_printed_nested_and_parsed_back():
    x, h = _rand(5, 2, 3), _rand(2, 3, seed=1)
    graph = kiln.jit(rnn).traced_graph(x, h)
    assert graph.count("foreach") == 1 and graph.count("tanh") == 0
    text = format_graph(graph)
    assert "    subgraph 0:\n    graph(%slice0: f32[2,3], %state0: f32[2,3]) {" in text
    again = parse_graph(text)
    verify(again)
    assert format_graph(again) == text


def test_while_loop_and_cond_nodes_hold_two_bodies():
    x, s = np.array([0.1, 0.2]), np.array([0.5, 0.25])
    graph = kiln.jit(doubling).traced_graph(x, s)
    (node,) = [n for n in graph.nodes if n.op == "while_loop"]
    assert len(node.subgraphs) == 2 and node.attrs["max_iterations"] == 6
    assert node.avals[-1].shape == ()  # the hidden trip count
    graph = kiln.jit(branch).traced_graph(_rand(2, 3), _rand(2, 3))
    (node,) = [n for n in graph.nodes if n.op == "cond"]
    assert len(node.subgraphs) == 2


def test_passes_run_inside_bodies_but_never_merge_two_loops():
    def f(x, h):
        def step(x_t, states):
            a = np.exp(x_t) * 1.0 + np.exp(x_t)     # simplify and cse inside the body
            return a, [states[0] + a]
        first = npx.foreach(step, x, [h])[0]
        second = npx.foreach(step, x, [h])[0]        # an equal loop stays a second loop
        return first + second
    x, h = _rand(4, 3), _rand(3, seed=1)
    graph = kiln.jit(f).graph(x, h)
    assert graph.count("foreach") == 2
    body = next(n for n in graph.nodes if n.op == "foreach").subgraphs[0]
    assert _count(body, "exp") + _count(body, "fused_elementwise") <= 2
    assert _count(body, "multiply_scalar") == 0
    check_jit(f, x, h)


def test_the_backward_of_a_loop_is_a_reverse_loop_over_stacked_residuals():
    x, h = _rand(5, 2, 3), _rand(2, 3, seed=1)
    f = kiln.jit(rnn)
    x.attach_grad()
    with autograd.record():
        f(x, h)
    entry = next(e for e in f._cache.entries.values() if e.diff is not None)
    (fwd,) = [n for n in entry.optimized.nodes if n.op == "foreach"]
    assert fwd.attrs["num_out_data"] > 1            # the residuals are extra stacked outputs
    (bwd,) = [n for n in entry.diff.backward.nodes if n.op == "foreach"]
    assert bwd.attrs["reverse"] and not fwd.attrs["reverse"]


# ----------------------------------------------------------------------------------------------
# errors and Python control flow
# ----------------------------------------------------------------------------------------------

def test_python_if_on_a_symbol_names_the_operators_with_an_example():
    def f(x):
        if x.sum() > 0:
            return x
        return -x
    with pytest.raises(SymbolicValueError) as err:
        kiln.jit(f)(_rand(3))
    text = str(err.value)
    assert "test_control_flow.py" in text
    assert "npx.cond(" in text and "npx.while_loop(" in text and "npx.foreach(" in text


def test_python_for_over_a_fixed_range_unrolls():
    def f(x):
        for _ in range(3):
            x = np.tanh(x)
        for row in x:      # a symbol's first axis has a known length
            x = x + row
        return x
    x = _rand(2, 2)
    graph = kiln.jit(f).traced_graph(x)
    assert graph.count("tanh") == 3
    check_jit(f, x)


def test_a_state_that_changes_shape_is_an_error_naming_the_line():
    def f(x, h):
        return npx.foreach(lambda x_t, s: (x_t, [s[0].sum()]), x, [h])[0]
    for fn in (f, kiln.jit(f)):
        with pytest.raises(ShapeError, match=r"state 0 comes in as f32\[3\].*test_control_flow"):
            fn(_rand(2, 3), _rand(3))


def test_branches_of_different_shapes_are_an_error():
    def f(x):
        return npx.cond(x.sum() > 0, lambda a: a, lambda a: a.sum(), [x])
    with pytest.raises(ShapeError, match="both branches must return the same"):
        kiln.jit(f)(_rand(3))


def test_while_loop_needs_max_iterations():
    with pytest.raises(KilnError, match="max_iterations is required"):
        npx.while_loop(lambda i: i < 3, lambda i: (None, [i + 1]), [np.zeros(())])


def test_batch_norm_updates_inside_a_body_are_refused():
    bn = nn.BatchNorm(in_channels=3)
    bn.initialize()

    def f(x):
        return npx.foreach(lambda x_t, s: (bn(x_t), s), x, [])[0]
    with autograd.record(), pytest.raises(KilnError, match="inside a control-flow body"):
        kiln.jit(f)(_rand(4, 2, 3))


def test_eager_gradients_are_the_python_loops():
    x, h = _rand(3, 2, 3), _rand(2, 3, seed=1)
    outs, grads = gradients(rnn, [x, h])
    # unrolled by hand
    x.attach_grad()
    with autograd.record():
        hs, state = [], h
        for t in range(3):
            state = np.tanh(x[t] @ W + state)
            hs.append(state * 2.0)
    assert_all_same(outs[0], np.stack(hs))


def test_the_examples_in_the_error_message_run_eagerly_and_compiled():
    def f(x, s):
        y = npx.cond(x.sum() > 0, lambda x: x * 2, lambda x: -x, [x])      # if/else
        _, [s] = npx.while_loop(lambda s: s.sum() < 10, lambda s: (None, [s * 2]), [s],
                                max_iterations=100)
        return y, s
    x, s = _rand(3), np.array([0.5, 1.0])
    check_jit(f, x, s)
    assert_all_same(f(x, s)[1], np.array([4.0, 8.0]))


def test_verify_compares_loops_and_skips_random_bodies():
    def noisy(x, h):
        return npx.foreach(lambda x_t, s: (npx.dropout(x_t, 0.5) + s[0], s), x, [h])[0]
    x, h = _rand(3, 4), _rand(4, seed=1)
    kiln.jit(rnn, verify=True)(_rand(5, 2, 3), _rand(2, 3, seed=1))   # compared with eager
    with autograd.train_mode():
        kiln.jit(noisy, verify=True)(x, h)                           # random: not compared


def test_node_impl_runs_any_node_for_a_backend_in_python():
    from kiln.backend import node_impl

    x, h = _rand(5, 2, 3), _rand(2, 3, seed=1)
    graph = kiln.jit(rnn).traced_graph(x, h)
    (node,) = [n for n in graph.nodes if n.op == "foreach"]
    outs = node_impl(node)(x.asnumpy(), h.asnumpy())
    assert_all_same(list(outs), list(rnn(x, h)))
