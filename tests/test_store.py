"""The content-addressed store (issue 29): a rerun reports the inputs as they are now.

Each case edits an input behind a finished run (labels, a picture, maps rebuilt in place, an mp4
swapped for a padded copy of another, maps of another dataset) and checks that the rerun gives
what a clean run on the edited data gives, or refuses naming what differs: no stale number.
"""
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from roienc.dataset import find_clips
from roienc.encode import RatePoint, encode_many
from roienc.errors import RoiencError
from roienc.evaluate import evaluate
from roienc.maps import QPParams, build_maps, read_manifest
from roienc.store import FolderBusy, RunLock, file_digest, key_of

CRF = [RatePoint("crf", 30)]
FAST = dict(preset="fast", progress=False)


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ROIENC_DIGEST_CACHE", str(tmp_path / "digests.sqlite3"))


@pytest.fixture
def root(tmp_path):
    from roienc.synth import synthesize

    r = tmp_path / "cs"
    synthesize(r, split="val", width=192, height=96, seed=3)
    return r


def _age(path, seconds=10.0):
    """Make a file look older than the racy window (its digest may then be cached)."""
    t = time.time() - seconds
    os.utime(path, (t, t))


def _road_labels(root):
    """Every dynamic object of the snippet's annotated frame set to road, in place."""
    lab = next((root / "gtFine").rglob("*_000019_gtFine_labelIds.png"))
    a = np.asarray(Image.open(lab)).copy()
    a[a >= 24] = 7
    Image.fromarray(a).save(lab)
    return lab


def test_file_digest_follows_content_not_only_stat(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"a" * 1000)
    _age(p)
    d1 = file_digest(p)
    assert d1 == file_digest(p)                     # cached: the same answer
    st = p.stat()
    p.write_bytes(b"b" * 1000)                      # same size, same mtime given back
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert file_digest(p) != d1                     # ctime moved: read again
    assert key_of("x", a=1, b=[1, 2]) == key_of("x", b=[1, 2], a=1) != key_of("x", a=2, b=[1, 2])


def test_a_second_run_into_a_held_folder_is_refused(root, tmp_path):
    folder = tmp_path / "out"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom roienc.store import RunLock\n"
         f"with RunLock({str(folder)!r}, 'roienc sweep --out x'):\n"
         "    print('held', flush=True); time.sleep(30)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(FolderBusy, match="in use by roienc sweep --out x"):
            with RunLock(folder, "second"):
                pass
        # a sweep into it is refused before writing anything
        from roienc.sweep import run_sweep
        with pytest.raises(FolderBusy):
            run_sweep(root, folder, split="val", progress=False)
        assert sorted(p.name for p in folder.iterdir()) == [".roienc.lock"]
        # build-maps (--overwrite too) waits for the holder to finish, then runs
        import threading
        done = []
        t = threading.Thread(target=lambda: done.append(
            build_maps(root, folder, split="val", overwrite=True, progress=False,
                       visualize_every=0, workers=1)))
        t.start()
        time.sleep(1.5)
        assert not done and sorted(p.name for p in folder.iterdir()) == [".roienc.lock"]
        holder.kill()
        t.join(60)
        assert done and (done[0].manifest["status"] == "ok").all()
    finally:
        holder.kill()
        holder.wait()
    with RunLock(folder, "third"):                  # released when its process ended
        with RunLock(folder, "nested"):             # re-entrant within a process
            pass


def test_build_maps_rebuilds_frames_whose_inputs_changed(root, tmp_path):
    out = tmp_path / "m"
    kw = dict(split="val", sequences=True, workers=1, progress=False, visualize_every=0)
    build_maps(root, out, **kw)
    first = read_manifest(out).set_index("frame_id")
    # one row per frame id: the annotated frame is built as a frame of its snippet
    assert not first.index.duplicated().any() and (first["source"] == "sequence").all()
    kept = build_maps(root, out, skip_existing=True, **kw).manifest
    assert (kept["reason"] == "existing output kept").all()
    # kept rows keep every column (distance source, unseen fraction, ...)
    cols = ["distance_source", "unseen_fraction", "objects", "qp_roi_delta", "key"]
    assert (first["unseen_fraction"] != "").all()
    pd.testing.assert_frame_equal(read_manifest(out).set_index("frame_id")[cols], first[cols])
    _road_labels(root)
    again = build_maps(root, out, skip_existing=True, **kw).manifest.set_index("frame_id")
    build_maps(root, tmp_path / "clean", **kw)
    again = read_manifest(out).set_index("frame_id")
    clean = read_manifest(tmp_path / "clean").set_index("frame_id")
    assert (again["reason"] != "existing output kept").all()       # the snippet is built anew
    pd.testing.assert_series_equal(again["objects"], clean["objects"])
    assert (again["key"] == clean["key"]).all()
    assert (again["objects"] < first["objects"]).any()
    # the stale temporaries of a killed run are removed by the next run
    stale = out / "val" / "lindau" / ".x_importance.999999@nohost.tmp.npz"
    stale.write_bytes(b"")
    from roienc.fileio import _HOST
    dead = out / "val" / "lindau" / f".x_importance.999999@{_HOST}.ab.tmp.npz"
    dead.write_bytes(b"")
    build_maps(root, out, skip_existing=True, **kw)
    assert not dead.exists()


def test_importance_npz_gives_the_npy_maps(root, tmp_path):
    kw = dict(split="val", sequences=True, workers=1, progress=False, visualize_every=0)
    a = build_maps(root, tmp_path / "z", **kw)
    b = build_maps(root, tmp_path / "y", importance_format="npy", **kw)
    for f in sorted((tmp_path / "y/val/lindau").glob("*_importance.npy")):
        z = tmp_path / "z/val/lindau" / f.name.replace(".npy", ".npz")
        assert np.array_equal(np.load(f), np.load(z)["importance"])
        q = f.name.replace("_importance.npy", "_qp_map.npy")
        assert np.array_equal(np.load(f.parent / q), np.load(z.parent / q))
    assert sum(p.stat().st_size for p in (tmp_path / "z").rglob("*_importance.npz")) * 20 < \
        sum(p.stat().st_size for p in (tmp_path / "y").rglob("*_importance.npy"))
    assert list(a.manifest["key"]) != list(b.manifest["key"])


@pytest.mark.encode
def test_encode_reuse_follows_maps_and_mp4_contents(root, tmp_path):
    maps, enc = tmp_path / "m", tmp_path / "e"
    kw = dict(split="val", sequences=True, workers=1, progress=False, visualize_every=0)
    build_maps(root, maps, qp=QPParams(block_size=16, rate_budget=None, delta=6), **kw)
    clips = find_clips(root, "val", source="sequence")
    enc_kw = dict(modes=["roi"], rates=CRF, out=enc, skip_existing=True, cityscapes_root=root, **FAST)
    first = encode_many(clips, maps, **enc_kw)[0]
    mp4 = enc / "hevc/roi/crf30/lindau_000000.mp4"
    _age(mp4)
    assert encode_many(clips, maps, **enc_kw)[0].get("skipped_existing")
    # maps rebuilt in place with another delta: the encode of the old maps is not kept
    build_maps(root, maps, qp=QPParams(block_size=16, rate_budget=None, delta=3), overwrite=True, **kw)
    second = encode_many(clips, maps, **enc_kw)[0]
    assert not second.get("skipped_existing") and second["mp4_sha256"] != first["mp4_sha256"]
    # an mp4 replaced by another clip's bytes padded to the same size: encoded again
    other = encode_many(clips, maps, **{**enc_kw, "rates": [RatePoint("crf", 40)]})[0]
    data = (enc / "hevc/roi/crf40/lindau_000000.mp4").read_bytes()
    size = mp4.stat().st_size
    assert len(data) + 8 <= size
    pad = size - len(data)
    mp4.write_bytes(data + pad.to_bytes(4, "big") + b"free" + b"\0" * (pad - 8))
    assert mp4.stat().st_size == size
    # evaluated as it is, it is refused: the sidecar describes another file
    with pytest.raises(RoiencError, match="not the file its sidecar"):
        evaluate(enc / "hevc/roi/crf30", maps, tmp_path / "r.csv", cityscapes_root=root,
                 progress=False)
    third = encode_many(clips, maps, **enc_kw)[0]
    assert not third.get("skipped_existing") and third["mp4_sha256"] == second["mp4_sha256"]
    assert other["mp4_sha256"] != third["mp4_sha256"]


@pytest.mark.encode
def test_evaluate_reuse_follows_contents_and_refuses_maps_of_other_frames(root, tmp_path):
    maps, enc, rep = tmp_path / "m", tmp_path / "e", tmp_path / "r.csv"
    kw = dict(split="val", sequences=True, workers=1, progress=False, visualize_every=0)
    build_maps(root, maps, **kw)
    clips = find_clips(root, "val", source="sequence")
    encode_many(clips, None, modes=["baseline"], rates=CRF, out=enc, cityscapes_root=root, **FAST)
    ev = dict(cityscapes_root=root, progress=False, skip_existing=True)
    first = evaluate(enc, maps, rep, **ev)
    # the judging maps rebuilt from other labels in place: the row is measured again
    _road_labels(root)
    build_maps(root, maps, skip_existing=True, **kw)
    second = evaluate(enc, maps, rep, **ev)
    clean = evaluate(enc, maps, tmp_path / "clean.csv", cityscapes_root=root, progress=False)
    assert second["roi_fraction"].iloc[0] < first["roi_fraction"].iloc[0]
    assert second["psnr_roi"].iloc[0] == clean["psnr_roi"].iloc[0]
    # maps built from another dataset (a picture changed): refused, naming the frame
    other = tmp_path / "cs2"
    shutil.copytree(root, other)
    pic = next((other / "leftImg8bit_sequence").rglob("*_000005_leftImg8bit.png"))
    a = np.asarray(Image.open(pic)).copy()
    a[:8] = 0
    Image.fromarray(a).save(pic)
    build_maps(other, tmp_path / "m2", **kw)
    with pytest.raises(RoiencError, match="another picture of frame lindau_000000_000005"):
        evaluate(enc, tmp_path / "m2", tmp_path / "r2.csv", cityscapes_root=root, progress=False)


@pytest.mark.encode
@pytest.mark.slow
def test_sweep_rerun_after_edited_labels_equals_a_clean_run(root, tmp_path):
    from roienc.cli import main as cli

    def sweep(data, run):         # default 32-px blocks: roi-settings is the baseline's command
        return cli(["sweep", "--cityscapes-root", str(data), "--split", "val", "--crf", "26,34",
                    "--preset", "fast", "--out", str(run), "--no-progress"])

    run = tmp_path / "run"
    assert sweep(root, run) == 0
    before = pd.read_csv(run / "results.csv")
    _road_labels(root)
    assert sweep(root, run) == 0
    assert sweep(root, tmp_path / "clean") == 0
    cols = ["mode", "rate_value", "bytes", "psnr_roi", "psnr_nonroi", "roi_fraction"]
    after = pd.read_csv(run / "results.csv")[cols]
    clean = pd.read_csv(tmp_path / "clean" / "results.csv")[cols]
    pd.testing.assert_frame_equal(after, clean)
    assert not before[cols].equals(after)
    # no two encodes of the sweep are the same bitstream: roi-settings reuses the baseline's
    mp4s = sorted(run.rglob("*.mp4"))
    assert len(mp4s) == 4 and len({file_digest(p) for p in mp4s}) == 4
    res = pd.read_csv(run / "results.csv")
    ref = res[res["mode"] == "roi-settings"]
    assert len(ref) == 2 and (ref["same_encode_as"] == "baseline").all()
    assert "roi-settings is the baseline" in (run / "report.html").read_text()


def test_a_sweep_of_one_snippet_builds_the_maps_of_that_snippet_only(tmp_path):
    from roienc.synth import synthesize

    root = tmp_path / "cs2"
    synthesize(root, split="val", width=192, height=96, sequences_per_city=2, seed=1)
    rep = build_maps(root, tmp_path / "m", split="val", sequences=True, annotated=False,
                     snippets=["lindau_000001"], workers=1, progress=False, visualize_every=0)
    assert set(rep.manifest["frame_id"].str[:13]) == {"lindau_000001"}
    assert len(rep.manifest) == 30
