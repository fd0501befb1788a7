"""Datasets: SynthStreet (built in), Cityscapes panoptic and COCO panoptic readers."""
