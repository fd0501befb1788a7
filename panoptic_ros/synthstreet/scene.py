"""SynthStreet: procedural panoptic street scenes in the Cityscapes label space.

No data set can be downloaded here, so the models train and are evaluated on scenes drawn
on the fly: a street in perspective (road, pavements, facades with windows, walls, fences,
trees, terrain, sky, poles with traffic lights and signs) with cars, trucks, buses, trams,
pedestrians, riders, bicycles and motorcycles whose size follows their depth, drawn far to
near. Scenes stage what the models are for: things cut into pieces by nearer occluders,
identical twins at one depth (PanoNet's position-sensitive embedding), crowd regions
(thing with instance 0), VOID (the ego hood, bins, benches) and, with ``mirror=True``, the
left half mirrored onto the right (the PanoNet paper's Fig. 5 test).

A scene is a pure function of ``(seed, index)`` and the size: independent random streams
per part of the scene, geometry in metres and relative image units, and a shared noise
bank, so ``generate_scene`` is deterministic across processes and resolutions.
"""
from __future__ import annotations

from typing import Callable

import cv2
import numpy as np
import torch.utils.data

from panoptic_ros.labels import CITYSCAPES
from panoptic_ros.sample import Sample
from panoptic_ros.segments import segment_stats
from panoptic_ros.synthstreet import furniture, people, vehicles
from panoptic_ros.synthstreet.background import Z_NEAR, draw_background, plan_street
from panoptic_ros.synthstreet.layout import Placement, add_extras, plan_objects
from panoptic_ros.synthstreet.noise import noise_bank, noise_crop
from panoptic_ros.synthstreet.palette import pick, scene_light, CAR_PAINTS
from panoptic_ros.synthstreet.render import Frame, Layer, MaterialTable, paste, render_sprite, shade, to_fixed
from panoptic_ros.types import LABEL_DIVISOR, PanopticResult, Segment

MIN_INSTANCES, MAX_INSTANCES = 6, 30
# Things whose visible area is below this share of the image become VOID (fragments a
# network cannot be asked to find); 0.0006 is about 300 px at 512x1024.
MIN_AREA_SHARE = 0.0006
_STREAMS = {"street": 0, "objects": 1, "texture": 2}


def _rng(seed: int, index: int, stream: str, attempt: int) -> np.random.Generator:
    return np.random.default_rng((seed, index, _STREAMS[stream], attempt))


def _make_model(p: Placement, rng, table: MaterialTable, common, frame: Frame):
    """The drawn object for a placement (vehicles, people, furniture)."""
    if p.kind in ("car", "truck", "bus", "train"):
        return getattr(vehicles, p.kind)(rng, table, common, frame, p.options["view"])
    if p.kind == "person":
        return people.person(rng, table, common, frame)
    if p.kind == "crowd":
        return people.crowd(rng, table, common, frame, p.options["count"])
    if p.kind in ("bicycle", "motorcycle"):
        return people.two_wheeler(rng, table, common, frame, motor=p.kind == "motorcycle",
                                        ridden=p.options["ridden"])
    if p.kind == "pole":
        return furniture.pole(rng, table, common, frame, p.options["kind"])
    return furniture.void_object(rng, table, common, frame)


def _visible(p: Placement, cam, mirror: bool, half_width_px: float) -> bool:
    """On screen and (mirror mode) a thing entirely inside the left half."""
    xs = [cam.cx + cam.fx * (p.x + dx) / p.z for dx in [0.0] + p.twin_dx]
    if max(xs) + half_width_px < 0 or min(xs) - half_width_px > cam.width:
        return False
    if mirror and p.is_thing:
        return max(xs) + half_width_px < cam.width // 2 - 2 and min(xs) - half_width_px >= 0
    return True


class _Ids:
    """Provisional panoptic ids: per category a running instance counter."""

    def __init__(self) -> None:
        self.next: dict[int, int] = {}

    def of(self, categories: tuple[int, ...]) -> np.ndarray:
        ids = [0]
        for cat in categories:
            if cat == 0 or cat not in CITYSCAPES.thing_ids:
                ids.append(cat * LABEL_DIVISOR)
            else:
                k = self.next.get(cat, 1)
                self.next[cat] = k + 1
                ids.append(cat * LABEL_DIVISOR + k)
        return np.asarray(ids, np.int32)


def _draw_objects(objects, cam, rng, table, image, panoptic, mirror) -> None:
    """Render every placement far to near and paste it (twins reuse the same sprite)."""
    common = vehicles.Common(table, rng)
    bank = noise_bank(cam.height, cam.width)
    ids = _Ids()
    for p in sorted(objects, key=lambda p: -p.z):
        if p.z < Z_NEAR * 2:
            continue
        frame = Frame(cam.ppm(p.z), cam.cx + cam.fx * p.x / p.z, cam.row_of_z(p.z), cam.width, cam.height,
                      clip_columns=not p.twin_dx)
        model = _make_model(p, rng, table, common, frame)
        if not _visible(p, cam, mirror, model.half_width * frame.scale[0]):
            continue
        pen = model.pen
        sprite = render_sprite(pen.layer, table, bank, rng.random(2), pen.x0, pen.y0)
        for dx in [0.0] + p.twin_dx:
            shift = int(round(cam.fx * dx / p.z))
            # A crowd is one person region without an instance number.
            part_ids = np.array([0, 24000], np.int32) if p.kind == "crowd" else ids.of(model.categories)
            paste(sprite.moved(pen.x0 + shift, pen.y0), image, panoptic, part_ids)


def _contact_shadows(objects, cam, shadow: np.ndarray) -> None:
    """Darken the road under vehicles and people (drawn before the background is shaded)."""
    xs, halves, zs = [], [], []
    for p in objects:
        if p.kind not in ("pole", "void") and p.z > Z_NEAR * 2:
            half = 1.0 if p.kind in ("car", "truck", "bus", "train") else 0.35
            for dx in [0.0] + p.twin_dx:
                xs.append(p.x + dx)
                halves.append(half)
                zs.append(p.z)
    if xs:
        x, half, z = np.array(xs), np.array(halves), np.array(zs)
        quads = cam.ground_quads(x - half, x + half, z - 0.1, z + 1.5)
        cv2.fillPoly(shadow, to_fixed(quads), 0.45, cv2.LINE_8, 4)


def _draw_hood(cam, rng, table, image, panoptic) -> None:
    """The ego vehicle's bonnet across the bottom rows: VOID."""
    height, width = cam.height, cam.width
    top = rng.uniform(0.9, 0.95) * height
    rise = rng.uniform(0.015, 0.04) * height
    layer = Layer(height - int(top - rise) + 1, width)
    y_off = int(top - rise)
    xs = np.linspace(0, width, 24)
    ys = top - rise * np.sin(np.linspace(0, np.pi, 24)) - y_off
    pts = np.concatenate([np.stack([xs, ys], 1), [[width, layer.shape[0]], [0, layer.shape[0]]]])
    paint = table.add(pick(rng, CAR_PAINTS, 10) * 0.7, fine=3, coarse=12, grad=-30)
    layer.poly(pts, paint, 1)
    sprite = render_sprite(layer, table, noise_bank(height, width), rng.random(2), 0, y_off)
    paste(sprite, image, panoptic, np.array([0, 0], np.int32))


def _mirror(panoptic: np.ndarray, image: np.ndarray) -> None:
    """Copy the left half mirrored onto the right half (in place); mirrored things get new
    instance numbers above the left half's (made consecutive later)."""
    width = panoptic.shape[1]
    half = width // 2
    right = slice(width - half, width)
    image[:, right] = image[:, :half][:, ::-1]
    mirrored = panoptic[:, :half][:, ::-1].copy()
    instance = mirrored % LABEL_DIVISOR
    is_thing = CITYSCAPES.is_thing_of_category_id[mirrored // LABEL_DIVISOR] & (instance > 0)
    mirrored[is_thing] += LABEL_DIVISOR // 2     # provisional; instances stay below 500 per half
    panoptic[:, right] = mirrored


def _finalize(panoptic: np.ndarray) -> PanopticResult:
    """Drop thing pieces below the minimum area (-> VOID) and number each category's
    instances 1..n without gaps, ordered by provisional id (i.e. drawing order).

    Ids only get renamed, so the areas and boxes of one pass over the provisional map
    are those of the result.
    """
    ids, areas, boxes = segment_stats(panoptic)
    lut = np.arange(panoptic.max() + 1, dtype=np.int32)
    min_area = MIN_AREA_SHARE * panoptic.size
    next_instance: dict[int, int] = {}
    segments = []
    for seg_id, area, box in zip(ids.tolist(), areas.tolist(), boxes.tolist()):
        category, instance = divmod(seg_id, LABEL_DIVISOR)
        is_thing = category in CITYSCAPES.thing_ids
        if is_thing and instance > 0:
            if area < min_area:
                lut[seg_id] = 0
                continue
            k = next_instance.get(category, 0) + 1
            next_instance[category] = k
            lut[seg_id] = seg_id = category * LABEL_DIVISOR + k
        segments.append(Segment(seg_id, category, is_thing, area, tuple(box)))
    segments.sort(key=lambda seg: seg.id)
    return PanopticResult(lut[panoptic], tuple(segments))


def count_instances(result: PanopticResult) -> int:
    """Non-crowd thing instances of a result."""
    return sum(1 for s in result.segments if s.is_thing and not s.iscrowd)


def _check_args(seed, index, height, width) -> None:
    for name, value in (("seed", seed), ("index", index)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"SynthStreet {name} must be a non-negative integer, got {value!r}")
    if not (isinstance(height, (int, np.integer)) and isinstance(width, (int, np.integer))
            and height >= 64 and width >= 128):
        raise ValueError(f"SynthStreet image size must be at least 64x128 pixels, got {height}x{width}")


def generate_scene(seed: int, index: int, *, height: int = 512, width: int = 1024,
                   mirror: bool = False) -> Sample:
    """Draw scene ``index`` of the SynthStreet stream ``seed``.

    Args:
        seed, index: non-negative integers; the scene is a pure function of them and the size.
        height, width: image size in pixels (at least 64 x 128; any aspect ratio, the
            street is defined for 2:1 and stretched).
        mirror: mirror the left half onto the right half; mirrored things are new instances.
    Returns:
        A :class:`Sample` with an (H, W, 3) uint8 RGB image and its ground truth in the
        Cityscapes label space, ``image_id`` ``synth_<seed>_<index>`` (``_mirror`` appended).
    """
    _check_args(seed, index, height, width)
    result = None
    for attempt in range(8):
        image, result = _render(int(seed), int(index), int(height), int(width), mirror, attempt)
        if MIN_INSTANCES <= count_instances(result) <= MAX_INSTANCES:
            break
    image_id = f"synth_{seed}_{index}" + ("_mirror" if mirror else "")
    return Sample(image, result, image_id)


def _render(seed: int, index: int, height: int, width: int, mirror: bool, attempt: int):
    """One drawing attempt: (H, W, 3) uint8 image and its ground truth."""
    street_rng = _rng(seed, index, "street", attempt)
    object_rng = _rng(seed, index, "objects", attempt)
    texture_rng = _rng(seed, index, "texture", attempt)
    table = MaterialTable(scene_light(texture_rng))
    plan = plan_street(street_rng, height, width, tram=street_rng.random() < 0.18)
    layer, shadow = draw_background(plan, street_rng, table)
    target = int(object_rng.integers(MIN_INSTANCES + 2, MAX_INSTANCES - 4))
    objects = plan_objects(plan, object_rng, target // 2 if mirror else target)
    add_extras(plan, object_rng, objects)
    _contact_shadows(objects, plan.camera, shadow)
    noise = noise_crop(noise_bank(height, width), height, width, texture_rng.random(2))
    image = shade(layer.mat, table, noise, shadow)
    panoptic = layer.lab
    _draw_objects(objects, plan.camera, object_rng, table, image, panoptic, mirror)
    _draw_hood(plan.camera, texture_rng, table, image, panoptic)
    if mirror:
        _mirror(panoptic, image)
    return image, _finalize(panoptic)


class SynthStreetDataset(torch.utils.data.Dataset):
    """Map-style data set of SynthStreet scenes drawn on the fly.

    Every index is valid (the stream is infinite); ``length`` only sets the epoch size, so
    DataLoader workers and ``DistributedSampler`` work as with any map-style set.

    Args:
        seed: stream seed (train and validation sets use different seeds).
        length: number of scenes per epoch.
        height, width: image size.
        mirror: draw mirrored scenes (see :func:`generate_scene`).
        transform: optional callable ``Sample -> Sample`` applied to each scene.
    """

    def __init__(self, seed: int, length: int, height: int = 512, width: int = 1024, mirror: bool = False,
                 transform: Callable[[Sample], Sample] | None = None) -> None:
        if not isinstance(length, int) or length <= 0:
            raise ValueError(f"SynthStreetDataset length must be a positive integer, got {length!r}")
        _check_args(seed, 0, height, width)
        self.seed, self.length, self.height, self.width = seed, length, height, width
        self.mirror, self.transform = mirror, transform

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Sample:
        if index < 0:
            raise IndexError(f"SynthStreetDataset index must be non-negative, got {index}")
        sample = generate_scene(self.seed, int(index), height=self.height, width=self.width, mirror=self.mirror)
        return self.transform(sample) if self.transform is not None else sample
