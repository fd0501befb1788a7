"""Every console script against paths it cannot use (output under a file, an output that is
the wrong kind, an unusable cache folder, a config that is not UTF-8 or not YAML): one line
on stderr naming the path, no traceback, exit code 2."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from panoptic_ros.tiny_models import write_tiny_checkpoint

BIN = Path(sys.executable).parent
TRAIN_CONFIG = Path(__file__).parents[1] / "training" / "configs" / "ciae_synthstreet.yaml"
EVALUATE = ["--dataset", "synthstreet", "--count", "1", "--size", "64x128", "--device", "cpu"]


@pytest.fixture(scope="module")
def place(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_paths")
    (root / "blocker").write_text("a file where a folder is expected")
    (root / "folder").mkdir()
    (root / "latin1.yaml").write_bytes("model:\n  kind: ci\xe4e\n".encode("latin-1"))
    (root / "broken.yaml").write_text("model: [unclosed\n  kind: {\n")
    (root / "params_latin1.yaml").write_bytes("panoptic_node:\n  ros__parameters:\n    model: \xe4\n".encode("latin-1"))
    (root / "params_broken.yaml").write_text("panoptic_node:\n  ros__parameters: [\n")
    write_tiny_checkpoint(root, "ciae", input_size=(64, 128))
    run = root / "run"
    run.mkdir()
    for suffix in (".json", ".safetensors"):
        (run / f"model{suffix}").write_bytes((root / f"ciae_tiny{suffix}").read_bytes())
    return root


# (script, arguments, the path the line must name, extra environment); {r} is the folder above
CASES = {
    "train --out under a file": ("panoptic-train", ["--config", str(TRAIN_CONFIG), "--out", "{r}/blocker/run"],
                                 "{r}/blocker/run", {}),
    "train --out a file": ("panoptic-train", ["--config", str(TRAIN_CONFIG), "--out", "{r}/blocker"],
                           "{r}/blocker", {}),
    "train config not UTF-8": ("panoptic-train", ["--config", "{r}/latin1.yaml"], "{r}/latin1.yaml", {}),
    "train config not YAML": ("panoptic-train", ["--config", "{r}/broken.yaml"], "{r}/broken.yaml", {}),
    "evaluate --json-out under a file": ("panoptic-evaluate", ["--checkpoint", "{r}/ciae_tiny", *EVALUATE,
                                                               "--json-out", "{r}/blocker/pq.json"],
                                         "{r}/blocker/pq.json", {}),
    "evaluate --json-out a folder": ("panoptic-evaluate", ["--checkpoint", "{r}/ciae_tiny", *EVALUATE,
                                                           "--json-out", "{r}/folder"], "{r}/folder", {}),
    "evaluate --predictions-dir under a file": ("panoptic-evaluate", ["--checkpoint", "{r}/ciae_tiny", *EVALUATE,
                                                                      "--predictions-dir", "{r}/blocker/p"],
                                                "{r}/blocker/p", {}),
    "evaluate ONNX cache under a file": ("panoptic-evaluate", ["--checkpoint", "{r}/ciae_tiny", *EVALUATE,
                                                               "--backend", "onnxruntime"],
                                         "{r}/blocker/panoptic_ros/onnx", {"XDG_CACHE_HOME": "{r}/blocker"}),
    "eval --json-out under a file": ("panoptic-eval", ["--gt-json", "g.json", "--gt-folder", "g", "--pred-json",
                                                       "p.json", "--pred-folder", "p", "--json-out",
                                                       "{r}/blocker/x.json"], "{r}/blocker/x.json", {}),
    "export --out under a file": ("panoptic-export", ["--checkpoint", "{r}/ciae_tiny", "--out",
                                                      "{r}/blocker/m.onnx"], "{r}/blocker/m.onnx", {}),
    "synth --out under a file": ("panoptic-synth", ["--out", "{r}/blocker/s", "--format", "coco", "--count", "1",
                                                    "--size", "64x128"], "{r}/blocker/s", {}),
    "release --stem under a file": ("panoptic-release", ["--run", "{r}/run", "--stem", "{r}/blocker/w",
                                                         "--val-count", "1", "--size", "64x128", "--device", "cpu"],
                                    "{r}/blocker", {}),
    "bandwidth-search checkpoint under a file": ("panoptic-bandwidth-search", ["--checkpoint", "{r}/blocker/c"],
                                                 "{r}/blocker/c", {}),
    "node params file not UTF-8": ("panoptic_node", ["--ros-args", "--params-file", "{r}/params_latin1.yaml"],
                                   "{r}/params_latin1.yaml", {"ROS_HOME": "{r}/ros"}),
    "node params file not YAML": ("panoptic_node", ["--ros-args", "--params-file", "{r}/params_broken.yaml"],
                                  "{r}/params_broken.yaml", {"ROS_HOME": "{r}/ros"}),
    "replay --out under a file": ("panoptic-replay", ["{r}/nobag", "--offline", "--model", "ciae", "--weights",
                                                      "{r}/ciae_tiny", "--out", "{r}/blocker/r"],
                                  "{r}/blocker/r", {}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_bad_path_is_one_line_naming_it(place, case):
    script, args, culprit, env = CASES[case]
    fill = lambda text: text.replace("{r}", str(place))  # noqa: E731
    environment = {**os.environ, "OMP_NUM_THREADS": "1", **{k: fill(v) for k, v in env.items()}}
    proc = subprocess.run([str(BIN / script), *map(fill, args)], capture_output=True, text=True, timeout=300,
                          env=environment, cwd=place)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and len(lines) == 1, proc.stderr
    assert fill(culprit) in lines[0] and lines[0].startswith(f"{script}: "), lines[0]
