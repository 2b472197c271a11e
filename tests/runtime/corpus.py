"""Hostile inputs for the C runtime's loader: mutations of real model files.

`fuzz_input(json, params, shape)` packs one case in the format of runtime/fuzz/fuzz_load.c
(u32 JSON length, u8 ndim, ndim x u16 (dim - 1), the JSON, the params file). `cases(...)` yields
(name, bytes) pairs: truncations of the params file at many offsets, bit flips and random byte
edits, edited header fields (magics, counts, dimensions, type and storage codes, names), and
JSON mutations (deleted keys, wrong types, out-of-range and forward input indices, cycles,
unknown ops, bad and huge attribute values, deep nesting, invalid UTF-8, truncations), and for
control-flow nodes mutations of their subgraphs list and of the graphs inside (nesting past the
limit included).
"""

from __future__ import annotations

import copy
import json
import os
import random
import struct
from collections.abc import Iterator


def fuzz_input(js: bytes, params: bytes, shape: tuple) -> bytes:
    head = struct.pack("<IB", len(js), len(shape))
    head += b"".join(struct.pack("<H", (d - 1) % 32) for d in shape)
    return head + js + params


def _record_offsets(params: bytes) -> list[int]:
    """Byte offsets of each array record's magic (V2/V3 dense records as kiln/MXNet write)."""
    offs = []
    for magic in (b"\xc9\xfa\x93\xf9", b"\xca\xfa\x93\xf9"):
        start = 0
        while (i := params.find(magic, start)) >= 0:
            offs.append(i)
            start = i + 1
    return sorted(offs)


def params_cases(params: bytes, rng: random.Random, n_random: int) -> Iterator[tuple[str, bytes]]:
    n = len(params)
    step = max(1, n // 150)
    for cut in sorted(set(range(0, n, step)) | set(range(0, min(n, 64))) | {n - 1}):
        yield f"truncate@{cut}", params[:cut]
    yield "extra-byte", params + b"\x00"
    for i in range(n_random):
        b = bytearray(params)
        pos = rng.randrange(n)
        b[pos] ^= 1 << rng.randrange(8)
        yield f"bitflip{i}@{pos}", bytes(b)
    for i in range(n_random):
        b = bytearray(params)
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(n)] = rng.randrange(256)
        yield f"bytes{i}", bytes(b)
    # header fields
    def put(off, fmt, value):
        b = bytearray(params)
        struct.pack_into(fmt, b, off, value)
        return bytes(b)
    yield "list-magic", put(0, "<Q", 0x113)
    for count in (0, 1, 2**31, 2**63 + 5, 2**64 - 1):
        yield f"count={count}", put(16, "<Q", count)
    for k, off in enumerate(_record_offsets(params)[:6]):
        yield f"rec{k}-magic", put(off, "<I", 0xF993FAC7)
        yield f"rec{k}-magic-prev1", put(off, "<I", 3)
        yield f"rec{k}-stype=7", put(off + 4, "<i", 7)
        yield f"rec{k}-stype=rowsparse", put(off + 4, "<i", 1)
        yield f"rec{k}-stype=csr", put(off + 4, "<i", 2)
        for ndim in (-2, -1, 0, 9, 33, 2**31 - 1):
            yield f"rec{k}-ndim={ndim}", put(off + 8, "<i", ndim)
        for dim in (0, -1, 2**40, 2**62, 2**63 - 1):
            yield f"rec{k}-dim={dim}", put(off + 12, "<q", dim)
        ndim = struct.unpack_from("<i", params, off + 8)[0]
        if 0 <= ndim <= 8:
            flag = off + 12 + 8 * ndim + 8
            for code in (-1, 1, 2, 3, 4, 6, 7, 12, 13, 99):
                yield f"rec{k}-dtype={code}", put(flag, "<i", code)
    # names: a non-UTF-8 byte, a NUL, a duplicate, a huge length
    for bad, tag in ((b"\xff", "non-utf8"), (b"\x00", "nul"), (b"\xc0\xaf", "overlong")):
        i = params.rfind(b"arg:")
        if i > 0:
            yield f"name-{tag}", params[:i + 4] + bad + params[i + 4 + len(bad):]
    names = [params.find(b"arg:"), params.rfind(b"arg:")]
    if names[0] > 0 and names[1] > names[0]:
        ln0 = struct.unpack_from("<Q", params, names[0] - 8)[0]
        ln1 = struct.unpack_from("<Q", params, names[1] - 8)[0]
        if ln0 == ln1:
            b = bytearray(params)
            b[names[1]:names[1] + ln1] = params[names[0]:names[0] + ln0]
            yield "name-duplicate", bytes(b)
        yield "name-length-huge", put(names[0] - 8, "<Q", 2**62)


def _mutate_json(doc: dict, rng: random.Random) -> Iterator[tuple[str, object]]:
    nodes = doc["nodes"]
    ops = [i for i, n in enumerate(nodes) if n["op"] != "null"]
    yield "not-object", [doc]
    yield "empty-object", {}
    for key in ("nodes", "heads", "arg_nodes", "attrs", "node_row_ptr"):
        d = copy.deepcopy(doc)
        d.pop(key, None)
        yield f"drop-{key}", d
        for bad in (1, "x", None, {}, [], [[]], [1.5], True):
            d = copy.deepcopy(doc)
            d[key] = bad
            yield f"{key}={json.dumps(bad)}", d
    yield "nodes-empty", dict(doc, nodes=[])
    yield "heads-empty", dict(doc, heads=[])
    for i in ops[:3] + ops[-2:]:
        for key in ("op", "name", "inputs", "attrs"):
            d = copy.deepcopy(doc)
            d["nodes"][i].pop(key, None)
            yield f"n{i}-drop-{key}", d
            for bad in (1, None, [], {}, "", ["x"]):
                d = copy.deepcopy(doc)
                d["nodes"][i][key] = bad
                yield f"n{i}-{key}={json.dumps(bad)}", d
    for i in ops:
        node = nodes[i]
        for k in range(len(node["inputs"])):
            for entry, tag in (([10**6, 0, 0], "far"), ([-1, 0, 0], "neg"), ([i, 0, 0], "self"),
                               ([len(nodes) - 1, 0, 0], "forward"), ([0, 7, 0], "out7"),
                               ([0, -1, 0], "outneg"), ([0], "short"), ([0, 0, 0, 0], "long"),
                               (["0", 0, 0], "str"), ([0.5, 0, 0], "float"),
                               ([2**70, 0, 0], "huge")):
                d = copy.deepcopy(doc)
                d["nodes"][i]["inputs"][k] = entry
                yield f"n{i}-in{k}-{tag}", d
        d = copy.deepcopy(doc)
        d["nodes"][i]["inputs"] = node["inputs"][:-1]
        yield f"n{i}-fewer-inputs", d
        d = copy.deepcopy(doc)
        d["nodes"][i]["inputs"] = node["inputs"] + node["inputs"][:1]
        yield f"n{i}-more-inputs", d
        d = copy.deepcopy(doc)
        d["nodes"][i]["op"] = rng.choice(["NoSuchOp", "_foreach", "Deconvolution", "null",
                                          "Convolution", "Pooling", "FullyConnected",
                                          "BatchNorm", "Reshape", "_npx_reshape", "softmax",
                                          "Concat", "transpose", "sum", "broadcast_add"])
        yield f"n{i}-op={d['nodes'][i]['op']}", d
        for key in list(node.get("attrs", {})):
            for bad in ("", "x", "None", "()", "(", "(1,", "-1", "0", "(0, 0)", "(-5, 3)",
                        "99999999999999999999", "1e400", "nan", "(100000, 100000)",
                        "(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17)",
                        "True", "[None, 1]", "\u00e9", "(2L, 2L)", "-6", "(-6, -1, -1)",
                        "(-4, 1)", "(-3, -3, -3)"):
                d = copy.deepcopy(doc)
                d["nodes"][i]["attrs"][key] = bad
                yield f"n{i}-{key}={bad!r}", d
            d = copy.deepcopy(doc)
            d["nodes"][i]["attrs"][key] = 5
            yield f"n{i}-{key}=int", d
    # a cycle: node a reads a later node b that reads a
    reading = [i for i in ops if nodes[i].get("inputs")]
    if len(reading) >= 2:
        a, b = reading[0], reading[1]
        d = copy.deepcopy(doc)
        d["nodes"][a]["inputs"][0] = [b, 0, 0]
        yield "cycle", d
    for bad in ([[10**9, 0, 0]], [[0, 5, 0]], [["a", 0, 0]], [[len(nodes) - 1, 2, 0]]):
        yield f"heads={bad}", dict(copy.deepcopy(doc), heads=bad)
    yield "duplicate-variable", _dup_var(doc)
    yield "arg_nodes-op", dict(copy.deepcopy(doc), arg_nodes=ops[:1])


def _dup_var(doc):
    d = copy.deepcopy(doc)
    names = [n["name"] for n in d["nodes"] if n["op"] == "null"]
    if len(names) >= 2:
        for n in d["nodes"]:
            if n["op"] == "null" and n["name"] == names[1]:
                n["name"] = names[0]
    return d


def _bodies(doc: dict, path: tuple = ()) -> Iterator[tuple[tuple, dict]]:
    """(path, node) for every control-flow node, in bodies too; a path is the (node index,
    subgraph index) steps from the top graph to the graph holding the node."""
    for i, node in enumerate(doc["nodes"]):
        subs = node.get("subgraphs")
        if isinstance(subs, list):
            yield path, i, node
            for k, body in enumerate(subs):
                if isinstance(body, dict) and isinstance(body.get("nodes"), list):
                    yield from _bodies(body, path + ((i, k),))


def _graph_at(doc: dict, path: tuple) -> dict:
    for i, k in path:
        doc = doc["nodes"][i]["subgraphs"][k]
    return doc


def _deep_cond(depth: int) -> dict:
    """A _cond whose then-branch holds another, `depth` levels: past the nesting limit."""
    leaf = {"nodes": [{"op": "null", "name": "x", "inputs": []},
                      {"op": "_copy", "name": "c", "inputs": [[0, 0, 0]]}],
            "arg_nodes": [0], "heads": [[1, 0, 0]]}
    body = leaf
    for _ in range(depth):
        body = {"nodes": [{"op": "null", "name": "x", "inputs": []},
                          {"op": "_cond", "name": "c", "inputs": [[0, 0, 0], [0, 0, 0]],
                           "attrs": {"cond_input_locs": "[0]", "then_input_locs": "[1]",
                                     "else_input_locs": "[1]", "num_args": "5",
                                     "num_outputs": "1"},
                           "subgraphs": [leaf, body, leaf]}],
                "arg_nodes": [0], "heads": [[1, 0, 0]]}
    return body


def subgraph_cases(doc: dict, rng: random.Random, per_body: int) -> Iterator[tuple[str, object]]:
    """Mutations of control-flow nodes: their subgraphs list and, inside each body, a sample of
    the mutations _mutate_json makes to a graph (nested bodies included)."""
    for path, i, node in list(_bodies(doc)):
        tag = "".join(f"{a}.{b}/" for a, b in path) + f"n{i}"

        def edited(fn, d=None):
            d = copy.deepcopy(doc) if d is None else d
            fn(_graph_at(d, path)["nodes"][i])
            return d
        n_sub = len(node["subgraphs"])
        for bad in (None, 1, "x", {}, [], [1], [{}], [[]], node["subgraphs"][:-1],
                    node["subgraphs"] + node["subgraphs"][:1]):
            yield f"{tag}-subgraphs={json.dumps(bad)[:20]}", edited(
                lambda n, b=bad: n.__setitem__("subgraphs", copy.deepcopy(b)))
        yield f"{tag}-no-subgraphs", edited(lambda n: n.pop("subgraphs"))
        yield f"{tag}-too-deep", edited(lambda n: n["subgraphs"].__setitem__(0, _deep_cond(9)))
        for k in range(n_sub):
            body = node["subgraphs"][k]
            for key, bad in (("heads", []), ("heads", [[0, 9, 0]]), ("heads", [[99, 0, 0]]),
                             ("nodes", []), ("nodes", [{"op": "null", "name": "v"}])):
                yield f"{tag}-s{k}-{key}={bad}", edited(
                    lambda n, k=k, key=key, bad=bad: n["subgraphs"][k].__setitem__(key, bad))
            mutations = list(_mutate_json(body, rng))
            for name, m in rng.sample(mutations, min(per_body, len(mutations))):
                yield f"{tag}-s{k}-{name}", edited(
                    lambda n, k=k, m=m: n["subgraphs"].__setitem__(k, m))


def json_text_cases(js: bytes, rng: random.Random, n_random: int) -> Iterator[tuple[str, bytes]]:
    n = len(js)
    step = max(1, n // 60)
    for cut in range(0, n, step):
        yield f"jtruncate@{cut}", js[:cut]
    for i in range(n_random):
        b = bytearray(js)
        pos = rng.randrange(n)
        b[pos] ^= 1 << rng.randrange(8)
        yield f"jbitflip{i}@{pos}", bytes(b)
    yield "deep-array", b"[" * 100000 + b"]" * 100000
    yield "deep-object", b'{"a":' * 70 + b"1" + b"}" * 70
    yield "deep-in-attrs", js.replace(b'"attrs": {', b'"attrs": {"deep": ' + b"[" * 1000 +
                                      b"]" * 1000 + b", ", 1)
    yield "invalid-utf8", js.replace(b'"name": "', b'"name": "\xff\xfe', 1)
    yield "nul-escape", js.replace(b'"name": "', b'"name": "\\u0000', 1)
    yield "lone-surrogate", js.replace(b'"name": "', b'"name": "\\ud800', 1)
    yield "dup-key", js.replace(b'"op": ', b'"op": "null", "op": ', 1)
    yield "bom", b"\xef\xbb\xbf" + js
    yield "trailing", js + b" x"
    yield "huge-number", js.replace(b"[0, 0, 0]", b"[1" + b"0" * 400 + b", 0, 0]", 1)
    yield "exp-number", js.replace(b"[0, 0, 0]", b"[1e999, 0, 0]", 1)
    yield "leading-zero", js.replace(b"[0, 0, 0]", b"[00, 0, 0]", 1)
    yield "many-keys", b'{"nodes": [], ' + b", ".join(b'"k%d": 1' % i for i in range(5000)) + b"}"
    yield "control-char", js.replace(b'"name": "', b'"name": "\x01', 1)


def cases(js: bytes, params: bytes, shape: tuple, seed: int = 0, n_random: int = 40,
          mutate_params: bool = True, per_body: int = 60) -> Iterator[tuple[str, bytes]]:
    """Every mutation of one model as a fuzz input (name, bytes); control-flow nodes' bodies get
    `per_body` of the graph mutations each (mutate_params=False leaves the params file alone)."""
    rng = random.Random(seed)
    yield "original", fuzz_input(js, params, shape)
    for name, p in params_cases(params, rng, n_random) if mutate_params else ():
        yield name, fuzz_input(js, p, shape)
    for name, j in json_text_cases(js, rng, n_random):
        yield name, fuzz_input(j, params, shape)
    doc = json.loads(js)
    for name, d in _mutate_json(doc, rng):
        yield name, fuzz_input(json.dumps(d).encode(), params, shape)
    for name, d in subgraph_cases(doc, rng, per_body):
        yield name, fuzz_input(json.dumps(d).encode(), params, shape)
    for bad_shape in ((1,), (2, 3), (1, 1, 1, 1), ()):
        yield f"shape={bad_shape}", fuzz_input(js, params, bad_shape)


DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "io", "data", "mxnet")


def _zero_states(doc: dict, names: set, shape: tuple) -> bytes:
    """The variables `names` replaced by _zeros of `shape`: a model with one input (the fuzz
    driver gives every input the same shape)."""
    for node in doc["nodes"]:
        if node["name"] in names:
            node.update(op="_zeros", attrs={"shape": str(shape), "dtype": "float32"})
    doc["arg_nodes"] = [i for i, n in enumerate(doc["nodes"]) if n["op"] == "null"]
    return json.dumps(doc).encode()


def control_flow_models() -> Iterator[tuple[str, bytes, bytes, tuple]]:
    """(name, symbol JSON, params, input shape) for MXNet's control-flow files, each with
    inputs of one shape (the foreach's state and the LSTM's states from _zeros)."""
    rec = os.path.join(DATA, "recurrent")

    def read(name, ext):
        with open(os.path.join(rec, name + ext), "rb") as f:
            return f.read()
    for name, shape in (("while", (2,)), ("cond_then", (2, 3)), ("nested", (3,))):
        yield name, read(name, "-symbol.json"), read(name, "-0000.params"), shape
    doc = json.loads(read("foreach", "-symbol.json"))
    yield ("foreach", _zero_states(doc, {"data1"}, (2, 4)), read("foreach", "-0000.params"),
           (5, 2, 3))
    doc = json.loads(read("lstm_export", "-symbol.json"))
    yield ("lstm", _zero_states(doc, {"data1", "data2"}, (4, 2, 4)),
           read("lstm_export", "-0000.params"), (5, 2, 3))


def write_seeds(out_dir: str) -> int:
    """Seed inputs for the fuzzer: each MXNet test model as one fuzz input, and the
    control-flow models."""
    import numpy as onp

    data = DATA
    os.makedirs(out_dir, exist_ok=True)
    names = sorted(f[:-len("-symbol.json")] for f in os.listdir(data) if f.endswith(".json"))
    for name in names:
        prefix = os.path.join(data, name)
        with open(prefix + "-symbol.json", "rb") as f:
            js = f.read()
        with open(prefix + "-0000.params", "rb") as f:
            params = f.read()
        shape = onp.load(prefix + "_x.npy").shape
        with open(os.path.join(out_dir, f"seed_{name}"), "wb") as f:
            f.write(fuzz_input(js, params, shape))
    for name, js, params, shape in control_flow_models():
        names.append(name)
        with open(os.path.join(out_dir, f"seed_cf_{name}"), "wb") as f:
            f.write(fuzz_input(js, params, shape))
    return len(names)


if __name__ == "__main__":  # python tests/runtime/corpus.py runtime/build/fuzz/corpus
    import sys

    print(f"wrote {write_seeds(sys.argv[1] if len(sys.argv) > 1 else 'corpus')} seeds")
