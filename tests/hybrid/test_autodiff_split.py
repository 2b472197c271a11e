"""Where the differentiated graph's work goes: forward, saved, or recomputed in the backward."""

from __future__ import annotations

import numpy as onp
from hybrid_helpers import run_graph

from kiln.graph.autodiff import differentiate
from kiln.graph.ir import parse_graph, verify

SIGMOID_TANH = """\
graph(%x: f32[3,4]) {
  %1 = sigmoid(%x) : f32[3,4]   # m.py:1
  %2 = tanh(%1) : f32[3,4]   # m.py:2
  return %2
}"""


def _ops(graph) -> list[str]:
    return [n.op for n in graph.nodes]


def test_cheap_rule_terms_are_recomputed_in_the_backward_not_saved():
    """sigmoid's 1 - y and tanh's 1 - y * y read no cotangent: they are computed again from
    the saved outputs in the backward graph instead of being computed forward and saved."""
    d = differentiate(parse_graph(SIGMOID_TANH), [0], 1)
    verify(d.forward)
    verify(d.backward)
    assert _ops(d.forward).count("rsubtract_scalar") == 0
    assert "multiply" not in _ops(d.forward)
    assert d.num_residuals == 2                          # y1 and y2 only
    assert _ops(d.backward).count("rsubtract_scalar") == 2


def test_recomputed_gradients_match_the_definition():
    d = differentiate(parse_graph(SIGMOID_TANH), [0], 1)
    x = onp.random.default_rng(0).standard_normal((3, 4)).astype(onp.float32)
    ct = onp.random.default_rng(1).standard_normal((3, 4)).astype(onp.float32)
    outs = run_graph(d.forward, [x])
    residuals = outs[1:]
    saved = [x for _ in d.input_residuals]        # the forward inputs the backward reads
    (gx,) = run_graph(d.backward, saved + residuals + [ct])
    x64 = x.astype(onp.float64)
    s = 1 / (1 + onp.exp(-x64))
    expect = ct * (1 - onp.tanh(s) ** 2) * s * (1 - s)
    onp.testing.assert_allclose(outs[0], onp.tanh(s), rtol=1e-6)
    onp.testing.assert_allclose(gx, expect, rtol=1e-5, atol=1e-7)


def test_what_the_forward_returns_is_never_moved():
    """The forward's own 1 - y (an output) stays in the forward graph, and the backward reads
    it saved; only terms the gradient rules made are recomputed."""
    graph = parse_graph("""\
graph(%x: f32[3,4]) {
  %1 = sigmoid(%x) : f32[3,4]   # m.py:1
  %2 = rsubtract_scalar(%1) {scalar=1} : f32[3,4]   # m.py:2
  return %2
}""")
    d = differentiate(graph, [0], 1)
    verify(d.forward)
    verify(d.backward)
    assert _ops(d.forward).count("rsubtract_scalar") == 1
    assert _ops(d.backward).count("rsubtract_scalar") == 1     # sigmoid's own term, recomputed
    x = onp.linspace(-2, 2, 12, dtype=onp.float32).reshape(3, 4)
    ct = onp.ones((3, 4), onp.float32)
    outs = run_graph(d.forward, [x])
    saved = [x for _ in d.input_residuals]
    (gx,) = run_graph(d.backward, saved + outs[1:] + [ct])
    s = 1 / (1 + onp.exp(-x.astype(onp.float64)))
    onp.testing.assert_allclose(gx, -s * (1 - s), rtol=1e-5, atol=1e-7)
