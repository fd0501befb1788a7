"""Lifecycle services that answer every request.

rclpy 7.1 (Jazzy) lets rcl's "Transition is not registered" error escape from the
``~/change_state`` service callback when a transition is requested that the current state
does not have (``configure`` while active, ``cleanup`` while active, ...). The request is
then never answered, and a lifecycle manager waiting for the reply hangs. The node works
around it here, in front of rclpy's callback, until rclpy answers such requests itself.
"""
from __future__ import annotations

from rclpy.lifecycle import LifecycleNode


def answer_invalid_transitions(node: LifecycleNode) -> None:
    """Make ``node``'s ``~/change_state`` answer ``success=false`` to a transition that its
    current state does not have, leaving the state as it is (see the module docstring)."""
    service = getattr(node, "_service_change_state", None)
    if service is None:  # the lifecycle services are disabled
        return
    answer = service.callback

    def on_change_state(request, response):
        transition = request.transition
        available = {t[0]: t[1] for t in node._state_machine.available_transitions}
        wanted = transition.id if not transition.label else next(
            (i for i, label in available.items() if label == transition.label), None)
        if wanted not in available:
            state = node._state_machine.current_state[1]
            node.get_logger().warning(f"refused lifecycle transition {transition.label or transition.id!r}: "
                                      f"not available in state {state!r} (available: "
                                      f"{', '.join(available.values()) or 'none'})")
            response.success = False
            return response
        try:
            return answer(request, response)
        except RuntimeError as exc:  # rclpy's RCLError: a transition that raced with another; still answer
            node.get_logger().error(f"lifecycle transition failed: {exc}")
            response.success = False
            return response

    service.callback = on_change_state
