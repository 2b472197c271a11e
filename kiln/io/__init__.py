"""Model and parameter files: MXNet's binary params format, symbol JSON and export().

- `params`: the `.params` / `npx.save` format (`load_params`, `save_params`);
- `symbol_json`: `*-symbol.json` (`symbol_to_json`, `symbol_from_json`, `load_json_file`);
- `mxnet_ops`: the translation table between MXNet and kiln operators;
- `export`: `HybridBlock.export` (`export_block`).
"""

from .params import load_params, save_params

__all__ = ["load_params", "save_params"]
