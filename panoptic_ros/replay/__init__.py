"""Rosbag replay evaluation: run a bag through the node (live, over DDS) or its Predictor
(offline), record the outputs in a bag, score them against ground truth in the bag, and
write a report (``panoptic-replay``; :func:`panoptic_ros.replay.run.replay`)."""
