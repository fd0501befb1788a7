"""Rosbag replay evaluation: run a bag through the node (live, over DDS) or its Predictor
(offline), record the outputs in a bag, score them against ground truth in the bag, and
write a report (``panoptic-replay``; :func:`panoptic_ros.replay.run.replay`).

- ``run`` (one replay, start to report) and ``cli`` (``panoptic-replay``);
- reading bags: ``bag``, ``sqlite_salvage`` (cut-off sqlite3 bags), ``messages`` (camera
  and ground-truth messages <-> arrays, the recorded topics);
- running: ``offline`` (the Predictor, no DDS), ``nodeproc`` (the node process) and
  ``live`` (the DDS client; the only module here that imports rclpy, loaded only for a
  live replay);
- results: ``outbag`` (the output bag), ``metrics``, ``evaluate`` (scoring), ``report``
  and ``svg`` (its charts).
"""
