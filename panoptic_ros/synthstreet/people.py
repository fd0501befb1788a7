"""People and two-wheelers for SynthStreet: pedestrians, crowds, bicycles, motorcycles and
riders on them (rider = part 1, vehicle = part 2 of one :class:`Model`).
"""
from __future__ import annotations

import numpy as np

from panoptic_ros.synthstreet import palette as pal
from panoptic_ros.synthstreet.render import MaterialTable, Pen
from panoptic_ros.synthstreet.vehicles import Common, Model, paint

PERSON, RIDER, MOTORCYCLE, BICYCLE = 24, 25, 32, 33


def _clothes(table: MaterialTable, rng) -> tuple[int, int, int]:
    """Materials for (top, trousers, skin) of one person."""
    top = table.add(pal.pick(rng, pal.CLOTHES, 18), fine=6, mid=5, grad=-15)
    legs = table.add(pal.pick(rng, pal.CLOTHES[:4] + pal.CLOTHES[5:6], 12), fine=5, mid=4)
    skin = table.add(pal.pick(rng, pal.SKIN, 8), fine=3)
    return top, legs, skin


def draw_person(pen: Pen, u: float, h: float, mats, rng, part: int, hair: int) -> None:
    """A standing or walking person of height ``h`` centred at ``u`` (front/back view)."""
    top, legs, skin = mats
    stride = rng.uniform(0.0, 0.22) * h
    sw = h * rng.uniform(0.12, 0.14)                 # half shoulder width
    hip, shoulder = 0.48 * h, 0.81 * h
    for du, foot in ((-1, -stride / 2), (1, stride / 2)):
        pen.line((u + du * 0.05 * h, hip), (u + du * 0.035 * h + foot, 0.02 * h), 0.075 * h, legs, part)
    pen.poly([(u - sw, shoulder), (u + sw, shoulder), (u + 0.8 * sw, hip - 0.03 * h),
              (u - 0.8 * sw, hip - 0.03 * h)], top, part)
    swing = rng.uniform(-0.08, 0.08) * h
    for du in (-1, 1):
        pen.line((u + du * sw * 0.95, shoulder - 0.02 * h), (u + du * sw * 1.1 + du * swing * 0.3, 0.5 * h),
                 0.055 * h, top, part)
    pen.rect(u - 0.025 * h, u + 0.025 * h, shoulder - 0.01 * h, shoulder + 0.05 * h, skin, part)
    pen.ellipse((u, 0.92 * h), (0.055 * h, 0.07 * h), skin, part)
    pen.ellipse((u, 0.955 * h), (0.056 * h, 0.04 * h), hair, part)


def person(rng, table: MaterialTable, c: Common, frame) -> Model:
    """A pedestrian, 1.55 to 1.95 m tall."""
    h = rng.uniform(1.55, 1.95)
    pen = Pen(0.3 * h, h + 0.05, frame)
    hair = c["dark"] if rng.random() < 0.7 else table.add(pal.pick(rng, ((150, 110, 60), (200, 180, 120)), 10))
    draw_person(pen, 0.0, h, _clothes(table, rng), rng, 1, hair)
    if rng.random() < 0.3:                        # a bag or backpack breaks the silhouette
        bag = table.add(pal.pick(rng, pal.CLOTHES, 15), fine=5)
        side = pal.choose(rng, (-1, 1))
        pen.rect(side * 0.1 * h, side * 0.2 * h, 0.5 * h, 0.66 * h, bag, 1)
    return Model(pen, (PERSON,), 0.2 * h)


def crowd(rng, table: MaterialTable, c: Common, frame, count: int) -> Model:
    """A dense group of people labelled as one crowd region (part 1)."""
    spread = 0.28 * count
    pen = Pen(spread / 2 + 0.5, 2.05, frame)
    for u in np.sort(rng.uniform(-spread / 2, spread / 2, count)):
        h = rng.uniform(1.55, 1.95)
        draw_person(pen, u, h, _clothes(table, rng), rng, 1, c["dark"])
    return Model(pen, (PERSON,), spread / 2 + 0.3)


def _bicycle(pen: Pen, s: int, c: Common, frame: int, part: int) -> None:
    """Side view of a bicycle (wheels as rings, a diamond frame), front towards ``s``."""
    r = 0.34
    for u in (-0.55, 0.55):
        pen.ellipse((s * u, r), (r, r), c["tyre"], part, thickness=0.05)
        for a in (0.3, 1.35, 2.4):          # spokes hold the rim to the hub (and the frame)
            d = np.array([np.cos(a), np.sin(a)]) * r
            pen.line((s * u - d[0], r - d[1]), (s * u + d[0], r + d[1]), 0.02, c["rim"], part)
    pts = {"rear": (-0.55, r), "crank": (0.0, 0.3), "seat": (-0.12, 0.85), "head": (0.45, 0.85),
           "front": (0.55, r)}
    for a, b in (("rear", "crank"), ("crank", "seat"), ("seat", "rear"), ("seat", "head"), ("crank", "head"),
                 ("head", "front")):
        pen.line((s * pts[a][0], pts[a][1]), (s * pts[b][0], pts[b][1]), 0.04, frame, part)
    pen.line((s * 0.42, 1.0), (s * 0.45, 0.85), 0.04, frame, part)
    pen.line((s * 0.32, 1.02), (s * 0.5, 1.0), 0.05, c["dark"], part)
    pen.line((s * -0.22, 0.87), (s * -0.02, 0.87), 0.06, c["dark"], part)


def _motorcycle(pen: Pen, s: int, c: Common, body: int, part: int) -> None:
    """Side view of a motorcycle: solid wheels, engine, tank and seat, front towards ``s``."""
    r = 0.31
    for u in (-0.7, 0.7):
        pen.ellipse((s * u, r), (r, r), c["tyre"], part)
        pen.ellipse((s * u, r), (r * 0.5, r * 0.5), c["rim"], part)
    pen.poly([(s * u, v) for u, v in [(-0.35, 0.3), (0.3, 0.3), (0.35, 0.62), (-0.3, 0.6)]], c["steel"], part)
    pen.poly([(s * u, v) for u, v in [(-0.75, 0.72), (-0.1, 0.75), (0.15, 0.95), (0.5, 0.92), (0.55, 0.7),
                                      (-0.7, 0.62)]], body, part)
    pen.line((s * 0.5, 0.9), (s * 0.7, r), 0.06, c["steel"], part)
    pen.line((s * -0.7, r), (s * -0.2, 0.45), 0.07, c["steel"], part)      # swingarm
    pen.line((s * 0.45, 1.1), (s * 0.55, 0.9), 0.05, c["dark"], part)
    pen.ellipse((s * 0.57, 0.86), (0.08, 0.08), c["head"], part)
    pen.line((s * 0.5, 0.9), (s * 0.25, 0.4), 0.07, c["steel"], part)       # frame down to the engine


def two_wheeler(rng, table: MaterialTable, c: Common, frame, *, motor: bool, ridden: bool) -> Model:
    """A bicycle or motorcycle seen from the side, parked or with a rider on it.

    Parts: 1 = the rider (when ridden), the last part = the two-wheeler.
    """
    s = 1 if rng.random() < 0.5 else -1
    pen = Pen(1.1, 2.0 if ridden else 1.25, frame)
    part = 2 if ridden else 1
    frame = paint(table, rng)
    if motor:
        _motorcycle(pen, s, c, frame, part)
    else:
        _bicycle(pen, s, c, frame, part)
    cats = (MOTORCYCLE if motor else BICYCLE,)
    if ridden:
        top, legs, skin = _clothes(table, rng)
        seat = (s * (-0.3 if motor else -0.12), 0.8 if motor else 0.92)
        hand = (s * (0.42 if motor else 0.38), 1.08 if motor else 1.02)
        shoulder = (seat[0] + s * (0.3 if motor else 0.22), seat[1] + 0.55)
        # the leg ends on the footrest / pedal, leaving the engine or bottom bracket visible
        foot = (s * 0.05, 0.45) if motor else (s * 0.18, 0.25)
        pen.line((seat[0], seat[1] + 0.05), foot, 0.13, legs, 1)
        pen.line((seat[0] - s * 0.05, seat[1] + 0.05), shoulder, 0.3, top, 1)
        pen.line(shoulder, hand, 0.09, top, 1)
        head = (shoulder[0] + s * 0.06, shoulder[1] + 0.13)
        pen.ellipse(head, (0.12, 0.13), c["dark"] if motor else skin, 1)
        if not motor and rng.random() < 0.5:
            pen.ellipse((head[0], head[1] + 0.06), (0.13, 0.08), frame, 1)   # helmet
        cats = (RIDER,) + cats
    return Model(pen, cats, 1.0)
