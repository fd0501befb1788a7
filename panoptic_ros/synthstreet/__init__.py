"""SynthStreet: the built-in generator of panoptic street scenes (Cityscapes label space),
used by training, the demo, the replay tests and the benchmarks; and its writers.

- :mod:`.scene`: :func:`~.scene.generate_scene` (a scene as a pure function of seed,
  index and size) and the map-style :class:`~.scene.SynthStreetDataset`.
- How a scene is drawn: :mod:`.camera` (pinhole over a flat street), :mod:`.background`
  (the static street), :mod:`.layout` (where objects stand), :mod:`.vehicles`,
  :mod:`.people`, :mod:`.furniture` (the objects), :mod:`.render` (materials, layers,
  sprites), :mod:`.palette` (per-scene colours), :mod:`.noise` (texture bank).
- :mod:`.stats`: statistics of panoptic samples (instances, twins, pieces, class shares).
- Writers: :mod:`.writers` (Cityscapes layout, COCO panoptic), :mod:`.bag` (a ROS 2 bag
  with rosbags, the replay's bag contract), and :mod:`.cli` (``panoptic-synth``).

Scenes are :class:`panoptic_ros.sample.Sample` s. Nothing here imports ROS or
``panoptic_ros.training``.
"""
