"""The node's ``/diagnostics`` statuses (the node's, then one per named camera): levels,
messages, and the message itself."""
from __future__ import annotations

from typing import Mapping, Sequence

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from std_msgs.msg import Header


def health(values: Mapping[str, object], *, configure_error: str, state: str, enabled: bool) -> tuple[bytes, str]:
    """(level, message): ERROR when configure failed, WARN when not active, paused or with
    inference errors, else OK with the output rate (``values`` from ``FrameStats.snapshot``)."""
    if configure_error:
        return DiagnosticStatus.ERROR, f"configure failed: {configure_error}"
    if state != "active":
        return DiagnosticStatus.WARN, state
    if not enabled:
        return DiagnosticStatus.WARN, "paused (~/enable)"
    if values["inference_errors"]:
        return DiagnosticStatus.WARN, f"{values['inference_errors']} inference errors"
    return DiagnosticStatus.OK, f"active, {values['output_rate_hz']:.1f} Hz out"


def diagnostic_status(*, name: str, hardware_id: str, level: bytes, message: str,
                      values: Mapping[str, object]) -> DiagnosticStatus:
    """A ``DiagnosticStatus`` with ``values`` as key/value strings (floats to 3 decimals)."""
    pairs = [KeyValue(key=k, value=f"{v:.3f}" if isinstance(v, float) else str(v)) for k, v in values.items()]
    return DiagnosticStatus(level=level, name=name, message=message, hardware_id=hardware_id, values=pairs)


def diagnostic_array(header: Header, *, name: str, hardware_id: str, level: bytes, message: str,
                     values: Mapping[str, object], extra: Sequence[DiagnosticStatus] = ()) -> DiagnosticArray:
    """The node's ``DiagnosticStatus`` (``values`` as key/value strings, floats to 3
    decimals), then the ``extra`` ones (its cameras')."""
    status = diagnostic_status(name=name, hardware_id=hardware_id, level=level, message=message, values=values)
    return DiagnosticArray(header=header, status=[status, *extra])


def camera_statuses(snapshots: Mapping[str, Mapping[str, object]], *, node_name: str,
                    hardware_id: str) -> list[DiagnosticStatus]:
    """One status per camera (``<node>: camera <name>``) from its ``FrameStats.snapshot``:
    rates in and out, latency percentiles, dropped and rejected by cause; WARN with
    inference errors. None for the single unnamed camera (the node's status is its)."""
    if list(snapshots) == [""]:
        return []
    statuses = []
    for camera, values in snapshots.items():
        errors = values["inference_errors"]
        message = (f"{values['input_rate_hz']:.1f} Hz in, {values['output_rate_hz']:.1f} Hz out"
                   + (f", {errors} inference errors" if errors else ""))
        statuses.append(diagnostic_status(name=f"{node_name}: camera {camera}", hardware_id=hardware_id,
                                          level=DiagnosticStatus.WARN if errors else DiagnosticStatus.OK,
                                          message=message, values=values))
    return statuses
