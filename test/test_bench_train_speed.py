"""bench/train_speed.py: its tiny mode prints the full table and consistent figures; its
verdicts follow the issue's targets."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "train_speed.py"
PARTS = ("data", "targets", "forward", "loss", "backward", "optimizer")


def load_bench():
    spec = importlib.util.spec_from_file_location("train_speed", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module              # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("train_speed")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--steps", "2", "--warmup", "1", "--scenes", "2",
                           "--cache-dir", str(out / "cache"), "--json-out", str(out / "speed.json")],
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout, json.loads((out / "speed.json").read_text()), out


def test_quick_run_prints_every_row_and_column(quick_run):
    stdout, _, _ = quick_run
    lines = stdout.splitlines()
    header = next(line for line in lines if line.startswith("model"))
    assert header.split() == ["model", "params", "prec", "memory", "img/s", *PARTS, "data+tgt"]
    models = load_bench().MODELS
    rows = [line.split() for line in lines if line.split() and line.split()[0] in models]
    assert len(rows) == 4 * len(models)
    assert {(r[0], r[2], r[3]) for r in rows} == {(m, p, f) for m in models for p in ("fp32", "bf16")
                                                 for f in ("contiguous", "channels_last")}
    assert all(len(r) == 12 and r[-1].endswith("%") for r in rows)
    for model in models:
        assert any(line.startswith(f"{model}: bf16/fp32 images/s") for line in lines)
    assert any(line.startswith("target: bf16 >= 2x fp32 (AMX) / >= 1.4x (AVX512-BF16 only)") for line in lines)
    assert any(line.startswith("target: data + targets <= 15 % of a step -> ") for line in lines)


def test_quick_run_figures_add_up_and_the_cache_was_used(quick_run):
    _, result, out = quick_run
    for row in result["rows"]:
        parts = [row[f"{p}_ms"] for p in PARTS]
        assert all(p > 0 for p in parts)
        assert row["step_ms"] == pytest.approx(sum(parts))
        assert row["images_per_s"] == pytest.approx(1000 * row["batch"] / row["step_ms"])
        assert row["data_share"] == pytest.approx((row["data_ms"] + row["targets_ms"]) / row["step_ms"])
        assert row["crop"] == [64, 128] and row["params"] > 0
    assert len(list((out / "cache").rglob("*_image.npy"))) == 2      # one scene folder shared by all models


def rows_for(model: str, fp32: float, bf16: float, share: float) -> list[dict]:
    return [{"model": model, "precision": p, "memory": m, "images_per_s": speed * (1.1 if m == "channels_last" else 1),
             "data_share": share} for p, speed in (("fp32", fp32), ("bf16", bf16))
            for m in ("contiguous", "channels_last")]


@pytest.mark.parametrize("flags, bf16_met", [
    ({"avx512_bf16", "amx_bf16"}, False),       # 1.5x: enough for AVX512-BF16, not for AMX
    ({"avx512_bf16"}, True),
    ({"avx2"}, None),                           # no native bf16: no target to judge
])
def test_verdicts_judge_the_paper_models_by_the_cpu_kind(flags, bf16_met):
    bench = load_bench()
    rows = rows_for("panonet-paper", 2.0, 3.0, 0.05) + rows_for("ciae-paper", 1.0, 1.6, 0.10) \
        + rows_for("panonet-demo", 10.0, 5.0, 0.14)      # the demo model's ratio is not judged
    v = bench.verdicts(rows, frozenset(flags))
    assert v["bf16_met"] is bf16_met
    assert v["ratios"]["ciae-paper"]["best"] == pytest.approx(1.6)
    assert v["data_met"] is True
    v = bench.verdicts(rows + rows_for("ciae-demo", 4.0, 4.0, 0.16), frozenset(flags))
    assert v["data_met"] is False and v["data_shares"]["ciae-demo"] == pytest.approx(0.16)
