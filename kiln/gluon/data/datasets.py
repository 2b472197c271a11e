"""Small real datasets that need no download.

`load_digits()` gives scikit-learn's bundled handwritten digits (1,797 images of 8x8 pixels,
classes 0-9), split into training and test ArrayDatasets.
"""

from __future__ import annotations

import numpy as _np

from ...base import KilnError
from .dataset import ArrayDataset

__all__ = ["load_digits"]


def load_digits(test_fraction: float = 0.2, seed: int = 0, flatten: bool = True,
                normalize: bool = True) -> tuple[ArrayDataset, ArrayDataset]:
    """The handwritten digits as (train, test) ArrayDatasets of (image, label) pairs.

    Images are float32 in [0, 1] (raw pixel values 0-16 with normalize=False), shaped (64,)
    with flatten=True or (1, 8, 8) otherwise; labels are int32. The split is stratified by
    class and repeatable: the same `seed` gives the same split.
    """
    try:
        from sklearn.datasets import load_digits as _sk_load_digits
    except ImportError:
        raise KilnError("load_digits needs scikit-learn, which ships the digits data: "
                        "pip install scikit-learn") from None
    if not 0.0 < test_fraction < 1.0:
        raise KilnError(f"load_digits: test_fraction must be in (0, 1), not {test_fraction}")
    bunch = _sk_load_digits()
    images = bunch.data.astype(_np.float32)
    if normalize:
        images /= 16.0
    if not flatten:
        images = images.reshape(-1, 1, 8, 8)
    labels = bunch.target.astype(_np.int32)
    # Stratified split: shuffle each class with the seed and hold out the same fraction.
    rng = _np.random.default_rng(seed)
    test_idx = []
    for c in _np.unique(labels):
        members = _np.flatnonzero(labels == c)
        rng.shuffle(members)
        test_idx.extend(members[:int(round(len(members) * test_fraction))].tolist())
    is_test = _np.zeros(len(labels), bool)
    is_test[test_idx] = True
    train_idx = rng.permutation(_np.flatnonzero(~is_test))
    test_idx = _np.flatnonzero(is_test)
    return (ArrayDataset(images[train_idx], labels[train_idx]),
            ArrayDataset(images[test_idx], labels[test_idx]))
