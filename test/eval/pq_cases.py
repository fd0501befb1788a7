"""Seeded adversarial GT/prediction pairs in COCO panoptic form, and the official oracle.

Each image mixes random painting (stuff, instances, crowd regions, VOID, 1-2 px
segments, GT ids missing from ``segments_info``, categories that are not evaluated,
shifted / grown / split / merged / relabelled predictions) with crafted regions whose
pixel counts sit exactly on the rules' boundaries: IoU exactly 0.5 or just above, and
predictions with exactly half or just over half of their pixels on VOID + same-class
crowd.
"""
from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from panoptic_ros.eval.coco_format import write_panoptic_png

H, W = 32, 64
THINGS, STUFF = (1, 2, 3), (10, 11, 12)
COCO_CATEGORIES = (
    [{"id": c, "name": f"thing{c}", "isthing": 1} for c in THINGS]
    + [{"id": c, "name": f"stuff{c}", "isthing": 0} for c in STUFF]
    + [{"id": 20, "name": "absent-thing", "isthing": 1}, {"id": 21, "name": "absent-stuff", "isthing": 0}]
)
UNEVALUATED = 40   # a GT category missing from COCO_CATEGORIES


@dataclass
class ImagePair:
    gt: np.ndarray          # (H, W) int32 segment ids
    gt_info: list[dict]
    pred: np.ndarray
    pred_info: list[dict]


class _Painter:
    """Paints one GT/prediction pair; segment metadata lives in dicts keyed by id."""

    def __init__(self, rng: np.random.Generator, things, stuff, adversarial: bool):
        self.rng, self.things, self.stuff, self.adversarial = rng, things, stuff, adversarial
        self.gt = np.zeros((H, W), np.int32)
        self.pred = np.zeros((H, W), np.int32)
        self.gt_meta: dict[int, dict] = {}
        self.pred_cat: dict[int, int] = {}
        self.used: set[int] = {0}

    def new_id(self) -> int:
        while True:
            sid = int(self.rng.integers(1, 300)) if self.rng.random() < 0.5 else int(self.rng.integers(1, 1 << 24))
            if sid not in self.used:
                self.used.add(sid)
                return sid

    def gt_segment(self, mask, category, crowd=False, listed=True) -> int:
        sid = self.new_id()
        self.gt[mask] = sid
        if listed:
            self.gt_meta[sid] = {"category_id": int(category), "iscrowd": int(crowd)}
        return sid

    def pred_segment(self, mask, category) -> int:
        sid = self.new_id()
        self.pred[mask] = sid
        self.pred_cat[sid] = int(category)
        return sid

    def rect_mask(self, max_h=14, max_w=24) -> np.ndarray:
        h, w = self.rng.integers(1, max_h + 1), self.rng.integers(1, max_w + 1)
        y, x = self.rng.integers(0, H - h + 1), self.rng.integers(0, W - w + 1)
        mask = np.zeros((H, W), bool)
        mask[y:y + h, x:x + w] = True
        if self.rng.random() < 0.3:   # ragged blob
            mask &= self.rng.random((H, W)) < 0.8
        return mask

    def region(self, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Row-major pixel coordinates of a random 4 x 16 block, cleared to VOID."""
        y, x = self.rng.integers(0, H - 4 + 1), self.rng.integers(0, W - 16 + 1)
        self.gt[y:y + 4, x:x + 16] = 0
        self.pred[y:y + 4, x:x + 16] = 0
        ys, xs = np.mgrid[y:y + 4, x:x + 16]
        assert n <= 64
        return ys.ravel(), xs.ravel()

    def pick(self, seq):
        return seq[int(self.rng.integers(len(seq)))]


def _paint_gt(p: _Painter) -> None:
    rng = p.rng
    if rng.random() < 0.85:
        p.gt_segment(np.ones((H, W), bool), p.pick(p.stuff))
    for _ in range(rng.integers(0, 3)):
        p.gt_segment(p.rect_mask(), p.pick(p.stuff), crowd=p.adversarial and rng.random() < 0.05)
    crowd_cats = [p.pick(p.things)] * 2 if rng.random() < 0.5 else list(p.things)
    for _ in range(rng.integers(0, 3)):
        p.gt_segment(p.rect_mask(10, 16), p.pick(crowd_cats), crowd=True)
    for _ in range(rng.integers(1, 7)):
        p.gt_segment(p.rect_mask(10, 14), p.pick(p.things))
    for _ in range(rng.integers(0, 4)):
        p.gt[p.rect_mask(6, 10)] = 0
    p.gt[rng.random((H, W)) < 0.02] = 0
    for _ in range(rng.integers(0, 4)):   # 1-2 px segments
        y, x = rng.integers(0, H), rng.integers(0, W - 1)
        mask = np.zeros((H, W), bool)
        mask[y, x:x + int(rng.integers(1, 3))] = True
        p.gt_segment(mask, p.pick(p.things + p.stuff))
    if p.adversarial and rng.random() < 0.4:
        p.gt_segment(p.rect_mask(8, 12), UNEVALUATED, crowd=rng.random() < 0.3)
    if p.adversarial and rng.random() < 0.3:
        p.gt_segment(p.rect_mask(8, 12), p.pick(p.things), listed=False)


def _paint_pred(p: _Painter) -> None:
    rng = p.rng
    gt_ids = [sid for sid in np.unique(p.gt).tolist() if sid in p.gt_meta]
    rng.shuffle(gt_ids)
    merged: dict[int, int] = {}
    for sid in gt_ids:
        mask = p.gt == sid
        cat = p.gt_meta[sid]["category_id"]
        cat = cat if cat in p.things + p.stuff else p.pick(p.things + p.stuff)
        action = rng.choice(["copy", "shift", "grow", "shrink", "recat", "split", "merge", "drop"],
                            p=[.2, .2, .12, .12, .1, .1, .1, .06])
        if action == "shift":
            mask = np.roll(mask, (int(rng.integers(-2, 3)), int(rng.integers(-3, 4))), axis=(0, 1))
        elif action in ("grow", "shrink"):
            neighbours = [np.roll(mask, s, axis=a) for s in (-1, 1) for a in (0, 1)]
            mask = np.logical_or.reduce([mask] + neighbours) if action == "grow" else np.logical_and.reduce(
                [mask] + neighbours)
        elif action == "recat":
            cat = p.pick(p.things + p.stuff)
        if action == "drop" or not mask.any():
            continue
        if action == "split":
            cut = int(rng.integers(0, W))
            left = mask.copy()
            left[:, cut:] = False
            p.pred_segment(left, cat)
            mask[:, :cut] = False
        if action == "merge" and cat in merged:
            p.pred[mask] = merged[cat]
            continue
        merged[cat] = p.pred_segment(mask, cat)
    for _ in range(rng.integers(0, 4)):   # spurious predictions, some over crowd or VOID
        p.pred_segment(p.rect_mask(8, 12), p.pick(p.things + p.stuff))
    p.pred[rng.random((H, W)) < 0.02] = 0


def _iou_boundary(p: _Painter) -> None:
    """GT thing of area A; a same-class prediction covering n_in of it, n_out pixels of
    another GT segment and n_void VOID pixels: IoU = n_in / (A + n_out), set to exactly
    0.5 (or just below it where A + n_out is odd) or the smallest value above it."""
    rng = p.rng
    area = int(rng.integers(1, 13))
    n_out = int(rng.integers(0, area + 1))
    n_in = min(area, (area + n_out) // 2 + int(rng.integers(0, 2)))
    n_void = int(rng.integers(0, 6))
    ys, xs = p.region(area + n_out + n_void)
    cat = p.pick(p.things)
    g = np.zeros((H, W), bool)
    g[ys[:area], xs[:area]] = True
    p.gt_segment(g, cat)
    other = np.zeros((H, W), bool)
    other[ys[area:area + n_out], xs[area:area + n_out]] = True
    if n_out:
        p.gt_segment(other, p.pick(p.stuff + p.things))
    pred = np.zeros((H, W), bool)
    pred[ys[:n_in], xs[:n_in]] = True
    pred[ys[area:area + n_out + n_void], xs[area:area + n_out + n_void]] = True
    p.pred_segment(pred, cat)


def _crowd_boundary(p: _Painter) -> None:
    """A thing prediction of P pixels with exactly floor(P/2) or floor(P/2) + 1 of them on
    VOID plus a crowd region of its class, the rest on other GT."""
    rng = p.rng
    size = int(rng.integers(1, 25))
    ignored = size // 2 + int(rng.integers(0, 2))
    n_void = int(rng.integers(0, ignored + 1))
    ys, xs = p.region(size + 8)
    cat = p.pick(p.things)
    crowd = np.zeros((H, W), bool)
    crowd[ys[n_void:ignored], xs[n_void:ignored]] = True
    extra = int(rng.integers(0, 8))
    crowd[ys[size:size + extra], xs[size:size + extra]] = True   # crowd beyond the prediction
    if crowd.any():
        p.gt_segment(crowd, cat, crowd=True)
    rest = np.zeros((H, W), bool)
    rest[ys[ignored:size], xs[ignored:size]] = True
    if rest.any():
        other = p.pick([c for c in p.things if c != cat])
        p.gt_segment(rest, other if rng.random() < 0.4 else p.pick(p.stuff), crowd=rng.random() < 0.3)
    pred = np.zeros((H, W), bool)
    pred[ys[:size], xs[:size]] = True
    p.pred_segment(pred, cat)


def random_image(rng: np.random.Generator, things=THINGS, stuff=STUFF, adversarial=True) -> ImagePair:
    """One random image pair (see the module docstring)."""
    p = _Painter(rng, tuple(things), tuple(stuff), adversarial)
    _paint_gt(p)
    _paint_pred(p)
    for _ in range(rng.integers(1, 3)):
        _iou_boundary(p)
    for _ in range(rng.integers(1, 3)):
        _crowd_boundary(p)
    return _finish(p)


def _finish(p: _Painter) -> ImagePair:
    rng = p.rng
    gt_ids, gt_area = np.unique(p.gt, return_counts=True)
    gt_info = [dict(p.gt_meta[i], id=i, area=int(a)) for i, a in zip(gt_ids.tolist(), gt_area) if i in p.gt_meta]
    if p.adversarial and rng.random() < 0.15:   # listed but absent from the PNG: a FN
        gt_info.append({"id": p.new_id(), "category_id": p.pick(p.things), "iscrowd": 0, "area": int(rng.integers(0, 5))})
    if p.adversarial and rng.random() < 0.1:    # a listed area that is not the pixel count
        p.pick(gt_info)["area"] += int(rng.integers(-2, 3))
    if p.adversarial and rng.random() < 0.1:    # a repeated id: the last entry wins
        dup = dict(p.pick(gt_info))
        dup["category_id"] = p.pick(p.things + p.stuff)
        gt_info.append(dup)
    rng.shuffle(gt_info)
    pred_ids = [i for i in np.unique(p.pred).tolist() if i != 0]
    pred_info = [{"id": i, "category_id": p.pred_cat[i]} for i in pred_ids]
    rng.shuffle(pred_info)
    return ImagePair(p.gt, gt_info, p.pred, pred_info)


def has_things_and_stuff(pair: ImagePair, things=THINGS, stuff=STUFF) -> bool:
    """Whether GT holds a non-crowd evaluated thing and stuff segment (else the official
    code divides by zero for a group)."""
    present = set(np.unique(pair.gt).tolist())
    final = {s["id"]: s for s in pair.gt_info}
    kinds = {s["category_id"] in things for s in final.values()
             if not s["iscrowd"] and s["id"] in present and s["category_id"] in things + stuff}
    return kinds == {True, False}


def random_case(seed: int, num_images: int | None = None, **kwargs) -> list[ImagePair]:
    """1-3 seeded random image pairs; the first one always has things and stuff."""
    rng = np.random.default_rng(seed)
    count = num_images or int(rng.integers(1, 4))
    pairs = []
    while len(pairs) < count:
        pair = random_image(rng, **kwargs)
        if pairs or has_things_and_stuff(pair, kwargs.get("things", THINGS), kwargs.get("stuff", STUFF)):
            pairs.append(pair)
    return pairs


def write_case(root: Path, pairs: list[ImagePair], categories=COCO_CATEGORIES) -> dict[str, Path]:
    """Write pairs as GT and prediction COCO panoptic datasets under ``root``."""
    paths = {"gt_json": root / "gt.json", "gt_folder": root / "gt",
             "pred_json": root / "pred.json", "pred_folder": root / "pred"}
    gt_anns, pred_anns, images = [], [], []
    for k, pair in enumerate(pairs):
        name = f"img{k:03d}.png"
        write_panoptic_png(paths["gt_folder"] / name, pair.gt)
        write_panoptic_png(paths["pred_folder"] / name, pair.pred)
        images.append({"id": f"img{k:03d}", "file_name": f"img{k:03d}.jpg", "height": H, "width": W})
        gt_anns.append({"image_id": f"img{k:03d}", "file_name": name, "segments_info": pair.gt_info})
        pred_anns.append({"image_id": f"img{k:03d}", "file_name": name, "segments_info": pair.pred_info})
    rng = np.random.default_rng(len(pairs))
    rng.shuffle(pred_anns)   # predictions are paired by image_id, not by position
    paths["gt_json"].write_text(json.dumps({"images": images, "annotations": gt_anns, "categories": list(categories)}))
    paths["pred_json"].write_text(json.dumps({"annotations": pred_anns, "categories": list(categories)}))
    return paths


def run_official(paths: dict[str, Path], monkeypatch) -> tuple[dict, dict]:
    """cityscapesscripts' ``evaluatePanoptic`` in this process.

    It has no process-count option and always starts a pool of cpu_count workers; its
    dispatcher is swapped for a direct call of the official single-core function (the
    pool only splits the images and adds the per-core statistics).

    Returns:
        (returned dict, parsed results file).
    """
    from cityscapesscripts.evaluation import evalPanopticSemanticLabeling as official

    def single_core(matched, gt_folder, pred_folder, categories):
        return official.pq_compute_single_core(0, matched, gt_folder, pred_folder, categories)

    monkeypatch.setattr(official, "pq_compute_multi_core", single_core)
    out = paths["gt_json"].parent / "official.json"
    with contextlib.redirect_stdout(io.StringIO()):
        results = official.evaluatePanoptic(str(paths["gt_json"]), str(paths["gt_folder"]), str(paths["pred_json"]),
                                            str(paths["pred_folder"]), str(out))
    return results, json.loads(out.read_text())


def assert_same_results(ours: dict, official: dict, tol: float = 1e-9) -> None:
    """Every PQ/SQ/RQ (All/Things/Stuff and per class) and n agree; keys agree exactly."""
    assert set(ours) == set(official) == {"All", "Things", "Stuff", "per_class"}
    for name in ("All", "Things", "Stuff"):
        assert ours[name]["n"] == official[name]["n"], name
        assert set(ours[name]) == set(official[name]) == {"pq", "sq", "rq", "n"}
        for key in ("pq", "sq", "rq"):
            assert abs(ours[name][key] - official[name][key]) <= tol, (name, key, ours[name], official[name])
    assert list(ours["per_class"]) == list(official["per_class"])
    for cat, scores in official["per_class"].items():
        assert set(ours["per_class"][cat]) == set(scores) == {"pq", "sq", "rq"}
        for key, value in scores.items():
            assert abs(ours["per_class"][cat][key] - value) <= tol, (cat, key, ours["per_class"][cat], scores)


def to_results(pair: ImagePair, label_space, rng: np.random.Generator):
    """The pair as (gt, prediction) PanopticResults of ``label_space``: ids re-encoded as
    ``category * 1000 + instance``; GT crowd and stuff get instance 0 (several crowd
    regions of a class merge), some predicted things get instance 0 too."""
    from panoptic_ros.types import PanopticResult

    def encode(ids, info, crowd_of):
        remap, count = {}, {}
        for seg in sorted({s["id"]: s for s in info}.values(), key=lambda s: s["id"]):
            cat = seg["category_id"]
            if cat not in label_space:
                continue
            numbered = cat in label_space.thing_ids and not crowd_of(seg)
            count[cat] = count.get(cat, 0) + numbered
            remap[seg["id"]] = cat * 1000 + (count[cat] if numbered else 0)
        keys = np.array([0, *remap], np.int64)
        values = np.array([0, *remap.values()], np.int32)
        order = np.argsort(keys)
        pos = np.clip(np.searchsorted(keys[order], ids), 0, len(keys) - 1)
        hit = keys[order][pos] == ids
        return PanopticResult.from_panoptic_map(np.where(hit, values[order][pos], 0).astype(np.int32), label_space)

    gt = encode(pair.gt, pair.gt_info, lambda s: s["iscrowd"] == 1)
    pred = encode(pair.pred, pair.pred_info, lambda s: rng.random() < 0.1)
    return gt, pred


def results_to_pair(gt, pred) -> ImagePair:
    """PanopticResults back to a COCO pair (segment id = panoptic id), as written by
    ``PanopticResult.to_coco``."""
    return ImagePair(gt.panoptic, gt.to_coco(0, "x.png")[1]["segments_info"],
                     pred.panoptic, pred.to_coco(0, "x.png")[1]["segments_info"])
