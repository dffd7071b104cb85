"""AV1 through the SVT-AV1 CLI: ROI map files, refusals, and real encodes where a CLI exists.

ROI needs SvtAv1EncApp >= 1.6 (``--roi-map-file``); the tests that need it skip with the reason
when the CLI found is missing or older (Debian 12 ships 1.4.1).
"""
import numpy as np
import pytest

from roienc.encoders import svtav1
from roienc.dataset import find_clips
from roienc.doctor import run_doctor
from roienc.encode import RatePoint, encode_many
from roienc.errors import ToolError

pytestmark = pytest.mark.encode
CRF = [RatePoint("crf", 45)]


def _cli() -> tuple[object | None, str | None]:
    """(tool or None, why ROI cannot run here or None)."""
    try:
        tool = svtav1.locate_svtav1()
    except ToolError as exc:
        return None, str(exc).splitlines()[0]
    return tool, svtav1.roi_problem(tool)


TOOL, ROI_PROBLEM = _cli()
needs_cli = pytest.mark.skipif(TOOL is None, reason=f"no SvtAv1EncApp: {ROI_PROBLEM}")
needs_roi = pytest.mark.skipif(ROI_PROBLEM is not None,
                               reason=f"SvtAv1EncApp without --roi-map-file: {ROI_PROBLEM}")


def test_roi_map_grids_and_text():
    # 16-px blocks of a 200x100 frame -> 4x2 superblocks (the last ones partial)
    dq = np.zeros((2, 7, 13), np.int16)
    dq[0, :4, :4] = -6            # exactly the first superblock
    dq[1] = np.arange(13)[None, :] - 6
    g = svtav1.roi_map_grids(dq, 16, 200, 100, qp_scale=4.0)
    assert g.shape == (2, 2, 4)
    assert g[0, 0, 0] == -24 and not g[0].ravel()[1:].any()
    assert all(len(set(f.ravel()) - {0}) <= svtav1.SVT_MAX_LEVELS for f in g)
    lines = svtav1.roi_map_text(g).splitlines()
    assert lines[0] == "0 -24 0 0 0 0 0 0 0"
    assert [len(ln.split()) for ln in lines] == [9, 9] and lines[1].startswith("1 ")
    # the partial last column (200 = 3*64 + 8) averages only its 8 real pixels: blocks 12 (+6)
    assert g[1, 0, 3] == 24
    big = svtav1.roi_map_grids(np.full((1, 4, 4), -99), 16, 64, 64, qp_scale=4.0)
    assert big.min() == -255


def test_missing_cli_is_refused(seq_dataset, tmp_path, monkeypatch):
    root, maps = seq_dataset
    monkeypatch.setenv("ROIENC_SVTAV1", str(tmp_path / "no-such-SvtAv1EncApp"))
    svtav1.locate_svtav1.cache_clear()
    try:
        with pytest.raises(ToolError, match="ROIENC_SVTAV1"):
            encode_many(find_clips(root, "val"), maps, codec="av1", modes=["baseline"], rates=CRF,
                        out=tmp_path / "e", progress=False)
        checks = {c.name: c for c in run_doctor()}
        assert not checks["SVT-AV1 CLI (av1)"].ok and not checks["SVT-AV1 CLI (av1)"].essential
    finally:
        svtav1.locate_svtav1.cache_clear()


@needs_cli
def test_av1_baseline_encodes(seq_dataset, tmp_path):
    root, maps = seq_dataset
    res = encode_many(find_clips(root, "val"), maps, codec="av1", modes=["baseline"], rates=CRF,
                      out=tmp_path / "e", progress=False)
    side = res[0]
    assert side["status"] == "ok", side["error"]
    assert side["engine"] == "svtav1-cli" and side["encoder_version"].startswith("SVT-AV1 ")
    assert side["frames_encoded"] == 30 and (tmp_path / "e/av1/baseline/crf45/lindau_000000.mp4").is_file()
    assert "-b" in side["commands"][1] and "--roi-map-file" not in side["commands"][1]


@needs_cli
def test_av1_roi_refused_without_roi_map_file(seq_dataset, tmp_path):
    if ROI_PROBLEM is None:
        pytest.skip(f"{TOOL.path} has --roi-map-file: nothing to refuse")
    root, maps = seq_dataset
    with pytest.raises(ToolError, match="roi-map-file"):
        encode_many(find_clips(root, "val"), maps, codec="av1", modes=["baseline", "roi"],
                    rates=CRF, out=tmp_path / "e", progress=False)
    checks = {c.name: c for c in run_doctor()}
    assert "no --roi-map-file" in checks["SVT-AV1 CLI (av1)"].detail


@needs_roi
def test_av1_roi_encodes(seq_dataset, tmp_path):       # pragma: no cover - needs SVT-AV1 >= 1.6
    root, maps = seq_dataset
    res = encode_many(find_clips(root, "val"), maps, codec="av1", modes=["baseline", "roi"],
                      rates=CRF, out=tmp_path / "e", progress=False)
    assert [r["status"] for r in res] == ["ok", "ok"], [r["error"] for r in res]
    roi = res[1]
    assert "--roi-map-file" in roi["commands"][1]
    assert roi["bytes"] != res[0]["bytes"]
