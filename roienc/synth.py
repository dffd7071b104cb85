"""A deterministic Cityscapes-format scene generator (the project's own test data).

Writes every file of the official layout (annotated frames and 30-frame sequences) for a simple
street scene: sky, buildings, vegetation, road on a ground plane whose depth rises towards the
horizon, sidewalks, an ego-vehicle void strip, and dynamic objects at known depths: two cars
(near, far), a person, two traffic-sign blobs without instance ids (near, far) and a bicycle whose
disparity is entirely invalid. Objects have constant disparity, so per-object medians equal the
recorded value exactly. Over a snippet the objects approach and the textures scroll, so encodes
have real motion; each object's texture is attached to the object (it moves and scales with its
bounding box), so the image motion of every object is known. ``sequence_frames`` returns the
per-frame truth of a snippet. Same arguments -> byte-identical files.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from cityscapesscripts.helpers.labels import name2label

from .errors import InputError
from .fileio import write_json, write_png
from .names import check_component, check_names, check_output_path

SNIPPET = 30
ANNOTATED = 19
MIN_SIDE = 16                  # px: the smallest frame the scene's objects fit in
MAX_SIDE = 8192                # px: a side of a frame
MAX_PIXELS = 4096 * 2048       # a frame's pixels: its textures take ~20 bytes a pixel while drawn
MAX_SEQUENCES = 999_999        # snippet numbers have six digits (<city>_<NNNNNN>_<frame>)


@dataclass
class SynthObject:
    """Ground truth of one object in one frame."""

    label: str
    instance_id: int | None       # instanceIds value (id*1000+k), None for non-instance classes
    depth_m: float
    disparity_raw: int            # uint16 disparity PNG value of every pixel (0 = invalid)
    bbox: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive)


@dataclass
class SynthFrame:
    split: str
    city: str
    frame_id: str
    speed_mps: float
    fx: float
    baseline: float
    objects: list[SynthObject]
    source: str                   # 'frames' (annotated) or 'sequence'


@dataclass
class SynthInfo:
    root: Path
    frames: list[SynthFrame] = field(default_factory=list)
    width: int = 0
    height: int = 0


# object templates: label, instance index (None = no instance ids), depth at the annotated frame,
# approach speed (m per frame), size (m), horizontal centre (fraction of width), height above
# ground (m), whether disparity is invalid
_OBJECTS = [
    ("car", 1, 80.0, 1.0, (1.8, 1.5), 0.58, 0.0, False),
    ("traffic sign", None, 120.0, 0.0, (1.2, 1.2), 0.92, 3.0, False),
    ("bicycle", 0, 30.0, 0.2, (1.7, 1.1), 0.80, 0.0, True),
    ("car", 0, 12.0, 0.5, (1.8, 1.5), 0.36, 0.0, False),
    ("traffic sign", None, 15.0, 0.2, (0.8, 0.8), 0.08, 2.2, False),
    ("person", 0, 8.0, 0.2, (0.6, 1.75), 0.18, 0.0, False),
]
_SPEEDS = (12.0, 0.0, 8.0, 14.0)
Z_NEAR = 4.0          # depth of the ground at the bottom image row (m)
BUILDING_Z = 60.0
OBJ_TEX = 24          # side of an object's texture patch (stretched over its bounding box)
VEGETATION_Z = 40.0
# ``movers``: two more cars crossing the view from right to left at this depth, speed
# (fraction of the width per frame), one entering the view after the annotated frame (first
# visible at frame MOVER_ENTERS), one leaving it before (last visible at frame MOVER_LEAVES - 1):
# objects the annotated frame does not show, for sparse-label tests
MOVER_Z = 10.0
MOVER_SPEED = 0.02
MOVER_ENTERS = 22
MOVER_LEAVES = 16
MOVER_IDS = (26002, 26003)     # instanceIds of the entering and the leaving car


def _raw(z: float, fx: float, baseline: float) -> int:
    """uint16 PNG value of a surface at depth z (``p = d*256 + 1``)."""
    return int(min(65535, round(fx * baseline / z * 256.0) + 1))


class _Scene:
    """Static layout of one snippet at a given size; renders frame t."""

    def __init__(self, width: int, height: int, fx: float, baseline: float, seed: int,
                 movers: bool = False) -> None:
        self.w, self.h, self.fx, self.b = width, height, fx, baseline
        self.movers = movers
        self.rng = np.random.default_rng(seed)
        self.horizon = int(round(0.45 * height))
        self.ego = max(1, int(round(0.04 * height)))
        self.f_img = 0.55 * width           # focal length that sets object sizes in pixels
        # textures bigger than the frame so they can scroll
        # smooth noise (a few pixels of correlation), like real surfaces, not white noise
        from scipy.ndimage import gaussian_filter
        raw = gaussian_filter(self.rng.random((height * 2, width * 2), dtype=np.float32),
                              sigma=max(1.0, width / 256.0))
        raw = (raw - raw.min()) / max(float(raw.max() - raw.min()), 1e-6)
        self.tex = (raw * 255.0).astype(np.uint8)
        self.sprinkle = self.rng.random((height, width)) < 0.03
        # each object's own texture, in the object's coordinates (drawn after the scene's
        # textures, so those are unchanged): it moves and scales with the object
        self.obj_tex = []
        for _ in _OBJECTS:
            r = gaussian_filter(self.rng.random((OBJ_TEX, OBJ_TEX), dtype=np.float32), sigma=1.2,
                                mode="wrap")
            self.obj_tex.append((r - r.min()) / max(float(r.max() - r.min()), 1e-6))
        self.mover_tex = []
        if movers:                       # a generator of their own: the scene is unchanged
            mrng = np.random.default_rng(seed + 7919)
            for _ in MOVER_IDS:
                r = gaussian_filter(mrng.random((OBJ_TEX, OBJ_TEX), dtype=np.float32), sigma=1.2,
                                    mode="wrap")
                self.mover_tex.append((r - r.min()) / max(float(r.max() - r.min()), 1e-6))

    def ground_row(self, z: float) -> int:
        """Image row of the ground at depth z."""
        return int(round(self.horizon + (self.h - self.horizon) * Z_NEAR / z))

    def render(self, t: int, city: str, snippet: int) -> tuple[dict[str, np.ndarray], list[SynthObject], list[dict]]:
        h, w = self.h, self.w
        L = {n: name2label[n].id for n in ("sky", "building", "vegetation", "road", "sidewalk",
                                          "ego vehicle", "pole")}
        labels = np.full((h, w), L["sky"], np.uint8)
        disp = np.zeros((h, w), np.uint16)
        yy, xx = np.mgrid[0:h, 0:w]
        top_build = int(0.18 * h)
        build = (yy >= top_build) & (yy < self.horizon) & ((xx < 0.42 * w) | (xx >= 0.62 * w))
        veg = (yy >= int(0.3 * h)) & (yy < self.horizon) & (xx >= 0.42 * w) & (xx < 0.62 * w)
        labels[build] = L["building"]
        disp[build] = _raw(BUILDING_Z, self.fx, self.b)
        labels[veg] = L["vegetation"]
        disp[veg] = _raw(VEGETATION_Z, self.fx, self.b)
        ground = yy >= self.horizon
        rows = np.arange(h, dtype=np.float64)
        with np.errstate(divide="ignore"):
            z_row = Z_NEAR * (h - self.horizon) / np.maximum(rows - self.horizon, 0.5)
        ground_raw = np.array([_raw(z, self.fx, self.b) for z in z_row], np.uint16)
        # sidewalks: the outer wedges of the ground
        frac = (yy - self.horizon) / max(1, h - self.horizon)
        side = ground & ((xx < (0.3 - 0.25 * frac) * w) | (xx >= (0.7 + 0.25 * frac) * w))
        labels[ground] = L["road"]
        labels[side] = L["sidewalk"]
        disp[ground] = ground_raw[yy[ground]]
        pole = (xx >= int(0.66 * w)) & (xx < int(0.66 * w) + max(1, w // 128)) & (yy >= int(0.1 * h)) & (yy < self.ground_row(25.0))
        labels[pole] = L["pole"]
        disp[pole] = _raw(25.0, self.fx, self.b)
        disp[self.sprinkle & (labels != L["sky"])] = 0
        labels[h - self.ego:] = L["ego vehicle"]
        disp[h - self.ego:] = 0

        inst = labels.astype(np.uint16)
        # RGB: class colour modulated by a scrolling texture
        from cityscapesscripts.helpers.labels import id2label
        palette = np.zeros((256, 3), np.float32)
        for lid, lab in id2label.items():
            if 0 <= lid < 256:
                palette[lid] = lab.color
        sy, sx = (3 * t) % h, (2 * t) % w
        tex = self.tex[sy:sy + h, sx:sx + w].astype(np.float32) / 255.0
        polygons = [
            {"label": "sky", "polygon": [[0, 0], [w, 0], [w, self.horizon], [0, self.horizon]]},
            {"label": "road", "polygon": [[0, self.horizon], [w, self.horizon], [w, h], [0, h]]},
            {"label": "ego vehicle", "polygon": [[0, h - self.ego], [w, h - self.ego], [w, h], [0, h]]},
        ]

        objects: list[SynthObject] = []
        objmask = np.zeros((h, w), bool)
        objtex = np.zeros((h, w), np.float32)
        for k, (label, idx, z19, rate, (mw, mh), cx, above, invalid) in enumerate(_OBJECTS):
            z = z19 + rate * (ANNOTATED - t)
            bw = max(3, int(round(mw * self.f_img / z)))
            bh = max(3, int(round(mh * self.f_img / z)))
            base = min(self.ground_row(z) - int(round(above * self.f_img / z)), h - self.ego - 1)
            y1 = max(base, bh)
            y0 = y1 - bh
            x0 = int(round(cx * w - bw / 2))
            x0 = min(max(x0, 0), w - bw)
            x1 = x0 + bw
            lid = name2label[label].id
            labels[y0:y1, x0:x1] = lid
            iid = lid * 1000 + idx if idx is not None else None
            inst[y0:y1, x0:x1] = iid if iid is not None else lid
            raw = 0 if invalid else _raw(z, self.fx, self.b)
            disp[y0:y1, x0:x1] = raw
            objmask[y0:y1, x0:x1] = True
            objtex[y0:y1, x0:x1] = _stretch(self.obj_tex[k], bw, bh)
            # painted later, so nearer objects overwrite farther ones: recompute truth below
            objects.append(SynthObject(label, iid, float(z), raw, (x0, y0, x1, y1)))
            polygons.append({"label": label, "polygon": [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]})
        for iid, first_x, tex_k in zip(MOVER_IDS, (MOVER_ENTERS - 1, MOVER_LEAVES),
                                       self.mover_tex):
            # entering: its left edge at the right border at frame MOVER_ENTERS - 1; leaving:
            # its right edge at the left border at frame MOVER_LEAVES
            bw = max(3, int(round(1.8 * self.f_img / MOVER_Z)))
            bh = max(3, int(round(1.5 * self.f_img / MOVER_Z)))
            y1 = min(self.ground_row(MOVER_Z), h - self.ego - 1)
            y0 = y1 - bh
            shift = int(round(MOVER_SPEED * w * (first_x - t)))
            x0 = w + shift if iid == MOVER_IDS[0] else shift - bw
            x1 = x0 + bw
            cx0, cx1 = max(x0, 0), min(x1, w)
            if cx1 <= cx0:
                continue
            labels[y0:y1, cx0:cx1] = name2label["car"].id
            inst[y0:y1, cx0:cx1] = iid
            raw = _raw(MOVER_Z, self.fx, self.b)
            disp[y0:y1, cx0:cx1] = raw
            objmask[y0:y1, cx0:cx1] = True
            objtex[y0:y1, cx0:cx1] = _stretch(tex_k, bw, bh)[:, cx0 - x0:cx1 - x0]
            objects.append(SynthObject("car", iid, MOVER_Z, raw, (cx0, y0, cx1, y1)))
            polygons.append({"label": "car", "polygon": [[cx0, y0], [cx1, y0], [cx1, y1], [cx0, y1]]})
        # objects' own texture, attached to the object: it moves and scales with its bounding box
        # (so an object's image motion is known exactly); a luminance term keeps it visible in
        # grey for dark classes (a car is (0, 0, 142))
        rgb = palette[labels] * (0.6 + 0.4 * tex[..., None])
        ot = objtex[objmask, None]
        rgb[objmask] = np.minimum(palette[labels[objmask]] * (0.4 + 0.6 * ot) + 90.0 * ot, 255.0)
        # lane markings that scroll towards the camera, windows on the buildings
        lane = ground & (np.abs(xx - w / 2) < (0.004 + 0.01 * frac) * w) & (((yy + 3 * t) // max(2, h // 24)) % 2 == 0)
        rgb[lane & (labels == L["road"])] = 235.0
        win = build & ((yy // max(2, h // 40)) % 3 == 1) & ((xx // max(2, w // 60)) % 3 == 1)
        rgb[win] *= 0.55
        colour = np.concatenate([palette[labels], np.full((h, w, 1), 255, np.float32)], axis=2)
        files = {"rgb": rgb.astype(np.uint8), "labels": labels, "inst": inst, "disp": disp,
                 "color": colour.astype(np.uint8)}
        return files, objects, polygons


def _stretch(patch: np.ndarray, bw: int, bh: int) -> np.ndarray:
    """``patch`` (float32 in 0..1) bilinearly resampled to ``bh`` x ``bw``: pixel centres map to
    the same relative positions whatever the size, so the texture follows the box."""
    ph, pw = patch.shape
    ys = np.clip((np.arange(bh, dtype=np.float64) + 0.5) * ph / bh - 0.5, 0, ph - 1)
    xs = np.clip((np.arange(bw, dtype=np.float64) + 0.5) * pw / bw - 0.5, 0, pw - 1)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, ph - 1), np.minimum(x0 + 1, pw - 1)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    top = patch[y0][:, x0] * (1 - fx) + patch[y0][:, x1] * fx
    bot = patch[y1][:, x0] * (1 - fx) + patch[y1][:, x1] * fx
    return (top * (1 - fy) + bot * fy).astype(np.float32)


def sequence_frames(*, width: int = 256, height: int = 128, seed: int = 0, city_index: int = 0,
                    sequence: int = 0, fx: float = 2262.52, baseline: float = 0.209313,
                    movers: bool = False) -> list[dict]:
    """The rendered arrays of every frame of one synthesized snippet, as ``synthesize`` writes
    them (same arguments -> same arrays): per frame a dict with ``rgb``, ``labels`` (labelIds),
    ``inst`` (instanceIds), ``disp`` (raw disparity) and ``objects`` (SynthObject list). The
    per-frame truth of a sequence, of which only frame ANNOTATED is written as gtFine.
    ``movers``: add the two crossing cars (MOVER_IDS) that frame ANNOTATED does not show."""
    scene = _Scene(width, height, fx, baseline, seed * 1000 + city_index * 100 + sequence, movers)
    out = []
    for t in range(SNIPPET):
        files, objs, _ = scene.render(t, "", sequence)
        out.append({**files, "objects": objs})
    return out


def _camera(fx: float, baseline: float, w: int, h: int) -> dict:
    return {"extrinsic": {"baseline": baseline, "pitch": 0.038, "roll": 0.0, "x": 1.7, "y": 0.1,
                          "yaw": -0.0195, "z": 1.22},
            "intrinsic": {"fx": fx, "fy": fx, "u0": w / 2.0, "v0": h / 2.0}}


def _vehicle(speed: float) -> dict:
    return {"gpsHeading": 180.0, "gpsLatitude": 50.78, "gpsLongitude": 6.08,
            "outsideTemperature": 12.0, "speed": round(speed, 4), "yawRate": 0.0}


def synthesize(out: str | Path, *, split: str = "val", cities: tuple[str, ...] | list[str] = ("lindau",),
               sequences_per_city: int = 1, width: int = 256, height: int = 128, seed: int = 0,
               with_sequences: bool = True, fx: float = 2262.52, baseline: float = 0.209313,
               speeds: tuple[float, ...] | None = None, movers: bool = False,
               frame_labels: bool = False) -> SynthInfo:
    """Write a synthetic Cityscapes root at ``out``; return the ground truth.

    movers: add two cars crossing the view that the annotated frame does not show (one enters
        after it, one leaves before it; see MOVER_IDS).
    frame_labels: also write every sequence frame's true labels as a per-frame labels folder
        ``labels_sequence/<split>/<city>/<id>_{labelIds,instanceIds}.png`` (for --labels-root).
    """
    check_size(width, height)
    check_count(sequences_per_city, "--sequences-per-city", 1, MAX_SEQUENCES)
    check_count(seed, "--seed", 0)
    split = check_component(split, "--split")
    cities = check_names(cities, "--cities")
    root = check_output_path(out, "--out")
    info = SynthInfo(root, [], width, height)
    speeds = tuple(speeds) if speeds else _SPEEDS
    for ci, city in enumerate(cities):
        for s in range(sequences_per_city):
            scene = _Scene(width, height, fx, baseline, seed * 1000 + ci * 100 + s, movers)
            v19 = speeds[(ci + s) % len(speeds)]
            snippet = f"{city}_{s:06d}"
            frames = range(SNIPPET) if with_sequences else [ANNOTATED]
            for t in frames:
                fid = f"{snippet}_{t:06d}"
                speed = max(0.0, v19 + 0.05 * (t - ANNOTATED)) if v19 > 0 else 0.0
                files, objs, polys = scene.render(t, city, s)
                if with_sequences:
                    _write_seq(root, split, city, fid, files, speed)
                    if frame_labels:
                        lab = root / "labels_sequence" / split / city
                        write_png(lab / f"{fid}_labelIds.png", files["labels"])
                        write_png(lab / f"{fid}_instanceIds.png", files["inst"])
                    info.frames.append(SynthFrame(split, city, fid, speed, fx, baseline, objs, "sequence"))
                if t == ANNOTATED:
                    _write_annotated(root, split, city, fid, files, polys, speed, fx, baseline)
                    info.frames.append(SynthFrame(split, city, fid, speed, fx, baseline, objs, "frames"))
    truth = asdict(info)
    del truth["root"]  # keep the files independent of where they were written
    write_json(root / "synth_truth.json", truth)
    return info


def _whole(value, what: str) -> int:
    """``value`` as an int (a bool or a float is refused, not truncated)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputError(f"synth: {what} must be a whole number, got {value!r}")
    return int(value)


def check_size(width, height) -> None:
    """A frame size the synthesizer can draw and hold in memory: each side MIN_SIDE..MAX_SIDE
    px and at most MAX_PIXELS in all (its textures are four times the frame, as float32),
    refused before anything is allocated or written."""
    w, h = _whole(width, "--width"), _whole(height, "--height")
    for name, v in (("--width", w), ("--height", h)):
        if not MIN_SIDE <= v <= MAX_SIDE:
            raise InputError(f"synth: {name} must be between {MIN_SIDE} and {MAX_SIDE} px, got {v}")
    if w * h > MAX_PIXELS:
        raise InputError(f"synth: a {w}x{h} frame is {w * h / 1e6:.0f} Mpx; at most "
                         f"{MAX_PIXELS / 1e6:.1f} Mpx (e.g. 4096x2048, twice Cityscapes' 2048x1024): "
                         "choose a smaller --width/--height")


def check_count(value, what: str, low: int, high: int | None = None) -> int:
    """``value`` as a whole number in ``low..high`` (no top: None); InputError naming the
    option otherwise."""
    v = _whole(value, what)
    if v < low or (high is not None and v > high):
        raise InputError(f"synth: {what} must be " + (f"at least {low}" if high is None else
                                                        f"between {low} and {high}") + f", got {v}")
    return v


def _write_seq(root: Path, split: str, city: str, fid: str, f: dict, speed: float) -> None:
    write_png(root / "leftImg8bit_sequence" / split / city / f"{fid}_leftImg8bit.png", f["rgb"])
    write_png(root / "disparity_sequence" / split / city / f"{fid}_disparity.png", f["disp"])
    write_json(root / "vehicle_sequence" / split / city / f"{fid}_vehicle.json", _vehicle(speed))


def _write_annotated(root: Path, split: str, city: str, fid: str, f: dict, polys: list,
                     speed: float, fx: float, baseline: float) -> None:
    h, w = f["labels"].shape
    gt = root / "gtFine" / split / city
    write_png(root / "leftImg8bit" / split / city / f"{fid}_leftImg8bit.png", f["rgb"])
    write_png(gt / f"{fid}_gtFine_labelIds.png", f["labels"])
    write_png(gt / f"{fid}_gtFine_instanceIds.png", f["inst"])
    write_png(gt / f"{fid}_gtFine_color.png", f["color"])
    write_json(gt / f"{fid}_gtFine_polygons.json", {"imgHeight": h, "imgWidth": w, "objects": polys})
    write_png(root / "disparity" / split / city / f"{fid}_disparity.png", f["disp"])
    write_json(root / "camera" / split / city / f"{fid}_camera.json", _camera(fx, baseline, w, h))
    write_json(root / "vehicle" / split / city / f"{fid}_vehicle.json", _vehicle(speed))
