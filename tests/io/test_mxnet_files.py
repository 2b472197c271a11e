"""Models exported by a real MXNet 1.9.1 (tests/io/data/mxnet, made by make_mxnet_files.py):
kiln reads them, computes MXNet's outputs, trains them and exports them again."""

import glob
import json
import os

import numpy as onp
import pytest

import kiln
from kiln import autograd, np
from kiln.base import KilnError
from kiln.gluon import SymbolBlock
from kiln.io.mxnet_ops import READERS
from kiln.io.symbol_json import load_mx_graph

DATA = os.path.join(os.path.dirname(__file__), "data", "mxnet")
NAMES = sorted(os.path.basename(p)[:-len("-symbol.json")]
               for p in glob.glob(os.path.join(DATA, "*-symbol.json")))
HAS_CONV = "convolution" in kiln.ops.REGISTRY and "pooling" in kiln.ops.REGISTRY


def _needs_conv(name):
    with open(os.path.join(DATA, name + "-symbol.json")) as f:
        ops = {n["op"] for n in json.load(f)["nodes"]}
    return bool(ops & {"Convolution", "Pooling", "LeakyReLU"})


def load(name, **kwargs):
    if _needs_conv(name) and not HAS_CONV:
        pytest.skip("needs kiln's convolution and pooling operators")
    prefix = os.path.join(DATA, name)
    net = SymbolBlock.imports(prefix + "-symbol.json", ["data"], prefix + "-0000.params",
                              **kwargs)
    x = np.array(onp.load(prefix + "_x.npy"))
    return net, x, onp.load(prefix + "_y.npy")


def test_the_data_is_there():
    assert len(NAMES) == 8
    assert sum(os.path.getsize(p) for p in glob.glob(os.path.join(DATA, "*"))) < 3e6


@pytest.mark.parametrize("name", NAMES)
def test_every_operator_is_known(name):
    graph = load_mx_graph(os.path.join(DATA, name + "-symbol.json"))
    assert all(n.op == "null" or n.op in READERS for n in graph.nodes)
    assert graph.numpy_mode == name.endswith("_np")


@pytest.mark.parametrize("name", NAMES)
def test_mxnet_outputs_eager_and_hybridized(name):
    net, x, ref = load(name)
    onp.testing.assert_allclose(net(x).asnumpy(), ref, rtol=1e-4, atol=1e-5)
    net.hybridize()
    onp.testing.assert_allclose(net(x).asnumpy(), ref, rtol=1e-4, atol=1e-5)
    onp.testing.assert_allclose(net(x).asnumpy(), ref, rtol=1e-4, atol=1e-5)


def test_batchnorm_aux_states_are_not_trained():
    net, x, _ = load("resnet_np")
    params = net.collect_params()
    aux = [k for k in params if k.endswith(("running_mean", "running_var"))]
    assert aux and all(params[k].grad_req == "null" for k in aux)
    assert all(p.grad_req == "write" for k, p in params.items() if k not in aux)


@pytest.mark.parametrize("hybridize", [False, True])
def test_fine_tuning_updates_weights_and_running_stats(hybridize):
    net, x, ref = load("resnet_legacy")
    if hybridize:
        net.hybridize()
    params = net.collect_params()
    mean_name = next(k for k in params if k.endswith("running_mean"))
    before = params[mean_name].data().asnumpy().copy()
    with autograd.record():
        loss = (net(x) ** 2).sum()
    loss.backward()
    grads = [p.grad().asnumpy() for p in params.values() if p.grad_req != "null"]
    assert all(onp.isfinite(g).all() for g in grads)
    assert sum(float(onp.abs(g).sum()) > 0 for g in grads) >= len(grads) - 2
    # training mode used batch statistics and moved the running mean
    assert not onp.allclose(params[mean_name].data().asnumpy(), before)
    # a gradient step changes the prediction
    for p in params.values():
        if p.grad_req != "null":
            p.set_data(p.data() - 0.01 * p.grad())
    assert not onp.allclose(net(x).asnumpy(), ref, atol=1e-4)


def test_imported_dropout_drops_only_in_training():
    net, x, ref = load("mlp_legacy")
    x = np.array(onp.ones((64, 10), onp.float32))
    pred = net(x).asnumpy()
    with autograd.record():
        train = net(x).asnumpy()
    assert onp.allclose(net(x).asnumpy(), pred)
    assert not onp.allclose(train, pred)


@pytest.mark.parametrize("name", ["mlp_legacy", "mlp_np", "resnet_np", "misc_legacy"])
@pytest.mark.parametrize("mode", ["legacy", "numpy"])
def test_reexport_and_reimport(name, mode, tmp_path):
    net, x, ref = load(name)
    net.hybridize()
    net(x)
    sym_file, params_file = net.export(str(tmp_path / "again"), 3, mode=mode)
    assert params_file.endswith("again-0003.params")
    again = SymbolBlock.imports(sym_file, "data", params_file)
    onp.testing.assert_allclose(again(x).asnumpy(), ref, rtol=1e-4, atol=1e-5)
    assert sorted(again.collect_params()) == sorted(net.collect_params())


def test_wrong_input_names_list_the_graph_variables():
    prefix = os.path.join(DATA, "mlp_legacy")
    with pytest.raises(KilnError) as e:
        SymbolBlock.imports(prefix + "-symbol.json", ["input"], prefix + "-0000.params")
    msg = str(e.value)
    assert "['input']" in msg and "'data'" in msg and "dense0_weight" in msg


def test_a_parameter_named_as_input_is_reported(tmp_path):
    prefix = os.path.join(DATA, "mlp_legacy")
    with pytest.raises(KilnError) as e:
        SymbolBlock.imports(prefix + "-symbol.json", ["data", "dense0_weight"],
                            prefix + "-0000.params")
    assert "dense0_weight" in str(e.value) and "ignore_extra" in str(e.value)


def test_missing_and_extra_parameters(tmp_path):
    prefix = os.path.join(DATA, "mlp_np")
    arrays = kiln.io.load_params(prefix + "-0000.params")
    assert all(k.startswith(("arg:", "aux:")) for k in arrays)
    victim = sorted(k for k in arrays if k.endswith("weight"))[-1][4:]
    partial = {k: v for k, v in arrays.items() if victim not in k}
    kiln.io.save_params(str(tmp_path / "partial.params"), partial)
    with pytest.raises(KilnError) as e:
        SymbolBlock.imports(prefix + "-symbol.json", ["data"], str(tmp_path / "partial.params"))
    assert victim in str(e.value) and "allow_missing" in str(e.value)
    net = SymbolBlock.imports(prefix + "-symbol.json", ["data"],
                              str(tmp_path / "partial.params"), allow_missing=True)
    net.collect_params().initialize()
    assert net(np.ones((2, 10))).shape == (2, 4)

    # names without the arg: prefix (as save_parameters writes) load too; extra names fail
    plain = {k[4:]: v for k, v in arrays.items()}
    plain["unused"] = np.ones(3)
    kiln.io.save_params(str(tmp_path / "plain.params"), plain)
    with pytest.raises(KilnError, match="unused"):
        SymbolBlock.imports(prefix + "-symbol.json", ["data"], str(tmp_path / "plain.params"))
    net = SymbolBlock.imports(prefix + "-symbol.json", ["data"], str(tmp_path / "plain.params"),
                              ignore_extra=True)
    x = np.array(onp.load(prefix + "_x.npy"))
    onp.testing.assert_allclose(net(x).asnumpy(), onp.load(prefix + "_y.npy"), rtol=1e-4,
                                atol=1e-5)


def test_deferred_parameters_get_their_shapes_at_the_first_forward():
    prefix = os.path.join(DATA, "mlp_legacy")
    net = SymbolBlock.imports(prefix + "-symbol.json", ["data"], allow_missing=True)
    net.initialize()
    assert net(np.ones((2, 10))).shape == (2, 4)
    assert net.collect_params()["dense0_weight"].shape == (16, 10)
