"""panoptic_ros.training: the training and evaluation loop, and nothing the runtime needs.

Data (:mod:`.data`, :mod:`.datasets`, :mod:`.sampling`), targets (:mod:`.targets`),
losses (:mod:`.losses`), the driver (:mod:`.train`, :mod:`.engine`, :mod:`.state`,
:mod:`.optim`, :mod:`.distributed`, :mod:`.run_dir`, :mod:`.logs`), model kinds
(:mod:`.kinds`), initialisation (:mod:`.init`, :mod:`.backbone_init`, :mod:`.panonet_stages`),
and the CLIs around it (:mod:`.evaluate`, :mod:`.export`, :mod:`.release`,
:mod:`.snapshot`, :mod:`.bandwidth_search`). SynthStreet scenes come from
:mod:`panoptic_ros.synthstreet`; nothing outside ``training/`` imports this package.

Installed as ``panoptic_ros.training`` (see setup.py ``package_dir``).
"""
