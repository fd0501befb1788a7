"""Evaluation: panoptic quality (official semantics) and mIoU."""
