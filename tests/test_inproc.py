"""The in-process runner (roienc/inproc.py, PyAV): the ROI it attaches per run of frames is what
the encoder gets, the encode runner records it, engines are chosen once per run."""
import json
import subprocess
import sys

import numpy as np
import pytest

from roienc import inproc
from roienc.adapters import addroi_chain, frame_runs, perframe_filter_script, roi_rects
from roienc.dataset import find_clips
from roienc.encode import RatePoint, encode_many, resolve_engine
from roienc.errors import InputError, ToolError

from conftest import decode_luma, moving_texture, psnr, write_y4m

pytestmark = [pytest.mark.encode,
              pytest.mark.skipif(inproc.versions() is None, reason="PyAV (av) not installed")]
W, H, B = 160, 96, 16
RUNNER = [sys.executable, inproc.__file__]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    d = tmp_path_factory.mktemp("clip")
    return write_y4m(d / "src.y4m", moving_texture(12, H, W)), moving_texture(12, H, W).astype(float)


def run_inproc(src, out, *, roi=None, vf="format=yuv420p", codec="libx265", params="qg-size=16"):
    cmd = [*RUNNER, "-hide_banner", "-nostdin", "-y", "-i", str(src), "-vf", vf, "-map", "0:v:0"]
    if roi is not None:
        cmd += ["-roi", str(roi)]
    cmd += ["-fps_mode", "passthrough", "-c:v", codec, "-preset", "fast", "-crf", "30",
            "-pix_fmt", "yuv420p"]
    if codec == "libx265":
        cmd += ["-x265-params", params]
    cmd += ["-an", str(out)]
    p = subprocess.run(cmd, capture_output=True)
    assert p.returncode == 0, p.stderr.decode()[-2000:]
    return out


def roi_file(path, grids):
    fs = perframe_filter_script(grids, B, W, H)
    inproc.write_roi(path, fs.runs, fs.chains)
    return path


def raw_stream(path):
    """The elementary stream of an MP4 (muxer timestamps aside)."""
    import av
    with av.open(str(path)) as c:
        return b"".join(bytes(p) for p in c.demux(c.streams.video[0]) if p.size)


@pytest.mark.parametrize("codec", ["libx265", "libx264"])
def test_roi_file_equals_the_same_chain_in_the_graph(clip, tmp_path, codec):
    """A run covering the whole clip attaches exactly what the same addroi chain in the -vf
    graph attaches: identical bitstreams; and it changes the stream (the ROI is not dropped)."""
    src, _ = clip
    dq = np.full((H // B, W // B), 2, np.int8)
    dq[1:4, 2:6] = -4
    chain = addroi_chain(roi_rects(dq, B, W, H))
    grids = np.repeat(dq[None], 12, axis=0)
    a = run_inproc(src, tmp_path / "a.mp4", roi=roi_file(tmp_path / "r.json", grids), codec=codec)
    b = run_inproc(src, tmp_path / "b.mp4", vf="format=yuv420p," + chain, codec=codec)
    c = run_inproc(src, tmp_path / "c.mp4", codec=codec)
    assert raw_stream(a) == raw_stream(b)
    assert raw_stream(a) != raw_stream(c)


def test_runs_switch_per_frame_transparently(clip, tmp_path):
    """The same chain cut into one run per frame gives the one-run bitstream: switching graphs
    between frames passes every frame once, in order, with its timestamps."""
    src, _ = clip
    dq = np.zeros((H // B, W // B), np.int8)
    dq[:, :4] = -5
    chain = addroi_chain(roi_rects(dq, B, W, H))
    one = tmp_path / "one.json"
    inproc.write_roi(one, [(0, 11)], [chain])
    per = tmp_path / "per.json"
    inproc.write_roi(per, [(i, i) for i in range(12)], [chain] * 12)
    a = run_inproc(src, tmp_path / "a.mp4", roi=one)
    b = run_inproc(src, tmp_path / "b.mp4", roi=per)
    assert raw_stream(a) == raw_stream(b)


def test_perframe_roi_follows_the_object(clip, tmp_path):
    src_path, src = clip
    n = src.shape[0]
    grids = np.zeros((n, H // B, W // B), np.int8)
    grids[: n // 2, :, :3] = -6
    grids[n // 2:, :, 7:] = -6
    assert len(frame_runs(grids)) == 2
    base = decode_luma(run_inproc(src_path, tmp_path / "b.mp4"), W, H)
    roi = decode_luma(run_inproc(src_path, tmp_path / "r.mp4",
                                 roi=roi_file(tmp_path / "r.json", grids)), W, H)
    assert roi.shape[0] == n
    left = np.zeros((H, W), bool)
    left[:, :48] = True
    right = np.zeros((H, W), bool)
    right[:, 112:] = True
    gain = lambda m, f: psnr(roi[f][:, m], src[f][:, m]) - psnr(base[f][:, m], src[f][:, m])  # noqa: E731
    first, last = slice(0, 1), slice(n - 1, n)
    assert gain(left, first) > gain(right, first) + 1.0
    assert gain(right, last) > gain(left, last) + 1.0


@pytest.mark.parametrize("codec", ["libx265", "libx264"])
def test_first_listed_rectangle_wins(clip, tmp_path, codec):
    """Overlapping first-wins rectangles give the disjoint cover's bitstream; reversed, not."""
    src, _ = clip
    rng = np.random.default_rng(3)
    dq = np.full((H // B, W // B), 2, np.int8)
    dq[1:5, 2:8] = -1
    dq[2:4, 3:6] = -3
    dq[rng.random(dq.shape) < 0.1] = 0
    over, disjoint = roi_rects(dq, B, W, H), roi_rects(dq, B, W, H, overlapping=False)
    assert len(over) < len(disjoint)
    out = {}
    for name, rects in (("over", over), ("disjoint", disjoint), ("reversed", over[::-1])):
        f = tmp_path / f"{name}.json"
        inproc.write_roi(f, [(0, 11)], [addroi_chain(rects)])
        out[name] = raw_stream(run_inproc(src, tmp_path / f"{name}.mp4", roi=f, codec=codec))
    assert out["over"] == out["disjoint"]
    assert out["reversed"] != out["over"]


def test_runner_refuses_what_it_cannot_run(tmp_path):
    with pytest.raises(inproc.ArgvError, match="not supported"):
        inproc.parse_argv(["-i", "x.y4m", "-c:v", "libx265", "-filter_complex", "x", "o.mp4"])
    with pytest.raises(inproc.ArgvError, match="need -i"):
        inproc.parse_argv(["-i", "x.y4m", "o.mp4"])
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"runs": [{"frames": [3, 5], "chain": "x"},
                                        {"frames": [4, 6], "chain": "y"}]}))
    with pytest.raises(inproc.ArgvError, match="disjoint"):
        inproc.read_roi(bad)
    p = subprocess.run([*RUNNER, "-i", str(tmp_path / "missing.y4m"), "-c:v", "libx265",
                        str(tmp_path / "o.mp4")], capture_output=True)
    assert p.returncode == 1 and b"roienc.inproc: error" in p.stderr


def test_engine_choice(monkeypatch):
    monkeypatch.delenv("ROIENC_ENGINE", raising=False)
    assert resolve_engine(None, "libx265") == "pyav"
    assert resolve_engine(None, "libx265", ffmpeg_named=True) == "ffmpeg"
    assert resolve_engine(None, "libx265", two_pass=True) == "ffmpeg"
    assert resolve_engine("ffmpeg", "libx265") == "ffmpeg"
    monkeypatch.setenv("ROIENC_ENGINE", "ffmpeg")
    assert resolve_engine(None, "libx265") == "ffmpeg"
    with pytest.raises(InputError, match="engine 'x'"):
        resolve_engine("x", "libx265")
    with pytest.raises(InputError, match="two-pass"):
        resolve_engine("pyav", "libx265", two_pass=True)
    import roienc.encode as enc
    monkeypatch.setattr(enc, "inproc_versions", lambda: None)
    with pytest.raises(ToolError, match="not installed"):
        resolve_engine("pyav", "libx265")
    assert resolve_engine("auto", "libx265") == "ffmpeg"


def test_encode_records_the_runner_and_its_equivalent(seq_dataset, tmp_path):
    """Sidecars of a pyav run: the runner's argv (replayable), the -roi file, the versions of the
    FFmpeg libraries that encoded, and the equivalent FFmpeg CLI command; the baseline and the ROI
    encode go through the same engine; a CLI encode is not reused for a pyav run."""
    root, maps = seq_dataset
    clips = find_clips(root, "val", source="sequence")
    res = {r["mode"]: r for r in encode_many(clips, maps, modes=["baseline", "roi"], rates=[RatePoint("crf", 30)],
                                             out=tmp_path, preset="fast", progress=False,
                                             engine="pyav")}
    for r in res.values():
        assert r["status"] == "ok", r["error"]
        assert r["engine"] == "pyav" and r["pyav"]["encoder_build"].startswith("x265 ")
        assert r["commands"][0][:2] == RUNNER
        assert r["ffmpeg_equivalent"]["command"][1:3] == ["-hide_banner", "-nostdin"]
    roi = res["roi"]
    cmd = roi["commands"][0]
    rf = cmd[cmd.index("-roi") + 1]
    doc = json.loads(open(rf).read())
    assert rf == roi["adapter"]["roi_file"] and len(doc["runs"]) <= roi["adapter"]["runs"]
    assert "qg-size=16" in cmd[cmd.index("-x265-params") + 1]
    assert any(a.endswith(".filter.txt") for a in roi["ffmpeg_equivalent"]["command"])
    # replay by hand: the recorded argv, output renamed, gives the same bytes
    replay = cmd[:-1] + [str(tmp_path / "replay.mp4")]
    assert subprocess.run(replay, capture_output=True).returncode == 0
    mp4 = tmp_path / "hevc/roi/crf30/lindau_000000.mp4"
    assert raw_stream(tmp_path / "replay.mp4") == raw_stream(mp4)
    # the CLI engine encodes again instead of reusing the pyav encode (another encoder build)
    again = encode_many(clips, maps, modes=["baseline"], rates=[RatePoint("crf", 30)],
                        out=tmp_path, preset="fast", progress=False, engine="ffmpeg",
                        skip_existing=True)[0]
    assert not again.get("skipped_existing") and again["engine"] == "ffmpeg"
