"""Training data: the Cityscapes and COCO panoptic readers (:mod:`.cityscapes`,
:mod:`.coco_panoptic`), augmentation (:mod:`.transforms`) and batching with targets
(:mod:`.loader`). SynthStreet scenes come from :mod:`panoptic_ros.synthstreet`."""
