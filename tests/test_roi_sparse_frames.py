"""ROI clips whose first frames have no offset: x265 keeps its input pictures in a pool, and a
picture first made for a frame without ROI side data has no room for offsets; handed a later frame
with ROI, x265 4.2 crashed (SIGSEGV). Every frame of an ROI clip now carries side data."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from roienc.dataset import find_clips
from roienc.encode import RatePoint, encode_many

pytestmark = pytest.mark.encode
CRF = [RatePoint("crf", 30)]


def _engines():
    from roienc.inproc import versions
    return ["ffmpeg"] + (["pyav"] if versions() else [])


def _luma(path, n: int) -> list[np.ndarray]:
    import av
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="gray") for f in c.decode(video=0)][:n]


@pytest.mark.parametrize("engine", _engines())
def test_offsets_only_on_late_frames_encode(seq_dataset, tmp_path, engine):
    root, maps = seq_dataset
    late = tmp_path / "maps"
    shutil.copytree(maps, late, ignore=shutil.ignore_patterns(".*lock"))
    base_qp = json.loads((late / "params.json").read_text())["qp"]["base_qp"]
    frames = sorted(late.glob("val/*/*_qp_map.npy"))
    assert len(frames) == 30
    kept = frames[-3:]
    assert all(np.any(np.load(g) != base_qp) for g in kept), "the synthesized snippet's last frames need an ROI"
    for g in frames[:-3]:                    # the first 27 frames: no offset at all
        q = np.load(g)
        q[:] = base_qp
        np.save(g, q)
    clips = find_clips(root, "val")
    res = encode_many(clips, late, modes=["baseline", "roi"], rates=CRF, out=tmp_path / "e",
                      preset="fast", progress=False, engine=engine)
    assert [r["status"] for r in res] == ["ok", "ok"], [r.get("error") for r in res]
    base = tmp_path / "e/hevc/baseline/crf30/lindau_000000.mp4"
    roi = tmp_path / "e/hevc/roi/crf30/lindau_000000.mp4"
    assert base.read_bytes() != roi.read_bytes()
    assert res[1]["frames"] == 30


@pytest.mark.parametrize("engine", _engines())
def test_frames_without_offsets_between_roi_frames(seq_dataset, tmp_path, engine):
    """Offsets on every other frame (no side data in between, before this fix): the encode runs,
    and frames with offsets differ from the baseline while the clip still has 30 frames."""
    root, maps = seq_dataset
    alt = tmp_path / "maps"
    shutil.copytree(maps, alt, ignore=shutil.ignore_patterns(".*lock"))
    base_qp = json.loads((alt / "params.json").read_text())["qp"]["base_qp"]
    frames = sorted(alt.glob("val/*/*_qp_map.npy"))
    for i, g in enumerate(frames):
        if i % 2 == 0:
            q = np.load(g)
            q[:] = base_qp
            np.save(g, q)
    res = encode_many(find_clips(root, "val"), alt, modes=["baseline", "roi"], rates=CRF,
                      out=tmp_path / "e", preset="fast", progress=False, engine=engine)
    assert [r["status"] for r in res] == ["ok", "ok"], [r.get("error") for r in res]
    b = _luma(tmp_path / "e/hevc/baseline/crf30/lindau_000000.mp4", 30)
    r = _luma(tmp_path / "e/hevc/roi/crf30/lindau_000000.mp4", 30)
    assert len(b) == len(r) == 30
    assert any(not np.array_equal(x, y) for x, y in zip(b, r))
