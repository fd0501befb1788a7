"""The ROS 2 shell: the only package (with ``launch/``) that imports rclpy and the message
packages.

- :mod:`.node`: the lifecycle node and its ``main()`` (console script ``panoptic_node``).
- :mod:`.params`: the node's parameter declarations and their validation.
- :mod:`.pipeline`: latest-frame slot, inference thread and statistics (pure Python).
- :mod:`.messages`: :class:`~panoptic_ros.types.PanopticResult` -> the node's output
  messages as serialized bytes. It imports no rclpy and no ``*_msgs`` (it builds the CDR
  with :mod:`panoptic_ros.serialized`), so the offline replay writes exactly what the node
  publishes without ROS.
- :mod:`.raw_publish`: publishes those bytes through rcl without rclpy's extra copy.
- :mod:`.image_codec`: numpy -> rclpy ``Image``/``CompressedImage`` objects, plus the
  byte-level codec of :mod:`panoptic_ros.serialized.image`.
- :mod:`.replay_client`: the live replay's DDS side (publishes a bag's frames to the node,
  records its outputs); the rest of the replay (:mod:`panoptic_ros.replay`) is pure and
  imports this module only for a live run.
"""
