"""np.random: reproducibility with seed, shapes, dtypes, ranges and rough moments."""

from __future__ import annotations

import numpy as onp
import pytest
from np_compare import assert_matches, rand

from kiln import autograd, np, npx
from kiln.base import KilnError
from kiln.test_utils import check_gradient

N = 20000  # enough draws for moments within a few percent


def test_seed_reproduces_draws():
    np.random.seed(42)
    a = [np.random.normal(size=(3,)), np.random.uniform(size=4), np.random.randint(0, 9, 5),
         np.random.gamma(2.0, size=3), np.random.choice(10, 4)]
    np.random.seed(42)
    b = [np.random.normal(size=(3,)), np.random.uniform(size=4), np.random.randint(0, 9, 5),
         np.random.gamma(2.0, size=3), np.random.choice(10, 4)]
    for x, y in zip(a, b):
        assert_matches(x, y.asnumpy())
    np.random.seed(43)
    assert not onp.array_equal(np.random.normal(size=(3,)).asnumpy(), a[0].asnumpy())
    npx.seed(42)  # npx.seed resets the same generator
    assert_matches(np.random.normal(size=(3,)), a[0].asnumpy())


def test_seed_rejects_non_integers():
    with pytest.raises(KilnError, match="seed"):
        np.random.seed(1.5)


@pytest.mark.parametrize("size,shape", [(None, ()), (3, (3,)), ((2, 3), (2, 3)), ([4], (4,))])
def test_shapes(size, shape):
    for draw in (np.random.normal(size=size), np.random.uniform(size=size),
                 np.random.randint(0, 5, size=size), np.random.exponential(size=size),
                 np.random.poisson(2.0, size=size)):
        assert draw.shape == shape


def test_rand_randn_random():
    assert np.random.rand(2, 3).shape == (2, 3)
    assert np.random.randn(4).shape == (4,)
    assert np.random.random((2, 2)).shape == (2, 2)
    assert np.random.random_sample(3).shape == (3,)
    assert np.random.rand(2, 3).dtype == onp.float32


@pytest.mark.parametrize("dtype", [None, "float32", "float64", "float16"])
def test_float_dtypes(dtype):
    want = onp.dtype(dtype or "float32")
    for draw in (np.random.normal(size=5, dtype=dtype), np.random.uniform(size=5, dtype=dtype),
                 np.random.randn(5, dtype=dtype), np.random.gamma(1.0, size=5, dtype=dtype)):
        assert draw.dtype == want


def test_integer_dtypes_and_errors():
    assert np.random.randint(0, 5, size=3).dtype == onp.int64
    assert np.random.randint(0, 5, size=3, dtype="int32").dtype == onp.int32
    assert np.random.poisson(1.0, size=3).dtype == onp.int64
    with pytest.raises(KilnError, match="floating"):
        np.random.normal(size=3, dtype="int32")
    with pytest.raises(KilnError, match="high"):
        np.random.randint(5, 5)


def test_normal_moments():
    np.random.seed(0)
    x = np.random.normal(2.0, 3.0, size=N).asnumpy()
    assert abs(x.mean() - 2.0) < 0.1
    assert abs(x.std() - 3.0) < 0.1


def test_uniform_range_and_moments():
    np.random.seed(1)
    x = np.random.uniform(-2.0, 4.0, size=N).asnumpy()
    assert x.min() >= -2.0 and x.max() < 4.0
    assert abs(x.mean() - 1.0) < 0.1
    assert abs(x.var() - 3.0) < 0.15  # (b - a)^2 / 12


def test_randint_range_and_coverage():
    np.random.seed(2)
    x = np.random.randint(3, 8, size=N).asnumpy()
    assert x.min() == 3 and x.max() == 7
    counts = onp.bincount(x - 3)
    assert (abs(counts / N - 0.2) < 0.02).all()
    y = np.random.randint(4, size=100).asnumpy()  # one bound: [0, 4)
    assert y.min() >= 0 and y.max() <= 3


@pytest.mark.parametrize("name,args,mean,var", [
    ("exponential", (2.0,), 2.0, 4.0),
    ("gamma", (3.0, 2.0), 6.0, 12.0),
    ("beta", (2.0, 3.0), 0.4, 0.04),
    ("chisquare", (4.0,), 4.0, 8.0),
    ("laplace", (1.0, 2.0), 1.0, 8.0),
    ("logistic", (1.0, 0.5), 1.0, onp.pi ** 2 / 12),
    ("gumbel", (0.0, 1.0), onp.euler_gamma, onp.pi ** 2 / 6),
    ("lognormal", (0.0, 0.5), onp.exp(0.125), (onp.exp(0.25) - 1) * onp.exp(0.25)),
    ("rayleigh", (2.0,), 2.0 * onp.sqrt(onp.pi / 2), (4 - onp.pi) / 2 * 4),
    ("poisson", (3.0,), 3.0, 3.0),
])
def test_other_distributions_moments(name, args, mean, var):
    np.random.seed(3)
    x = getattr(np.random, name)(*args, size=N).asnumpy().astype("float64")
    assert abs(x.mean() - mean) < 0.05 * max(1.0, abs(mean)) + 3 * onp.sqrt(var / N)
    assert abs(x.var() - var) < 0.08 * var


def test_weibull_pareto_power_are_in_range():
    np.random.seed(4)
    assert (np.random.weibull(2.0, size=100).asnumpy() >= 0).all()
    assert (np.random.pareto(3.0, size=100).asnumpy() >= 0).all()
    p = np.random.power(2.0, size=100).asnumpy()
    assert (p >= 0).all() and (p <= 1).all()


def test_sampler_parameter_errors():
    with pytest.raises(KilnError, match="number"):
        np.random.exponential(np.ones(3))
    with pytest.raises(KilnError, match="unknown argument"):
        np.random.gamma(1.0, rate=2.0)


def test_array_parameters_broadcast_and_are_differentiable():
    np.random.seed(5)
    loc = np.array([0.0, 10.0, 100.0])
    x = np.random.normal(loc, 0.001)
    assert x.shape == (3,)
    assert_matches(x, onp.array([0.0, 10.0, 100.0], "float32"), atol=0.01)
    u = np.random.uniform(np.zeros((2, 1)), np.array([1.0, 2.0, 3.0]))
    assert u.shape == (2, 3)
    assert (u.asnumpy() < onp.array([1.0, 2.0, 3.0])).all()
    # reparameterised: d(loc + scale * z)/d loc = 1, d/d scale = z
    mu = np.array([1.0, 2.0])
    sigma = np.array([0.5, 2.0])
    mu.attach_grad()
    sigma.attach_grad()
    with autograd.record():
        s = np.random.normal(mu, sigma)
    s.backward()
    assert_matches(mu.grad, onp.ones(2, "float32"))
    assert_matches(sigma.grad, ((s - mu) / sigma).asnumpy(), rtol=1e-5)
    check_gradient(lambda lo, hi: (np.random.seed(7), np.random.uniform(lo, hi))[1],
                   [rand(3, low=-1, high=0), rand(3, low=1, high=2)])


def test_bernoulli():
    np.random.seed(6)
    x = np.random.bernoulli(0.3, size=N).asnumpy()
    assert set(onp.unique(x)) <= {0.0, 1.0}
    assert abs(x.mean() - 0.3) < 0.02
    p = np.array([0.0, 1.0] * 1000)
    y = np.random.bernoulli(p).asnumpy()  # one draw per element of an array probability
    assert_matches(np.array(y), p.asnumpy())


def test_shuffle_in_place():
    np.random.seed(7)
    x = np.arange(20).reshape(10, 2)
    before = x.asnumpy()
    assert np.random.shuffle(x) is None
    after = x.asnumpy()
    assert not onp.array_equal(before, after)
    # rows move together: the first axis is shuffled
    assert sorted(map(tuple, after.tolist())) == sorted(map(tuple, before.tolist()))


def test_permutation():
    np.random.seed(8)
    p = np.random.permutation(10)
    assert sorted(p.tolist()) == list(range(10))
    x = np.arange(5)
    q = np.random.permutation(x)
    assert sorted(q.tolist()) == x.tolist()
    assert x.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]  # not in place


def test_choice():
    np.random.seed(9)
    c = np.random.choice(5, size=N)
    assert c.dtype == onp.int64 and c.shape == (N,)
    assert set(onp.unique(c.asnumpy())) == {0, 1, 2, 3, 4}
    a = np.array([10.0, 20.0, 30.0])
    d = np.random.choice(a, size=(2, 2))
    assert d.shape == (2, 2) and d.dtype == onp.float32
    assert set(d.asnumpy().ravel()) <= {10.0, 20.0, 30.0}
    e = np.random.choice(6, size=6, replace=False)
    assert sorted(e.tolist()) == list(range(6))
    f = np.random.choice(3, size=N, p=np.array([0.7, 0.2, 0.1])).asnumpy()
    assert abs((f == 0).mean() - 0.7) < 0.02
    with pytest.raises(ValueError):
        np.random.choice(3, size=5, replace=False)


def test_multinomial():
    np.random.seed(10)
    m = np.random.multinomial(100, [0.5, 0.3, 0.2], size=4)
    assert m.shape == (4, 3)
    assert (m.asnumpy().sum(axis=1) == 100).all()
    one = np.random.multinomial(1, np.array([0.0, 1.0]))
    assert one.tolist() == [0, 1]


def test_samplers_are_not_differentiable_and_draw_afresh():
    a = np.random.normal(size=4)
    b = np.random.normal(size=4)
    assert not onp.array_equal(a.asnumpy(), b.asnumpy())
    with autograd.record():
        c = np.random.uniform(size=3)
    assert c._node is None
