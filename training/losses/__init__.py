"""Training losses. Each model has one entry point, ``losses(outputs, targets, *, config,
progress)``, returning a dict of named, already weighted loss terms (the engine sums and
logs them; ``training/kinds.py`` binds each to its model kind):

- ``panonet``: :func:`panoptic_ros.training.losses.panonet.panonet_losses`
- ``ciae``: :func:`panoptic_ros.training.losses.ciae.ciae_losses`

built from ``semantic`` (weighted cross-entropy), ``discriminative`` (embedding loss) and
``fcos`` (detection losses).
"""
