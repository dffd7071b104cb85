"""The evaluator on real encodes of a synthesized snippet."""
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from roienc.cli import main as cli
from roienc.dataset import find_clips
from roienc.encode import RatePoint, encode_many
from roienc.evaluate import RESULT_COLUMNS, evaluate
from roienc.maps import build_maps, load_importance

from conftest import decode_luma

pytestmark = pytest.mark.encode


@pytest.fixture(scope="module")
def encoded(seq_dataset, tmp_path_factory):
    root, maps = seq_dataset
    out = tmp_path_factory.mktemp("enc")
    encode_many(find_clips(root, "val"), maps, modes=["baseline", "roi"],
                rates=[RatePoint("crf", 30)], out=out, preset="fast", progress=False)
    return root, maps, out


def test_columns_and_values(encoded, tmp_path):
    root, maps, enc = encoded
    df = evaluate(enc, maps, tmp_path / "r.csv", per_frame_dir=tmp_path / "pf", progress=False,
                  ssim=True)
    assert list(df.columns[:len(RESULT_COLUMNS)]) == RESULT_COLUMNS
    assert list(pd.read_csv(tmp_path / "r.csv").columns[:len(RESULT_COLUMNS)]) == RESULT_COLUMNS
    assert len(df) == 2 and set(df["mode"]) == {"baseline", "roi"}
    # which maps defined the regions: the roi encode is judged by its own maps (self)
    by = df.set_index("mode")["judged_by"]
    assert by["roi"].startswith("self:") and by["baseline"].endswith("(the encode used no maps)")
    prov = json.loads((tmp_path / "r.json").read_text())   # how to reproduce every row
    assert prov["roi_threshold"] == 0.5 and prov["maps"] == str(maps) and prov["evaluated"] == 2
    assert set(prov["decode_commands"]) == set(df["sidecar"])
    for dec, srccmd in prov["decode_commands"].values():
        assert dec[0] == srccmd[0] and "rawvideo" in dec and "rawvideo" in srccmd
    for row in df.itertuples():
        assert row.frames == 30 and row.width == 192 and row.height == 96
        assert row.bpp == pytest.approx(row.bytes * 8 / (30 * 192 * 96))
        assert row.kbps == pytest.approx(row.bytes * 8 / (30 / 17) / 1000)
        assert 0 < row.roi_fraction < 0.5
        assert 15 < row.psnr_roi < 60 and 15 < row.psnr_nonroi < 60
        assert 0 < row.ssim_roi <= 1
        assert min(row.psnr_roi, row.psnr_nonroi) <= row.psnr_y <= max(row.psnr_roi, row.psnr_nonroi)
    pf = sorted((tmp_path / "pf").glob("*.csv"))
    assert len(pf) == 2 and len(pd.read_csv(pf[0])) == 30
    for row in df.itertuples():      # each frame's bytes, in frame order, add up to the file's
        frames = pd.read_csv(tmp_path / "pf" / f"hevc_{row.mode}_crf30_lindau_000000.csv")
        assert frames["bytes"].sum() == row.bytes
        assert frames["bytes"].tolist() == json.loads(Path(row.sidecar).read_text())["frame_bytes"]
        assert frames["bytes"].iloc[0] == frames["bytes"].max()     # the I-picture comes first


def test_psnr_matches_direct_computation(encoded, tmp_path):
    root, maps, enc = encoded
    df = evaluate(enc, maps, tmp_path / "r.csv", progress=False)
    row = df[df["mode"] == "baseline"].iloc[0]
    mp4 = enc / "hevc/baseline/crf30/lindau_000000.mp4"
    dec = decode_luma(mp4, 192, 96)
    # reference: the PNG frames converted by the same FFmpeg to yuv420p
    from roienc.tools import find_ffmpeg, run
    import json
    side = json.loads(mp4.with_suffix(".json").read_text())
    raw = run([find_ffmpeg().path, "-loglevel", "error", *side["input_args"], "-vf", "format=yuv420p",
               "-f", "rawvideo", "-pix_fmt", "yuv420p", "-"]).stdout
    src = np.frombuffer(raw, np.uint8).reshape(30, -1)[:, :192 * 96].reshape(30, 96, 192).astype(float)
    err = (dec - src) ** 2
    assert row.psnr_y == pytest.approx(10 * math.log10(255 ** 2 / err.mean()), abs=1e-6)
    imps = np.stack([load_importance(maps, "val", "lindau", f) for f in side["frame_ids"]])
    mask = imps >= 0.5
    assert row.psnr_roi == pytest.approx(10 * math.log10(255 ** 2 / err[mask].mean()), abs=1e-6)
    assert row.psnr_weighted == pytest.approx(
        10 * math.log10(255 ** 2 / ((imps * err).sum() / imps.sum())), abs=1e-6)


def test_full_and_empty_roi(encoded, seq_dataset, tmp_path):
    root, maps, enc = encoded
    full = evaluate(enc, maps, tmp_path / "f.csv", roi_threshold=0.0, progress=False)
    assert (full["roi_fraction"] == 1.0).all()
    assert np.allclose(full["psnr_roi"], full["psnr_y"]) and full["psnr_nonroi"].isna().all()
    # a class file with no dynamic classes: everything is background, the ROI is empty
    classes = tmp_path / "static.toml"
    classes.write_text('[static]\nclasses=["road","sidewalk","building","vegetation","sky","pole"]\n')
    maps2 = tmp_path / "m2"
    build_maps(root, maps2, sequences=True, workers=1, progress=False, classes=classes, visualize_every=0)
    empty = evaluate(enc, maps2, tmp_path / "e.csv", progress=False)
    assert (empty["roi_fraction"] == 0.0).all() and empty["psnr_roi"].isna().all()
    assert np.isfinite(empty["psnr_nonroi"]).all()
    text = (tmp_path / "e.csv").read_text()
    assert ",," in text or "nan" in text.lower()


def test_cli_errors(tmp_path, capsys):
    assert cli(["evaluate", "--encoded", str(tmp_path / "none"), "--maps", str(tmp_path),
                "--report", str(tmp_path / "r.csv")]) == 2
    assert "no such directory" in capsys.readouterr().err


def test_skip_existing_reuses_matching_rows_only(encoded, tmp_path):
    """Rows are reused while their encode is unchanged, measured again once it changes."""
    import os

    root, maps, enc = encoded
    report = tmp_path / "r.csv"
    first = evaluate(enc, maps, report, progress=False)
    assert first["eval_key"].notna().all()
    marked = pd.read_csv(report)
    marked["psnr_y"] = -1.0                      # a value no evaluation produces
    marked.to_csv(report, index=False)
    reused = evaluate(enc, maps, report, progress=False, skip_existing=True)
    assert (reused["psnr_y"] == -1.0).all()      # nothing decoded again
    roi_mp4 = next(enc.rglob("roi/*/*.mp4"))
    st = roi_mp4.stat()
    os.utime(roi_mp4, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))   # touched, same bytes
    assert (evaluate(enc, maps, report, progress=False, skip_existing=True)["psnr_y"] == -1.0).all()
    side = roi_mp4.with_suffix(".json")                               # the encode's record changed
    side.write_text(side.read_text().replace('"status": "ok"', '"status": "ok", "note": "x"', 1))
    again = evaluate(enc, maps, report, progress=False, skip_existing=True)
    by_mode = dict(zip(again["mode"], again["psnr_y"]))
    assert by_mode["baseline"] == -1.0 and by_mode["roi"] > 15
    other = evaluate(enc, maps, report, progress=False, skip_existing=True, roi_threshold=0.9)
    assert (other["psnr_y"] > 15).all()          # another threshold: every row measured again
    assert not (evaluate(enc, maps, report, progress=False)["psnr_y"] == -1.0).any()


def test_per_frame_files_belong_to_their_row(encoded, tmp_path):
    """With per-frame files asked for, a row is reused only with its own per-frame file (the
    row's eval_key in it); a missing or foreign file means measuring again."""
    from roienc.evaluate import per_frame_rows

    root, maps, enc = encoded
    report, pf = tmp_path / "r.csv", tmp_path / "pf"
    first = evaluate(enc, maps, report, progress=False, per_frame_dir=pf)
    for row in first.itertuples():
        assert Path(row.frames_csv).parent == pf
        assert per_frame_rows(row.frames_csv, row.eval_key) is not None
        assert per_frame_rows(row.frames_csv, "another key") is None
    marked = pd.read_csv(report)
    marked["psnr_y"] = -1.0
    marked.to_csv(report, index=False)
    reused = evaluate(enc, maps, report, progress=False, skip_existing=True, per_frame_dir=pf)
    assert (reused["psnr_y"] == -1.0).all()
    roi_csv = Path(first.set_index("mode").loc["roi", "frames_csv"])
    roi_csv.unlink()
    again = evaluate(enc, maps, report, progress=False, skip_existing=True, per_frame_dir=pf)
    by_mode = dict(zip(again["mode"], again["psnr_y"]))
    assert by_mode["baseline"] == -1.0 and by_mode["roi"] > 15 and roi_csv.is_file()
    # a file of another evaluation under the row's name: measured again
    roi_csv.write_text(roi_csv.read_text().replace(str(first.set_index("mode").loc["roi", "eval_key"]), "x"))
    marked = pd.read_csv(report)
    marked["psnr_y"] = -1.0
    marked.to_csv(report, index=False)
    third = evaluate(enc, maps, report, progress=False, skip_existing=True, per_frame_dir=pf)
    by_mode = dict(zip(third["mode"], third["psnr_y"]))
    assert by_mode["baseline"] == -1.0 and by_mode["roi"] > 15
    assert per_frame_rows(str(roi_csv), str(third.set_index("mode").loc["roi", "eval_key"])) is not None


def test_pipelined_equals_sequential_and_no_ssim(encoded, tmp_path):
    """The pipelined path (metrics of frame n in worker threads while frame n+1 is taken) gives
    the numbers of the one-frame-at-a-time path bit for bit; without --ssim (the default; the
    old --no-ssim is still accepted) every other number is as it is, the SSIM columns are NaN,
    and the report's JSON says so."""
    root, maps, enc = encoded
    piped = evaluate(enc, maps, tmp_path / "p.csv", per_frame_dir=tmp_path / "pp", progress=False,
                     ssim=True)
    seq = evaluate(enc, maps, tmp_path / "s.csv", per_frame_dir=tmp_path / "ps", progress=False,
                   pipeline=False, ssim=True)
    pd.testing.assert_frame_equal(piped.drop(columns="frames_csv"), seq.drop(columns="frames_csv"),
                                  check_exact=True)          # (their per-frame folders differ)
    for f in sorted((tmp_path / "pp").glob("*.csv")):
        assert f.read_bytes() == (tmp_path / "ps" / f.name).read_bytes()
    assert json.loads((tmp_path / "p.json").read_text())["ssim"] is True

    report = tmp_path / "n.csv"
    assert cli(["evaluate", "--encoded", str(enc), "--maps", str(maps), "--report", str(report),
                "--per-frame", str(tmp_path / "pn"), "--no-ssim", "--no-progress"]) == 0
    nossim = pd.read_csv(report)
    ssim_cols = ["ssim_y", "ssim_roi", "ssim_nonroi"]
    assert list(nossim.columns[:len(RESULT_COLUMNS)]) == RESULT_COLUMNS
    assert nossim[ssim_cols].isna().all().all()
    full = pd.read_csv(tmp_path / "p.csv")
    same = [c for c in full.columns if c not in ssim_cols + ["eval_key", "frames_csv"]]
    pd.testing.assert_frame_equal(nossim[same], full[same], check_exact=True)
    assert pd.read_csv(next((tmp_path / "pn").glob("*.csv")))[ssim_cols].isna().all().all()
    prov = json.loads(report.with_suffix(".json").read_text())
    assert prov["ssim"] is False and "NaN" in prov["metrics"]
    # the default is the same report (SSIM only where asked), pipelined or not
    default = evaluate(enc, maps, tmp_path / "d.csv", progress=False)
    pd.testing.assert_frame_equal(default.drop(columns=["eval_key", "frames_csv"]),
                                  nossim.drop(columns=["eval_key", "frames_csv"]), check_exact=True)
    nopipe = evaluate(enc, maps, tmp_path / "d2.csv", progress=False, pipeline=False)
    pd.testing.assert_frame_equal(default, nopipe, check_exact=True)
    assert json.loads((tmp_path / "d.json").read_text())["ssim"] is False
    # a row without SSIM is not reused for a run that asks for it
    again = evaluate(enc, maps, report, progress=False, skip_existing=True, ssim=True)
    assert again["ssim_y"].notna().all()
    assert cli(["evaluate", "--encoded", str(enc), "--maps", str(maps), "--report",
                str(tmp_path / "c.csv"), "--ssim", "--no-progress"]) == 0
    assert pd.read_csv(tmp_path / "c.csv")[ssim_cols].notna().all().all()
    # a row with SSIM stands for one without: reused, its SSIM left out (as the JSON says), and
    # not mistaken later for a row with SSIM
    marked = pd.read_csv(report)
    marked["psnr_y"] = -1.0
    marked.to_csv(report, index=False)
    reused = evaluate(enc, maps, report, progress=False, skip_existing=True)
    assert (reused["psnr_y"] == -1.0).all() and reused[ssim_cols].isna().all().all()
    assert json.loads(report.with_suffix(".json").read_text())["ssim"] is False
    full_again = evaluate(enc, maps, report, progress=False, skip_existing=True, ssim=True)
    assert (full_again["psnr_y"] > 15).all() and full_again[ssim_cols].notna().all().all()


def test_packet_sizes_from_the_mp4_sample_table(encoded, tmp_path):
    """The bitrate comes from the MP4's sample size table, the sizes FFmpeg reports packet by
    packet; a file the table reader does not take (damaged, not MP4) goes to FFmpeg."""
    from roienc.evaluate import _packet_sizes, mp4_video_sample_sizes
    from roienc.probe import packet_sizes
    from roienc.tools import find_ffmpeg

    root, maps, enc = encoded
    ff = find_ffmpeg().path
    mp4s = sorted(enc.rglob("*.mp4"))
    assert len(mp4s) == 2
    for mp4 in mp4s:
        assert mp4_video_sample_sizes(mp4) == packet_sizes(ff, mp4)
        assert len(packet_sizes(ff, mp4)) == 30
    cut = tmp_path / "cut.mp4"
    data = mp4s[0].read_bytes()
    cut.write_bytes(data[:len(data) // 2])
    assert mp4_video_sample_sizes(cut) is None
    (tmp_path / "x.mp4").write_bytes(b"\x00\x00\x00\x08free" + b"junk" * 10)
    assert mp4_video_sample_sizes(tmp_path / "x.mp4") is None
    assert _packet_sizes(ff, mp4s[0], 30) == packet_sizes(ff, mp4s[0])
    mkv = tmp_path / "clip.mkv"
    from roienc.tools import run
    run([ff, "-loglevel", "error", "-i", str(mp4s[0]), "-c", "copy", str(mkv)])
    assert _packet_sizes(ff, mkv, 30) == packet_sizes(ff, mp4s[0])


@pytest.mark.parametrize("shape", [(96, 192), (37, 101), (1, 1), (5, 8)])
def test_near_mask_fast_reader_equals_load_near_mask(tmp_path, shape):
    """The near-object masks are read by a small inflate + un-filter of build-maps' own PNGs (1-bit
    now, 8-bit gray before): the mask load_near_mask gives, for any other PNG its result, for a
    damaged one its error."""
    from PIL import Image

    from roienc.errors import InputError
    from roienc.evaluate import _near_mask, _up_filtered_gray_png
    from roienc.fileio import encode_png, png_from_idat, png_idat, write_bytes
    from roienc.maps import frame_prefix, load_near_mask

    rng = np.random.default_rng(shape[0])
    mask = rng.random(shape) < 0.3
    mask[: shape[0] // 2, : shape[1] // 3] = True          # runs, as object masks have
    gray = np.where(mask, rng.integers(1, 256, shape), 0).astype(np.uint8)
    path = frame_prefix(tmp_path, "val", "c", "c_000000_000001").with_name("c_000000_000001_near_mask.png")
    path.parent.mkdir(parents=True)

    def both() -> tuple:
        return _near_mask(tmp_path, "val", "c", "c_000000_000001"), load_near_mask(tmp_path, "val", "c", "c_000000_000001")

    for data, fast in ((encode_png(mask), True),                                       # 1-bit
                       (png_from_idat(shape[1], shape[0], png_idat(gray)), True),      # 8-bit
                       (None, False)):                                                 # Pillow's
        if data is None:
            Image.fromarray(gray).save(path)
        else:
            write_bytes(path, data)
        assert (_up_filtered_gray_png(path.read_bytes()) is not None) == fast
        got, ref = both()
        assert got.dtype == bool and np.array_equal(got, ref) and np.array_equal(got, mask)
    write_bytes(path, encode_png(mask)[:-30])              # damaged: load_near_mask's error
    with pytest.raises(InputError):
        both()[0]
    path.unlink()
    assert both() == (None, None)


def test_near_mask_of_build_maps_read_fast(seq_dataset):
    from roienc.evaluate import _near_mask, _up_filtered_gray_png
    from roienc.maps import load_near_mask

    root, maps = seq_dataset
    files = sorted(maps.rglob("*_near_mask.png"))
    assert files
    for f in files:
        fid = f.name[: -len("_near_mask.png")]
        assert _up_filtered_gray_png(f.read_bytes()) is not None
        assert np.array_equal(_near_mask(maps, "val", "lindau", fid), load_near_mask(maps, "val", "lindau", fid))
