"""doctor, export and demo from the command line."""
import json
import subprocess

import numpy as np
import pytest

from roienc.cli import main as cli
from roienc.doctor import run_doctor

pytestmark = pytest.mark.encode


def test_doctor_reports_working_tools(capsys):
    checks = {c.name: c for c in run_doctor()}
    assert checks["ffmpeg"].ok and checks["encoder libx265"].ok and checks["filter addroi"].ok
    assert checks["ROI (addroi + libx265)"].ok and checks["x265 zones via FFmpeg"].ok
    assert cli(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "ffmpeg" in out and "addroi" in out


def test_doctor_names_the_engine(monkeypatch):
    monkeypatch.setenv("ROIENC_ENGINE", "ffmpeg")
    eng = {c.name: c for c in run_doctor()}["encode engine"]
    assert eng.ok and eng.detail.startswith("ffmpeg")
    monkeypatch.setenv("ROIENC_ENGINE", "auto")
    from roienc.encode import inproc_versions
    eng = {c.name: c for c in run_doctor()}["encode engine"]
    usable = inproc_versions() is not None and "libx265" in inproc_versions()["encoders"]
    assert eng.detail.startswith("pyav" if usable else "ffmpeg")


def test_doctor_names_the_png_decoder(monkeypatch):
    from roienc import fileio
    png = {c.name: c for c in run_doctor()}["PNG decoder"]
    assert png.detail.startswith("libspng" if fileio._spng is not None else "Pillow")
    monkeypatch.setattr(fileio, "_spng", None)       # a machine without the wheel
    png = {c.name: c for c in run_doctor()}["PNG decoder"]
    assert png.ok and "pip install pyspng" in png.detail


def test_encode_engine_option(seq_dataset, tmp_path, monkeypatch):
    """--engine picks the engine for the run and the sidecar records it."""
    root, maps = seq_dataset
    monkeypatch.setenv("ROIENC_ENGINE", "pyav")         # the option wins over the environment
    assert cli(["encode", "--cityscapes-root", str(root), "--split", "val", "--mode", "baseline",
                "--crf", "34", "--preset", "veryfast", "--sequence", "lindau_000000",
                "--engine", "ffmpeg", "--out", str(tmp_path), "--no-progress"]) == 0
    side = json.loads((tmp_path / "hevc/baseline/crf34/lindau_000000.json").read_text())
    assert side["engine"] == "ffmpeg"


def test_doctor_without_ffmpeg(tmp_path, capsys):
    from roienc import tools
    tools.find_ffmpeg.cache_clear()
    assert cli(["doctor", "--ffmpeg", str(tmp_path / "nope")]) == 1
    assert "FAIL" in capsys.readouterr().out
    tools.find_ffmpeg.cache_clear()


def test_export_files_and_script_runs(seq_dataset, tmp_path):
    root, maps = seq_dataset
    assert cli(["export", "--maps", str(maps), "--format", "all", "--out", str(tmp_path),
                "--sequence", "lindau_000000", "--crf", "30"]) == 0
    names = {p.name for p in tmp_path.iterdir()}
    assert {"lindau_000000.roi.json", "lindau_000000.filter.txt", "lindau_000000.zones.txt",
            "lindau_000000.qpfile.txt", "lindau_000000.ffmpeg.sh"} <= names
    roi = json.loads((tmp_path / "lindau_000000.roi.json").read_text())
    assert len(roi["frames"]) == 30 and roi["qp_range"] == 51
    dq = np.load(maps / "val/lindau/lindau_000000_000000_qp_map.npy").astype(int) - 32
    painted = np.zeros_like(dq)
    for r in reversed(roi["frames"][0]["rects"]):      # where rectangles overlap the first wins
        painted[r["y"] // 16:(r["y"] + r["h"] + 15) // 16, r["x"] // 16:(r["x"] + r["w"] + 15) // 16] = r["dq"]
    assert np.array_equal(painted, dq)
    assert len((tmp_path / "lindau_000000.qpfile.txt").read_text().splitlines()) == 30
    subprocess.run(["bash", str(tmp_path / "lindau_000000.ffmpeg.sh")], check=True,
                   capture_output=True, cwd=tmp_path)
    assert (tmp_path / "lindau_000000.roi.mp4").stat().st_size > 0
    assert (tmp_path / "lindau_000000.zones.mp4").stat().st_size > 0
    assert cli(["export", "--maps", str(maps), "--out", str(tmp_path), "--sequence", "nowhere_000000"]) == 2


@pytest.mark.slow
def test_demo(tmp_path, capsys):
    assert cli(["demo", "--out", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "psnr_roi" in out and "BD-rate" in out and "report.html" in out
    assert (tmp_path / "run" / "report.html").is_file()
    page = (tmp_path / "run" / "report.html").read_text()
    for png in ("gain_vs_roi_share.png", "frames.png"):       # two clips, a rate budget
        assert (tmp_path / "run" / png).is_file() and png in page
