"""The ROS 2 shell: the only package that imports rclpy and the message packages.

- :mod:`.image_codec`: ``sensor_msgs`` images <-> numpy.
- :mod:`.messages`: :class:`~panoptic_ros.types.PanopticResult` -> ROS messages.
- :mod:`.params`: the node's parameter declarations and their validation.
- :mod:`.node`: the lifecycle node and its ``main()`` (console script ``panoptic_node``).
"""
