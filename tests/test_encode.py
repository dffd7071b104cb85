"""The encode runner on synthesized snippets: every mode, both codecs, sidecars, refusals."""
import json
import shutil

import pytest

from roienc.cli import main as cli
from roienc.dataset import find_clips
from roienc.encode import RatePoint, encode_many, parse_bitrate
from roienc.errors import InputError, ToolError
from roienc.maps import QPParams, build_maps
from roienc.synth import synthesize

pytestmark = pytest.mark.encode
CRF = [RatePoint("crf", 30)]


def _x265_missing() -> str | None:
    """Why qpfile mode cannot run here (no x265 CLI), or None."""
    from roienc.tools import find_x265
    try:
        find_x265()
    except ToolError as exc:
        return f"x265 CLI not found, qpfile mode untested: {exc}"
    return None


def _engines():
    from roienc.inproc import versions
    return ["ffmpeg"] + (["pyav"] if versions() else [])


ENGINES = _engines()


@pytest.fixture(scope="module", params=ENGINES)
def hevc_runs(seq_dataset, tmp_path_factory, request):
    """Every hevc mode, through each engine (the FFmpeg CLI; the in-process runner with PyAV)."""
    root, maps = seq_dataset
    out = tmp_path_factory.mktemp("enc")
    clips = find_clips(root, "val", source="sequence")
    modes = ["baseline", "roi-settings", "roi", "zones", "roi+zones"] + (["qpfile"] if _x265_missing() is None else [])
    res = encode_many(clips, maps, codec="hevc", modes=modes, engine=request.param,
                      rates=CRF, out=out, preset="fast", progress=False, cityscapes_root=root)
    return root, maps, out, {r["mode"]: r for r in res}


def test_every_hevc_mode_encodes(hevc_runs):
    root, maps, out, res = hevc_runs
    assert set(res) - {"qpfile"} == {"baseline", "roi-settings", "roi", "zones", "roi+zones"}
    for mode, r in res.items():
        assert r["status"] == "ok", (mode, r["error"])
        folder = out / "hevc" / mode / "crf30"
        assert (folder / "lindau_000000.mp4").is_file()
        assert (folder / "lindau_000000.log").stat().st_size > 0
        side = json.loads((folder / "lindau_000000.json").read_text())
        assert side["frames"] == side["frames_encoded"] == 30 and side["fps"] == 17.0
        assert side["width"] == 192 and side["height"] == 96 and side["pix_fmt"] == "yuv420p"
        assert side["kbps"] > 0 and side["bytes"] > 0 and side["encode_seconds"] > 0
        assert side["commands"] and all(isinstance(c, list) for c in side["commands"])
        assert side["maps"] == (None if mode == "baseline" else str(maps))
        assert len(side["frame_ids"]) == 30
    assert not list(out.rglob("*.tmp*"))
    # the ROI command reads the filter script (CLI) or the per-run ROI file (in-process) it
    # wrote, with qg-size matching the 16-px blocks; every FFmpeg mode went through one engine
    roi_cmd = res["roi"]["commands"][0]
    engine = res["roi"]["engine"]
    assert {r["engine"] for m, r in res.items() if m != "qpfile"} == {engine}
    if engine == "pyav":
        assert roi_cmd[roi_cmd.index("-roi") + 1].endswith("lindau_000000.roi.json")
    else:
        assert any(a.endswith("lindau_000000.filter.txt") for a in roi_cmd)
    assert "qg-size=16" in roi_cmd[roi_cmd.index("-x265-params") + 1]
    assert "-tag:v" in roi_cmd and "hvc1" in roi_cmd
    # zones follow the rate point: QP = crf + frame delta
    ad = res["zones"]["adapter"]
    assert ad["qp_offset"] == 30 - 32 and ad["zones"].startswith("1,")


def test_qpfile_mode_encodes(hevc_runs):
    if _x265_missing():
        pytest.skip(_x265_missing())
    root, maps, out, res = hevc_runs
    assert res["qpfile"]["status"] == "ok" and res["qpfile"]["encoder"] == "x265"
    assert (out / "hevc" / "qpfile" / "crf30" / "lindau_000000.qpfile.txt").read_text().startswith("0 I ")


def _argv_without_output(cmd: list[str]) -> list[str]:
    return [a for a in cmd[:-1]]


def test_baseline_is_the_plain_encoder(hevc_runs, tmp_path):
    """The baseline's argv is the same with and without maps (no qg-size, nothing of the ROI);
    roi-settings is exactly the baseline plus the ROI's qg-size, and says so in its sidecar."""
    root, maps, out, res = hevc_runs
    plain = encode_many(find_clips(root, "val", source="sequence"), None, codec="hevc",
                        modes=["baseline"], rates=CRF, out=tmp_path, preset="fast",
                        progress=False, cityscapes_root=root, engine=res["baseline"]["engine"])[0]
    with_maps = res["baseline"]
    assert plain["status"] == "ok"
    assert _argv_without_output(plain["commands"][0]) == _argv_without_output(with_maps["commands"][0])
    assert not any("qg-size" in a for a in with_maps["commands"][0])
    assert with_maps["adds_to_baseline"] == {"encoder_params": {}, "roi": "none"}
    assert plain["bytes"] == with_maps["bytes"]
    ref = res["roi-settings"]
    assert ref["adds_to_baseline"] == {"encoder_params": {"qg-size": 16}, "roi": "none"}
    assert res["roi"]["adds_to_baseline"]["encoder_params"] == {"qg-size": 16}
    base_cmd, ref_cmd = with_maps["commands"][0], ref["commands"][0]
    i = base_cmd.index("-x265-params")
    assert ref_cmd[i + 1] == base_cmd[i + 1] + ":qg-size=16"
    assert _argv_without_output(ref_cmd)[:i + 1] == _argv_without_output(base_cmd)[:i + 1]
    assert ref["bytes"] != with_maps["bytes"]     # qg-size really changes the stream


def test_zones_follow_the_rate_point(seq_dataset, tmp_path):
    root, maps = seq_dataset
    clips = find_clips(root, "val")
    res = encode_many(clips, maps, modes=["zones"], rates=[RatePoint("crf", 24), RatePoint("crf", 36)],
                      out=tmp_path, preset="fast", progress=False)
    low, high = sorted(res, key=lambda r: r["rate_value"])
    assert low["kbps"] > 2 * high["kbps"]
    assert low["adapter"]["qp_offset"] - high["adapter"]["qp_offset"] == -12


def test_h264_baseline_and_roi_and_skip_existing(seq_dataset, tmp_path):
    root, maps = seq_dataset
    clips = find_clips(root, "val")
    res = encode_many(clips, maps, codec="h264", modes=["baseline", "roi"],
                      rates=[RatePoint("bitrate", parse_bitrate("300k"))], out=tmp_path,
                      preset="fast", progress=False)
    assert [r["status"] for r in res] == ["ok", "ok"]
    assert (tmp_path / "h264" / "roi" / "bitrate300k" / "lindau_000000.mp4").is_file()
    for r in res:          # in-process encodes name the x264 build that encoded
        assert r["engine"] != "pyav" or r["pyav"]["encoder_build"].startswith("x264 core "), r.get("pyav")
    again = encode_many(clips, maps, codec="h264", modes=["baseline"],
                        rates=[RatePoint("bitrate", 300)], out=tmp_path, preset="fast",
                        progress=False, skip_existing=True)
    assert again[0].get("skipped_existing")
    # the same config from another file (another install or checkout) is the same setting
    import shutil
    from roienc.configs import load_config
    copy = tmp_path / "elsewhere" / "h264.toml"
    copy.parent.mkdir()
    shutil.copy(load_config(None, "h264").path, copy)
    moved = encode_many(clips, maps, codec="h264", modes=["baseline"], config=str(copy),
                        rates=[RatePoint("bitrate", 300)], out=tmp_path, preset="fast",
                        progress=False, skip_existing=True)
    assert moved[0].get("skipped_existing")
    # changed settings are not "existing": another preset or two-pass encodes again
    other = encode_many(clips, maps, codec="h264", modes=["baseline"],
                        rates=[RatePoint("bitrate", 300)], out=tmp_path, preset="faster",
                        progress=False, skip_existing=True)
    assert not other[0].get("skipped_existing") and other[0]["config"]["preset"] == "faster"
    two = encode_many(clips, maps, codec="h264", modes=["baseline"],
                      rates=[RatePoint("bitrate", 300)], out=tmp_path, preset="faster",
                      progress=False, skip_existing=True, two_pass=True)
    assert not two[0].get("skipped_existing") and len(two[0]["commands"]) == 2


@pytest.mark.parametrize("engine", ENGINES)
def test_all_zero_map_roi_equals_baseline(seq_dataset, tmp_path, engine):
    root, _ = seq_dataset
    maps0 = tmp_path / "maps0"
    build_maps(root, maps0, split="val", sequences=True, workers=1, progress=False,
               visualize_every=0, qp=QPParams(delta=0))
    clips = find_clips(root, "val")
    res = encode_many(clips, maps0, modes=["baseline", "roi"], rates=CRF, out=tmp_path / "e",
                      preset="fast", progress=False, engine=engine)
    assert [r["engine"] for r in res] == [engine, engine]
    b = (tmp_path / "e/hevc/baseline/crf30/lindau_000000.mp4").read_bytes()
    r = (tmp_path / "e/hevc/roi/crf30/lindau_000000.mp4").read_bytes()
    assert b == r
    assert "all-zero" in res[1]["adapter"]["note"]


@pytest.mark.parametrize("engine", ENGINES)
def test_threads_pin_the_bitstream_whatever_the_jobs(seq_dataset, tmp_path, engine):
    """x265's bitstream depends on its thread pool: --threads gives every encode the same
    pool whatever --jobs (one job alone would leave the choice to x265, two would pass
    pools=1 on a 2-core machine), and the sidecar records it."""
    root, maps = seq_dataset
    clips = find_clips(root, "val")
    kw = dict(modes=["roi"], rates=CRF, preset="fast", progress=False, engine=engine)
    one = encode_many(clips, maps, out=tmp_path / "a", jobs=1, threads=2, **kw)
    two = encode_many(clips, maps, out=tmp_path / "b", jobs=2, threads=2, **kw)
    assert len(one) == len(two) == len(clips)
    for a, b in zip(one, two):
        assert a["status"] == b["status"] == "ok"
        assert a["threads"] == b["threads"] == 2 and a["cpu_count"] >= 1
        assert all("pools=2" in " ".join(c) for c in (a["commands"][0], b["commands"][0]))
        mp4 = f"hevc/roi/crf30/{a['clip']}.mp4"
        assert (tmp_path / "a" / mp4).read_bytes() == (tmp_path / "b" / mp4).read_bytes()
    auto = encode_many(clips[:1], maps, out=tmp_path / "c", jobs=1, **kw)
    assert auto[0]["threads"] == 0 and "pools=" not in " ".join(auto[0]["commands"][0])
    for bad in (0, 2.5, True):
        with pytest.raises(InputError, match="--threads"):
            encode_many(clips, maps, out=tmp_path / "d", threads=bad, **kw)


def test_refusals(seq_dataset, tmp_path, monkeypatch):
    root, maps = seq_dataset
    clips = find_clips(root, "val")
    with pytest.raises(InputError, match="constant-QP"):
        encode_many(clips, maps, modes=["roi"], rates=[RatePoint("qp", 30)], out=tmp_path, progress=False)
    with pytest.raises(InputError, match="x265-only"):
        encode_many(clips, maps, codec="h264", modes=["zones"], rates=CRF, out=tmp_path, progress=False)
    with pytest.raises(InputError, match="ultrafast"):
        encode_many(clips, maps, modes=["roi"], rates=CRF, out=tmp_path, preset="ultrafast", progress=False)
    monkeypatch.setenv("ROIENC_X265", str(tmp_path / "no-such-x265"))
    from roienc import tools
    tools.find_x265.cache_clear()
    try:
        with pytest.raises(ToolError, match="x265"):
            encode_many(clips, maps, modes=["qpfile"], rates=CRF, out=tmp_path, progress=False)
    finally:
        tools.find_x265.cache_clear()
    code = cli(["encode", "--cityscapes-root", str(root), "--maps", str(maps), "--mode", "roi",
                "--qp", "30", "--out", str(tmp_path / "c")])
    assert code == 2


def test_missing_frames_and_odd_sizes(seq_dataset, tmp_path):
    root, maps = seq_dataset
    broken = tmp_path / "cs"
    shutil.copytree(root, broken)
    (broken / "leftImg8bit_sequence/val/lindau/lindau_000000_000007_leftImg8bit.png").unlink()
    clips = find_clips(broken, "val")
    assert clips[0].missing == ["lindau_000000_000007"]
    res = encode_many(clips, maps, modes=["baseline"], rates=CRF, out=tmp_path / "e", progress=False)
    assert res[0]["status"] == "skipped" and "000007" in res[0]["error"]
    assert not (tmp_path / "e/hevc/baseline/crf30/lindau_000000.mp4").exists()
    # sizes that are not multiples of 16
    odd = tmp_path / "odd"
    synthesize(odd, width=200, height=106, seed=5)
    build_maps(odd, tmp_path / "oddmaps", sequences=True, workers=1, progress=False, visualize_every=0)
    res = encode_many(find_clips(odd, "val"), tmp_path / "oddmaps", modes=["roi"], rates=CRF,
                      out=tmp_path / "oe", preset="fast", progress=False)
    assert res[0]["status"] == "ok" and res[0]["width"] == 200 and res[0]["height"] == 106


def test_frames_source_is_one_clip_per_city(tmp_path):
    root = tmp_path / "cs"
    synthesize(root, cities=("ulm",), sequences_per_city=3, width=128, height=64, with_sequences=False)
    build_maps(root, tmp_path / "m", workers=1, progress=False)
    clips = find_clips(root, "val", source="frames")
    assert [c.clip_id for c in clips] == ["ulm_frames"] and len(clips[0].frame_ids) == 3
    res = encode_many(clips, tmp_path / "m", modes=["roi"], rates=CRF, out=tmp_path / "e",
                      preset="fast", progress=False)
    assert res[0]["status"] == "ok" and res[0]["frames_encoded"] == 3


@pytest.mark.parametrize("codec", ["hevc", "h264"])
def test_two_pass_bitrate(seq_dataset, tmp_path, codec):
    """Two passes over the same ROI graph; statistics files cleaned up; rate near the target."""
    root, maps = seq_dataset
    clips = find_clips(root, "val")
    target = 150.0
    res = encode_many(clips, maps, codec=codec, modes=["roi"], rates=[RatePoint("bitrate", target)],
                      out=tmp_path, preset="fast", progress=False, two_pass=True)
    (r,) = res
    assert r["status"] == "ok", r["error"]
    assert r["two_pass"] is True and len(r["commands"]) == 2
    first, second = r["commands"]
    if codec == "hevc":
        assert "pass=1:stats=" in first[first.index("-x265-params") + 1]
        assert "pass=2:stats=" in second[second.index("-x265-params") + 1]
    else:
        assert first[first.index("-pass") + 1] == "1" and second[second.index("-pass") + 1] == "2"
    assert first[-3:] == ["-f", "null", "-"]
    assert any(a.endswith(".filter.txt") for a in first) and any(a.endswith(".filter.txt") for a in second)
    assert 0.6 * target < r["kbps"] < 1.4 * target, r["kbps"]
    folder = tmp_path / codec / "roi" / "bitrate150k"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        f"lindau_000000{s}" for s in (".filter.txt", ".json", ".log", ".mp4", ".pass2.log"))


def test_two_pass_refusals(seq_dataset, tmp_path):
    root, maps = seq_dataset
    clips = find_clips(root, "val")
    with pytest.raises(InputError, match="--two-pass needs --bitrate"):
        encode_many(clips, maps, modes=["roi"], rates=CRF, out=tmp_path, progress=False, two_pass=True)
    with pytest.raises(InputError, match="x265 CLI"):
        encode_many(clips, maps, modes=["qpfile"], rates=[RatePoint("bitrate", 100)], out=tmp_path,
                    progress=False, two_pass=True)


def test_sequence_filter_names_what_exists(tmp_path):
    root = tmp_path / "cs"
    synthesize(root, sequences_per_city=2, width=64, height=32)
    assert [c.clip_id for c in find_clips(root, "val", sequence_ids=["lindau_000001"])] == ["lindau_000001"]
    with pytest.raises(InputError, match=r"lindau_000009.*available: lindau_000000, lindau_000001"):
        find_clips(root, "val", sequence_ids=["lindau_000001", "lindau_000009"])


def test_frame_progress_follows_ffmpeg(seq_dataset, tmp_path, capsys):
    """In-process encodes show a bar over frames fed by FFmpeg's own statistics; the log keeps
    the whole stderr."""
    from roienc.encode import FrameProgress, input_args
    from roienc.tools import find_ffmpeg, run

    root, maps = seq_dataset
    (clip,) = find_clips(root, "val")
    ff = find_ffmpeg()
    bar = FrameProgress(len(clip.frame_ids), "t")
    seen = []
    orig = bar.__call__
    run([ff.path, "-hide_banner", "-y", *input_args(clip), "-c:v", "libx264", "-preset", "fast",
         str(tmp_path / "p.mp4")], capture_stdout=False,
        on_stderr=lambda c: (seen.append(c), orig(c)), log_path=tmp_path / "p.log")
    assert bar.bar.n == len(clip.frame_ids) == 30
    assert b"frame=" in b"".join(seen) and b"frame=" in (tmp_path / "p.log").read_bytes()
    bar.close()
    res = encode_many([clip], maps, modes=["roi"], rates=CRF, out=tmp_path / "e", preset="fast")
    assert res[0]["status"] == "ok"
    assert "frame" in capsys.readouterr().err          # the per-frame bar was drawn


def test_zones_with_bframes_warn():
    from roienc.configs import load_config
    from roienc.encode import validate_mode

    hevc = load_config(None, "hevc")
    warns = validate_mode("hevc", "zones", RatePoint("crf", 28), hevc)
    assert any("B-frames" in w for w in warns)
    hevc.params["bframes"] = 0
    assert not any("B-frames" in w for w in validate_mode("hevc", "zones", RatePoint("crf", 28), hevc))
    assert not any("B-frames" in w for w in validate_mode("hevc", "roi", RatePoint("crf", 28),
                                                        load_config(None, "hevc")))


def test_roi_settings_at_32px_blocks_is_the_plain_encoder(seq_dataset, tmp_path):
    """With 32-px blocks the ROI's only encoder setting, qg-size 32, is x265's default: the
    same-settings reference is the plain baseline's exact bitstream (all of the gain is ROI)."""
    root, _ = seq_dataset
    maps = tmp_path / "maps32"
    build_maps(root, maps, split="val", sequences=True, workers=1, progress=False,
               visualize_every=0, qp=QPParams(block_size=32))
    clips = find_clips(root, "val", source="sequence")
    res = {r["mode"]: r for r in encode_many(clips, maps, modes=["baseline", "roi-settings"],
                                             rates=CRF, out=tmp_path / "e", preset="fast",
                                             progress=False)}
    # nothing added: the reference's command is the baseline's (but for the output file)
    assert res["roi-settings"]["adds_to_baseline"]["encoder_params"] == {}
    strip = lambda side: [[a for a in c if not a.endswith(".mp4")] for c in side["commands"]]
    assert strip(res["roi-settings"]) == strip(res["baseline"])
    base = (tmp_path / "e/hevc/baseline/crf30/lindau_000000.mp4").read_bytes()
    ref = (tmp_path / "e/hevc/roi-settings/crf30/lindau_000000.mp4").read_bytes()
    assert base == ref
