"""`roienc build-maps`: Cityscapes -> importance maps, QP maps, object tables, manifest."""
from __future__ import annotations

# Only light modules at the top (argparse, the defaults, name checks): `roienc --help` builds
# every command's parser, so numpy, pandas, OpenCV & co. are imported in run() and in the
# functions that need them (tests/test_help.py).
import argparse

from ..defaults import IMPORTANCE, PROPAGATION, QP
from ..errors import InputError
from ..names import check_component, check_names


def csv_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def int_range(option: str, low: int, high: int | None = None):
    """An argparse type: a whole number in ``low..high`` (no top with ``high`` None), checked
    while the command line is read, so a bad value is a usage error (exit 2) before any work."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{option} must be a whole number, got {text!r}") from None
        if v < low or (high is not None and v > high):
            raise argparse.ArgumentTypeError(
                f"{option} must be at least {low}, got {v}" if high is None else
                f"{option} must be between {low} and {high}, got {v}")
        return v
    parse.__name__ = "int"
    return parse


def name_arg(option: str):
    """An argparse type: one plain name that becomes a folder (a split): no '/', no '..'."""
    def parse(text: str) -> str:
        try:
            return check_component(text, option)
        except InputError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    parse.__name__ = "name"
    return parse


def names_arg(option: str):
    """An argparse type: a comma list of plain names that become folders (cities)."""
    def parse(text: str) -> list[str]:
        try:
            return check_names(csv_list(text), option)
        except InputError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    parse.__name__ = "names"
    return parse


def _list_of(conv):
    def parse(text: str) -> list:
        try:
            vals = [conv(t) for t in csv_list(text)]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: expected a comma list") from None
        if not vals:
            raise argparse.ArgumentTypeError("expected at least one value")
        return vals
    return parse


def add_map_options(p: argparse.ArgumentParser, multi_qp: bool = False) -> None:
    """Options shared by build-maps and sweep (which builds maps when absent). With ``multi_qp``
    the QP mapping options take comma lists (sweep: one maps folder per combination)."""
    lst = (lambda conv: _list_of(conv)) if multi_qp else (lambda conv: conv)
    more = "; comma list: every combination is swept" if multi_qp else ""
    i = IMPORTANCE
    g = p.add_argument_group("importance model")
    g.add_argument("--t-react", type=float, default=i["t_react"],
                   help=f"reaction time in s (default {i['t_react']:g})")
    g.add_argument("--decel", type=float, default=i["decel"],
                   help=f"braking deceleration in m/s^2 (default {i['decel']:g})")
    g.add_argument("--min-safe-distance", type=float, default=i["min_safe_distance"],
                   help="floor of d_safe in m, so v=0 still cares about near objects "
                        f"(default {i['min_safe_distance']:g})")
    g.add_argument("--min-valid-pixels", type=int, default=i["min_valid_pixels"],
                   help="objects with fewer valid disparity pixels have unknown distance "
                        f"(default {i['min_valid_pixels']})")
    g.add_argument("--unknown-importance", type=float, default=i["unknown_importance"],
                   help="importance of an object of unknown distance "
                        f"(default {i['unknown_importance']:.1f}"
                        + (": counts as near)" if i["unknown_importance"] == 1 else ")"))
    g.add_argument("--distance-mode", choices=["object", "pixel"], default=i["distance_mode"],
                   help="'object': the median distance of each object; 'pixel': each pixel's own "
                        f"distance (default {i['distance_mode']})")
    g.add_argument("--classes", metavar="FILE", help="TOML class groups (default: packaged classes.toml)")
    e = p.add_argument_group("ego data (when the dataset lacks it)")
    e.add_argument("--speed", type=float, metavar="V", help="ego speed in m/s for frames without vehicle JSON")
    e.add_argument("--speed-override", type=float, nargs="?", const=-1.0, metavar="V",
                   help="use this speed (or --speed if no value is given) for every frame")
    e.add_argument("--camera", metavar="FILE", help="camera JSON for frames without one")
    e.add_argument("--fx", type=float, help="focal length in px for frames without camera JSON")
    e.add_argument("--baseline", type=float, help="stereo baseline in m for frames without camera JSON")
    q = p.add_argument_group("QP maps")
    d = QP
    q.add_argument("--block-size", type=lst(int), default=d["block_size"],
                   help=f"QP block size in px (default {d['block_size']}{more})")
    q.add_argument("--base-qp", type=lst(int), default=d["base_qp"],
                   help=f"reference QP of the grid files (default {d['base_qp']}{more})")
    q.add_argument("--delta", type=lst(int), default=d["delta"],
                   help=f"QP decrease of importance 1; with --rate-budget its cap (default {d['delta']}{more})")
    q.add_argument("--background", type=lst(int), default=d["background"],
                   help="QP increase of importance 0: the knob along the trade-off front, how much "
                        f"background quality to give up for the ROI (default {d['background']}{more})")
    q.add_argument("--gamma", type=lst(float), default=d["gamma"],
                   help=f"qp = base+background-(background+delta)*imp**gamma (default {d['gamma']:g}{more})")
    q.add_argument("--block-stat", type=lst(str) if multi_qp else str, default=d["block_stat"],
                   **({} if multi_qp else {"choices": ["mean", "max", "submax"]}),
                   help="importance of a block: mean, max, or submax (the mean of its 2x2 "
                        f"sub-blocks' maxima) (default {d['block_stat']}{more})")
    q.add_argument("--floor", type=lst(float), default=d["floor"],
                   help="block importance at or below it counts as background: strength "
                        f"((imp-floor)/(1-floor))**gamma (default {d['floor']:g}{more})")
    budget = d["rate_budget"]
    q.add_argument("--rate-budget", type=lst(_budget), default=budget, metavar="PCT",
                   help="per frame, the offsets whose bits (predicted from the picture's activity) "
                        "grow by at most PCT percent over the plain encode; --delta and "
                        "--background become the caps of the ROI's QP decrease and of the "
                        "background's increase. 'off': fixed offsets (default "
                        f"{'off' if budget is None else f'{budget:g}'}{more})")
    q.add_argument("--qp-normalize", choices=["none", "frame"], default=d["qp_normalize"],
                   help="'frame': before the mapping, stretch each frame's block importances to "
                        "[0, 1] (its least important block 0, its most important 1), so every "
                        "frame spans the whole range from --background to --delta whatever its "
                        "objects' importance; 'none': the importances as they are")
    s = p.add_argument_group("sources")
    s.add_argument("--sequences", action="store_true",
                   help="maps for every frame of the 30-frame snippets: sweep builds them by "
                        "itself when its clips are the snippets (the default); with --source "
                        "frames this only adds maps that nothing encodes"
                   if multi_qp else
                   "also build maps for every frame of the 30-frame snippets (leftImg8bit_sequence), "
                   "which roienc encode needs to encode the snippets; without it only the annotated "
                   "frames get maps (roienc sweep builds them by itself)")
    s.add_argument("--labels-root", metavar="DIR",
                   help="per-frame labels for sequence frames (e.g. a segmentation model's output), "
                        "named by --labels-pattern; wins over --label-source")
    s.add_argument("--labels-pattern", default="{frame_id}_labelIds.png", metavar="PATTERN",
                   help="file name of a frame's labelIds under --labels-root, with a {frame_id} "
                        "placeholder (default {frame_id}_labelIds.png; e.g. {frame_id}_leftImg8bit.png)")
    s.add_argument("--instances-pattern", default="{frame_id}_instanceIds.png", metavar="PATTERN",
                   help="file name of a frame's instanceIds under --labels-root (optional files; "
                        "default {frame_id}_instanceIds.png)")
    s.add_argument("--label-source", choices=["propagate", "hold"], default="propagate",
                   help="sequence frames without their own labels: 'propagate' the labels of "
                        "the labelled frames around them (the annotated frame's, and with "
                        "--labels-root those of the frames that have a file) along optical flow "
                        "(default) or 'hold' the nearest one's unchanged")
    s.add_argument("--label-every", type=int, default=1, metavar="K",
                   help="with --labels-root: keep only the labels of every K-th frame (frames i "
                        "with (i - 19) %% K == 0, the annotated frame always among them); the "
                        "others are propagated from those (default 1: every file is used). "
                        "For experiments on how many labelled frames are needed")
    s.add_argument("--labels-kind", choices=["labelIds", "trainIds"], default="labelIds",
                   help="what the --labels-root files hold: Cityscapes labelIds (default) or "
                        "trainIds (0..18, 255), mapped to labelIds by cityscapesScripts' table")
    s.add_argument("--propagation", action="append", default=[], metavar="KEY=VALUE",
                   help="a setting of how labels are carried along optical flow to frames without "
                        "their own (repeatable, e.g. margin_px=12). KEY and its default: "
                        + ", ".join(f"{k}={_shown(v)}" for k, v in PROPAGATION.items())
                        + "; what they do: docs/sparse-labels.md and docs/build-maps.md")


def _shown(v) -> str:
    """A default as it is typed after ``--propagation KEY=`` (booleans as 1 / 0)."""
    return str(int(v)) if isinstance(v, bool) else f"{v:g}" if isinstance(v, float) else str(v)


def _budget(text: str) -> float | None:
    """A rate budget in percent ('+5', '5%', '-2'), or None for 'off'/'none'."""
    t = text.strip().rstrip("%")
    if t.lower() in ("off", "none"):
        return None
    return float(t)


def _first(v):
    return v[0] if isinstance(v, list) else v


def qp_grid(args: argparse.Namespace) -> dict[str, list]:
    """The list-valued QP options of a sweep (only those given with more than one value)."""
    keys = {"block_size": "block_size", "block_stat": "block_stat", "delta": "delta",
            "background": "background", "gamma": "gamma", "base_qp": "base_qp",
            "rate_budget": "rate_budget", "floor": "floor"}
    return {k: getattr(args, a) for k, a in keys.items()
            if isinstance(getattr(args, a), list) and len(getattr(args, a)) > 1}


def map_kwargs(args: argparse.Namespace) -> dict:
    """build_maps keyword arguments from parsed options (shared with sweep; a list-valued QP
    option contributes its first value here, the rest through :func:`qp_grid`)."""
    from ..importance import ImportanceParams
    from ..maps import QPParams
    from ..propagate import PropagationParams
    override = args.speed_override
    if override is not None and override < 0:  # given without a value: apply --speed to all
        if args.speed is None:
            raise InputError("--speed-override without a value needs --speed V")
        override = args.speed
    return dict(
        importance=ImportanceParams(args.t_react, args.decel, args.min_safe_distance,
                                    args.min_valid_pixels, args.unknown_importance,
                                    args.distance_mode),
        qp=QPParams(_first(args.block_size), _first(args.base_qp), _first(args.delta),
                    _first(args.gamma), _first(args.block_stat), args.qp_normalize,
                    _first(args.background), _first(args.rate_budget),
                    floor=_first(args.floor)),
        classes=args.classes, speed=args.speed, speed_override=override, camera=args.camera,
        fx=args.fx, baseline=args.baseline, sequences=args.sequences,
        labels_root=args.labels_root, labels_pattern=args.labels_pattern,
        instances_pattern=args.instances_pattern, label_source=args.label_source,
        label_every=args.label_every, labels_kind=args.labels_kind,
        propagation=PropagationParams.from_settings(args.propagation),
    )


WORKERS_HELP = {    # what --workers runs in parallel, per command
    "build-maps": "processes building the maps, one task each: an annotated frame, or the "
                  "frames of a snippet (they share its optical flow)",
    "sweep": "processes building the maps (an annotated frame or a snippet each) and evaluating "
             "the encodes (one encode each); how many encodes run at once is --jobs",
    "evaluate": "processes decoding and measuring the encodes, one encode each (each already "
                "decodes and measures in several threads)",
}


def add_executor_options(p: argparse.ArgumentParser, workers: int | None = None,
                         command: str = "build-maps") -> None:
    p.add_argument("--workers", type=int_range("--workers", 1), default=workers, metavar="N",
                   help=f"{WORKERS_HELP[command]} (default: "
                   + ("all cores" if workers is None else str(workers)) + ")")
    p.add_argument("--executor", choices=["local", "dask"], default="local",
                   help="local process pool (default) or a Dask cluster")
    p.add_argument("--scheduler", metavar="ADDR",
                   help="Dask scheduler address, e.g. tcp://HOST:8786 (default: a LocalCluster)")


def executor_spec(args: argparse.Namespace):
    """The :class:`roienc.executor.ExecutorSpec` of ``--executor``, ``--workers``, ``--scheduler``."""
    from ..executor import ExecutorSpec
    return ExecutorSpec(args.executor, args.workers, args.scheduler)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("build-maps", help="Cityscapes -> importance and QP maps",
                       description=__doc__)
    p.add_argument("--cityscapes-root", required=True, metavar="ROOT",
                   help="Cityscapes-layout root (leftImg8bit/, gtFine/, disparity/, camera/, ...)")
    p.add_argument("--split", default="val", type=name_arg("--split"), help="dataset split")
    p.add_argument("--cities", type=names_arg("--cities"), metavar="A,B", help="only these cities")
    p.add_argument("--out", required=True, metavar="OUT", help="maps folder to write")
    add_map_options(p)
    p.add_argument("--visualize-every", type=int_range("--visualize-every", 0), default=30, metavar="N",
                   help="distance annotation for every N-th frame (default 30, 0 = none)")
    p.add_argument("--outputs", default="all", metavar="all|maps|LIST",
                   help="optional images to write: 'all' (default), 'maps' (none: importance npy, "
                        "objects csv, near mask and QP maps only, which are always written) or a "
                        "comma list of importance_png, importance_vis, qp_map_vis, "
                        "distance_annotation")
    p.add_argument("--importance-format", choices=("npz", "npy"), default="npz",
                   help="importance map file: npz (deflated, lossless, ~1/150 of the size) or "
                        "npy (float32, as versions before 0.2 wrote it)")
    p.add_argument("--skip-existing", action="store_true",
                   help="resume: keep a finished frame only when its inputs (file contents), "
                        "settings and roienc version are the ones it was made from")
    p.add_argument("--overwrite", action="store_true",
                   help="OUT holds maps of other settings: delete them first (else refused)")
    p.add_argument("--strict", action="store_true", help="exit non-zero if any frame is skipped or failed")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_executor_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from ..maps import build_maps
    from ..sweep import check_qp_mapping
    kw = map_kwargs(args)
    check_qp_mapping(kw["qp"])             # a mapping no frame can take: refused before any work
    report = build_maps(args.cityscapes_root, args.out, split=args.split, cities=args.cities,
                        visualize_every=args.visualize_every, skip_existing=args.skip_existing,
                        overwrite=args.overwrite, outputs=args.outputs,
                        importance_format=args.importance_format,
                        executor=executor_spec(args), progress=not args.no_progress, **kw)
    counts = report.counts
    total = len(report.manifest)
    print(f"build-maps: {total} frames -> {report.out}: "
          + ", ".join(f"{counts.get(s, 0)} {s}" for s in ("ok", "skipped", "failed")))
    bad = report.manifest[report.manifest["status"] != "ok"]
    for row in bad.head(10).itertuples(index=False):
        print(f"  {row.frame_id}: {row.status}: {row.reason}")
    if len(bad) > 10:
        print(f"  ... {len(bad) - 10} more in {report.out / 'maps_manifest.csv'}")
    man = report.manifest
    if "objects_unknown_distance" in man:
        unknown = pd.to_numeric(man["objects_unknown_distance"], errors="coerce").fillna(0)
        if unknown.sum():
            notes = man.loc[unknown > 0, "distance_note"].astype(str)
            kinds = notes.str.replace(r"^\d+ object\(s\)", "objects", regex=True).value_counts()
            print(f"build-maps: {int(unknown.sum())} objects on {int((unknown > 0).sum())} frames "
                  "have no distance (importance 1, as if near): "
                  + "; ".join(f"{n} frames: {k}" for k, n in kinds.items()))
    failed = int(counts.get("failed", 0))
    if failed:              # an exception or a damaged input: never exit 0
        print(f"build-maps: {failed} frame(s) failed; the reasons are in the `reason` column of "
              f"{report.out / 'maps_manifest.csv'} (exit status 1)")
        return 1
    if args.strict and len(bad):
        return 1
    return 0
