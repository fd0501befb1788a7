"""Where the shipped weights and parameter files are.

Installed (colcon / ``ros2 run``), they live in the package's ament share directory
(``share/panoptic_ros/{weights,config,launch}``); in a source checkout (editable install,
tests) in the repository's ``weights/`` and ``config/``. The share directory wins when it
holds the folder, so an installed package never reads a stray checkout.
"""
from __future__ import annotations

from pathlib import Path

PACKAGE = "panoptic_ros"
REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
DEMO_DATASET = "synthstreet"
SHIPPED_KINDS = ("panonet", "ciae")
"""Model kinds with shipped demo weights and node parameter files (names only: the launch
file imports this module and stays free of torch; a test checks them against
``panoptic_ros.kinds.KINDS``)."""


def share_dir() -> Path | None:
    """The package's ament share directory, or None when it is not installed."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    except ImportError:
        return None
    try:
        return Path(get_package_share_directory(PACKAGE))
    except (PackageNotFoundError, LookupError, OSError, ValueError):  # OSError: AMENT_PREFIX_PATH unset
        return None


def resource_dir(name: str) -> Path:
    """``weights``, ``config`` or ``launch``: the installed copy if any, else the checkout's."""
    share = share_dir()
    if share is not None and (share / name).is_dir():
        return share / name
    return REPOSITORY_ROOT / name


def _check_kind(kind: str) -> str:
    if kind not in SHIPPED_KINDS:
        raise ValueError(f"unknown model {kind!r}; choose one of {', '.join(SHIPPED_KINDS)}")
    return kind


def default_weights(kind: str) -> Path:
    """The shipped demo checkpoint of ``kind`` (``<weights>/<kind>_synthstreet``, no suffix)."""
    return resource_dir("weights") / f"{_check_kind(kind)}_{DEMO_DATASET}"


def default_params_file(kind: str) -> Path:
    """The node parameter file of ``kind`` (``<config>/<kind>.yaml``)."""
    return resource_dir("config") / f"{_check_kind(kind)}.yaml"
