"""Vehicle silhouettes for SynthStreet: cars, trucks, buses and trams, seen from behind or
ahead (``view="rear"``/``"front"``) or from the side (``view="side"``, crossing traffic).

Every maker draws into a :class:`Pen` in metres (body, windows, lights, wheels) and returns
a :class:`Model`; part 1 is the vehicle. Materials shared by many objects of a scene
(tyres, glass, lamps) come from :class:`Common` so a scene stays under 255 materials.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from panoptic_ros.synthstreet import palette as pal
from panoptic_ros.synthstreet.render import MaterialTable, Pen

CAR, TRUCK, BUS, TRAIN = 26, 27, 28, 31

_COMMON = {
    "tyre": ((28, 28, 30), dict(fine=5, mid=3)),
    "rim": ((150, 150, 155), dict(fine=6)),
    "glass": ((45, 55, 65), dict(fine=4, coarse=14, grad=-25)),
    "tail": ((190, 25, 25), dict(fine=6)),
    "head": ((235, 230, 200), dict(fine=5)),
    "plate": ((225, 225, 225), dict(fine=6)),
    "dark": ((35, 35, 38), dict(fine=6, mid=3)),
    "steel": ((120, 122, 128), dict(fine=6, grad=-20)),
    "pole": ((110, 112, 115), dict(fine=5, grad=-15)),
    "box": ((30, 30, 30), dict(fine=4)),
    "red": ((220, 30, 30), dict(fine=5)),
    "amber": ((240, 170, 30), dict(fine=5)),
    "green": ((40, 200, 90), dict(fine=5)),
    "unlit": ((50, 50, 45), dict(fine=4)),
    "white": ((230, 230, 230), dict(fine=5)),
    "sign_blue": ((30, 70, 160), dict(fine=5)),
    "sign_red": ((200, 30, 35), dict(fine=5)),
    "sign_yellow": ((235, 190, 40), dict(fine=5)),
    "sign_back": ((140, 140, 145), dict(fine=5)),
}


class Common:
    """Lazily registered materials shared by all objects of one scene."""

    def __init__(self, table: MaterialTable, rng: np.random.Generator) -> None:
        self.table, self.rng, self._made = table, rng, {}

    def __getitem__(self, name: str) -> int:
        if name not in self._made:
            colour, kw = _COMMON[name]
            colour = np.clip(np.asarray(colour, np.float32) + self.rng.normal(0, 6, 3), 0, 255)
            self._made[name] = self.table.add(colour, **kw)
        return self._made[name]


@dataclass
class Model:
    """A drawn object: its pen (layer of materials and part indices) and part categories.

    Attributes:
        pen: the sprite drawing (part k > 0 belongs to ``categories[k - 1]``).
        categories: Cityscapes label id of each part; 0 marks a VOID part.
        half_width: half the object's width in metres (for placement and overlap tests).
    """

    pen: Pen
    categories: tuple[int, ...]
    half_width: float


def paint(table: MaterialTable, rng, choices=pal.CAR_PAINTS) -> int:
    """A body colour with a glossy top-to-bottom gradient."""
    return table.add(pal.pick(rng, choices, 14), fine=3, mid=3, coarse=6, grad=-rng.uniform(10, 40))


def _wheel(pen: Pen, u: float, r: float, c: Common, part: int) -> None:
    pen.ellipse((u, r), (r, r), c["tyre"], part)
    pen.ellipse((u, r), (r * 0.55, r * 0.55), c["rim"], part)


def car(rng, table: MaterialTable, c: Common, frame, view: str) -> Model:
    """A passenger car, about 1.8 m wide and 4.3 m long."""
    w, h = rng.uniform(1.65, 1.9), rng.uniform(1.35, 1.65)
    body = paint(table, rng)
    if view == "side":
        length = rng.uniform(3.9, 4.7)
        pen = Pen(length / 2 + 0.1, h + 0.1, frame)
        s = 1 if rng.random() < 0.5 else -1     # driving direction
        L = length / 2
        prof = [(-L, 0.25), (-L, 0.62 * h), (-0.55 * L, 0.66 * h), (-0.35 * L, h), (0.35 * L, h),
                (0.55 * L, 0.62 * h), (L, 0.55 * h), (L, 0.25)]
        pen.poly([(s * u, v) for u, v in prof], body, 1)
        for a, b in ((-0.5, -0.05), (0.0, 0.48)):
            win = [(a * L, 0.64 * h), (b * L, 0.64 * h), (b * L, 0.95 * h), (a * L, 0.95 * h)]
            pen.poly([(s * u, v) for u, v in win], c["glass"], 1)
        pen.rect(-L, L, 0.22, 0.3, c["dark"], 1)
        for u in (-0.65 * L, 0.62 * L):
            _wheel(pen, s * u, 0.33, c, 1)
        return Model(pen, (CAR,), L)
    pen = Pen(w / 2 + 0.05, h + 0.05, frame)
    hw = w / 2
    pen.rect(-hw + 0.05, -hw + 0.3, 0.0, 0.35, c["tyre"], 1)
    pen.rect(hw - 0.3, hw - 0.05, 0.0, 0.35, c["tyre"], 1)
    pen.poly([(-hw, 0.15), (hw, 0.15), (hw, 0.55 * h), (hw - 0.1, 0.62 * h), (-hw + 0.1, 0.62 * h),
              (-hw, 0.55 * h)], body, 1)
    pen.poly([(-0.92 * hw, 0.6 * h), (0.92 * hw, 0.6 * h), (0.72 * hw, h), (-0.72 * hw, h)], body, 1)
    pen.poly([(-0.8 * hw, 0.65 * h), (0.8 * hw, 0.65 * h), (0.66 * hw, 0.94 * h), (-0.66 * hw, 0.94 * h)],
             c["glass"], 1)
    lamp = c["tail"] if view == "rear" else c["head"]
    for u in (-hw + 0.05, hw - 0.35):
        pen.rect(u, u + 0.3, 0.42 * h, 0.52 * h, lamp, 1)
    pen.rect(-0.26, 0.26, 0.22 * h, 0.32 * h, c["plate"], 1)
    pen.rect(-hw, hw, 0.12, 0.2, c["dark"], 1)
    return Model(pen, (CAR,), hw)


def truck(rng, table: MaterialTable, c: Common, frame, view: str) -> Model:
    """A lorry: cab plus cargo box."""
    h = rng.uniform(3.0, 3.8)
    cab, cargo = paint(table, rng), paint(table, rng, pal.FACADES)
    if view == "side":
        length = rng.uniform(6.5, 9.0)
        L, s = length / 2, (1 if rng.random() < 0.5 else -1)
        pen = Pen(L + 0.1, h + 0.1, frame)
        pen.poly([(s * u, v) for u, v in [(-L, 0.5), (L - 2.3, 0.5), (L - 2.3, h), (-L, h)]], cargo, 1)
        pen.poly([(s * u, v) for u, v in [(L - 2.2, 0.5), (L, 0.5), (L, 0.55 * h), (L - 0.5, 0.85 * h),
                                          (L - 2.2, 0.85 * h)]], cab, 1)
        pen.poly([(s * u, v) for u, v in [(L - 1.3, 0.5 * h), (L - 0.25, 0.5 * h), (L - 0.6, 0.78 * h),
                                          (L - 1.3, 0.78 * h)]], c["glass"], 1)
        pen.rect(-L, L, 0.35, 0.55, c["dark"], 1)
        for u in (-L + 1.0, -L + 2.1, L - 1.2):
            _wheel(pen, s * u, 0.5, c, 1)
        return Model(pen, (TRUCK,), L)
    w = rng.uniform(2.3, 2.55)
    hw = w / 2
    pen = Pen(hw + 0.05, h + 0.05, frame)
    for u in (-hw + 0.05, hw - 0.5):
        pen.rect(u, u + 0.45, 0.0, 0.55, c["tyre"], 1)
    if view == "rear":
        pen.rect(-hw, hw, 0.45, h, cargo, 1)
        ribs = [(u, u + 0.04) for u in np.linspace(-hw + 0.1, hw - 0.1, 7)]
        for a, b in ribs:
            pen.rect(a, b, 0.6, h - 0.1, c["dark"], 1)
        for u in (-hw + 0.1, hw - 0.35):
            pen.rect(u, u + 0.25, 0.5, 0.7, c["tail"], 1)
    else:
        pen.rect(-hw, hw, 0.45, 0.8 * h, cab, 1)
        pen.rect(-hw + 0.1, hw - 0.1, 0.8 * h, h, cargo, 1)
        pen.rect(-hw + 0.15, hw - 0.15, 0.52 * h, 0.76 * h, c["glass"], 1)
        for u in (-hw + 0.1, hw - 0.4):
            pen.rect(u, u + 0.3, 0.55, 0.75, c["head"], 1)
    return Model(pen, (TRUCK,), hw)


def bus(rng, table: MaterialTable, c: Common, frame, view: str) -> Model:
    """A city bus: long box with a band of windows."""
    h = rng.uniform(2.9, 3.3)
    body = paint(table, rng, ((230, 200, 40), (220, 220, 215), (170, 30, 30), (40, 90, 160), (60, 130, 80)))
    if view == "side":
        L = rng.uniform(9.0, 12.0) / 2
        pen = Pen(L + 0.1, h + 0.1, frame)
        pen.rect(-L, L, 0.3, h, body, 1)
        pen.rect(-L + 0.3, L - 0.3, 0.45 * h, 0.88 * h, c["glass"], 1)
        for u in np.arange(-L + 1.8, L - 0.6, rng.uniform(1.4, 2.0)):
            pen.rect(u, u + 0.12, 0.45 * h, 0.88 * h, body, 1)
        for u in (-L + 2.5, 1.0):
            pen.rect(u, u + 1.1, 0.35, 0.88 * h, c["glass"], 1)
        for u in (-L + 1.7, L - 2.5):
            _wheel(pen, u, 0.5, c, 1)
        return Model(pen, (BUS,), L)
    hw = rng.uniform(1.25, 1.28)
    pen = Pen(hw + 0.05, h + 0.05, frame)
    for u in (-hw + 0.1, hw - 0.5):
        pen.rect(u, u + 0.4, 0.0, 0.5, c["tyre"], 1)
    pen.rect(-hw, hw, 0.3, h, body, 1)
    pen.rect(-hw + 0.12, hw - 0.12, 0.5 * h, 0.9 * h, c["glass"], 1)
    pen.rect(-hw + 0.4, hw - 0.4, 0.91 * h, 0.98 * h, c["dark"], 1)
    lamp = c["tail"] if view == "rear" else c["head"]
    for u in (-hw + 0.08, hw - 0.33):
        pen.rect(u, u + 0.25, 0.45, 0.75, lamp, 1)
    pen.rect(-0.26, 0.26, 0.5, 0.62, c["plate"], 1)
    return Model(pen, (BUS,), hw)


def train(rng, table: MaterialTable, c: Common, frame, view: str) -> Model:
    """A tram on rails: long carriages from the side, a large windscreen from ahead."""
    h = rng.uniform(3.3, 3.7)
    body = paint(table, rng, ((220, 220, 215), (200, 40, 40), (240, 190, 40), (60, 110, 170)))
    stripe = paint(table, rng, ((40, 40, 45), (120, 120, 125), (200, 40, 40)))
    if view == "side":
        L = rng.uniform(14.0, 28.0) / 2
        pen = Pen(L + 0.1, h + 0.9, frame)
        pen.rect(-L, L, 0.35, h, body, 1)
        pen.rect(-L, L, 0.4, 0.6, stripe, 1)
        pitch = rng.uniform(1.6, 2.4)
        for u in np.arange(-L + 0.5, L - pitch * 0.6, pitch):
            pen.rect(u, u + pitch * 0.72, 0.5 * h, 0.85 * h, c["glass"], 1)
        for u in np.arange(-L + 0.6, L - 0.6, 5.0):
            pen.rect(u - 0.08, u + 0.08, 0.3, h, c["dark"], 1)
        pen.line((-1.0, h), (0.0, h + 0.8), 0.06, c["dark"], 1)
        pen.line((1.0, h), (0.0, h + 0.8), 0.06, c["dark"], 1)
        return Model(pen, (TRAIN,), L)
    hw = 1.32
    pen = Pen(hw + 0.05, h + 0.9, frame)
    pen.poly([(-hw, 0.3), (hw, 0.3), (hw, 0.85 * h), (0.85 * hw, h), (-0.85 * hw, h), (-hw, 0.85 * h)], body, 1)
    pen.rect(-hw, hw, 0.35, 0.55, stripe, 1)
    pen.poly([(-0.9 * hw, 0.45 * h), (0.9 * hw, 0.45 * h), (0.8 * hw, 0.86 * h), (-0.8 * hw, 0.86 * h)],
             c["glass"], 1)
    pen.rect(-0.5 * hw, 0.5 * hw, 0.88 * h, 0.96 * h, c["amber"], 1)
    for u in (-hw + 0.15, hw - 0.4):
        pen.rect(u, u + 0.25, 0.65, 0.85, c["head"], 1)
    pen.line((-0.6, h), (0.0, h + 0.8), 0.06, c["dark"], 1)
    pen.line((0.6, h), (0.0, h + 0.8), 0.06, c["dark"], 1)
    return Model(pen, (TRAIN,), hw)
