"""Eager vs hybridized, forward and gradients, for every registry operator and every layer.

`CASES` maps each operator of `kiln.ops.REGISTRY` to the calls that exercise it; `SKIP` lists
those that make no sense in a compiled graph, with the reason. An operator in neither fails
`test_every_registry_operator_has_a_case_or_a_reason`: whoever adds an operator adds its line
here (one `case(...)` is enough).
"""

from __future__ import annotations

import inspect

import numpy as onp
import pytest
from hybrid_helpers import assert_all_same, assert_same, check_jit, fresh

import kiln
from kiln import autograd, np, npx
from kiln.gluon import nn
from kiln.ndarray import apply
from kiln.ops import REGISTRY
from kiln.ops import random as random_ops
from kiln.ops import shape as shape_ops

# Layers are called with batch sizes 1, 3, 5 in two modes, recorded or not: many signatures.
pytestmark = pytest.mark.filterwarnings("ignore::kiln.gluon.hybrid.RetraceWarning")

RNG = onp.random.default_rng(0)


def F(*shape, lo=-1.0, hi=1.0, dtype="float32"):
    return np.array(RNG.uniform(lo, hi, shape).astype(dtype))


def I(*shape, lo=0, hi=3, dtype="int64"):  # noqa: E743
    return np.array(RNG.integers(lo, hi, shape).astype(dtype))


def B(*shape):
    return np.array(RNG.random(shape) > 0.5)


def case(fn, *inputs, grad=True, id=None):
    return pytest.param(fn, inputs, grad, id=id)


POS = dict(lo=0.5, hi=2.0)
UNIT = dict(lo=-0.8, hi=0.8)
UNARY_DOMAIN = {"log": POS, "log2": POS, "log10": POS, "sqrt": POS, "cbrt": POS,
                "reciprocal": POS, "arcsin": UNIT, "arccos": UNIT, "arctanh": UNIT,
                "arccosh": dict(lo=1.2, hi=3.0)}
UNARY = ["negative", "absolute", "exp", "exp2", "expm1", "log", "log2", "log10", "log1p", "sqrt",
         "cbrt", "square", "reciprocal", "sin", "cos", "tan", "arcsin", "arccos", "arctan",
         "sinh", "cosh", "tanh", "arcsinh", "arccosh", "arctanh", "degrees", "radians", "sign",
         "floor", "ceil", "rint", "trunc", "isnan", "isinf", "isfinite"]
ACTIVATIONS = ["relu", "sigmoid", "softrelu", "softsign"]
ARITHMETIC = ["add", "subtract", "multiply", "true_divide", "power", "mod", "maximum", "minimum",
              "arctan2", "hypot", "floor_divide"]
COMPARISONS = ["equal", "not_equal", "less", "greater", "less_equal", "greater_equal"]
LOGICAL = ["logical_and", "logical_or", "logical_xor"]
BITWISE = ["bitwise_and", "bitwise_or", "bitwise_xor"]


def _np_fn(name):
    return getattr(np, name, None) or getattr(npx, name)


def _binary_cases(name):
    fn = _np_fn(name)
    if name in BITWISE:
        a, b = I(3, 4, hi=8, dtype="int32"), I(4, hi=8, dtype="int32")
    elif name in LOGICAL:
        a, b = B(3, 4), B(4)
    else:
        a, b = F(3, 4, lo=0.5, hi=2.0), F(4, lo=0.5, hi=2.0)
    grad = name in ARITHMETIC and name != "floor_divide"
    s = 3 if name in BITWISE else (True if name in LOGICAL else 1.5)
    cases = {
        name: [case(lambda x, y: fn(x, y), a, b, grad=grad, id="broadcast"),
               case(lambda x, y: fn(y, x), a, b, grad=grad, id="reversed")],
        name + "_scalar": [case(lambda x: fn(x, s), a, grad=grad, id="scalar")],
    }
    if "r" + name + "_scalar" in REGISTRY:
        cases["r" + name + "_scalar"] = [case(lambda x: fn(s, x), a, grad=grad, id="rscalar")]
    elif name in COMPARISONS:  # s < x is recorded as x > s
        cases[name + "_scalar"].append(case(lambda x: fn(s, x), a, grad=False, id="mirrored"))
    return cases


def _index_add(g, idx):
    return shape_ops.index_add(g, idx, 0, 4, "clip")


def _getitem_backward(g):
    return apply(REGISTRY["getitem_backward"], (g,), {"key": (slice(1, 3), 0), "shape": (4, 3)})


def _pick_backward(g, idx):
    return apply(REGISTRY["pick_backward"], (g, idx),
                 {"axis": 1, "keepdims": False, "mode": "clip", "shape": (3, 4)})


def _fused_dense(x, w, b):
    return apply(REGISTRY["fused_dense"], (x, w, b),
                 {"num_hidden": 4, "no_bias": False, "flatten": True, "act_type": "tanh"})


def _fused_elementwise(x, y):
    program = (("exp", None), ("multiply_scalar", ("scalar", 0.5)),
               ("subtract", ("input", 0, "lhs")), ("relu", None))
    return apply(REGISTRY["fused_elementwise"], (x, y), {"program": program})


def _batch_norm(x, gamma, beta, mean, var):
    return npx.batch_norm(x, gamma, beta, mean, var, fix_gamma=False, use_global_stats=True,
                          output_mean_var=True)


CASES: dict[str, list] = {
    # shape
    "reshape": [case(lambda x: x.reshape(4, 3), F(3, 4)),
                case(lambda x: x.reshape(-1), F(2, 3, 2), id="minus-one")],
    "transpose": [case(lambda x: x.T, F(3, 4)),
                  case(lambda x: x.transpose(1, 2, 0), F(2, 3, 4), id="axes"),
                  case(lambda x: x.transpose(-1, 0, 1), F(2, 3, 4), id="negative-axes")],
    "expand_dims": [case(lambda x: np.expand_dims(x, -1), F(3, 4))],
    "squeeze": [case(lambda x: np.squeeze(x, 1), F(3, 1, 4)),
                case(lambda x: np.squeeze(x), F(1, 3, 1), id="all")],
    "concatenate": [case(lambda x, y: np.concatenate([x, y, x], axis=1), F(2, 3), F(2, 1))],
    "stack": [case(lambda x, y: np.stack([x, y], axis=-1), F(2, 3), F(2, 3))],
    "split": [case(lambda x: np.split(x, 2, axis=1), F(3, 4)),
              case(lambda x: np.split(x, [1, 3], axis=0)[2] * 2, F(4, 2), id="indices"),
              case(lambda x: np.split(x, 1, axis=0)[0] + 1, F(2, 2), id="one-section")],
    "broadcast_to": [case(lambda x: np.broadcast_to(x, (3, 4)), F(4))],
    "flip": [case(lambda x: np.flip(x, 0), F(3, 4))],
    "tile": [case(lambda x: np.tile(x, (2, 1, 3)), F(2, 3))],
    "repeat": [case(lambda x: np.repeat(x, 2, axis=1), F(2, 3)),
               case(lambda x: np.repeat(x, [1, 0, 2], axis=0), F(3, 2), id="uneven"),
               case(lambda x: np.repeat(x, 2), F(2, 2), id="flat")],
    "getitem": [case(lambda x: x[1:, ::-2], F(3, 4)),
                case(lambda x: x[..., None, 0], F(3, 4), id="ellipsis"),
                case(lambda x: x[onp.array([2, 0, 2])], F(3, 4), id="advanced"),
                case(lambda x: x[onp.array([True, False, True])], F(3, 4), id="mask")],
    "getitem_backward": [case(_getitem_backward, F(2))],
    "take": [case(lambda x, i: np.take(x, i, axis=1, mode="clip"), F(3, 4), I(2, 2, hi=6)),
             case(lambda x, i: np.take(x, i), F(3, 4), I(5, hi=12), id="flat")],
    "index_add": [case(_index_add, F(5, 3), I(5, hi=4))],
    "pad": [case(lambda x: np.pad(x, ((1, 0), (2, 1))), F(2, 3))],
    # reductions
    "sum": [case(lambda x: x.sum(), F(3, 4)),
            case(lambda x: x.sum(axis=(0, 2), keepdims=True), F(2, 3, 4), id="axes")],
    "mean": [case(lambda x: x.mean(axis=-1), F(3, 4))],
    "prod": [case(lambda x: x.prod(axis=0), F(3, 4, lo=0.5, hi=1.5))],
    "max": [case(lambda x: x.max(axis=1, keepdims=True), F(3, 4))],
    "min": [case(lambda x: x.min(), F(3, 4))],
    "var": [case(lambda x: x.var(axis=0, ddof=1), F(3, 4))],
    "std": [case(lambda x: x.std(axis=1), F(3, 4))],
    "argmax": [case(lambda x: x.argmax(axis=1), F(3, 4), grad=False)],
    "argmin": [case(lambda x: x.argmin(), F(3, 4), grad=False)],
    "all": [case(lambda x: (x > 0).all(axis=0), F(3, 4), grad=False)],
    "any": [case(lambda x: (x > 0).any(), F(3, 4), grad=False)],
    # products
    "matmul": [case(lambda a, b: a @ b, F(3, 4), F(4, 2)),
               case(lambda a, b: a @ b, F(2, 3, 4), F(4, 5), id="batched"),
               case(lambda a, b: a @ b, F(4), F(4, 2), id="vector")],
    "tensordot": [case(lambda a, b: np.tensordot(a, b, ((1, 2), (0, 1))), F(2, 3, 4), F(3, 4, 2))],
    "dot": [case(lambda a, b: np.dot(a, b), F(3, 4), F(4, 2)),
            case(lambda a, b: np.dot(a, b), F(4), F(4), id="inner")],
    "einsum": [case(lambda a, b: np.einsum("ij,jk->ik", a, b), F(3, 4), F(4, 2)),
               case(lambda a: np.einsum("ij->ji", a) * 2, F(3, 4), id="transpose")],
    # elementwise odds and ends
    "around": [case(lambda x: np.around(x, 2), F(3, 4), grad=False)],
    "logical_not": [case(lambda x: np.logical_not(x > 0), F(3, 4), grad=False)],
    "where": [case(lambda c, x, y: np.where(c > 0, x, y), F(3, 4), F(3, 4), F(4))],
    "clip": [case(lambda x: np.clip(x, -0.5, 0.5), F(3, 4)),
             case(lambda x: x.clip(a_max=0.2), F(3, 4), id="upper")],
    "cast": [case(lambda x: x.astype("float64") * 2, F(3, 4)),
             case(lambda x: x.astype("int32"), F(3, 4, lo=-5, hi=5), grad=False, id="to-int")],
    "copy": [case(lambda x: np.copy(x), F(3, 4))],
    "stop_gradient": [case(lambda x: npx.stop_gradient(x) * x, F(3, 4))],
    "full_like": [case(lambda x: np.full_like(x, 2.5) + np.ones_like(x), F(3, 4))],
    # neural network
    "fully_connected": [
        case(lambda x, w, b: npx.fully_connected(x, w, b, num_hidden=4), F(2, 3), F(4, 3), F(4)),
        case(lambda x, w: npx.fully_connected(x, w, None, num_hidden=4, no_bias=True),
             F(2, 3, 2), F(4, 6), id="flatten"),
        case(lambda x, w, b: npx.fully_connected(x, w, b, num_hidden=4, flatten=False),
             F(2, 5, 3), F(4, 3), F(4), id="no-flatten")],
    "softmax": [case(lambda x: npx.softmax(x), F(3, 4)),
                case(lambda x: npx.softmax(x, axis=0, temperature=2.0), F(3, 4), id="axis-0")],
    "log_softmax": [case(lambda x: npx.log_softmax(x, axis=1), F(3, 4))],
    "batch_norm": [case(_batch_norm, F(4, 3), F(3), F(3), F(3), F(3, **POS))],
    "layer_norm": [case(lambda x, g, b: npx.layer_norm(x, g, b), F(3, 4), F(4), F(4)),
                   case(lambda x, g, b: npx.layer_norm(x, g, b, axis=0, output_mean_var=True),
                        F(3, 4), F(3), F(3), id="axis-0")],
    "embedding": [case(lambda i, w: npx.embedding(i, w), I(2, 3, hi=5), F(5, 4))],
    "one_hot": [case(lambda i: npx.one_hot(i, 4), I(2, 3, hi=4), grad=False)],
    "pick": [case(lambda x, i: npx.pick(x, i, axis=1), F(3, 4), I(3, hi=4)),
             case(lambda x, i: npx.pick(x, i, axis=0, keepdims=True, mode="wrap"), F(3, 4),
                  I(4, hi=7), id="wrap")],
    "pick_backward": [case(_pick_backward, F(3), I(3, hi=4))],
    "fused_dense": [case(_fused_dense, F(2, 3), F(4, 3), F(4), grad=False)],
    "fused_elementwise": [case(_fused_elementwise, F(3, 4), F(4), grad=False)],
}
# Random operators: the same seed gives the same draws, eagerly and compiled (first and cached
# calls); test_random_operator_eager_vs_compiled runs these.
RANDOM_CASES = {
    "random_normal": lambda x: np.random.normal(1.0, 2.0, size=(3, 4)) + x,
    "random_uniform": lambda x: np.random.uniform(-1, 1, size=(5,)) * x,
    "random_randint": lambda x: np.random.randint(0, 10, size=(2, 3)),
}
for _name in UNARY:
    CASES[_name] = [case(_np_fn(_name), F(3, 4, **UNARY_DOMAIN.get(_name, {})))]
for _name in ACTIVATIONS:
    CASES[_name] = [case(getattr(npx, _name), F(3, 4))]
for _name in ARITHMETIC + COMPARISONS + LOGICAL + BITWISE:
    for _op, _cases in _binary_cases(_name).items():
        CASES.setdefault(_op, []).extend(_cases)

SKIP = {
    "nonzero": "its output shape depends on the data; a graph cannot hold it (tested to raise)",
    "dropout": "random draws differ between runs; tested through nn.Dropout below",
}


def _registry_samples() -> dict:
    """The operator test's sample table (tests/ops/op_samples.py), loaded by path."""
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).parent.parent / "ops" / "op_samples.py"
    spec = importlib.util.spec_from_file_location("kiln_op_samples", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SAMPLES


def _sample_case(op, k, sample):
    inputs = list(sample.inputs)
    while inputs and inputs[-1] is None:  # an absent optional input at the end
        inputs.pop()
    attrs = dict(sample.attrs)
    floats = any(isinstance(x, onp.ndarray) and x.dtype.kind == "f" for x in inputs)
    grad = op.differentiable and sample.grad_error is None and floats
    arrays = [np.array(x) if isinstance(x, onp.ndarray) else x for x in inputs]
    return case(lambda *xs: apply(op, xs, op.full_attrs(attrs), sample.subgraphs), *arrays,
                grad=grad, id=f"sample{k}")


# Operators without a hand-written case run on their registry samples: every operator is then
# checked eager against compiled, and a new operator needs only its sample.
for _name, _samples in _registry_samples().items():
    if _name in CASES or _name in RANDOM_CASES or _name in SKIP or _name not in REGISTRY:
        continue
    _op = REGISTRY[_name]
    if _op.random:
        RANDOM_CASES[_name] = (lambda op, attrs: lambda x: random_ops.sample(
            op, op.full_attrs(attrs)))(_op, _samples[0].attrs)
        continue
    usable = [s for s in _samples if s.infer_error is None]
    if usable:
        CASES[_name] = [_sample_case(_op, k, s) for k, s in enumerate(usable)]


def test_every_registry_operator_has_a_case_or_a_reason():
    missing = sorted(set(REGISTRY) - set(CASES) - set(RANDOM_CASES) - set(SKIP))
    assert not missing, f"operators without a consistency case (add them to CASES): {missing}"
    stale = sorted((set(CASES) | set(RANDOM_CASES) | set(SKIP)) - set(REGISTRY))
    assert not stale, f"cases for operators that no longer exist: {stale}"


XFAIL: dict = {
    # (operator, case id): reason
}


def _params():
    for name in sorted(CASES):
        for p in CASES[name]:
            reason = XFAIL.get((name, p.id))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            yield pytest.param(*p.values, id=f"{name}-{p.id or 'default'}", marks=marks)


@pytest.mark.parametrize("static_alloc", [False, True], ids=["dynamic", "static_alloc"])
@pytest.mark.parametrize("fn, inputs, grad", list(_params()))
def test_operator_eager_vs_compiled(fn, inputs, grad, static_alloc):
    check_jit(fn, *inputs, grad=grad, static_alloc=static_alloc)


@pytest.mark.parametrize("static_alloc", [False, True], ids=["dynamic", "static_alloc"])
@pytest.mark.parametrize("name", sorted(RANDOM_CASES))
def test_random_operator_eager_vs_compiled(name, static_alloc):
    fn = RANDOM_CASES[name]
    compiled = kiln.jit(fn, static_alloc=static_alloc)
    x = F(1)
    npx.seed(11)
    expected = fn(x)
    for attempt in ("first call", "cached call"):
        npx.seed(11)
        assert_same(compiled(x), expected, attempt)
    assert not onp.array_equal(compiled(x).asnumpy(), compiled(x).asnumpy())  # fresh draws


def test_nonzero_raises_while_tracing():
    with pytest.raises(kiln.KilnError, match="data-dependent|depends on the data"):
        kiln.jit(lambda x: np.nonzero(x)[0])(F(3, 4))


def test_eager_batch_norm_statistics_do_not_alias_the_running_state():
    mean, var = F(3), F(3, **POS)
    before = mean.asnumpy()
    _, m, _ = npx.batch_norm(F(4, 3), F(3), F(3), mean, var, output_mean_var=True)
    m[...] = 7.0
    onp.testing.assert_array_equal(mean.asnumpy(), before)


# ----------------------------------------------------------------------------------------------
# layers
# ----------------------------------------------------------------------------------------------

def _copy_params(src, dst) -> None:
    for (name, p), q in zip(src.collect_params().items(), dst.collect_params().values()):
        q.set_data(p.data().asnumpy())


def _make(factory, x):
    """Two identical networks (one to stay eager), initialized by one forward pass."""
    nets = [factory(), factory()]
    for net in nets:
        net.initialize()
        with autograd.predict_mode():
            net(x)
    _copy_params(nets[0], nets[1])
    return nets


def _run(net, x, train: bool, record: bool):
    params = [p for p in net.collect_params().values() if p.grad_req != "null"]
    x = fresh([x])[0]
    if x.dtype.kind == "f":
        x.attach_grad()
    if record:
        with autograd.record(train_mode=train):
            out = net(x)
            loss = (out * out).sum() if out.dtype.kind == "f" else None
        if loss is not None:
            loss.backward()
        grads = [p.grad().asnumpy().copy() for p in params]
        grads.append(x.grad.asnumpy().copy() if x.grad is not None else None)
        return out, grads
    with (autograd.train_mode() if train else autograd.predict_mode()):
        return net(x), []


def _state(net):
    return {k: p.data().asnumpy().copy() for k, p in net.collect_params().items()}


LAYERS = {
    "Dense": lambda: nn.Dense(4, activation="tanh"),
    "Dense-flatten": lambda: nn.Dense(3, flatten=True),
    "Activation": lambda: nn.Activation("softrelu"),
    "Dropout": lambda: nn.Dropout(0.0),  # p > 0 in test_dropout_* below
    "BatchNorm": lambda: nn.BatchNorm(),
    "BatchNorm-global-stats": lambda: nn.BatchNorm(use_global_stats=True, momentum=0.5),
    "BatchNorm-no-scale-no-center": lambda: nn.BatchNorm(scale=False, center=False),
    "LayerNorm": lambda: nn.LayerNorm(),
    "Flatten": lambda: nn.Flatten(),
    "Embedding": None,   # integer inputs: test_embedding_layer below
    "Identity": lambda: nn.Identity(),
    "HybridLambda": lambda: nn.HybridLambda(lambda F, x: F.np.tanh(x) * 2),
    "HybridLambda-name": lambda: nn.HybridLambda("relu"),
    "HybridSequential": lambda: _sequential(),
    "InstanceNorm": lambda: nn.InstanceNorm(scale=True),
    "GroupNorm": lambda: nn.GroupNorm(num_groups=1),
    "SymbolBlock": None,   # built from files and symbols: tests/io
    "Conv1D": lambda: nn.Conv1D(4, 3, padding=1),
    "Conv2D": lambda: nn.Conv2D(4, 3, strides=2, padding=1, activation="relu"),
    "Conv2D-groups": lambda: nn.Conv2D(6, 3, groups=3, padding=1, use_bias=False),
    "Conv3D": lambda: nn.Conv3D(2, 2),
    "Conv1DTranspose": lambda: nn.Conv1DTranspose(3, 3, strides=2),
    "Conv2DTranspose": lambda: nn.Conv2DTranspose(3, 4, strides=2, padding=1),
    "Conv3DTranspose": lambda: nn.Conv3DTranspose(2, 2, strides=2),
    "MaxPool1D": lambda: nn.MaxPool1D(2),
    "MaxPool2D": lambda: nn.MaxPool2D(3, 2, padding=1, ceil_mode=True),
    "MaxPool3D": lambda: nn.MaxPool3D(2),
    "AvgPool1D": lambda: nn.AvgPool1D(2),
    "AvgPool2D": lambda: nn.AvgPool2D(3, 2, padding=1, count_include_pad=False),
    "AvgPool3D": lambda: nn.AvgPool3D(2),
    "GlobalMaxPool1D": lambda: nn.GlobalMaxPool1D(),
    "GlobalMaxPool2D": lambda: nn.GlobalMaxPool2D(),
    "GlobalMaxPool3D": lambda: nn.GlobalMaxPool3D(),
    "GlobalAvgPool1D": lambda: nn.GlobalAvgPool1D(),
    "GlobalAvgPool2D": lambda: nn.GlobalAvgPool2D(),
    "GlobalAvgPool3D": lambda: nn.GlobalAvgPool3D(),
    "Sequential": None,    # plain Blocks run eagerly: test_plain_blocks_hybridize_children
    "Lambda": None,
}


def _sequential():
    net = nn.HybridSequential()
    net.add(nn.Dense(5), nn.BatchNorm(), nn.Activation("relu"), nn.Dropout(0.0), nn.Dense(2))
    return net


def test_every_layer_has_a_case():
    layers = {name for name, obj in vars(nn).items()
              if inspect.isclass(obj) and issubclass(obj, nn.Block) and obj not in (
                  nn.Block, nn.HybridBlock)}
    covered = {name.split("-")[0] for name in LAYERS}
    assert layers <= covered, f"layers without a consistency case: {sorted(layers - covered)}"


def _input_for(name, batch):
    if name in ("Dense-flatten", "Flatten"):
        return F(batch, 2, 3)
    for dims, shape in ((1, (6, 8)), (2, (6, 6, 5)), (3, (6, 4, 4, 4))):
        if name.split("-")[0].endswith(f"{dims}D") or f"{dims}DTranspose" in name:
            return F(batch, *shape)
    if name.startswith(("BatchNorm", "InstanceNorm", "GroupNorm")):
        return F(batch, 3, 2)
    return F(batch, 3)


@pytest.mark.parametrize("static_alloc", [False, True], ids=["dynamic", "static_alloc"])
@pytest.mark.parametrize("train", [False, True], ids=["predict", "train"])
@pytest.mark.parametrize("name", [n for n, f in LAYERS.items() if f is not None])
def test_layer_eager_vs_hybridized(name, train, static_alloc):
    eager, hybrid = _make(LAYERS[name], _input_for(name, 2))
    hybrid.hybridize(static_alloc=static_alloc)
    for batch in (1, 3, 5, 3):  # changing shapes, then one seen before (cached)
        if name.startswith("BatchNorm") and train and batch == 1:
            continue  # one sample has no variance to normalise
        x = _input_for(name, batch)
        for record in (False, True):
            out_e, grads_e = _run(eager, x, train, record)
            out_h, grads_h = _run(hybrid, x, train, record)
            assert_same(out_h, out_e, f"{name} batch {batch} output (record={record})")
            for k, (a, b) in enumerate(zip(grads_h, grads_e)):
                if b is not None:
                    assert_same(a, b, f"{name} batch {batch} gradient {k}")
            state_e, state_h = _state(eager), _state(hybrid)  # BatchNorm's running statistics
            for key in state_e:
                assert_same(state_h[key], state_e[key], f"{name} state {key}")


def test_embedding_layer():
    eager, hybrid = _make(lambda: nn.Embedding(6, 3), I(2, 4, hi=6))
    hybrid.hybridize()
    for batch in (1, 3, 5):
        idx = I(batch, 4, hi=6)
        for train in (False, True):
            out_e, g_e = _run(eager, idx, train, True)
            out_h, g_h = _run(hybrid, idx, train, True)
            assert_same(out_h, out_e)
            assert_same(g_h[0], g_e[0], "embedding weight gradient")


def test_plain_blocks_hybridize_children():
    net = nn.Sequential()
    net.add(nn.Dense(3), nn.Lambda(lambda x: x * 2), nn.Dense(2))
    net.initialize()
    x = F(4, 5)
    eager = net(x)
    net.hybridize()
    assert_same(net(x), eager)
    assert net[0]._cache is not None and net[2]._cache is not None


# ----------------------------------------------------------------------------------------------
# dropout
# ----------------------------------------------------------------------------------------------

def test_dropout_in_predict_mode_is_the_identity():
    layer = nn.Dropout(0.5)
    layer.hybridize()
    x = F(4, 5)
    assert_same(layer(x), x)
    with autograd.record(train_mode=False):
        assert_same(layer(x), x)


@pytest.mark.parametrize("hybrid", [False, True])
def test_dropout_in_train_mode_masks_scales_and_differentiates_by_the_mask(hybrid):
    p = 0.3
    layer = nn.Dropout(p)
    layer.hybridize(hybrid)
    x = F(200, 50, lo=0.5, hi=1.5)
    x.attach_grad()
    with autograd.record():
        y = layer(x)
    y.backward()
    out, xs, grad = y.asnumpy(), x.asnumpy(), x.grad.asnumpy()
    dropped = out == 0
    assert abs(dropped.mean() - p) < 0.02                       # the mask's statistics
    onp.testing.assert_allclose(out[~dropped], xs[~dropped] / (1 - p), rtol=1e-6)
    onp.testing.assert_allclose(grad, out / xs, rtol=1e-6)      # gradient = the mask
    with autograd.record():
        again = layer(x)
    assert not onp.array_equal(again.asnumpy() == 0, dropped)   # a fresh draw every call


@pytest.mark.parametrize("static_alloc", [False, True], ids=["dynamic", "static_alloc"])
def test_dropout_network_in_train_mode_equals_eager_with_the_same_seed(static_alloc):
    def factory():
        net = nn.HybridSequential()
        net.add(nn.Dense(16, activation="relu"), nn.Dropout(0.4), nn.BatchNorm(),
                nn.Dense(3))
        return net

    eager, hybrid = _make(factory, F(2, 5))
    hybrid.hybridize(static_alloc=static_alloc)
    for batch in (4, 6, 4):
        x = F(batch, 5)
        npx.seed(batch)
        out_e, grads_e = _run(eager, x, True, True)
        npx.seed(batch)
        out_h, grads_h = _run(hybrid, x, True, True)
        assert_same(out_h, out_e)
        for a, b in zip(grads_h, grads_e):
            assert_same(a, b)
        for key, value in _state(eager).items():
            assert_same(_state(hybrid)[key], value, key)


def test_dropout_axes_share_one_draw():
    layer = nn.Dropout(0.5, axes=(1,))
    layer.hybridize()
    with autograd.train_mode():
        out = layer(F(6, 40, lo=1, hi=2)).asnumpy()
    assert ((out == 0).all(axis=1) | (out != 0).all(axis=1)).all()


# ----------------------------------------------------------------------------------------------
# training through compiled graphs
# ----------------------------------------------------------------------------------------------

def _train(net, data, steps=5, lr=0.1):
    """Plain SGD written against the Gluon API (kiln has no Trainer on this branch)."""
    losses = []
    params = [p for p in net.collect_params().values() if p.grad_req != "null"]
    for step in range(steps):
        x, y = data[step % len(data)]
        with autograd.record():
            loss = ((net(x) - y) ** 2).mean()
        loss.backward()
        for p in params:
            p.set_data(p.data().asnumpy() - lr * p.grad().asnumpy())
        losses.append(float(loss.asnumpy()))
    return losses


def test_training_a_network_hybridized_follows_eager_step_for_step():
    def factory():
        net = nn.HybridSequential()
        net.add(nn.Dense(8, activation="relu"), nn.BatchNorm(), nn.Dense(1))
        return net

    npx.seed(5)                      # its own initial weights and data: independent of
    rng = onp.random.default_rng(5)  # the other tests
    data = [(np.array(rng.uniform(-1, 1, (6, 4)).astype("float32")),
             np.array(rng.uniform(-1, 1, (6, 1)).astype("float32"))) for _ in range(3)]
    eager, hybrid = _make(factory, data[0][0])
    hybrid.hybridize(static_alloc=True)
    losses_e, losses_h = _train(eager, data, steps=9, lr=0.05), _train(hybrid, data, steps=9,
                                                                        lr=0.05)
    onp.testing.assert_allclose(losses_h, losses_e, rtol=1e-4)
    for key, value in _state(eager).items():
        assert_same(_state(hybrid)[key], value, key)
    assert sum(losses_h[-3:]) < sum(losses_h[:3])  # it learns


def test_gradient_accumulation_with_grad_req_add():
    net = nn.Dense(2, in_units=3)
    net.initialize()
    net.collect_params().setattr("grad_req", "add")
    x = F(4, 3)
    grads = []
    for hybrid in (False, True):
        net.hybridize(hybrid)
        net.collect_params().zero_grad()
        for _ in range(2):
            with autograd.record():
                out = net(x)
            out.backward()
        grads.append(net.weight.grad().asnumpy().copy())
    assert_same(grads[1], grads[0])
    single = nn.Dense(2, in_units=3)
    single.initialize()
    _copy_params(net, single)
    with autograd.record():
        out = single(x)
    out.backward()
    assert_same(grads[0], 2 * single.weight.grad().asnumpy())


def test_outputs_unused_by_the_loss_get_zero_cotangents():
    class Two(nn.HybridBlock):
        def __init__(self):
            super().__init__()
            self.dense = nn.Dense(3, in_units=2)

        def forward(self, x):
            h = self.dense(x)
            return h * 2, h.sum(axis=1), h.argmax(axis=1)

    block = Two()
    block.initialize()
    x = F(4, 2)
    results = []
    for hybrid in (False, True):
        block.hybridize(hybrid)
        with autograd.record():
            a, _, index = block(x)
            loss = a.sum()
        loss.backward()
        results.append((index.asnumpy(), block.dense.weight.grad().asnumpy().copy()))
    assert_all_same(results[1], results[0])
