"""`kiln.onnx`: export models to ONNX (needs the optional `onnx` package).

    >>> from kiln.onnx import export_model
    >>> export_model(net, None, [(1, 3, 224, 224)], 'model.onnx', dynamic_batch=True)
"""

from .export import export_model, require_onnx

__all__ = ["export_model", "require_onnx"]
