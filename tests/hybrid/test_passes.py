"""One test (or more) per optimisation pass: golden IR text in, golden IR text out, values
unchanged; then the memory plan and the buffers of the numpy backend."""

from __future__ import annotations

import numpy as onp
import pytest
from hybrid_helpers import assert_all_same, run_graph

import kiln
from kiln import autograd, np
from kiln.backend import get_backend
from kiln.backend.numpy_backend import _can_overwrite, _wants_buffer
from kiln.gluon import nn
from kiln.graph.ir import _value_names, format_graph, parse_graph, verify
from kiln.graph.passes import PIPELINE, pass_names, run_pipeline
from kiln.graph.passes.bn_fold import fold_batch_norm
from kiln.graph.passes.cse import common_subexpression_elimination
from kiln.graph.passes.dce import dead_code_elimination
from kiln.graph.passes.fold import constant_folding
from kiln.graph.passes.fuse import fuse_dense_activation, fuse_elementwise
from kiln.graph.passes.memory import plan_memory
from kiln.graph.passes.simplify import algebraic_simplification


def _inputs(graph, seed=0):
    rng = onp.random.default_rng(seed)
    out = []
    for n in graph.inputs:
        shape, dtype = n.avals[0].shape, n.avals[0].dtype
        if dtype.kind == "f":
            out.append(rng.uniform(0.5, 1.5, shape).astype(dtype))  # positive: var, sqrt, log
        else:
            out.append(rng.integers(-3, 4, shape).astype(dtype))
    return out


def check_pass(fn, before: str, after: str, compare=None) -> None:
    """`fn(parse(before))` prints as `after`, verifies, and computes the same values."""
    graph = parse_graph(before)
    verify(graph)
    result = fn(graph)
    verify(result)
    assert format_graph(result) == after
    xs = _inputs(graph)
    expected, got = run_graph(graph, xs), run_graph(result, xs)
    keep = range(len(expected)) if compare is None else compare
    assert_all_same([got[k] for k in keep], [expected[k] for k in keep], "pass output")


def test_the_pipeline_lists_each_pass_by_name():
    assert pass_names() == ["simplify", "fold", "cse", "bn_fold", "fold_after_bn", "fuse_dense",
                            "fuse_elementwise", "dce"]
    inference_only = {name for name, _, on_training in PIPELINE if not on_training}
    assert inference_only == {"bn_fold", "fold_after_bn"}


# ----------------------------------------------------------------------------------------------
# dead code elimination
# ----------------------------------------------------------------------------------------------

def test_dce_removes_what_no_output_needs_and_keeps_inputs():
    check_pass(dead_code_elimination, """\
graph(%x: f32[3], %unused: f32[3]) {
  %1 = exp(%x) : f32[3]   # m.py:1
  %2 = tanh(%x) : f32[3]   # m.py:2
  %3 = sin(%1) : f32[3]   # m.py:3
  %4, %5 = split(%x) {indices=(1,), axis=0} : f32[1], f32[2]   # m.py:4
  %6 = sum(%5) {axis=None, keepdims=False, dtype=None} : f32[]   # m.py:5
  return %2, %6
}""", """\
graph(%x: f32[3], %unused: f32[3]) {
  %1 = tanh(%x) : f32[3]   # m.py:2
  %2, %3 = split(%x) {indices=(1,), axis=0} : f32[1], f32[2]   # m.py:4
  %4 = sum(%3) {axis=None, keepdims=False, dtype=None} : f32[]   # m.py:5
  return %1, %4
}""")


# ----------------------------------------------------------------------------------------------
# common subexpression elimination
# ----------------------------------------------------------------------------------------------

def test_cse_merges_equal_nodes_constants_and_array_attributes():
    check_pass(common_subexpression_elimination, """\
graph(%x: f32[4,3]) {
  %1 = exp(%x) : f32[4,3]   # m.py:1
  %2 = exp(%x) : f32[4,3]   # m.py:2
  %3 = getitem(%1) {key=(array([0, 2], dtype=int64),)} : f32[2,3]   # m.py:3
  %4 = getitem(%2) {key=(array([0, 2], dtype=int64),)} : f32[2,3]   # m.py:4
  %5 = getitem(%2) {key=(array([0, 3], dtype=int64),)} : f32[2,3]   # m.py:5
  %6 = const {value=array([1.0, 2.0, 3.0], dtype=float32)} : f32[3]   # m.py:6
  %7 = const {value=array([1.0, 2.0, 3.0], dtype=float32)} : f32[3]   # m.py:6
  %8 = add(%3, %6) : f32[2,3]   # m.py:7
  %9 = add(%4, %7) : f32[2,3]   # m.py:8
  %10 = add(%8, %9) : f32[2,3]   # m.py:9
  %11 = add(%10, %5) : f32[2,3]   # m.py:9
  return %11
}""", """\
graph(%x: f32[4,3]) {
  %1 = exp(%x) : f32[4,3]   # m.py:1
  %2 = getitem(%1) {key=(array([0, 2], dtype=int64),)} : f32[2,3]   # m.py:3
  %3 = const {value=array([1.0, 2.0, 3.0], dtype=float32)} : f32[3]   # m.py:6
  %4 = add(%2, %3) : f32[2,3]   # m.py:7
  %5 = add(%4, %4) : f32[2,3]   # m.py:9
  %6 = getitem(%1) {key=(array([0, 3], dtype=int64),)} : f32[2,3]   # m.py:5
  %7 = add(%5, %6) : f32[2,3]   # m.py:9
  return %7
}""")


def test_cse_keeps_random_draws_and_signed_zeros_apart():
    check_pass(common_subexpression_elimination, """\
graph(%x: f32[3]) {
  %1 = multiply_scalar(%x) {scalar=0.0} : f32[3]
  %2 = multiply_scalar(%x) {scalar=-0.0} : f32[3]
  %3 = multiply_scalar(%x) {scalar=0} : f32[3]
  %4 = random_uniform() {low=0.0, high=1.0, shape=(3,), dtype='float32'} : f32[3]
  %5 = random_uniform() {low=0.0, high=1.0, shape=(3,), dtype='float32'} : f32[3]
  %6 = add(%4, %5) : f32[3]
  return %1, %2, %3, %6
}""", """\
graph(%x: f32[3]) {
  %1 = multiply_scalar(%x) {scalar=0.0} : f32[3]
  %2 = multiply_scalar(%x) {scalar=-0.0} : f32[3]
  %3 = multiply_scalar(%x) {scalar=0} : f32[3]
  %4 = random_uniform() {low=0.0, high=1.0, shape=(3,), dtype='float32'} : f32[3]
  %5 = random_uniform() {low=0.0, high=1.0, shape=(3,), dtype='float32'} : f32[3]
  %6 = add(%4, %5) : f32[3]
  return %1, %2, %3, %6
}""", compare=[0, 1, 2])


# ----------------------------------------------------------------------------------------------
# constant folding
# ----------------------------------------------------------------------------------------------

def test_fold_evaluates_constant_subgraphs_but_not_random_or_huge_ones():
    check_pass(constant_folding, """\
graph(%x: f32[3]) {
  %1 = const {value=array([1.0, 2.0, 3.0], dtype=float32)} : f32[3]   # m.py:1
  %2 = exp(%1) : f32[3]   # m.py:2
  %3 = multiply_scalar(%2) {scalar=2.0} : f32[3]   # m.py:3
  %4 = add(%x, %3) : f32[3]   # m.py:4
  %5, %6 = split(%1) {indices=(1,), axis=0} : f32[1], f32[2]   # m.py:5
  %7 = random_normal() {loc=0.0, scale=1.0, shape=(3,), dtype='float32'} : f32[3]   # m.py:6
  %8 = add(%7, %1) : f32[3]   # m.py:6
  %9 = const {value=array(2.0, dtype=float32)} : f32[]
  %10 = broadcast_to(%9) {shape=(4096, 4096)} : f32[4096,4096]
  return %4, %6, %8, %10
}""", """\
graph(%x: f32[3]) {
  %1 = const {value=array([5.436563968658447, 14.778111457824707, 40.17107391357422], dtype=float32)} : f32[3]   # m.py:3
  %2 = add(%x, %1) : f32[3]   # m.py:4
  %3 = const {value=array([2.0, 3.0], dtype=float32)} : f32[2]   # m.py:5
  %4 = random_normal() {loc=0.0, scale=1.0, shape=(3,), dtype='float32'} : f32[3]   # m.py:6
  %5 = const {value=array([1.0, 2.0, 3.0], dtype=float32)} : f32[3]   # m.py:1
  %6 = add(%4, %5) : f32[3]   # m.py:6
  %7 = const {value=array(2.0, dtype=float32)} : f32[]
  %8 = broadcast_to(%7) {shape=(4096, 4096)} : f32[4096,4096]
  return %2, %3, %6, %8
}""", compare=[0, 1, 3])  # noqa: E501


def fancy_func(a, b, c, d):
    e = a + b
    f = c + d
    g = e + f
    return g


def test_fancy_func_with_constant_inputs_folds_to_the_single_constant_10():
    compiled = kiln.jit(fancy_func)
    line = fancy_func.__code__.co_firstlineno + 3
    assert format_graph(compiled.traced_graph(1, 2, 3, 4)).count(" add(") == 3
    assert format_graph(compiled.graph(1, 2, 3, 4)) == f"""\
graph() {{
  %1 = const {{value=array(10, dtype=int64)}} : i64[]   # test_passes.py:{line}
  return %1
}}"""
    assert compiled(1, 2, 3, 4).item() == 10 == fancy_func(1, 2, 3, 4)


def test_fancy_func_on_arrays_is_not_folded_and_matches_eager():
    xs = [np.array([float(k), 2.0 * k]) for k in range(1, 5)]
    compiled = kiln.jit(fancy_func)
    assert compiled.graph(*xs).count("const") == 0
    assert_all_same(compiled(*xs), fancy_func(*xs))


# ----------------------------------------------------------------------------------------------
# algebraic simplification
# ----------------------------------------------------------------------------------------------

def test_simplify_removes_identities_and_collapses_chains():
    check_pass(algebraic_simplification, """\
graph(%x: f32[2,3], %i: i32[2,3]) {
  %1 = multiply_scalar(%x) {scalar=1} : f32[2,3]   # m.py:1
  %2 = add_scalar(%1) {scalar=0.0} : f32[2,3]   # m.py:2
  %3 = true_divide_scalar(%2) {scalar=1.0} : f32[2,3]   # m.py:3
  %4 = subtract_scalar(%3) {scalar=0} : f32[2,3]   # m.py:4
  %5 = power_scalar(%4) {scalar=1} : f32[2,3]   # m.py:5
  %6 = negative(%5) : f32[2,3]   # m.py:6
  %7 = negative(%6) : f32[2,3]   # m.py:6
  %8 = transpose(%7) {axes=(1, 0)} : f32[3,2]   # m.py:7
  %9 = transpose(%8) {axes=None} : f32[2,3]   # m.py:7
  %10 = reshape(%9) {newshape=(6,)} : f32[6]   # m.py:8
  %11 = reshape(%10) {newshape=(3, 2)} : f32[3,2]   # m.py:8
  %12 = expand_dims(%11) {axis=0} : f32[1,3,2]   # m.py:9
  %13 = reshape(%12) {newshape=(2, 3)} : f32[2,3]   # m.py:9
  %14 = cast(%13) {dtype='float32'} : f32[2,3]   # m.py:10
  %15 = add_scalar(%i) {scalar=0} : i32[2,3]   # m.py:11
  return %14, %15
}""", """\
graph(%x: f32[2,3], %i: i32[2,3]) {
  return %x, %i
}""")


def test_simplify_keeps_what_changes_shape_or_dtype_and_composes_transposes():
    check_pass(algebraic_simplification, """\
graph(%x: f32[2,3,4], %i: i32[2,3,4]) {
  %1 = multiply_scalar(%i) {scalar=1.0} : f64[2,3,4]   # m.py:1
  %2 = multiply_scalar(%x) {scalar=2.0} : f32[2,3,4]   # m.py:2
  %3 = transpose(%x) {axes=(1, 2, 0)} : f32[3,4,2]   # m.py:3
  %4 = transpose(%3) {axes=(1, 0, 2)} : f32[4,3,2]   # m.py:4
  %5 = reshape(%x) {newshape=(6, 4)} : f32[6,4]   # m.py:5
  %6 = reshape(%5) {newshape=(4, 6)} : f32[4,6]   # m.py:6
  %7 = negative(%x) : f32[2,3,4]   # m.py:7
  %8 = cast(%x) {dtype='float64'} : f64[2,3,4]   # m.py:8
  return %1, %2, %4, %6, %7, %8
}""", """\
graph(%x: f32[2,3,4], %i: i32[2,3,4]) {
  %1 = multiply_scalar(%i) {scalar=1.0} : f64[2,3,4]   # m.py:1
  %2 = multiply_scalar(%x) {scalar=2.0} : f32[2,3,4]   # m.py:2
  %3 = transpose(%x) {axes=(2, 1, 0)} : f32[4,3,2]   # m.py:4
  %4 = reshape(%x) {newshape=(4, 6)} : f32[4,6]   # m.py:6
  %5 = negative(%x) : f32[2,3,4]   # m.py:7
  %6 = cast(%x) {dtype='float64'} : f64[2,3,4]   # m.py:8
  return %1, %2, %3, %4, %5, %6
}""")


# ----------------------------------------------------------------------------------------------
# BatchNorm folding
# ----------------------------------------------------------------------------------------------

BN_GRAPH = """\
graph(%x: f32[2,3], %w: f32[4,3], %b: f32[4], %gamma: f32[4], %beta: f32[4], %mean: f32[4], %var: f32[4]) {
  %1 = fully_connected(%x, %w, %b) {num_hidden=4, no_bias=False, flatten=True} : f32[2,4]   # m.py:1
  %2, %3, %4 = batch_norm(%1, %gamma, %beta, %mean, %var) {eps=1e-05, momentum=0.9, fix_gamma=False, use_global_stats=False, axis=1, training=False} : f32[2,4], f32[4], f32[4]   # m.py:2
  %5 = relu(%2) : f32[2,4]   # m.py:3
  return %5
}"""  # noqa: E501


def test_bn_fold_scales_the_dense_layer_before_it():
    check_pass(fold_batch_norm, BN_GRAPH, """\
graph(%x: f32[2,3], %w: f32[4,3], %b: f32[4], %gamma: f32[4], %beta: f32[4], %mean: f32[4], %var: f32[4]) {
  %1 = add_scalar(%var) {scalar=1e-05} : f32[4]   # m.py:2
  %2 = sqrt(%1) : f32[4]   # m.py:2
  %3 = true_divide(%gamma, %2) : f32[4]   # m.py:2
  %4 = reshape(%3) {newshape=(4, 1)} : f32[4,1]   # m.py:2
  %5 = multiply(%w, %4) : f32[4,3]   # m.py:1
  %6 = subtract(%b, %mean) : f32[4]   # m.py:2
  %7 = multiply(%6, %3) : f32[4]   # m.py:2
  %8 = add(%7, %beta) : f32[4]   # m.py:2
  %9 = fully_connected(%x, %5, %8) {num_hidden=4, no_bias=False, flatten=True} : f32[2,4]   # m.py:1
  %10 = relu(%9) : f32[2,4]   # m.py:3
  return %10
}""")  # noqa: E501


def test_bn_fold_without_bias_and_with_fixed_gamma():
    graph = BN_GRAPH.replace("%1 = fully_connected(%x, %w, %b) {num_hidden=4, no_bias=False",
                             "%1 = fully_connected(%x, %w) {num_hidden=4, no_bias=True") \
        .replace("fix_gamma=False", "fix_gamma=True")
    folded = fold_batch_norm(parse_graph(graph))
    text = format_graph(folded)
    assert "batch_norm" not in text and "reciprocal(%2)" in text and "negative(%mean)" in text
    xs = _inputs(parse_graph(graph))
    assert_all_same(run_graph(folded, xs), run_graph(parse_graph(graph), xs))


@pytest.mark.parametrize("change", [
    ("training=False", "training=True"),           # batch statistics: nothing to fold
    ("axis=1", "axis=0"),                          # not the channel axis
    ("return %5", "return %5, %3"),                # someone reads the statistics
    ("%5 = relu(%2)", "%5 = add(%2, %1)"),         # the dense output is read twice
])
def test_bn_fold_leaves_batch_norms_it_cannot_fold(change):
    text = BN_GRAPH.replace(*change)
    if change[0] == "axis=1":
        text = text.replace(": f32[2,4], f32[4], f32[4]", ": f32[2,4], f32[2], f32[2]") \
            .replace("%gamma: f32[4], %beta: f32[4], %mean: f32[4], %var: f32[4]",
                     "%gamma: f32[2], %beta: f32[2], %mean: f32[2], %var: f32[2]")
    graph = parse_graph(text)
    verify(graph)
    assert format_graph(fold_batch_norm(graph)) == format_graph(graph)


def test_bn_fold_on_a_network_in_predict_mode_keeps_its_outputs():
    net = nn.HybridSequential()
    net.add(nn.Dense(8, in_units=5), nn.BatchNorm(in_channels=8), nn.Activation("relu"),
            nn.Dense(3, in_units=8, use_bias=False), nn.BatchNorm(in_channels=3, scale=False))
    net.initialize()
    for p in net.collect_params().values():  # statistics that make the folding matter
        p.set_data(onp.random.default_rng(1).uniform(0.5, 1.5, p.shape))
    x = np.random.normal(size=(4, 5))
    expected = net(x)
    net.hybridize()
    got = net(x)
    assert_all_same(got, expected)
    entry = next(iter(net._cache.entries.values()))
    assert entry.optimized.count("batch_norm") == 0


# ----------------------------------------------------------------------------------------------
# fusion
# ----------------------------------------------------------------------------------------------

def test_fuse_dense_activation():
    check_pass(fuse_dense_activation, """\
graph(%x: f32[2,3], %w: f32[4,3], %b: f32[4], %w2: f32[4,4]) {
  %1 = fully_connected(%x, %w, %b) {num_hidden=4, no_bias=False, flatten=True} : f32[2,4]   # m.py:1
  %2 = relu(%1) : f32[2,4]   # m.py:2
  %3 = fully_connected(%2, %w2) {num_hidden=4, no_bias=True, flatten=True} : f32[2,4]   # m.py:3
  %4 = tanh(%3) : f32[2,4]   # m.py:4
  %5 = fully_connected(%4, %w2) {num_hidden=4, no_bias=True, flatten=True} : f32[2,4]   # m.py:5
  %6 = sigmoid(%5) : f32[2,4]   # m.py:6
  %7 = exp(%5) : f32[2,4]   # m.py:7
  return %4, %6, %7
}""", """\
graph(%x: f32[2,3], %w: f32[4,3], %b: f32[4], %w2: f32[4,4]) {
  %1 = fused_dense(%x, %w, %b) {num_hidden=4, no_bias=False, flatten=True, act_type='relu'} : f32[2,4]   # m.py:1
  %2 = fused_dense(%1, %w2) {num_hidden=4, no_bias=True, flatten=True, act_type='tanh'} : f32[2,4]   # m.py:3
  %3 = fully_connected(%2, %w2) {num_hidden=4, no_bias=True, flatten=True} : f32[2,4]   # m.py:5
  %4 = sigmoid(%3) : f32[2,4]   # m.py:6
  %5 = exp(%3) : f32[2,4]   # m.py:7
  return %2, %4, %5
}""")  # noqa: E501


def test_fuse_elementwise_chains():
    check_pass(fuse_elementwise, """\
graph(%x: f32[2,3], %y: f32[3], %z: f32[2,3]) {
  %1 = exp(%x) : f32[2,3]   # m.py:1
  %2 = add_scalar(%1) {scalar=1.0} : f32[2,3]   # m.py:2
  %3 = multiply(%2, %y) : f32[2,3]   # m.py:3
  %4 = subtract(%y, %3) : f32[2,3]   # m.py:4
  %5 = tanh(%4) : f32[2,3]   # m.py:5
  %6 = multiply(%5, %5) : f32[2,3]   # m.py:6
  %7 = relu(%z) : f32[2,3]   # m.py:7
  %8 = negative(%7) : f32[2,3]   # m.py:8
  %9 = add(%6, %8) : f32[2,3]   # m.py:9
  return %9
}""", """\
graph(%x: f32[2,3], %y: f32[3], %z: f32[2,3]) {
  %1 = fused_elementwise(%x, %y, %y) {program=(('exp', None), ('add_scalar', ('scalar', 1.0)), ('multiply', ('input', 0, 'rhs')), ('subtract', ('input', 1, 'lhs')), ('tanh', None))} : f32[2,3]   # m.py:1
  %2 = multiply(%1, %1) : f32[2,3]   # m.py:6
  %3 = fused_elementwise(%z) {program=(('relu', None), ('negative', None))} : f32[2,3]   # m.py:7
  %4 = add(%2, %3) : f32[2,3]   # m.py:9
  return %4
}""")  # noqa: E501


def test_fuse_elementwise_stops_at_values_read_twice_or_of_another_shape():
    text = """\
graph(%x: f32[2,3]) {
  %1 = exp(%x) : f32[2,3]   # m.py:1
  %2 = tanh(%1) : f32[2,3]   # m.py:2
  %3 = sum(%1) {axis=(0,), keepdims=True, dtype=None} : f32[1,3]   # m.py:3
  %4 = sin(%3) : f32[1,3]   # m.py:4
  %5 = cos(%4) : f32[1,3]   # m.py:5
  %6 = add(%2, %5) : f32[2,3]   # m.py:6
  return %6
}"""
    check_pass(fuse_elementwise, text, """\
graph(%x: f32[2,3]) {
  %1 = exp(%x) : f32[2,3]   # m.py:1
  %2 = sum(%1) {axis=(0,), keepdims=True, dtype=None} : f32[1,3]   # m.py:3
  %3 = fused_elementwise(%2) {program=(('sin', None), ('cos', None))} : f32[1,3]   # m.py:4
  %4 = fused_elementwise(%1, %3) {program=(('tanh', None), ('add', ('input', 0, 'rhs')))} : f32[2,3]   # m.py:2
  return %4
}""")  # noqa: E501


# ----------------------------------------------------------------------------------------------
# the switches
# ----------------------------------------------------------------------------------------------

def test_run_pipeline_disables_passes_by_name_and_rejects_unknown_names(monkeypatch):
    graph = parse_graph(BN_GRAPH)
    full = run_pipeline(graph, training=False)
    assert full.count("fused_dense") == 1 and full.count("batch_norm") == 0
    partial = run_pipeline(graph, training=False, disable=["fuse_dense", "bn_fold"])
    assert partial.count("fused_dense") == 0 and partial.count("batch_norm") == 1
    monkeypatch.setenv("KILN_DISABLE_PASSES", "fuse_dense")
    assert run_pipeline(graph, training=False).count("fused_dense") == 0
    with pytest.raises(kiln.KilnError, match="unknown pass 'fuze_dense'.*fuse_dense"):
        run_pipeline(graph, disable=["fuze_dense"])


def test_run_pipeline_dumps_the_ir_after_every_pass(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("KILN_DUMP_DIR", str(tmp_path))
    run_pipeline(parse_graph(BN_GRAPH), training=False, dump=True, label="net")
    printed = capsys.readouterr().out
    for name in pass_names():
        assert f"--- net after {name} ---" in printed
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files[0] == "net.00.simplify.ir" and len(files) == len(pass_names())
    assert parse_graph((tmp_path / files[-1]).read_text()).count("fused_dense") == 1


def test_training_graphs_skip_inference_only_passes():
    graph = parse_graph(BN_GRAPH)
    assert run_pipeline(graph, training=True).count("batch_norm") == 1


# ----------------------------------------------------------------------------------------------
# memory planning
# ----------------------------------------------------------------------------------------------

MEMORY_GRAPH = """\
graph(%x: f32[4,3], %w: f32[5,3], %b: f32[5]) {
  %1 = fully_connected(%x, %w, %b) {num_hidden=5, no_bias=False, flatten=True} : f32[4,5]
  %2 = exp(%1) : f32[4,5]
  %3 = tanh(%2) : f32[4,5]
  %4 = transpose(%3) {axes=None} : f32[5,4]
  %5 = sum(%4) {axis=(1,), keepdims=False, dtype=None} : f32[5]
  %6 = add(%b, %5) : f32[5]
  %7 = multiply(%3, %3) : f32[4,5]
  %8 = negative(%7) : f32[4,5]
  %9 = fully_connected(%x, %w, %b) {num_hidden=5, no_bias=False, flatten=True} : f32[4,5]
  %10 = add(%9, %8) : f32[4,5]
  return %6, %10
}"""


def _plan(text):
    graph = parse_graph(text)
    plan = plan_memory(graph, _wants_buffer, _can_overwrite)
    names = _value_names(graph)
    return graph, plan, names


def test_memory_plan_reuses_buffers_and_writes_in_place_where_safe():
    graph, plan, names = _plan(MEMORY_GRAPH)
    buffer = {names[v]: b for v, b in plan.buffer_of.items()}
    # %1 -> %2 -> %3 run in place; %3 is read again by %4/%7, so %7 needs a second (4,5)
    # buffer; once %3 is dead, %9 reuses the first one and %10 runs in place over %9.
    assert buffer == {"1": 0, "2": 0, "3": 0, "6": 1, "7": 2, "8": 2, "9": 0, "10": 0}
    assert plan.buffers == [((4, 5), onp.dtype("float32")), ((5,), onp.dtype("float32")),
                            ((4, 5), onp.dtype("float32"))]
    assert {names[k]: names[v] for k, v in plan.inplace.items()} == {
        "2": "1", "3": "2", "8": "7", "10": "9"}
    # never in place over an input (%6 reads the parameter %b) nor over a value read later
    assert "6" not in {names[k] for k in plan.inplace}
    assert plan.output_buffers == {0, 1}


def test_memory_plan_frees_values_and_buffers_after_their_last_use():
    graph, plan, names = _plan(MEMORY_GRAPH)
    position = {names[graph.nodes[k].out(0)]: k for k in range(3, len(graph.nodes))}
    dead = {names[v]: pos for pos, values in plan.dead_after.items() for v in values}
    # a view (%4) dies with the value it views (%3), at that value's last reader (%7)
    assert dead == {"1": position["2"], "2": position["3"], "3": position["7"],
                    "4": position["7"], "5": position["6"], "7": position["8"],
                    "8": position["10"], "9": position["10"]}
    assert plan.buffer_dead_after == {position["10"]: [2]}
    source = get_backend("numpy").compile(graph, {}, {}).source
    assert "    del v3, v4\n" in source and "    del v7\n" in source
    assert "del b2" not in source  # freed by the return, after the last node


def test_memory_plan_never_writes_over_views_inputs_or_outputs():
    graph, plan, names = _plan("""\
graph(%x: f32[2,3]) {
  %1 = exp(%x) : f32[2,3]
  %2 = reshape(%1) {newshape=(3, 2)} : f32[3,2]
  %3 = tanh(%2) : f32[3,2]
  %4 = sin(%x) : f32[2,3]
  %5 = cos(%4) : f32[2,3]
  %6 = add(%5, %1) : f32[2,3]
  return %3, %5, %6
}""")
    inplace = {names[k]: names[v] for k, v in plan.inplace.items()}
    # not %3 (over the view %2), %4 (over the input), %6 over %5 (an output); but %5 over %4
    # and %6 over %1, whose views are all read by then
    assert inplace == {"5": "4", "6": "1"}


def test_dropout_outputs_and_unused_multi_outputs_die_where_they_are_made():
    graph, plan, names = _plan("""\
graph(%x: f32[4]) {
  %1, %2 = dropout(%x) {p=0.5, axes=()} : f32[4], f32[4]
  %3, %4 = split(%1) {indices=(2,), axis=0} : f32[2], f32[2]
  %5 = exp(%3) : f32[2]
  return %5
}""")
    dead = {names[v]: pos for pos, values in plan.dead_after.items() for v in values}
    assert dead["2"] == 1 and dead["4"] == dead["3"] == dead["1"] == 3


def test_static_alloc_allocates_buffers_once_and_reuses_them_across_calls():
    graph = parse_graph(MEMORY_GRAPH)
    static = get_backend("numpy").compile(graph, {}, {"static_alloc": True})
    dynamic = get_backend("numpy").compile(graph, {}, {"static_alloc": False})
    assert "_empty" not in static.source.split("b0 = ")[0]  # intermediates are globals
    globals_before = {k: id(v) for k, v in static.fn.__globals__.items() if k.startswith("B")}
    assert len(globals_before) == 1  # the one intermediate buffer (outputs are fresh per call)
    xs = _inputs(graph)
    first = static(*xs)
    kept = [o.copy() for o in first]
    second = static(*xs)
    assert {k: id(v) for k, v in static.fn.__globals__.items() if k.startswith("B")} == \
        globals_before
    for a, b, c in zip(first, kept, second):
        onp.testing.assert_array_equal(a, b)  # the second call did not write into the first's
        onp.testing.assert_array_equal(c, b)
        assert not onp.shares_memory(a, c)
    assert_all_same(list(dynamic(*xs)), kept)


class _Net(nn.HybridBlock):
    """Outputs that could alias a parameter, an input or an intermediate buffer."""

    def __init__(self):
        super().__init__()
        self.dense = nn.Dense(4, in_units=3, activation="relu")
        self.bn = nn.BatchNorm(in_channels=4)

    def forward(self, x):
        h = self.dense(x)
        y = np.exp(h) * 2
        stats = kiln.npx.batch_norm(h, self.bn.gamma.data(), self.bn.beta.data(),
                                    self.bn.running_mean.data(), self.bn.running_var.data(),
                                    output_mean_var=True)
        return y, h.T, x.reshape(-1), self.dense.weight.data(), stats[1]


@pytest.mark.parametrize("static_alloc", [False, True])
def test_outputs_never_alias_static_buffers_parameters_or_inputs(static_alloc):
    net = _Net()
    net.initialize()
    net.hybridize(static_alloc=static_alloc)
    x = np.random.normal(size=(2, 3))
    x_before = x.asnumpy()
    params_before = {k: p.data().asnumpy() for k, p in net.collect_params().items()}
    first = net(x)
    expected = [o.asnumpy() for o in first]
    for o in first:
        o[...] = 123.0  # mutate every returned output
    onp.testing.assert_array_equal(x.asnumpy(), x_before)
    for k, p in net.collect_params().items():
        onp.testing.assert_array_equal(p.data().asnumpy(), params_before[k], err_msg=k)
    assert_all_same(net(x), expected, "the next call")


def test_static_alloc_training_reuses_buffers_and_matches_eager():
    net = nn.HybridSequential()
    net.add(nn.Dense(6, activation="tanh"), nn.Dense(2))
    net.initialize()
    x = np.random.normal(size=(3, 4))

    def grads():
        with autograd.record():
            loss = (net(x) ** 2).sum()
        loss.backward()
        return [p.grad().asnumpy().copy() for p in net.collect_params().values()]

    eager = grads()
    net.hybridize(static_alloc=True)
    for _ in range(3):
        for a, b in zip(grads(), eager):
            onp.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)
