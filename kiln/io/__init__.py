"""Model and parameter files: MXNet's binary params format (and, with export, symbol JSON)."""

from .params import load_params, save_params

__all__ = ["load_params", "save_params"]
