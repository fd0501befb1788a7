"""``panoptic-export --int8``: a QDQ int8 graph calibrated on SynthStreet frames."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from panoptic_ros.training import export as export_cli
from panoptic_ros.tiny_models import write_tiny_checkpoint


def test_export_int8_writes_a_quantized_graph_that_runs(tmp_path, capsys):
    checkpoint = write_tiny_checkpoint(tmp_path, "ciae", input_size=(64, 128))
    out = tmp_path / "int8" / "ciae.onnx"
    code = export_cli.main(["--checkpoint", str(checkpoint), "--out", str(out), "--int8", "--calibration", "2"])
    printed = capsys.readouterr().out
    assert code == 0 and "int8, 2 calibration frames (percentile)" in printed and "max |torch - onnxruntime|" in printed
    ops = {node.op_type for node in onnx.load(str(out)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert list(out.parent.iterdir()) == [out]           # the float graph went to a temporary folder
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {"images": np.zeros((1, 3, 64, 128), np.float32)})
    assert all(np.isfinite(o).all() for o in outputs if np.issubdtype(o.dtype, np.floating))


@pytest.mark.parametrize("argv, message", [(["--calibration", "0"], "calibration_frames: must be >= 1"),
                                          (["--calibration-method", "mse"], "invalid choice")])
def test_export_int8_bad_settings_are_refused(tmp_path, capsys, argv, message):
    checkpoint = write_tiny_checkpoint(tmp_path, "ciae", input_size=(64, 128))
    try:
        code = export_cli.main(["--checkpoint", str(checkpoint), "--out", str(tmp_path / "m.onnx"), "--int8", *argv])
    except SystemExit as exit_:   # argparse refuses an unknown choice itself
        code = exit_.code
    assert code == 2 and message in capsys.readouterr().err
