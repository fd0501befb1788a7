"""Training losses. Each model has one entry point returning a dict of named, already
weighted loss terms (the engine sums and logs them):

- ``panonet``: :func:`panoptic_ros.training.losses.panonet.panonet_losses`
- ``ciae``: :func:`panoptic_ros.training.losses.ciae.ciae_losses`

built from ``semantic`` (weighted cross-entropy), ``discriminative`` (embedding loss) and
``fcos`` (detection losses).
"""
