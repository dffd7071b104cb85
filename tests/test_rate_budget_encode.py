"""--rate-budget end to end on a synthesized snippet whose ROI changes from frame to frame, with
real libx265 encodes: the per-frame offsets follow the rule, the encoder's bits follow the
budget, a zero budget without a background to pay gives the baseline's bitstream, and the
options reach params.json and the sweep's mapping hash."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from roienc.cli import main as cli
from roienc.dataset import find_clips
from roienc.encode import RatePoint, encode_many
from roienc.maps import QPParams, build_maps, read_manifest
from roienc.probe import packet_sizes
from roienc.qpmap import block_reduce, block_strength
from roienc.ratemodel import block_weights, offset_grid, predicted_rate

pytestmark = [pytest.mark.encode, pytest.mark.slow]

# 384x192 frames: 16-px blocks (x265 gets qg-size 16); a delta cap high enough for the budget to bind
QP = dict(block_size=16, delta=9, background=0, block_stat="max", floor=0.0)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    from roienc.synth import synthesize

    r = tmp_path_factory.mktemp("cs")
    synthesize(r, width=384, height=192, seed=0)
    return r


def _maps(root, out, **qp):
    build_maps(root, out, split="val", sequences=True, workers=1, progress=False,
               visualize_every=0, qp=QPParams(**{**QP, **qp}))
    return out


def _bytes(ffmpeg, path):
    return sum(packet_sizes(ffmpeg, path))


def test_offsets_follow_the_budget_frame_by_frame(root, tmp_path, ffmpeg):
    maps = _maps(root, tmp_path / "maps", rate_budget=10.0)
    man = read_manifest(maps)
    seq = man[man["source"] == "sequence"].sort_values("frame_id")
    assert (seq["status"] == "ok").all() and len(seq) == 30
    # every frame within its budget (the dithered integer grid: within 1.5 points)
    assert (seq["rate_predicted_pct"] <= 10.0 + 1.5).all()
    cost_share, deltas = [], []
    for fid, d in zip(seq["frame_id"], seq["qp_roi_delta"]):
        folder = maps / "val" / "lindau"
        choice = json.loads((folder / f"{fid}_rate.json").read_text())
        assert choice["roi_delta"] == pytest.approx(d) and choice["budget_pct"] == 10.0
        s = block_strength(block_reduce(np.load(folder / f"{fid}_importance.npz")["importance"], 16, "max"))
        w = block_weights(np.load(folder / f"{fid}_activity.npy"), s.shape, 16)
        # the rule, recomputed: the delta spends the budget exactly (below its cap of 9)
        assert 0 < d < 9
        assert predicted_rate(offset_grid(s, d, 0), w) == pytest.approx(0.10, abs=2e-4)
        assert predicted_rate(offset_grid(s, d + 0.1, 0), w) > 0.10
        cost_share.append(float((w * s).sum() / w.sum()))     # importance-weighted cost share
        deltas.append(d)
    # the ROI's share of the predicted bits changes across the snippet; a larger share, a smaller delta
    assert max(cost_share) > 1.2 * min(cost_share)
    assert np.corrcoef(cost_share, deltas)[0, 1] < -0.8

    # the encoder's own bits (packet sizes) against the plain encode, at two budgets
    clips = [c for c in find_clips(root, "val") if c.source == "sequence"]
    small = _maps(root, tmp_path / "maps3", rate_budget=3.0)
    measured = {}
    for name, m in (("10", maps), ("3", small)):
        encode_many(clips, m, modes=["baseline", "roi"], rates=[RatePoint("crf", 30)],
                    out=tmp_path / f"e{name}", preset="fast", progress=False)
        base = _bytes(ffmpeg.path, tmp_path / f"e{name}/hevc/baseline/crf30/{clips[0].clip_id}.mp4")
        roi = _bytes(ffmpeg.path, tmp_path / f"e{name}/hevc/roi/crf30/{clips[0].clip_id}.mp4")
        measured[name] = 100.0 * (roi / base - 1)
    # measured on this clip: +11.3% at budget 10 (CRF 24/30/36: +6.7 / +11.3 / +16.1%)
    assert 5.0 <= measured["10"] <= 16.0, measured
    assert 0.5 <= measured["3"] < measured["10"] / 2, measured


def test_zero_budget_without_background_is_the_baseline(root, tmp_path):
    """Budget 0 and no background offset allowed: the solver gives every block 0, and the ROI
    encode is the baseline's bitstream byte for byte."""
    maps = _maps(root, tmp_path / "maps", rate_budget=0.0)
    man = read_manifest(maps)
    assert (man["qp_roi_delta"] == 0).all()
    clips = [c for c in find_clips(root, "val") if c.source == "sequence"]
    encode_many(clips, maps, modes=["baseline", "roi"], rates=[RatePoint("crf", 30)],
                out=tmp_path / "e", preset="fast", progress=False)
    cid = clips[0].clip_id
    assert ((tmp_path / f"e/hevc/roi/crf30/{cid}.mp4").read_bytes()
            == (tmp_path / f"e/hevc/baseline/crf30/{cid}.mp4").read_bytes())


def test_rate_budget_in_params_and_the_sweep_hash(root, tmp_path):
    run = tmp_path / "run"
    assert cli(["sweep", "--cityscapes-root", str(root), "--split", "val", "--modes",
                "baseline,roi", "--crf", "26,32,38", "--preset", "fast", "--out", str(run),
                "--no-progress", "--workers", "1", "--block-size", "16", "--delta", "9",
                "--background", "0", "--rate-budget", "off,4,12", "--no-settings-reference",
                # the margin at half importance, as when this was measured: at the default
                # quarter the self-judged ROI (importance >= 0.5) of this 384x192 clip shrinks to
                # the objects' cores, where a BD-rate over 3 CRFs is not monotone in the budget
                # (-5.6% at 4, -1.3% at 12; -2.0% / -12.6% at half importance)
                "--propagation", "margin_importance=0.5"]) == 0
    sweep = json.loads((run / "sweep.json").read_text())
    combos = sweep["qp_combinations"]
    assert sorted(q["rate_budget"] is None or q["rate_budget"] for q in combos.values()) == [True, 4.0, 12.0]
    labels = list(combos)
    assert len(set(labels)) == 3 and any("-r4-" in lab for lab in labels)
    for lab, q in combos.items():
        params = json.loads((run / "maps" / lab / "params.json").read_text())
        assert params["qp"]["rate_budget"] == q["rate_budget"]
    fr = pd.read_csv(run / "frontier.csv").set_index("rate_budget", drop=False)
    # a larger budget buys more inside the ROI
    assert fr.loc[12.0, "bd_psnr_roi_pct"] < fr.loc[4.0, "bd_psnr_roi_pct"]
    # the report shows the offsets the encoder was given, from the sidecars: a larger budget,
    # deeper offsets; the fixed mapping reaches its full delta
    from roienc.report import offsets_table

    assert "QP offsets given to the encoder" in (run / "report.html").read_text()
    off = offsets_table(pd.read_csv(run / "results.csv")).set_index("maps")
    budget = {lab: q["rate_budget"] for lab, q in combos.items()}
    by_budget = {budget[m]: row for m, row in off.iterrows()}
    assert by_budget[12.0]["mean_roi_offset"] < by_budget[4.0]["mean_roi_offset"] < 0
    assert by_budget[None]["lowest_offset"] == -9


def _display_order_bytes(mp4):
    """An independent reader: PyAV's demuxer, packets sorted by presentation time."""
    import av

    with av.open(str(mp4)) as c:
        s = c.streams.video[0]
        return [p.size for p in sorted((p for p in c.demux(s) if p.size), key=lambda p: p.pts)]


def test_what_each_frame_got(root, tmp_path, ffmpeg):
    """frames.csv and the report: per frame of every ROI encode the offsets, the rate model's
    prediction (the maps' _rate.json), its bytes and the plain encode's bytes for the same
    picture, in display order."""
    run = tmp_path / "run"
    assert cli(["sweep", "--cityscapes-root", str(root), "--split", "val", "--modes",
                "baseline,roi", "--crf", "26,34", "--preset", "fast", "--out", str(run),
                "--no-progress", "--workers", "1", "--block-size", "16", "--delta", "9",
                "--background", "0", "--rate-budget", "4,12", "--no-settings-reference"]) == 0
    res = pd.read_csv(run / "results.csv")
    fr = pd.read_csv(run / "frames.csv")
    roi = res[res["mode"] == "roi"]
    assert len(fr) == 30 * len(roi) == 30 * 2 * 2
    reordered = 0
    for _, r in res.iterrows():
        side = json.loads(open(r["sidecar"]).read())
        got = side["frame_bytes"]
        mp4 = r["sidecar"][:-len(".json")] + ".mp4"
        assert got == _display_order_bytes(mp4) and sum(got) == side["video_bytes"]
        reordered += got != packet_sizes(ffmpeg.path, mp4)     # decode order: B-pictures
        if r["mode"] != "roi":
            continue
        rows = fr[(fr["maps"] == r["maps"]) & (fr["rate_value"] == r["rate_value"])].sort_values("frame")
        assert rows["bytes"].tolist() == got
        plain = res[(res["mode"] == "baseline") & (res["rate_value"] == r["rate_value"])].iloc[0]
        assert rows["plain_bytes"].tolist() == json.loads(open(plain["sidecar"]).read())["frame_bytes"]
        growth = 100 * (rows["bytes"] / rows["plain_bytes"] - 1)
        assert np.allclose(rows["measured_pct"], growth)
        maps = run / "maps" / r["maps"] / "val" / "lindau"
        pred = [json.loads((maps / f"{fid}_rate.json").read_text())["predicted_pct"]
                for fid in rows["frame_id"]]
        assert np.allclose(rows["predicted_pct"], pred)
        assert (rows["mean_roi_offset"] <= 0).all() and (rows["mean_roi_offset"] < 0).any()
        # each frame's quality: evaluate's per-frame figures of this encode and of the plain one
        own = pd.read_csv(r["frames_csv"]).sort_values("frame")
        ref = pd.read_csv(plain["frames_csv"]).sort_values("frame")
        assert np.allclose(rows["psnr_roi"], own["psnr_roi"], equal_nan=True)
        assert np.allclose(rows["plain_psnr_nonroi"], ref["psnr_nonroi"], equal_nan=True)
    assert reordered > 0, "no encode with B-pictures: display order not exercised"
    # the larger budget: deeper offsets and more bytes, frame for frame on average
    by = fr.assign(b=fr["maps"].str.contains("-r12-")).groupby("b")
    assert by["mean_roi_offset"].mean()[True] < by["mean_roi_offset"].mean()[False]
    assert by["measured_pct"].mean()[True] > by["measured_pct"].mean()[False]
    gain = (fr["psnr_roi"] - fr["plain_psnr_roi"]).groupby(fr["maps"].str.contains("-r12-")).mean()
    assert gain[True] > gain[False] > 0           # frame for frame, more inside for more budget
    html = (run / "report.html").read_text()
    assert "What each frame got" in html and "frame_err_pts" in html and "frames.png" in html
    assert (run / "frames.png").read_bytes()[:4] == b"\x89PNG"
    # sidecars written before encodes recorded them: the bytes from the mp4, the predictions
    # from the maps' _rate.json, the same table
    from roienc.report import frames_table

    for sc in res["sidecar"]:
        side = json.loads(open(sc).read())
        side.pop("frame_bytes")
        side["adapter"].pop("frame_predicted_pct", None)
        open(sc, "w").write(json.dumps(side))
    pd.testing.assert_frame_equal(frames_table(res, ffmpeg.path), fr, check_dtype=False)
    # PyAV's demuxer first; FFmpeg's framecrc where it cannot read the file
    import av
    from unittest import mock

    with mock.patch.object(av, "open", side_effect=av.InvalidDataError(1, "mocked")):
        pd.testing.assert_frame_equal(frames_table(res, ffmpeg.path), fr, check_dtype=False)
        assert frames_table(res)["bytes"].isna().all()    # neither reader: unknown, not guessed
