"""Inference: one Predictor for both models (``predictor``), torch and ONNX Runtime
backends (``backends``), ONNX export and its parity check (``export``), and the ONNX export
cache of the onnxruntime backend (``onnx_cache``)."""
