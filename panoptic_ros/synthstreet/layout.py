"""Where SynthStreet puts its objects: a list of :class:`Placement` in world metres.

Objects stand on the street (see :mod:`.camera`) and are drawn as upright billboards, so
their size follows their depth. The layout also stages what the models are tested on:
pedestrians crossing in front of cars and poles in front of parked cars (things cut into
separate pieces), identical twins side by side at one depth, and crowds.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from panoptic_ros.synthstreet.background import StreetPlan
from panoptic_ros.synthstreet.palette import choose

LANE_VEHICLES = (("car", 0.72), ("truck", 0.1), ("bus", 0.1), ("train", 0.0), ("motorcycle", 0.08))


@dataclass
class Placement:
    """One object to draw.

    Attributes:
        kind: "car" | "truck" | "bus" | "train" | "person" | "crowd" | "bicycle" |
            "motorcycle" | "pole" | "void".
        x, z: ground position (m) of the object's centre line.
        options: keyword arguments of the object maker (view, ridden, count, pole kind ...).
        twin_dx: lateral offsets (m) of identical copies at the same depth.
    """

    kind: str
    x: float
    z: float
    options: dict = field(default_factory=dict)
    twin_dx: list[float] = field(default_factory=list)

    @property
    def is_thing(self) -> bool:
        return self.kind not in ("pole", "void")

    def instances(self) -> int:
        """Thing instances this placement adds (copies included; a crowd adds none)."""
        if self.kind in ("pole", "void", "crowd"):
            return 0
        per = 2 if self.options.get("ridden") else 1
        return per * (1 + len(self.twin_dx))


def _z_range(plan: StreetPlan, far: float) -> tuple[float, float]:
    """Depths at which an object is fully above the bottom rows and still large enough."""
    return plan.camera.z_bottom * 1.15, far * plan.camera.focal / (2.1 * plan.camera.height)


def _pick(rng, table) -> str:
    names, weights = zip(*table)
    return choose(rng, names, weights)


def _lane_vehicle(plan: StreetPlan, rng, occupied: list) -> Placement | None:
    """A vehicle driving in a lane (rear view on our side, front view on the other)."""
    lane = int(rng.integers(plan.lanes))
    x = plan.road[0] + (lane + 0.5) * plan.lane_width + rng.normal(0, 0.25)
    kind = _pick(rng, LANE_VEHICLES if not plan.tram else LANE_VEHICLES[:3] + (("train", 0.15),))
    if kind == "train":
        x = plan.road[0] + plan.lane_width * (plan.lanes // 2 + 0.5)
    z0, z1 = _z_range(plan, 45.0)
    z = rng.uniform(z0, z1)
    if any(abs(x - ox) < 2.2 and abs(z - oz) < 9.0 for ox, oz in occupied):
        return None
    occupied.append((x, z))
    view = "rear" if x > -plan.lane_width / 2 else "front"
    if kind == "motorcycle":
        return Placement("motorcycle", x, z, {"ridden": True})
    return Placement(kind, x, z, {"view": view})


def _parked_car(plan: StreetPlan, rng, occupied: list) -> Placement | None:
    """A car parked at the curb, partly on the pavement."""
    side = plan.sides[int(rng.integers(2))]
    x = side.curb + side.sign * rng.uniform(-0.9, 0.4)
    z0, z1 = _z_range(plan, 40.0)
    z = rng.uniform(z0, z1)
    if any(abs(x - ox) < 2.2 and abs(z - oz) < 5.5 for ox, oz in occupied):
        return None
    occupied.append((x, z))
    kind = "car" if rng.random() < 0.92 else "truck"
    return Placement(kind, x, z, {"view": "rear" if rng.random() < 0.6 else "front"})


def _on_pavement(plan: StreetPlan, rng, far: float) -> tuple[float, float]:
    side = plan.sides[int(rng.integers(2))]
    lo, hi = sorted((side.curb + side.sign * 0.3, side.outer - side.sign * 0.3))
    z0, z1 = _z_range(plan, far)
    return rng.uniform(lo, hi), rng.uniform(z0, z1)


def _crossing(plan: StreetPlan, rng, kind: str) -> Placement:
    """Traffic crossing the street further ahead, seen from the side."""
    z0, z1 = _z_range(plan, 45.0)
    z = rng.uniform(max(z0, 14.0), max(z1, 15.0))
    x = rng.uniform(plan.road[0] - 4, plan.road[1] + 4)
    return Placement(kind, x, z, {"view": "side"})


def plan_objects(plan: StreetPlan, rng: np.random.Generator, target: int) -> list[Placement]:
    """Placements for about ``target`` thing instances plus street furniture."""
    out: list[Placement] = []
    occupied: list = []
    count = 0
    tries = 0
    while count < target and tries < 200:
        tries += 1
        r = rng.random()
        if r < 0.3:
            p = _lane_vehicle(plan, rng, occupied)
        elif r < 0.5:
            p = _parked_car(plan, rng, occupied)
        elif r < 0.75:
            x, z = _on_pavement(plan, rng, 32.0)
            p = Placement("person", x, z)
        elif r < 0.87:
            x, z = _on_pavement(plan, rng, 26.0)
            ridden = rng.random() < 0.55
            if ridden:
                x = plan.sides[int(rng.integers(2))].curb + rng.normal(0, 1.0)
            p = Placement("bicycle" if rng.random() < 0.65 else "motorcycle", x, z, {"ridden": ridden})
        else:
            p = _crossing(plan, rng, _pick(rng, (("car", 0.5), ("bus", 0.2), ("truck", 0.15),
                                                 ("train", 0.1 if plan.tram else 0.0), ("bicycle", 0.1))))
            if p.kind == "bicycle":
                p.options = {"ridden": True}
        if p is None:
            continue
        out.append(p)
        count += p.instances()
    return out


def _add_twins(plan: StreetPlan, rng: np.random.Generator, objects: list[Placement]) -> None:
    """Give one or two on-screen objects identical copies beside them at the same depth,
    towards the image centre."""
    if rng.random() > 0.7:
        return
    cam = plan.camera

    def column(x: float, z: float) -> float:
        return (cam.cx + cam.fx * x / z) / cam.width

    eligible = [p for p in objects if p.kind in ("car", "person", "bicycle", "motorcycle")
                and p.options.get("view") != "side" and not p.twin_dx and 0.08 < column(p.x, p.z) < 0.92]
    for src in eligible[:int(rng.integers(1, 3))]:
        spacing = {"car": 2.4}.get(src.kind, 1.2) * rng.uniform(1.05, 1.5)
        toward = 1.0 if column(src.x, src.z) < 0.5 else -1.0
        src.twin_dx.append(float(spacing * toward))
        if rng.random() < 0.25 and 0.08 < column(src.x - spacing * toward, src.z) < 0.92:   # a row of three
            src.twin_dx.append(-src.twin_dx[0])


# Rough half widths (m) used to keep the view on twins clear.
_HALF_WIDTH = {"car": 1.0, "truck": 1.3, "bus": 1.3, "train": 1.4, "person": 0.4, "bicycle": 1.0,
               "motorcycle": 1.0, "pole": 0.4, "void": 0.7}


def _span(p: Placement, cam) -> tuple[float, float]:
    """Image columns covered by a placement and its copies (roughly)."""
    half = _HALF_WIDTH.get(p.kind, 0.15 * p.options.get("count", 0) + 0.4)
    xs = [p.x + dx for dx in [0.0] + p.twin_dx]
    return cam.cx + cam.fx * (min(xs) - half) / p.z, cam.cx + cam.fx * (max(xs) + half) / p.z


def _clear_view(plan: StreetPlan, objects: list[Placement]) -> None:
    """Remove what stands in front of a twin group, so its copies stay identical in view."""
    cam = plan.camera
    for src in [p for p in objects if p.twin_dx]:
        if src not in objects:
            continue
        lo, hi = _span(src, cam)
        objects[:] = [p for p in objects if p is src or p.z >= src.z
                      or _span(p, cam)[1] < lo or _span(p, cam)[0] > hi]


def add_extras(plan: StreetPlan, rng: np.random.Generator, objects: list[Placement]) -> None:
    """Occluders that split things, twins, a crowd, poles and VOID objects (in place)."""
    cam = plan.camera
    vehicles = [p for p in objects if p.kind in ("car", "truck", "bus") and p.options.get("view") != "side"]
    for p in vehicles[:3]:
        if rng.random() < 0.5:
            continue
        # Nearer than the vehicle but projecting onto its middle: the vehicle falls apart.
        zo = p.z * rng.uniform(0.55, 0.9)
        x_img = p.x / p.z + rng.uniform(-0.3, 0.3) * 1.8 / p.z
        if rng.random() < 0.5:
            objects.append(Placement("person", x_img * zo, zo))
        else:
            objects.append(Placement("pole", x_img * zo, zo, {"kind": choose(rng, ("bare", "sign"))}))
    if rng.random() < 0.4:
        x, z = _on_pavement(plan, rng, 28.0)
        objects.append(Placement("crowd", x, z, {"count": int(rng.integers(5, 12))}))
    for side in plan.sides:
        z = rng.uniform(cam.z_bottom, 12.0)
        while z < 70.0:
            kind = choose(rng, ("lamp", "light", "sign", "bare"), (0.35, 0.25, 0.3, 0.1))
            objects.append(Placement("pole", side.curb + side.sign * rng.uniform(0.3, 0.6), z, {"kind": kind}))
            z += rng.uniform(9.0, 25.0)
    for _ in range(int(rng.integers(0, 3))):
        x, z = _on_pavement(plan, rng, 30.0)
        objects.append(Placement("void", x, z))
    _add_twins(plan, rng, objects)
    _clear_view(plan, objects)
