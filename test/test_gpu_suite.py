"""bench/gpu_suite.py keeps working: its CPU smoke run (``--device cpu --quick``) at tiny
sizes, in a process of its own (it blocks rclpy and pyspng as the GPU machine lacks them)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_suite_quick_cpu_run_writes_every_section(tmp_path):
    out = tmp_path / "suite.json"
    try:
        done = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_suite.py"), "--device", "cpu", "--quick",
                               "--section-cap", "120", "--out", str(out)], capture_output=True, text=True,
                              timeout=270)   # under pytest's 300 s, so that a hang shows how far it got
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"gpu_suite.py --quick ran past 270 s (about 30 s on 2 idle cores); output so far:\n"
                    f"{exc.stdout}\n{exc.stderr}\n"
                    f"sections written: {out.read_text() if out.exists() else 'none'}")
    assert done.returncode == 0, done.stdout + done.stderr
    sections = json.loads(out.read_text())["sections"]
    assert list(sections) == ["environment", "gpu_tests", "latency", "fp16_agreement", "postprocess", "training",
                              "ddp", "onnx"]
    assert all(s["status"] == "ok" for s in sections.values())
    assert sections["environment"]["rclpy_blocked"] and sections["environment"]["pyspng_blocked"]
    assert set(sections["latency"]["panonet_paper"]) == {"fp32", "compiled"}
    assert sections["latency"]["ciae_paper"]["fp32"]["end_to_end"]["p50"] > 0
    assert sections["postprocess"]["max_host_reads"] <= 10
    assert sections["ddp"]["max_grad_difference"] < 1e-5   # one rank: DDP's gradients are the model's
    assert all(max(d.values()) < 1e-3 for name, d in sections["onnx"].items() if name not in ("status", "seconds"))
