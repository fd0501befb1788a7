"""Every GPU figure and check of the project in one process (issue 20), JSON after each section.

Runs on a bare GPU machine (its own torch + CUDA, onnxruntime, onnx; no ROS, no pyspng,
not this project's venv: the repository root goes on ``sys.path`` and ``rclpy`` and
``pyspng`` are blocked, so an import of either fails here as it would there).

Sections, each capped at ``--section-cap`` seconds (a section that runs over is cut and
recorded as such; the JSON is rewritten after every section, so a timeout still leaves
figures):

1. ``environment``: versions, device, ONNX Runtime providers.
2. ``gpu_tests``: the ``gpu``-marked pytest tests (subprocess; skipped with ``--quick``).
3. ``latency``: PanoNet (shipped weights; paper size) and CIAE (paper size): stage
   p50/p90 (upload, model, post-processing incl. the copy back, end to end) in fp32,
   fp16 and bf16 autocast (weights cast once), channels_last and compiled; CUDA events on a GPU, ``perf_counter`` on the CPU.
4. ``fp16_agreement``: fp16 vs fp32 panoptic maps (pixel agreement) on a GPU.
5. ``postprocess``: PanoNet post-processing per frame (ms) and its host reads / torch
   calls per frame, on the device.
6. ``training``: training steps (forward + backward of the summed outputs, not the
   training losses) in fp32, bf16 and fp16 autocast for both models: ms and peak memory.
7. ``ddp``: one-rank DistributedDataParallel with SyncBatchNorm (NCCL on a GPU, gloo on
   the CPU): one step runs and its gradients equal the plain model's.
8. ``onnx``: ONNX export parity (torch vs ONNX Runtime) of both models.

    python bench/gpu_suite.py [--device cuda] [--out gpu_suite.json] [--quick]
    python bench/gpu_suite.py --device cpu --quick      # tiny sizes: what make test runs

Targets on an H100/H200: PanoNet 2048x1024 end to end <= 4 ms p50 in fp16; CIAE 800x1333
<= 10 ms; mean-shift < 1 ms per frame; PanoNet inference peak memory <= 1 GB.
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
for _blocked in ("rclpy", "pyspng"):     # absent on the GPU machine: prove nothing needs them
    sys.modules.setdefault(_blocked, None)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from panoptic_ros.checkpoint import load_checkpoint  # noqa: E402
from panoptic_ros.inference.backends import TorchBackend, upload_image  # noqa: E402
from panoptic_ros.inference.export import export_onnx, onnx_parity  # noqa: E402
from panoptic_ros.kinds import build_model, model_config_from_dict, model_kind  # noqa: E402
from panoptic_ros.labels import get_label_space  # noqa: E402
from panoptic_ros.models.ciae import CIAEConfig  # noqa: E402
from panoptic_ros.models.panonet import PanoNetConfig  # noqa: E402
from panoptic_ros.resources import default_weights  # noqa: E402
from panoptic_ros.sync_count import count_torch  # noqa: E402
from panoptic_ros.synthstreet.scene import generate_scene  # noqa: E402
from panoptic_ros.tiny_models import tiny_model_section  # noqa: E402


class SectionTimeout(Exception):
    """A section ran past its cap."""


class Clock:
    """Stage timer: CUDA events on a GPU (no sync inside the timed code), else perf_counter."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def mark(self):
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def between(self, start, end) -> float:
        if self.cuda:
            end.synchronize()
            return start.elapsed_time(end)
        return (end - start) * 1e3


def percentiles(values: list[float]) -> dict[str, float]:
    return {"p50": float(np.percentile(values, 50)), "p90": float(np.percentile(values, 90)), "n": len(values)}


_MODELS: dict[bool, dict] = {}


def models(args) -> dict[str, tuple[torch.nn.Module, tuple[int, int], dict]]:
    """name -> (model, (H, W), post-processing settings); built once per process."""
    if args.quick not in _MODELS:
        _MODELS[args.quick] = _build_models(args)
    return _MODELS[args.quick]


def _build_models(args) -> dict[str, tuple[torch.nn.Module, tuple[int, int], dict]]:
    shipped = load_checkpoint(default_weights("panonet"))
    if args.quick:
        size, ciae_size = (64, 128), (64, 128)
        paper = model_config_from_dict(tiny_model_section("panonet", size))
        ciae = model_config_from_dict(tiny_model_section("ciae", ciae_size))
    else:
        size, ciae_size = (1024, 2048), (800, 1333)
        paper, ciae = PanoNetConfig(input_size=size), CIAEConfig(label_space="coco", depth=50, input_size=ciae_size)
    torch.manual_seed(0)
    return {"panonet_shipped": (shipped.model, size, shipped.postprocess),
            "panonet_paper": (build_model(paper).eval(), size, shipped.postprocess),
            "ciae_paper": (build_model(ciae).eval(), ciae_size, {})}


def frame(size: tuple[int, int]) -> np.ndarray:
    return generate_scene(1000, 0, height=size[0], width=size[1]).image


def run_stages(backend: TorchBackend, post, image: np.ndarray, clock: Clock, repeat: int) -> dict:
    """Stage times of ``repeat`` frames (after two warm-up frames)."""
    times: dict[str, list[float]] = {k: [] for k in ("upload", "model", "postprocess", "end_to_end")}
    staging: dict = {}
    for i in range(repeat + 2):
        t0 = clock.mark()
        x = upload_image(image, backend.device, staging).permute(2, 0, 1).unsqueeze(0).float()
        t1 = clock.mark()
        outputs = backend.run_tensor(x)
        t2 = clock.mark()
        post(outputs)
        t3 = clock.mark()
        if i >= 2:
            for key, (a, b) in zip(times, ((t0, t1), (t1, t2), (t2, t3), (t0, t3))):
                times[key].append(clock.between(a, b))
    return {k: percentiles(v) for k, v in times.items()}


def section_environment(args, device, report):
    import onnxruntime

    report.update(python=platform.python_version(), torch=torch.__version__, cuda=torch.version.cuda,
                  device=torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
                  onnxruntime=onnxruntime.__version__, providers=onnxruntime.get_available_providers(),
                  rclpy_blocked=sys.modules.get("rclpy", 0) is None, pyspng_blocked=sys.modules.get("pyspng", 0) is None)


def section_gpu_tests(args, device, report):
    if args.quick or device.type != "cuda":
        report["skipped"] = "needs CUDA and a full run"
        return
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", str(ROOT / "test")],
                          cwd=ROOT, capture_output=True, text=True, timeout=args.section_cap)
    report.update(returncode=done.returncode, tail=done.stdout[-2000:])


def section_latency(args, device, report):
    clock = Clock(device)
    variants = [("fp32", {})] + ([] if args.quick else [("channels_last", {"channels_last": True})])
    if device.type == "cuda":
        variants += [("fp16", {"precision": "fp16"}), ("bf16", {"precision": "bf16"}),
                     ("fp16_channels_last", {"precision": "fp16", "channels_last": True})]
    for name, (model, size, settings) in models(args).items():
        kind = model_kind(model.config.kind)
        post_cls, post_fn = kind.postprocess_config, kind.postprocess
        space = get_label_space(model.config.label_space)
        config = post_cls(**settings)
        image = frame(size)
        compiled = [("compiled", {"compile": "eager" if args.quick else True})]
        for variant, options in variants + (compiled if name == "panonet_paper" or not args.quick else []):
            torch._dynamo.reset()
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            backend = TorchBackend(model, device=device, **options)
            stages = run_stages(backend, lambda o: post_fn(o, config=config, label_space=space), image, clock,
                                args.repeat)
            if device.type == "cuda":
                stages["peak_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2 ** 20
            report.setdefault(name, {})[variant] = stages
            model.to("cpu", torch.float32)


def section_fp16_agreement(args, device, report):
    if device.type != "cuda":
        report["skipped"] = "fp16 needs CUDA"
        return
    for name, (model, size, settings) in models(args).items():
        kind = model_kind(model.config.kind)
        post_cls, post_fn = kind.postprocess_config, kind.postprocess
        space = get_label_space(model.config.label_space)
        image = frame(size)
        maps = {}
        for precision in ("fp32", "fp16"):
            outputs = TorchBackend(model, device=device, precision=precision)(image)
            maps[precision] = post_fn(outputs, config=post_cls(**settings), label_space=space).panoptic
            model.to("cpu", torch.float32)
        report[name] = {"same_class": float(np.mean(maps["fp32"] // 1000 == maps["fp16"] // 1000)),
                        "same_id": float(np.mean(maps["fp32"] == maps["fp16"]))}


def section_postprocess(args, device, report):
    model, size, settings = models(args)["panonet_shipped"]
    post_fn = model_kind(model.config.kind).postprocess
    config = model_kind(model.config.kind).postprocess_config(**settings)
    space = get_label_space(model.config.label_space)
    backend = TorchBackend(model, device=device)
    clock, frames = Clock(device), []
    for index in range(args.frames):
        outputs = backend(generate_scene(1000, index, height=size[0], width=size[1]).image)
        post_fn(outputs, config=config, label_space=space)
        start = clock.mark()
        post_fn(outputs, config=config, label_space=space)
        elapsed = clock.between(start, clock.mark())
        with count_torch() as counts:
            post_fn(outputs, config=config, label_space=space)
        frames.append({"ms": elapsed, "host_reads": counts.host_reads, "torch_calls": counts.calls})
    report.update(frames=frames, ms=percentiles([f["ms"] for f in frames]),
                  max_host_reads=max(f["host_reads"] for f in frames),
                  max_torch_calls=max(f["torch_calls"] for f in frames))
    model.to("cpu")


def _step(model: torch.nn.Module, x: torch.Tensor, dtype: torch.dtype | None) -> None:
    with torch.autocast(x.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        outputs = model(x)
    loss = sum(v.float().mean() for v in _floats(outputs))
    loss.backward()


def _floats(outputs) -> list[torch.Tensor]:
    values = outputs.values() if isinstance(outputs, dict) else outputs
    found = []
    for v in values:
        if isinstance(v, torch.Tensor) and v.is_floating_point():
            found.append(v)
        elif isinstance(v, (dict, list, tuple)):
            found += _floats(v)
    return found


def section_training(args, device, report):
    clock = Clock(device)
    dtypes = {"fp32": None, "bf16": torch.bfloat16}
    if device.type == "cuda":
        dtypes["fp16"] = torch.float16
    for name, (model, size, _) in models(args).items():
        if name == "panonet_shipped":
            continue
        model = model.to(device).train()
        x = torch.rand(1 if args.quick else 2, 3, *size, device=device) * 255
        for label, dtype in dtypes.items():
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            times = []
            warm_up = 0 if args.quick else 1
            for i in range(args.repeat + warm_up):
                start = clock.mark()
                _step(model, x, dtype)
                model.zero_grad(set_to_none=True)
                if i >= warm_up:
                    times.append(clock.between(start, clock.mark()))
            entry = {"ms": percentiles(times)}
            if device.type == "cuda":
                entry["peak_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2 ** 20
            report.setdefault(name, {})[label] = entry
        model.to("cpu").eval()


def section_ddp(args, device, report):
    import torch.distributed as dist

    backend = "nccl" if device.type == "cuda" else "gloo"
    # A file store, not a fixed TCP port: a port another process holds would hang the
    # rendezvous inside C++, where the section's alarm cannot cut it.
    store = Path(tempfile.mkdtemp(prefix="gpu_suite_ddp_")) / "store"
    dist.init_process_group(backend, init_method=f"file://{store}", rank=0, world_size=1)
    try:
        model, size, _ = models(args)["panonet_paper"]
        torch.manual_seed(0)
        x = torch.rand(2, 3, *size, device=device) * 255
        plain = model.to(device).train()
        _step(plain, x, None)
        expected = [p.grad.detach().clone() for p in plain.parameters() if p.grad is not None]
        plain.zero_grad(set_to_none=True)
        # SyncBatchNorm needs CUDA modules; on the CPU (gloo) plain BatchNorm stands in.
        synced = torch.nn.SyncBatchNorm.convert_sync_batchnorm(plain) if device.type == "cuda" else plain
        wrapped = torch.nn.parallel.DistributedDataParallel(
            synced, device_ids=[device.index or 0] if device.type == "cuda" else None,
            find_unused_parameters=True, gradient_as_bucket_view=True)
        _step(wrapped, x, None)
        got = [p.grad for p in synced.parameters() if p.grad is not None]
        report.update(backend=backend, sync_batchnorm=device.type == "cuda", parameters=len(got),
                      max_grad_difference=max(float((a - b).abs().max()) for a, b in zip(got, expected)))
    finally:
        dist.destroy_process_group()
        shutil.rmtree(store.parent, ignore_errors=True)


def section_onnx(args, device, report, tmp: Path):
    for name, (model, size, _) in models(args).items():
        if name == ("ciae_paper" if args.quick else "panonet_paper"):
            continue   # quick: one tiny model of each graph type is enough to keep the path working
        path = export_onnx(model.to("cpu", torch.float32), tmp / f"{name}.onnx", input_size=size)
        image = torch.from_numpy(frame(size)).permute(2, 0, 1)[None].float()
        report[name] = onnx_parity(model, path, image)


SECTIONS = [("environment", section_environment), ("gpu_tests", section_gpu_tests), ("latency", section_latency),
            ("fp16_agreement", section_fp16_agreement), ("postprocess", section_postprocess),
            ("training", section_training), ("ddp", section_ddp), ("onnx", section_onnx)]


def _on_alarm(signum, frame):
    raise SectionTimeout()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=Path("gpu_suite.json"))
    parser.add_argument("--quick", action="store_true", help="tiny sizes, few repeats (CPU smoke run)")
    parser.add_argument("--section-cap", type=int, default=None, help="seconds per section (default 60, 20 quick)")
    parser.add_argument("--only", nargs="*", help="run only these sections")
    args = parser.parse_args(argv)
    args.section_cap = args.section_cap or (20 if args.quick else 60)
    args.repeat, args.frames = (1, 1) if args.quick else (20, 10)
    device = torch.device(args.device)
    results: dict = {"device": str(device), "quick": args.quick, "sections": {}}
    signal.signal(signal.SIGALRM, _on_alarm)
    tmp = args.out.parent / (args.out.stem + "_files")
    tmp.mkdir(parents=True, exist_ok=True)
    for name, section in SECTIONS:
        if args.only and name not in args.only:
            continue
        report: dict = {}
        start = time.perf_counter()
        signal.alarm(args.section_cap)
        try:
            section(args, device, report, tmp) if name == "onnx" else section(args, device, report)
            report["status"] = "ok"
        except SectionTimeout:
            report["status"] = f"cut after {args.section_cap} s"
        except Exception as exc:  # a failing section is recorded; the others still run
            cut = isinstance(exc.__cause__ or exc.__context__, SectionTimeout) or "SectionTimeout" in str(exc)
            report["status"] = f"cut after {args.section_cap} s" if cut else f"error: {type(exc).__name__}: {exc}"
        finally:
            signal.alarm(0)
        report["seconds"] = round(time.perf_counter() - start, 2)
        results["sections"][name] = report
        args.out.write_text(json.dumps(results, indent=1, default=str))
        print(f"{name}: {report['status']} ({report['seconds']} s)", flush=True)
    failed = [n for n, r in results["sections"].items() if not r["status"].startswith("ok")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
