#!/usr/bin/env bash
# Build the project's vision_msgs interface package into the venv, unless a vision_msgs
# is already importable there (a real ROS install provides one: leave it alone).
#
# Usage: scripts/build_vision_msgs.sh VENV_DIR
#
# The PyPI ROS wheels carry CMake exports with the wheel builder's Python paths; they are
# rewritten to this venv's before CMake runs. The package is built under .build/ and
# installed with --merge-install into the venv prefix, so its libraries land in
# VENV/lib (which the ROS wheels already put on the library path) and its Python code
# in the venv's site-packages: nothing else has to be sourced.
set -euo pipefail

venv=$(cd "${1:?usage: build_vision_msgs.sh VENV_DIR}" && pwd)
root=$(cd "$(dirname "$0")/.." && pwd)
py="$venv/bin/python"

if "$py" -c 'import vision_msgs.msg' 2>/dev/null; then
  echo "vision_msgs is importable: not building the project's copy"
  exit 0
fi

py_include=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
np_include=$("$py" -c 'import numpy; print(numpy.get_include())')
grep -rlZ --include='*.cmake' '/opt/python/cp311-cp311' "$venv/share" 2>/dev/null |
  xargs -0 -r sed -i \
    -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$np_include#g" \
    -e "s#/opt/python/cp311-cp311/include/python3.11#$py_include#g"

work="$root/.build/vision_msgs"
mkdir -p "$work"
export PATH="$venv/bin:$PATH"
export AMENT_PREFIX_PATH="$venv" CMAKE_PREFIX_PATH="$venv"
(
  cd "$work"
  colcon --log-base "$work/log" build \
    --base-paths "$root/interfaces" \
    --build-base "$work/build" \
    --install-base "$venv" --merge-install \
    --cmake-args -DPython3_EXECUTABLE="$py" -DBUILD_TESTING=OFF \
    --event-handlers console_direct- console_cohesion- status- summary+
)
"$py" -c 'import vision_msgs.msg; print("vision_msgs built into", vision_msgs.__file__)'
