"""The node's ROS 2 shell: with ``launch/`` and :mod:`panoptic_ros.replay.live`, the only
code that imports rclpy and the message packages (test/test_import_graph.py holds it to
that).

- :mod:`.node`: the lifecycle node and its ``main()`` (console script ``panoptic_node``).
- :mod:`.params`: the node's parameter declarations and their validation.
- :mod:`.pipeline`: latest-frame slot, inference thread and statistics (pure Python).
- :mod:`.lifecycle`: lifecycle services that answer every request (also disallowed transitions).
- :mod:`.diagnostics`: the node's ``/diagnostics`` status.
- :mod:`.memory`: keeps freed large buffers mapped, so per-frame arrays do not page-fault.
- :mod:`.fastdds_profile`: the Fast DDS profile that frees large messages' history buffers
  (imports no rclpy; ``main()`` applies it before rclpy starts).
- :mod:`.environment`: keeps a process's DDS traffic to itself (imports no rclpy; called
  before rclpy starts).
- :mod:`.raw_publish`: publishes serialized bytes through rcl without rclpy's extra copy.
- :mod:`.image_messages`: numpy -> rclpy ``Image``/``CompressedImage`` objects for typed
  publishers (test probes, benchmarks).

What the node publishes is built without ROS in :mod:`panoptic_ros.outputs`, so the
offline replay writes exactly the same bytes.
"""
