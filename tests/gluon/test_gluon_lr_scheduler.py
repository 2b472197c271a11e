"""Learning-rate schedules: values at given update counts, warmup, and errors."""

import math

import pytest

from kiln import KilnError, lr_scheduler, optimizer


def _values(sched, upto):
    return [sched(t) for t in range(upto)]


def test_factor_scheduler():
    s = lr_scheduler.FactorScheduler(step=2, factor=0.5, base_lr=1.0)
    # the rate halves once more than `step` updates have passed since the last change
    assert _values(s, 8) == [1, 1, 1, 0.5, 0.5, 0.25, 0.25, 0.125]


def test_factor_scheduler_floor():
    s = lr_scheduler.FactorScheduler(step=1, factor=0.1, stop_factor_lr=1e-3, base_lr=1.0)
    assert _values(s, 7)[-1] == pytest.approx(1e-3)


def test_factor_scheduler_warmup():
    s = lr_scheduler.FactorScheduler(step=10, factor=0.5, base_lr=1.0, warmup_steps=4,
                                     warmup_begin_lr=0.2)
    assert _values(s, 5) == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert s(15) == 0.5


def test_multifactor_scheduler():
    s = lr_scheduler.MultiFactorScheduler(step=[2, 5], factor=0.1, base_lr=1.0)
    assert _values(s, 8) == pytest.approx([1, 1, 1, 0.1, 0.1, 0.1, 0.01, 0.01])


def test_poly_scheduler():
    s = lr_scheduler.PolyScheduler(max_update=10, base_lr=1.0, pwr=2, final_lr=0.1)
    for t in range(14):
        want = 0.1 + 0.9 * (1 - t / 10) ** 2 if t <= 10 else 0.1
        assert s(t) == pytest.approx(want), t


def test_poly_scheduler_warmup():
    s = lr_scheduler.PolyScheduler(max_update=12, base_lr=2.0, pwr=1, warmup_steps=4)
    assert s(0) == 0.0 and s(2) == pytest.approx(1.0)
    for t in range(4, 13):
        assert s(t) == pytest.approx(2.0 * (1 - (t - 4) / 8)), t


def test_cosine_scheduler():
    s = lr_scheduler.CosineScheduler(max_update=10, base_lr=1.0, final_lr=0.1)
    for t in range(12):
        want = 0.1 + 0.9 * (1 + math.cos(math.pi * min(t, 10) / 10)) / 2
        assert s(t) == pytest.approx(want), t


def test_cosine_scheduler_warmup_constant_mode():
    s = lr_scheduler.CosineScheduler(max_update=20, base_lr=1.0, warmup_steps=5,
                                     warmup_begin_lr=0.05, warmup_mode="constant")
    assert _values(s, 5) == [0.05] * 5
    assert s(5) == pytest.approx(1.0)
    assert s(20) == pytest.approx(0.0)
    assert s(10) == pytest.approx((1 + math.cos(math.pi * 5 / 15)) / 2)


def test_optimizer_learning_rate_overrides_base_lr():
    # the optimizer's rate must reach the interpolating schedules, not only the base rate
    s = lr_scheduler.PolyScheduler(max_update=10, base_lr=5.0, pwr=1)
    opt = optimizer.SGD(learning_rate=1.0, lr_scheduler=s)
    assert opt.learning_rate == pytest.approx(1.0)
    opt.num_update = 5
    assert opt.learning_rate == pytest.approx(0.5)
    # without a learning_rate the scheduler's base_lr is used
    opt = optimizer.SGD(lr_scheduler=lr_scheduler.CosineScheduler(10, base_lr=0.3))
    assert opt.learning_rate == pytest.approx(0.3)


def test_scheduler_errors():
    with pytest.raises(KilnError, match="warmup_mode"):
        lr_scheduler.FactorScheduler(step=1, warmup_mode="cubic")
    with pytest.raises(KilnError, match="step must be >= 1"):
        lr_scheduler.FactorScheduler(step=0)
    with pytest.raises(KilnError, match="steps must increase"):
        lr_scheduler.MultiFactorScheduler(step=[5, 3])
    with pytest.raises(KilnError, match="must exceed warmup_steps"):
        lr_scheduler.CosineScheduler(max_update=5, warmup_steps=5)
