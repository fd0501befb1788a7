"""Evaluation: panoptic quality with the official rules (``pq``), semantic mIoU (``miou``),
both accumulated together (``scores``), COCO panoptic files (``coco_format``), a fast
COCO panoptic PNG reader (``png_ids``) and the ``panoptic-eval`` CLI (``cli``)."""
from panoptic_ros.eval.miou import SemanticConfusion, miou_of_results
from panoptic_ros.eval.pq import PanopticEvaluator
from panoptic_ros.eval.scores import PanopticScores

__all__ = ["PanopticEvaluator", "PanopticScores", "SemanticConfusion", "miou_of_results"]
