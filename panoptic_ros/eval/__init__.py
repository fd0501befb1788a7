"""Evaluation: panoptic quality with the official rules (``pq``), semantic mIoU (``miou``),
COCO panoptic files (``coco_format``) and the ``panoptic-eval`` CLI (``cli``)."""
from panoptic_ros.eval.miou import SemanticConfusion, miou_of_results
from panoptic_ros.eval.pq import PanopticEvaluator

__all__ = ["PanopticEvaluator", "SemanticConfusion", "miou_of_results"]
