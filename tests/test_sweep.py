"""The sweep end to end on a synthesized snippet with real encodes."""
import pandas as pd
import pytest

from roienc.cli import main as cli

pytestmark = [pytest.mark.encode, pytest.mark.slow]


def test_sweep_end_to_end(tmp_path, capsys):
    from roienc.synth import synthesize

    root = tmp_path / "cs"
    synthesize(root, width=384, height=192, seed=0)
    run = tmp_path / "run"
    code = cli(["sweep", "--cityscapes-root", str(root), "--split", "val", "--codec", "hevc",
                "--modes", "baseline,roi", "--crf", "22,27,32,37", "--preset", "fast",
                "--out", str(run), "--no-progress", "--workers", "1",
                # 16-px blocks on small frames: 'mean' dilutes small objects with background,
                # 'max' protects every block an object touches; at 256x128 ROI loses either way
                # (see README, sweep)
                "--block-stat", "max"])
    assert code == 0
    out = capsys.readouterr().out
    assert "BD-rate" in out
    for name in ("results.csv", "bdrate.csv", "report.html", "sweep.json", "maps/params.json",
                 "rd_psnr_roi.png", "rd_psnr_nonroi.png", "rd_psnr_y.png", "rd_psnr_weighted.png"):
        assert (run / name).is_file(), name
    res = pd.read_csv(run / "results.csv")
    assert len(res) == 8
    bd = pd.read_csv(run / "bdrate.csv")
    assert list(bd.columns[:5]) == ["mode", "reference", "metric", "bd_rate_pct", "bd_psnr_db"]
    roi = bd[(bd["clip"] == "mean") & (bd["metric"] == "psnr_roi")].iloc[0]
    assert roi["bd_rate_pct"] < 0          # ROI mode beats baseline inside the ROI at matched rate
    html = (run / "report.html").read_text()
    assert "rd_psnr_roi.png" in html and "report_files/roi_crop.png" in html
    assert (run / "report_files" / "roi_crop.png").is_file()
    # resumable: a second run reuses maps and encodes
    mtime = (run / "enc/hevc/roi/crf22/lindau_000000.mp4").stat().st_mtime_ns
    assert cli(["sweep", "--cityscapes-root", str(root), "--modes", "baseline,roi", "--crf",
                "22,27,32,37", "--preset", "fast", "--out", str(run), "--no-progress"]) == 0
    assert (run / "enc/hevc/roi/crf22/lindau_000000.mp4").stat().st_mtime_ns == mtime
