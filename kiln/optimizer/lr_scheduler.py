"""Learning-rate schedules (MXNet's `mxnet.lr_scheduler`).

A scheduler is called with the number of updates done so far and returns the learning rate for
the next one. Every scheduler takes a linear or constant warmup: for the first `warmup_steps`
updates the rate moves from `warmup_begin_lr` to `base_lr`.

    >>> sched = CosineScheduler(max_update=100, base_lr=0.1, warmup_steps=10)
    >>> trainer = gluon.Trainer(net.collect_params(), 'sgd', {'lr_scheduler': sched})
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..base import KilnError

__all__ = ["LRScheduler", "FactorScheduler", "MultiFactorScheduler", "PolyScheduler",
           "CosineScheduler"]


class LRScheduler:
    """Base class: `scheduler(num_update) -> learning rate`, with optional warmup."""

    def __init__(self, base_lr: float = 0.01, warmup_steps: int = 0,
                 warmup_begin_lr: float = 0.0, warmup_mode: str = "linear"):
        if warmup_steps < 0:
            raise KilnError(f"{type(self).__name__}: warmup_steps must be >= 0, not "
                            f"{warmup_steps}")
        if warmup_mode not in ("linear", "constant"):
            raise KilnError(f"{type(self).__name__}: warmup_mode must be 'linear' or "
                            f"'constant', not {warmup_mode!r}")
        self.base_lr = base_lr
        self.warmup_steps = int(warmup_steps)
        self.warmup_begin_lr = warmup_begin_lr
        self.warmup_final_lr = base_lr
        self.warmup_mode = warmup_mode

    @property
    def base_lr(self) -> float:
        return self._base_lr

    @base_lr.setter
    def base_lr(self, value: float) -> None:
        # The optimizer sets base_lr after construction (its learning_rate wins); schedules that
        # interpolate from the original rate must see that value too.
        self._base_lr = float(value)
        self.base_lr_orig = float(value)
        self.warmup_final_lr = float(value)

    def get_warmup_lr(self, num_update: int) -> float:
        """The rate during warmup (num_update < warmup_steps)."""
        if self.warmup_mode == "constant":
            return self.warmup_begin_lr
        frac = num_update / self.warmup_steps
        return self.warmup_begin_lr + (self.warmup_final_lr - self.warmup_begin_lr) * frac

    def __call__(self, num_update: int) -> float:
        raise NotImplementedError(f"{type(self).__name__} must define __call__(num_update)")

    def _state(self) -> dict:
        """JSON-serialisable attributes (saved with a Trainer's states)."""
        return {k: v for k, v in self.__dict__.items()
                if isinstance(v, (int, float, str, bool, list)) or v is None}

    def _load_state(self, state: dict) -> None:
        for k, v in state.items():
            setattr(self, k, v)


class FactorScheduler(LRScheduler):
    """Multiply the rate by `factor` every `step` updates, never below `stop_factor_lr`."""

    def __init__(self, step: int, factor: float = 1.0, stop_factor_lr: float = 1e-8,
                 base_lr: float = 0.01, warmup_steps: int = 0, warmup_begin_lr: float = 0.0,
                 warmup_mode: str = "linear"):
        super().__init__(base_lr, warmup_steps, warmup_begin_lr, warmup_mode)
        if step < 1:
            raise KilnError(f"FactorScheduler: step must be >= 1 update, not {step}")
        if factor > 1.0:
            raise KilnError(f"FactorScheduler: factor must be <= 1 so the rate decreases, not "
                            f"{factor}")
        self.step = int(step)
        self.factor = factor
        self.stop_factor_lr = stop_factor_lr
        self.count = 0

    def __call__(self, num_update: int) -> float:
        if num_update < self.warmup_steps:
            return self.get_warmup_lr(num_update)
        # Stateful, as MXNet's: the rate decays once per `step` updates passed.
        while num_update > self.count + self.step:
            self.count += self.step
            self._base_lr = max(self._base_lr * self.factor, self.stop_factor_lr)
        return self._base_lr


class MultiFactorScheduler(LRScheduler):
    """Multiply the rate by `factor` after each update count listed in `step` (increasing)."""

    def __init__(self, step: Sequence[int], factor: float = 1.0, base_lr: float = 0.01,
                 warmup_steps: int = 0, warmup_begin_lr: float = 0.0,
                 warmup_mode: str = "linear"):
        super().__init__(base_lr, warmup_steps, warmup_begin_lr, warmup_mode)
        step = [int(s) for s in step]
        if not step:
            raise KilnError("MultiFactorScheduler: step must list at least one update count")
        for i, s in enumerate(step):
            if s < 1:
                raise KilnError(f"MultiFactorScheduler: step[{i}] = {s}; steps must be >= 1")
            if i and s <= step[i - 1]:
                raise KilnError(f"MultiFactorScheduler: steps must increase, got {step}")
        if factor > 1.0:
            raise KilnError(f"MultiFactorScheduler: factor must be <= 1, not {factor}")
        self.step = step
        self.factor = factor
        self.cur_step_ind = 0
        self.count = 0

    def __call__(self, num_update: int) -> float:
        if num_update < self.warmup_steps:
            return self.get_warmup_lr(num_update)
        while self.cur_step_ind < len(self.step) and num_update > self.step[self.cur_step_ind]:
            self.count = self.step[self.cur_step_ind]
            self.cur_step_ind += 1
            self._base_lr *= self.factor
        return self._base_lr


class PolyScheduler(LRScheduler):
    """Polynomial decay from base_lr to final_lr over max_update updates:
    final + (base - final) * (1 - (t - warmup) / (max_update - warmup)) ** pwr."""

    def __init__(self, max_update: int, base_lr: float = 0.01, pwr: float = 2,
                 final_lr: float = 0.0, warmup_steps: int = 0, warmup_begin_lr: float = 0.0,
                 warmup_mode: str = "linear"):
        super().__init__(base_lr, warmup_steps, warmup_begin_lr, warmup_mode)
        if max_update < 1:
            raise KilnError(f"PolyScheduler: max_update must be >= 1, not {max_update}")
        if max_update <= warmup_steps:
            raise KilnError(f"PolyScheduler: max_update ({max_update}) must exceed "
                            f"warmup_steps ({warmup_steps})")
        self.max_update = int(max_update)
        self.power = pwr
        self.final_lr = final_lr
        self.max_steps = self.max_update - self.warmup_steps

    def __call__(self, num_update: int) -> float:
        if num_update < self.warmup_steps:
            return self.get_warmup_lr(num_update)
        if num_update <= self.max_update:
            frac = 1.0 - (num_update - self.warmup_steps) / self.max_steps
            return self.final_lr + (self.base_lr_orig - self.final_lr) * frac ** self.power
        return self.final_lr


class CosineScheduler(LRScheduler):
    """Cosine decay from base_lr to final_lr over max_update updates (after warmup)."""

    def __init__(self, max_update: int, base_lr: float = 0.01, final_lr: float = 0.0,
                 warmup_steps: int = 0, warmup_begin_lr: float = 0.0,
                 warmup_mode: str = "linear"):
        super().__init__(base_lr, warmup_steps, warmup_begin_lr, warmup_mode)
        if max_update < 1:
            raise KilnError(f"CosineScheduler: max_update must be >= 1, not {max_update}")
        if max_update <= warmup_steps:
            raise KilnError(f"CosineScheduler: max_update ({max_update}) must exceed "
                            f"warmup_steps ({warmup_steps})")
        self.max_update = int(max_update)
        self.final_lr = final_lr
        self.max_steps = self.max_update - self.warmup_steps

    def __call__(self, num_update: int) -> float:
        if num_update < self.warmup_steps:
            return self.get_warmup_lr(num_update)
        if num_update <= self.max_update:
            frac = (num_update - self.warmup_steps) / self.max_steps
            return self.final_lr + (self.base_lr_orig - self.final_lr) * (
                1 + math.cos(math.pi * frac)) / 2
        return self.final_lr
