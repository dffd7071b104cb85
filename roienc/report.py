"""``report.html``: one static page with the tables, the RD plots and a side-by-side frame.

Images are files next to the page (relative paths, under ``report_files/``), so the folder can be
copied or served as it is.
"""
from __future__ import annotations

import html
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from .fileio import ensure_dir, read_json, write_png, write_text
from .maps import frame_prefix, load_importance
from .tools import run


def _decode_frame(ffmpeg: str, mp4: Path, index: int) -> np.ndarray:
    out = run([ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(mp4),
               "-vf", f"select=eq(n\\,{index})", "-frames:v", "1", "-fps_mode", "passthrough",
               "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]).stdout
    return np.frombuffer(out, np.uint8)


def _crop_box(imp: np.ndarray, threshold: float, size: int) -> tuple[int, int, int, int]:
    h, w = imp.shape
    ys, xs = np.nonzero(imp >= threshold)
    cy, cx = (int(np.median(ys)), int(np.median(xs))) if len(ys) else (h // 2, w // 2)
    half = size // 2
    x0 = min(max(cx - half, 0), max(w - size, 0))
    y0 = min(max(cy - half, 0), max(h - size, 0))
    return x0, y0, min(x0 + size, w), min(y0 + size, h)


def frame_panel(results: pd.DataFrame, maps_root: Path, run_dir: Path, ffmpeg: str,
                roi_threshold: float = 0.5) -> str:
    """HTML of source / importance / QP map / decoded baseline vs ROI crops for one frame."""
    ok = results.dropna(subset=["kbps"])
    base = ok[ok["mode"] == "baseline"]
    roi = ok[ok["mode"] == "roi"]
    if roi.empty:
        roi = ok[ok["mode"] != "baseline"]
    if base.empty or roi.empty:
        return "<p>No baseline/ROI pair to show.</p>"
    # the lowest rate point both have, on the first clip: differences are most visible there
    b = base.sort_values(["clip", "kbps"]).iloc[0]
    same = roi[(roi["clip"] == b["clip"]) & (roi["rate_value"] == b["rate_value"]) &
               (roi["rate_control"] == b["rate_control"])]
    if same.empty:
        return "<p>No ROI encode at the baseline's rate point.</p>"
    r = same.sort_values("mode").iloc[0]
    sb, sr = read_json(b["sidecar"]), read_json(r["sidecar"])
    fids = sb["frame_ids"]
    idx = next((i for i, f in enumerate(fids) if f.endswith("_000019")), len(fids) // 2)
    fid = fids[idx]
    w, h = int(sb["width"]), int(sb["height"])
    files = ensure_dir(run_dir / "report_files")
    prefix = frame_prefix(maps_root, sb["split"], sb["city"], fid)
    imp = load_importance(maps_root, sb["split"], sb["city"], fid)
    x0, y0, x1, y1 = _crop_box(imp, roi_threshold, max(64, min(w, h) // 2))
    if sb.get("source_files"):          # the exact frames encoded (absolute paths)
        src_path = Path(sb["source_files"][idx])
    else:                               # sidecars of older versions: the image2 input's folder
        src_path = Path(sb["input_args"][sb["input_args"].index("-i") + 1]).parent / f"{fid}_leftImg8bit.png"
    src_rgb = np.asarray(Image.open(src_path).convert("RGB"))
    pics = {"source": src_rgb}
    for name, side, row in (("baseline", sb, b), ("roi", sr, r)):
        mp4 = Path(row["sidecar"]).with_suffix(".mp4")
        pics[name] = _decode_frame(ffmpeg, mp4, idx).reshape(h, w, 3)
    cells = []
    for name in ("source", "baseline", "roi"):
        write_png(files / f"{name}_crop.png", pics[name][y0:y1, x0:x1])
    write_png(files / "source.png", src_rgb)
    for suffix in ("_importance_vis.png", "_qp_map_vis.png"):
        p = prefix.with_name(fid + suffix)
        if p.exists():
            shutil.copyfile(p, files / suffix.lstrip("_"))
    cells = [("source frame", "source.png"),
             (f"importance of frame {fid} in the maps that drove the encoder ({Path(maps_root).name}; "
              "black 0, white 1)", "importance_vis.png"),
             (f"QP map of frame {fid}: each block's QP around the maps' base QP; the encoder "
              "applies the same offsets around the QP its rate control chooses at each CRF",
              "qp_map_vis.png")]
    crops = [("source (crop)", "source_crop.png"),
             (f"baseline {b['rate_control']} {b['rate_value']:g}: {b['kbps']:.0f} kbps", "baseline_crop.png"),
             (f"{r['mode']} {r['rate_control']} {r['rate_value']:g}: {r['kbps']:.0f} kbps", "roi_crop.png")]

    def row_html(items):
        return "<div class='row'>" + "".join(
            f"<figure><img src='report_files/{f}'><figcaption>{html.escape(c)}</figcaption></figure>"
            for c, f in items) + "</div>"
    return (f"<p>Clip {html.escape(b['clip'])}, frame {html.escape(fid)} (index {idx}), crop "
            f"x={x0}..{x1}, y={y0}..{y1} around the ROI.</p>" + row_html(cells) + row_html(crops))


def _sidecar(r: pd.Series) -> dict:
    """The encode sidecar of a results row ({} when it has none or it cannot be read)."""
    if not isinstance(r.get("sidecar"), str):
        return {}
    try:
        side = json.loads(Path(r["sidecar"]).read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return side if isinstance(side, dict) else {}


def _adds_to_baseline(results: pd.DataFrame) -> str:
    """What each non-baseline mode adds on top of the plain baseline, from the sidecars."""
    seen: dict[str, str] = {}
    for _, r in results.iterrows():
        if r["mode"] == "baseline" or r["mode"] in seen:
            continue
        adds = _sidecar(r).get("adds_to_baseline")
        if adds:
            params = ":".join(f"{k}={v}" for k, v in adds.get("encoder_params", {}).items()) or "none"
            seen[r["mode"]] = f"{r['mode']} adds encoder parameters {params}, offsets: {adds.get('roi')}"
    return "; ".join(seen.values())


_OVERLAP = re.compile(r"Insufficient curve overlap: '([\d.]+)'\. Minimum overlap: '([\d.]+)'")


def reliability_note(note: object) -> str:
    """A BD-rate note in roienc's words (the bjontegaard library's overlap warning included)."""
    if not isinstance(note, str) or not note.strip():
        return ""
    text = note.replace("bd_rate: ", "").replace("bd_psnr: ", "")
    text = re.sub(r"\s*You can silence this warning[^.;]*\.?", "", text)
    m = _OVERLAP.search(text)
    if m:
        return (f"the two RD curves share only {float(m.group(1)):.0f}% of their quality range "
                f"(BD-rate is reliable from {float(m.group(2)):.0f}%): the value leans on "
                "extrapolation; rate points that widen the overlap make it firmer")
    return text.strip()


COLUMNS = {
    "bd_rate_pct": "Bjontegaard delta rate: the bit-rate difference at equal quality in that "
                   "region, in percent of the reference's (akima fit over the overlapping "
                   "quality range); negative = fewer bits",
    "bd_psnr_db": "the quality difference at equal bit rate, in dB; positive = better",
    "points": "rate points per curve (BD-rates need 4 or more), or for a mean how many clips",
    "clips_marked": "clips behind a mean whose curves overlap too little for a firm BD-rate",
    "mean_roi_delta": "trade-off front: the QP decrease a block of full importance got, averaged "
                      "over the frames (the rate budget sets it per frame, up to --delta); "
                      "positive = lower QP",
    "mean_roi_offset": "QP offsets table: the mean offset of the blocks below the base QP, "
                       "averaged over the frames; negative, and smaller in size than "
                       "mean_roi_delta because blocks of partial importance get a share of it",
    "roi_block_share": "share of the blocks with a negative offset",
    "roi_fraction": "share of the luma pixels in the judging ROI (importance >= the threshold)",
    "psnr_weighted": "PSNR of the luma error weighted by the judging importance",
    "psnr_near_objects": "PSNR over the pixels of objects inside the safe stopping distance",
    "kbps": "video bit rate of the encode (packets only, no container overhead)",
}
COLUMNS_HTML = ("<dl>" + "".join(f"<dt><code>{k}</code></dt><dd>{html.escape(v)}</dd>"
                                 for k, v in COLUMNS.items()) + "</dl>")


def mark_means(bd: pd.DataFrame, means: pd.DataFrame) -> pd.DataFrame:
    """``means`` with a ``clips_marked`` column: how many of the clips behind each mean have a
    reliability note (their curves overlap too little, too few points, ...)."""
    if not len(means) or "clip" not in bd or "note" not in bd:
        return means
    keys = [c for c in ("maps", "mode", "reference", "metric") if c in bd]
    per = bd[bd["clip"] != "mean"]
    noted = per["note"].map(lambda n: bool(reliability_note(n)))
    counts = per.assign(_n=noted).groupby(keys)["_n"].agg(["sum", "size"])
    out = means.copy()
    out["clips_marked"] = [
        f"{int(counts.loc[k, 'sum'])} of {int(counts.loc[k, 'size'])}" if k in counts.index else ""
        for k in map(tuple, out[keys].to_numpy())]
    return out


def near_objects_note(results: pd.DataFrame) -> str:
    """Why ``psnr_near_objects`` is NaN where it is: no pixel of an object inside the safe
    distance in any frame of those clips (per the judging maps)."""
    if "psnr_near_objects" not in results or not results["psnr_near_objects"].isna().any():
        return ""
    empty = results[results["psnr_near_objects"].isna()]
    clips = sorted(empty["clip"].astype(str).unique())
    return ("<p><code>psnr_near_objects</code> is NaN for " + html.escape(", ".join(clips))
            + ": no pixel of an object inside the safe stopping distance d_safe in any frame "
            "of the judging maps (no object that near at this speed, or none with a measured "
            "distance: see <code>objects_unknown_distance</code> and <code>distance_note</code> in "
            "the maps' manifest).</p>")


def bd_clip_tables(bd: pd.DataFrame) -> str:
    """HTML: per ROI mode and reference, one table of BD-rates (rows: metrics; columns: every
    clip, then their mean, titled with how many clips it averages); a figure whose curves are
    unreliable is marked with a number pointing to its note below, and a mean over any marked
    clip is marked too."""
    if bd is None or not len(bd) or "clip" not in bd:
        return ""
    per = bd[bd["clip"] != "mean"]
    clips = sorted(per["clip"].unique())
    notes: list[str] = []
    parts = []
    group_cols = [c for c in ("maps", "mode", "reference") if c in bd]

    def title_of(key: tuple) -> str:
        return " / ".join(str(k) for k in key)
    for key, g in bd.groupby(group_cols, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        rows = []
        for metric, m in g.groupby("metric", sort=False):
            cells, flagged = [], 0
            for c in clips:
                r = m[m["clip"] == c]
                if r.empty:
                    cells.append("<td>–</td>")
                    continue
                v, note = r["bd_rate_pct"].iloc[0], reliability_note(r.get("note", pd.Series([""])).iloc[0])
                mark = ""
                if note:
                    flagged += 1
                    notes.append(f"{title_of(key)}, {c}, {metric}: {note}")
                    mark = f"<sup title='{html.escape(note)}'>{len(notes)}</sup>"
                cells.append(f"<td>{'NaN' if pd.isna(v) else f'{v:+.1f}%'}{mark}</td>")
            mean = m[m["clip"] == "mean"]["bd_rate_pct"]
            mv = mean.iloc[0] if len(mean) else np.nan
            flag = f" <i>({flagged} of {len(clips)} marked)</i>" if flagged else ""
            cells.append(f"<td><b>{'NaN' if pd.isna(mv) else f'{mv:+.1f}%'}</b>{flag}</td>")
            rows.append(f"<tr><th>{html.escape(str(metric))}</th>{''.join(cells)}</tr>")
        title = html.escape(title_of(key))
        head = "".join(f"<th>{html.escape(c)}</th>" for c in clips)
        parts.append(f"<h3>{title}</h3><table><tr><th>metric</th>{head}"
                     f"<th>mean of {len(clips)}</th></tr>{''.join(rows)}</table>")
    foot = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    return ("<h2>BD-rate per clip</h2><p>Negative = fewer bits than the reference for the same "
            "quality in that region. A number in superscript marks a figure to read with care; "
            "the notes say why.</p>" + "".join(parts) + (f"<ol>{foot}</ol>" if foot else ""))


def offsets_table(results: pd.DataFrame) -> pd.DataFrame:
    """One row per ROI encode's maps and clip: the QP offsets the encoder was given, over the
    clip's frames (from the sidecar's ``adapter.frame_offsets``; a rate budget chooses them per
    frame): mean / lowest / highest of the frames' mean negative offset, and the mean share of
    blocks with a negative offset. Empty when no sidecar records them."""
    rows, seen = [], set()
    for _, r in results.iterrows():
        key = (r.get("maps"), r["clip"])
        if r["mode"] == "baseline" or key in seen:
            continue
        off = (_sidecar(r).get("adapter") or {}).get("frame_offsets")
        if not off:
            continue
        seen.add(key)
        roi = pd.Series(off["mean_roi"], dtype=float)
        rows.append({"maps": key[0], "clip": key[1], "frames": len(roi),
                     "mean_roi_offset": roi.mean(), "min_frame": roi.min(), "max_frame": roi.max(),
                     "lowest_offset": min(off["min"]), "highest_offset": max(off["max"]),
                     "roi_block_share": float(pd.Series(off["roi_block_share"]).mean())})
    return pd.DataFrame(rows)


FRAMES_COLUMNS = ["maps", "clip", "codec", "mode", "rate_control", "rate_value", "frame",
                  "frame_id", "mean_roi_offset", "roi_block_share", "predicted_pct", "bytes",
                  "plain_bytes", "measured_pct", "psnr_roi", "plain_psnr_roi", "psnr_nonroi",
                  "plain_psnr_nonroi"]


def _frame_quality(r: pd.Series) -> tuple[list, list] | None:
    """Per-frame psnr_roi and psnr_nonroi of a results row, from the per-frame CSV evaluate
    wrote for it (``frames_csv``; only when written for this row's ``eval_key``), else None."""
    from .evaluate import per_frame_rows

    df = per_frame_rows(r.get("frames_csv"), str(r.get("eval_key")))
    if df is None:
        return None
    df = df.sort_values("frame")
    return df["psnr_roi"].tolist(), df["psnr_nonroi"].tolist()


def _per_frame(q: tuple[list, list] | None, n: int) -> tuple[list, list]:
    """``q`` when it holds ``n`` frames, else NaN for each."""
    return q if q is not None and len(q[0]) == n else ([np.nan] * n, [np.nan] * n)


def _frame_bytes(side: dict, sidecar: str, ffmpeg: str | None) -> list[int] | None:
    """Bytes of each frame of an encode, in frame order: the sidecar's ``frame_bytes``, else (a
    sidecar written before roienc recorded them) read from its MP4: PyAV's demuxer, then
    ``ffmpeg`` when given. None when neither can read it."""
    got = side.get("frame_bytes")
    if isinstance(got, list):
        return got
    if not isinstance(sidecar, str):          # a row without an encode (failed, skipped)
        return None
    mp4 = Path(sidecar).with_suffix(".mp4")
    if not mp4.is_file():
        return None
    from .errors import RoiencError
    from .probe import frame_sizes
    try:
        return frame_sizes(mp4, ffmpeg)
    except RoiencError:
        return None


def _predicted_from_maps(side: dict, n: int) -> list[float | None]:
    """The rate model's per-frame prediction for a sidecar written before encodes recorded it:
    the ``_rate.json`` beside each QP grid of the maps it names (a reused encode was checked
    against those grids' digests; a rate choice is written with its grid). None where absent."""
    from .maps import rate_predictions

    fids = side.get("frame_ids") or []
    if not side.get("maps") or len(fids) != n:
        return [None] * n
    return rate_predictions(Path(side["maps"]), side.get("split", ""), side.get("city", ""), fids)


def frames_table(results: pd.DataFrame, ffmpeg: str | None = None) -> pd.DataFrame:
    """What each frame got: one row per frame of every ROI-driven encode, with the offsets it was
    given (``adapter.frame_offsets``), the file growth the rate model predicted for it
    (``adapter.frame_predicted_pct``, from the maps' ``_rate.json``), its bytes and the bytes the
    plain encode of the same clip and rate point gave that frame (``measured_pct`` = growth), and
    both encodes' psnr_roi / psnr_nonroi of that frame (evaluate's per-frame files, NaN without
    them). Frames are in display order on both sides, so a B-picture is compared with the same
    picture."""
    need = {"mode", "clip", "codec", "rate_control", "rate_value", "sidecar"}
    if results.empty or not need <= set(results.columns):
        return pd.DataFrame(columns=FRAMES_COLUMNS)
    plain: dict[tuple, list[int] | None] = {}
    plain_q: dict[tuple, tuple[list, list] | None] = {}
    base = results[results["mode"] == "baseline"]
    for _, r in base.iterrows():
        key = (r["clip"], r["codec"], r["rate_control"], float(r["rate_value"]))
        if key not in plain:
            plain[key] = _frame_bytes(_sidecar(r), r["sidecar"], ffmpeg)
            plain_q[key] = _frame_quality(r)
    rows = []
    for _, r in results[results["mode"] != "baseline"].iterrows():
        side = _sidecar(r)
        adapter = side.get("adapter") or {}
        off = adapter.get("frame_offsets")
        if not off or r.get("same_encode_as") == "baseline":
            continue
        n = len(off["mean_roi"])
        got = _frame_bytes(side, r["sidecar"], ffmpeg)
        key = (r["clip"], r["codec"], r["rate_control"], float(r["rate_value"]))
        ref = plain.get(key)
        q_roi, q_non = _per_frame(_frame_quality(r), n)
        p_roi, p_non = _per_frame(plain_q.get(key), n)
        pred = adapter.get("frame_predicted_pct") or _predicted_from_maps(side, n)
        got = got if got is not None and len(got) == n else [None] * n
        ref = ref if ref is not None and len(ref) == n else [None] * n
        fids = side.get("frame_ids") or [""] * n
        for i in range(n):
            meas = 100.0 * (got[i] / ref[i] - 1.0) if got[i] and ref[i] else None
            rows.append([r.get("maps"), r["clip"], r["codec"], r["mode"], r["rate_control"],
                         r["rate_value"], i, fids[i] if i < len(fids) else "",
                         off["mean_roi"][i], off["roi_block_share"][i], pred[i], got[i], ref[i],
                         meas, q_roi[i], p_roi[i], q_non[i], p_non[i]])
    return pd.DataFrame(rows, columns=FRAMES_COLUMNS)


def frames_summary(frames: pd.DataFrame) -> pd.DataFrame:
    """Per ROI encode (maps, clip, rate point): the frames' predicted and measured file growth
    (mean, lowest, highest), the mean |measured - predicted| in points (how well each frame got
    what the rate budget asked for it), the file's growth, and the frames' PSNR gain over the
    plain encode's same frame inside (mean, least) and outside the ROI, in dB."""
    if frames.empty:
        return frames
    f = frames.copy()
    for c in ("predicted_pct", "measured_pct"):
        f[c] = pd.to_numeric(f[c], errors="coerce")
    f["err"] = (f["measured_pct"] - f["predicted_pct"]).abs()
    for c in ("bytes", "plain_bytes"):
        f[c] = pd.to_numeric(f[c], errors="coerce")
    for c in ("psnr_roi", "plain_psnr_roi", "psnr_nonroi", "plain_psnr_nonroi"):
        f[c] = pd.to_numeric(f[c], errors="coerce")
    f["roi_gain_db"] = f["psnr_roi"] - f["plain_psnr_roi"]
    f["nonroi_gain_db"] = f["psnr_nonroi"] - f["plain_psnr_nonroi"]
    keys = ["maps", "clip", "codec", "mode", "rate_value"]
    g = f.groupby(keys, sort=False, dropna=False)
    out = g.agg(frames=("frame", "size"), mean_roi_offset=("mean_roi_offset", "mean"),
                predicted_pct=("predicted_pct", "mean"), measured_pct=("measured_pct", "mean"),
                measured_min=("measured_pct", "min"), measured_max=("measured_pct", "max"),
                frame_err_pts=("err", "mean"), roi_gain_db=("roi_gain_db", "mean"),
                roi_gain_min_db=("roi_gain_db", "min"), nonroi_gain_db=("nonroi_gain_db", "mean"),
                bytes=("bytes", "sum"),
                plain_bytes=("plain_bytes", "sum")).reset_index()
    out.insert(out.columns.get_loc("measured_pct") + 3, "file_pct",
               100.0 * (out["bytes"] / out["plain_bytes"].where(out["plain_bytes"] > 0) - 1.0))
    return out.drop(columns=["bytes", "plain_bytes"])


def write_report(run_dir: Path, results: pd.DataFrame, bd: pd.DataFrame, plots: list[Path],
                 maps_root: Path, ffmpeg: str, params: dict, roi_threshold: float = 0.5, *,
                 judged_by: str = "", frontier: pd.DataFrame | None = None,
                 frames: pd.DataFrame | None = None, frames_png: Path | None = None) -> Path:
    """Write ``run_dir/report.html`` (``frames``: :func:`frames_table`, computed when not given;
    ``frames_png``: its plot, :func:`roienc.plots.frames_plot`)."""
    try:
        panel = frame_panel(results, maps_root, run_dir, ffmpeg, roi_threshold)
    except Exception as exc:  # the page is still useful without the picture
        panel = f"<p>Frame comparison unavailable: {html.escape(str(exc))}</p>"
    cols = ["clip", "codec", "mode", "rate_value", "kbps", "psnr_y", "psnr_roi", "psnr_nonroi",
            "psnr_weighted", "psnr_near_objects", "ssim_roi", "ssim_nonroi", "roi_fraction"]
    ssim_cols = [c for c in ("ssim_y", "ssim_roi", "ssim_nonroi") if c in results]
    no_ssim = not ssim_cols or results[ssim_cols].isna().all().all()
    if no_ssim:                          # not computed (evaluate without --ssim): no NaN columns
        cols = [c for c in cols if not c.startswith("ssim_")]
    ssim_note = ("<p>SSIM was not computed (evaluate/sweep without <code>--ssim</code>): the "
                 "<code>ssim_*</code> columns of results.csv are NaN.</p>" if no_ssim else "")
    ssim_note += near_objects_note(results)
    res_html = results[[c for c in cols if c in results]].to_html(
        index=False, float_format=lambda v: f"{v:.3f}", na_rep="NaN")
    bd_mean = bd[bd["clip"] == "mean"] if "clip" in bd else bd
    n_clips = bd.loc[bd["clip"] != "mean", "clip"].nunique() if "clip" in bd else 0
    bd_mean = mark_means(bd, bd_mean)
    clip_html = bd_clip_tables(bd)
    adds_html = html.escape(_adds_to_baseline(results))
    bd_html = bd_mean.drop(columns=["judged_by"], errors="ignore").to_html(
        index=False, float_format=lambda v: f"{v:.2f}", na_rep="NaN")
    same = params.get("settings_reference") or {}
    same_html = (" <b>roi-settings is the baseline</b> here: " + html.escape(
        "; ".join(sorted(set(same.values())))) + "; its rows are the baseline's encodes, "
        "not a second encode of the same command." if same else "")
    judged_html = ""
    if judged_by:
        warn = (" <b>Self-judged:</b> the regions are those the encoder was given, so an ROI in the "
                "wrong place (e.g. labels held from the annotated frame) is flattered; judge by "
                "per-frame labels (<code>--judge-labels-root</code>) for numbers to quote."
                if judged_by.startswith("self") else "")
        judged_html = f"<p>Regions (ROI / non-ROI) defined by: {html.escape(judged_by)}.{warn}</p>"
    front_html = ""
    if frontier is not None and len(frontier):
        front_html = ("<h2>Trade-off front</h2><p>One point per QP mapping: BD-rate of its ROI encode "
                      "inside vs outside the ROI against the plain baseline; <code>pareto</code> marks "
                      "the mappings no other beats on both.</p>"
                      + frontier.drop(columns=["judged_by"], errors="ignore").to_html(
                          index=False, float_format=lambda v: f"{v:.2f}", na_rep="NaN"))
    offsets = offsets_table(results)
    offsets_html = ("" if offsets.empty else
                    "<h2>QP offsets given to the encoder</h2><p>Per clip, over its frames: the mean "
                    "offset of the blocks below the base QP (a rate budget sets it frame by frame; "
                    "<code>min_frame</code> / <code>max_frame</code> are the frames' extremes), "
                    "the lowest and highest block offset, and the mean share of blocks below the "
                    "base QP. Each frame's values are in the encode's sidecar "
                    "(<code>adapter.frame_offsets</code>).</p>"
                    + offsets.to_html(index=False, float_format=lambda v: f"{v:.2f}", na_rep="NaN"))
    got = frames_summary(frames_table(results, ffmpeg) if frames is None else frames)
    got_html = ("" if got.empty else
                "<h2>What each frame got</h2><p>Per ROI encode and rate point, over its frames: "
                "the file growth the rate model predicted for each frame (the maps' "
                "<code>_rate.json</code>; NaN without a rate budget) and the growth it measured "
                "against the plain encode's same frame (display order; mean, lowest, highest), "
                "their mean distance in points (<code>frame_err_pts</code>), the whole file's "
                "growth (<code>file_pct</code>), and what the frames gained in PSNR inside and "
                "outside the ROI against the plain encode's same frame (dB, mean; "
                "<code>roi_gain_min_db</code>: the frame that gained least). One row per frame "
                "is in <code>frames.csv</code>.</p>"
                + (f"<figure><img src='{frames_png.name}'><figcaption>each frame at the middle "
                   "rate point: measured (solid) and predicted (dashed) growth</figcaption></figure>"
                   if frames_png is not None else "")
                + got.to_html(index=False, float_format=lambda v: f"{v:.2f}", na_rep="NaN"))
    imgs = "".join(f"<figure><img src='{p.name}'><figcaption>{p.stem}</figcaption></figure>"
                   for p in plots)
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>roienc sweep report</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1400px}} table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:3px 6px;text-align:right}} .row{{display:flex;gap:12px;flex-wrap:wrap}}
figure{{margin:0}} img{{max-width:660px;image-rendering:pixelated}} figcaption{{font-size:12px}}
h3{{font-size:14px;margin:1em 0 .3em}} table{{display:block;overflow-x:auto;max-width:100%}}
.rd img{{max-width:100%}}</style></head>
<body><h1>roienc sweep</h1>
<p>Negative BD-rate = fewer bits than the reference for the same quality. PSNR inside a region is
pooled over the region's pixels across the clip. ROI = importance &ge; {roi_threshold}.</p>
<p>References: <b>baseline</b> is the plain encoder (same config, preset and rate, nothing the ROI
adds). <b>roi-settings</b>, when run, is the ROI encode's own encoder settings with every offset
zero: roi-settings vs baseline is what the settings alone bring, roi vs roi-settings what the ROI
itself brings. {adds_html}{same_html}</p>
{judged_html}
<h2>BD-rate (mean over {n_clips} clips)</h2>{bd_html}
{clip_html}
{front_html}
{offsets_html}
{got_html}
<h2>Rate-distortion</h2><p>One panel per clip and their mean; curves with the same points
(a reference that is the baseline's command) are drawn once, their names joined by '='.</p>
<div class="row rd">{imgs}</div>
<h2>One frame, side by side</h2>{panel}
<h2>All results</h2>{ssim_note}{res_html}
<h2>Columns</h2>{COLUMNS_HTML}
<h2>Parameters</h2><pre style="white-space:pre-wrap">{html.escape(json.dumps(params, indent=1, default=str))}</pre>
</body></html>
"""
    return write_text(run_dir / "report.html", page)
