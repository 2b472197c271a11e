"""The graph IR: printed one line per node, parsed back, verified; attribute literals read
without ever executing code."""

from __future__ import annotations

import os

import numpy as onp
import pytest
from hybrid_helpers import assert_all_same, run_graph

import kiln
from kiln import np, npx
from kiln.base import FormatError
from kiln.graph.ir import (
    CONST, VAR, Graph, GraphError, Node, Value, const_node, format_graph, parse_graph, var_node,
    verify,
)
from kiln.graph.literal import format_literal, parse_literal
from kiln.ops.registry import Aval

GOLDEN = """\
graph(%x: f32[2,3], %w: f32[4,3], %b: f32[4]) {
  %1 = fully_connected(%x, %w, %b) {num_hidden=4, no_bias=False, flatten=True} : f32[2,4]   # model.py:12
  %2 = relu(%1) : f32[2,4]   # model.py:12
  %3, %4 = split(%2) {indices=(1,), axis=1} : f32[2,1], f32[2,3]   # model.py:13
  %5 = getitem(%4) {key=(slice(None, None, -1), ...)} : f32[2,3]   # model.py:14
  %6 = const {value=array([1.5, -2.0, 0.25], dtype=float32)} : f32[3]   # model.py:15
  %7 = multiply(%5, %6) : f32[2,3]   # model.py:15
  %8 = sum(%7) {axis=(1,), keepdims=True, dtype=None} : f32[2,1]   # model.py:16
  %9 = add(%8, %3) : f32[2,1]   # model.py:16
  %10 = clip(%9) {a_min=None, a_max=inf} : f32[2,1]
  %11 = cast(%10) {dtype='int32'} : i32[2,1]   # model.py:17
  return %10, %11
}"""  # noqa: E501  (golden IR: one line per node)


def _inputs():
    rng = onp.random.default_rng(0)
    return [rng.standard_normal(s).astype(onp.float32) for s in ((2, 3), (4, 3), (4,))]


# ----------------------------------------------------------------------------------------------
# printing and parsing
# ----------------------------------------------------------------------------------------------

def test_golden_text_round_trips_exactly():
    graph = parse_graph(GOLDEN)
    verify(graph)
    assert format_graph(graph) == GOLDEN
    assert str(parse_graph(format_graph(graph))) == GOLDEN


def test_parsed_graph_computes_what_the_text_says():
    x, w, b = _inputs()
    out, as_int = run_graph(parse_graph(GOLDEN), [x, w, b])
    h = onp.maximum(x @ w.T + b, 0)
    expected = (h[:, 1:][::-1] * onp.array([1.5, -2.0, 0.25], onp.float32)).sum(
        axis=1, keepdims=True) + h[:, :1]
    onp.testing.assert_allclose(out, expected, rtol=1e-5)
    assert as_int.dtype == onp.int32


def test_one_line_per_node_with_op_inputs_attributes_type_and_user_line():
    def f(a, b):
        c = npx.relu(a @ b)                 # line A
        return c.sum(axis=1, keepdims=True)  # line B

    lineno = f.__code__.co_firstlineno
    graph = kiln.jit(f).traced_graph(np.ones((2, 3)), np.ones((3, 4)))
    lines = str(graph).splitlines()
    assert lines[0] == "graph(%data0: f32[2,3], %data1: f32[3,4]) {"
    assert lines[1] == f"  %1 = matmul(%data0, %data1) : f32[2,4]   # test_ir.py:{lineno + 1}"
    assert lines[2] == f"  %2 = relu(%1) : f32[2,4]   # test_ir.py:{lineno + 1}"
    assert lines[3] == ("  %3 = sum(%2) {axis=(1,), keepdims=True, dtype=None} : f32[2,1]"
                        f"   # test_ir.py:{lineno + 2}")
    assert lines[4:] == ["  return %3", "}"]


def test_traced_graphs_round_trip_and_keep_their_values():
    def f(a, b):
        parts = np.split(npx.softmax(a * 2.0 - b, axis=0), 2, axis=1)
        return np.concatenate([parts[1], parts[0]], axis=1).T, np.maximum(a, 0.5)[::-1]

    a = np.array(onp.linspace(-1, 1, 12, dtype=onp.float32).reshape(3, 4))
    b = np.ones((3, 4))
    graph = kiln.jit(f).traced_graph(a, b)
    text = format_graph(graph)
    again = parse_graph(text)
    verify(again)
    assert format_graph(again) == text
    assert_all_same(run_graph(again, [a, b]), run_graph(graph, [a, b]))


def test_parser_keeps_dead_nodes_and_fills_in_default_attributes():
    graph = parse_graph("""
graph(%x: f32[3]) {
  %1 = exp(%x) : f32[3]
  %2 = sum(%x) : f32[]
  return %2
}""")
    assert [n.op for n in graph.nodes] == [VAR, "exp", "sum"]  # %1 is dead but kept
    assert graph.nodes[2].attrs == {"axis": None, "keepdims": False, "dtype": None}


def test_the_variance_operator_is_not_a_graph_variable():
    text = """graph(%x: f32[3,4]) {
  %v = var : f32[4]
  %1 = var(%x) {axis=(0,), keepdims=False, ddof=1, dtype=None} : f32[4]   # m.py:2
  %2 = add(%1, %v) : f32[4]   # m.py:3
  return %2
}"""
    graph = parse_graph(text)
    assert [n.op for n in graph.nodes] == [VAR, VAR, "var", "add"]
    assert format_graph(graph) == text
    with pytest.raises(GraphError, match="'v' is used but is not a graph input"):
        verify(graph)  # the variable, not the variance
    verify(parse_graph(text.replace("  %v = var : f32[4]\n", "").replace("%1, %v", "%1, %1")))


def test_variables_with_equal_names_print_apart():
    a, b = var_node("weight", Aval((2,), onp.dtype("float32"))), \
        var_node("weight", Aval((2,), onp.dtype("float32")))
    add = Node("add", [Value(a), Value(b)], {}, [Aval((2,), onp.dtype("float32"))])
    text = format_graph(Graph([a, b], [Value(add)]))
    assert "%weight: f32[2], %weight~1: f32[2]" in text
    verify(parse_graph(text))


@pytest.mark.parametrize("text, message", [
    ("graph(%x: f32[2]) {\n  %1 = exp(%y) : f32[2]\n  return %1\n}", "line 2"),
    ("graph(%x: f32[2]) {\n  %1 = exp(%x) : f32[2]\n  %1 = exp(%1) : f32[2]\n  return %1\n}",
     "%1 is assigned twice"),
    ("graph(%x: f32[2]) {\n  %1 = exp(%x) {base=__import__('os')} : f32[2]\n  return %1\n}",
     "__import__"),
    ("graph(%x: f32[2])\n  return %x\n", "must start with"),
])
def test_parse_errors_name_the_line(text, message):
    with pytest.raises(GraphError, match=message.replace("(", r"\(").replace("[", r"\[")):
        parse_graph(text)


# ----------------------------------------------------------------------------------------------
# the verifier
# ----------------------------------------------------------------------------------------------

F32_3 = Aval((3,), onp.dtype("float32"))


def _chain():
    x = var_node("x", F32_3)
    e = Node("exp", [Value(x)], {}, [F32_3], loc="model.py:7")
    t = Node("tanh", [Value(e)], {}, [F32_3], loc="model.py:8")
    return x, e, t


def test_verifier_accepts_well_formed_graphs():
    x, e, t = _chain()
    verify(Graph([x], [Value(t)]))
    verify(parse_graph(GOLDEN))


def test_verifier_rejects_nodes_out_of_order():
    x, e, t = _chain()
    with pytest.raises(GraphError, match=r"tanh node at model\.py:8 uses a value before it is "
                                         r"defined \(nodes out of topological order\)"):
        verify(Graph([x], [Value(t)], nodes=[x, t, e]))


def test_verifier_rejects_a_duplicate_node():
    x, e, t = _chain()
    with pytest.raises(GraphError, match=r"%1 = exp node at model\.py:7 appears twice"):
        verify(Graph([x], [Value(t)], nodes=[x, e, e, t]))


def test_verifier_rejects_a_wrongly_recorded_type():
    text = GOLDEN.replace("%2 = relu(%1) : f32[2,4]", "%2 = relu(%1) : f32[4,2]")
    with pytest.raises(GraphError, match=r"%2 = relu node at model\.py:12: output 0 is recorded "
                                         r"as f32\[4,2\] but the operator infers f32\[2,4\]"):
        verify(parse_graph(text))
    text = GOLDEN.replace("%11 = cast(%10) {dtype='int32'} : i32[2,1]",
                          "%11 = cast(%10) {dtype='int32'} : i64[2,1]")
    with pytest.raises(GraphError, match=r"%11 = cast node at model\.py:17: output 0 is "
                                         r"recorded as i64\[2,1\]"):
        verify(parse_graph(text))


def test_verifier_rejects_an_unknown_operator():
    text = GOLDEN.replace("%2 = relu(%1)", "%2 = frobnicate(%1)")
    with pytest.raises(GraphError, match=r"%2 = frobnicate node at model\.py:12: unknown "
                                         r"operator 'frobnicate'"):
        verify(parse_graph(text))


def test_verifier_rejects_a_variable_that_is_not_an_input():
    text = """graph(%x: f32[3]) {
  %w = var : f32[3]
  %1 = add(%x, %w) : f32[3]   # model.py:3
  return %1
}"""
    graph = parse_graph(text)
    assert format_graph(graph) == text
    with pytest.raises(GraphError, match=r"variable 'w' is used but is not a graph input"):
        verify(graph)


def test_verifier_rejects_bad_output_index_wrong_arity_and_missing_outputs():
    x, e, t = _chain()
    bad = Node("tanh", [Value(e, 1)], {}, [F32_3], loc="model.py:9")
    with pytest.raises(GraphError, match=r"tanh node at model\.py:9 reads output 1 of a node "
                                         r"with 1 outputs"):
        verify(Graph([x], [Value(bad)], nodes=[x, e, bad]))
    two = Node("exp", [Value(x)], {}, [F32_3, F32_3], loc="model.py:10")
    with pytest.raises(GraphError, match=r"model\.py:10: node has 2 outputs, the operator "
                                         r"infers 1"):
        verify(Graph([x], [Value(two)]))
    with pytest.raises(GraphError, match="not in the node list"):
        verify(Graph([x], [Value(t)], nodes=[x, e]))


def test_verifier_reports_attributes_the_operator_does_not_take():
    text = GOLDEN.replace("{num_hidden=4, no_bias=False, flatten=True}",
                          "{num_hidden=4, no_bias=False, flatten=True, units=3}")
    with pytest.raises(GraphError, match=r"%1 = fully_connected node at model\.py:12: type "
                                         r"inference failed"):
        verify(parse_graph(text))


# ----------------------------------------------------------------------------------------------
# literals
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [
    None, True, False, 0, -3, 2.5, -0.0, float("inf"), float("-inf"), "relu", (), (1,),
    (1, (2, 3)), [1, 2], {"a": 1}, slice(None, 3, -1), Ellipsis,
    (slice(None), None, Ellipsis, 0), onp.float32(1.5), onp.int64(7), onp.bool_(True),
    onp.array([1, 2], onp.int64), onp.array([[0.5, -1.0]], onp.float32), onp.array(3.0),
    onp.array([True, False]),
])
def test_literals_round_trip(value):
    text = format_literal(value)
    back = parse_literal(text)
    if isinstance(value, onp.ndarray):
        assert back.dtype == value.dtype and back.shape == value.shape
        onp.testing.assert_array_equal(back, value)
    else:
        assert type(back) is type(value) and back == value
        assert format_literal(back) == text


def test_nan_literal():
    assert onp.isnan(parse_literal(format_literal(float("nan"))))
    assert onp.isnan(parse_literal("float32(nan)"))


MARKER = "/tmp/kiln_literal_was_executed"


@pytest.mark.parametrize("text", [
    f"__import__('os').system('touch {MARKER}')",
    f"open('{MARKER}', 'w')",
    "exec('1')", "eval('1')", "getattr(1, 'real')", "().__class__.__bases__",
    "(1).real", "array.__init__", "x", "os", "np.float32(1)", "float32(1).item()",
    "array([1], dtype=object)", "array([1], dtype=evil)", "array([1], buffer=1)",
    "slice(*[1])", "slice(step=1)", "lambda: 1", "[x for x in ()]", "1 + 1", "2 ** 1000",
    "not True", "~1", "{1, 2}", "f'{1}'", "a if b else c", "[" * 5000, "1" * 6000,
    "array([[1], [1, 2]])",
])
def test_literal_parser_never_executes_code(text):
    if os.path.exists(MARKER):
        os.remove(MARKER)
    with pytest.raises(FormatError):
        parse_literal(text)
    assert not os.path.exists(MARKER)


def test_constants_too_large_to_print_are_placeholders_not_code():
    big = const_node(onp.zeros((5, 5), onp.float32))
    text = format_graph(Graph([], [Value(big)]))
    assert "<float32[5,5] array>" in text
    assert big.op == CONST
    with pytest.raises(GraphError):
        parse_graph(text)
