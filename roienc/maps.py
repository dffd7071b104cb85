"""build-maps: Cityscapes frames -> importance maps, QP maps, object tables; and their readers.

File I/O lives here; the numbers come from :mod:`roienc.importance` and :mod:`roienc.qpmap`.
Every output is written atomically, every frame gets a manifest row (ok, skipped with the
reason, or failed), and ``skip_existing`` resumes an interrupted run.
"""
from __future__ import annotations

import contextlib
import fcntl
import logging
import math
import os
import queue
import shutil
import threading
import time
import traceback
import zipfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from . import __version__
from .dataset import (MAX_SPEED_MPS, Clip, FrameRef, parse_id, find_annotated_frames, find_sequence_frames, read_camera,
                      read_disparity_raw, read_frame_labels, read_instance_ids, read_rgb,
                      read_speed)
from .defaults import QP as _DEFAULT
from .errors import InputError, MissingInput, describe_oserror
from .executor import ExecutorSpec, run_tasks
from .fileio import (ensure_dir, png_from_idat, png_idat, read_json, read_npz_member, write_bytes,
                     write_csv, write_jpeg, write_json, write_npy, write_npz, write_png)
from .importance import ImportanceParams, compute_importance
from .labels import ClassGroups, load_class_groups
from .names import check_component, check_names
from .propagate import PropagationParams
from .ratemodel import luma_activity
from .store import file_digest, key_of, locked_run
from .vis import colormap_lut, distance_annotation, importance_to_uint8

log = logging.getLogger(__name__)

MANIFEST_COLUMNS = ["split", "city", "frame_id", "source", "width", "height", "speed_mps",
                    "speed_source", "d_safe_m", "fx", "baseline", "camera_source",
                    "label_source", "annotated_frame", "label_steps", "label_sources",
                    "label_source_steps", "distance_source", "unseen_fraction",
                    "objects", "objects_inside_safe", "qp_roi_delta", "qp_background",
                    "rate_predicted_pct", "objects_unknown_distance", "distance_note",
                    "status", "reason", "key", "image_digest"]
# Parameters that change the maps: a resumed run must use the same values.
MANIFEST_FLUSH_S = 5.0  # rewrite the manifest at most this often while a run goes on
MAP_KEYS = ("cityscapes_root", "labels_root", "labels", "importance", "classes", "qp", "speed",
            "speed_override", "camera_file", "fx", "baseline")
# one row (and one set of files) per frame id: the annotated frame and sequence frame _000019
# are one frame; when a run builds both, the sequence frame's inputs win (see build_maps)
MANIFEST_KEY = ["split", "city", "frame_id"]
# how build-maps stores the importance map (--importance-format): a deflated .npz (lossless, about
# 1/150 of the float32 .npy at 2048x1024) or the float32 .npy of earlier versions
IMPORTANCE_FORMATS = ("npz", "npy")
IMPORTANCE_SUFFIXES = {"npz": "_importance.npz", "npy": "_importance.npy"}


@dataclass(frozen=True)
class QPParams:
    # Defaults chosen leave-one-out on the real aachen snippets (docs/results.md, "QP mapping"):
    # 32-px blocks (= x265's default qg-size, so the ROI adds no encoder setting), a block's
    # importance the mean of its 16x16 quarters' maxima, static classes (0.1) as the floor of the
    # ROI strength, and per frame the ROI offset (up to -6 QP) that a +9% rate budget affords,
    # the background left as the plain encoder codes it.
    block_size: int = _DEFAULT["block_size"]
    base_qp: int = _DEFAULT["base_qp"]
    delta: int = _DEFAULT["delta"]
    gamma: float = _DEFAULT["gamma"]
    block_stat: str = _DEFAULT["block_stat"]
    qp_normalize: str = _DEFAULT["qp_normalize"]
    background: int | None = _DEFAULT["background"]  # QP offset of importance 0 (None: = delta, symmetric)
    # Rate budget (percent, e.g. 5.0 = +5%): per frame the offsets whose bits, predicted from the
    # source picture's activity (roienc.ratemodel), stay within it; delta and background are then
    # the caps of the ROI's QP decrease and of the background's increase. None: fixed offsets.
    rate_budget: float | None = _DEFAULT["rate_budget"]
    activity_exponent: float = _DEFAULT["activity_exponent"]  # rate model: a block's bits ~ (luma std + 1) ** exponent
    # block importance at or below it counts as background (strength (imp-floor)/(1-floor)):
    # 0.1, the static classes' importance, keeps road and buildings out of the ROI delta
    floor: float = _DEFAULT["floor"]

    def __post_init__(self) -> None:
        if self.background is None:         # recorded as the value it stands for
            object.__setattr__(self, "background", self.delta)
        if self.block_size < 1:
            raise InputError(f"--block-size must be >= 1, got {self.block_size}")
        if not 0 <= self.base_qp <= 51:
            raise InputError(f"--base-qp must be in 0..51, got {self.base_qp}")
        if self.delta < 0 or self.base_qp - self.delta < 0 or self.base_qp + self.delta > 51:
            raise InputError(f"--delta {self.delta} with --base-qp {self.base_qp} leaves 0..51")
        if self.background < 0 or self.base_qp + self.background > 51:
            raise InputError(f"--background {self.background} with --base-qp {self.base_qp} "
                             "leaves 0..51 (it must be >= 0)")
        if not (math.isfinite(self.gamma) and self.gamma > 0):
            raise InputError(f"--gamma must be positive, got {self.gamma}")
        if self.block_stat not in ("mean", "max", "submax"):
            raise InputError(f"--block-stat must be 'mean', 'max' or 'submax', got {self.block_stat!r}")
        if self.qp_normalize not in ("none", "frame"):
            raise InputError(f"--qp-normalize must be 'none' or 'frame', got {self.qp_normalize!r}")
        if self.rate_budget is not None and not (math.isfinite(self.rate_budget)
                                                 and -50 <= self.rate_budget <= 200):
            raise InputError(f"--rate-budget is a percentage in -50..200, got {self.rate_budget}")
        if not (math.isfinite(self.floor) and 0 <= self.floor < 1):
            raise InputError(f"--floor must be in [0, 1), got {self.floor}")
        if not (math.isfinite(self.activity_exponent) and 0 <= self.activity_exponent <= 4):
            raise InputError(f"activity exponent must be in 0..4, got {self.activity_exponent}")

    @property
    def rate_mode(self) -> bool:
        return self.rate_budget is not None


@dataclass(frozen=True)
class BuildConfig:
    """Everything a per-frame task needs (picklable, sent to workers)."""

    out: Path
    importance: ImportanceParams = ImportanceParams()
    qp: QPParams = QPParams()
    groups: ClassGroups = field(default_factory=load_class_groups)
    speed: float | None = None            # for frames without vehicle JSON
    speed_override: float | None = None   # for every frame
    camera_file: str | None = None        # for frames without camera JSON
    fx: float | None = None
    baseline: float | None = None
    visualize_every: int = 30
    skip_existing: bool = False
    propagation: PropagationParams = PropagationParams()
    labels_pattern: str = "{frame_id}_labelIds.png"
    outputs: tuple[str, ...] = ("importance_png", "importance_vis", "qp_map_vis",
                                "distance_annotation")   # optional images written (IMAGE_OUTPUTS)
    # the annotation on a thread of its own (AnnotationJob): less wall time where a core is idle
    # (one worker), more CPU time where none is (measured on 2 busy cores: +15-25%), so off
    annotation_thread: bool = False
    # write <id>_activity.npy (the rate model's input) even without a rate budget: a sweep's
    # first maps, from which maps of rate-budget mappings are derived
    activity: bool = False
    importance_format: str = "npz"        # IMPORTANCE_FORMATS

    @property
    def needs_activity(self) -> bool:
        return self.activity or self.qp.rate_mode

    def key_doc(self) -> dict:
        """What of this configuration the maps of a frame depend on (its key's parameters)."""
        return {"importance": self.importance.as_dict(), "qp": asdict(self.qp),
                "classes": self.groups.as_dict(), "speed": self.speed,
                "speed_override": self.speed_override,
                "camera_file": file_digest(self.camera_file) if self.camera_file else None,
                "fx": self.fx, "baseline": self.baseline,
                "propagation": self.propagation.as_dict(), "labels_pattern": self.labels_pattern,
                "importance_format": self.importance_format, "activity": self.needs_activity}

    def __post_init__(self) -> None:
        if self.importance_format not in IMPORTANCE_FORMATS:
            raise InputError(f"--importance-format must be one of {', '.join(IMPORTANCE_FORMATS)}, "
                             f"got {self.importance_format!r}")
        bad = [o for o in self.outputs if o not in IMAGE_OUTPUTS]
        if bad:
            raise InputError(f"--outputs: unknown {', '.join(bad)}; choose 'all', 'maps' or a "
                             f"comma list of {', '.join(IMAGE_OUTPUTS)} (importance npy, objects "
                             "csv, near mask and QP maps are always written)")


# Optional image outputs of build-maps (--outputs): <id>_importance.png, _importance_vis.png,
# _qp_map_vis.png and _distance_annotation.jpg (every --visualize-every-th frame; a JPEG since
# it is the camera picture: 8 ms and 0.4 MB a 2048x1024 frame against 46 ms and 2 MB as PNG).
# Always written: _importance.npy, _objects.csv, _near_mask.png, _qp_map.npy, _qp_map.csv.
IMAGE_FILES = {"importance_png": "_importance.png", "importance_vis": "_importance_vis.png",
               "qp_map_vis": "_qp_map_vis.png", "distance_annotation": "_distance_annotation.jpg"}
LEGACY_ANNOTATION = "_distance_annotation.png"     # what versions before the JPEG wrote
IMAGE_OUTPUTS = tuple(IMAGE_FILES)


def parse_outputs(spec: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """``--outputs``: 'all' (default), 'maps' (no optional image) or a comma list of
    :data:`IMAGE_OUTPUTS`, as a tuple in canonical order."""
    if spec is None:
        return IMAGE_OUTPUTS
    items = [t.strip() for t in spec.split(",")] if isinstance(spec, str) else [str(t) for t in spec]
    items = [t for t in items if t]
    if items == ["all"]:
        return IMAGE_OUTPUTS
    if items == ["maps"] or not items:
        return ()
    bad = [t for t in items if t not in IMAGE_OUTPUTS]
    if bad:
        raise InputError(f"--outputs: unknown {', '.join(bad)}; choose 'all', 'maps' or a comma "
                         f"list of {', '.join(IMAGE_OUTPUTS)} (importance npy, objects csv, near "
                         "mask and QP maps are always written)")
    return tuple(o for o in IMAGE_OUTPUTS if o in items)


@dataclass
class BuildReport:
    out: Path
    manifest: pd.DataFrame
    params: dict

    @property
    def counts(self) -> dict[str, int]:
        return self.manifest["status"].value_counts().to_dict() if len(self.manifest) else {}


def frame_prefix(out: Path, split: str, city: str, frame_id: str) -> Path:
    return Path(out) / split / city / frame_id


def output_paths(prefix: Path, annotate: bool, outputs: tuple[str, ...] = IMAGE_OUTPUTS,
                 activity: bool = False, rate: bool = False,
                 importance_format: str = "npz") -> list[Path]:
    """The files a frame gets: the maps always, the optional images of ``outputs``
    (the annotation only when ``annotate``), the activity grid and the rate choice when asked."""
    names = [IMPORTANCE_SUFFIXES[importance_format], "_objects.csv", "_near_mask.png",
             "_qp_map.npy", "_qp_map.csv"]
    names += ["_activity.npy"] * activity + ["_rate.json"] * rate
    names += [IMAGE_FILES[o] for o in outputs if o != "distance_annotation" or annotate]
    return [prefix.with_name(prefix.name + n) for n in names]


def _resolve_speed(ref: FrameRef, cfg: BuildConfig) -> tuple[float, str]:
    if cfg.speed_override is not None:
        return cfg.speed_override, "option --speed-override"
    if ref.vehicle is not None:
        return read_speed(ref.vehicle), str(ref.vehicle)
    if cfg.speed is not None:
        return cfg.speed, "option --speed"
    folder = "vehicle_sequence" if ref.source == "sequence" else "vehicle"
    raise MissingInput(f"no vehicle JSON ({folder}/{ref.split}/{ref.city}/{ref.frame_id}_vehicle.json) "
                     "and no --speed: pass --speed V (m/s) to use a fixed ego speed")


def _resolve_camera(ref: FrameRef, cfg: BuildConfig) -> tuple[float, float, str]:
    if ref.camera is not None:
        fx, b = read_camera(ref.camera)
        return fx, b, str(ref.camera)
    if cfg.camera_file is not None:
        fx, b = read_camera(Path(cfg.camera_file))
        return fx, b, f"option --camera {cfg.camera_file}"
    if cfg.fx is not None and cfg.baseline is not None:
        return cfg.fx, cfg.baseline, "options --fx/--baseline"
    raise MissingInput(f"no camera JSON (camera/{ref.split}/{ref.city}/...{ref.frame_id[-6:]}_camera.json) "
                     "and no --camera FILE or --fx/--baseline: give the calibration explicitly")


def _new_row(ref: FrameRef) -> dict:
    row: dict = {c: None for c in MANIFEST_COLUMNS}
    row.update(split=ref.split, city=ref.city, frame_id=ref.frame_id, source=ref.source,
               label_source=ref.label_source, annotated_frame=ref.annotated or None,
               label_steps=_steps(ref), status="ok", reason="")
    if ref.source == "sequence" and not ref.label_source.endswith(":labels-root"):
        own = ref.label_source in ("gtFine", "labels-root")
        _label_sources(row, ref, [ref.frame_id if own else ref.annotated])
    return row


def _steps(ref: FrameRef) -> int | None:
    if ref.label_source == "labels-root":
        return 0
    if not ref.annotated or ref.label_source.endswith(":labels-root"):
        return None
    return parse_id(ref.frame_id)[2] - parse_id(ref.annotated)[2]


def _label_sources(row: dict, ref: FrameRef, sources: list[str]) -> None:
    """Manifest columns ``label_sources`` (the frames whose labels this frame's come from,
    ';'-separated ids) and ``label_source_steps`` (its signed offset from each)."""
    n = parse_id(ref.frame_id)[2]
    row["label_sources"] = ";".join(sources)
    row["label_source_steps"] = ";".join(str(n - parse_id(f)[2]) for f in sources)


def frame_inputs(ref: FrameRef) -> dict[str, Path | None]:
    """The files the maps of ``ref`` are made from (None: absent)."""
    return {"image": ref.image, "disparity": ref.disparity, "labels": ref.labels,
            "instances": ref.instances, "camera": ref.camera, "vehicle": ref.vehicle,
            "annotated_disparity": ref.annotated_disparity}


def _ref_doc(ref: FrameRef) -> dict:
    """A frame's part of a maps key: the digests of its input files and how its labels are had."""
    return {"frame_id": ref.frame_id, "source": ref.source, "label_source": ref.label_source,
            "annotated": ref.annotated, "labels_kind": ref.labels_kind,
            "files": {k: (file_digest(p) if p is not None else None)
                      for k, p in frame_inputs(ref).items()}}


def frame_keys(refs: list[FrameRef], cfg: BuildConfig) -> list[str]:
    """The key of each frame's maps: the contents of every input of the task that builds it (a
    snippet's frames are built together: labels travel along the flow, so every file of the
    snippet is an input of every frame), the map parameters and the roienc version."""
    task = key_of("maps-task", frames=[_ref_doc(r) for r in refs], config=cfg.key_doc())
    return [key_of("maps-frame", task=task, frame_id=r.frame_id) for r in refs]


def _prepare(ref: FrameRef, cfg: BuildConfig, annotate: bool, row: dict,
             old: dict | None = None) -> list[Path] | None:
    """Speed, camera and d_safe into ``row``; the output paths, or None when ``skip_existing``
    finds the frame's maps made from the same inputs (``old``, its manifest row, has the key
    ``row`` has) and its files read back whole: the row is then the old one. InputError for what
    the frame lacks."""
    speed, row["speed_source"] = _resolve_speed(ref, cfg)
    fx, baseline, row["camera_source"] = _resolve_camera(ref, cfg)
    row.update(speed_mps=speed, fx=fx, baseline=baseline)
    ip = cfg.importance
    row["d_safe_m"] = max(ip.min_safe_distance, speed * ip.t_react + speed ** 2 / (2 * ip.decel))
    if ref.labels is None and not ref.label_source.endswith(":labels-root"):
        where = (f"<labels-root>/.../{cfg.labels_pattern.format(frame_id=ref.frame_id)}"
                 if ref.label_source == "labels-root" else
                 f"gtFine/{ref.split}/{ref.city}/{ref.annotated or ref.frame_id}_gtFine_labelIds.png")
        raise MissingInput(f"no labels: {where} not found; build-maps needs gtFine labels or "
                         "--labels-root DIR with per-frame labelIds (e.g. from a segmentation model)")
    if ref.disparity is None and ref.source != "sequence":
        raise MissingInput(f"no disparity PNG (disparity/{ref.split}/{ref.city}/{ref.frame_id}_disparity.png)")
    prefix = frame_prefix(cfg.out, ref.split, ref.city, ref.frame_id)
    paths = output_paths(prefix, annotate, cfg.outputs, cfg.needs_activity, cfg.qp.rate_mode,
                         cfg.importance_format)
    if (cfg.skip_existing and old is not None and old.get("status") == "ok"
            and row.get("key") and old.get("key") == row["key"]
            and existing_outputs(paths, cfg.qp.block_size) is not None):
        row.update({c: old.get(c) for c in MANIFEST_COLUMNS if c in old},
                   reason="existing output kept")
        return None
    return paths


def _build(ref: FrameRef, cfg: BuildConfig, annotate: bool, row: dict, labels: np.ndarray,
           instances: np.ndarray | None, disp: np.ndarray, distance_source: str,
           disp_path: Path | None, pf=None) -> None:
    """Check sizes, compute importance, write the outputs, complete ``row``. ``pf``: the
    frame's :class:`roienc.propagate.PropagatedFrame` when its labels were propagated: its margin
    ring's importance is scaled by ``cfg.propagation.margin_importance`` and its unseen pixels
    (no label of the annotated frame reaches them) raised to ``unseen_importance``. With
    ``cfg.annotation_thread`` the annotation's picture is decoded on a thread while the
    importance is computed (:class:`AnnotationJob`)."""
    check_frame_sizes(ref, labels, instances, disp, disp_path)
    prefix = frame_prefix(cfg.out, ref.split, ref.city, ref.frame_id)
    job = (AnnotationJob(prefix, ref, row["speed_mps"])
           if annotate and "distance_annotation" in cfg.outputs and cfg.annotation_thread
           else None)
    try:
        ip = cfg.importance
        if distance_source.startswith("carried"):   # every carried pixel holds the object's exact
            ip = replace(ip, min_valid_pixels=1)     # median: one is as good as many
        fi = compute_importance(labels, instances, disp, row["fx"], row["baseline"],
                                row["speed_mps"], cfg.groups, ip)
        row.update(height=labels.shape[0], width=labels.shape[1], d_safe_m=fi.d_safe,
                   objects=len(fi.objects),
                   objects_inside_safe=int(fi.objects["inside_safe"].sum()),
                   distance_source=distance_source,
                   **distance_columns(fi.objects, disp, distance_source, ip))
        if pf is not None and pf.unseen is not None:
            prop = cfg.propagation
            row["unseen_fraction"] = round(float(np.count_nonzero(pf.unseen)) / pf.unseen.size, 4)
            if prop.margin_importance < 1 and pf.ring is not None:
                np.multiply(fi.importance, np.float32(prop.margin_importance), out=fi.importance,
                            where=pf.ring)
            if prop.unseen_importance > 0:
                np.maximum(fi.importance, np.float32(prop.unseen_importance), out=fi.importance,
                           where=pf.unseen)
    except BaseException:
        if job is not None:
            job.cancel()
        raise
    activity = luma_activity(read_rgb(ref.image)) if cfg.needs_activity else None
    row.update(write_frame_outputs(prefix, fi, cfg, ref if annotate else None, row["speed_mps"],
                                   job, activity))


def check_frame_sizes(ref: FrameRef, labels: np.ndarray, instances: np.ndarray | None = None,
                      disp: np.ndarray | None = None, disp_path: Path | None = None,
                      labels_path: Path | None = None) -> None:
    """The labels (and instances, disparity) of ``ref`` must be the size of its picture;
    InputError naming both files otherwise (reads the picture's header only)."""
    labels_path = labels_path or ref.labels
    try:
        with Image.open(ref.image) as im:
            img_size = im.size
    except (OSError, ValueError, SyntaxError) as exc:
        raise InputError(f"{ref.image}: cannot read the frame ({exc})") from None
    if img_size != labels.shape[::-1]:
        raise InputError(f"{labels_path}: labels are {labels.shape[1]}x{labels.shape[0]} but the "
                         f"frame {ref.image} is {img_size[0]}x{img_size[1]}: write labels at the "
                         "frame's size")
    if instances is not None and instances.shape != labels.shape:
        raise InputError(f"{ref.instances}: instanceIds are {instances.shape[1]}x"
                         f"{instances.shape[0]}, labelIds {labels.shape[1]}x{labels.shape[0]} "
                         f"({labels_path}): both must be the frame's size")
    if disp is not None and disp.shape != labels.shape:
        raise InputError(f"{disp_path}: disparity is {disp.shape[1]}x{disp.shape[0]}, labelIds "
                         f"{labels.shape[1]}x{labels.shape[0]} ({labels_path}): both must be the "
                         "frame's size")


def distance_columns(objects: pd.DataFrame, disp: np.ndarray, source: str,
                     ip: ImportanceParams) -> dict:
    """Manifest columns on the frame's distances: how many objects have none (importance 1, as
    if near) and why: no disparity at all, a disparity map without one valid pixel, or objects
    with fewer valid pixels than ``min_valid_pixels``."""
    unknown = int(objects["distance_m"].isna().sum()) if len(objects) else 0
    if not unknown:
        note = ""
    elif source == "unknown":
        note = "no disparity for this frame: every object's distance unknown"
    elif not np.any(disp):
        note = "the disparity map has no valid pixel (all 0): every object's distance unknown"
    else:
        note = (f"{unknown} object(s) with fewer than {ip.min_valid_pixels} valid disparity "
                "pixels: distance unknown")
    return {"objects_unknown_distance": unknown, "distance_note": note}


def _guard(row: dict, ref: FrameRef, fn) -> None:
    """Run ``fn()``; record a missing input the message says how to supply (``MissingInput``) as
    a skip, anything else (a corrupt, malformed or mismatched input, a refusing file system, a
    bug) as a failure in ``row``."""
    try:
        fn()
    except MissingInput as exc:
        row.update(status="skipped", reason=str(exc))
    except InputError as exc:
        row.update(status="failed", reason=str(exc))
    except OSError as exc:    # the file system refused: where and why (no space, permission, ...)
        row.update(status="failed", reason=describe_oserror(exc))
    except Exception as exc:  # a bug or an unforeseen file problem: record it, keep going
        log.debug("frame %s failed:\n%s", ref.frame_id, traceback.format_exc())
        row.update(status="failed", reason=f"{type(exc).__name__}: {exc}")


def _keyed_rows(refs: list[FrameRef], cfg: BuildConfig) -> list[dict]:
    """New manifest rows of ``refs`` with their keys and image digests (an input that cannot be
    read skips every frame of the task, naming it)."""
    rows = [_new_row(r) for r in refs]
    try:
        for row, key, r in zip(rows, frame_keys(refs, cfg), refs):
            row.update(key=key, image_digest=file_digest(r.image))
    except InputError as exc:
        for row in rows:
            row.update(status="failed", reason=str(exc))
    return rows


def process_frame(task: tuple) -> dict:
    """Build every output of one annotated frame; return its manifest row (never raises).
    ``task``: ``(ref, cfg, annotate, old_row)``, the last the frame's row of the manifest on disk."""
    ref, cfg, annotate, old = task
    row = _keyed_rows([ref], cfg)[0]
    if row["status"] != "ok":
        return row

    def work() -> None:
        if _prepare(ref, cfg, annotate, row, old) is None:
            return
        labels = read_frame_labels(ref)
        instances = read_instance_ids(ref.instances) if ref.instances is not None else None
        _build(ref, cfg, annotate, row, labels, instances, read_disparity_raw(ref.disparity),
               "own disparity", ref.disparity)
    _guard(row, ref, work)
    return row


def process_snippet(task: tuple) -> list[dict]:
    """Build the outputs of the frames of one snippet; return their rows (never raises).
    ``task``: ``(refs, cfg, annotate flags, old manifest rows)``.

    Labels: per-frame (``--labels-root``), else the annotated frame's, propagated along optical
    flow (``label_source='propagate'``, :mod:`roienc.propagate`, flow computed once per snippet
    and only when a frame still needs it) or held. With per-frame labels on some frames only
    (``label_source='propagate:labels-root'`` on the others), those others get the labels of the
    labelled frames before and after them (:func:`roienc.propagate.propagate_keyframes`), or with
    ``hold`` the nearest one's. Distances: the frame's own disparity when the
    dataset has it; else carried from the annotated frame: with propagated labels every object
    keeps the median disparity it had on the annotated frame (objects travel with their instance
    ids; components without instances get ids of their own before propagation); with per-frame
    (or sparse per-frame) labels the annotated disparity is warped along the flow; held labels
    use it as it is.
    """
    refs, cfg, flags, olds = task
    rows = _keyed_rows(refs, cfg)
    if rows[0]["status"] != "ok":
        return rows
    todo: list[int] = []        # frames still to build (not kept by skip_existing, not skipped)
    for i, (ref, row) in enumerate(zip(refs, rows)):
        def prepare(i=i, ref=ref, row=row) -> None:
            if _prepare(ref, cfg, flags[i], row, olds[i]) is not None:
                todo.append(i)
        _guard(row, ref, prepare)
    if not todo:
        return rows
    ann_idx = next((i for i, r in enumerate(refs) if r.frame_id == r.annotated), None)
    gap = [r.label_source.endswith(":labels-root") for r in refs]
    sparse = any(gap)           # per-frame labels on some frames: the others from those
    keyed = [i for i, r in enumerate(refs) if r.labels is not None]
    state: dict = {}

    def annotated() -> dict:
        """The annotated frame's arrays and, once, the propagation through the snippet."""
        if state:
            return state
        if ann_idx is None and not sparse:
            raise MissingInput(f"snippet {refs[0].snippet}: its annotated frame {refs[0].annotated} "
                             "is not among the sequence frames; use --label-source hold")
        got: dict = dict(disp=None, disp_path=None)
        if ann_idx is not None:
            a = refs[ann_idx]
            disp_path = a.disparity or a.annotated_disparity
            got.update(disp_path=disp_path,
                       disp=read_disparity_raw(disp_path) if disp_path is not None else None)
        if not sparse:
            if a.labels is None:
                raise MissingInput(f"snippet {a.snippet}: no labels for the annotated frame {a.frame_id}")
            got.update(labels=read_frame_labels(a),
                       instances=read_instance_ids(a.instances) if a.instances is not None else None)
            check_frame_sizes(a, got["labels"], got["instances"], got["disp"], got["disp_path"])
        need_flow = any(refs[i].label_source.startswith("propagate") or
                        (refs[i].label_source in ("labels-root", "gtFine")
                         and refs[i].disparity is None and i != ann_idx) for i in todo)
        disp = got["disp"]
        extra = {"disparity": disp} if disp is not None else {}
        lut = cfg.groups.group_lut()
        if need_flow and sparse:
            from .propagate import propagate_keyframes
            labs, pseudos = [], []
            for k in keyed:
                lab = read_frame_labels(refs[k])
                ins = read_instance_ids(refs[k].instances) if refs[k].instances is not None else None
                check_frame_sizes(refs[k], lab, ins)
                labs.append(lab)
                pseudos.append(object_instances(lab, ins, lut))
            distinct = distinct_object_ids(pseudos)
            keys = {k: (lab, pid) for k, lab, pid in zip(keyed, labs, distinct or pseudos)}
            frames = propagate_keyframes(lambda k: read_rgb(refs[k].image), keys, cfg.propagation,
                                         lut, n_frames=len(refs), extra=extra,
                                         extra_index=ann_idx if extra else None)
            # every object keeps the distance it had on its labelled frame (its median there of
            # that frame's own disparity, else of the annotated one's warped to it)
            carried: dict[int, float] | None = None
            if distinct is not None:
                carried = {}
                for k, (_, pid) in keys.items():
                    dk = (read_disparity_raw(refs[k].disparity) if refs[k].disparity is not None
                          else frames[k].extra.get("disparity"))
                    if dk is not None:
                        carried.update(carried_disparity_lut(pid, dk))
            got.update(frames=frames, carried=carried)
        elif need_flow:
            from .propagate import propagate_snippet
            pseudo = object_instances(got["labels"], got["instances"], lut)
            frames = propagate_snippet(lambda k: read_rgb(refs[k].image), ann_idx, got["labels"],
                                       pseudo, cfg.propagation, lut, n_frames=len(refs),
                                       extra=extra)
            got.update(frames=frames, pseudo=pseudo,
                       carried=carried_disparity_lut(pseudo, disp) if disp is not None else None)
        state.update(got)        # only once complete: a failure is raised again for every frame
        return state

    def nearest_key(i: int) -> int:
        if not keyed:
            raise MissingInput(f"snippet {refs[i].snippet}: no frame with labels")
        return min(keyed, key=lambda k: (abs(k - i), k))

    for i in todo:
        ref, row = refs[i], rows[i]

        def work(ref=ref, row=row, i=i) -> None:
            own = read_disparity_raw(ref.disparity) if ref.disparity is not None else None
            src = ref.label_source
            pf = None             # the PropagatedFrame when the labels are propagated
            if ref.labels is not None and (src in ("labels-root", "gtFine") or i == ann_idx):
                labels = read_frame_labels(ref)
                inst = read_instance_ids(ref.instances) if ref.instances is not None else None
                if own is not None:
                    disp, how, dpath = own, "own disparity", ref.disparity
                else:
                    st = annotated()
                    if st["disp"] is None:
                        disp, how, dpath = None, "unknown", None
                    elif i == ann_idx:
                        disp, how, dpath = st["disp"], "own disparity", st["disp_path"]
                    else:
                        disp = st["frames"][i].extra["disparity"]
                        how, dpath = f"warped from {ref.annotated}", st["disp_path"]
            elif gap[i]:
                st = annotated() if (src.startswith("propagate") or own is None) else {}
                if src.startswith("propagate"):
                    pf = st["frames"][i]
                    labels, inst = pf.labels, pf.instances
                    row["label_steps"] = pf.steps
                    _label_sources(row, ref, [refs[k].frame_id for k in pf.sources])
                else:                                   # hold: the nearest labelled frame's
                    k = nearest_key(i)
                    labels = read_frame_labels(refs[k])
                    inst = (read_instance_ids(refs[k].instances)
                            if refs[k].instances is not None else None)
                    row["label_steps"] = i - k
                    _label_sources(row, ref, [refs[k].frame_id])
                if own is not None:
                    disp, how, dpath = own, "own disparity", ref.disparity
                elif st.get("disp") is None and not (src.startswith("propagate") and st["carried"]):
                    disp, how, dpath = None, "unknown", None
                elif src.startswith("propagate") and st["carried"] is not None:
                    disp = carried_disparity(inst, st["carried"])
                    how, dpath = "carried from the labelled frames", st["disp_path"]
                elif src.startswith("propagate"):
                    disp = pf.extra["disparity"]
                    how, dpath = f"warped from {ref.annotated}", st["disp_path"]
                else:
                    disp, how, dpath = st["disp"], f"held from {ref.annotated}", st["disp_path"]
            else:
                st = annotated()
                if src.startswith("propagate"):
                    pf = st["frames"][i]
                    labels, inst = pf.labels, pf.instances
                    row["label_steps"] = pf.steps
                else:
                    labels, inst = st["labels"], st["instances"]
                if own is not None:
                    disp, how, dpath = own, "own disparity", ref.disparity
                elif st["disp"] is None:
                    disp, how, dpath = None, "unknown", None
                elif src.startswith("propagate"):
                    disp = carried_disparity(inst, st["carried"])
                    how, dpath = f"carried from {ref.annotated}", st["disp_path"]
                else:
                    disp, how, dpath = st["disp"], f"held from {ref.annotated}", st["disp_path"]
            if disp is None:       # no disparity anywhere: every object of unknown distance
                disp = np.zeros(labels.shape, np.uint16)
            _build(ref, cfg, flags[i], row, labels, inst, disp, how, dpath, pf)
        _guard(row, ref, work)
    return rows


def process_task(task: tuple) -> list[dict]:
    """One build-maps task: an annotated frame, or the frames of one snippet."""
    return process_snippet(task) if isinstance(task[0], list) else [process_frame(task)]


def object_instances(labels: np.ndarray, instances: np.ndarray | None,
                     group_lut: np.ndarray) -> np.ndarray:
    """An instanceIds image in which every dynamic object is an instance: real instances keep
    their ids, each connected component of a dynamic class without instances (traffic signs,
    crowds) gets ``label*1000 + k`` with a ``k`` no instance of that label uses. Propagated, these
    ids keep every object apart and let it carry its distance."""
    from .importance import object_map

    omap, ids = object_map(labels, instances, group_lut)
    out = (instances.astype(np.int32) if instances is not None else labels.astype(np.int32)).copy()
    if not ids:
        return out
    used: dict[int, int] = {}
    for oid, lid in ids:
        if "c" not in oid:
            used[lid] = max(used.get(lid, 0), int(oid) % 1000)
    pid = np.empty(len(ids) + 1, np.int32)
    pid[0] = 0
    for k, (oid, lid) in enumerate(ids, start=1):
        if "c" in oid:
            used[lid] = used.get(lid, 0) + 1
            pid[k] = lid * 1000 + used[lid]
        else:
            pid[k] = int(oid)
    obj = omap > 0
    out[obj] = pid[omap[obj]]
    return out


def distinct_object_ids(pseudos: list[np.ndarray]) -> list[np.ndarray] | None:
    """The object ids (>= 1000) of several frames' instanceIds renumbered so that no id is used
    in two of them (same class: ``label*1000 + k``): objects propagated from different labelled
    frames stay apart and each carries the distance it had on its own frame. None when a class
    would need more than 999 ids (then the ids are kept and distances are warped instead)."""
    nxt: dict[int, int] = {}
    out = []
    for p in pseudos:
        m = p >= 1000
        ids = np.unique(p[m])
        if not ids.size:
            out.append(p)
            continue
        new = np.empty_like(ids)
        for j, v in enumerate(ids):
            c = int(v) // 1000
            nxt[c] = nxt.get(c, 0) + 1
            if nxt[c] > 999:
                return None
            new[j] = c * 1000 + nxt[c]
        q = p.copy()
        q[m] = new[np.searchsorted(ids, p[m])]
        out.append(q)
    return out


def carried_disparity_lut(pseudo: np.ndarray, disp: np.ndarray) -> dict[int, float]:
    """Median raw disparity (valid pixels only) of every object id (>= 1000) of ``pseudo``."""
    from .importance import grouped_median

    ids = pseudo.ravel()
    d = disp.ravel()
    sel = (ids >= 1000) & (d > 0)
    uniq, inv = np.unique(ids[sel], return_inverse=True)
    if not len(uniq):
        return {}
    med, _ = grouped_median(inv + 1, d[sel], len(uniq))
    return {int(u): float(m) for u, m in zip(uniq, med)}


DENSE_IDS = 1 << 22   # ids below this are looked up in a table (32 MB at most), others by search


def carried_disparity(instances: np.ndarray, lut: dict[int, float]) -> np.ndarray:
    """A float64 'raw disparity' image: each object pixel carries its object's median from the
    annotated frame (0 = invalid elsewhere), so per-object medians equal the carried value."""
    keys = np.fromiter(lut.keys(), np.int64, len(lut))
    vals = np.fromiter(lut.values(), np.float64, len(lut))
    if not len(keys) or instances.size == 0:
        return np.zeros(instances.shape, np.float64)
    lo, hi = int(instances.min()), int(instances.max())
    if lo >= 0 and hi < DENSE_IDS:      # a table over every id: one gather (Cityscapes ids < 34000)
        table = np.zeros(hi + 1, np.float64)
        ok = (keys >= 0) & (keys <= hi)
        table[keys[ok]] = vals[ok]
        return table[instances]
    order = np.argsort(keys)
    keys, vals = keys[order], vals[order]
    pos = np.searchsorted(keys, instances).clip(0, len(keys) - 1)
    return np.where(keys[pos] == instances, vals[pos], 0.0)


def existing_outputs(paths: list[Path], block: int) -> tuple[tuple[int, int], pd.DataFrame] | None:
    """``((h, w), objects)`` when every output of a frame exists and reads back whole (arrays of
    consistent shapes, the object table parses, images open), else None: recompute the frame.
    Outputs are written atomically, so an incomplete one means outside damage, not our crash."""
    if not all(p.is_file() and p.stat().st_size > 0 for p in paths):
        return None
    by_end = {next((e for e in ("_importance.npy", "_importance.npz", "_qp_map.npy", "_objects.csv")
                    if p.name.endswith(e)), p.name): p for p in paths}
    try:
        imp_path = by_end.get("_importance.npz") or by_end["_importance.npy"]
        (h, w), dtype = importance_header(imp_path)
        qp = np.load(by_end["_qp_map.npy"], mmap_mode="r")
        if dtype != np.float32 or qp.shape != (-(-h // block), -(-w // block)):
            return None
        objs = pd.read_csv(by_end["_objects.csv"])
        if "inside_safe" not in objs:
            return None
        for png in (p for p in paths if p.suffix == ".png"):
            with Image.open(png) as im:
                im.verify()
        for jpg in (p for p in paths if p.suffix == ".jpg"):
            with Image.open(jpg) as im:          # a JPEG header, and the end-of-image marker
                if im.format != "JPEG" or not _ends_with(jpg, b"\xff\xd9"):
                    return None
        return (int(h), int(w)), objs
    except Exception:            # truncated npy, bad CSV, corrupt PNG: all mean "build again"
        return None


def _ends_with(path: Path, tail: bytes) -> bool:
    with open(path, "rb") as f:
        f.seek(-len(tail), os.SEEK_END)
        return f.read() == tail


class AnnotationJob:
    """The distance annotation of one frame on a thread of its own: it decodes the camera picture
    from the moment it is made (beside the importance computation), then draws and writes the
    JPEG once :meth:`draw` hands it the frame's importance (beside the map outputs). PNG decode,
    drawing, JPEG encode and file writes are cv2 and I/O that release the GIL, so this can save
    wall time where a core is idle; on busy cores it cost CPU and wall time (measured), hence
    ``BuildConfig.annotation_thread`` (off). :meth:`result` joins it and re-raises its error."""

    def __init__(self, prefix: Path, ref: FrameRef, speed: float) -> None:
        self._fi: queue.SimpleQueue = queue.SimpleQueue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(prefix, ref, speed), daemon=True,
                                        name=f"roienc-annotation-{ref.frame_id}")
        self._thread.start()

    def _run(self, prefix: Path, ref: FrameRef, speed: float) -> None:
        try:
            picture = read_rgb(ref.image)
            fi = self._fi.get()
            if fi is not None:
                write_annotation(prefix, fi, ref, speed, picture)
        except BaseException as exc:  # handed to the caller by result()
            self._error = exc

    def draw(self, fi) -> None:
        self._fi.put(fi)

    def cancel(self) -> None:
        """Draw nothing (unless already asked to); return once the thread has ended."""
        self._fi.put(None)
        self._thread.join()

    def result(self) -> None:
        self._thread.join()
        if self._error is not None:
            raise self._error


def write_annotation(prefix: Path, fi, ref: FrameRef, speed: float,
                     picture: np.ndarray | None = None) -> Path:
    """``<prefix>_distance_annotation.jpg``: the camera picture (``picture``, RGB, else read
    here; libspng decodes it 1.4-1.8x faster than cv2 to BGR, and the drawing swaps the channels
    once, into its canvas) with the objects' outlines and distances
    (:func:`roienc.vis.distance_annotation`), drawn and encoded in cv2's BGR order. Removes the
    frame's PNG annotation of an older version (the JPEG supersedes it)."""
    img = picture if picture is not None else read_rgb(ref.image)
    canvas = distance_annotation(img, fi.object_map, fi.objects, fi.d_safe, speed,
                                 title=ref.frame_id, bgr_out=True)
    path = write_jpeg(prefix.with_name(prefix.name + IMAGE_FILES["distance_annotation"]), canvas,
                      bgr=True)
    prefix.with_name(prefix.name + LEGACY_ANNOTATION).unlink(missing_ok=True)
    return path


def write_frame_outputs(prefix: Path, fi, cfg: BuildConfig, annotate_ref: FrameRef | None,
                        speed: float, annotation: AnnotationJob | None = None,
                        activity: np.ndarray | None = None) -> dict:
    """Write the importance, object and QP files of one frame, and the images of ``cfg.outputs``:
    the annotation when ``annotate_ref`` is given, after the others, or with
    ``cfg.annotation_thread`` through ``annotation`` (started earlier, else here) beside them; an
    error of either fails the frame once both have finished. The importance PNG and its 'hot'
    rendering share one deflate (the rendering is the same bytes with the colormap as palette).
    Returns the manifest columns of the QP mapping (:func:`_qp_columns`)."""
    ensure_dir(prefix.parent)
    annotate = annotate_ref is not None and "distance_annotation" in cfg.outputs
    if annotation is not None and not annotate:
        annotation.cancel()
        annotation = None
    if annotate and annotation is None and cfg.annotation_thread:
        annotation = AnnotationJob(prefix, annotate_ref, speed)
    if annotation is None:
        cols = _write_map_outputs(prefix, fi, cfg, activity)
        if annotate:
            write_annotation(prefix, fi, annotate_ref, speed)
        return cols
    annotation.draw(fi)
    try:
        cols = _write_map_outputs(prefix, fi, cfg, activity)
    except BaseException:
        annotation.cancel()      # nothing is written after the frame's row says it failed
        raise
    annotation.result()
    return cols


def near_mask(object_map: np.ndarray, objects: pd.DataFrame) -> np.ndarray:
    """Bool mask of the pixels of objects inside d_safe (written as a 1-bit PNG). A cv2 lookup
    on a uint8 copy of the map for frames of fewer than 256 objects (5x numpy's take)."""
    import cv2

    inside = objects["inside_safe"].to_numpy(bool)
    if not inside.any():
        return np.zeros(object_map.shape, bool)
    if len(inside) < 256:
        lut = np.zeros(256, np.uint8)
        lut[1:len(inside) + 1] = inside
        return cv2.LUT(object_map.astype(np.uint8), lut).view(bool)
    return np.concatenate(([False], inside))[object_map]


def _write_map_outputs(prefix: Path, fi, cfg: BuildConfig, activity: np.ndarray | None) -> dict:
    name = prefix.name
    want = set(cfg.outputs)
    for fmt, suffix in IMPORTANCE_SUFFIXES.items():     # one importance file a frame
        if fmt == cfg.importance_format:
            write_importance(prefix.with_name(name + suffix), fi.importance)
        else:
            prefix.with_name(name + suffix).unlink(missing_ok=True)
    if want & {"importance_png", "importance_vis"}:
        u8 = importance_to_uint8(fi.importance)
        h, w = u8.shape
        idat = png_idat(u8)
        if "importance_png" in want:
            write_bytes(prefix.with_name(name + "_importance.png"), png_from_idat(w, h, idat))
        if "importance_vis" in want:
            write_bytes(prefix.with_name(name + "_importance_vis.png"),
                        png_from_idat(w, h, idat, palette=colormap_lut("hot")))
    write_png(prefix.with_name(name + "_near_mask.png"), near_mask(fi.object_map, fi.objects))
    objs = fi.objects.copy()
    objs["distance_m"] = objs["distance_m"].round(3)
    write_csv(prefix.with_name(name + "_objects.csv"), objs.itertuples(index=False),
              header=list(objs.columns))
    if activity is not None:
        write_npy(prefix.with_name(name + "_activity.npy"), activity)
    return write_qp_files(prefix, fi.importance, activity, cfg.qp, vis="qp_map_vis" in want)


def write_importance(path: Path, importance: np.ndarray) -> Path:
    """The importance map as ``.npz`` (deflated, member ``importance``) or ``.npy`` by suffix."""
    if path.suffix == ".npz":
        return write_npz(path, importance, "importance")
    return write_npy(path, importance)


def importance_file(prefix: Path) -> Path:
    """The importance file of a frame (``<prefix>_importance.npz``, or the ``.npy`` of earlier
    versions and ``--importance-format npy``); the ``.npz`` name when neither exists."""
    npz = prefix.with_name(prefix.name + IMPORTANCE_SUFFIXES["npz"])
    npy = prefix.with_name(prefix.name + IMPORTANCE_SUFFIXES["npy"])
    return npy if npy.is_file() and not npz.is_file() else npz


def importance_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """``(shape, dtype)`` of an importance file, reading no pixels."""
    if path.suffix == ".npz":
        return read_npz_member(path, "importance", header_only=True)
    a = np.load(path, mmap_mode="r")
    return a.shape, a.dtype


def write_qp_files(prefix: Path, importance: np.ndarray, activity: np.ndarray | None,
                   q: QPParams, vis: bool = True) -> dict:
    """The QP grid of one frame under mapping ``q`` (with a rate budget: from its ``activity``,
    the choice written to ``<id>_rate.json``) and its files; returns the manifest columns."""
    from .qpmap import qp_map_from_importance, rate_qp_map, write_qp_outputs

    choice = None
    if q.rate_mode:
        if activity is None:
            raise InputError(f"{prefix.name}: a rate budget needs the frame's activity grid "
                             f"({prefix.name}_activity.npy); rebuild the maps with --rate-budget")
        qp, choice = rate_qp_map(importance, activity, budget_pct=q.rate_budget, block=q.block_size,
                                 stat=q.block_stat, base_qp=q.base_qp, delta=q.delta,
                                 background=q.background, gamma=q.gamma, normalize=q.qp_normalize,
                                 exponent=q.activity_exponent, floor=q.floor)
        write_json(prefix.with_name(prefix.name + "_rate.json"), choice.as_dict())
    else:
        qp = qp_map_from_importance(importance, block=q.block_size, stat=q.block_stat,
                                    base_qp=q.base_qp, delta=q.delta, gamma=q.gamma,
                                    normalize=q.qp_normalize, background=q.background,
                                    floor=q.floor)
    write_qp_outputs(prefix, qp, base_qp=q.base_qp, delta=max(q.delta, q.background), vis=vis)
    return _qp_columns(q, choice.as_dict() if choice is not None else None)


def _qp_columns(q: QPParams, choice: dict | None) -> dict:
    """Manifest columns of a frame's QP mapping: the offsets a rate budget chose, else the fixed ones."""
    if choice is None:
        return dict(qp_roi_delta=q.delta, qp_background=q.background, rate_predicted_pct=None)
    return dict(qp_roi_delta=choice["roi_delta"], qp_background=choice["background"],
                rate_predicted_pct=choice["predicted_pct"])


def _read_rate_choice(prefix: Path) -> dict | None:
    with contextlib.suppress(Exception):
        return read_json(prefix.with_name(prefix.name + "_rate.json"))
    return None


def _predicted_pct(prefix: Path) -> float | None:
    """The growth the rate model predicted for a frame (its ``_rate.json``), None without one."""
    choice = _read_rate_choice(prefix)
    pct = choice.get("predicted_pct") if isinstance(choice, dict) else None
    return float(pct) if isinstance(pct, (int, float)) and not isinstance(pct, bool) else None


def rate_predictions(maps_root: Path, split: str, city: str, frame_ids: list[str]) -> list[float | None]:
    """Per frame, the file growth (percent) the rate budget's model predicted for it, from the
    maps' ``<id>_rate.json``; None for a frame without one (fixed offsets, or not built)."""
    return [_predicted_pct(frame_prefix(Path(maps_root), split, city, fid)) for fid in frame_ids]


@contextlib.contextmanager
def _locked(out: Path):
    """An exclusive lock on ``out/.maps.lock`` while the manifest is read, merged and written, so
    concurrent build-maps runs into one folder keep each other's rows."""
    with open(out / ".maps.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def write_manifest(out: Path, rows: list[dict]) -> pd.DataFrame:
    """Merge the rows so far into the manifest on disk (rows of frames this run did not touch are
    kept, rows of frames it did are replaced), write it sorted and atomically, return it."""
    with _locked(out):
        path = out / "maps_manifest.csv"
        new = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
        frames = [new]
        if path.is_file():
            try:
                old = read_manifest(out)
            except Exception as exc:   # unreadable: say so, rebuild from this run's rows
                log.warning("%s unreadable (%s): rewritten from this run's rows", path, exc)
                old = None
            if old is not None and len(old):
                mine = set(map(tuple, new[MANIFEST_KEY].astype(str).to_numpy()))
                keep = [tuple(k) not in mine for k in old[MANIFEST_KEY].astype(str).to_numpy()]
                frames.insert(0, old[keep].reindex(columns=MANIFEST_COLUMNS))
        manifest = pd.concat(frames, ignore_index=True) if len(frames) > 1 else new
        for col in ("width", "height", "objects", "objects_inside_safe"):
            manifest[col] = pd.to_numeric(manifest[col], errors="coerce").astype("Int64")
        if len(manifest):
            manifest = manifest.sort_values(["split", "source", "frame_id"], kind="stable")
        write_csv(path, manifest.itertuples(index=False), header=MANIFEST_COLUMNS)
    return manifest


def build_params(cityscapes_root: Path, split: str, cities: list[str] | None, sequences: bool,
                 labels_root: str | None, cfg: BuildConfig, label_source: str = "propagate",
                 instances_pattern: str = "{frame_id}_instanceIds.png", label_every: int = 1,
                 labels_kind: str = "labelIds") -> dict:
    return {
        "roienc_version": __version__,
        "cityscapes_root": str(Path(cityscapes_root).resolve()),
        "split": split,
        "cities": cities,
        "sequences": sequences,
        "labels_root": str(labels_root) if labels_root else None,
        "labels": {"label_source": label_source if not labels_root else "labels-root",
                   "labels_pattern": cfg.labels_pattern if labels_root else None,
                   "instances_pattern": instances_pattern if labels_root else None,
                   # with --labels-root: frames without a file take the labelled frames' labels
                   # (propagated, or held with --label-source hold)
                   **({"gaps": label_source, "label_every": label_every,
                       "labels_kind": labels_kind} if labels_root else {}),
                   "propagation": cfg.propagation.as_dict()
                   if sequences and label_source == "propagate" else None},
        "importance": cfg.importance.as_dict(),
        "classes": cfg.groups.as_dict(),
        "qp": asdict(cfg.qp),
        "speed": cfg.speed,
        "speed_override": cfg.speed_override,
        "camera_file": cfg.camera_file,
        "fx": cfg.fx,
        "baseline": cfg.baseline,
        "visualize_every": cfg.visualize_every,
        "outputs": list(cfg.outputs),       # which optional images (not a map setting)
        "importance_format": cfg.importance_format,
        # flat copies for the readers of the maps (adapters, encode)
        "block_size": cfg.qp.block_size,
        "base_qp": cfg.qp.base_qp,
        "delta": cfg.qp.delta,
        "background": cfg.qp.background,
    }


def claim_folder(out: Path, params: dict, cities: list[str] | None, sequences: bool,
                 overwrite: bool) -> None:
    """Write ``out/params.json`` for a run with ``params``: refuse a folder holding maps of other
    settings (or delete them with ``overwrite``); with the same settings the run adds to it."""
    params_path = out / "params.json"
    with _locked(out):
        if params_path.exists():
            old = read_json(params_path)
            changed = [k for k in MAP_KEYS if old.get(k) != params.get(k)]
            if changed and not overwrite:
                raise InputError(
                    f"{out} holds maps built with different {', '.join(changed)}; adding frames "
                    "built with other settings would mix two kinds of maps in one folder (encodes "
                    "would read grids of one block size with the parameters of another). Use a "
                    "new --out, or --overwrite to delete the old maps first.")
            if changed:
                _remove_maps(out, old)
            else:   # same settings: this run adds to the folder; record every city it holds
                params["cities"] = (None if old.get("cities") is None or cities is None
                                    else sorted(set(old["cities"]) | set(cities)))
                params["sequences"] = bool(old.get("sequences")) or sequences
        write_json(params_path, params)


def derive_maps(src: str | Path, out: str | Path, qp: QPParams, *, overwrite: bool = False) -> BuildReport:
    """The maps of ``src`` under another QP mapping: importance, objects and pictures are linked
    (they do not depend on the mapping), QP grids recomputed from the importance. A frame's QP
    files are kept (resumable) only when its key (the source frame's key and ``qp``) is the one
    recorded in ``out``'s manifest and they read back whole."""
    src, out = Path(src), ensure_dir(out)
    with locked_run(out, f"derive-maps from {src}", wait=True):
        sp = load_params(src)
        params = dict(sp, qp=asdict(qp), block_size=qp.block_size, base_qp=qp.base_qp,
                      delta=qp.delta, background=qp.background, derived_from=str(src.resolve()))
        claim_folder(out, params, sp.get("cities"), bool(sp.get("sequences")), overwrite)
        man = read_manifest(src)
        old = _rows_by_frame(out)
        rows = []
        for row in man.to_dict("records"):
            row["key"] = key_of("maps-derived", source=row.get("key"), qp=asdict(qp))
            if row["status"] == "ok":
                try:
                    prev = old.get(_frame_key(row))
                    row.update(_derive_frame(src, out, row, qp,
                                             reuse=prev is not None and prev.get("key") == row["key"]))
                except (OSError, ValueError, InputError) as exc:
                    row.update(status="failed", reason=f"derive from {src}: {exc}")
            rows.append(row)
        manifest = write_manifest(out, rows)
    return BuildReport(out, manifest.reset_index(drop=True), params)


def _frame_key(row: dict) -> tuple[str, str, str]:
    return tuple(str(row[k]) for k in MANIFEST_KEY)


def _rows_by_frame(out: Path) -> dict[tuple[str, str, str], dict]:
    """The rows of ``out``'s manifest by frame (none when there is none, or it cannot be read)."""
    if not (Path(out) / "maps_manifest.csv").is_file():
        return {}
    try:
        return {_frame_key(r): r for r in read_manifest(out).to_dict("records")}
    except Exception as exc:
        log.warning("%s/maps_manifest.csv unreadable (%s): every frame is built again", out, exc)
        return {}


def _derive_frame(src: Path, out: Path, row: dict, qp: QPParams, reuse: bool = False) -> dict:
    a = frame_prefix(src, row["split"], row["city"], row["frame_id"])
    b = frame_prefix(out, row["split"], row["city"], row["frame_id"])
    ensure_dir(b.parent)
    for suffix in (*IMPORTANCE_SUFFIXES.values(), "_importance.png", "_importance_vis.png",
                   "_objects.csv", "_near_mask.png", "_activity.npy",
                   IMAGE_FILES["distance_annotation"], LEGACY_ANNOTATION):
        f, g = a.with_name(a.name + suffix), b.with_name(b.name + suffix)
        if not f.is_file():
            g.unlink(missing_ok=True)           # what the source no longer has
        elif not (g.is_file() and os.path.samefile(f, g)):
            g.unlink(missing_ok=True)
            try:
                os.link(f, g)
            except OSError:
                shutil.copy2(f, g)
    q_npy = b.with_name(b.name + "_qp_map.npy")
    imp_path = importance_file(a)
    h, w = importance_header(imp_path)[0]       # header only: a rerun reads no pixels
    want = (-(-h // qp.block_size), -(-w // qp.block_size))
    if reuse:
        with contextlib.suppress(Exception):
            if np.load(q_npy).shape == want and b.with_name(b.name + "_qp_map_vis.png").is_file():
                choice = _read_rate_choice(b) if qp.rate_mode else None
                if choice is not None or not qp.rate_mode:
                    return _qp_columns(qp, choice)
    act_path = b.with_name(b.name + "_activity.npy")
    activity = _read_npy(act_path, "activity grid") if act_path.is_file() else None
    return write_qp_files(b, _read_npy(imp_path, "importance map"), activity, qp)


def _remove_maps(out: Path, old_params: dict) -> None:
    """Delete what build-maps wrote into ``out`` (``--overwrite``): split folders, manifest, params."""
    splits = {old_params.get("split")}
    with contextlib.suppress(Exception):
        splits |= set(read_manifest(out)["split"].astype(str))
    for split in filter(None, splits):
        if (out / split).is_dir():
            shutil.rmtree(out / split)
    for name in ("maps_manifest.csv", "params.json"):
        (out / name).unlink(missing_ok=True)


def build_maps(cityscapes_root: str | Path, out: str | Path, *, split: str = "val",
               cities: list[str] | None = None, sequences: bool = False,
               annotated: bool = True, labels_root: str | Path | None = None,
               importance: ImportanceParams | None = None, qp: QPParams | None = None,
               classes: str | Path | None = None, speed: float | None = None,
               speed_override: float | None = None, camera: str | Path | None = None,
               fx: float | None = None, baseline: float | None = None,
               visualize_every: int = 30, skip_existing: bool = False,
               overwrite: bool = False, workers: int | None = None, executor: ExecutorSpec | None = None,
               progress: bool = True, label_source: str = "propagate",
               labels_pattern: str = "{frame_id}_labelIds.png",
               instances_pattern: str = "{frame_id}_instanceIds.png",
               propagation: PropagationParams | None = None,
               outputs: str | list[str] | tuple[str, ...] | None = None,
               annotation_thread: bool = False, activity: bool = False,
               label_every: int = 1, labels_kind: str = "labelIds",
               snippets: list[str] | None = None, importance_format: str = "npz") -> BuildReport:
    """Build the maps of every frame of ``split`` (annotated frames, and with ``sequences`` the
    snippet frames too) into ``out``; return the manifest. See docs in README;
    ``label_every``/``labels_kind``: :func:`roienc.dataset.find_sequence_frames`
    (docs/sparse-labels.md). ``snippets``: only the frames of these snippets (``aachen_000000``).

    One row and one set of files per frame id: where the annotated frame is also a frame of a
    snippet being built, the snippet's frame wins (its labels, ``disparity_sequence``, vehicle
    JSON). The whole run holds ``out`` (:func:`roienc.store.locked_run`): a second run into the
    same folder is refused. ``skip_existing`` keeps a frame only when its key (the digests of its
    input files, the parameters, the version) equals the one its manifest row recorded."""
    check_component(split, "split")                 # names that become folders of the output,
    cities = check_names(cities, "cities")          # checked before anything is written
    out = ensure_dir(out)
    with locked_run(out, "roienc build-maps", wait=True):
        return _build_maps(cityscapes_root, out, split=split, cities=cities, sequences=sequences,
                           annotated=annotated, labels_root=labels_root, importance=importance,
                           qp=qp, classes=classes, speed=speed, speed_override=speed_override,
                           camera=camera, fx=fx, baseline=baseline,
                           visualize_every=visualize_every, skip_existing=skip_existing,
                           overwrite=overwrite, workers=workers, executor=executor,
                           progress=progress, label_source=label_source,
                           labels_pattern=labels_pattern, instances_pattern=instances_pattern,
                           propagation=propagation, outputs=outputs,
                           annotation_thread=annotation_thread, activity=activity,
                           label_every=label_every, labels_kind=labels_kind, snippets=snippets,
                           importance_format=importance_format)


def _build_maps(cityscapes_root, out: Path, *, split, cities, sequences, annotated, labels_root,
                importance, qp, classes, speed, speed_override, camera, fx, baseline,
                visualize_every, skip_existing, overwrite, workers, executor, progress,
                label_source, labels_pattern, instances_pattern, propagation, outputs,
                annotation_thread, activity, label_every, labels_kind, snippets,
                importance_format) -> BuildReport:
    if (fx is None) != (baseline is None):
        raise InputError("--fx and --baseline go together: give both or neither")
    for name, v in (("--speed", speed), ("--speed-override", speed_override)):
        if v is not None and (not math.isfinite(v) or not 0 <= v <= MAX_SPEED_MPS):
            raise InputError(f"{name} must be a number of m/s in 0..{MAX_SPEED_MPS:g}, got {v}")
    if camera is not None:
        read_camera(Path(camera))  # fail early on a bad --camera file
    cfg = BuildConfig(out=out, importance=importance or ImportanceParams(), qp=qp or QPParams(),
                      groups=load_class_groups(classes), speed=speed,
                      speed_override=speed_override,
                      camera_file=str(camera) if camera is not None else None,
                      fx=fx, baseline=baseline, visualize_every=max(0, visualize_every),
                      skip_existing=skip_existing, propagation=propagation or PropagationParams(),
                      labels_pattern=labels_pattern, outputs=parse_outputs(outputs),
                      annotation_thread=annotation_thread, activity=activity,
                      importance_format=importance_format)

    refs: list[FrameRef] = []
    if annotated:
        refs += find_annotated_frames(cityscapes_root, split, cities)
    if sequences:
        refs += find_sequence_frames(cityscapes_root, split, cities, labels_root,
                                     labels_pattern=labels_pattern,
                                     instances_pattern=instances_pattern, label_source=label_source,
                                     label_every=label_every, labels_kind=labels_kind)
    if snippets is not None:
        want = set(snippets)
        refs = [r for r in refs if r.snippet in want]
    in_snippets = {(r.split, r.city, r.frame_id) for r in refs if r.source == "sequence"}
    twins = [r for r in refs if r.source != "sequence" and (r.split, r.city, r.frame_id) in in_snippets]
    if twins:     # one frame, one row: the snippet's frame (built with its neighbours) wins
        log.info("build-maps: %d annotated frames are built as frames of their snippets",
                 len(twins))
        refs = [r for r in refs if r.source == "sequence" or (r.split, r.city, r.frame_id)
                not in in_snippets]
    if not refs:
        raise InputError(f"no frames found under {cityscapes_root} for split '{split}'"
                         + (f" and cities {','.join(cities)}" if cities else "")
                         + (f" and snippets {','.join(snippets)}" if snippets else ""))

    params = build_params(Path(cityscapes_root), split, cities, sequences, labels_root, cfg,
                          label_source, instances_pattern, label_every, labels_kind)
    claim_folder(out, params, cities, sequences, overwrite)
    old = _rows_by_frame(out) if skip_existing else {}

    def old_row(r: FrameRef) -> dict | None:
        return old.get((r.split, r.city, r.frame_id))

    # annotated frames one task each; the frames of a snippet one task (flow is per snippet)
    every = cfg.visualize_every if "distance_annotation" in cfg.outputs else 0
    def annotate_it(i: int, r: FrameRef) -> bool:
        """Every ``every``-th annotated frame; in a snippet its annotated frame and every
        ``every``-th frame from it (the default 30: the annotated frame, _000019)."""
        if not every:
            return False
        if r.source == "sequence" and r.annotated:
            return (parse_id(r.frame_id)[2] - parse_id(r.annotated)[2]) % every == 0
        return i % every == 0
    annotate = {id(r): annotate_it(i, r) for i, r in enumerate(refs)}
    tasks: list = [(r, cfg, annotate[id(r)], old_row(r)) for r in refs if r.source != "sequence"]
    groups: dict[tuple[str, str], list[FrameRef]] = {}
    for r in refs:
        if r.source == "sequence":
            groups.setdefault((r.city, r.snippet), []).append(r)
    tasks += [(group, cfg, [annotate[id(r)] for r in group], [old_row(r) for r in group])
              for group in groups.values()]
    spec = executor or ExecutorSpec("local", workers)
    rows: list[dict] = []
    last_flush = time.monotonic()
    try:
        for done in run_tasks(process_task, tasks, spec, desc="build-maps", unit="task",
                              progress=progress):
            rows.extend(done)
            for row in done:
                if row["status"] != "ok":
                    log.debug("%s %s: %s", row["frame_id"], row["status"], row["reason"])
            if time.monotonic() - last_flush > MANIFEST_FLUSH_S:  # stream rows as they finish
                write_manifest(out, rows)
                last_flush = time.monotonic()
    finally:
        manifest = write_manifest(out, rows)
    return BuildReport(out, manifest.reset_index(drop=True), params)


# ---------------------------------------------------------------- readers

@dataclass
class ClipMaps:
    """The QP maps of one clip, in frame order."""

    clip_id: str
    frame_ids: list[str]
    qp: np.ndarray                 # (N, gh, gw) int8 absolute QP
    importance_paths: list[Path]
    base_qp: int
    block_size: int
    delta: int
    width: int
    height: int
    predicted_pct: list[float | None] = field(default_factory=list)   # rate model, per frame

    @property
    def dq(self) -> np.ndarray:
        """Delta-QP grids ``qp - base_qp`` (int8)."""
        return (self.qp.astype(np.int16) - self.base_qp).astype(np.int8)


def load_params(maps_root: str | Path) -> dict:
    p = Path(maps_root) / "params.json"
    if not p.is_file():
        raise InputError(f"{p} not found: {maps_root} is not a build-maps output. "
                         "Run `roienc build-maps --cityscapes-root ROOT --out DIR` first.")
    return read_json(p)


def read_manifest(maps_root: str | Path) -> pd.DataFrame:
    p = Path(maps_root) / "maps_manifest.csv"
    if not p.is_file():
        raise InputError(f"{p} not found: run `roienc build-maps` into {maps_root}")
    return pd.read_csv(p, dtype={"frame_id": str, "reason": str}, keep_default_na=False,
                       na_values={"distance_m": [""]})


def _read_npy(path: Path, what: str, mmap: bool = False) -> np.ndarray:
    """A map array (``.npy``, or the one member of build-maps' ``.npz``); a truncated, empty or
    foreign file is an InputError naming it (the encode or evaluation of that clip fails, the run
    goes on)."""
    try:
        if path.suffix == ".npz":
            arr = read_npz_member(path, path.stem.rsplit("_", 1)[-1])
        else:
            arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise InputError(f"{path}: damaged {what} ({exc}); rebuild it with `roienc build-maps "
                         "--skip-existing` (damaged outputs are recomputed)") from None
    if not isinstance(arr, np.ndarray) or arr.ndim != 2 or 0 in arr.shape:
        raise InputError(f"{path}: {what} must be a non-empty 2-D array, got shape "
                         f"{getattr(arr, 'shape', None)}; rebuild it with `roienc build-maps`")
    return arr


def load_importance(maps_root: str | Path, split: str, city: str, frame_id: str) -> np.ndarray:
    p = importance_file(frame_prefix(Path(maps_root), split, city, frame_id))
    if not p.is_file():
        raise InputError(f"{p} not found: build the maps of this frame (`roienc build-maps"
                         f"{' --sequences' if not frame_id.endswith('_000019') else ''}`)")
    imp = _read_npy(p, "importance map")
    if imp.dtype.kind != "f" or not np.isfinite(imp).all() or imp.min() < 0 or imp.max() > 1:
        raise InputError(f"{p}: an importance map holds finite floats in [0, 1] (got {imp.dtype}); "
                         "rebuild it with `roienc build-maps`")
    return imp


def load_near_mask(maps_root: str | Path, split: str, city: str, frame_id: str) -> np.ndarray | None:
    """Bool mask of pixels of objects inside d_safe, or None for maps without it."""
    p = frame_prefix(Path(maps_root), split, city, frame_id).with_name(f"{frame_id}_near_mask.png")
    if not p.is_file():
        return None
    try:
        with Image.open(p) as im:
            return np.asarray(im) > 0
    except (OSError, ValueError, SyntaxError) as exc:
        raise InputError(f"{p}: damaged near-object mask ({exc}); rebuild it with "
                         "`roienc build-maps --skip-existing`") from None


def _why_no_maps(maps_root: Path, clip: Clip, fid: str) -> str:
    """What the manifest says of a frame without maps (its skip or failure and the reason), or
    what to run when it has no row."""
    row = _rows_by_frame(maps_root).get((clip.split, clip.city, fid))
    if row is not None and row.get("status") != "ok":
        return f"build-maps {row.get('status')} frame {fid}: {row.get('reason')}"
    hint = " --sequences" if clip.source == "sequence" else ""
    if row is None:
        return (f"frame {fid} of clip {clip.clip_id} has no maps in {maps_root} (built before the "
                f"frame was there, or for other cities or snippets): run `roienc build-maps{hint} "
                "--skip-existing` into it")
    return (f"the maps of clip {clip.clip_id} are incomplete (removed since?): run `roienc "
            f"build-maps{hint} --skip-existing` into {maps_root}")


def load_clip_maps(maps_root: str | Path, clip: Clip) -> ClipMaps:
    """QP grids of every frame of ``clip``; InputError naming the first missing map."""
    params = load_params(maps_root)
    grids, imp_paths, predicted = [], [], []
    for fid in clip.frame_ids:
        prefix = frame_prefix(Path(maps_root), clip.split, clip.city, fid)
        qp_path = prefix.with_name(f"{fid}_qp_map.npy")
        if not qp_path.is_file():
            raise InputError(f"{qp_path} not found: {_why_no_maps(Path(maps_root), clip, fid)}")
        grid = _read_npy(qp_path, "QP map")
        if grid.dtype.kind not in "iu":
            raise InputError(f"{qp_path}: a QP map holds integers, got {grid.dtype}; rebuild it")
        grids.append(grid)
        imp_paths.append(importance_file(prefix))
        predicted.append(_predicted_pct(prefix))
    shapes = {g.shape for g in grids}
    if len(shapes) != 1:
        raise InputError(f"clip {clip.clip_id}: QP maps of different sizes {sorted(shapes)}")
    if not imp_paths[0].is_file():
        raise InputError(f"{imp_paths[0]} not found: the maps of clip {clip.clip_id} are incomplete")
    try:
        h, w = importance_header(imp_paths[0])[0]
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise InputError(f"{imp_paths[0]}: damaged importance map ({exc}); rebuild it with "
                         "`roienc build-maps --skip-existing`") from None
    block = int(params["block_size"])
    if grids[0].shape != (-(-h // block), -(-w // block)):
        raise InputError(f"clip {clip.clip_id}: QP grids are {grids[0].shape[1]}x{grids[0].shape[0]} "
                         f"blocks, but {w}x{h} frames at block size {block} need "
                         f"{-(-w // block)}x{-(-h // block)}: maps of another setting; rebuild them")
    return ClipMaps(clip.clip_id, list(clip.frame_ids), np.stack(grids).astype(np.int8), imp_paths,
                    int(params["base_qp"]), int(params["block_size"]), int(params["delta"]),
                    int(w), int(h), predicted)
