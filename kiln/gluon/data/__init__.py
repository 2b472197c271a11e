"""`kiln.gluon.data`: datasets, samplers, the DataLoader and transforms."""

from . import datasets, sampler  # noqa: F401
from .dataloader import DataLoader, default_batchify_fn  # noqa: F401
from .dataset import ArrayDataset, Dataset, SimpleDataset  # noqa: F401
from .datasets import load_digits  # noqa: F401
from .sampler import (  # noqa: F401
    BatchSampler, FilterSampler, IntervalSampler, RandomSampler, Sampler, SequentialSampler,
)
from . import vision  # noqa: F401
