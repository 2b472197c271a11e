"""Every registered operator is complete: `infer`, a gradient (or `differentiable = False`),
attributes that match `impl`'s keywords, and `infer`/`grad` that agree with `impl` on samples.

The samples live in `op_samples.py`; a new operator without one fails here, by name.
"""

from __future__ import annotations

import inspect

import numpy as onp
import pytest
from op_samples import SAMPLES

import kiln  # noqa: F401  (registers every operator)
from kiln import autograd
from kiln.ndarray import wrap
from kiln.ops import REGISTRY, Aval

OP_NAMES = sorted(REGISTRY)


def test_every_operator_has_samples():
    missing = sorted(set(REGISTRY) - set(SAMPLES))
    assert not missing, (f"operators without samples: {missing}; add them to "
                         "tests/ops/op_samples.py")
    stale = sorted(set(SAMPLES) - set(REGISTRY))
    assert not stale, f"samples for operators that are not registered: {stale}"


@pytest.mark.parametrize("name", OP_NAMES)
def test_operator_declares_infer_and_gradient(name):
    op = REGISTRY[name]
    assert op.name == name
    assert callable(getattr(op, "infer", None)), f"{name} has no infer"
    if op.differentiable:
        assert op.grad is not None, f"{name} has no grad; write one or set differentiable = False"


@pytest.mark.parametrize("name", OP_NAMES)
def test_impl_takes_exactly_the_declared_attributes(name):
    op = REGISTRY[name]
    if isinstance(op.impl, onp.ufunc):
        assert not op.attrs, f"{name}: a NumPy ufunc as impl takes no attributes"
        return
    params = inspect.signature(op.impl).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return  # generated samplers forward their parameters by name
    keyword_only = {p.name for p in params if p.kind is p.KEYWORD_ONLY}
    if op.impl_fills_out:    # and the buffers a compiled graph lends it
        assert "out" in keyword_only, f"{name}: impl_fills_out, but impl takes no out="
        keyword_only.discard("out")
    assert keyword_only == set(op.attrs), (
        f"{name}: impl's keyword-only parameters {sorted(keyword_only)} differ from its attrs "
        f"{sorted(op.attrs)}")


def _run(op, inputs, full, subgraphs=()):
    with onp.errstate(all="ignore"):  # the values do not matter here, their shapes do
        if op.has_subgraphs:
            from kiln.ops.control_flow import bodies_for

            return _as_tuple(op.impl(bodies_for(subgraphs), *inputs, **full))
        return _as_tuple(op.impl(*inputs, **full))


def _infer(op, avals, full, subgraphs=()):
    if op.has_subgraphs:
        return op.infer(subgraphs, *avals, **full)
    return op.infer(*avals, **full)


def _aval(x):
    return None if x is None else Aval(tuple(onp.shape(x)), onp.asarray(x).dtype)


def _as_tuple(out):
    # Aval is a NamedTuple: one Aval is one output
    return out if isinstance(out, tuple) and not isinstance(out, Aval) else (out,)


@pytest.mark.parametrize("name", OP_NAMES)
def test_infer_agrees_with_impl(name):
    op = REGISTRY[name]
    if name not in SAMPLES:
        pytest.fail(f"no sample for operator {name!r}: add one to tests/ops/op_samples.py")
    for inputs, attrs, infer_error, _, subgraphs in SAMPLES[name]:
        full = op.full_attrs(attrs)
        outs = _run(op, inputs, full, subgraphs)
        if infer_error is not None:
            with pytest.raises(infer_error):
                _infer(op, [_aval(x) for x in inputs], full, subgraphs)
            continue
        inferred = _as_tuple(_infer(op, [_aval(x) for x in inputs], full, subgraphs))
        assert len(outs) == op.n_outputs(full), f"{name}: n_outputs disagrees with impl"
        assert len(inferred) == len(outs), f"{name}: infer gives {len(inferred)} outputs"
        for i, (aval, out) in enumerate(zip(inferred, outs)):
            out = onp.asarray(out)
            assert tuple(aval.shape) == out.shape, (
                f"{name} {attrs}: infer says shape {tuple(aval.shape)} for output {i}, impl "
                f"gives {out.shape}")
            assert onp.dtype(aval.dtype) == out.dtype, (
                f"{name} {attrs}: infer says dtype {onp.dtype(aval.dtype)} for output {i}, impl "
                f"gives {out.dtype}")


@pytest.mark.parametrize("name", [n for n in OP_NAMES if REGISTRY[n].differentiable])
def test_grad_returns_one_cotangent_per_input(name):
    op = REGISTRY[name]
    for inputs, attrs, _, grad_error, subgraphs in SAMPLES.get(name, ()):
        if not any(x is not None and onp.asarray(x).dtype.kind == "f" for x in inputs):
            continue  # only floating inputs have gradients
        full = op.full_attrs(attrs)
        outs = _run(op, inputs, full, subgraphs)
        xs = tuple(None if x is None else wrap(onp.asarray(x)) for x in inputs)
        ys = [wrap(onp.asarray(o)) for o in outs]
        cts = [wrap(onp.ones(y.shape, y.dtype)) for y in ys]

        def grad():
            saved = ys if op.save_outputs or op.has_subgraphs else None
            if op.has_subgraphs:
                return op.grad(subgraphs, xs, saved, cts, **full)
            return op.grad(xs, saved, cts, **full)
        with autograd.pause():
            if grad_error is not None:
                with pytest.raises(grad_error):
                    grad()
                continue
            grads = grad()
        assert len(grads) == len(xs), f"{name}: grad gives {len(grads)} cotangents for " \
                                      f"{len(xs)} inputs"
        for x, g in zip(xs, grads):
            if g is not None and x is not None:
                assert g.shape == x.shape, (f"{name} {attrs}: cotangent of shape {g.shape} for "
                                            f"an input of shape {x.shape}")
