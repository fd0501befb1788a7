"""Street furniture for SynthStreet: poles carrying lamps, traffic lights or traffic signs,
and small VOID objects (bins, billboards). They are sprites, so they take part in depth
ordering and can cut things into separate pieces.

Parts: 1 = pole, 2 = traffic light, 3 = traffic sign (void objects: part 1, category 0).
"""
from __future__ import annotations

import numpy as np

from panoptic_ros.synthstreet import palette as pal
from panoptic_ros.synthstreet.render import MaterialTable, Pen
from panoptic_ros.synthstreet.vehicles import Common, Model

POLE, TRAFFIC_LIGHT, TRAFFIC_SIGN = 17, 19, 20
_PARTS = (POLE, TRAFFIC_LIGHT, TRAFFIC_SIGN)


def _traffic_light(pen: Pen, u: float, v: float, c: Common, rng, facing: bool) -> None:
    """A three-lamp signal head with its top at (u, v)."""
    w, h = 0.34, 0.95
    pen.rect(u - w / 2, u + w / 2, v - h, v, c["box"], 2)
    if not facing:
        return
    lit = int(rng.integers(3))
    for k, colour in enumerate(("red", "amber", "green")):
        mat = c[colour] if k == lit else c["unlit"]
        pen.ellipse((u, v - h * (0.2 + 0.3 * k)), (0.11, 0.11), mat, 2)


def _sign(pen: Pen, u: float, v: float, c: Common, rng) -> None:
    """A traffic sign plate centred at (u, v): round, triangular, square or a back side."""
    shape = pal.choose(rng, ("round", "triangle", "square", "back"), (0.35, 0.25, 0.3, 0.1))
    r = rng.uniform(0.3, 0.45)
    if shape == "round":
        pen.ellipse((u, v), (r, r), c["sign_red"], 3)
        pen.ellipse((u, v), (r * 0.75, r * 0.75), c["white"] if rng.random() < 0.6 else c["sign_blue"], 3)
    elif shape == "triangle":
        pts = [(u - r, v - 0.6 * r), (u + r, v - 0.6 * r), (u, v + 0.95 * r)]
        pen.poly(pts, c["sign_red"], 3)
        pen.poly([(u + (x - u) * 0.65, v + (y - v) * 0.65) for x, y in pts], c["white"], 3)
    elif shape == "square":
        mat = c["sign_blue"] if rng.random() < 0.6 else c["sign_yellow"]
        pen.rect(u - r, u + r, v - r, v + r, mat, 3)
        pen.rect(u - 0.3 * r, u + 0.3 * r, v - 0.6 * r, v + 0.6 * r, c["white"], 3)
    else:
        pen.rect(u - r, u + r, v - r, v + r, c["sign_back"], 3)


def pole(rng, table: MaterialTable, c: Common, frame, kind: str) -> Model:
    """A pole of ``kind`` "lamp" | "light" | "sign" | "bare", about 3 to 8 m tall."""
    h = {"lamp": rng.uniform(5.5, 8.0), "light": rng.uniform(3.2, 4.5), "sign": rng.uniform(2.6, 3.6),
         "bare": rng.uniform(2.5, 6.0)}[kind]
    arm = rng.uniform(1.0, 2.2) * (1 if rng.random() < 0.5 else -1)
    reach = abs(arm) + 0.35 if kind == "lamp" else 0.75     # lamp arm or a second signal head
    u_range = (-reach, 0.75) if arm < 0 else (-0.75, reach)
    pen = Pen(reach, h + 0.6, frame, u_range)
    width = rng.uniform(0.1, 0.22)
    pen.rect(-width / 2, width / 2, 0.0, h, c["pole"], 1)
    if kind == "lamp":
        pen.line((0.0, h - 0.1), (arm, h + 0.25), 0.08, c["pole"], 1)
        pen.rect(arm - 0.3 * np.sign(arm), arm + 0.2 * np.sign(arm), h + 0.1, h + 0.3, c["pole"], 1)
    elif kind == "light":
        _traffic_light(pen, 0.0, h + 0.5, c, rng, facing=rng.random() < 0.8)
        pen.rect(-width / 2, width / 2, h, h + 0.5, c["pole"], 1)
        if rng.random() < 0.4:
            _traffic_light(pen, width / 2 + 0.2, h - 0.6, c, rng, facing=True)
    elif kind == "sign":
        _sign(pen, 0.0, h - 0.35, c, rng)
        if rng.random() < 0.35:
            _sign(pen, 0.0, h - 1.3, c, rng)
    return Model(pen, _PARTS, 0.5)


def void_object(rng, table: MaterialTable, c: Common, frame) -> Model:
    """A bin, bench or advertising column: present in the image, labelled VOID."""
    kind = pal.choose(rng, ("bin", "column", "bench"))
    colour = table.add(pal.pick(rng, pal.CAR_PAINTS + pal.GREYS, 15), fine=6, mid=4, grad=-15)
    if kind == "bin":
        pen = Pen(0.4, 1.1, frame)
        pen.rect(-0.3, 0.3, 0.0, 1.0, colour, 1)
        pen.rect(-0.34, 0.34, 0.9, 1.05, c["dark"], 1)
        return Model(pen, (0,), 0.35)
    if kind == "column":
        pen = Pen(0.7, 3.3, frame)
        pen.rect(-0.6, 0.6, 0.0, 2.9, colour, 1)
        poster = table.add(pal.pick(rng, pal.CLOTHES, 30), fine=10, mid=25, coarse=20)
        pen.rect(-0.55, 0.55, 0.6, 2.6, poster, 1)
        pen.poly([(-0.65, 2.9), (0.65, 2.9), (0.0, 3.25)], c["dark"], 1)
        return Model(pen, (0,), 0.65)
    pen = Pen(1.0, 1.0, frame)
    pen.rect(-0.9, 0.9, 0.4, 0.5, colour, 1)
    pen.rect(-0.9, 0.9, 0.6, 0.9, colour, 1)
    for u in (-0.8, 0.7):
        pen.rect(u, u + 0.1, 0.0, 0.45, c["dark"], 1)
    return Model(pen, (0,), 0.95)
