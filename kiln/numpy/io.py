"""`np.save`/`np.load`: NumPy's .npy/.npz files, never pickles."""

from __future__ import annotations

import numpy as _onp

from ..base import FormatError
from ..ndarray import ndarray, wrap


def save(file, arr) -> None:
    """Write one array to a .npy file."""
    _onp.save(file, arr._data if isinstance(arr, ndarray) else _onp.asarray(arr),
              allow_pickle=False)


def savez(file, *args, **kwds) -> None:
    """Write several arrays, by position or name, to an uncompressed .npz file."""
    arrays = [a._data if isinstance(a, ndarray) else a for a in args]
    named = {k: (v._data if isinstance(v, ndarray) else v) for k, v in kwds.items()}
    _onp.savez(file, *arrays, **named)


def load(file):
    """Read a .npy file (an array) or a .npz file (a dict of arrays)."""
    try:
        out = _onp.load(file, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise FormatError(f"{file}: not a readable .npy/.npz file ({e})") from e
    if isinstance(out, _onp.ndarray):
        return wrap(out)
    with out:
        return {k: wrap(out[k]) for k in out.files}
