"""Rasterising SynthStreet: materials, layers (material + label maps) and sprites.

Everything is drawn twice at once with OpenCV polygon fills: a *material* index (what the
pixel looks like) and a *label* (panoptic id for the background, part index for a
sprite). Only afterwards does :func:`shade` turn materials into colours in a few
vectorised passes (look-up tables over the material map plus noise fields), so details
such as windows or lane markings cost one polygon fill and never touch the labels.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import cv2
import numpy as np

from panoptic_ros.synthstreet.noise import NUM_FIELDS, noise_crop

_SHIFT = 4                      # fixed-point bits for sub-pixel polygon vertices
_SCALE = float(1 << _SHIFT)
MAX_MATERIALS = 256


class MaterialTable:
    """Up to 255 materials (index 0 is "nothing"): base colour, noise and gradient.

    A pixel of material m gets ``colour[m] * (1 + sum_k amp[k, m] * noise_k + grad[m] *
    ramp)``: noise and the gradient modulate brightness, relative to the colour, where
    ramp runs from -0.5 (top) to +0.5 (bottom) of the drawn area. :meth:`add` takes
    amplitudes in 0..255 intensity units (the mean of an RGB triple is used) and the
    scene's light gain is folded into the colours, so shading is a handful of look-ups.

    Args:
        light: (3,) RGB gain of the scene (exposure and white balance).
    """

    def __init__(self, light=(1.0, 1.0, 1.0)) -> None:
        self.light = np.asarray(light, np.float32)
        self._light = [float(v) for v in self.light]
        self.colour = np.zeros((3, MAX_MATERIALS), np.uint8)     # channel-major for cv2.LUT
        self.amp = np.zeros((NUM_FIELDS, MAX_MATERIALS), np.float32)
        self.grad = np.zeros(MAX_MATERIALS, np.float32)
        self.count = 1

    def add(self, colour, fine=0.0, mid=0.0, coarse=0.0, grad=0.0) -> int:
        """Register a material; each of fine/mid/coarse/grad is a scalar or an RGB triple."""
        if self.count >= MAX_MATERIALS:
            raise RuntimeError("SynthStreet scene uses more than 255 materials")
        m = self.count
        r, g, b = (float(v) for v in colour)
        for c, (v, gain) in enumerate(zip((r, g, b), self._light)):
            self.colour[c, m] = min(max(round(v * gain), 0), 255)
        brightness = max((r + g + b) / 3.0, 25.0)
        for k, a in enumerate((fine, mid, coarse)):
            self.amp[k, m] = _mean(a) / brightness
        self.grad[m] = _mean(grad) / brightness
        self.count += 1
        return m


_WORK = threading.local()
_POOLED_PIXELS = 1 << 17


def scratch(slot: int, shape: tuple[int, int], dtype) -> np.ndarray:
    """A reusable per-thread scratch array for image-sized temporaries.

    Fresh multi-megabyte arrays cost more in page faults than the arithmetic done on them,
    so shading a whole image reuses buffers; small sprites just allocate.
    """
    if shape[0] * shape[1] < _POOLED_PIXELS:
        return np.empty(shape, dtype)
    pool = getattr(_WORK, "pool", None)
    if pool is None or len(pool) > 32:
        pool = _WORK.pool = {}
    key = (slot, shape, np.dtype(dtype).str)
    if key not in pool:
        pool[key] = np.empty(shape, dtype)
    return pool[key]


def shade(mat: np.ndarray, table: MaterialTable, noise: np.ndarray, gain: np.ndarray | None = None) -> np.ndarray:
    """Colours of a material map.

    Args:
        mat: (H, W) uint8 material indices.
        table: the materials.
        noise: (NUM_FIELDS, H, W) float32 fields.
        gain: optional (H, W) float32 brightness factor (shadows).
    Returns:
        (H, W, 3) uint8 RGB (a new array).
    """
    h, w = mat.shape
    lum = scratch(0, (h, w), np.float32)
    term = scratch(1, (h, w), np.float32)
    lum.fill(1.0)
    for k in range(NUM_FIELDS):
        if table.amp[k, :table.count].any():
            cv2.LUT(mat, table.amp[k], dst=term)
            np.multiply(term, noise[k], out=term)
            lum += term
    if table.grad[:table.count].any():
        cv2.LUT(mat, table.grad, dst=term)
        term *= np.linspace(-0.5, 0.5, h, dtype=np.float32)[:, None]
        lum += term
    if gain is not None:
        lum *= gain
    np.maximum(lum, 0.0, out=lum)
    channel = scratch(2, (h, w), np.uint8)
    planes = []
    for c in range(3):
        cv2.LUT(mat, table.colour[c], dst=channel)
        planes.append(cv2.multiply(channel, lum, dtype=cv2.CV_8U, dst=scratch(3 + c, (h, w), np.uint8)))
    return cv2.merge(planes)


def _mean(value) -> float:
    if isinstance(value, (int, float)):
        return float(value)
    return float(sum(value)) / len(value)


def to_fixed(points) -> np.ndarray:
    """Float pixel coordinates (N, 2) as OpenCV fixed-point int32 vertices."""
    return np.round(np.asarray(points, np.float64) * _SCALE).astype(np.int32)


class Layer:
    """A material map and a label map of the same size, drawn together."""

    def __init__(self, height: int, width: int, label_dtype=np.uint8) -> None:
        self.mat = np.zeros((height, width), np.uint8)
        self.lab = np.zeros((height, width), label_dtype)

    @property
    def shape(self) -> tuple[int, int]:
        return self.mat.shape

    def polys(self, polygons, material: int, label: int | None = None) -> None:
        """Fill polygons: a list of (K, 2) float pixel arrays (x, y) or one (N, K, 2) array;
        ``label=None`` keeps the labels."""
        if isinstance(polygons, np.ndarray):
            if len(polygons) == 0:
                return
            pts = to_fixed(polygons)
        else:
            pts = [to_fixed(p) for p in polygons]
        cv2.fillPoly(self.mat, pts, int(material), cv2.LINE_8, _SHIFT)
        if label is not None:
            cv2.fillPoly(self.lab, pts, int(label), cv2.LINE_8, _SHIFT)

    def poly(self, polygon, material: int, label: int | None = None) -> None:
        self.polys([polygon], material, label)

    def ellipse(self, centre, axes, material: int, label: int | None = None, angle: float = 0.0,
                thickness: int = -1) -> None:
        """Filled (or outlined with ``thickness``) ellipse; centre/axes in float pixels."""
        c = tuple(int(round(v * _SCALE)) for v in centre)
        ax = tuple(max(int(round(v * _SCALE)), 1) for v in axes)
        cv2.ellipse(self.mat, c, ax, angle, 0, 360, int(material), thickness, cv2.LINE_8, _SHIFT)
        if label is not None:
            cv2.ellipse(self.lab, c, ax, angle, 0, 360, int(label), thickness, cv2.LINE_8, _SHIFT)

    def line(self, p0, p1, width: float, material: int, label: int | None = None) -> None:
        """A thick straight segment as a filled quadrilateral (width in pixels, >= 1)."""
        p0, p1 = np.asarray(p0, np.float64), np.asarray(p1, np.float64)
        d = p1 - p0
        n = np.array([-d[1], d[0]]) / (np.hypot(*d) + 1e-9) * max(width, 1.0) / 2
        self.poly(np.stack([p0 + n, p1 + n, p1 - n, p0 - n]), material, label)


@dataclass
class Sprite:
    """A small rendered object to paste: colours and part indices (0 = transparent).

    Attributes:
        image: (h, w, 3) uint8.
        parts: (h, w) uint8 part index per pixel, 0 where the sprite is empty.
        x0, y0: image position of the sprite's top-left pixel (may be negative).
    """

    image: np.ndarray
    parts: np.ndarray
    x0: int
    y0: int

    def moved(self, x0: int, y0: int) -> "Sprite":
        """The same rendering at another place (an identical-appearance twin)."""
        return Sprite(self.image, self.parts, x0, y0)


def render_sprite(layer: Layer, table: MaterialTable, bank: np.ndarray, offset, x0: int, y0: int) -> Sprite:
    """Shade a sprite layer (label = part index) into a :class:`Sprite` at (x0, y0)."""
    h, w = layer.shape
    return Sprite(shade(layer.mat, table, noise_crop(bank, h, w, offset)), layer.lab, x0, y0)


def paste(sprite: Sprite, image: np.ndarray, panoptic: np.ndarray, part_ids: np.ndarray) -> None:
    """Paste a sprite in place, clipped to the image.

    Args:
        image: (H, W, 3) uint8 scene colours.
        panoptic: (H, W) int32 scene ids.
        part_ids: (P,) int32 panoptic id of each part index (index 0 unused).
    """
    H, W = panoptic.shape
    h, w = sprite.parts.shape
    ya, xa = max(sprite.y0, 0), max(sprite.x0, 0)
    yb, xb = min(sprite.y0 + h, H), min(sprite.x0 + w, W)
    if ya >= yb or xa >= xb:
        return
    sy, sx = slice(ya - sprite.y0, yb - sprite.y0), slice(xa - sprite.x0, xb - sprite.x0)
    parts = np.ascontiguousarray(sprite.parts[sy, sx])
    lut = np.zeros(256, np.int32)
    lut[:len(part_ids)] = part_ids
    on = (parts > 0).view(np.uint8)
    cv2.copyTo(np.ascontiguousarray(sprite.image[sy, sx]), on, image[ya:yb, xa:xb])
    cv2.copyTo(cv2.LUT(parts, lut), on, panoptic[ya:yb, xa:xb])


@dataclass(frozen=True)
class Frame:
    """Where an object goes: its scale and image position, and what of it will be seen.

    Attributes:
        scale: pixels per metre (horizontal, vertical) at the object's depth.
        x, y: image pixel of the object's local origin (ground point below its centre).
        width, height: image size; drawing is clipped to it (rows always, columns unless
            ``clip_columns`` is False, as for twins pasted elsewhere too).
    """

    scale: tuple[float, float]
    x: float
    y: float
    width: int
    height: int
    clip_columns: bool = True


class Pen:
    """Draws an object in its own metric frame into a sprite-sized :class:`Layer`.

    Local coordinates: u metres to the right, v metres up, origin on the ground below the
    object's centre; ``half_width`` (or ``u_range``, for lopsided objects) and ``height``
    bound what will be drawn. The layer
    covers only the part of that box inside the image (see :class:`Frame`), so objects
    close to the camera cost no more than the pixels they cover.
    """

    def __init__(self, half_width: float, height: float, frame: Frame,
                 u_range: tuple[float, float] | None = None) -> None:
        self.sx, self.sy = frame.scale
        pad = 2
        u0, u1 = u_range if u_range is not None else (-half_width, half_width)
        x0 = int(np.floor(frame.x + u0 * self.sx)) - pad
        x1 = int(np.ceil(frame.x + u1 * self.sx)) + pad
        y0, y1 = int(np.floor(frame.y - height * self.sy)) - pad, int(np.ceil(frame.y)) + pad
        y0, y1 = max(y0, 0), min(y1, frame.height)
        if frame.clip_columns:
            x0, x1 = max(x0, 0), min(x1, frame.width)
        self.x0, self.y0 = x0, y0
        self.layer = Layer(max(y1 - y0, 1), max(x1 - x0, 1))
        self.anchor = (frame.x - x0, frame.y - y0)      # sprite pixel of the local origin
        self._gain = np.array([self.sx, -self.sy])
        self._offset = np.array(self.anchor)

    def px(self, points) -> np.ndarray:
        """(N, 2) local metres -> (N, 2) sprite pixels."""
        return np.asarray(points, np.float64).reshape(-1, 2) * self._gain + self._offset

    def poly(self, points, material: int, part: int | None = None) -> None:
        self.layer.poly(self.px(points), material, part)

    def rect(self, u0: float, u1: float, v0: float, v1: float, material: int, part: int | None = None) -> None:
        self.poly([(u0, v0), (u1, v0), (u1, v1), (u0, v1)], material, part)

    def ellipse(self, centre, radii, material: int, part: int | None = None, thickness: float = 0.0) -> None:
        """Filled ellipse, or a ring of ``thickness`` metres (at least one pixel)."""
        c = self.px([centre])[0]
        t = -1 if thickness <= 0 else max(int(round(thickness * self.sy)), 1)
        self.layer.ellipse(c, (radii[0] * self.sx, radii[1] * self.sy), material, part, thickness=t)

    def line(self, p0, p1, width: float, material: int, part: int | None = None) -> None:
        """A bar ``width`` metres thick (at least one pixel)."""
        a, b = self.px([p0, p1])
        self.layer.line(a, b, width * self.sy, material, part)
