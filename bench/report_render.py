"""Render a replay report (``report.html``) in a real headless browser and save a screenshot.

A local verification tool, not a test dependency: it needs Chromium (Debian:
``apt-get install -y chromium``). The page must be self-contained, so the browser runs with
networking features off; the script also checks the HTML for external references (``http``
URLs in ``src``/``href``, ``@import``, ``url(`` to non-data URIs) and prints the page size.

Usage:
    .venv/bin/python bench/report_render.py out/demo/panonet/report.html [--png shot.png]
    .venv/bin/python bench/report_render.py          # what `make bench` runs

Without a report it builds one first (``out/bench/report_render/``, replaced on each run):
a few SynthStreet frames written as a bag, replayed offline through the shipped PanoNet
weights on the CPU. There, a machine without Chromium gets the page checks and a note that
the screenshot was skipped (exit 0); with a report given, a missing Chromium is an error.
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["'](?!data:|#)[^"']+|@import|url\((?!\s*["']?data:)""", re.I)


DEFAULT_FOLDER = Path(__file__).resolve().parents[1] / "out" / "bench" / "report_render"
NO_BROWSER = "no Chromium found; install it with: apt-get install -y chromium"


def find_browser() -> str | None:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def build_report(folder: Path, *, frames: int = 4, size: tuple[int, int] = (256, 512)) -> Path:
    """Replay ``frames`` SynthStreet scenes (seed 1000, ``size`` H x W) offline with the
    shipped PanoNet weights into ``folder/replay``; returns its ``report.html``."""
    from panoptic_ros.replay.run import ReplayOptions, replay
    from panoptic_ros.synthstreet.bag import write_bag
    from panoptic_ros.synthstreet.scene import generate_scene

    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    write_bag(folder / "bag", (generate_scene(1000, i, height=size[0], width=size[1]) for i in range(frames)))
    start = time.perf_counter()
    replay(ReplayOptions(bag=folder / "bag", mode="offline", model="panonet", out=folder / "replay", device="cpu",
                         progress=False))
    print(f"built:           {frames} frames {size[0]}x{size[1]} replayed offline (PanoNet, CPU) "
          f"in {time.perf_counter() - start:.1f} s")
    return folder / "replay" / "report.html"


def screenshot(html: Path, png: Path, *, width: int = 1400, height: int = 2400, timeout: float = 120.0) -> float:
    """Screenshot ``html`` into ``png`` with headless Chromium; returns the seconds it took."""
    browser = find_browser()
    if browser is None:
        raise SystemExit(NO_BROWSER)
    png.parent.mkdir(parents=True, exist_ok=True)
    png.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="report_render_profile_") as profile:
        command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                   "--disable-background-networking", "--disable-component-update", "--disable-sync",
                   f"--user-data-dir={profile}", f"--screenshot={png.resolve()}", f"--window-size={width},{height}",
                   html.resolve().as_uri()]
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        elapsed = time.perf_counter() - start
    if done.returncode != 0 or not png.is_file():
        raise SystemExit(f"{browser} failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("html", type=Path, nargs="?",
                   help=f"report.html to render (default: build one in {DEFAULT_FOLDER})")
    p.add_argument("--png", type=Path, help="screenshot path (default: beside the report, report.png)")
    p.add_argument("--width", type=int, default=1400)
    p.add_argument("--height", type=int, default=2400)
    args = p.parse_args(argv)
    html = args.html or build_report(DEFAULT_FOLDER)
    if not html.is_file():
        raise SystemExit(f"{html}: no such report")
    text = html.read_text()
    external = EXTERNAL.findall(text)
    print(f"report:          {html} ({len(text.encode()) / 1024:.0f} KiB, {text.count('<svg')} SVG charts, "
          f"{text.count('data:image/')} embedded pictures)")
    print(f"external refs:   {len(external)}{' ' + str(external[:3]) if external else ''}")
    if args.html is None and find_browser() is None:
        print(f"screenshot:      skipped ({NO_BROWSER})")
        return 1 if external else 0
    png = args.png or html.with_suffix(".png")
    seconds = screenshot(html, png, width=args.width, height=args.height)
    import cv2  # only to read the screenshot's size back

    shot = cv2.imread(str(png))
    print(f"screenshot:      {png} ({shot.shape[1]}x{shot.shape[0]}), rendered in {seconds:.1f} s")
    return 1 if external else 0


if __name__ == "__main__":
    sys.exit(main())
