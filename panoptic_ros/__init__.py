"""panoptic_ros: real-time panoptic segmentation (PanoNet, CIAE) for ROS 2.

The core runs without ROS: label spaces and results (:mod:`.labels`, :mod:`.types`,
:mod:`.segments`, :mod:`.sample`), configs (:mod:`.config`), models (:mod:`.models`),
post-processing (:mod:`.postprocess`), inference (:mod:`.inference`), serialized ROS
messages (:mod:`.serialized`), the node's output messages as bytes (:mod:`.outputs`),
evaluation (:mod:`.eval`), visualisation (:mod:`.viz`), the SynthStreet generator
(:mod:`.synthstreet`), rosbag replay (:mod:`.replay`), shared CLI option types
(:mod:`.cli_common`), checkpoints and files (:mod:`.checkpoint`, :mod:`.jsonfile`,
:mod:`.paths`, :mod:`.resources`), autocast precision (:mod:`.precision`), launch
arguments -> node parameters (:mod:`.launch_config`), a torch-call counter
(:mod:`.sync_count`) and the demo (:mod:`.demo`). Training installs as
``panoptic_ros.training`` (from ``training/``).

Only the ROS shell imports rclpy and the message packages: :mod:`.ros` (the node) and
:mod:`.replay.live` (the live replay's DDS client); test/test_import_graph.py checks it.
"""

__version__ = "0.1.0"
