"""The layering holds: read every import (function-level ones included) of every module
under ``panoptic_ros/`` and ``training/`` with ``ast`` and check three rules.

1. Only the ROS shell imports ROS: rclpy, the ``*_msgs``/``*_srvs``/``*_interfaces``
   packages, rosidl and launch. The ROS shell is ``panoptic_ros.ros`` (the node's
   glue) and ``panoptic_ros.replay.live`` (the live replay's DDS client). Outside it, a
   shell module that imports ROS may only be imported inside a function (lazily), so that
   importing any other module never loads rclpy.
2. Nothing outside ``training/`` (installed as ``panoptic_ros.training``) imports it.
3. No import cycles between packages: each subpackage of ``panoptic_ros`` is one unit
   (``panoptic_ros.training`` included), each top-level module is its own unit.

Each failure names the file, the line and the import.
"""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "panoptic_ros"
TRAINING = f"{PACKAGE}.training"
# Source folder -> the package it installs as (setup.py maps training/ to panoptic_ros.training).
SOURCE_ROOTS = {"panoptic_ros": PACKAGE, "training": TRAINING}
ROS_SHELL = (f"{PACKAGE}.ros", f"{PACKAGE}.replay.live")
# ament_index_python is not among them: a pure-Python lookup in AMENT_PREFIX_PATH that the
# core uses (inside functions, optional) to find installed share folders.
ROS_DISTRIBUTIONS = ("rclpy", "rosidl", "rosidl_runtime_py", "rosidl_parser", "rcl", "rmw", "launch", "launch_ros",
                     "launch_testing", "launch_testing_ros", "ros2cli", "tf2_ros", "cv_bridge")
ROS_SUFFIXES = ("_msgs", "_srvs", "_interfaces")


@dataclass(frozen=True)
class Import:
    """One import statement's target, as seen in one module.

    Attributes:
        module: the importing module (dotted, as installed).
        path: its file, relative to the repository.
        line: line number of the import.
        target: the imported module (dotted, relative imports resolved).
        lazy: the import is inside a function (runs only when the function is called).
    """

    module: str
    path: str
    line: int
    target: str
    lazy: bool

    def where(self) -> str:
        return f"{self.path}:{self.line} imports {self.target}" + (" (inside a function)" if self.lazy else "")


def module_files(root: Path) -> dict[str, Path]:
    """Dotted module name (as installed) -> source file, for every .py under the source roots."""
    modules = {}
    for folder, package in SOURCE_ROOTS.items():
        for path in sorted((root / folder).rglob("*.py")):
            parts = path.relative_to(root / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join((package, *parts))] = path
    return modules


def _is_package(module: str, modules: dict[str, Path]) -> bool:
    return modules[module].name == "__init__.py"


def _absolute(node: ast.ImportFrom, module: str, modules: dict[str, Path]) -> str:
    """The module an ``ImportFrom`` names, relative imports resolved against ``module``."""
    if not node.level:
        return node.module or ""
    base = module.split(".") if _is_package(module, modules) else module.split(".")[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _targets(node: ast.AST, module: str, modules: dict[str, Path]) -> list[str]:
    """The modules one import statement loads (``from pkg import mod`` counts as ``pkg.mod``)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = _absolute(node, module, modules)
    submodules = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in modules]
    return submodules or [base]


class _ImportCollector(ast.NodeVisitor):
    """Collects every import of a module, remembering whether it sits inside a function."""

    def __init__(self, module: str, path: str, modules: dict[str, Path]) -> None:
        self.module, self.path, self.modules = module, path, modules
        self.depth = 0
        self.imports: list[Import] = []

    def _function(self, node: ast.AST) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = _function

    def _import(self, node: ast.Import | ast.ImportFrom) -> None:
        for target in _targets(node, self.module, self.modules):
            self.imports.append(Import(self.module, self.path, node.lineno, target, lazy=self.depth > 0))

    visit_Import = visit_ImportFrom = _import


def collect_imports(root: Path) -> list[Import]:
    """Every import of every module under the source roots of ``root``."""
    modules = module_files(root)
    imports = []
    for module, path in modules.items():
        collector = _ImportCollector(module, str(path.relative_to(root)), modules)
        collector.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        imports.extend(collector.imports)
    return imports


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def in_ros_shell(module: str) -> bool:
    return any(_within(module, shell) for shell in ROS_SHELL)


def is_ros(target: str) -> bool:
    """A ROS-only module (needs a ROS installation or its message packages)."""
    top = target.split(".")[0]
    return top in ROS_DISTRIBUTIONS or top.startswith("rosidl_") or top.endswith(ROS_SUFFIXES)


def ros_violations(imports: list[Import]) -> list[str]:
    """Rule 1: ROS imports outside the shell, and module-level imports of shell modules that
    load ROS."""
    loads_ros = {imp.module for imp in imports if is_ros(imp.target) and not imp.lazy}
    found = []
    for imp in imports:
        if in_ros_shell(imp.module):
            continue
        if is_ros(imp.target):
            found.append(f"{imp.where()}: only the ROS shell ({', '.join(ROS_SHELL)}) may import ROS packages")
        elif imp.target in loads_ros and not imp.lazy:
            found.append(f"{imp.where()}: {imp.target} loads ROS, import it inside the function that needs it")
    return found


def training_violations(imports: list[Import]) -> list[str]:
    """Rule 2: imports of ``panoptic_ros.training`` from outside it."""
    return [f"{imp.where()}: only training/ may import {TRAINING}" for imp in imports
            if _within(imp.target, TRAINING) and not _within(imp.module, TRAINING)]


def unit_of(module: str) -> str | None:
    """The unit of one of our modules for the cycle rule (``panoptic_ros.<package or
    top-level module>``), or None for other modules and the root package itself."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == PACKAGE and len(parts) > 1 else None


def _find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph ``edges`` as a list of nodes (first == last), or None."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for start in sorted(edges):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def cycle_violations(imports: list[Import]) -> list[str]:
    """Rule 3: a cycle between package-level units, each edge shown with one import behind it."""
    edges: dict[str, set[str]] = {}
    witness: dict[tuple[str, str], Import] = {}
    for imp in imports:
        src, dst = unit_of(imp.module), unit_of(imp.target)
        if src and dst and src != dst:
            edges.setdefault(src, set()).add(dst)
            witness.setdefault((src, dst), imp)
    cycle = _find_cycle(edges)
    if cycle is None:
        return []
    steps = [witness[(a, b)].where() for a, b in zip(cycle, cycle[1:])]
    return [f"import cycle {' -> '.join(cycle)}: " + "; ".join(steps)]


def check(root: Path) -> list[str]:
    """Every layering violation under ``root`` (a repository or a tree laid out like one)."""
    imports = collect_imports(root)
    return ros_violations(imports) + training_violations(imports) + cycle_violations(imports)


def test_the_repository_keeps_its_layering():
    problems = check(ROOT)
    assert not problems, "layering broken:\n" + "\n".join(problems)


def test_the_walk_sees_function_level_and_relative_imports():
    imports = collect_imports(ROOT)
    lazy_live = [imp for imp in imports if imp.target == f"{PACKAGE}.replay.live"]
    assert lazy_live and all(imp.lazy for imp in lazy_live)
    assert {imp.module for imp in imports} >= {f"{PACKAGE}.ros.node", f"{TRAINING}.train", f"{PACKAGE}.synthstreet.scene"}


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name in ("panoptic_ros/__init__.py", "training/__init__.py", *files):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(files.get(name, ""))
    return tmp_path


@pytest.mark.parametrize("files, expected", [
    ({"panoptic_ros/viz.py": "import numpy\nfrom sensor_msgs.msg import Image\n"},
     "panoptic_ros/viz.py:2 imports sensor_msgs.msg: only the ROS shell"),
    ({"panoptic_ros/eval/__init__.py": "", "panoptic_ros/eval/pq.py": "def f():\n    import rclpy.node\n"},
     "panoptic_ros/eval/pq.py:2 imports rclpy.node (inside a function): only the ROS shell"),
    ({"panoptic_ros/replay/__init__.py": "", "panoptic_ros/replay/live.py": "import rclpy\n",
      "panoptic_ros/replay/run.py": "from . import live\n"},
     "panoptic_ros/replay/run.py:1 imports panoptic_ros.replay.live: panoptic_ros.replay.live loads ROS"),
    ({"panoptic_ros/demo.py": "def main():\n    from panoptic_ros.training.data import x\n", "training/data.py": ""},
     "panoptic_ros/demo.py:2 imports panoptic_ros.training.data (inside a function): only training/ may import"),
    ({"panoptic_ros/types.py": "from panoptic_ros import segments\n",
      "panoptic_ros/segments.py": "def f():\n    from panoptic_ros.types import X\n"},
     "import cycle panoptic_ros.segments -> panoptic_ros.types -> panoptic_ros.segments: "
     "panoptic_ros/segments.py:2 imports panoptic_ros.types (inside a function); "
     "panoptic_ros/types.py:1 imports panoptic_ros.segments"),
], ids=["ros-message-package", "lazy-rclpy", "eager-shell-module", "training-from-core", "module-cycle"])
def test_a_broken_rule_is_reported_with_file_line_and_import(tmp_path, files, expected):
    problems = check(_tree(tmp_path, files))
    assert len(problems) == 1 and problems[0].startswith(expected), problems


def test_the_rules_accept_a_lazy_shell_import_and_ros_inside_the_shell(tmp_path):
    files = {"panoptic_ros/replay/__init__.py": "", "panoptic_ros/replay/live.py": "import rclpy\n",
             "panoptic_ros/replay/run.py": "def live():\n    from panoptic_ros.replay.live import Runner\n",
             "panoptic_ros/ros/__init__.py": "", "panoptic_ros/ros/node.py": "import rclpy\nfrom std_srvs.srv import X\n",
             "training/train.py": "from panoptic_ros.training import data\n", "training/data.py": ""}
    assert check(_tree(tmp_path, files)) == []


IMPORT_ALL = """
import importlib, json, sys
names = json.loads(sys.argv[1])
for name in names:
    importlib.import_module(name)
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] == "rclpy" or m.split(".")[0].endswith("_msgs"))))
"""


@pytest.mark.slow
def test_importing_every_module_outside_the_ros_shell_loads_no_ros():
    names = [m for m, path in module_files(ROOT).items() if not in_ros_shell(m)]
    done = subprocess.run([sys.executable, "-c", IMPORT_ALL, json.dumps(names)], capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
