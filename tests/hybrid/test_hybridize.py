"""hybridize(): the seed chapter's cells, the cache, the switches, and every error a user can
meet while a block is traced."""

from __future__ import annotations

import re
import time
import traceback
import warnings

import numpy as onp
import pytest
from hybrid_helpers import assert_all_same, assert_same

import kiln
from kiln import autograd
from kiln.base import KilnError, SymbolicValueError
from kiln.gluon import hybrid as hybrid_module
from kiln.gluon.hybrid import RetraceWarning, VerificationError
from kiln.graph import passes
from kiln.graph.passes.rewrite import derived, rewrite

# ----------------------------------------------------------------------------------------------
# the seed chapter's cells, with mxnet -> kiln
# ----------------------------------------------------------------------------------------------

from kiln import np, npx
from kiln.gluon import nn

npx.set_np()


def add(a, b):
    return a + b


def fancy_func(a, b, c, d):
    e = add(a, b)
    f = add(c, d)
    g = add(e, f)
    return g


def test_cell_imperative_fancy_func(capsys):
    print(fancy_func(1, 2, 3, 4))
    assert capsys.readouterr().out == "10\n"


def add_():
    return '''
def add(a, b):
    return a + b
'''


def fancy_func_():
    return '''
def fancy_func(a, b, c, d):
    e = add(a, b)
    f = add(c, d)
    g = add(e, f)
    return g
'''


def evoke_():
    return add_() + fancy_func_() + 'print(fancy_func(1, 2, 3, 4))'


def test_cell_symbolic_simulation(capsys):
    prog = evoke_()
    print(prog)
    y = compile(prog, '', 'exec')
    exec(y)
    assert capsys.readouterr().out.endswith("print(fancy_func(1, 2, 3, 4))\n10\n")


# Factory for networks
def get_net():
    net = nn.HybridSequential()
    net.add(nn.Dense(256, activation='relu'),
            nn.Dense(128, activation='relu'),
            nn.Dense(2))
    net.initialize()
    return net


def test_cell_get_net_and_hybridize_keep_the_result():
    x = np.random.normal(size=(1, 512))
    net = get_net()
    eager = net(x)
    net.hybridize()
    assert_same(net(x), eager)
    assert_same(net(x), eager)  # the cached graph
    assert len(net._cache.entries) == 1


class Timer:
    """d2l's Timer, written here since kiln.utils is not on this branch."""

    def __init__(self):
        self.tik = time.perf_counter()

    def stop(self):
        return time.perf_counter() - self.tik


class Benchmark:
    """For measuring running time."""
    def __init__(self, description='Done'):
        self.description = description

    def __enter__(self):
        self.timer = Timer()
        return self

    def __exit__(self, *args):
        print(f'{self.description}: {self.timer.stop():.4f} sec')


def test_cell_benchmark_with_and_without_hybridization(capsys):
    x = np.random.normal(size=(1, 512))
    net = get_net()
    with Benchmark('Without hybridization'):
        for i in range(1000): net(x)  # noqa: E701
        npx.waitall()
    net.hybridize()
    with Benchmark('With hybridization'):
        for i in range(1000): net(x)  # noqa: E701
        npx.waitall()
    out = capsys.readouterr().out
    times = [float(t) for t in re.findall(r"hybridization: (\d+\.\d{4}) sec", out)]
    # The speed-up itself is measured in bench/ (W1): timings do not belong in tests.
    assert out.startswith("Without hybridization: ") and len(times) == 2


class HybridNet(nn.HybridBlock):
    def __init__(self, **kwargs):
        super(HybridNet, self).__init__(**kwargs)  # noqa: UP008  (the chapter's spelling)
        self.hidden = nn.Dense(4)
        self.output = nn.Dense(2)

    def hybrid_forward(self, F, x):
        print('module F: ', F)
        print('value  x: ', x)
        x = F.npx.relu(self.hidden(x))
        print('result  : ', x)
        return self.output(x)


def test_cell_hybrid_net_prints_only_while_traced(capsys):
    net = HybridNet()
    net.initialize()
    x = np.random.normal(size=(1, 3))
    eager = net(x)
    out = capsys.readouterr().out
    assert "module F:  <module 'kiln.ndarray'" in out
    assert re.search(r"value  x:  \[\[.*\]\]", out) and "result  :  [[" in out

    net.hybridize()
    assert_same(net(x), eager)
    out = capsys.readouterr().out
    assert "module F:  <module 'kiln.symbol'" in out
    assert "value  x:  <Symbol data : f32[1,3]>" in out
    assert re.search(r"result  :  <Symbol \w*relu\w* : f32\[1,4\]>", out)

    assert_same(net(x), eager)
    assert capsys.readouterr().out == ""   # the compiled graph runs without Python's print

    net.hybridize()                        # hybridize() again: traced again, prints again
    net(x)
    assert "module F:  <module 'kiln.symbol'" in capsys.readouterr().out
    net(x)
    assert capsys.readouterr().out == ""


class AsNumpyNet(HybridNet):
    def hybrid_forward(self, F, x):
        x.asnumpy()  # the chapter's exercise 1
        return self.output(F.npx.relu(self.hidden(x)))


def test_asnumpy_in_hybrid_forward_names_the_line_and_the_fix():
    net = AsNumpyNet()
    net.initialize()
    x = np.random.normal(size=(1, 3))
    net(x)  # fine eagerly
    net.hybridize()
    line = AsNumpyNet.hybrid_forward.__code__.co_firstlineno + 1
    with pytest.raises(SymbolicValueError) as info:
        net(x)
    message = str(info.value)
    assert f"test_hybridize.py:{line}" in message
    assert "asnumpy" in message and "hybridize(False)" in message


# ----------------------------------------------------------------------------------------------
# errors on symbolic values
# ----------------------------------------------------------------------------------------------

class Lambda(nn.HybridBlock):
    """A hybridized block running `fn(x)`."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def _traced_error(fn, error=SymbolicValueError):
    block = Lambda(fn)
    block.hybridize()
    with pytest.raises(error) as info:
        block(np.ones((2, 3)))
    return str(info.value)


def _line_of(fn, offset=0):
    return f"test_hybridize.py:{fn.__code__.co_firstlineno + offset}"


def _item(x):
    return x.item()


def _tolist(x):
    return x.tolist()


def _asscalar(x):
    return x.asscalar()


def _kiln_array(x):
    return np.array(x)


def _numpy_array(x):
    return onp.array(x)


def _float(x):
    return float(x.sum())


@pytest.mark.parametrize("fn, what", [
    (_item, "item"), (_tolist, "tolist"), (_asscalar, "asscalar"),
    (_kiln_array, "np.array(symbol)"), (_numpy_array, "np.array(symbol)"),
    (_float, "float(symbol)"),
])
def test_concrete_values_of_symbols_raise_naming_the_line_and_the_fix(fn, what):
    message = _traced_error(fn)
    assert what in message and _line_of(fn, 1) in message
    assert "hybridize(False)" in message


def _if(x):
    if x.sum() > 0:
        return x
    return -x


def _while(x):
    while x.max() > 1:
        x = x / 2
    return x


def _and(x):
    return (x > 0) and x


@pytest.mark.parametrize("fn", [_if, _while, _and])
def test_python_control_flow_on_symbols_names_the_symbolic_operators(fn):
    message = _traced_error(fn)
    assert _line_of(fn, 1) in message
    for name in ("npx.cond", "npx.while_loop", "npx.foreach"):
        assert name in message
    assert "shapes" in message  # ... and says branching on shapes is fine


def _iadd(x):
    x += 1
    return x


def _isub(x):
    x -= 1
    return x


def _imul(x):
    x *= 2
    return x


def _idiv(x):
    x /= 2
    return x


def _setitem(x):
    x[...] = 0
    return x


def _setslice(x):
    x[:] = x + 1
    return x


@pytest.mark.parametrize("fn, what", [
    (_iadd, "a += b"), (_isub, "a -= b"), (_imul, "a *= b"), (_idiv, "a /= b"),
    (_setitem, "a[...] = v"), (_setslice, "a[...] = v"),
])
def test_in_place_updates_of_symbols_raise_naming_the_line_and_the_fix(fn, what):
    message = _traced_error(fn)
    assert what in message and _line_of(fn, 1) in message
    assert "a = a + b" in message


def test_python_control_flow_on_shapes_and_values_specializes_the_trace():
    class Shaped(nn.HybridBlock):
        def forward(self, x, scale):
            if x.shape[0] > 2:            # on a shape: fine
                x = x * scale
            for _ in range(x.ndim):       # on a Python value: fine (unrolled)
                x = x + 1
            return x

    block = Shaped()
    block.hybridize()
    for shape, scale in (((2, 3), 2.0), ((4, 3), 2.0), ((4, 3), 3.0), ((4, 3), 3)):
        x = np.random.normal(size=shape)
        assert_same(block(x, scale), block.forward(x, scale))
    assert block._cache.traces == 4  # two shapes, then two scales (3.0 and 3 apart)


def test_a_plain_block_child_raises_mxnets_error_with_the_hint():
    net = nn.HybridSequential()
    with pytest.raises(ValueError, match="Children of HybridBlock must also be HybridBlock.*"
                                         "please try HybridSequential instead"):
        net.add(nn.Sequential())

    class Holder(nn.HybridBlock):
        def __init__(self):
            super().__init__()
            self.child = nn.Lambda(lambda x: x)

    with pytest.raises(ValueError, match="HybridSequential"):
        Holder()


class Pair(nn.HybridBlock):
    def forward(self, x, y):
        return x + y


class LegacyPair(nn.HybridBlock):
    def hybrid_forward(self, F, x, y):
        return F.np.add(x, y)


@pytest.mark.parametrize("cls", [Pair, LegacyPair])
@pytest.mark.parametrize("active", [False, True])
def test_mixing_arrays_and_symbols_raises_a_clear_error(cls, active):
    block = cls()
    block.hybridize(active)
    x, s = np.ones((2,)), kiln.sym.var("s", shape=(2,))
    for args in ((x, s), (s, x)):
        with pytest.raises(KilnError, match="inputs mix arrays and symbols"):
            block(*args)


# ----------------------------------------------------------------------------------------------
# the cache
# ----------------------------------------------------------------------------------------------

class Counting(nn.HybridBlock):
    def __init__(self):
        super().__init__()
        self.dense = nn.Dense(3, in_units=4)
        self.traces = 0

    def forward(self, x, *rest, **kwargs):
        self.traces += 1
        y = self.dense(x)
        for r in rest:
            y = y + (r if not isinstance(r, tuple) else sum(r))
        return y * kwargs.get("scale", 1)


@pytest.mark.filterwarnings("ignore::kiln.gluon.hybrid.RetraceWarning")
def test_traced_once_per_signature_shapes_dtypes_mode_and_recording():
    block = Counting()
    block.initialize()
    block.hybridize()
    x = np.random.normal(size=(2, 4))
    block(x), block(x)
    assert block.traces == 1
    block(np.random.normal(size=(5, 4)))
    assert block.traces == 2                     # a new shape
    block(x.astype("float64"))
    assert block.traces == 3                     # a new dtype
    with autograd.train_mode():
        block(x)
    assert block.traces == 4                     # training mode
    with autograd.record():
        block(x)
    assert block.traces == 5                     # recording (and training)
    with autograd.record(train_mode=False):
        block(x)
    assert block.traces == 6                     # recording in predict mode
    block(x), block(np.random.normal(size=(5, 4)))
    assert block.traces == 6                     # all of these are cached


@pytest.mark.filterwarnings("ignore::kiln.gluon.hybrid.RetraceWarning")
def test_cache_keys_tell_positional_keyword_and_static_arguments_apart():
    block = Counting()
    block.initialize()
    block.hybridize()
    x, y = np.random.normal(size=(2, 4)), np.random.normal(size=(2, 3))
    calls = [((x, y), {}), ((x, 1), {}), ((x, 1.0), {}), ((x, True), {}), ((x, (1, 2)), {}),
             ((x,), {"scale": 2}), ((x,), {"scale": 2.0}), ((x, y, 2.0), {}), ((x, 2.0, y), {})]
    for args, kwargs in calls:
        expected = block.forward(*args, **kwargs)
        got = block(*args, **kwargs)
        assert_same(got, expected, f"{args[1:]} {kwargs}")
    assert len(block._cache.entries) == len(calls)
    for args, kwargs in calls:  # all cached now
        block(*args, **kwargs)
    assert len(block._cache.entries) == len(calls)


def test_static_argument_before_an_array_argument_with_gradients():
    block = Counting()
    block.initialize()
    block.hybridize()
    x, y = np.random.normal(size=(2, 4)), np.random.normal(size=(2, 3))
    grads = []
    for hybrid in (False, True):
        block.hybridize(hybrid)
        y.attach_grad()
        with autograd.record():
            out = block(x, 2.0, y * y)
        out.backward()
        grads.append(y.grad.asnumpy().copy())
    assert_same(grads[1], grads[0])


def test_unsupported_arguments_raise():
    block = Counting()
    block.initialize()
    block.hybridize()
    x = np.ones((2, 4))
    with pytest.raises(KilnError, match="pass array arguments positionally"):
        block(x, scale=np.ones((2, 3)))
    with pytest.raises(KilnError, match="keyword argument 'scale'.*not list"):
        block(x, scale=[1, 2])
    with pytest.raises(KilnError, match="not dict"):
        block(x, {"a": 1})


def test_many_retraces_warn_saying_what_changed():
    block = Counting()
    block.initialize()
    block.hybridize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for batch in range(1, hybrid_module.RETRACE_WARNING_LIMIT + 3):
            block(np.ones((batch, 4)))
    retraces = [w for w in caught if issubclass(w.category, RetraceWarning)]
    assert len(retraces) == 1  # once per block
    message = str(retraces[0].message)
    last = hybrid_module.RETRACE_WARNING_LIMIT + 1
    assert f"traced and compiled {last} times" in message
    assert f"argument 0: shape ({last - 1}, 4) dtype float32 -> shape ({last}, 4) dtype " \
           "float32" in message
    assert retraces[0].filename == __file__  # attributed to the caller's line


def test_retrace_warning_names_mode_and_recording_changes():
    kwarg = hybrid_module._describe_change(
        (((("keyword", "scale", "int", 2),), False, False)),
        (((("keyword", "scale", "float", 2.0),), False, False)))
    assert kwarg == "argument 0: scale=2 -> scale=2.0"
    change = hybrid_module._describe_change(
        ((((2, 4), "f", False),), False, False), ((((2, 4), "f", True),), True, True))
    assert change == ("argument 0: shape (2, 4) dtype float32 -> shape (2, 4) dtype float32 "
                      "(needs a gradient); training mode False -> True; autograd recording "
                      "False -> True")


def test_hybridize_applies_to_children_and_false_returns_to_eager():
    outer = nn.Sequential()            # a plain Block: its HybridBlock children hybridize
    inner = nn.HybridSequential()
    inner.add(nn.Dense(3, in_units=2), nn.Dense(2, in_units=3))
    outer.add(inner, nn.Dense(1, in_units=2))
    outer.initialize()
    x = np.random.normal(size=(4, 2))
    eager = outer(x)
    outer.hybridize()
    assert inner._active and inner[0]._active and outer[1]._active
    assert_same(outer(x), eager)
    assert inner._cache is not None and inner[0]._cache is None  # traced as part of `inner`
    outer.hybridize(False)
    assert not inner._active and not inner[0]._active and inner._cache is None
    assert_same(outer(x), eager)
    assert inner._cache is None


def test_hybridize_options_reach_children():
    net = nn.HybridSequential()
    net.add(nn.Dense(3, in_units=2))
    net.hybridize(static_alloc=True, disable_passes=["cse"])
    assert net[0]._hybrid_options["static_alloc"] is True
    assert net[0]._hybrid_options["disable_passes"] == ["cse"]


# ----------------------------------------------------------------------------------------------
# the debugging switches
# ----------------------------------------------------------------------------------------------

@pytest.fixture
def ignore_hybridize():
    hybrid_module.IGNORE_HYBRIDIZE[0] = True  # what KILN_IGNORE_HYBRIDIZE=1 sets at import
    yield
    hybrid_module.IGNORE_HYBRIDIZE[0] = False


def test_ignore_hybridize_runs_eagerly(ignore_hybridize, capsys):
    net = HybridNet()
    net.initialize()
    net.hybridize()
    x = np.random.normal(size=(1, 3))
    net(x)
    net(x)
    out = capsys.readouterr().out
    assert out.count("module F:  <module 'kiln.ndarray'") == 2  # eager, every call
    assert net._cache is None


def test_disable_passes_per_block():
    net = nn.HybridSequential()
    net.add(nn.Dense(4, in_units=3, activation="relu"))
    net.initialize()
    x = np.random.normal(size=(2, 3))
    net.hybridize()
    net(x)
    assert next(iter(net._cache.entries.values())).optimized.count("fused_dense") == 1
    net.hybridize(disable_passes=["fuse_dense"])
    net(x)
    optimized = next(iter(net._cache.entries.values())).optimized
    assert optimized.count("fused_dense") == 0 and optimized.count("relu") == 1
    net.hybridize(disable_passes=["no_such_pass"])
    with pytest.raises(KilnError, match="unknown pass 'no_such_pass'"):
        net(x)


def test_dump_ir_prints_the_graph_after_every_pass(capsys):
    net = nn.HybridSequential()
    net.add(nn.Dense(4, in_units=3, activation="relu"))
    net.initialize()
    net.hybridize(dump_ir=True)
    net(np.random.normal(size=(2, 3)))
    out = capsys.readouterr().out
    for name in passes.pass_names():
        assert f"--- {net.name}.forward after {name} ---" in out
    assert "fused_dense(%data, %0.weight, %0.bias)" in out


# ----------------------------------------------------------------------------------------------
# generated code in tracebacks
# ----------------------------------------------------------------------------------------------

def _take(x, index):
    return np.take(x, index, axis=0)   # the index is data: out of range only at run time


def test_a_failing_compiled_line_shows_in_the_traceback_with_its_node_and_user_line():
    compiled = kiln.jit(_take, backend="numpy")  # the generated Python is what this shows
    x = np.ones((3, 2))
    compiled(x, np.array([0, 2], dtype="int64"))  # compiles and runs
    with pytest.raises(IndexError):
        try:
            compiled(x, np.array([0, 7], dtype="int64"))
        except IndexError:
            text = traceback.format_exc()
            raise
    assert re.search(r'File "<kiln-graph-\d+>", line \d+, in kiln_graph_\d+', text)
    assert re.search(r"v1 = F\d+\(in_data0_\d+, in_data1_\d+\)   # %1 = take\(%data0, %data1\) "
                     rf"at {_line_of(_take, 1)}", text)


# ----------------------------------------------------------------------------------------------
# verify=True
# ----------------------------------------------------------------------------------------------

class Verified(nn.HybridBlock):
    def __init__(self):
        super().__init__()
        self.dense = nn.Dense(4, in_units=3)

    def forward(self, x):
        h = np.tanh(self.dense(x))
        return h * 2 + 1


def _corrupt_tanh(monkeypatch):
    """Replace the simplify pass by one that also miscompiles tanh into sigmoid."""
    index = passes.pass_names().index("simplify")
    name, fn, on_training = passes.PIPELINE[index]

    def miscompile(graph):
        def visit(n, inputs):
            if n.op == "tanh":
                return [derived(n, "sigmoid", inputs, {}).out(0)]
            return None
        return rewrite(fn(graph), visit)

    monkeypatch.setattr(passes, "PIPELINE", list(passes.PIPELINE))
    passes.PIPELINE[index] = (name, miscompile, on_training)


def test_verify_catches_a_miscompilation_and_names_the_node_and_line(monkeypatch):
    _corrupt_tanh(monkeypatch)
    net = Verified()
    net.initialize()
    net.hybridize(verify=True)
    with pytest.raises(VerificationError) as info:
        net(np.random.normal(size=(2, 3)))
    message = str(info.value)
    line = _line_of(Verified.forward, 1)
    assert "output 0 of 'verified" in message
    assert re.search(r"first diverging node is '\w*tanh0' \(tanh, optimised into \w+\), "
                     rf"created at {line}", message)


def test_verify_passes_correct_graphs_in_train_mode_with_batch_norm(monkeypatch):
    net = nn.HybridSequential()
    net.add(nn.Dense(4, in_units=3), nn.BatchNorm(in_channels=4), nn.Dense(2, in_units=4))
    net.initialize()
    net.hybridize(verify=True)
    x = np.random.normal(size=(5, 3))
    net(x)
    with autograd.train_mode():
        net(x)  # the state write-back happens after the comparison


def test_verify_without_a_miscompilation_is_silent_and_only_checks_first_calls():
    net = Verified()
    net.initialize()
    net.hybridize(verify=True)
    x = np.random.normal(size=(2, 3))
    assert_same(net(x), net.forward(x))
    entry = next(iter(net._cache.entries.values()))
    assert entry.verify_pending is False
    net(x)


def test_outputs_with_several_results_nested_structures_and_constants():
    class Nested(nn.HybridBlock):
        def forward(self, x):
            return [x * 2, (x.sum(), 3.0)], x.argmax(axis=1)

    block = Nested()
    expected = block(np.arange(6, dtype="float32").reshape(2, 3))
    block.hybridize()
    got = block(np.arange(6, dtype="float32").reshape(2, 3))
    assert isinstance(got, tuple) and isinstance(got[0], list) and isinstance(got[0][1], tuple)
    assert_all_same([got[0][0], got[0][1][0], got[1]],
                    [expected[0][0], expected[0][1][0], expected[1]])
    assert float(got[0][1][1]) == 3.0


def test_forward_hooks_run_around_every_hybridized_call():
    net = nn.Dense(2, in_units=3)
    net.initialize()
    seen = []
    net.register_forward_pre_hook(lambda block, inputs: seen.append("pre"))
    handle = net.register_forward_hook(lambda block, inputs, out: seen.append(out.shape))
    x = np.ones((1, 3))
    net(x)
    net.hybridize()
    net(x), net(x)
    assert seen == ["pre", (1, 2)] * 3
    handle.detach()
    net(x)
    assert seen[-1] == "pre"


def test_initializing_another_network_does_not_retrace_this_one(capsys):
    net = HybridNet()
    net.initialize()
    x = np.random.normal(size=(1, 3))
    net.hybridize()
    net(x)
    assert "module F" in capsys.readouterr().out
    other = get_net()          # new parameters elsewhere move the global epoch
    other(np.random.normal(size=(1, 512)))
    net(x)
    assert capsys.readouterr().out == ""
    net.hidden.weight.set_data(onp.ones((4, 3)))   # same arrays: the graph sees the values
    assert_same(net(x), net.forward(x))
    assert capsys.readouterr().out.count("module F") == 1  # (the eager forward just above)
    net.cast("float64")                            # new arrays: traced again
    net(x.astype("float64"))
    assert "module F:  <module 'kiln.symbol'" in capsys.readouterr().out


def test_under_record_a_hybridized_block_is_one_tape_node():
    net = get_net()
    x = np.random.normal(size=(2, 512))
    net(x)
    net.hybridize()
    x.attach_grad()
    with autograd.record():
        y = net(x)
    assert y._node.name == f"hybridized {net.name}"
    assert len(y._node.inputs) == 1 + 6   # the input and the six parameters
    assert all(i._node is None for i in y._node.inputs)


def test_jit_on_symbols_builds_their_graph_and_refuses_mixtures():
    compiled = kiln.jit(lambda a, b: a * b + 1)
    a, b = kiln.sym.var("a", shape=(2,)), kiln.sym.var("b", shape=(2,))
    out = compiled(a, b)
    assert out.list_arguments() == ["a", "b"] and out.shape == (2,)
    for args in ((a, np.ones(2)), (np.ones(2), b)):
        with pytest.raises(KilnError, match="inputs mix arrays and symbols"):
            compiled(*args)


def test_backend_option():
    net = nn.Dense(2, in_units=3)
    net.initialize()
    x = np.ones((1, 3))
    from kiln.backend import get_backend

    auto = get_backend("auto").name  # native where a C compiler is present, else numpy
    for backend, expected in (("numpy", "numpy"), ("auto", auto), (None, auto)):
        net.hybridize(backend=backend)
        assert_same(net(x), net.forward(x))
        assert next(iter(net._cache.entries.values())).compiled.backend == expected
    net.hybridize(backend="no_such_backend")
    with pytest.raises(KilnError, match="unknown backend 'no_such_backend'"):
        net(x)


def test_deferred_initialization_on_the_first_hybridized_call():
    net = nn.HybridSequential()
    net.add(nn.Dense(4), nn.BatchNorm(), nn.Dense(2))
    net.initialize()
    net.hybridize()
    x = np.random.normal(size=(3, 5))
    y = net(x)
    assert net[0].weight.shape == (4, 5) and net._cache.traces == 1
    assert_same(net(x), y)
    assert net._cache.traces == 1
    net.hybridize(False)
    assert_same(net(x), y)


def test_jit_graph_and_source_are_those_of_the_arguments_given():
    compiled = kiln.jit(lambda x: np.tanh(x) * 2, backend="numpy")
    small, large = np.ones((2, 3)), np.ones((4, 5))
    compiled(small), compiled(large)
    for _ in range(3):  # whatever the order the entries were made in
        assert "f32[2,3]" in str(compiled.graph(small))
        assert "f32[4,5]" in str(compiled.graph(large))
        assert "(4, 5)" in compiled.source(large) and "(2, 3)" in compiled.source(small)
    assert "tanh" in str(compiled.traced_graph(small))


def test_debug_levels_and_the_dump_folder(monkeypatch, capsys, tmp_path):
    net = nn.HybridSequential()
    net.add(nn.Dense(4, in_units=3, activation="relu"))
    net.initialize()
    x = np.ones((2, 3))
    monkeypatch.setenv("KILN_DEBUG", "2")
    monkeypatch.setenv("KILN_DUMP_DIR", str(tmp_path))
    net.hybridize(backend="numpy")
    net(x)
    out = capsys.readouterr().out
    assert f"--- hybridized {net.name} (" in out and "fused_dense(%data" in out
    assert "def kiln_graph_" in out            # level 2: the generated source
    dumped = sorted(p.name for p in tmp_path.iterdir())
    assert f"{net.name}.numpy.src" in dumped
    assert f"{net.name}.forward.00.simplify.ir" in dumped
