"""The Cityscapes layout: finding frames, snippets and clips, and reading their files.

Readers return plain numpy arrays / numbers and raise :class:`InputError` naming the file and
what is wrong with it, so a caller can record a skip with that reason.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import InputError
from .names import check_component, check_names
from .fileio import read_json, read_png

FPS = 17.0  # Cityscapes sequences are recorded at 17 Hz
ANNOTATED_INDEX = 19  # the annotated frame is the 20th frame of its 30-frame snippet
ID_RE = re.compile(r"^(?P<city>.+)_(?P<seq>\d{6})_(?P<frame>\d{6})$")


def parse_id(frame_id: str) -> tuple[str, int, int]:
    """``'lindau_000001_000019'`` -> ``('lindau', 1, 19)``."""
    m = ID_RE.match(frame_id)
    if not m:
        raise InputError(f"'{frame_id}' is not a Cityscapes frame id (<city>_<seq:06d>_<frame:06d>)")
    return m["city"], int(m["seq"]), int(m["frame"])


@dataclass(frozen=True)
class FrameRef:
    """One frame and the paths of its inputs (``None`` where the dataset has no such file)."""

    split: str
    city: str
    frame_id: str
    source: str                       # 'frames' (annotated set) or 'sequence'
    image: Path
    disparity: Path | None
    labels: Path | None
    instances: Path | None
    camera: Path | None
    vehicle: Path | None
    label_source: str = "gtFine"      # gtFine | hold:<ann id> | propagate:<ann id> | labels-root
    annotated: str = ""               # sequence frames: the snippet's annotated frame id
    annotated_disparity: Path | None = None   # ... and its disparity (distances without our own)
    labels_kind: str = "labelIds"     # what ``labels`` holds: labelIds, or trainIds (--labels-kind)

    @property
    def snippet(self) -> str:
        return self.frame_id.rsplit("_", 1)[0]


@dataclass(frozen=True)
class Clip:
    """What one encode produces: an ordered list of frames."""

    clip_id: str
    split: str
    city: str
    source: str                       # 'sequence' or 'frames'
    frame_ids: list[str]
    image_paths: list[Path]
    fps: float = FPS
    missing: list[str] = field(default_factory=list)  # expected but absent frame ids


def _exists(p: Path) -> Path | None:
    return p if p.is_file() else None


def check_root(root: str | Path, split: str, need: tuple[str, ...] = ("leftImg8bit",)) -> Path:
    """Check that ``root`` looks like a Cityscapes root; say which folder is missing. ``split``
    must be a plain name (it becomes a folder of every output)."""
    check_component(split, "--split")
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"--cityscapes-root {root}: no such directory")
    missing = [f"{root / d / split}" for d in need if not (root / d / split).is_dir()]
    if missing:
        present = sorted(p.name for p in root.iterdir() if p.is_dir())
        raise InputError(
            f"{root} is not a Cityscapes root for split '{split}': missing "
            f"{', '.join(missing)} (found: {', '.join(present) or 'nothing'}). Expected "
            "leftImg8bit/, gtFine/, disparity/, camera/, vehicle/ (and *_sequence/) folders; "
            "`roienc synth --out DIR` writes a small example.")
    return root


def list_cities(root: Path, folder: str, split: str, cities: list[str] | None) -> list[str]:
    """Cities under ``root/folder/split`` filtered by ``cities``; errors name the bad filter."""
    check_component(split, "--split")
    cities = check_names(cities, "--cities") if cities else cities
    base = root / folder / split
    available = sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
    if not cities:
        return available
    unknown = [c for c in cities if c not in available]
    if unknown:
        raise InputError(f"--cities: no city {', '.join(unknown)} under {base} "
                         f"(available: {', '.join(available) or 'none'})")
    return [c for c in available if c in cities]


def _frame_ids(folder: Path, suffix: str) -> list[str]:
    n = len(suffix)
    return sorted(p.name[:-n] for p in folder.glob(f"*{suffix}") if ID_RE.match(p.name[:-n]))


def find_annotated_frames(root: str | Path, split: str,
                          cities: list[str] | None = None) -> list[FrameRef]:
    """The annotated frames (``leftImg8bit``) with their gtFine/disparity/camera/vehicle files."""
    root = check_root(root, split)
    out = []
    for city in list_cities(root, "leftImg8bit", split, cities):
        for fid in _frame_ids(root / "leftImg8bit" / split / city, "_leftImg8bit.png"):
            gt = root / "gtFine" / split / city
            out.append(FrameRef(
                split, city, fid, "frames",
                image=root / "leftImg8bit" / split / city / f"{fid}_leftImg8bit.png",
                disparity=_exists(root / "disparity" / split / city / f"{fid}_disparity.png"),
                labels=_exists(gt / f"{fid}_gtFine_labelIds.png"),
                instances=_exists(gt / f"{fid}_gtFine_instanceIds.png"),
                camera=_exists(root / "camera" / split / city / f"{fid}_camera.json"),
                vehicle=_exists(root / "vehicle" / split / city / f"{fid}_vehicle.json"),
            ))
    return out


def _snippets(root: Path, split: str, city: str) -> dict[str, list[str]]:
    """``<city>_<seq>`` -> sorted frame ids of that snippet in leftImg8bit_sequence."""
    groups: dict[str, list[str]] = {}
    for fid in _frame_ids(root / "leftImg8bit_sequence" / split / city, "_leftImg8bit.png"):
        groups.setdefault(fid.rsplit("_", 1)[0], []).append(fid)
    return groups


def _annotated_of(root: Path, split: str, city: str, snippet: str, frame_ids: list[str]) -> str:
    """Id of the snippet's annotated frame: the one with gtFine/camera files, else index 19."""
    for folder, suffix in (("gtFine", "_gtFine_labelIds.png"), ("camera", "_camera.json"),
                           ("leftImg8bit", "_leftImg8bit.png")):
        found = sorted((root / folder / split / city).glob(f"{snippet}_*{suffix}"))
        if found:
            return found[0].name[:-len(suffix)]
    return frame_ids[min(ANNOTATED_INDEX, len(frame_ids) - 1)]


LABEL_SOURCES = ("propagate", "hold")
LABELS_KINDS = ("labelIds", "trainIds")


def _pattern(pattern: str, what: str) -> str:
    if "{frame_id}" not in pattern or "/" in pattern:
        raise InputError(f"--{what} {pattern!r}: a file name with a {{frame_id}} placeholder, e.g. "
                         "{frame_id}_labelIds.png")
    try:
        pattern.format(frame_id="x")
    except (KeyError, IndexError, ValueError):
        raise InputError(f"--{what} {pattern!r}: only the {{frame_id}} placeholder is known") from None
    return pattern


def _find_labels(labels_root: Path, split: str, city: str, fid: str,
                 labels_pattern: str = "{frame_id}_labelIds.png",
                 instances_pattern: str = "{frame_id}_instanceIds.png") -> tuple[Path | None, Path | None]:
    for folder in (labels_root / split / city, labels_root / city, labels_root):
        lab = folder / labels_pattern.format(frame_id=fid)
        if lab.is_file():
            return lab, _exists(folder / instances_pattern.format(frame_id=fid))
    return None, None


def find_sequence_frames(root: str | Path, split: str, cities: list[str] | None = None,
                         labels_root: str | Path | None = None, *,
                         labels_pattern: str = "{frame_id}_labelIds.png",
                         instances_pattern: str = "{frame_id}_instanceIds.png",
                         label_source: str = "propagate", label_every: int = 1,
                         labels_kind: str = "labelIds") -> list[FrameRef]:
    """Every frame of the 30-frame snippets, with per-frame disparity/speed and labels from
    ``labels_root`` (per-frame, e.g. predicted), else from the snippet's annotated gtFine frame,
    ``propagate``d along optical flow or ``hold``; the annotated frame keeps its own labels.

    With ``labels_root``, a snippet's frames that have a file there use it (``labels-root``);
    its annotated frame without one uses gtFine when that has it; the other frames get the
    labels of the labelled frames around them (``propagate:labels-root`` /
    ``hold:labels-root``). A snippet without any file there is left without labels (every frame
    is skipped, naming the file it looked for). ``label_every`` K keeps only the files of frames
    ``i`` with ``(i - annotated) % K == 0`` (experiments: how many labelled frames are needed).
    ``labels_kind``: whether the files hold labelIds or trainIds (mapped to labelIds on reading).
    """
    root = check_root(root, split, ("leftImg8bit_sequence",))
    if label_source not in LABEL_SOURCES:
        raise InputError(f"--label-source must be one of {', '.join(LABEL_SOURCES)}, got {label_source!r}")
    if labels_kind not in LABELS_KINDS:
        raise InputError(f"--labels-kind must be one of {', '.join(LABELS_KINDS)}, got {labels_kind!r}")
    if isinstance(label_every, bool) or not isinstance(label_every, int) or label_every < 1:
        raise InputError(f"--label-every must be an integer >= 1, got {label_every!r}")
    if label_every > 1 and not labels_root:
        raise InputError(f"--label-every {label_every} keeps every K-th frame of a per-frame "
                         "labels folder: give that folder with --labels-root DIR")
    labels_pattern = _pattern(labels_pattern, "labels-pattern")
    instances_pattern = _pattern(instances_pattern, "instances-pattern")
    lroot = Path(labels_root) if labels_root else None
    if lroot is not None and not lroot.is_dir():
        raise InputError(f"--labels-root {lroot}: no such directory")
    out = []
    for city in list_cities(root, "leftImg8bit_sequence", split, cities):
        for snippet, fids in sorted(_snippets(root, split, city).items()):
            ann = _annotated_of(root, split, city, snippet, fids)
            gt = root / "gtFine" / split / city
            cam = _exists(root / "camera" / split / city / f"{ann}_camera.json")
            ann_disp = (_exists(root / "disparity_sequence" / split / city / f"{ann}_disparity.png")
                        or _exists(root / "disparity" / split / city / f"{ann}_disparity.png"))
            found: dict[str, tuple[Path | None, Path | None]] = {}
            if lroot is not None:
                n_ann = parse_id(ann)[2]
                for fid in fids:
                    if (parse_id(fid)[2] - n_ann) % label_every == 0:
                        found[fid] = _find_labels(lroot, split, city, fid, labels_pattern,
                                                  instances_pattern)
                any_file = any(lab is not None for lab, _ in found.values())
            for fid in fids:
                kind = "labelIds"
                if lroot is not None:
                    labels, instances = found.get(fid, (None, None))
                    lsrc, kind = "labels-root", labels_kind
                    if labels is None and any_file:
                        if fid == ann and _exists(gt / f"{ann}_gtFine_labelIds.png"):
                            labels = gt / f"{ann}_gtFine_labelIds.png"
                            instances = _exists(gt / f"{ann}_gtFine_instanceIds.png")
                            lsrc, kind = "gtFine", "labelIds"
                        else:
                            lsrc = f"{label_source}:labels-root"
                else:
                    labels = _exists(gt / f"{ann}_gtFine_labelIds.png")
                    instances = _exists(gt / f"{ann}_gtFine_instanceIds.png")
                    lsrc = "gtFine" if fid == ann else f"{label_source}:{ann}"
                out.append(FrameRef(
                    split, city, fid, "sequence",
                    image=root / "leftImg8bit_sequence" / split / city / f"{fid}_leftImg8bit.png",
                    disparity=_exists(root / "disparity_sequence" / split / city / f"{fid}_disparity.png"),
                    labels=labels, instances=instances, camera=cam,
                    vehicle=_exists(root / "vehicle_sequence" / split / city / f"{fid}_vehicle.json"),
                    label_source=lsrc, annotated=ann, annotated_disparity=ann_disp,
                    labels_kind=kind,
                ))
    return out


def has_sequences(root: str | Path, split: str) -> bool:
    return (Path(root) / "leftImg8bit_sequence" / split).is_dir()


def find_clips(root: str | Path, split: str, cities: list[str] | None = None,
               source: str | None = None, sequence_ids: list[str] | None = None) -> list[Clip]:
    """Clips to encode: one per snippet (``source='sequence'``, the default when
    ``leftImg8bit_sequence`` exists) or one per city of annotated frames (``'frames'``)."""
    root = Path(root)
    if source is None:
        source = "sequence" if has_sequences(root, split) else "frames"
    clips: list[Clip] = []
    if source == "sequence":
        check_root(root, split, ("leftImg8bit_sequence",))
        for city in list_cities(root, "leftImg8bit_sequence", split, cities):
            folder = root / "leftImg8bit_sequence" / split / city
            for snippet, fids in sorted(_snippets(root, split, city).items()):
                nums = [parse_id(f)[2] for f in fids]
                expected = range(nums[0], nums[-1] + 1)
                missing = [f"{snippet}_{n:06d}" for n in expected if n not in set(nums)]
                clips.append(Clip(snippet, split, city, "sequence", fids,
                                  [folder / f"{f}_leftImg8bit.png" for f in fids], FPS, missing))
    elif source == "frames":
        check_root(root, split)
        for city in list_cities(root, "leftImg8bit", split, cities):
            folder = root / "leftImg8bit" / split / city
            fids = _frame_ids(folder, "_leftImg8bit.png")
            if fids:
                clips.append(Clip(f"{city}_frames", split, city, "frames", fids,
                                  [folder / f"{f}_leftImg8bit.png" for f in fids], FPS))
    else:
        raise InputError(f"--source must be 'sequence' or 'frames', got {source!r}")
    return select_clips(clips, sequence_ids, f"{root} split {split}")


def select_clips(clips: list[Clip], clip_ids: list[str] | None, where: str) -> list[Clip]:
    """The clips named by ``--sequence`` (all when none are named); an unknown name is an
    InputError that lists what ``where`` does hold."""
    if not clip_ids:
        return clips
    known = {c.clip_id for c in clips}
    unknown = [s for s in clip_ids if s not in known]
    if unknown:
        raise InputError(f"--sequence: no clip {', '.join(unknown)} in {where} "
                         f"(available: {', '.join(sorted(known)) or 'none'})")
    return [c for c in clips if c.clip_id in clip_ids]


# ---------------------------------------------------------------- readers

def _describe(arr: np.ndarray) -> str:
    return f"{arr.shape[2] if arr.ndim == 3 else 1} channel(s) of {arr.dtype}"


def read_disparity_raw(path: Path) -> np.ndarray:
    """Raw uint16 disparity (``d=(p-1)/256``, 0 = invalid)."""
    arr = read_png(path, "disparity")
    if arr.ndim != 2 or arr.dtype not in (np.uint8, np.uint16, np.int32):
        raise InputError(f"{path}: disparity must be a 16-bit grayscale PNG, got {_describe(arr)}")
    if arr.dtype == np.uint8:
        raise InputError(f"{path}: disparity is an 8-bit PNG; Cityscapes disparity is 16-bit "
                         "(d = (p - 1) / 256), and 8 bits would put every distance far off: use "
                         "the dataset's original 16-bit file")
    if arr.dtype != np.uint16:
        if arr.min() < 0 or arr.max() > 65535:
            raise InputError(f"{path}: disparity values outside uint16")
        arr = arr.astype(np.uint16)
    return arr


def _read_single_channel(path: Path, what: str) -> np.ndarray:
    arr = read_png(path, what)
    if arr.ndim != 2:
        raise InputError(f"{path}: {what} must be a single-channel image, got {_describe(arr)}")
    return arr


def read_label_ids(path: Path) -> np.ndarray:
    arr = _read_single_channel(path, "labelIds")
    if arr.dtype != np.uint8:
        if arr.min() < 0 or arr.max() > 255:
            raise InputError(f"{path}: label ids outside 0..255")
        arr = arr.astype(np.uint8)
    return arr


def train_to_label_lut() -> np.ndarray:
    """uint8 table trainId -> labelId from cityscapesScripts' ``trainId2label`` (255 -> the
    label it names, 'unlabeled'); entries of values that are no trainId are 255 (invalid)."""
    from cityscapesscripts.helpers.labels import trainId2label

    lut = np.full(256, 255, np.uint8)
    for tid, lab in trainId2label.items():
        if 0 <= tid < 256:
            lut[tid] = lab.id
    return lut


def read_frame_labels(ref: FrameRef) -> np.ndarray:
    """The labelIds of a frame's labels file (``ref.labels``), trainIds mapped to labelIds when
    ``ref.labels_kind`` says the file holds trainIds."""
    arr = read_label_ids(ref.labels)
    if ref.labels_kind != "trainIds":
        return arr
    lut = train_to_label_lut()
    bad = lut[arr] == 255
    if bad.any():
        vals = np.unique(arr[bad])
        raise InputError(f"{ref.labels}: values {', '.join(map(str, vals[:8]))} are no trainIds "
                         "(0..18, 255); if the file holds labelIds, use --labels-kind labelIds")
    return lut[arr]


def read_instance_ids(path: Path) -> np.ndarray:
    return _read_single_channel(path, "instanceIds").astype(np.int32)


MAX_SPEED_MPS = 150.0   # 540 km/h: anything above is a unit or data error, not a car


def _json_number(value) -> float:
    """A JSON number as float; ``true``/``false``, strings and null are not numbers."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"not a number: {value!r}")
    return float(value)


def read_camera(path: Path) -> tuple[float, float]:
    """``(fx, baseline)`` from a Cityscapes camera JSON."""
    doc = read_json(path)
    try:
        fx = _json_number(doc["intrinsic"]["fx"])
        baseline = _json_number(doc["extrinsic"]["baseline"])
    except (KeyError, TypeError, ValueError):
        raise InputError(f"{path}: camera JSON needs intrinsic.fx and extrinsic.baseline") from None
    if not (math.isfinite(fx) and fx > 0 and math.isfinite(baseline) and baseline > 0):
        raise InputError(f"{path}: fx={fx} and baseline={baseline} must be positive numbers")
    return fx, baseline


def read_speed(path: Path) -> float:
    """Ego speed (m/s) from a Cityscapes vehicle JSON."""
    doc = read_json(path)
    try:
        v = _json_number(doc["speed"])
    except (KeyError, TypeError, ValueError):
        raise InputError(f"{path}: vehicle JSON has no numeric 'speed'") from None
    if not math.isfinite(v) or v < 0 or v > MAX_SPEED_MPS:
        raise InputError(f"{path}: speed must be a non-negative number of m/s up to "
                         f"{MAX_SPEED_MPS:g}, got {v}")
    return v


_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def png_frame_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` of a PNG frame from its header, after checking that the file is a
    whole PNG (signature, header, the end chunk last): a truncated frame or another format saved
    as ``.png`` is an InputError naming it, before an encoder meets it."""
    try:
        with open(path, "rb") as f:
            head = f.read(24)
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 12))
            end = f.read(12)
    except OSError as exc:
        raise InputError(f"cannot read frame {path}: {exc.strerror}") from None
    if head[:8] != _PNG_SIG or head[12:16] != b"IHDR":
        kind = ("a JPEG" if head[:3] == b"\xff\xd8\xff" else "not a PNG")
        raise InputError(f"{path}: {kind} (the frame must be a PNG file): convert it to PNG "
                         "or replace it with the dataset's file")
    if end != _IEND:
        raise InputError(f"{path}: the PNG is truncated or damaged (no end chunk): replace it "
                         "with the dataset's file")
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def check_clip_frames(clip: "Clip") -> tuple[int, int]:
    """The frame size of ``clip``: every frame a whole PNG of the first one's size, else an
    InputError naming the frame (a video has one frame size; FFmpeg would rescale silently)."""
    first = None
    for p in clip.image_paths:
        wh = png_frame_size(Path(p))
        if first is None:
            first = wh
        elif wh != first:
            raise InputError(f"{p}: {wh[0]}x{wh[1]}, but {clip.image_paths[0]} is "
                             f"{first[0]}x{first[1]}: the frames of clip {clip.clip_id} must "
                             "all have one size")
    if first is None:
        raise InputError(f"clip {clip.clip_id} has no frames")
    return first


def read_rgb(path: Path) -> np.ndarray:
    """HxWx3 uint8 RGB of a camera picture."""
    return read_png(path, "leftImg8bit", rgb=True)
