"""The encoder obeys what the adapters say: real FFmpeg/x265 encodes of small generated clips."""
import csv
import re

import numpy as np
import pytest

from roienc.adapters import (addroi_chain, ffmpeg_filter_script_args, perframe_filter_script,
                             qp_range_for, qpfile_text, roi_rects, zones_string)
from roienc.tools import find_x265, run

from conftest import decode_luma, moving_texture, psnr, write_y4m

pytestmark = pytest.mark.encode
W, H, B = 160, 96, 16


def encode(ff, src, out, *, vf=None, script=None, params="", crf=30, pix_fmt="yuv420p",
           codec="libx265", extra=()):
    cmd = [ff.path, "-hide_banner", "-loglevel", "error", "-y", "-i", str(src)]
    if script:
        cmd += [*ffmpeg_filter_script_args(ff, script), "-map", "[vout]"]
    elif vf:
        cmd += ["-vf", vf]
    cmd += ["-fps_mode", "passthrough", "-c:v", codec, "-preset", "fast", "-crf", str(crf),
            "-pix_fmt", pix_fmt, *extra]
    if codec == "libx265":
        cmd += ["-x265-params", "log-level=error:qg-size=16" + (":" + params if params else "")]
    run(cmd + [str(out)])
    return out


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    d = tmp_path_factory.mktemp("clip")
    return write_y4m(d / "src.y4m", moving_texture(12, H, W)), moving_texture(12, H, W).astype(float)


def region_psnr(dec, src, mask, frames=slice(None)):
    return psnr(dec[frames][:, mask], src[frames][:, mask])


@pytest.mark.parametrize("codec", ["libx265", "libx264"])
def test_static_roi_moves_quality(ffmpeg, clip, tmp_path, codec):
    src_path, src = clip
    dq = np.full((H // B, W // B), 3, np.int8)
    dq[1:4, 2:6] = -4
    mask = np.zeros((H, W), bool)
    mask[16:64, 32:96] = True
    chain = addroi_chain(roi_rects(dq, B, W, H))
    base = decode_luma(encode(ffmpeg, src_path, tmp_path / "b.mp4", codec=codec), W, H)
    roi = decode_luma(encode(ffmpeg, src_path, tmp_path / "r.mp4", vf=chain, codec=codec), W, H)
    assert region_psnr(roi, src, mask) > region_psnr(base, src, mask) + 1.0
    assert region_psnr(roi, src, ~mask) < region_psnr(base, src, ~mask) - 0.5


def test_perframe_roi_follows_the_object(ffmpeg, clip, tmp_path):
    src_path, src = clip
    n = src.shape[0]
    grids = np.zeros((n, H // B, W // B), np.int8)
    grids[: n // 2, :, :3] = -6      # first half: left columns protected
    grids[n // 2:, :, 7:] = -6       # second half: right columns
    fs = perframe_filter_script(grids, B, W, H)
    assert len(fs.runs) == 2
    script = tmp_path / "f.txt"
    script.write_text(fs.text)
    base = decode_luma(encode(ffmpeg, src_path, tmp_path / "b.mp4"), W, H)
    roi = decode_luma(encode(ffmpeg, src_path, tmp_path / "r.mp4", script=script), W, H)
    assert roi.shape[0] == n          # no frame duplicated or dropped
    left = np.zeros((H, W), bool)
    left[:, :48] = True
    right = np.zeros((H, W), bool)
    right[:, 112:] = True
    first, last = slice(0, 1), slice(n - 1, n)
    gain = lambda m, f: region_psnr(roi, src, m, f) - region_psnr(base, src, m, f)  # noqa: E731
    assert gain(left, first) > gain(right, first) + 1.0
    assert gain(right, last) > gain(left, last) + 1.0


def _framecrc(ffmpeg, src_path, tmp_path, script=None):
    out = tmp_path / ("s.crc" if script else "p.crc")
    cmd = [ffmpeg.path, "-v", "error", "-y", "-i", str(src_path)]
    if script:
        cmd += [*ffmpeg_filter_script_args(ffmpeg, script), "-map", "[vout]"]
    run(cmd + ["-fps_mode", "passthrough", "-f", "framecrc", str(out)])
    rows = [[c.strip() for c in line.split(",")] for line in out.read_text().splitlines()
            if not line.startswith("#")]
    return [(int(r[2]), r[5]) for r in rows]          # (pts, crc of the picture)


@pytest.mark.parametrize("router", ["segment", "trim"])
def test_perframe_script_passes_every_frame_once_in_order(ffmpeg, clip, tmp_path, router):
    """One run per frame (the worst case): same pictures, same order, pts 0..n-1."""
    src_path, src = clip
    n = src.shape[0]
    grids = np.zeros((n, H // B, W // B), np.int8)
    for i in range(n):
        grids[i, i % (H // B), i % (W // B)] = -3 - (i % 2)
    fs = perframe_filter_script(grids, B, W, H, router=router)
    assert len(fs.runs) == n
    script = tmp_path / "f.txt"
    script.write_text(fs.text)
    plain = _framecrc(ffmpeg, src_path, tmp_path)
    roi = _framecrc(ffmpeg, src_path, tmp_path, script)
    assert [p for p, _ in roi] == list(range(n))
    assert [c for _, c in roi] == [c for _, c in plain]


@pytest.mark.parametrize("router", ["segment", "trim"])
def test_perframe_graph_is_transparent_to_the_encoder(ffmpeg, clip, tmp_path, router):
    """The segment (or split/trim) + concat graph without its addroi filters must give the
    baseline's exact bitstream: same frames, same timestamps, same time base, so x265's rate
    control sees the same clip. (The earlier select/interleave graph failed this: its 1/1000000
    time base made x265 rate-control the clip as if it ran at ~1 MHz, 38 vs 32 average QP at
    the same CRF.)"""
    src_path, src = clip
    n = src.shape[0]
    grids = np.zeros((n, H // B, W // B), np.int8)
    for i in range(n):
        grids[i, 0, i % (W // B)] = -3
    fs = perframe_filter_script(grids, B, W, H, pix_fmt="yuv420p", router=router)
    bare = re.sub(r",addroi=[^\[;]*", "", fs.text)
    assert "addroi" not in bare
    assert (bare.count("trim=") == n) if router == "trim" else (bare.count("segment=") == 1)
    script = tmp_path / "bare.txt"
    script.write_text(bare)
    a = encode(ffmpeg, src_path, tmp_path / "a.hevc", extra=["-f", "hevc"])
    b = encode(ffmpeg, src_path, tmp_path / "b.hevc", script=script, extra=["-f", "hevc"])
    assert a.read_bytes() == b.read_bytes()


def test_all_zero_map_is_bit_identical(ffmpeg, clip, tmp_path):
    src_path, _ = clip
    fs = perframe_filter_script(np.zeros((12, H // B, W // B), np.int8), B, W, H)
    assert not fs.has_roi and fs.text.startswith("[0:v]null")
    script = tmp_path / "zero.txt"
    script.write_text(fs.text)
    a = encode(ffmpeg, src_path, tmp_path / "a.hevc", extra=["-f", "hevc"])
    b = encode(ffmpeg, src_path, tmp_path / "b.hevc", script=script, extra=["-f", "hevc"])
    assert a.read_bytes() == b.read_bytes()      # the zero map's filter script changes nothing
    # and a zero-offset ROI changes nothing in the bitstream either
    c = encode(ffmpeg, src_path, tmp_path / "c.hevc", vf="addroi=x=0:y=0:w=32:h=32:qoffset=0/51",
               extra=["-f", "hevc"])
    assert c.read_bytes() == a.read_bytes()


def test_odd_size_single_block_and_10bit(ffmpeg, tmp_path):
    w, h = 100, 58                    # not multiples of 16
    frames = moving_texture(6, h, w, seed=3)
    src_path = write_y4m(tmp_path / "odd.y4m", frames)
    dq = np.zeros((-(-h // B), -(-w // B)), np.int8)
    dq[-1, -1] = -5                   # a single partial edge block
    rects = roi_rects(dq, B, w, h)
    assert rects[0].x + rects[0].w == w and rects[0].y + rects[0].h == h
    out = encode(ffmpeg, src_path, tmp_path / "odd.mp4", vf=addroi_chain(rects))
    assert decode_luma(out, w, h).shape == (6, h, w)
    # 10-bit: the offset is scaled by 63
    big = np.full((96 // B, 160 // B), -6, np.int8)
    src10 = write_y4m(tmp_path / "ten.y4m", moving_texture(6, 96, 160))
    chain = addroi_chain(roi_rects(big, B, 160, 96), qp_range_for("yuv420p10le"))
    assert "qoffset=-6/63" in chain
    b10 = encode(ffmpeg, src10, tmp_path / "b10.mp4", pix_fmt="yuv420p10le")
    r10 = encode(ffmpeg, src10, tmp_path / "r10.mp4", pix_fmt="yuv420p10le", vf=chain)
    assert r10.stat().st_size > b10.stat().st_size * 1.1   # whole frame at lower QP: more bits


def _x265_csv_qps(path):
    with open(path) as f:
        lines = f.read().split("\n\n")[0].splitlines()   # frame rows end at the blank line
    rows = csv.DictReader(lines, skipinitialspace=True)
    return {int(r["POC"]): float(r["QP"]) for r in rows}


def test_zones_set_frame_qp(ffmpeg, clip, tmp_path):
    """Every frame, boundaries included, gets its zone's QP (x265 zone frames are 1-based)."""
    src_path, _ = clip
    qps = [24] * 6 + [40] * 3 + [30] * 3
    zones = zones_string(qps)
    assert zones == "1,6,q=24/7,9,q=40/10,12,q=30"
    log = tmp_path / "x.csv"
    encode(ffmpeg, src_path, tmp_path / "z.mp4",
           params=f"zones={zones}:bframes=0:aq-mode=0:cutree=0:csv={log}:csv-log-level=1")
    poc_qp = _x265_csv_qps(log)
    got = [round(poc_qp[i]) for i in range(12)]
    assert got[1:] == qps[1:], got         # frame 0 is the IDR, whose QP x265 sets itself


def test_qpfile_sets_frame_qp(tmp_path, clip):
    try:
        x265 = find_x265()
    except Exception:
        pytest.skip("x265 CLI not installed")
    src_path, _ = clip
    qps = [22 + 2 * i for i in range(12)]
    qpf = tmp_path / "q.txt"
    qpf.write_text(qpfile_text(qps))
    log = tmp_path / "x.csv"
    run([x265.path, "--input", str(src_path), "--preset", "fast", "--crf", "28", "--bframes", "0",
         "--qpfile", str(qpf), "--csv", str(log), "--csv-log-level", "1", "--log-level", "error",
         "--aq-mode", "0", "--output", str(tmp_path / "q.hevc")])
    poc_qp = _x265_csv_qps(log)
    for poc, qp in enumerate(qps):
        assert poc_qp[poc] == pytest.approx(qp, abs=0.01), (poc, poc_qp)


@pytest.mark.parametrize("codec", ["libx265", "libx264"])
def test_overlapping_rectangles_first_wins_in_the_encoder(ffmpeg, clip, tmp_path, codec):
    """The encoder derives the same per-block offsets from the overlapping first-wins
    rectangles as from the disjoint exact cover: the bitstreams are identical (FFmpeg's
    libx264/libx265 wrappers fill their offset maps walking the ROI list in reverse)."""
    src_path, _ = clip
    rng = np.random.default_rng(3)
    dq = np.full((H // B, W // B), 2, np.int8)            # background +2 as in real maps
    dq[1:5, 2:8] = -1
    dq[2:4, 3:6] = -3
    dq[rng.random(dq.shape) < 0.1] = 0
    over, disjoint = roi_rects(dq, B, W, H), roi_rects(dq, B, W, H, overlapping=False)
    assert len(over) < len(disjoint)
    assert max(r.w * r.h for r in over) > max(r.w * r.h for r in disjoint)    # they do overlap
    a = encode(ffmpeg, src_path, tmp_path / "a.mkv", vf=addroi_chain(over), codec=codec)
    b = encode(ffmpeg, src_path, tmp_path / "b.mkv", vf=addroi_chain(disjoint), codec=codec)
    c = encode(ffmpeg, src_path, tmp_path / "c.mkv", vf=addroi_chain(over[::-1]), codec=codec)
    raw = lambda p: run([ffmpeg.path, "-loglevel", "error", "-i", str(p), "-c", "copy", "-f",
                         "hevc" if codec == "libx265" else "h264", "-"]).stdout
    assert raw(a) == raw(b)
    assert raw(c) != raw(a)          # the order matters: reversed, the background wins
