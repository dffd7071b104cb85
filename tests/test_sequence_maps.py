"""Sequence frames: propagated labels, distances without per-frame disparity, --labels-pattern,
judging by per-frame labels."""
import shutil

import numpy as np
import pandas as pd
import pytest

from roienc.errors import InputError
from roienc.maps import build_maps


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    from roienc.synth import synthesize

    r = tmp_path_factory.mktemp("cs")
    synthesize(r, split="val", cities=("lindau",), width=256, height=128, seed=4)
    return r


def _build(root, out, **kw):
    return build_maps(root, out, split="val", workers=1, progress=False, visualize_every=0,
                      sequences=True, annotated=False, **kw)


def test_without_disparity_sequence_every_frame_is_built(root, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(root, bare)
    shutil.rmtree(bare / "disparity_sequence")
    rep = _build(bare, tmp_path / "m")
    man = rep.manifest
    assert len(man) == 30 and (man["status"] == "ok").all(), man["reason"].tolist()
    ann = man["frame_id"].str.endswith("_000019")
    assert (man.loc[ann, "distance_source"] == "own disparity").all()
    assert man.loc[~ann, "distance_source"].str.fullmatch("carried from lindau_000000_000019").all()
    # an object keeps the distance it had on the annotated frame
    objs19 = pd.read_csv(tmp_path / "m/val/lindau/lindau_000000_000019_objects.csv")
    objs18 = pd.read_csv(tmp_path / "m/val/lindau/lindau_000000_000018_objects.csv")
    common = set(objs19["object_id"].astype(str)) & set(objs18["object_id"].astype(str))
    assert len(common) >= 3
    d19 = objs19.set_index(objs19["object_id"].astype(str))["distance_m"]
    d18 = objs18.set_index(objs18["object_id"].astype(str))["distance_m"]
    for oid in common:
        assert d18[oid] == pytest.approx(d19[oid]) or (np.isnan(d18[oid]) and np.isnan(d19[oid]))
    # hold without per-frame disparity: the annotated frame's maps on every frame
    rep = _build(bare, tmp_path / "h", label_source="hold", speed_override=8.0)  # one d_safe
    assert rep.manifest["label_source"].str.startswith(("hold:", "gtFine")).all()
    imp19 = np.load(tmp_path / "h/val/lindau/lindau_000000_000019_importance.npz")["importance"]
    imp3 = np.load(tmp_path / "h/val/lindau/lindau_000000_000003_importance.npz")["importance"]
    assert np.array_equal(imp19, imp3)


def test_skip_existing_does_not_propagate_again(root, tmp_path, monkeypatch):
    out = tmp_path / "m"
    _build(root, out)
    import roienc.propagate

    def boom(*a, **k):
        raise AssertionError("propagation ran for finished frames")
    monkeypatch.setattr(roienc.propagate, "propagate_snippet", boom)
    rep = _build(root, out, skip_existing=True)
    assert (rep.manifest["reason"] == "existing output kept").all()
    # one missing frame: rebuilt (propagation runs again for its snippet)
    (out / "val/lindau/lindau_000000_000004_qp_map.npy").unlink()
    monkeypatch.undo()
    rep = _build(root, out, skip_existing=True)
    assert (rep.manifest["reason"] != "existing output kept").sum() == 1


def test_labels_pattern(root, tmp_path):
    """Per-frame labels named like a segmentation tool's output (<id>_leftImg8bit.png)."""
    pred = tmp_path / "pred" / "lindau"
    pred.mkdir(parents=True)
    gt = root / "gtFine/val/lindau/lindau_000000_000019_gtFine_labelIds.png"
    for i in range(30):
        shutil.copy(gt, pred / f"lindau_000000_{i:06d}_leftImg8bit.png")
    with pytest.raises(InputError, match="frame_id"):
        _build(root, tmp_path / "x", labels_root=tmp_path / "pred", labels_pattern="labels.png")
    rep = _build(root, tmp_path / "m", labels_root=tmp_path / "pred",
                 labels_pattern="{frame_id}_leftImg8bit.png")
    assert (rep.manifest["status"] == "ok").all()
    assert (rep.manifest["label_source"] == "labels-root").all()
    rep = _build(root, tmp_path / "n", labels_root=tmp_path / "pred")      # default pattern: absent
    assert (rep.manifest["status"] == "skipped").all()
    assert rep.manifest["reason"].str.contains("_labelIds.png").all()


def test_json_true_and_absurd_speeds_are_refused(tmp_path):
    import json

    from roienc.dataset import read_camera, read_speed

    v = tmp_path / "v.json"
    for bad in (True, 1e200, "12", None, -1):
        v.write_text(json.dumps({"speed": bad}))
        with pytest.raises(InputError, match="speed"):
            read_speed(v)
    v.write_text(json.dumps({"speed": 12}))
    assert read_speed(v) == 12.0
    c = tmp_path / "c.json"
    c.write_text(json.dumps({"intrinsic": {"fx": True}, "extrinsic": {"baseline": 0.2}}))
    with pytest.raises(InputError, match="fx"):
        read_camera(c)
    with pytest.raises(InputError, match="--speed"):
        build_maps(tmp_path, tmp_path / "m", speed=1e200)


def test_unseen_importance_floor_and_manifest(root, tmp_path):
    """Pixels whose flow leaves the annotated view get at least ``unseen_importance`` (the synth's
    background scrolls, so early frames show what frame 19 no longer does); the manifest records
    the unseen fraction of every propagated frame."""
    from roienc.propagate import PropagationParams

    plain = _build(root, tmp_path / "p", speed_override=8.0).manifest
    floor = _build(root, tmp_path / "u", speed_override=8.0,
                   propagation=PropagationParams(unseen_importance=0.6)).manifest
    prop = floor["label_source"].str.startswith("propagate")
    assert prop.sum() == 29 and floor.loc[prop, "unseen_fraction"].notna().all()
    assert floor.loc[~prop, "unseen_fraction"].isna().all()
    assert floor["unseen_fraction"].max() > 0.01
    assert plain["unseen_fraction"].equals(floor["unseen_fraction"])     # NaN on frame 19
    f = floor.loc[floor["unseen_fraction"].idxmax(), "frame_id"]
    a = np.load(tmp_path / f"p/val/lindau/{f}_importance.npz")["importance"]
    b = np.load(tmp_path / f"u/val/lindau/{f}_importance.npz")["importance"]
    assert np.all(b >= a)                                   # only ever raised
    raised = b > a
    assert raised.any() and np.all(b[raised] == np.float32(0.6))
    assert raised.mean() <= floor.loc[floor["frame_id"] == f, "unseen_fraction"].item() + 1e-3


def test_margin_importance_scales_the_ring_only(root, tmp_path):
    from roienc.propagate import PropagationParams

    full = _build(root, tmp_path / "f", speed_override=8.0,
                  propagation=PropagationParams(margin_importance=1.0)).manifest
    half = _build(root, tmp_path / "h", speed_override=8.0,
                  propagation=PropagationParams(margin_importance=0.5)).manifest
    assert full["unseen_fraction"].equals(half["unseen_fraction"])
    changed = 0
    for f in full["frame_id"]:
        a = np.load(tmp_path / f"f/val/lindau/{f}_importance.npz")["importance"]
        b = np.load(tmp_path / f"h/val/lindau/{f}_importance.npz")["importance"]
        assert np.all(b <= a)
        d = b < a
        if f.endswith("_000019"):
            assert not d.any()                       # the annotated frame has no margin
        elif d.any():
            changed += 1
            assert np.allclose(b[d], a[d] * np.float32(0.5))
    # at 256 px wide the margin is (8 + 2|steps|) * 256/2048 px: a ring on the flow grid (a
    # quarter of the frame) only from ~10 steps away
    assert changed >= 10


@pytest.mark.parametrize("big", [False, True])
def test_carried_disparity_looks_up_every_object(big):
    """Each pixel gets its object's carried median, 0 where the id has none; ids far above
    Cityscapes' (label*1000+k) take the search path and give the same image."""
    from roienc.maps import carried_disparity
    rng = np.random.default_rng(5)
    ids = np.array([0, 7, 26000, 26001, 24003, 33007], np.int64)
    if big:
        ids[2:] += 1 << 23
    inst = ids[rng.integers(0, len(ids), (64, 80))].astype(np.int64 if big else np.int32)
    lut = {int(ids[2]): 1000.5, int(ids[3]): 12.25, int(ids[5]): 3.0, 99999: 7.0}
    got = carried_disparity(inst, lut)
    want = np.vectorize(lambda i: lut.get(int(i), 0.0))(inst)
    assert got.dtype == np.float64 and got.shape == inst.shape
    assert np.array_equal(got, want)
    assert not carried_disparity(inst, {}).any()
