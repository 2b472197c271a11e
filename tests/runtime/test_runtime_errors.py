"""Malformed and hostile files: each gives its error code and a message that says what is
wrong (never a crash). The same loader runs under AddressSanitizer/UBSan over thousands of
mutated files in test_runtime_sanitize.py."""

import json
import struct
from pathlib import Path

import numpy as onp
import pytest

from crt import RuntimeError_

DATA = Path(__file__).resolve().parents[1] / "io" / "data" / "mxnet"


@pytest.fixture(scope="module")
def mlp():
    js = (DATA / "mlp_np-symbol.json").read_bytes()
    params = (DATA / "mlp_np-0000.params").read_bytes()
    return js, params, onp.load(DATA / "mlp_np_x.npy")


def fails(runtime, js, params, status, *words, max_memory=0):
    with pytest.raises(RuntimeError_) as e:
        runtime.load_memory(js if isinstance(js, bytes) else json.dumps(js).encode(), params,
                            max_memory)
    assert e.value.status == status, e.value
    for w in words:
        assert w in e.value.message, e.value.message
    return e.value.message


def record(arr, magic=0xF993FACA, dtype=0, stype=0):
    arr = onp.asarray(arr)
    return (struct.pack("<Ii", magic, stype) + struct.pack(f"<i{arr.ndim}q", arr.ndim, *arr.shape)
            + struct.pack("<iii", 1, 0, dtype) + arr.tobytes())


def params_file(records, names):
    out = struct.pack("<QQQ", 0x112, 0, len(records)) + b"".join(records)
    out += struct.pack("<Q", len(names))
    for n in names:
        out += struct.pack("<Q", len(n)) + n
    return out


def fc_graph(num_hidden=4, extra=None):
    doc = {"nodes": [{"op": "null", "name": "data", "inputs": []},
                     {"op": "null", "name": "w", "inputs": []},
                     {"op": "FullyConnected", "name": "fc",
                      "attrs": {"num_hidden": str(num_hidden), "no_bias": "True"},
                      "inputs": [[0, 0, 0], [1, 0, 0]]}],
           "arg_nodes": [0, 1], "heads": [[2, 0, 0]]}
    if extra:
        doc.update(extra)
    return doc


def run_fc(runtime, params, x, doc=None):
    model = runtime.load_memory(json.dumps(doc or fc_graph()).encode(), params)
    return model(x)


# ----------------------------------------------------------------------------------------------
# params files
# ----------------------------------------------------------------------------------------------

def test_truncated_params_at_every_byte(runtime, mlp):
    js, params, _ = mlp
    for cut in range(len(params)):
        if cut > 600 and cut % 97:
            continue  # every byte of the headers, then a sample of the data
        msg = fails(runtime, js, params[:cut], "PARAMS")
        assert any(w in msg for w in ("truncated", "magic", "names", "file can hold")), (cut,
                                                                                          msg)


def test_params_magics_and_codes(runtime):
    w = onp.ones((4, 3), onp.float32)
    good = params_file([record(w)], [b"arg:w"])
    x = onp.ones((2, 3), onp.float32)
    onp.testing.assert_allclose(run_fc(runtime, good, x), onp.full((2, 4), 3.0))
    js = json.dumps(fc_graph()).encode()
    fails(runtime, js, b"\x13\x01" + good[2:], "PARAMS", "wrong magic", "0x112")
    fails(runtime, js, params_file([record(w, magic=0xF993FAC0)], [b"w"]), "PARAMS",
          "not an NDArray magic")
    fails(runtime, js, params_file([record(w, dtype=13)], [b"w"]), "PARAMS", "type flag 13")
    fails(runtime, js, params_file([record(w, stype=3)], [b"w"]), "PARAMS", "storage type 3")
    fails(runtime, js, good + b"\x00", "PARAMS", "unexpected bytes")
    fails(runtime, js, params_file([record(w)], [b"\xffw"]), "PARAMS", "UTF-8")
    fails(runtime, js, params_file([record(w), record(w)], [b"arg:w", b"aux:w"]), "PARAMS",
          "two arrays", "'w'" if False else "w")
    fails(runtime, js, params_file([record(w)], []), "PARAMS", "no names")
    fails(runtime, js, params_file([record(w), record(w)], [b"w"]), "PARAMS", "1 names")
    huge = struct.pack("<QQQ", 0x112, 0, 2**60)
    fails(runtime, js, huge, "PARAMS", "more than the file can hold")


def test_params_shapes_overflow_or_disagree(runtime):
    js = json.dumps(fc_graph()).encode()
    rec = bytearray(record(onp.ones((4, 3), onp.float32)))
    struct.pack_into("<qq", rec, 12, 2**40, 2**40)  # dims whose product overflows 2^64 bytes
    fails(runtime, js, params_file([bytes(rec)], [b"w"]), "PARAMS", "impossible size")
    struct.pack_into("<qq", rec, 12, 4, 30)  # more elements than bytes present
    fails(runtime, js, params_file([bytes(rec)], [b"w"]), "PARAMS", "truncated")
    struct.pack_into("<qq", rec, 12, -1, 3)
    fails(runtime, js, params_file([bytes(rec)], [b"w"]), "PARAMS", "negative dimension")


def test_every_dtype_is_read_as_float32(runtime):
    x = onp.eye(3, dtype=onp.float32)
    for code, dt in [(0, "<f4"), (1, "<f8"), (2, "<f2"), (3, "u1"), (4, "<i4"), (5, "i1"),
                     (6, "<i8"), (8, "<i2"), (9, "<u2"), (10, "<u4"), (11, "<u8")]:
        w = onp.arange(12).reshape(4, 3).astype(dt)
        y = run_fc(runtime, params_file([record(w, dtype=code)], [b"w"]), x)
        onp.testing.assert_array_equal(y, w.astype(onp.float32).T, err_msg=dt)
    wb = (onp.arange(12).reshape(4, 3).astype(onp.float32).view(onp.uint32) >> 16).astype("<u2")
    y = run_fc(runtime, params_file([record(wb, dtype=12)], [b"w"]), x)
    onp.testing.assert_array_equal(y, onp.arange(12).reshape(4, 3).T)  # bfloat16: exact here


def test_sparse_records_are_densified(runtime):
    dense = onp.zeros((4, 3), onp.float32)
    dense[1] = [1, 2, 3]
    dense[3] = [4, 5, 6]
    vals = dense[[1, 3]]
    idx = onp.array([1, 3], onp.int64)
    rs = (struct.pack("<Ii", 0xF993FAC9, 1) + struct.pack("<i2q", 2, 2, 3)
          + struct.pack("<i2q", 2, 4, 3) + struct.pack("<iii", 1, 0, 0)
          + struct.pack("<i", 6) + struct.pack("<iq", 1, 2) + vals.tobytes() + idx.tobytes())
    x = onp.eye(3, dtype=onp.float32)
    onp.testing.assert_array_equal(run_fc(runtime, params_file([rs], [b"w"]), x), dense.T)
    bad = rs[:-8] + struct.pack("<q", 9)  # a row index outside the 4 rows
    fails(runtime, json.dumps(fc_graph()).encode(), params_file([bad], [b"w"]), "PARAMS",
          "row index 9")


# ----------------------------------------------------------------------------------------------
# symbol files
# ----------------------------------------------------------------------------------------------

W = params_file([record(onp.ones((4, 3), onp.float32))], [b"arg:w"])


@pytest.mark.parametrize("doc,status,words", [
    ([1, 2], "GRAPH", ["JSON object", "list"]),
    ({"heads": [[0, 0, 0]]}, "GRAPH", ["missing key 'nodes'"]),
    ({"nodes": [{"op": "null", "name": "x", "inputs": []}]}, "GRAPH", ["'heads'"]),
    (fc_graph(extra={"heads": [[7, 0, 0]]}), "GRAPH", ["node id 7 is out of range"]),
    (fc_graph(extra={"heads": [[2, 3, 0]]}), "GRAPH", ["output 3"]),
    (fc_graph(extra={"heads": []}), "GRAPH", ["no outputs"]),
    (fc_graph(extra={"arg_nodes": [2]}), "GRAPH", ["arg_nodes"]),
])
def test_bad_documents(runtime, doc, status, words):
    fails(runtime, doc, W, status, *words)


def _edit(fn):
    doc = fc_graph()
    fn(doc)
    return doc


@pytest.mark.parametrize("edit,status,words", [
    (lambda d: d["nodes"][2].pop("op"), "GRAPH", ["non-string 'op'"]),
    (lambda d: d["nodes"][2].update(name=5), "GRAPH", ["'name'"]),
    (lambda d: d["nodes"][2].update(inputs=[[5, 0, 0], [1, 0, 0]]), "GRAPH", ["out of range"]),
    (lambda d: d["nodes"][2].update(inputs=[[-1, 0, 0], [1, 0, 0]]), "GRAPH", ["out of range"]),
    (lambda d: d["nodes"][2].update(inputs=[[2, 0, 0], [1, 0, 0]]), "GRAPH", ["cycle"]),
    (lambda d: d["nodes"][0].update(inputs=[[2, 0, 0]]), "GRAPH", ["no inputs"]),
    (lambda d: d["nodes"][2].update(inputs=[[0, 0, 0]]), "GRAPH", ["takes 2 inputs"]),
    (lambda d: d["nodes"][2].update(inputs=[[0, 0], ["1", 0]]), "GRAPH", ["not an integer"]),
    (lambda d: d["nodes"][2].update(op="FancyOp"), "UNSUPPORTED", ["unknown operator 'FancyOp'"]),
    (lambda d: d["nodes"][2].update(subgraphs=[]), "GRAPH", ["'subgraphs'", "only _foreach"]),
    (lambda d: d["nodes"][2]["attrs"].update(num_hidden="four"), "ATTRIBUTE",
     ["num_hidden", "not an integer", "'fc'"]),
    (lambda d: d["nodes"][2]["attrs"].update(num_hidden=4), "GRAPH", ["not a string"]),
    (lambda d: d["nodes"][2]["attrs"].pop("num_hidden"), "ATTRIBUTE", ["missing attribute"]),
    (lambda d: d["nodes"][2]["attrs"].update(num_hidden="99999999999999999999999"), "ATTRIBUTE",
     ["num_hidden"]),
    (lambda d: d["nodes"][2]["attrs"].update(no_bias="maybe"), "ATTRIBUTE", ["boolean"]),
    (lambda d: d["nodes"][1].update(name="data"), "GRAPH", ["two variables are named 'data'"]),
    (lambda d: d["nodes"][1].update(name="v"), "PARAMS", ["'v'", "does not hold"]),
])
def test_bad_nodes(runtime, edit, status, words):
    fails(runtime, _edit(edit), W, status, *words)


def test_parameter_shape_inconsistent_with_graph(runtime):
    model = runtime.load_memory(json.dumps(fc_graph(num_hidden=5)).encode(), W)
    with pytest.raises(RuntimeError_) as e:
        model(onp.ones((2, 3), onp.float32))
    assert e.value.status == "SHAPE" and "(4, 3)" in e.value.message and "(5, 3)" in \
        e.value.message


def test_json_syntax_and_nesting(runtime):
    js = json.dumps(fc_graph()).encode()
    for bad, words in [(js[:-1], ["ends inside"]), (js + b"x", ["text after"]),
                       (b"[" * 100000, ["deeper than 64"]),
                       (js.replace(b'"fc"', b'"f\xffc"'), ["UTF-8"]),
                       (js.replace(b'"fc"', b'"f\\ud800c"'), ["surrogate"]),
                       (js.replace(b'"fc"', b'"f\\u0000c"'), ["NUL"]),
                       (js.replace(b'"op": "null"', b'"op": "null", "op": "null"', 1),
                        ["appears twice"]),
                       (js.replace(b"[0, 0, 0]", b"[01, 0, 0]", 1), ["malformed number"]),
                       (js.replace(b"[0, 0, 0]", b"[1e99999, 0, 0]", 1), ["not an integer"]),
                       (b"\xef\xbb\xbf" + js, ["byte order mark"]), (b"", ["ends"])]:
        status = "LIMIT" if b"[" * 1000 in bad else "GRAPH" if b"1e99999" in bad else "JSON"
        fails(runtime, bad, W, status, *words)


def test_memory_limit(runtime):
    doc = fc_graph()
    model = runtime.load_memory(json.dumps(doc).encode(), W, max_memory=1 << 20)
    with pytest.raises(RuntimeError_) as e:
        model(onp.ones((200000, 3), onp.float32))  # 2.4 MB of input alone
    assert e.value.status == "LIMIT" and "memory limit" in e.value.message
    fails(runtime, doc, W, "LIMIT", "memory limit", max_memory=100)


def test_huge_attributes_are_refused_not_allocated(runtime):
    x = onp.ones((1, 3), onp.float32)
    for attrs, words in [({"shape": "(1099511627776, 1099511627776)"}, ["reshape"]),
                         ({"shape": "(-7)"}, ["code"])]:
        doc = fc_graph()
        doc["nodes"].append({"op": "Reshape", "name": "r", "attrs": attrs,
                             "inputs": [[2, 0, 0]]})
        doc["heads"] = [[3, 0, 0]]
        with pytest.raises(RuntimeError_) as e:
            run_fc(runtime, W, x, doc)
        assert any(w in e.value.message for w in words), e.value.message


def test_hostile_padding_is_a_memory_error(runtime):
    """A 1x1 convolution padded by 60000 on each side of a 2x2 image: 1.4e10 outputs."""
    doc = {"nodes": [{"op": "null", "name": "data", "inputs": []},
                     {"op": "null", "name": "w", "inputs": []},
                     {"op": "Convolution", "name": "c", "inputs": [[0, 0, 0], [1, 0, 0]],
                      "attrs": {"kernel": "(1, 1)", "pad": "(60000, 60000)", "num_filter": "1",
                                "no_bias": "True"}}],
           "heads": [[2, 0, 0]]}
    params = params_file([record(onp.ones((1, 1, 1, 1), onp.float32))], [b"w"])
    model = runtime.load_memory(json.dumps(doc).encode(), params)
    with pytest.raises(RuntimeError_) as e:
        model(onp.ones((1, 1, 2, 2), onp.float32))
    assert e.value.status == "LIMIT" and "memory limit" in e.value.message
