"""`kiln.np.random`: sampling with kiln's generator (reset it with `seed`)."""

from ..ops.random import (  # noqa: F401
    bernoulli, choice, normal, permutation, rand, randint, randn, random, random_sample, seed,
    shuffle, uniform,
)
