"""ROS 2 messages as serialized CDR bytes, without rclpy or any ``*_msgs`` package.

The node receives its camera frames serialized and publishes its outputs serialized, and
the replay reads and writes bags of serialized messages, so both work on bytes:

- :mod:`.cdr`: the CDR reader and writer, and a plain ``Header``/``Time`` pair that reads
  like ``std_msgs/Header``.
- :mod:`.image`: ``sensor_msgs/Image`` and ``CompressedImage`` bytes <-> numpy, and
  their message type names.
- :mod:`.compressed`: JPEG and PNG data -> RGB, bounded by what the data can hold.
- :mod:`.decode_errors`: :class:`~.decode_errors.ImageDecodeError` and its causes.

Why not rclpy or rosbags: rclpy's ``serialize_message`` needs the ROS message packages,
which the offline replay and evaluation must not need (the core runs without a ROS
install), and it copies an image's pixels twice (into the C message, then into the CDR
buffer). ``rosbags``' ``serialize_cdr`` is pure Python but also copies the pixels into
its buffer and returns a view (a second copy to get ``bytes``). Here the pixels are copied
exactly once, into the final ``bytes`` that ``Publisher.publish`` and the bag writer take.
The few layouts written here are checked field by field against rclpy's and rosbags'
deserializers in the tests.
"""
