"""The node's ``/diagnostics`` status: its level and message, and the message itself."""
from __future__ import annotations

from typing import Mapping

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


def diagnostic_array(header: Header, *, name: str, hardware_id: str, level: bytes, message: str,
                     values: Mapping[str, object]) -> DiagnosticArray:
    """One ``DiagnosticStatus`` with ``values`` as key/value strings (floats to 3 decimals)."""
    pairs = [KeyValue(key=k, value=f"{v:.3f}" if isinstance(v, float) else str(v)) for k, v in values.items()]
    status = DiagnosticStatus(level=level, name=name, message=message, hardware_id=hardware_id, values=pairs)
    return DiagnosticArray(header=header, status=[status])
