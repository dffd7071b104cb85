"""VP9 through libvpx-vp9 (FFmpeg CLI and in-process): real encodes of a synthesized snippet.

What libvpx does with FFmpeg's ROI side data is checked by its effect: PSNR inside a region
rises, a map does not persist into frames that should have none, settings under which libvpx
ignores the ROI are refused, and an all-zero map gives the baseline's bitstream.
"""
import itertools
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import decode_luma, psnr
from roienc.adapters import perframe_filter_script, quantise_levels
from roienc.configs import load_config
from roienc.dataset import find_clips
from roienc.encode import RatePoint, encode_many
from roienc.encoders.vp9 import VPX_MAX_LEVELS, check_vp9_roi, vpx_delta_grids
from roienc.errors import InputError
from roienc.maps import QPParams, build_maps
from roienc.probe import packet_sizes

pytestmark = pytest.mark.encode
CRF = [RatePoint("crf", 40)]
W, H, BLOCK = 192, 96, 16          # the seq_dataset snippet (conftest) and its map blocks


def _engines():
    from roienc.inproc import versions
    v = versions()
    return ["ffmpeg"] + (["pyav"] if v and "libvpx-vp9" in v["encoders"] else [])


ENGINES = _engines()


def _maps_with(src: Path, dst: Path, dq_of_frame) -> Path:
    """A copy of the build-maps output ``src`` whose QP grids are ``base_qp + dq_of_frame(i)``
    (frame index i of the snippet): hand-made ROI of known geometry and strength."""
    shutil.copytree(src, dst)
    base = json.loads((dst / "params.json").read_text())["base_qp"]
    files = sorted(dst.rglob("*_qp_map.npy"))
    assert len(files) == 30
    for i, f in enumerate(files):
        g = np.load(f)
        np.save(f, (base + dq_of_frame(i, g.shape)).astype(g.dtype))
    return dst


def _left_half(dq: int):
    def grid(i, shape):
        g = np.zeros(shape, np.int16)
        g[:, : shape[1] // 2] = dq
        return g
    return grid


def _src_luma(root: Path) -> np.ndarray:
    pattern = root / "leftImg8bit_sequence/val/lindau/lindau_000000_%06d_leftImg8bit.png"
    return decode_luma(pattern, W, H)


@pytest.mark.parametrize("engine", ENGINES)
def test_vp9_roi_raises_psnr_inside(seq_dataset, tmp_path, engine):
    root, maps = seq_dataset
    maps_l = _maps_with(maps, tmp_path / "maps", _left_half(-9))    # -15 libvpx units
    res = encode_many(find_clips(root, "val"), maps_l, codec="vp9", modes=["baseline", "roi"],
                      rates=CRF, out=tmp_path / "e", progress=False, engine=engine)
    assert [r["status"] for r in res] == ["ok", "ok"], [r["error"] for r in res]
    assert all(r["engine"] == engine and r["codec"] == "vp9" for r in res)
    roi_side = res[1]
    assert roi_side["adapter"]["vpx_levels_per_frame"] == [1] * 30
    assert roi_side["adapter"]["vpx_deltas"]["min"] == [-15] * 30
    src = _src_luma(root)
    out = {}
    for mode in ("baseline", "roi"):
        dec = decode_luma(tmp_path / f"e/vp9/{mode}/crf40/lindau_000000.mp4", W, H)
        # frames 1.. (libvpx applies no ROI to key frames)
        out[mode] = (psnr(dec[1:, :, : W // 2], src[1:, :, : W // 2]),
                     psnr(dec[1:, :, W // 2:], src[1:, :, W // 2:]))
    assert out["roi"][0] > out["baseline"][0] + 1.0, out
    assert abs(out["roi"][1] - out["baseline"][1]) < 0.6, out
    assert roi_side["kbps"] > res[0]["kbps"]


def _per_frame_bytes(ff, path: Path) -> np.ndarray:
    return np.array(packet_sizes(ff.path, path), float)


@pytest.mark.parametrize("engine", ENGINES)
def test_vp9_map_does_not_persist(seq_dataset, tmp_path, ffmpeg, engine):
    """Frames 0-4 carry a strong region, frames 5-29 none. libvpx keeps the last map it was given,
    so without roienc's whole-frame zero region frames 5-29 would still be coded with the region
    (the control encode below shows how much that costs); with it they must cost what the
    baseline's frames do (they differ a little: their references are better)."""
    root, maps = seq_dataset

    def first_five(i, shape):
        return _left_half(-12)(i, shape) if i < 5 else np.zeros(shape, np.int16)
    maps_p = _maps_with(maps, tmp_path / "maps", first_five)
    res = encode_many(find_clips(root, "val"), maps_p, codec="vp9", modes=["baseline", "roi"],
                      rates=CRF, out=tmp_path / "e", progress=False, engine=engine)
    assert [r["status"] for r in res] == ["ok", "ok"], [r["error"] for r in res]
    folder = tmp_path / "e/vp9"
    base = _per_frame_bytes(ffmpeg, folder / "baseline/crf40/lindau_000000.mp4")
    roi = _per_frame_bytes(ffmpeg, folder / "roi/crf40/lindau_000000.mp4")
    assert roi[1:5].sum() > 1.3 * base[1:5].sum()          # the region acts on frames 1-4
    ratio = roi[6:].sum() / base[6:].sum()
    assert 0.85 < ratio < 1.06, (ratio, roi, base)

    # control: the same encode without the zero regions (the map then persists), through the
    # FFmpeg CLI: proves the check above would catch persistence
    grids = vpx_delta_grids(np.stack([first_five(i, (6, 12)) for i in range(30)]), 1.6667)
    fs = perframe_filter_script(grids, BLOCK, W, H, qp_range=63, pix_fmt="yuv420p", clear=False)
    script = tmp_path / "persist.txt"
    script.write_text(fs.text)
    cfg = load_config("vp9")
    pattern = root / "leftImg8bit_sequence/val/lindau/lindau_000000_%06d_leftImg8bit.png"
    control = tmp_path / "persist.mp4"
    subprocess.run([ffmpeg.path, "-hide_banner", "-loglevel", "error", "-y", "-framerate", "17",
                    "-i", str(pattern), "-frames:v", "30", "-filter_complex_script"
                    if (ffmpeg.major or 0) < 7 else "-/filter_complex", str(script),
                    "-map", "[vout]", "-fps_mode", "passthrough", "-c:v", "libvpx-vp9",
                    "-crf", "40", "-b:v", "0", *cfg.option_args(), str(control)], check=True)
    persist = _per_frame_bytes(ffmpeg, control)
    assert persist[6:].sum() > 1.15 * base[6:].sum(), (persist, base)


@pytest.mark.parametrize("engine", ENGINES)
def test_vp9_all_zero_map_is_the_baseline(seq_dataset, tmp_path, engine):
    root, _ = seq_dataset
    maps0 = tmp_path / "maps0"
    build_maps(root, maps0, split="val", sequences=True, workers=1, progress=False,
               visualize_every=0, qp=QPParams(delta=0))
    encode_many(find_clips(root, "val"), maps0, codec="vp9", modes=["baseline", "roi"],
                rates=CRF, out=tmp_path / "e", progress=False, engine=engine)
    b = (tmp_path / "e/vp9/baseline/crf40/lindau_000000.mp4").read_bytes()
    r = (tmp_path / "e/vp9/roi/crf40/lindau_000000.mp4").read_bytes()
    assert b == r


def test_vp9_zero_region_alone_is_the_baseline(seq_dataset, tmp_path, ffmpeg):
    """libvpx itself: a frame whose only region is the whole-frame zero region (what roienc
    attaches to frames without ROI) is coded as without side data."""
    root, _ = seq_dataset
    pattern = root / "leftImg8bit_sequence/val/lindau/lindau_000000_%06d_leftImg8bit.png"
    cfg = load_config("vp9")
    outs = []
    for vf in ("format=yuv420p", f"format=yuv420p,addroi=x=0:y=0:w={W}:h={H}:qoffset=0/63"):
        out = tmp_path / f"{len(outs)}.ivf"
        subprocess.run([ffmpeg.path, "-hide_banner", "-loglevel", "error", "-y", "-framerate", "17",
                        "-i", str(pattern), "-frames:v", "10", "-vf", vf, "-c:v", "libvpx-vp9",
                        "-crf", "40", "-b:v", "0", *cfg.option_args(), str(out)], check=True)
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]


def test_vp9_qoffset_is_delta_over_63(seq_dataset, tmp_path, ffmpeg):
    """libvpx: delta = trunc(qoffset * 63): d/63 and (d - 1/2)/63 code the same, (d + 1/2)/63
    (truncated to d + 1) does not."""
    root, _ = seq_dataset
    pattern = root / "leftImg8bit_sequence/val/lindau/lindau_000000_%06d_leftImg8bit.png"
    cfg = load_config("vp9")
    outs = {}
    for q in ("-10/63", "-21/126", "-19/126"):
        out = tmp_path / f"{len(outs)}.ivf"
        subprocess.run([ffmpeg.path, "-hide_banner", "-loglevel", "error", "-y", "-framerate", "17",
                        "-i", str(pattern), "-frames:v", "4", "-vf",
                        f"format=yuv420p,addroi=x=0:y=0:w={W}:h={H}:qoffset={q}", "-c:v",
                        "libvpx-vp9", "-crf", "40", "-b:v", "0", *cfg.option_args(), str(out)],
                       check=True)
        outs[q] = out.read_bytes()
    assert outs["-10/63"] == outs["-21/126"]
    assert outs["-10/63"] != outs["-19/126"]


def test_vp9_refusals(seq_dataset, tmp_path):
    root, maps = seq_dataset
    clips = find_clips(root, "val")
    text = (Path(load_config("vp9").path)).read_text()
    for old, new, why in [('deadline = "realtime"', 'deadline = "good"', "deadline good"),
                          ("cpu-used = 5", "cpu-used = 4", "cpu-used 4"),
                          ("aq-mode = 0", "aq-mode = 3", "aq-mode 3"),
                          ("lag-in-frames = 0", "lag-in-frames = 25", "lag-in-frames 25")]:
        cfg = tmp_path / f"{why.replace(' ', '_')}.toml"
        cfg.write_text(text.replace(old, new))
        with pytest.raises(InputError, match=why):
            encode_many(clips, maps, codec="vp9", modes=["roi"], rates=CRF, config=cfg,
                        out=tmp_path / "e", progress=False)
        # the baseline of such a config is a plain encode: not refused
        encode_many(clips, maps, codec="vp9", modes=["baseline"], rates=CRF, config=cfg,
                    out=tmp_path / "b", progress=False)
    check_vp9_roi({"deadline": "realtime", "cpu-used": 8, "lag-in-frames": 0})
    with pytest.raises(InputError, match="lag-in-frames unset"):
        check_vp9_roi({"deadline": "realtime", "cpu-used": 6})
    with pytest.raises(InputError, match="--qp"):
        encode_many(clips, maps, codec="vp9", modes=["roi"], rates=[RatePoint("qp", 30)],
                    out=tmp_path / "e", progress=False)
    with pytest.raises(InputError, match="x265-only"):
        encode_many(clips, maps, codec="vp9", modes=["zones"], rates=CRF, out=tmp_path / "e",
                    progress=False)
    with pytest.raises(InputError, match="between 0 and 51"):
        encode_many(clips, maps, codec="hevc", modes=["baseline"], rates=[RatePoint("crf", 60)],
                    out=tmp_path / "e", progress=False)
    with pytest.raises(InputError, match="between 0 and 63"):
        encode_many(clips, maps, codec="vp9", modes=["baseline"], rates=[RatePoint("crf", 64)],
                    out=tmp_path / "e", progress=False)
    with pytest.raises(InputError, match="no presets"):
        encode_many(clips, maps, codec="vp9", modes=["baseline"], rates=CRF, preset="fast",
                    out=tmp_path / "e", progress=False)
    with pytest.raises(InputError, match="config is for hevc"):
        encode_many(clips, maps, codec="vp9", modes=["baseline"], rates=CRF, config="hevc",
                    out=tmp_path / "e", progress=False)


def test_quantise_levels_is_optimal():
    rng = np.random.default_rng(1)
    for _ in range(40):
        v = rng.integers(-9, 10, 14)
        w = rng.random(14) + 0.1
        k = 3
        q = quantise_levels(v, w, max_levels=k)
        nz = set(np.unique(q)) - {0}
        assert len(nz) <= k
        assert np.all(q[v == 0] == 0)
        err = float((w * (v - q) ** 2).sum())
        best = min(float((w * (v - L[np.argmin(np.abs(v[:, None] - L[None]), 1)]) ** 2).sum())
                   for n in range(k + 1) for lv in itertools.combinations(range(-9, 10), n)
                   if 0 not in lv for L in [np.array((0,) + lv)])
        assert err <= best + 1e-9, (v, q, err, best)


def test_vpx_delta_grids():
    rng = np.random.default_rng(2)
    g = rng.integers(-20, 21, (4, 6, 12))
    out = vpx_delta_grids(g, 1.6667)
    assert out.shape == g.shape and out.dtype == np.int16
    assert all(np.count_nonzero(np.unique(f)) <= VPX_MAX_LEVELS for f in out)
    assert np.abs(out).max() <= 33
    few = np.zeros((1, 6, 12), int)
    few[0, :2, :3] = -6
    few[0, 4:, :] = 3
    assert np.array_equal(vpx_delta_grids(few, 1.6667)[0], np.round(few[0] * 1.6667))
    assert vpx_delta_grids(np.full((1, 2, 2), -60), 1.6667).min() == -63      # clipped


def test_vp9_chains_end_with_the_zero_region(seq_dataset, tmp_path):
    root, maps = seq_dataset
    res = encode_many(find_clips(root, "val"), maps, codec="vp9", modes=["roi"], rates=CRF,
                      out=tmp_path / "e", progress=False, engine="ffmpeg")
    side = res[0]
    assert side["status"] == "ok", side["error"]
    script = Path(side["adapter"]["filter_script"]).read_text()
    chains = [ln for ln in script.splitlines() if "addroi" in ln]
    assert chains and all(ln.endswith(f"addroi=x=0:y=0:w={W}:h={H}:qoffset=0/63[r{i}];")
                          or ln.endswith("qoffset=0/63[vout]")
                          for i, ln in enumerate(chains))
    assert "/51" not in script
    assert max(side["adapter"]["vpx_levels_per_frame"]) <= VPX_MAX_LEVELS
    cmd = side["commands"][0]
    assert "-preset" not in cmd and cmd[cmd.index("-b:v") + 1] == "0"
    assert cmd[cmd.index("-deadline") + 1] == "realtime" and cmd[cmd.index("-lag-in-frames") + 1] == "0"


def test_vp9_sweep_cli(seq_dataset, tmp_path):
    """`roienc sweep --codec vp9`: maps, encodes, evaluation, BD-rates and report, as for HEVC."""
    from roienc.cli import main as cli
    root, _ = seq_dataset
    run = tmp_path / "run"
    code = cli(["sweep", "--cityscapes-root", str(root), "--codec", "vp9", "--crf", "30,38,46,54",
                "--out", str(run), "--block-size", "16", "--delta", "6", "--no-progress"])
    assert code == 0
    import pandas as pd
    bd = pd.read_csv(run / "bdrate.csv")
    row = bd[(bd["clip"] == "mean") & (bd["mode"] == "roi") & (bd["reference"] == "baseline")
             & (bd["metric"] == "psnr_roi")]
    assert len(row) == 1 and row["bd_rate_pct"].iloc[0] < 0, bd
    res = pd.read_csv(next(run.glob("**/results.csv")))
    assert set(res["codec"]) == {"vp9"} and len(res) == 8


def test_vp9_crf_scale_on_the_command_line(seq_dataset, tmp_path, capsys):
    """CRF 0..63 for vp9 (libvpx's scale), 0..51 for hevc: out of range is a usage error."""
    from roienc.cli import main as cli
    root, maps = seq_dataset
    base = ["encode", "--cityscapes-root", str(root), "--maps", str(maps), "--mode", "baseline",
            "--no-progress"]
    with pytest.raises(SystemExit) as ei:
        cli(base + ["--codec", "vp9", "--crf", "64", "--out", str(tmp_path / "a")])
    assert ei.value.code == 2 and "between 0 and 63" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli(base + ["--codec", "hevc", "--crf", "55", "--out", str(tmp_path / "b")])
    assert "between 0 and 51" in capsys.readouterr().err
    assert cli(base + ["--codec", "vp9", "--crf", "60", "--out", str(tmp_path / "c")]) == 0
    assert (tmp_path / "c/vp9/baseline/crf60/lindau_000000.mp4").is_file()
