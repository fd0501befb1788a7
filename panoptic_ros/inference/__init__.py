"""Inference: one Predictor for both models, torch and ONNX Runtime backends, export."""
