"""build-maps end to end on synthesized Cityscapes data (and on real samples when present)."""
import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from roienc.cli import main as cli
from roienc.errors import InputError
from roienc.importance import decay, safe_distance
from roienc.maps import QPParams, build_maps, load_clip_maps, read_manifest
from roienc.dataset import find_clips

REAL = Path(os.environ.get("ROIENC_SHARED", Path(__file__).resolve().parents[2] / "shared")) / "cityscapes_samples"


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    from roienc.synth import synthesize

    root = tmp_path_factory.mktemp("cs")
    info = synthesize(root, split="val", cities=("lindau", "ulm"), sequences_per_city=1,
                      width=200, height=104, seed=3, with_sequences=True)
    return root, info


@pytest.fixture(scope="module")
def built(synth_root, tmp_path_factory):
    root, info = synth_root
    out = tmp_path_factory.mktemp("maps")
    rep = build_maps(root, out, split="val", workers=1, progress=False, visualize_every=1)
    return root, info, out, rep


def test_outputs_dtypes_shapes_ranges(built):
    root, info, out, rep = built
    assert (rep.manifest["status"] == "ok").all(), rep.manifest[["frame_id", "reason"]]
    ann = [f for f in info.frames if f.source == "frames"]
    assert len(rep.manifest) == len(ann)
    for f in ann:
        p = out / "val" / f.city / f.frame_id
        imp = np.load(f"{p}_importance.npz")["importance"]
        assert imp.dtype == np.float32 and imp.shape == (info.height, info.width)
        assert imp.min() >= 0.0 and imp.max() <= 1.0
        png = np.asarray(Image.open(f"{p}_importance.png"))
        assert png.dtype == np.uint8 and png.shape == imp.shape
        assert np.array_equal(png, np.rint(imp * 255).astype(np.uint8))
        vis = Image.open(f"{p}_importance_vis.png")   # paletted: the 'hot' colormap
        assert vis.mode in ("RGB", "P") and vis.size == (info.width, info.height)
        qp = np.load(f"{p}_qp_map.npy")
        assert qp.dtype == np.int8
        d = QPParams()
        assert qp.shape == (math.ceil(info.height / d.block_size), math.ceil(info.width / d.block_size))
        assert qp.min() >= d.base_qp - d.delta and qp.max() <= d.base_qp + d.background
        csv = np.loadtxt(f"{p}_qp_map.csv", delimiter=",", dtype=int, ndmin=2)
        assert np.array_equal(csv, qp)
        ann_img = Image.open(f"{p}_distance_annotation.jpg")
        assert ann_img.width == info.width and ann_img.height > info.height  # title bar
        assert ann_img.format == "JPEG" and ann_img.mode == "RGB"
        objs = pd.read_csv(f"{p}_objects.csv")
        assert list(objs.columns[:7]) == ["object_id", "label", "pixels", "valid_pixels",
                                          "distance_m", "importance", "inside_safe"]
    params = json.loads((out / "params.json").read_text())
    assert params["roienc_version"] and params["importance"]["t_react"] == 2.5
    assert params["qp"] == {**QPParams().__dict__}


def test_object_distances_match_ground_truth(built):
    root, info, out, rep = built
    man = rep.manifest.set_index("frame_id")
    checked = 0
    for f in info.frames:
        if f.source != "frames":
            continue
        objs = pd.read_csv(out / "val" / f.city / f"{f.frame_id}_objects.csv",
                           dtype={"object_id": str})
        ds = safe_distance(f.speed_mps)
        assert man.loc[f.frame_id, "d_safe_m"] == pytest.approx(ds)
        for o in f.objects:
            if o.instance_id is None:
                continue
            row = objs[objs["object_id"] == str(o.instance_id)]
            assert len(row) == 1, (f.frame_id, o)
            row = row.iloc[0]
            if o.disparity_raw == 0:
                assert np.isnan(row.distance_m) and row.importance == 1.0
                continue
            z = f.fx * f.baseline / ((o.disparity_raw - 1) / 256.0)
            assert row.distance_m == pytest.approx(z, rel=1e-3)
            assert row.importance == pytest.approx(float(decay(z, ds)), rel=1e-4)
            checked += 1
    assert checked >= 4


def test_sequences_and_clip_maps(synth_root, tmp_path):
    root, info = synth_root
    out = tmp_path / "maps"
    rep = build_maps(root, out, split="val", cities=["lindau"], sequences=True, workers=2,
                     progress=False, visualize_every=0)
    seq = rep.manifest[rep.manifest["source"] == "sequence"]
    assert len(seq) == 30 and (seq["status"] == "ok").all()
    ann = seq["frame_id"].str.endswith("_000019")
    assert (seq.loc[ann, "label_source"] == "gtFine").all()
    assert seq.loc[~ann, "label_source"].str.fullmatch("propagate:lindau_000000_000019").all()
    assert (seq["annotated_frame"] == "lindau_000000_000019").all()
    assert sorted(seq["label_steps"].astype(int)) == list(range(-19, 11))
    assert (seq["distance_source"] == "own disparity").all()    # synth has disparity_sequence
    assert seq["speed_source"].str.contains("vehicle_sequence").all()
    assert not list((out / "val" / "lindau").glob("*_distance_annotation.*"))
    clips = find_clips(root, "val", ["lindau"], "sequence")
    cm = load_clip_maps(out, clips[0])
    d = QPParams()
    assert cm.qp.shape[0] == 30 and cm.base_qp == d.base_qp and cm.block_size == d.block_size
    assert cm.width == info.width and cm.height == info.height
    assert cm.dq.min() >= -d.delta and cm.dq.max() <= d.background
    # objects approach over the snippet: the near-object area grows
    near_first = np.asarray(Image.open(out / "val" / "lindau" / f"{clips[0].frame_ids[0]}_near_mask.png"))
    imp_first = np.load(cm.importance_paths[0])["importance"]
    imp_last = np.load(cm.importance_paths[-1])["importance"]
    assert imp_first.shape == imp_last.shape == near_first.shape


def test_skips_are_recorded_with_reasons(synth_root, tmp_path):
    root, info = synth_root
    broken = tmp_path / "cs"
    shutil.copytree(root, broken)
    ann = sorted(f.frame_id for f in info.frames if f.source == "frames" and f.city == "lindau")
    fid = ann[0]
    (broken / "vehicle" / "val" / "lindau" / f"{fid}_vehicle.json").unlink()
    ulm = sorted(f.frame_id for f in info.frames if f.source == "frames" and f.city == "ulm")[0]
    (broken / "camera" / "val" / "ulm" / f"{ulm}_camera.json").write_text("{not json")
    rep = build_maps(broken, tmp_path / "m", split="val", workers=1, progress=False)
    man = rep.manifest.set_index("frame_id")
    assert man.loc[fid, "status"] == "skipped"
    assert "vehicle" in man.loc[fid, "reason"] and "--speed" in man.loc[fid, "reason"]
    # a malformed file is a failure (the command exits 1), a missing one a skip with the fix
    assert man.loc[ulm, "status"] == "failed" and "malformed JSON" in man.loc[ulm, "reason"]
    assert not (tmp_path / "m" / "val" / "lindau" / f"{fid}_importance.npz").exists()
    # --speed fills the gap and the manifest says where the value came from
    rep2 = build_maps(broken, tmp_path / "m2", split="val", workers=1, progress=False, speed=7.0)
    row = rep2.manifest.set_index("frame_id").loc[fid]
    assert row.status == "ok" and row.speed_mps == 7.0 and row.speed_source == "option --speed"
    # strict CLI exits non-zero
    code = cli(["build-maps", "--cityscapes-root", str(broken), "--out", str(tmp_path / "m3"),
                "--workers", "1", "--strict", "--no-progress"])
    assert code == 1


def test_size_mismatch_and_bad_speed(synth_root, tmp_path):
    root, info = synth_root
    broken = tmp_path / "cs"
    shutil.copytree(root, broken)
    fid = sorted(f.frame_id for f in info.frames if f.source == "frames" and f.city == "ulm")[0]
    dp = broken / "disparity" / "val" / "ulm" / f"{fid}_disparity.png"
    Image.fromarray(np.zeros((10, 10), np.uint16)).save(dp)
    vp = broken / "vehicle" / "val" / "lindau"
    lin = sorted(vp.glob("*_vehicle.json"))[0]
    lin.write_text(json.dumps({"speed": -3.0}))
    rep = build_maps(broken, tmp_path / "m", split="val", workers=1, progress=False)
    man = rep.manifest.set_index("frame_id")
    assert "disparity is 10x10" in man.loc[fid, "reason"] and "the frame's size" in man.loc[fid, "reason"]
    assert "non-negative" in man.loc[lin.name[:-13], "reason"]


def test_resume_keeps_finished_frames(synth_root, tmp_path):
    root, info = synth_root
    out = tmp_path / "m"
    build_maps(root, out, split="val", cities=["lindau"], workers=1, progress=False)
    npy = sorted((out / "val" / "lindau").glob("*_importance.npz"))[0]
    mtime = npy.stat().st_mtime_ns
    rep = build_maps(root, out, split="val", cities=["lindau"], workers=1, progress=False,
                     skip_existing=True)
    assert npy.stat().st_mtime_ns == mtime
    assert (rep.manifest["reason"] == "existing output kept").all()
    assert (rep.manifest["status"] == "ok").all()
    with pytest.raises(InputError, match="different"):
        build_maps(root, out, split="val", cities=["lindau"], workers=1, progress=False,
                   skip_existing=True, qp=QPParams(delta=5))
    # no temporary files left behind
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]


def test_cli_end_to_end_and_errors(synth_root, tmp_path, capsys):
    root, info = synth_root
    code = cli(["build-maps", "--cityscapes-root", str(root), "--split", "val", "--cities", "ulm",
                "--out", str(tmp_path / "o"), "--workers", "1", "--no-progress",
                "--block-size", "32", "--block-stat", "max", "--delta", "4"])
    assert code == 0
    assert "ok" in capsys.readouterr().out
    man = read_manifest(tmp_path / "o")
    assert set(man["city"]) == {"ulm"}
    qp = np.load(next((tmp_path / "o" / "val" / "ulm").glob("*_qp_map.npy")))
    assert qp.shape == (math.ceil(info.height / 32), math.ceil(info.width / 32))
    assert qp.min() >= 28 and qp.max() <= 36
    code = cli(["build-maps", "--cityscapes-root", str(root), "--cities", "atlantis",
                "--out", str(tmp_path / "x")])
    assert code == 2 and "atlantis" in capsys.readouterr().err
    code = cli(["build-maps", "--cityscapes-root", str(tmp_path), "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 2 and "leftImg8bit" in err


@pytest.mark.skipif(not REAL.is_dir(), reason=f"real Cityscapes samples not present at {REAL}")
def test_real_samples(tmp_path):
    rep = build_maps(REAL, tmp_path, split="train", workers=1, progress=False, speed=10.0,
                     camera=REAL / "camera" / "train" / "aachen" / "aachen_000001_000019_camera.json")
    man = rep.manifest.set_index("frame_id")
    assert man.loc["aachen_000000_000019", "status"] == "ok"
    assert man.loc["aachen_000000_000019", "camera_source"].startswith("option --camera")
    # frames without gtFine are skipped with the reason
    assert man.loc["hamburg_000000_046078", "status"] == "skipped"
    assert "labelIds" in man.loc["hamburg_000000_046078", "reason"]
    objs = pd.read_csv(tmp_path / "train" / "aachen" / "aachen_000000_000019_objects.csv")
    cars = objs[objs["label"] == "car"]
    assert len(cars) >= 5 and cars["distance_m"].between(3, 200).all()
    assert cars["distance_m"].nunique() == len(cars)      # per object, not per class
    # road depth rises towards the horizon on real disparity
    from roienc.dataset import read_disparity_raw, read_label_ids
    from roienc.importance import disparity_px, distance_m
    lab = read_label_ids(REAL / "gtFine/train/aachen/aachen_000000_000019_gtFine_labelIds.png")
    z = distance_m(disparity_px(read_disparity_raw(
        REAL / "disparity/train/aachen/aachen_000000_000019_disparity.png")), 2262.52, 0.209313)
    med = []
    for row in (560, 660, 760, 860):
        sel = (lab[row] == 7) & np.isfinite(z[row])
        med.append(np.median(z[row][sel]))
    assert all(a > b for a, b in zip(med, med[1:])), med
    assert 2 < med[-1] < 15 and med[0] < 80
