"""`kiln.jit`: compile a plain function of arrays, as `tf.function` and `jax.jit` do.

    >>> @kiln.jit
    ... def fancy_func(a, b, c, d):
    ...     return (a + b) + (c + d)
    >>> fancy_func(np.ones(3), np.ones(3), np.ones(3), np.ones(3))

The function is traced once per input signature (shapes and dtypes of the arrays, values of the
Python arguments), optimised and compiled; later calls run the compiled code. Python numbers
are traced as constants, so `fancy_func.graph(1, 2, 3, 4)` shows the whole computation folded to
the single constant 10.
"""

from __future__ import annotations

import functools

from .graph.ir import Graph
from .gluon.hybrid import HybridCache, check_not_mixed

__all__ = ["jit", "JitFunction"]


class JitFunction:
    """A compiled function; call it like the original."""

    def __init__(self, fn, backend: str | None = None, static_alloc: bool = False, **options):
        functools.update_wrapper(self, fn)
        self._fn = fn
        options = dict(options, backend=backend, static_alloc=static_alloc,
                       static_as_constants=True)
        self._cache = HybridCache(fn, getattr(fn, "__name__", "jit"), options)

    def __call__(self, *args, **kwargs):
        if args and getattr(args[0], "_kiln_symbolic", False):
            check_not_mixed(self.__name__, args)
            return self._fn(*args, **kwargs)  # symbols in: build their graph, as eagerly
        return self._cache(args, kwargs)

    def _entry(self, args, kwargs):
        """The cache entry for these arguments (compiled now if it was not)."""
        self._cache(args, kwargs)
        return self._cache.entries[self._cache._key(args, kwargs)]

    def graph(self, *args, **kwargs) -> Graph:
        """The optimised graph compiled for these arguments (print it to read the IR)."""
        return self._entry(args, kwargs).optimized

    def traced_graph(self, *args, **kwargs) -> Graph:
        """The graph as traced, before optimisation."""
        return self._entry(args, kwargs).graph

    def source(self, *args, **kwargs) -> str:
        """The generated code for these arguments."""
        return self._entry(args, kwargs).compiled.source


def jit(fn=None, *, backend: str | None = None, static_alloc: bool = False, **options):
    """Compile `fn` (usable as `@jit` or `@jit(backend='numpy')`)."""
    if fn is None:
        return lambda f: JitFunction(f, backend=backend, static_alloc=static_alloc, **options)
    return JitFunction(fn, backend=backend, static_alloc=static_alloc, **options)
