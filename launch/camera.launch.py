"""Run the panoptic segmentation node on one camera.

    ros2 launch panoptic_ros camera.launch.py image_topic:=/camera/image_raw model:=ciae

Every argument is described (``ros2 launch panoptic_ros camera.launch.py --show-args``);
the argument -> parameter logic lives in :mod:`panoptic_ros.launch_config`.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode

from panoptic_ros.launch_config import EXECUTABLE, LAUNCH_ARGUMENTS, node_launch


def _panoptic_node(context, *args, **kwargs):
    values = {arg.name: LaunchConfiguration(arg.name).perform(context) for arg in LAUNCH_ARGUMENTS}
    spec = node_launch(values)
    return [LifecycleNode(
        package="panoptic_ros",
        executable=EXECUTABLE,
        name=spec.name,
        namespace=spec.namespace,
        parameters=spec.parameters,
        remappings=spec.remappings,
        output="screen",
        emulate_tty=True,
    )]


def generate_launch_description():
    arguments = [DeclareLaunchArgument(arg.name, default_value=arg.default, description=arg.description)
                 for arg in LAUNCH_ARGUMENTS]
    return LaunchDescription(arguments + [OpaqueFunction(function=_panoptic_node)])
