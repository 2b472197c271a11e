"""`Trainer`: applies an optimizer to a set of Parameters (MXNet Gluon's `gluon.Trainer`).

    >>> trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.1})
    >>> with autograd.record():
    ...     loss = loss_fn(net(x), y)
    >>> loss.backward()
    >>> trainer.step(batch_size)       # gradients are divided by batch_size

kiln computes on one CPU device, so there is nothing to all-reduce and no key-value store;
`kvstore` and `update_on_kvstore` are accepted for MXNet code.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from .. import optimizer as _opt
from ..base import KilnError
from .parameter import Parameter

__all__ = ["Trainer", "StaleGradientError"]


class StaleGradientError(KilnError, UserWarning):
    """A parameter's gradient was not recomputed by backward() since the last step.

    It derives from UserWarning too, because that is what MXNet raises here.
    """


class Trainer:
    """Updates Parameters with an optimizer.

    params            `net.collect_params()` (a dict name -> Parameter) or a list of Parameters
    optimizer         an optimizer name ('sgd', 'adam' ...) or an `Optimizer`
    optimizer_params  the optimizer's options when it is given by name, e.g.
                      {'learning_rate': 0.1, 'momentum': 0.9, 'wd': 1e-4}
    """

    def __init__(self, params: Mapping[str, Parameter] | Iterable[Parameter],
                 optimizer: str | _opt.Optimizer,
                 optimizer_params: dict | None = None, kvstore="device",
                 compression_params=None, update_on_kvstore: bool | None = None):
        if isinstance(params, Mapping):
            names = [str(k) for k in params]
            params = list(params.values())
        elif isinstance(params, Parameter):
            raise KilnError("Trainer: the first argument must be a dict or list of Parameters "
                            "(e.g. net.collect_params()), not a single Parameter; wrap it in "
                            "a list")
        else:
            try:
                params = list(params)
            except TypeError:
                raise KilnError(f"Trainer: the first argument must be a dict or list of "
                                f"Parameters (e.g. net.collect_params()), not "
                                f"{type(params).__name__}") from None
            names = [p.full_name if isinstance(p, Parameter) else "?" for p in params]
        seen: dict[int, str] = {}
        for name, p in zip(names, params, strict=True):
            if not isinstance(p, Parameter):
                raise KilnError(f"Trainer: the first argument must be a dict or list of "
                                f"Parameters, but {name!r} is a {type(p).__name__}")
            if id(p) in seen:
                raise KilnError(f"Trainer: parameter {name!r} appears twice (also as "
                                f"{seen[id(p)]!r}); pass each Parameter once")
            seen[id(p)] = name
        self._params: list[Parameter] = params
        self._names: list[str] = names
        self._kvstore = kvstore
        self._update_on_kvstore = bool(update_on_kvstore)
        self._compression_params = compression_params
        optimizer_params = dict(optimizer_params or {})
        if isinstance(optimizer, _opt.Optimizer):
            if optimizer_params:
                raise KilnError("Trainer: optimizer_params must be None when optimizer is an "
                                "Optimizer instance; set the options on the instance instead")
            self._optimizer = optimizer
        else:
            self._optimizer = _opt.create(optimizer, **optimizer_params)
        self._optimizer.param_dict = dict(enumerate(params))
        self._optimizer.idx2name = dict(enumerate(names))
        # rescale_grad as given by the user; step(batch_size) divides it by the batch size.
        self._scale = self._optimizer.rescale_grad
        self._updater = _opt.get_updater(self._optimizer)

    # -- properties ------------------------------------------------------------------------------
    @property
    def optimizer(self) -> _opt.Optimizer:
        return self._optimizer

    @property
    def learning_rate(self) -> float:
        return self._optimizer.learning_rate

    def set_learning_rate(self, lr: float) -> None:
        """Change the optimizer's learning rate (not allowed while a scheduler sets it)."""
        self._optimizer.set_learning_rate(lr)

    # -- stepping --------------------------------------------------------------------------------
    def step(self, batch_size: int, ignore_stale_grad: bool = False) -> None:
        """One optimizer step: gradients are scaled by rescale_grad / batch_size.

        A parameter whose gradient backward() has not written since the last step is an error
        (it usually means part of the network was not used); with `ignore_stale_grad=True` such
        parameters are skipped instead.
        """
        self._check_batch_size(batch_size)
        self._optimizer.rescale_grad = self._scale / batch_size
        self.allreduce_grads()
        self._update(ignore_stale_grad)

    def allreduce_grads(self) -> None:
        """Sum gradients across devices: kiln has one device, so this only checks the call."""
        if self._update_on_kvstore:
            raise KilnError("allreduce_grads() is not supported when parameters are updated "
                            "on the kvstore; create the Trainer with update_on_kvstore=False")

    def update(self, batch_size: int, ignore_stale_grad: bool = False) -> None:
        """The update half of `step` (after `allreduce_grads`, e.g. with gradient clipping
        in between)."""
        if self._update_on_kvstore:
            raise KilnError("update() is not supported when parameters are updated on the "
                            "kvstore; create the Trainer with update_on_kvstore=False")
        self._check_batch_size(batch_size)
        self._optimizer.rescale_grad = self._scale / batch_size
        self._update(ignore_stale_grad)

    @staticmethod
    def _check_batch_size(batch_size) -> None:
        if not batch_size or batch_size <= 0:
            raise KilnError(f"Trainer.step: batch_size must be a positive number, not "
                            f"{batch_size!r}")

    def _update(self, ignore_stale_grad: bool) -> None:
        indices, weights, grads = [], [], []
        for i, p in enumerate(self._params):
            if p.grad_req == "null":
                continue
            if p._data is None and ignore_stale_grad:
                continue       # never initialized, so certainly never used
            arr = p.data()
            fresh = getattr(arr, "_fresh_grad", False)
            if not fresh:
                if ignore_stale_grad:
                    continue
                raise StaleGradientError(
                    f"Gradient of Parameter {self._names[i]!r} has not been updated by "
                    "backward since the last step. This usually means part of the model was "
                    "not used in this iteration (or backward() was not called). If only a "
                    "subset of the parameters is used on purpose, call "
                    "step(batch_size, ignore_stale_grad=True) to skip the stale ones.")
            indices.append(i)
            weights.append(arr)
            grads.append(arr._grad)
            arr._fresh_grad = False
        if indices:
            self._updater(indices, grads, weights)

    # -- states ----------------------------------------------------------------------------------
    def save_states(self, fname: str | os.PathLike) -> None:
        """Write the optimizer's states (momenta, moments, update counts) to a file.

        The format is MXNet's binary array list with the scalars as JSON inside: no pickle.
        """
        from ..io.params import save_params

        save_params(fname, self._updater.get_states_arrays())

    def load_states(self, fname: str | os.PathLike) -> None:
        """Read states written by `save_states` (for the same parameters and optimizer)."""
        from ..io.params import load_params

        arrays = load_params(fname)
        if not isinstance(arrays, dict):
            raise KilnError(f"{os.fspath(fname)}: not an optimizer-states file (unnamed "
                            "arrays); write it with Trainer.save_states")
        self._updater.set_states_arrays(arrays, os.fspath(fname))
        for index, state in self._updater.states.items():
            if not isinstance(index, int) or not 0 <= index < len(self._params):
                raise KilnError(f"{os.fspath(fname)}: holds a state for parameter #{index}, "
                                f"but this Trainer has {len(self._params)} parameters")
            p = self._params[index]
            want = tuple(p.shape) if p.shape is not None else None
            for arr in _arrays_of(state):
                if want is not None and all(d > 0 for d in want) and tuple(arr.shape) != want:
                    raise KilnError(f"{os.fspath(fname)}: the state of parameter "
                                    f"{self._names[index]!r} has shape {tuple(arr.shape)}, "
                                    f"but the parameter has shape {want}")
        self._optimizer.param_dict = dict(enumerate(self._params))


def _arrays_of(state):
    if state is None:
        return []
    if isinstance(state, tuple):
        return [a for s in state for a in _arrays_of(s)]
    return [state]
