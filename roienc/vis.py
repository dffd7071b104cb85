"""Pictures of importance maps and object distances (numpy + Pillow, no plot figures).

Colormaps come from matplotlib as 256-entry lookup tables built once; drawing a frame is a
table lookup plus a few Pillow calls, so it stays cheap at 2048x1024.
"""
from __future__ import annotations

import functools

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont
from skimage.segmentation import find_boundaries

RED = (255, 40, 40)
BLUE = (40, 120, 255)


@functools.cache
def colormap_lut(name: str) -> np.ndarray:
    """uint8 (256, 3) RGB table of a matplotlib colormap."""
    from matplotlib import colormaps

    return (colormaps[name](np.linspace(0.0, 1.0, 256))[:, :3] * 255.0 + 0.5).astype(np.uint8)


def importance_to_uint8(importance: np.ndarray) -> np.ndarray:
    """``round(255 * importance)`` as uint8 (the importance PNG)."""
    return np.rint(np.clip(importance, 0.0, 1.0) * 255.0).astype(np.uint8)


def importance_vis(importance_u8: np.ndarray, cmap: str = "hot") -> np.ndarray:
    """Full-size RGB rendering of an importance map through a colormap (no axes, no margins)."""
    return np.take(colormap_lut(cmap), importance_u8, axis=0)  # take: ~3x faster than lut[idx]


@functools.cache
def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has no sized default font
        return ImageFont.load_default()


def distance_annotation(image: np.ndarray, object_map: np.ndarray, objects: pd.DataFrame,
                        d_safe: float, speed_mps: float, title: str = "") -> np.ndarray:
    """The camera image with each object's outline red (inside ``d_safe``) or blue (outside or
    unknown), ``'car: 12.3 m'`` beside it, and ``d_safe`` in a title bar above the image."""
    h, w = object_map.shape
    out = np.array(image[:h, :w, :3], dtype=np.uint8, copy=True)
    if len(objects):
        inside = np.concatenate(([False], objects["inside_safe"].to_numpy(bool)))
        edges = find_boundaries(object_map, mode="inner") & (object_map > 0)
        # thicken the outline a little on large frames so it is visible
        if w >= 1024:
            edges |= find_boundaries(np.where(edges, 0, object_map), mode="inner") & (object_map > 0)
        near = edges & inside[object_map]
        out[near] = RED
        out[edges & ~near] = BLUE
    size = max(10, h // 40)
    bar = size + size // 2 + 4
    canvas = Image.new("RGB", (w, h + bar), (0, 0, 0))
    canvas.paste(Image.fromarray(out), (0, bar))
    draw = ImageDraw.Draw(canvas)
    font = _font(size)
    head = f"d_safe = {d_safe:.1f} m at v = {speed_mps:.1f} m/s"
    draw.text((4, 2), f"{title}   {head}" if title else head, fill=(255, 255, 255), font=font)
    for row in objects.itertuples(index=False):
        if row.pixels < 20:
            continue  # too small to label legibly
        dist = "unknown" if not np.isfinite(row.distance_m) else f"{row.distance_m:.1f} m"
        colour = RED if row.inside_safe else BLUE
        x = min(max(int(row.x0), 0), max(w - 8 * size, 0))
        y = max(int(row.y0) + bar - size - 2, bar)
        text = f"{row.label}: {dist}"
        box = draw.textbbox((x, y), text, font=font)
        draw.rectangle(box, fill=(0, 0, 0))
        draw.text((x, y), text, fill=colour, font=font)
    return np.asarray(canvas)
