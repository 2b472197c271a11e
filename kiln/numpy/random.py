"""`kiln.np.random`: sampling with kiln's generator (reset it with `seed`)."""

from ..ops.random import (  # noqa: F401
    bernoulli, beta, chisquare, choice, exponential, gamma, gumbel, laplace, logistic, lognormal,
    multinomial, normal, pareto, permutation, poisson, power, rand, randint, randn, random,
    random_sample, rayleigh, seed, shuffle, uniform, weibull,
)
