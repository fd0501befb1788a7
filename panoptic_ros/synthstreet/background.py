"""The static street of a SynthStreet scene: sky, facades, trees, pavements, road.

:func:`plan_street` draws the random geometry (all in metres, see :mod:`.camera`),
:func:`draw_background` rasterises it into a :class:`Layer` whose labels are panoptic ids
of stuff classes, plus a multiplicative shadow map.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from panoptic_ros.synthstreet import palette as pal
from panoptic_ros.synthstreet.camera import Camera
from panoptic_ros.synthstreet.render import Layer, MaterialTable, scratch, to_fixed

ROAD, SIDEWALK, BUILDING, WALL, FENCE = 7000, 8000, 11000, 12000, 13000
VEGETATION, TERRAIN, SKY = 21000, 22000, 23000
Z_NEAR = 0.4            # metres; geometry nearer than this is clipped away


@dataclass
class Side:
    """One side of the street (sign -1 = left, +1 = right); X values are signed."""

    sign: int
    curb: float             # X of the road edge
    outer: float            # X of the sidewalk's outer edge
    facade: float           # X of the building fronts
    kind: str               # "buildings" | "park"
    edge: str               # what lines the sidewalk's outer edge: "none" | "wall" | "fence" | "hedge"
    edge_span: tuple[float, float] = (0.0, 0.0)


@dataclass
class StreetPlan:
    """Random geometry of one street; the placement of objects reads it."""

    camera: Camera
    lane_width: float
    lanes: int
    sides: tuple[Side, Side]
    z_end: float
    crosswalk: tuple[float, float] | None
    tram: bool
    trees: list[tuple[float, float, float]] = field(default_factory=list)  # X, Z, canopy radius

    @property
    def road(self) -> tuple[float, float]:
        return self.sides[0].curb, self.sides[1].curb


def plan_street(rng: np.random.Generator, height: int, width: int, *, tram: bool) -> StreetPlan:
    """Random street geometry for an image of ``height`` x ``width`` pixels."""
    camera = Camera(height, width, focal=height * rng.uniform(1.8, 2.4),
                    horizon=height * rng.uniform(0.36, 0.47), cx=width * rng.uniform(0.38, 0.62))
    lane_width = rng.uniform(3.0, 3.6)
    lanes = int(rng.integers(2, 5))
    left_lanes = rng.uniform(0.5, lanes - 0.5)
    curbs = (-left_lanes * lane_width, (lanes - left_lanes) * lane_width)
    sides = []
    for sign, curb in zip((-1, 1), curbs):
        walk = rng.uniform(2.0, 5.0)
        kind = "park" if rng.random() < 0.2 else "buildings"
        setback = rng.uniform(2.0, 8.0) if kind == "park" or rng.random() < 0.5 else 0.0
        edge = "none" if setback == 0.0 else pal.choose(rng, ("wall", "fence", "hedge", "none"), (4, 4, 2, 1))
        z0 = rng.uniform(Z_NEAR, 15.0)
        sides.append(Side(sign, curb, curb + sign * walk, curb + sign * (walk + setback), kind, edge,
                          (z0, z0 + rng.uniform(10.0, 60.0))))
    crosswalk = None
    if rng.random() < 0.35:
        z = rng.uniform(8.0, 25.0)
        crosswalk = (z, z + rng.uniform(3.0, 5.0))
    plan = StreetPlan(camera, lane_width, lanes, tuple(sides), rng.uniform(70.0, 140.0), crosswalk, tram)
    for side in plan.sides:
        z = rng.uniform(4.0, 14.0)
        while z < 60.0 and rng.random() < 0.85:
            x = side.outer - side.sign * rng.uniform(0.6, 1.0) if side.kind == "buildings" else \
                side.outer + side.sign * rng.uniform(0.5, 3.0)
            plan.trees.append((x, z, rng.uniform(1.5, 3.0)))
            z += rng.uniform(8.0, 20.0)
    return plan


def draw_background(plan: StreetPlan, rng: np.random.Generator, table: MaterialTable) -> tuple[Layer, np.ndarray]:
    """Rasterise the street.

    Returns:
        The layer (labels = stuff panoptic ids, int32) and an (H, W) float32 shadow gain.
    """
    cam = plan.camera
    layer = Layer(cam.height, cam.width, np.int32)
    sky = table.add(pal.pick(rng, pal.SKIES, 8), fine=1.5, coarse=rng.uniform(4, 18), grad=rng.uniform(20, 60))
    layer.mat[:] = sky
    layer.lab[:] = SKY
    _draw_far_end(plan, rng, table, layer)
    terrain = table.add(pal.pick(rng, pal.TERRAIN, 15), fine=10, mid=(12, 16, 6), coarse=10)
    layer.poly(cam.ground_quad(-400, 400, Z_NEAR, plan.z_end), terrain, TERRAIN)
    for side in plan.sides:
        _draw_side(plan, side, rng, table, layer)
    _draw_trees(plan, rng, table, layer)
    _draw_sidewalks(plan, rng, table, layer)
    _draw_road(plan, rng, table, layer)
    return layer, _shadows(plan, rng)


def _draw_far_end(plan: StreetPlan, rng, table: MaterialTable, layer: Layer) -> None:
    """Buildings or a tree line across the far end of the street."""
    cam, z = plan.camera, plan.z_end
    x = -150.0
    while x < 150.0:
        w = rng.uniform(10.0, 40.0)
        if rng.random() < 0.3:
            foliage = table.add(pal.pick(rng, pal.FOLIAGE, 12), fine=12, mid=(20, 24, 10))
            layer.poly(cam.front_quad(z, x, x + w, 0.0, rng.uniform(6.0, 15.0)), foliage, VEGETATION)
        else:
            facade = table.add(pal.pick(rng, pal.FACADES, 15), fine=6, mid=4, coarse=6)
            layer.poly(cam.front_quad(z, x, x + w, 0.0, rng.uniform(8.0, 30.0)), facade, BUILDING)
        x += w


def _draw_side(plan: StreetPlan, side: Side, rng, table: MaterialTable, layer: Layer) -> None:
    """Facades (with windows) or a park behind one sidewalk, then what lines its edge."""
    cam = plan.camera
    far_x = side.facade + side.sign * (rng.uniform(15.0, 40.0) if side.kind == "park" else 0.0)
    z = Z_NEAR
    while z < plan.z_end:
        length = rng.uniform(8.0, 30.0)
        z1 = min(z + length, plan.z_end)
        if rng.random() < 0.12 and side.kind == "buildings":
            foliage = table.add(pal.pick(rng, pal.FOLIAGE, 12), fine=14, mid=(22, 26, 10))
            layer.poly(cam.side_quad(far_x, z, z1, 0.0, rng.uniform(5.0, 12.0)), foliage, VEGETATION)
        else:
            _draw_facade(cam, far_x, z, z1, rng, table, layer)
        z = z1
    if side.kind == "park":
        foliage = table.add(pal.pick(rng, pal.FOLIAGE, 12), fine=14, mid=(22, 26, 10), coarse=8)
        z = Z_NEAR
        while z < plan.z_end:
            r = rng.uniform(2.0, 5.0)
            xc = side.facade + side.sign * rng.uniform(r, 12.0)
            _canopy(cam, xc, rng.uniform(3.0, 7.0), z + r, r, foliage, layer, rng)
            z += rng.uniform(0.8, 2.0) * r
    _draw_edge(plan, side, rng, table, layer)


def _draw_facade(cam: Camera, x: float, z0: float, z1: float, rng, table: MaterialTable, layer: Layer) -> None:
    """One building front on the plane X = x with a grid of windows (and a door row)."""
    height = rng.uniform(7.0, 26.0)
    wall = table.add(pal.pick(rng, pal.FACADES, 15), fine=rng.uniform(3, 10), mid=rng.uniform(2, 8),
                     coarse=rng.uniform(3, 12))
    layer.poly(cam.side_quad(x, z0, z1, 0.0, height), wall, BUILDING)
    glass = table.add(pal.pick(rng, pal.GREYS[:3], 20) * rng.uniform(0.4, 0.9), fine=4,
                      coarse=rng.uniform(5, 20))
    floor_h, pitch = rng.uniform(2.8, 3.5), rng.uniform(2.2, 4.0)
    win_w, win_h = pitch * rng.uniform(0.35, 0.65), floor_h * rng.uniform(0.35, 0.6)
    ground_floor = rng.uniform(0.0, 1.0) < 0.5    # shop windows instead of the first floor row
    zc = np.arange(z0 + pitch / 2, z1 - win_w / 2, pitch)
    yc = np.arange(floor_h * (1.5 if ground_floor else 0.55), height - floor_h * 0.4, floor_h)
    if len(zc) == 0 or len(yc) == 0:
        return
    Z, Y = np.meshgrid(zc, yc)
    layer.polys(cam.side_quads(x, np.maximum(Z - win_w / 2, Z_NEAR), Z + win_w / 2, Y - win_h / 2, Y + win_h / 2),
                glass)
    if ground_floor:
        shop = table.add(pal.pick(rng, pal.GREYS[:2], 15), fine=3, coarse=15)
        shops = zc[::2]
        layer.polys(cam.side_quads(x, np.maximum(shops - pitch * 0.8, Z_NEAR), shops + pitch * 0.8, 0.3,
                                   floor_h * 0.8), shop)


def _draw_edge(plan: StreetPlan, side: Side, rng, table: MaterialTable, layer: Layer) -> None:
    """A wall, fence or hedge along the outer sidewalk edge over ``side.edge_span``."""
    if side.edge == "none":
        return
    cam = plan.camera
    z0, z1 = side.edge_span
    z1 = min(z1, plan.z_end)
    if side.edge == "wall":
        mat = table.add(pal.pick(rng, pal.GREYS + pal.FACADES[:3], 12), fine=8, mid=6, coarse=8)
        layer.poly(cam.side_quad(side.outer, z0, z1, 0.0, rng.uniform(1.0, 2.5)), mat, WALL)
    elif side.edge == "hedge":
        mat = table.add(pal.pick(rng, pal.FOLIAGE, 12), fine=16, mid=(22, 26, 10))
        layer.poly(cam.side_quad(side.outer, z0, z1, 0.0, rng.uniform(0.8, 1.8)), mat, VEGETATION)
    else:
        _draw_fence(cam, side.outer, z0, z1, rng, table, layer)


def _draw_fence(cam: Camera, x: float, z0: float, z1: float, rng, table: MaterialTable, layer: Layer) -> None:
    """A fence: a band with a lattice of lighter bars, labelled fence as a whole."""
    h = rng.uniform(1.0, 2.0)
    base = pal.pick(rng, pal.GREYS + ((60, 90, 60), (120, 90, 60)), 12)
    infill = table.add(base * 0.55, fine=6, mid=5)
    bar = table.add(np.clip(base * 1.25, 0, 255), fine=4)
    layer.poly(cam.side_quad(x, z0, z1, 0.0, h), infill, FENCE)
    step = rng.uniform(0.12, 0.3)
    zs = np.arange(z0, z1, step)
    layer.polys(cam.side_quads(x, zs, zs + step * 0.3, 0.0, h), bar)
    rails = np.array([0.1 * h, 0.9 * h])
    layer.polys(cam.side_quads(x, z0, z1, rails, rails + 0.06), bar)


def _canopy(cam: Camera, x: float, y: float, z: float, r: float, mat: int, layer: Layer, rng) -> None:
    """A tree crown: a cluster of overlapping ellipses at (x, y, z) metres, radius r."""
    fx, fy = cam.ppm(z)
    centres = cam.project(x + rng.uniform(-r, r, 5) * 0.6, y + rng.uniform(-r, r, 5) * 0.5, z)
    for (cx, cy), s in zip(centres, rng.uniform(0.5, 0.85, 5)):
        layer.ellipse((cx, cy), (r * s * fx, r * s * fy), mat, VEGETATION)


def _draw_trees(plan: StreetPlan, rng, table: MaterialTable, layer: Layer) -> None:
    """Street trees along the sidewalks, far first: trunk and crown, both vegetation."""
    cam = plan.camera
    foliage = table.add(pal.pick(rng, pal.FOLIAGE, 12), fine=16, mid=(24, 28, 10), coarse=6)
    bark = table.add(pal.pick(rng, ((90, 75, 60), (70, 65, 60)), 10), fine=10, mid=6)
    for x, z, r in sorted(plan.trees, key=lambda t: -t[1]):
        trunk_top = rng.uniform(2.5, 4.0)
        layer.poly(cam.front_quad(z, x - 0.15, x + 0.15, 0.0, trunk_top + r), bark, VEGETATION)
        _canopy(cam, x, trunk_top + r * 0.8, z, r, foliage, layer, rng)


def _draw_sidewalks(plan: StreetPlan, rng, table: MaterialTable, layer: Layer) -> None:
    """Pavements with joints, and a curb stone strip next to the road."""
    cam = plan.camera
    base = pal.pick(rng, pal.GREYS[1:] + ((170, 140, 130), (150, 140, 120)), 12)
    paving = table.add(base, fine=9, mid=5, coarse=8)
    joint = table.add(base * 0.7, fine=5)
    curb = table.add(np.clip(base * 1.15, 0, 255), fine=6)
    tile = rng.uniform(0.5, 1.2)
    for side in plan.sides:
        lo, hi = sorted((side.curb, side.outer))
        layer.poly(cam.ground_quad(lo, hi, Z_NEAR, plan.z_end), paving, SIDEWALK)
        zs = np.arange(Z_NEAR, min(plan.z_end, 40.0), tile)
        layer.polys(cam.ground_quads(lo, hi, zs, zs + 0.04), joint)
        xs = np.arange(lo, hi, tile)
        layer.polys(cam.ground_quads(xs, xs + 0.04, Z_NEAR, plan.z_end), joint)
        c0 = side.curb + side.sign * 0.25
        layer.poly(cam.ground_quad(min(side.curb, c0), max(side.curb, c0), Z_NEAR, plan.z_end), curb)


def _draw_road(plan: StreetPlan, rng, table: MaterialTable, layer: Layer) -> None:
    """Asphalt with lane markings, optionally a crosswalk and tram rails."""
    cam = plan.camera
    left, right = plan.road
    asphalt = table.add(pal.pick(rng, pal.GREYS[:4], 10), fine=rng.uniform(6, 14), mid=4,
                        coarse=rng.uniform(4, 14))
    paint = table.add(np.array([215, 215, 210]) * rng.uniform(0.7, 1.0), fine=8, mid=6)
    layer.poly(cam.ground_quad(left, right, Z_NEAR, plan.z_end), asphalt, ROAD)
    dash, gap = rng.uniform(2.0, 4.0), rng.uniform(4.0, 9.0)
    xb = left + np.arange(1, plan.lanes)[:, None] * plan.lane_width
    zs = np.arange(Z_NEAR + rng.uniform(0, gap), plan.z_end, dash + gap)[None, :]
    layer.polys(cam.ground_quads(xb - 0.07, xb + 0.07, zs, zs + dash), paint)
    edges = np.array([left + 0.3, right - 0.3])
    layer.polys(cam.ground_quads(edges - 0.06, edges + 0.06, Z_NEAR, plan.z_end), paint)
    if plan.crosswalk:
        xs = np.arange(left + 0.5, right - 0.5, 1.0)
        layer.polys(cam.ground_quads(xs, xs + 0.5, *plan.crosswalk), paint)
    if plan.tram:
        steel = table.add((150, 150, 155), fine=6)
        xc = left + plan.lane_width * (plan.lanes // 2 + 0.5)
        rails = np.array([xc - 0.75, xc + 0.68])
        layer.polys(cam.ground_quads(rails, rails + 0.07, Z_NEAR, plan.z_end), steel)


def _shadows(plan: StreetPlan, rng) -> np.ndarray:
    """(H, W) float32 gain: a cast shadow of one row of buildings across part of the street."""
    cam = plan.camera
    gain = scratch(8, (cam.height, cam.width), np.float32)     # consumed within this scene
    gain.fill(1.0)
    if rng.random() < 0.5:
        side = plan.sides[int(rng.integers(2))]
        reach = side.facade - side.sign * rng.uniform(3.0, 12.0)
        quad = cam.ground_quad(min(side.facade, reach), max(side.facade, reach), Z_NEAR, plan.z_end)
        cv2.fillPoly(gain, [to_fixed(quad)], float(rng.uniform(0.55, 0.8)), cv2.LINE_8, 4)
    return gain
