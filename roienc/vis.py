"""Pictures of importance maps and object distances (numpy + cv2, no plot figures).

Colormaps come from matplotlib as 256-entry lookup tables built once (build-maps writes them as
PNG palettes); the distance annotation is drawn in place with cv2, so it stays cheap at 2048x1024.
"""
from __future__ import annotations

import functools

import cv2
import numpy as np
import pandas as pd

RED = (255, 40, 40)
BLUE = (40, 120, 255)


@functools.cache
def colormap_lut(name: str) -> np.ndarray:
    """uint8 (256, 3) RGB table of a matplotlib colormap."""
    from matplotlib import colormaps

    return (colormaps[name](np.linspace(0.0, 1.0, 256))[:, :3] * 255.0 + 0.5).astype(np.uint8)


def importance_to_uint8(importance: np.ndarray) -> np.ndarray:
    """``round(255 * importance)`` as uint8 (the importance PNG), importance clipped to [0, 1].
    A non-negative float32 map goes through cv2.convertScaleAbs: the same float32 product and
    round-half-to-even, saturated at 255, in one pass (7x numpy's clip, multiply, rint, cast)."""
    a = np.asarray(importance)
    if a.dtype == np.float32 and a.ndim == 2 and a.size and a.min() >= 0:   # NaN min: numpy
        return cv2.convertScaleAbs(a, alpha=255.0)
    return np.rint(np.clip(a, 0.0, 1.0) * 255.0).astype(np.uint8)


def importance_vis(importance_u8: np.ndarray, cmap: str = "hot") -> np.ndarray:
    """Full-size RGB rendering of an importance map through a colormap (no axes, no margins).
    build-maps writes it as a paletted PNG instead (the uint8 map with :func:`colormap_lut` as
    palette), which decodes to exactly these colours."""
    return np.take(colormap_lut(cmap), importance_u8, axis=0)  # take: ~3x faster than lut[idx]


_FONT = cv2.FONT_HERSHEY_SIMPLEX
_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))


def object_outlines(object_map: np.ndarray, thick: bool = False) -> np.ndarray:
    """Bool mask of object pixels with a 4-neighbour of another object (or of no object): the
    'inner' boundaries of skimage's ``find_boundaries`` (connectivity 1) inside objects; with
    ``thick`` also the object pixels 4-adjacent to those (a 2-pixel outline). cv2 morphology on
    a uint8/uint16/float32 copy of the map, the narrowest that holds every id (~10x faster than
    scipy's generic filters; uint8, for frames of fewer than 256 objects, 2.5x uint16)."""
    om = np.asarray(object_map)
    top = int(om.max()) if om.size else 0
    low = int(om.min()) if om.size else 0
    work = (om.astype(np.uint8) if 0 <= low and top < 256 else
            om.astype(np.uint16) if 0 <= low and top < 65536 else om.astype(np.float32))
    inside = om > 0
    edges = (cv2.dilate(work, _CROSS) != cv2.erode(work, _CROSS)) & inside
    if thick:
        edges = cv2.dilate(edges.view(np.uint8), _CROSS).view(bool) & inside
    return edges


def _put_text(canvas: np.ndarray, xy: tuple[int, int], text: str, colour, size: int,
              background=None) -> None:
    """``text`` about ``size`` px high with its top-left corner at ``xy`` (cv2 Hershey font,
    drawn in place), on a filled ``background`` box when given."""
    scale = size / 30.0
    thickness = max(1, round(size / 16))
    (tw, th), base = cv2.getTextSize(text, _FONT, scale, thickness)
    x, y = xy
    if background is not None:
        cv2.rectangle(canvas, (x, y), (x + tw + 1, y + th + base), background, cv2.FILLED)
    cv2.putText(canvas, text, (x, y + th), _FONT, scale, colour, thickness, cv2.LINE_AA)


def distance_annotation(image: np.ndarray, object_map: np.ndarray, objects: pd.DataFrame,
                        d_safe: float, speed_mps: float, title: str = "",
                        bgr: bool = False, bgr_out: bool = False) -> np.ndarray:
    """The camera image with each object's outline red (inside ``d_safe``) or blue (outside or
    unknown), ``'car: 12.3 m'`` beside it, and ``d_safe`` in a title bar above the image.

    ``(h + bar, w, 3)``, RGB (``bgr_out``: BGR, the order cv2 encodes). ``image`` is RGB
    (``bgr``: BGR as cv2 reads it); it is copied in once, swapped only when the orders differ.
    Drawn in place in the one output buffer with cv2 (outlines, text), so a 2048x1024 frame
    costs a few ms besides the copy."""
    h, w = object_map.shape
    size = max(10, h // 40)
    bar = size + size // 2 + 4
    canvas = np.empty((h + bar, w, 3), np.uint8)
    canvas[:bar] = 0
    pic = canvas[bar:]
    src = np.asarray(image)[:h, :w]
    if src.ndim == 2:
        src = np.repeat(src[:, :, None], 3, axis=2)
    src = src[:, :, :3]
    if bgr != bgr_out:
        cv2.cvtColor(np.ascontiguousarray(src), cv2.COLOR_BGR2RGB, dst=pic)  # a swap either way
    else:
        pic[...] = src
    red, blue = (RED[::-1], BLUE[::-1]) if bgr_out else (RED, BLUE)
    if len(objects):
        inside = np.concatenate(([False], objects["inside_safe"].to_numpy(bool)))
        # thicken the outline a little on large frames so it is visible
        idx = np.flatnonzero(object_outlines(object_map, thick=w >= 1024))
        near = inside[object_map.ravel()[idx]]
        flat = pic.reshape(-1, 3)
        flat[idx[near]] = red
        flat[idx[~near]] = blue
    head = f"d_safe = {d_safe:.1f} m at v = {speed_mps:.1f} m/s"
    _put_text(canvas, (4, 2), f"{title}   {head}" if title else head, (255, 255, 255), size)
    scale, thickness = size / 30.0, max(1, round(size / 16))
    for row in objects.itertuples(index=False):
        if row.pixels < 20:
            continue  # too small to label legibly
        dist = "unknown" if not np.isfinite(row.distance_m) else f"{row.distance_m:.1f} m"
        text = f"{row.label}: {dist}"
        (tw, th), base = cv2.getTextSize(text, _FONT, scale, thickness)
        x = min(max(int(row.x0), 0), max(w - tw - 2, 0))
        y = max(int(row.y0) + bar - th - base - 2, bar)
        _put_text(canvas, (x, y), text, red if row.inside_safe else blue, size, (0, 0, 0))
    return canvas
