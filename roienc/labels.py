"""Class groups over cityscapesScripts' label table (the one table of truth for labels).

Each Cityscapes label belongs to one group: ``static`` (fixed importance, 0.1 by default),
``dynamic`` (importance decays with the object's distance) or ``void`` (0.0). The groups are
data (``roienc/data/classes.toml``), overridable with ``--classes FILE``.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from cityscapesscripts.helpers.labels import id2label, labels as CS_LABELS, name2label

from .errors import InputError

VOID, STATIC, DYNAMIC = 0, 1, 2
GROUP_NAMES = {VOID: "void", STATIC: "static", DYNAMIC: "dynamic"}
LUT_SIZE = 256  # label ids are uint8 in labelIds PNGs
# Labels that say "not annotated here" rather than what is there: gtFine's frame border around the
# image and unlabeled pixels. Label propagation fills them from their neighbours (see propagate.py).
NOT_ANNOTATED = ("unlabeled", "rectification border", "out of roi")


@dataclass(frozen=True)
class ClassGroups:
    """Which labels are static/dynamic/void, and the fixed importances of static and void."""

    static: tuple[str, ...]
    dynamic: tuple[str, ...]
    void: tuple[str, ...]
    static_importance: float = 0.1
    void_importance: float = 0.0
    source: str = "roienc/data/classes.toml"
    unassigned: tuple[str, ...] = ()

    def group_lut(self) -> np.ndarray:
        """uint8 lookup table label id -> group (VOID for unknown ids)."""
        lut = np.full(LUT_SIZE, VOID, dtype=np.uint8)
        for names, group in ((self.static, STATIC), (self.dynamic, DYNAMIC)):
            for n in names:
                lid = name2label[n].id
                if 0 <= lid < LUT_SIZE:
                    lut[lid] = group
        return lut

    def as_dict(self) -> dict:
        return {"source": self.source, "static": list(self.static), "dynamic": list(self.dynamic),
                "void": list(self.void), "static_importance": self.static_importance,
                "void_importance": self.void_importance, "unassigned": list(self.unassigned)}


def _names(doc: dict, key: str, path: str) -> tuple[str, ...]:
    section = doc.get(key, {})
    names = section.get("classes", []) if isinstance(section, dict) else None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise InputError(f"{path}: [{key}] classes must be a list of label names")
    unknown = [n for n in names if n not in name2label]
    if unknown:
        raise InputError(f"{path}: unknown Cityscapes label name(s) in [{key}]: "
                         f"{', '.join(unknown)}. Valid names: "
                         f"{', '.join(sorted(name2label))}")
    return tuple(names)


def load_class_groups(path: str | Path | None = None) -> ClassGroups:
    """Read class groups from ``path`` (TOML) or the packaged default."""
    if path is None:
        text = resources.files("roienc").joinpath("data/classes.toml").read_text("utf-8")
        src = "roienc/data/classes.toml"
    else:
        p = Path(path)
        try:
            text = p.read_text("utf-8")
        except OSError as exc:
            raise InputError(f"--classes {p}: cannot read ({exc.strerror})") from None
        src = str(p)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{src}: malformed TOML ({exc})") from None
    static, dynamic, void = (_names(doc, k, src) for k in ("static", "dynamic", "void"))
    seen: dict[str, str] = {}
    for group, names in (("static", static), ("dynamic", dynamic), ("void", void)):
        for n in names:
            if n in seen:
                raise InputError(f"{src}: label '{n}' is in both [{seen[n]}] and [{group}]")
            seen[n] = group
    unassigned = tuple(lab.name for lab in CS_LABELS if lab.name not in seen)

    def _imp(key: str, default: float) -> float:
        val = doc.get(key, {}).get("importance", default)
        if not isinstance(val, (int, float)) or not 0.0 <= float(val) <= 1.0:
            raise InputError(f"{src}: [{key}] importance must be a number in [0, 1], got {val!r}")
        return float(val)

    return ClassGroups(static, dynamic, void, _imp("static", 0.1), _imp("void", 0.0), src,
                       unassigned)


def not_annotated_ids() -> np.ndarray:
    """Label ids of :data:`NOT_ANNOTATED` (from cityscapesScripts' table)."""
    return np.array([name2label[n].id for n in NOT_ANNOTATED], dtype=np.uint8)


def label_name(label_id: int) -> str:
    """Cityscapes name of a label id ('unknown-<id>' outside the table)."""
    lab = id2label.get(int(label_id))
    return lab.name if lab is not None else f"unknown-{int(label_id)}"


def has_instances(label_id: int) -> bool:
    lab = id2label.get(int(label_id))
    return bool(lab and lab.hasInstances)
