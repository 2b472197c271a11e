"""`Block.summary`: a table of layers, output shapes and parameter counts (MXNet's layout)."""

from __future__ import annotations

from .. import autograd


def _shape_of(out) -> str:
    if isinstance(out, (list, tuple)):
        return ", ".join(_shape_of(o) for o in out)
    shape = getattr(out, "shape", None)
    return str(tuple(shape)) if shape is not None else type(out).__name__


def _count(p) -> int:
    n = 1
    for d in p.shape or ():
        n *= max(d, 0)
    return n


def summary(block, *inputs) -> None:
    """Run `block` on `inputs` eagerly (no gradients) and print one row per layer."""
    rows = []
    seen_params: set[int] = set()
    totals = {"all": 0, "trainable": 0, "shared": 0}
    counters: dict[str, int] = {}
    handles = []

    def hook(layer, args, out):
        name = type(layer).__name__
        counters[name] = counters.get(name, 0) + 1
        own = 0
        for p in layer._reg_params.values():
            n = _count(p)
            own += n
            totals["all"] += n
            if p.grad_req != "null":
                totals["trainable"] += n
            if id(p) in seen_params:
                totals["shared"] += n
            seen_params.add(id(p))
        rows.append((f"{name}-{counters[name]}", _shape_of(out), own))

    def register(layer):
        if layer is not block or not layer._children:
            handles.append(layer.register_forward_hook(hook))

    block.apply(register)
    # Hooks see every layer only when the layers run eagerly.
    hybridized = []
    block.apply(lambda b: hybridized.append(b) if getattr(b, "_active", False) else None)
    try:
        for b in hybridized:
            object.__setattr__(b, "_active", False)
        with autograd.pause():
            block(*inputs)
    finally:
        for b in hybridized:
            object.__setattr__(b, "_active", True)
        for h in handles:
            h.detach()

    width = 80
    print("-" * width)
    print(f"{'Layer (type)':>20}{'Output Shape':>42}{'Param #':>18}")
    print("=" * width)
    print(f"{'Input':>20}{_shape_of(list(inputs)):>42}{0:>18}")
    for name, shape, count in rows:
        print(f"{name:>20}{shape:>42}{count:>18}")
    print("=" * width)
    print("Parameters in forward computation graph, duplicate included")
    print(f"   Total params: {totals['all']}")
    print(f"   Trainable params: {totals['trainable']}")
    print(f"   Non-trainable params: {totals['all'] - totals['trainable']}")
    print(f"Shared params in forward computation graph: {totals['shared']}")
    unique = sum(_count(p) for p in block.collect_params().values())
    print(f"Unique parameters in model: {unique}")
    print("-" * width)
