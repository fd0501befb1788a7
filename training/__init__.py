"""panoptic_ros.training: datasets, targets, losses and the training/evaluation engine.

Installed as ``panoptic_ros.training`` (see setup.py ``package_dir``).
"""
