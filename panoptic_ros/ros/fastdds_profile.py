"""A Fast DDS XML profile for the node's process that frees each history buffer once its
message has left the history; call before any rclpy context exists.

rmw_fastrtps (Jazzy: rmw_fastrtps_cpp 8.4, Fast DDS 2.14) gives every DataWriter the history
memory policy ``PREALLOCATED_WITH_REALLOC``: a history slot grows to the largest message
written into it and never shrinks. After a burst of 4096x2160 frames, each output kept up to
``qos.output_depth`` buffers of up to 35 MB (``~/panoptic``) for the rest of the run, and the
input subscription the largest frames received (readers get the same policy). With
``DYNAMIC`` (Fast DDS's ``DYNAMIC_RESERVE_MEMORY_MODE``) a sample's buffer is allocated at the
sample's size and freed when the sample leaves the history. ``DYNAMIC_REUSABLE`` keeps freed
buffers for reuse, so it keeps the largest ones too (measured: 116 MB kept after five 30 MB
messages on a depth-3 transient-local topic, against 30 MB with rmw's policy and 0 with ``DYNAMIC``).

rmw_fastrtps reads the memory policy from XML only with ``RMW_FASTRTPS_USE_QOS_FROM_XML=1``,
and then it also leaves the publish mode, data sharing and the memory policies of readers and
of the discovery endpoints to XML. The profile therefore writes down what rmw_fastrtps would
have set (publish mode from ``RMW_FASTRTPS_PUBLICATION_MODE``, data sharing off,
``PREALLOCATED_WITH_REALLOC`` for the discovery endpoints); only the memory policy of the
node's writers and readers differs. rmw still
applies the ROS QoS (reliability, durability, history depth) on top, so subscribers see the
same topics with the same QoS.

A user's own DDS configuration wins: nothing is written or set where a profiles file is named
in the environment, ``RMW_FASTRTPS_USE_QOS_FROM_XML`` is set (``0`` keeps rmw's defaults),
Fast DDS would load ``DEFAULT_FASTRTPS_PROFILES.xml`` from the working directory, another rmw
is selected, or ``ROS_DISTRO`` names a distribution whose Fast DDS (3.x) this profile was not
verified on.

Imports no rclpy, so ``main()`` applies it before rclpy starts.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import MutableMapping
from pathlib import Path

PROFILES_FILE = "FASTRTPS_DEFAULT_PROFILES_FILE"  # the name Fast DDS 2.x reads
USE_QOS_FROM_XML = "RMW_FASTRTPS_USE_QOS_FROM_XML"
PUBLICATION_MODE = "RMW_FASTRTPS_PUBLICATION_MODE"
USER_VARIABLES = (PROFILES_FILE, "FASTDDS_DEFAULT_PROFILES_FILE", USE_QOS_FROM_XML)
WORKING_DIRECTORY_FILES = ("DEFAULT_FASTRTPS_PROFILES.xml", "DEFAULT_FASTDDS_PROFILES.xml")
FAST_DDS_2_DISTROS = ("humble", "iron", "jazzy")
ENDPOINT_MEMORY_POLICY = "DYNAMIC"
RMW_MEMORY_POLICY = "PREALLOCATED_WITH_REALLOC"

PROFILE = """<?xml version="1.0" encoding="UTF-8" ?>
<!-- panoptic_node: rmw_fastrtps's own settings, but history buffers sized to each sample -->
<profiles xmlns="http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles">
  <participant profile_name="panoptic_node_participant" is_default_profile="true">
    <rtps>
      <builtin>
        <readerHistoryMemoryPolicy>{rmw_policy}</readerHistoryMemoryPolicy>
        <writerHistoryMemoryPolicy>{rmw_policy}</writerHistoryMemoryPolicy>
      </builtin>
    </rtps>
  </participant>
  <data_writer profile_name="panoptic_node_writer" is_default_profile="true">
    <qos>{publish_mode}
      <data_sharing><kind>OFF</kind></data_sharing>
    </qos>
    <historyMemoryPolicy>{endpoint_policy}</historyMemoryPolicy>
  </data_writer>
  <data_reader profile_name="panoptic_node_reader" is_default_profile="true">
    <qos>
      <data_sharing><kind>OFF</kind></data_sharing>
    </qos>
    <historyMemoryPolicy>{endpoint_policy}</historyMemoryPolicy>
  </data_reader>
</profiles>
"""


def users_own_configuration(environ: MutableMapping[str, str], cwd: Path) -> str | None:
    """Why the node must leave the DDS configuration alone, or None where it may apply its profile."""
    named = [name for name in USER_VARIABLES if name in environ]
    if named:
        return f"{named[0]} is set"
    rmw = environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    if not rmw.startswith("rmw_fastrtps"):
        return f"RMW_IMPLEMENTATION is {rmw}"
    distro = environ.get("ROS_DISTRO")
    if distro is not None and distro not in FAST_DDS_2_DISTROS:
        return f"ROS_DISTRO is {distro} (the profile is written for Fast DDS 2.x)"
    if environ.get("SKIP_DEFAULT_XML_FILE") != "1":
        found = [name for name in WORKING_DIRECTORY_FILES if (cwd / name).is_file()]
        if found:
            return f"Fast DDS loads {cwd / found[0]}"
    return None


def profile_xml(publication_mode: str | None) -> str:
    """The profile, with the publish mode rmw_fastrtps derives from ``publication_mode``
    (``RMW_FASTRTPS_PUBLICATION_MODE``: ASYNCHRONOUS, AUTO = Fast DDS's default, anything
    else SYNCHRONOUS)."""
    if publication_mode == "AUTO":
        publish_mode = ""
    else:
        kind = "ASYNCHRONOUS" if publication_mode == "ASYNCHRONOUS" else "SYNCHRONOUS"
        publish_mode = f"\n      <publishMode><kind>{kind}</kind></publishMode>"
    return PROFILE.format(rmw_policy=RMW_MEMORY_POLICY, endpoint_policy=ENDPOINT_MEMORY_POLICY,
                          publish_mode=publish_mode)


def apply_output_memory_profile(environ: MutableMapping[str, str] = os.environ,
                                cwd: Path | None = None) -> tuple[Path | None, str]:
    """Write the profile to a new temporary folder and point Fast DDS at it, unless the user
    configures DDS (:func:`users_own_configuration`).

    Returns:
        The profile's path (None where nothing was applied; the caller removes its folder
        when the process ends) and a line for the log.
    """
    reason = users_own_configuration(environ, Path.cwd() if cwd is None else cwd)
    if reason is not None:
        return None, f"DDS configuration left as it is ({reason})"
    path = Path(tempfile.mkdtemp(prefix="panoptic_node_fastdds_")) / "panoptic_node_fastdds.xml"
    path.write_text(profile_xml(environ.get(PUBLICATION_MODE)), encoding="utf-8")
    environ[PROFILES_FILE], environ[USE_QOS_FROM_XML] = str(path), "1"
    return path, f"Fast DDS sizes history buffers to each message ({ENDPOINT_MEMORY_POLICY}, profile {path})"


def remove_output_memory_profile(path: Path | None, environ: MutableMapping[str, str] = os.environ) -> None:
    """Undo :func:`apply_output_memory_profile` (the profile was read when the first
    participant started): delete its folder and the variables that name it."""
    if path is None:
        return
    if environ.get(PROFILES_FILE) == str(path):
        del environ[PROFILES_FILE]
        environ.pop(USE_QOS_FROM_XML, None)
    shutil.rmtree(path.parent, ignore_errors=True)
