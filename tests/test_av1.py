"""AV1 through the SVT-AV1 CLI: ROI map files, refusals, and real encodes where a CLI exists.

ROI needs SvtAv1EncApp >= 1.6 (``--roi-map-file``); the tests that need it skip with the reason
when the CLI found is missing or older (Debian 12 ships 1.4.1).
"""
from pathlib import Path

import numpy as np
import pytest

from roienc.encoders import svtav1
from roienc.dataset import find_clips
from roienc.doctor import run_doctor
from roienc.encode import RatePoint, encode_many
from roienc.errors import ToolError
from roienc.tools import find_ffmpeg

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
    # 16-px blocks of a 200x100 frame -> 4x2 superblocks (the last ones partial). A superblock
    # takes its most important pixel's map QP m; first without the ROI's finer part (finer=0):
    # the picture's most important superblocks get 0 (its own qindex), the rest (m - the
    # picture's lowest m) * qp_scale, positive.
    dq = np.zeros((2, 7, 13), np.int16)
    dq[0, :4, :4] = -6            # exactly the first superblock
    dq[0, 6, 5] = -3              # one 16-px block of the bottom row's second superblock
    dq[1] = np.arange(13)[None, :] - 6
    g = svtav1.roi_map_grids(dq, 16, 200, 100, qp_scale=4.0, layer_scale=None, finer=0)
    assert g.shape == (2, 2, 4) and g.dtype == np.int16
    assert g[0].tolist() == [[0, 24, 24, 24], [24, 12, 24, 24]]
    # columns of 16-px blocks 0-3, 4-7, 8-11 and 12 (the partial last superblock: only its 8
    # real pixels count, map QP +6): minima -6, -2, +2, +6
    assert g[1].tolist() == [[0, 16, 32, 48]] * 2
    lines = svtav1.roi_map_text(g).splitlines()
    assert lines == ["0 0 24 24 24 24 12 24 24", "1 0 16 32 48 0 16 32 48"]
    # clipped to 255; a flat map (no ROI, or the same offset everywhere) is all 0
    big = np.zeros((2, 4, 4), np.int16)
    big[0, 0, 0] = -99
    big[1] = -5
    assert svtav1.roi_map_grids(big, 16, 64, 64, qp_scale=4.0, layer_scale=None, finer=0).tolist() == [[[0]], [[0]]]
    wide = np.zeros((1, 4, 8), np.int16)
    wide[0, :, 0] = -99
    assert svtav1.roi_map_grids(wide, 16, 128, 64, qp_scale=4.0, layer_scale=None, finer=0).tolist() == [[[0, 255]]]
    # more than 8 distinct offsets: at most 7 non-zero levels a picture, 0 kept
    many = (np.arange(16 * 16).reshape(1, 16, 16) % 13 - 12).astype(np.int16)
    m = svtav1.roi_map_grids(many, 64, 1024, 1024, qp_scale=4.0, layer_scale=None, finer=0)
    assert len(set(m.ravel()) - {0}) <= svtav1.SVT_MAX_LEVELS and (m == 0).sum() == (many == -12).sum()
    assert svtav1.picture_offsets(g)[0] == {"0": 1, "12": 1, "24": 6}
    # the ROI a little finer: + (m - the picture's highest m) * finer, 0 on the background
    f = svtav1.roi_map_grids(dq, 16, 200, 100, qp_scale=4.0, layer_scale=None, finer=2.0)
    assert f[0].tolist() == [[-12, 24, 24, 24], [24, 6, 24, 24]]
    assert f[1].tolist() == [[-24, 0, 24, 48]] * 2
    assert svtav1.roi_map_grids(big, 16, 64, 64, qp_scale=4.0, layer_scale=None).tolist() == [[[0]], [[0]]]


def test_roi_map_offsets_by_temporal_layer():
    # SVT-AV1's mini-GOP of 16 (4 hierarchical levels): pictures 0, 16 base layer, 8 layer 1,
    # 4 and 12 layer 2, 2 6 10 14 layer 3, the odd ones layer 4
    assert [svtav1.temporal_layer(i) for i in range(17)] == [0, 4, 3, 4, 2, 4, 3, 4, 1, 4, 3, 4, 2, 4, 3, 4, 0]
    assert [svtav1.temporal_layer(i, 3) for i in range(9)] == [0, 3, 2, 3, 1, 3, 2, 3, 0]
    dq = np.zeros((17, 2, 4), np.int16)
    dq[:, 0, 0] = -6              # one superblock of ROI on every picture, the rest background
    g = svtav1.roi_map_grids(dq, 32, 128, 64, qp_scale=10.0, layer_scale=(1.0, 0.9, 0.8, 0.5, 0.25),
                             finer=1.5)
    assert g[:, 0, 0].tolist() == [-9] * 17           # the finer part is not scaled by layer
    assert g[:, 0, 1].tolist() == [60, 15, 30, 15, 48, 15, 30, 15, 54, 15, 30, 15, 48, 15, 30, 15, 60]
    assert svtav1.roi_map_grids(dq, 32, 128, 64, qp_scale=10.0, levels=3)[:9, 0, 1].tolist() == [
        round(60 * svtav1.SVT_LAYER_SCALE[min(svtav1.temporal_layer(i, 3), 4)]) for i in range(9)]
    assert svtav1.hierarchy_levels({}) == svtav1.SVT_LEVELS == 4
    assert svtav1.hierarchy_levels({"hierarchical-levels": "3", "keyint": 250}) == 3


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


OLD_CLI = """#!/bin/sh
# stands in for Debian 12's SvtAv1EncApp 1.4.1: runs, has no --roi-map-file
case "$1" in
  --version) echo "SVT-AV1 v1.4.1 (release)" ;;
  *) echo "Usage: SvtAv1EncApp [options] -i input.y4m -b output.ivf"; echo "    --crf  ..." ;;
esac
"""


def test_av1_roi_refused_without_roi_map_file(seq_dataset, tmp_path, monkeypatch):
    """An SvtAv1EncApp older than 1.6 (a stand-in, so this runs wherever the real CLI is new):
    ROI is refused before anything is encoded, and doctor says why."""
    root, maps = seq_dataset
    old = tmp_path / "SvtAv1EncApp"
    old.write_text(OLD_CLI)
    old.chmod(0o755)
    monkeypatch.setenv("ROIENC_SVTAV1", str(old))
    svtav1.locate_svtav1.cache_clear()
    try:
        with pytest.raises(ToolError, match="roi-map-file"):
            encode_many(find_clips(root, "val"), maps, codec="av1", modes=["baseline", "roi"],
                        rates=CRF, out=tmp_path / "e", progress=False)
        assert not (tmp_path / "e/av1/baseline").exists()
        checks = {c.name: c for c in run_doctor()}
        assert "no --roi-map-file" in checks["SVT-AV1 CLI (av1)"].detail
    finally:
        svtav1.locate_svtav1.cache_clear()


@needs_roi
def test_av1_roi_encodes(seq_dataset, tmp_path):       # pragma: no cover - needs SVT-AV1 >= 1.6
    root, maps = seq_dataset
    res = encode_many(find_clips(root, "val"), maps, codec="av1", modes=["baseline", "roi"],
                      rates=CRF, out=tmp_path / "e", progress=False)
    assert [r["status"] for r in res] == ["ok", "ok"], [r["error"] for r in res]
    roi = res[1]
    assert "--roi-map-file" in roi["commands"][1]
    assert roi["bytes"] != res[0]["bytes"]



def frame_headers(path: Path) -> list[dict]:
    """Per coded picture of an AV1 stream (roienc's ``trace_headers`` reader, the one the sidecar's
    ``svt_coded`` comes from): order_hint, base_q_idx, segmentation_enabled, seg_q."""
    headers = svtav1.frame_headers(find_ffmpeg().path, path)
    assert headers is not None, f"FFmpeg could not trace {path}"
    return headers


@needs_roi
def test_av1_roi_map_reaches_every_picture(seq_dataset, tmp_path):   # pragma: no cover - SVT-AV1 >= 1.6
    """The bitstream proves the map is applied: every coded picture of the ROI encode carries
    segmentation with exactly the qindex offsets of its own line of the map file (matched by
    order_hint = display index), and the baseline's pictures carry none. Fails if SvtAv1EncApp
    ignores the file, or applies a line to the wrong picture."""
    root, maps = seq_dataset
    res = encode_many(find_clips(root, "val"), maps, codec="av1", modes=["baseline", "roi"],
                      rates=CRF, out=tmp_path / "e", progress=False, threads=1)
    assert [r["status"] for r in res] == ["ok", "ok"], [r["error"] for r in res]
    base, roi = res
    lines = {}
    for ln in Path(roi["adapter"]["roi_map_file"]).read_text().splitlines():
        pic, *offsets = (int(v) for v in ln.split())
        lines[pic] = sorted(set(offsets))
    assert sorted(lines) == list(range(30))
    assert len({tuple(v) for v in lines.values()}) > 1      # pictures differ: a misplaced line shows
    assert all(len(v) <= svtav1.SVT_MAX_LEVELS + 1 for v in lines.values())
    coded = frame_headers(tmp_path / "e/av1/roi/crf45/lindau_000000.mp4")
    assert sorted(h["order_hint"] for h in coded) == list(range(30))
    for h in coded:
        assert h["segmentation_enabled"] == 1, h
        assert sorted(h["seg_q"].values()) == lines[h["order_hint"]], h
    # the sidecar records what each picture was given and what it got
    assert len(roi["adapter"]["svt_pictures"]) == 30
    assert {pic: sorted(offsets) for pic, _, offsets in roi["adapter"]["svt_coded"]} == lines
    assert [c[1] for c in roi["adapter"]["svt_coded"]] == [h["base_q_idx"] for h in coded]
    plain = frame_headers(tmp_path / "e/av1/baseline/crf45/lindau_000000.mp4")
    assert len(plain) == 30 and not any(h["segmentation_enabled"] for h in plain)
