"""Random graphs, built by hypothesis from a pool of operators, through every pass and the
backend: all must agree with eager execution, forward and gradients.

A program is a list of steps over a pool of values (the inputs first). Each step applies one
operator to values of the pool whose shapes fit, and is replayed by `replay` on arrays (eager)
or on symbols (traced by kiln.jit). Values are kept small and finite by choosing the operators
a value's range allows.
"""

from __future__ import annotations

import os
import warnings

import numpy as onp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hybrid_helpers import assert_all_same, assert_same, check_jit, fresh, gradients, run_graph

import kiln
from kiln import np, npx
from kiln.backend import get_backend
from kiln.backend.native import NativeBackendWarning
from kiln.graph.ir import verify
from kiln.graph.passes import PIPELINE, run_pipeline

# RG_EXAMPLES=2000 hunts longer; CI runs a fixed, modest number of derandomized examples.
SETTINGS = settings(max_examples=int(os.environ.get("RG_EXAMPLES", 150)), derandomize=True,
                    deadline=None, database=None, suppress_health_check=list(HealthCheck))

UNARY = {
    "negative": np.negative, "tanh": np.tanh, "sigmoid": npx.sigmoid, "relu": npx.relu,
    "sin": np.sin, "abs": np.abs, "square": np.square, "exp": np.exp,
    "log1p_abs": lambda x: np.log1p(np.abs(x)), "softmax": None, "softrelu": npx.softrelu,
}
BINARY = {"add": np.add, "subtract": np.subtract, "multiply": np.multiply,
          "maximum": np.maximum, "minimum": np.minimum, "divide": np.true_divide}
SCALAR = {"add": lambda x, s: x + s, "rsub": lambda x, s: s - x, "mul": lambda x, s: x * s,
          "div": lambda x, s: x / s, "pow2": lambda x, s: x ** 2,
          "max": lambda x, s: np.maximum(x, s), "radd": lambda x, s: s + x,
          "one": lambda x, s: x * 1, "zero": lambda x, s: x + 0}
REDUCE = {"sum": np.sum, "mean": np.mean, "max": np.max}


def replay(steps, inputs):
    """Run the program's steps on `inputs` (arrays or symbols); returns the pool."""
    pool = list(inputs)
    for kind, args, params in steps:
        xs = [pool[i] for i in args]
        pool.extend(_apply(kind, xs, params))
    return pool


def _apply(kind, xs, p) -> list:
    x = xs[0]
    if kind == "unary":
        if p["op"] == "softmax":
            return [npx.softmax(x, axis=p["axis"])]
        return [UNARY[p["op"]](x)]
    if kind == "scalar":
        return [SCALAR[p["op"]](x, p["s"])]
    if kind == "binary":
        return [BINARY[p["op"]](x, xs[1])]
    if kind == "const":  # a binary operator with a NumPy constant operand
        return [BINARY[p["op"]](x, p["value"])]
    if kind == "reduce":
        return [REDUCE[p["op"]](x, axis=p["axis"], keepdims=p["keepdims"])]
    if kind == "reshape":
        return [x.reshape(p["shape"])]
    if kind == "transpose":
        return [x.transpose(p["axes"])]
    if kind == "expand_dims":
        return [np.expand_dims(x, p["axis"])]
    if kind == "squeeze":
        return [np.squeeze(x, p["axis"])]
    if kind == "concat":
        return [np.concatenate(xs, axis=p["axis"])]
    if kind == "getitem":
        return [x[p["key"]]]
    if kind == "split":
        return list(np.split(x, p["sections"], axis=p["axis"]))
    if kind == "matmul":
        return [np.matmul(x, xs[1])]
    if kind == "const_matmul":
        return [x @ p["rhs"]]
    # dtypes: integer and boolean values flow through the graph too
    if kind == "cast":
        return [x.astype(p["dtype"])]
    if kind == "argmax":
        return [x.argmax(axis=p["axis"])]
    if kind == "compare":
        return [x > xs[1]]
    if kind == "where":
        return [np.where(xs[1] > 0, x, xs[2])]
    # more shapes
    if kind == "clip":
        return [np.clip(x, -0.5, 0.7)]
    if kind == "take":
        return [np.take(x, p["indices"], axis=p["axis"])]
    if kind == "stack":
        return [np.stack([x, xs[1]], axis=p["axis"])]
    if kind == "log_softmax":
        return [npx.log_softmax(x, axis=-1)]
    if kind == "flip":
        return [np.flip(x, p["axis"])]
    if kind == "pad":
        return [np.pad(x, p["width"])]
    if kind == "tile":
        return [np.tile(x, p["reps"])]
    if kind == "broadcast":
        return [np.broadcast_to(x, p["shape"])]
    if kind == "fc":  # weight and bias from the pool, or constants; then maybe an activation
        w = xs[1] if len(xs) > 1 else p["weight"]
        b = xs[2] if len(xs) > 2 else p.get("bias")
        y = npx.fully_connected(x, w, b, num_hidden=w.shape[0], no_bias=b is None)
        return [y if p["act"] is None else npx.activation(y, p["act"])]
    raise AssertionError(kind)


# ----------------------------------------------------------------------------------------------
# the strategy
# ----------------------------------------------------------------------------------------------

shapes = st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple)


def _broadcastable_to(draw, shape):
    """A shape that broadcasts against `shape` (trailing dims equal or 1)."""
    k = draw(st.integers(0, len(shape)))
    tail = shape[len(shape) - k:]
    return tuple(draw(st.sampled_from([1, d])) for d in tail)


@st.composite
def programs(draw, max_steps: int = 10):
    n_inputs = draw(st.integers(1, 3))
    in_shapes = [draw(shapes) for _ in range(n_inputs)]
    seed = draw(st.integers(0, 2**16))
    rng = onp.random.default_rng(seed)
    dtypes = [draw(st.sampled_from(["float32", "float32", "float64"])) for _ in in_shapes]
    inputs = [np.array(rng.uniform(-1.5, 1.5, s).astype(d)) for s, d in zip(in_shapes, dtypes)]
    pool = list(inputs)
    steps = []
    for _ in range(draw(st.integers(2, max_steps))):
        if steps and draw(st.integers(0, 9)) == 0:  # the same computation again: work for CSE
            step = draw(st.sampled_from(steps))
        else:
            step = _draw_step(draw, pool, rng)
        if step is None:
            continue
        try:
            outs = _apply(step[0], [pool[i] for i in step[1]], step[2])
        except (kiln.KilnError, ValueError, TypeError):
            continue  # not defined for these operands (e.g. negative of a bool): eager refuses
        if any(not onp.isfinite(o.asnumpy()).all() or abs(o.asnumpy()).max(initial=0) > 1e3
               for o in outs):
            continue  # keep values in a range where float32 comparisons are meaningful
        steps.append(step)
        pool.extend(outs)
    n_out = draw(st.integers(1, 2))
    last = len(pool) - 1
    outputs = [last] + [draw(st.integers(0, last)) for _ in range(n_out - 1)]
    return inputs, steps, outputs


def _pick(draw, pool, cond=lambda v: True):
    choices = [i for i, v in enumerate(pool) if cond(v)]
    return draw(st.sampled_from(choices)) if choices else None


KINDS = ["unary", "unary", "scalar", "binary", "binary", "const", "reduce", "reshape",
         "transpose", "expand_dims", "squeeze", "concat", "getitem", "split", "matmul", "fc",
         "fc", "cast", "argmax", "compare", "where", "clip", "take", "stack", "log_softmax",
         "flip", "pad", "tile", "broadcast"]


def _draw_step(draw, pool, rng):
    kind = draw(st.sampled_from(KINDS))
    i = _pick(draw, pool)
    x = pool[i]
    shape = x.shape
    ndim = len(shape)
    big = abs(x.asnumpy().astype(onp.float64)).max(initial=0) > 3
    step = _draw_dtype_or_shape_step(draw, kind, i, pool, rng)
    if step is not False:
        return step
    if kind == "unary":
        op = draw(st.sampled_from(sorted(UNARY)))
        if op in ("exp", "square") and big:
            op = "tanh"
        if op == "softmax":
            if ndim == 0:
                return None
            return ("unary", [i], {"op": op, "axis": draw(st.integers(-ndim, ndim - 1))})
        return ("unary", [i], {"op": op})
    if kind == "scalar":
        op = draw(st.sampled_from(sorted(SCALAR)))
        s = draw(st.sampled_from([0.5, 2.0, -1.5, 3]))
        return ("scalar", [i], {"op": op, "s": s})
    if kind in ("binary", "const"):
        op = draw(st.sampled_from(sorted(BINARY)))
        if kind == "const":
            value = rng.uniform(0.5, 1.5, _broadcastable_to(draw, shape)).astype(onp.float32)
            return ("const", [i], {"op": op, "value": value})
        j = _pick(draw, pool, lambda v: _broadcasts(v.shape, shape))
        if j is None:
            return None
        if op == "divide" and abs(pool[j].asnumpy()).min(initial=1) < 0.2:
            op = "multiply"
        return ("binary", [i, j], {"op": op})
    if kind == "reduce":
        if ndim == 0:
            return None
        axes = draw(st.lists(st.integers(0, ndim - 1), unique=True, max_size=ndim))
        axis = None if not axes else (axes[0] if len(axes) == 1 else tuple(axes))
        return ("reduce", [i], {"op": draw(st.sampled_from(sorted(REDUCE))), "axis": axis,
                                "keepdims": draw(st.booleans())})
    if kind == "reshape":
        size = int(onp.prod(shape))
        divisors = [d for d in range(1, size + 1) if size % d == 0]
        d = draw(st.sampled_from(divisors))
        new = draw(st.sampled_from([(size,), (d, size // d), (d, -1), (1, size, 1), shape]))
        return ("reshape", [i], {"shape": new})
    if kind == "transpose":
        return ("transpose", [i], {"axes": tuple(draw(st.permutations(range(ndim))))})
    if kind == "expand_dims":
        return ("expand_dims", [i], {"axis": draw(st.integers(-ndim - 1, ndim))})
    if kind == "squeeze":
        ones = [a for a, d in enumerate(shape) if d == 1]
        if not ones:
            return None
        return ("squeeze", [i], {"axis": draw(st.sampled_from(ones))})
    if kind == "concat":
        if ndim == 0:
            return None
        axis = draw(st.integers(0, ndim - 1))
        j = _pick(draw, pool, lambda v: len(v.shape) == ndim and all(
            a == b for k, (a, b) in enumerate(zip(v.shape, shape)) if k != axis))
        return ("concat", [i, j], {"axis": axis})
    if kind == "getitem":
        if ndim == 0:
            return None
        d = shape[0]
        key = draw(st.sampled_from([
            slice(0, max(1, d - 1)), d - 1, (Ellipsis, slice(None, None, -1)),
            onp.array([d - 1, 0]), (slice(None), None)]))
        return ("getitem", [i], {"key": key})
    if kind == "split":
        if ndim == 0:
            return None
        axis = draw(st.integers(0, ndim - 1))
        sections = draw(st.sampled_from([s for s in (1, 2, 3) if shape[axis] % s == 0]))
        return ("split", [i], {"axis": axis, "sections": sections})
    if kind == "matmul":
        if ndim != 2:
            return None
        j = _pick(draw, pool, lambda v: len(v.shape) in (1, 2) and v.shape[0] == shape[1])
        if j is None:  # a constant right-hand side
            rhs = rng.uniform(-1, 1, (shape[1], draw(st.integers(1, 3)))).astype(onp.float32)
            return ("const_matmul", [i], {"rhs": rhs})
        return ("matmul", [i, j], {})
    if kind == "fc":
        if ndim < 2:
            return None
        in_units = int(onp.prod(shape[1:]))
        act = draw(st.sampled_from([None, "relu", "tanh", "sigmoid", "softrelu"]))
        j = _pick(draw, pool, lambda v: len(v.shape) == 2 and v.shape[1] == in_units)
        if j is None or draw(st.booleans()):  # constant weights, as a folded layer has
            hidden = draw(st.integers(1, 4))
            weight = rng.uniform(-0.5, 0.5, (hidden, in_units)).astype(onp.float32)
            bias = rng.uniform(-0.5, 0.5, (hidden,)).astype(onp.float32)
            return ("fc", [i], {"act": act, "weight": weight,
                                "bias": bias if draw(st.booleans()) else None})
        hidden = pool[j].shape[0]
        k = _pick(draw, pool, lambda v: v.shape == (hidden,))
        return ("fc", [i, j] + ([k] if k is not None else []), {"act": act})
    raise AssertionError(kind)


def _draw_dtype_or_shape_step(draw, kind, i, pool, rng):
    """The steps added for dtypes and more shape operators; False for the other kinds."""
    shape = pool[i].shape
    ndim = len(shape)
    same = lambda v: v.shape == shape  # noqa: E731
    if kind == "cast":
        return ("cast", [i], {"dtype": draw(st.sampled_from(["float32", "float64", "int32"]))})
    if kind == "argmax":
        return ("argmax", [i], {"axis": draw(st.integers(-1, ndim - 1)) if ndim else None})
    if kind == "compare":
        j = _pick(draw, pool, lambda v: _broadcasts(v.shape, shape))
        return ("compare", [i, j], {})
    if kind == "where":
        j, k = _pick(draw, pool, same), _pick(draw, pool, lambda v: _broadcasts(v.shape, shape))
        return ("where", [i, j, k], {})
    if kind in ("clip", "log_softmax"):
        return (kind, [i], {}) if ndim else None
    if kind == "take":
        if ndim == 0:
            return None
        axis = draw(st.integers(0, ndim - 1))
        indices = rng.integers(0, shape[axis], draw(st.sampled_from([(2,), (2, 2)])))
        return ("take", [i], {"axis": axis, "indices": indices})
    if kind == "stack":
        return ("stack", [i, _pick(draw, pool, same)], {"axis": draw(st.integers(0, ndim))})
    if kind == "flip":
        return ("flip", [i], {"axis": draw(st.integers(0, ndim - 1))}) if ndim else None
    if kind == "pad":
        return ("pad", [i], {"width": tuple((draw(st.integers(0, 1)), draw(st.integers(0, 2)))
                                            for _ in shape)})
    if kind == "tile":
        return ("tile", [i], {"reps": tuple(draw(st.integers(1, 2)) for _ in range(ndim + 1))})
    if kind == "broadcast":
        return ("broadcast", [i], {"shape": (draw(st.integers(1, 3)),) + shape})
    return False


def _broadcasts(small, shape) -> bool:
    if len(small) > len(shape):
        return False
    return all(a in (1, b) for a, b in zip(reversed(small), reversed(shape)))


# ----------------------------------------------------------------------------------------------
# the checks
# ----------------------------------------------------------------------------------------------

def _function(steps, outputs):
    def fn(*xs):
        pool = replay(steps, xs)
        return tuple(pool[k] for k in outputs)
    return fn


def _traced(program):
    inputs, steps, outputs = program
    fn = _function(steps, outputs)
    # traced_graph compiles on the default backend too; a float16 program falls back from the
    # native one with a NativeBackendWarning (tested in tests/backend), which is noise here
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NativeBackendWarning)
        graph = kiln.jit(fn).traced_graph(*fresh(inputs))
    expected = [o.asnumpy() for o in fn(*fresh(inputs))]
    return graph, expected


PASS_NAMES = [name for name, _, _ in PIPELINE]


@SETTINGS
@given(programs())
def test_each_pass_alone_preserves_values_and_verifies(program):
    graph, expected = _traced(program)
    verify(graph)
    assert_all_same(run_graph(graph, program[0]), expected, "traced graph")
    for name, fn, _ in PIPELINE:
        out = fn(graph)
        verify(out)
        assert_all_same(run_graph(out, program[0]), expected, f"after {name}")


def _native_here() -> bool:
    try:
        from kiln.backend.native import native_available

        return native_available()
    except ImportError:
        return False


BACKEND_MODES = [("numpy", False), ("numpy", True)] + (
    [("native", False), ("native", True)] if _native_here() else [])


@SETTINGS
@given(programs())
def test_pipeline_and_backend_agree_with_interpretation(program):
    graph, expected = _traced(program)
    for training in (False, True):
        optimized = run_pipeline(graph, training=training, verify_ir=True)
        interpreted = run_graph(optimized, program[0])
        assert_all_same(interpreted, expected, f"pipeline (training={training})")
        for backend, static_alloc in BACKEND_MODES:
            compiled = get_backend(backend).compile(optimized, {}, {"static_alloc": static_alloc})
            for call in range(2):  # static buffers are reused by the second call
                got = compiled(*[x.asnumpy() for x in program[0]])
                assert_all_same(list(got), interpreted,
                                f"{backend} backend (static_alloc={static_alloc}), call {call}")


@SETTINGS
@given(programs(), st.booleans())
def test_gradients_through_compiled_graphs_equal_eager(program, static_alloc):
    inputs, steps, outputs = program
    fn = _function(steps, outputs)
    check_jit(fn, *inputs, static_alloc=static_alloc)


@settings(max_examples=10, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(programs(max_steps=5))
def test_second_order_gradients_through_compiled_graphs(program):
    """create_graph=True re-runs the joint graph op by op; it must agree with eager."""
    inputs, steps, outputs = program
    fn = _function(steps, outputs)
    compiled = kiln.jit(fn)

    def grad_of(f):
        def g(*xs):
            outs = [o for o in f(*xs) if o.dtype.kind == "f"]
            if not outs:  # nothing differentiable: zero gradients
                return [x * 0 for x in xs]
            total = sum((o * o).sum() for o in outs)
            return kiln.autograd.grad(total, list(xs), create_graph=True)
        return g

    _, eager = gradients(grad_of(fn), inputs)
    _, got = gradients(grad_of(compiled), inputs)
    for a, b in zip(got, eager):
        assert_same(a, b, "second-order gradient")


def test_the_generator_covers_the_pool():
    """The strategy reaches every kind of step (guards against a generator that silently
    stops producing some operators)."""
    seen = set()

    @settings(max_examples=100, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(programs())
    def collect(program):
        seen.update(kind for kind, _, _ in program[1])

    collect()
    expected = {"unary", "scalar", "binary", "const", "reduce", "reshape", "transpose",
                "expand_dims", "concat", "getitem", "split", "matmul"}
    assert expected <= seen, f"never generated: {expected - seen}"
