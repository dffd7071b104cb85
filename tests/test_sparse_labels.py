"""Labels on some frames, ROI on all: propagation from every labelled frame (issue 20).

A synthesized snippet (``roienc.synth`` with ``movers``) has two cars frame 19 does not show: one
enters the view at frame 22, one leaves it after frame 15. Labels of frames 9, 19 and 29 must put
both into the ROI wherever they are visible; frame 19 alone cannot.
"""
import json

import numpy as np
import pandas as pd
import pytest

from roienc.errors import InputError
from roienc.labels import DYNAMIC, load_class_groups
from roienc.maps import QPParams, build_maps, object_instances
from roienc.propagate import PropagationParams, merge_outputs, propagate_keyframes
from roienc.synth import MOVER_IDS, sequence_frames

W, H = 512, 256


@pytest.fixture(scope="module")
def movers():
    return sequence_frames(width=W, height=H, seed=4, movers=True)


def _keys(frames, idx, lut):
    return {k: (frames[k]["labels"],
                object_instances(frames[k]["labels"], frames[k]["inst"].astype(np.int32), lut))
            for k in idx}


def test_objects_absent_from_frame_19_are_in_the_roi_of_every_frame(movers):
    """Measured (512x256, default PropagationParams): with labels on 9, 19, 29 the share of each
    mover's pixels labelled dynamic is >= 0.71 on every frame it is visible in (min at frame 11
    for the leaving car, one step past its half-way point), its instance IoU >= 0.18 (a sliver
    entering or leaving the view under a propagated margin); with frame 19 alone the entering car
    is never in the ROI and the leaving car only on frames 0..5, where other objects smeared
    back from frame 19 happen to cover it (0.67 at frame 0, 0 from frame 7 on)."""
    lut = load_class_groups().group_lut()
    is_dyn = lut == DYNAMIC
    imgs = [f["rgb"] for f in movers]
    sparse = propagate_keyframes(imgs, _keys(movers, (9, 19, 29), lut), None, lut)
    alone = propagate_keyframes(imgs, _keys(movers, (19,), lut), None, lut)
    seen = 0
    for iid in MOVER_IDS:
        for t, f in enumerate(movers):
            truth = f["inst"] == iid
            if not truth.any():
                continue
            seen += 1
            rec = is_dyn[sparse[t].labels][truth].mean()
            mine = sparse[t].instances == iid
            iou = (mine & truth).sum() / (mine | truth).sum()
            assert rec >= 0.65, (iid, t, rec)
            assert iou >= 0.15, (iid, t, iou)
            if iid == MOVER_IDS[0] or t >= 7:
                assert is_dyn[alone[t].labels][truth].mean() <= 0.02, (iid, t)
    assert seen == 16 + 8            # the leaving car on frames 0..15, the entering on 22..29
    # sources and steps: frames between two labelled frames name both
    assert sparse[12].sources == (9, 19) and sparse[12].source_steps == (3, -7)
    assert sparse[12].steps == 3
    assert sparse[25].sources == (19, 29) and sparse[25].steps == -4
    assert sparse[3].sources == (9, 19) and sparse[3].steps == -6     # the two nearest
    assert sparse[3].source_steps == (-6, -16)
    assert sparse[19].sources == (19,) and sparse[19].steps == 0
    assert np.array_equal(sparse[29].labels, movers[29]["labels"])


def test_merge_is_the_union_of_dynamic_masks_nearer_labels_elsewhere():
    """Pure rule on tiny arrays: a dynamic pixel of either output is kept; elsewhere the nearer
    output's label; a farther object with a clashing instance id gets a fresh id of its class."""
    from roienc.propagate import _Out

    lut = load_class_groups().group_lut()
    is_dyn = lut == DYNAMIC
    road, car, person = 7, 26, 24
    z = np.zeros((4, 4), bool)
    near_lab = np.full((4, 4), road, np.uint8)
    near_lab[0, 0] = car
    near_inst = near_lab.astype(np.int32)
    near_inst[0, 0] = 26001
    far_lab = np.full((4, 4), 11, np.uint8)           # building: static, loses to the nearer road
    far_lab[3, 3] = car
    far_lab[2, 2] = person
    far_inst = far_lab.astype(np.int32)
    far_inst[3, 3] = 26001                             # another car with the same id
    far_inst[2, 2] = 24000
    near = _Out(near_lab, near_inst, near_lab == car, z, z, 2, 9, 0.1, 4)
    far = _Out(far_lab, far_inst, is_dyn[far_lab], z, z, -8, 19, 0.3, 5)
    m = merge_outputs(near, far, is_dyn)
    assert m.lab[0, 0] == car and m.lab[3, 3] == car and m.lab[2, 2] == person
    assert m.lab[1, 1] == road                        # the nearer label where both are static
    assert m.inst[0, 0] == 26001 and m.inst[3, 3] == 26002 and m.inst[2, 2] == 24000
    assert m.core.sum() == 3 and m.steps == 2 and m.source == 9


def test_far_chains_version_of_a_nearer_object_is_margin_a_new_object_is_not():
    """far_as_margin (default): the farther chain's pixels of an object the nearer chain also
    shows (here shifted by two columns: smear, or where it was) become ring; an object only the
    farther labelled frame shows stays core; with far_as_margin=False both are core."""
    from roienc.propagate import _Out

    lut = load_class_groups().group_lut()
    is_dyn = lut == DYNAMIC
    road, car = 7, 26
    z = np.zeros((6, 8), bool)
    near_lab = np.full((6, 8), road, np.uint8)
    near_lab[1:3, 0:3] = car                            # the car, as the nearer chain has it
    far_lab = np.full((6, 8), road, np.uint8)
    far_lab[1:3, 2:5] = car                             # the same car, two columns on
    far_lab[5, 7] = car                                 # a car the nearer frame does not show
    near = _Out(near_lab, None, is_dyn[near_lab], z, z, 1, 9, 0.0, 0)
    far = _Out(far_lab, None, is_dyn[far_lab], z, z, -4, 14, 0.0, 0)
    m = merge_outputs(near, far, is_dyn)
    assert m.lab[1, 4] == car and m.lab[5, 7] == car           # the union of the masks
    assert m.ring[1:3, 3:5].all() and not m.core[1:3, 3:5].any()
    assert m.core[5, 7] and not m.ring[5, 7]
    assert m.core[1:3, 0:3].all()                               # the nearer object as it was
    old = merge_outputs(near, far, is_dyn, far_as_margin=False)
    assert old.core[1:3, 3:5].all() and not old.ring.any()


def test_holding_makes_up_for_a_loss_but_does_not_grow_an_object():
    """limit_hold: an object the warp kept whole does not also keep its held trail (it would
    grow by it every step); one the warp lost pixels of keeps its held pixels up to its size;
    growth 0 is no limit."""
    from roienc.propagate import limit_hold

    prev = np.zeros((4, 8), np.int32)
    prev[0, 0:4] = 1                       # object 1: four pixels
    prev[2, 0:4] = 2                       # object 2: four pixels
    new = np.zeros_like(prev)
    new[0, 2:6] = 1                        # 1 moved two columns, whole
    new[2, 3] = 2                          # 2: the warp kept one pixel of it
    take = np.zeros(prev.shape, bool)
    take[0, 0:2] = True                    # unreliable pixels where 1 was: its trail
    take[2, 0:3] = True                    # unreliable pixels where 2 was
    got = limit_hold(prev, new, take, 1.0)
    assert not got[0].any()                # 4 + 2 held > 4: no trail
    assert got[2, 0:3].all()               # 1 + 3 held <= 4: kept
    assert limit_hold(prev, new, take, 1.5)[0, 0:2].all()        # 6 <= 1.5 * 4
    assert (limit_hold(prev, new, take, 0.0) == take).all()


def test_hold_growth_applies_with_several_labelled_frames_only(movers):
    """hold_growth (default 1.0) leaves one labelled frame's propagation as it was (holding is
    its only backup), and with labelled frames 9, 19, 29 the dynamic masks are no larger than
    with unlimited holds (0) on the synthesized movers, and smaller on some frame."""
    from dataclasses import replace

    lut = load_class_groups().group_lut()
    is_dyn = lut == DYNAMIC
    imgs = [f["rgb"] for f in movers]
    limited, unlimited = PropagationParams(), replace(PropagationParams(), hold_growth=0.0)
    assert limited.hold_growth == 1.0
    one = _keys(movers, (19,), lut)
    a = propagate_keyframes(imgs, one, limited, lut)
    b = propagate_keyframes(imgs, one, unlimited, lut)
    assert all((x.labels == y.labels).all() for x, y in zip(a, b))
    three = _keys(movers, (9, 19, 29), lut)
    a = propagate_keyframes(imgs, three, limited, lut)
    b = propagate_keyframes(imgs, three, unlimited, lut)
    area_a = np.array([is_dyn[f.labels].sum() for f in a])
    area_b = np.array([is_dyn[f.labels].sum() for f in b])
    assert area_a.sum() < area_b.sum() and (area_a <= area_b * 1.01).all(), (area_a, area_b)
    with pytest.raises(InputError, match="hold_growth"):
        PropagationParams(hold_growth=-1.0)


def test_bad_keyframes_are_input_errors(movers):
    lut = load_class_groups().group_lut()
    imgs = [f["rgb"] for f in movers[:5]]
    lab = movers[0]["labels"]
    with pytest.raises(InputError, match="outside 0..4"):
        propagate_keyframes(imgs, {7: (lab, None)}, None, lut)
    with pytest.raises(InputError, match="labels of frame 3"):
        propagate_keyframes(imgs, {0: (lab, None), 3: (lab[:10], None)}, None, lut)
    with pytest.raises(InputError, match="no labelled frame"):
        propagate_keyframes(imgs, {}, None, lut)


# ------------------------------------------------------------------------- build-maps

@pytest.fixture(scope="module")
def mroot(tmp_path_factory):
    """A synthesized root with the movers and every frame's true labels in labels_sequence/."""
    from roienc.synth import synthesize

    r = tmp_path_factory.mktemp("movers")
    synthesize(r, split="val", cities=("lindau",), width=W, height=H, seed=4, movers=True,
               frame_labels=True)
    return r


def _build(root, out, **kw):
    kw.setdefault("labels_root", root / "labels_sequence")
    return build_maps(root, out, split="val", workers=1, progress=False, visualize_every=0,
                      sequences=True, annotated=False, outputs="maps", **kw)


def _imp(out, t):
    return np.load(out / f"val/lindau/lindau_000000_{t:06d}_importance.npz")["importance"]


def test_label_every_manifest_params_and_roi(mroot, tmp_path):
    """--label-every 10: frames 9, 19, 29 use their files, the others are propagated from the
    labelled frames around them (manifest label_sources / label_source_steps), params.json
    records it; the cars frame 19 does not show are in the ROI. Measured share of a car's pixels
    in the encoder's ROI (importance above the QP floor: they get an offset) on the frames it
    shows >= 50 pixels: with labels on 9/19/29 0.71..1.0 (lowest at frame 11, two steps from
    frame 9 towards 19), mostly >= 0.9; at full importance (>= 0.5, not the margin's quarter)
    0.47 at least (frame 0, nine steps back from 9); with frame 19's alone (K=30) 0.0 on every
    frame of the entering car at importance >= 0.5 (the leaving car: 0.67 at frame 0 falling to
    0 by frame 7, covered there by other objects smeared back from 19)."""
    frames = sequence_frames(width=W, height=H, seed=4, movers=True)
    rep = _build(mroot, tmp_path / "k10", label_every=10)
    man = rep.manifest.set_index("frame_id")
    assert (man["status"] == "ok").all(), man["reason"].tolist()
    own = [f"lindau_000000_{i:06d}" for i in (9, 19, 29)]
    assert (man.loc[own, "label_source"] == "labels-root").all()
    assert (man.loc[own, "label_steps"].astype(int) == 0).all()
    assert (man.loc[own, "label_sources"] == pd.Index(own)).all()
    gaps = man.drop(index=own)
    assert (gaps["label_source"] == "propagate:labels-root").all()
    assert man.loc["lindau_000000_000012", "label_sources"] == ";".join(own[:2])
    assert man.loc["lindau_000000_000012", "label_source_steps"] == "3;-7"
    assert int(man.loc["lindau_000000_000012", "label_steps"]) == 3
    assert man.loc["lindau_000000_000003", "label_sources"] == ";".join(own[:2])
    assert man.loc["lindau_000000_000003", "label_source_steps"] == "-6;-16"
    # the written manifest has the columns too
    disk = pd.read_csv(tmp_path / "k10/maps_manifest.csv")
    assert {"label_sources", "label_source_steps"} <= set(disk.columns)
    params = json.loads((tmp_path / "k10/params.json").read_text())
    assert params["labels"]["label_every"] == 10
    assert params["labels"]["labels_kind"] == "labelIds"
    assert params["labels"]["propagation"] == PropagationParams().as_dict()
    alone = _build(mroot, tmp_path / "k30", label_every=30)
    assert (alone.manifest["label_sources"] == "lindau_000000_000019").all()
    for iid in MOVER_IDS:
        for t, f in enumerate(frames):
            truth = f["inst"] == iid
            if truth.sum() < 50:          # a sliver at the edge
                continue
            imp = _imp(tmp_path / "k10", t)[truth]
            share = (imp > QPParams().floor).mean()
            assert share >= 0.65, (iid, t, share)
            assert (imp >= 0.5).mean() >= 0.4, (iid, t)
            if iid == MOVER_IDS[0]:
                assert (_imp(tmp_path / "k30", t)[truth] >= 0.5).mean() <= 0.05, (iid, t)


def test_labels_folder_with_gaps_and_trainids(mroot, tmp_path):
    """A labels folder with files for frames 5, 12 and 19 only, as trainIds: every frame is built,
    frames 0..4 from frames 5 and 12 (the two nearest), 6..11 from 5 and 12, 20..29 from 19 and
    12; labelled frames give the same maps as the labelIds files."""
    import shutil

    from cityscapesscripts.helpers.labels import id2label

    to_train = np.full(256, 255, np.uint8)
    for lid, lab in id2label.items():
        if 0 <= lid < 256 and 0 <= lab.trainId < 255:
            to_train[lid] = lab.trainId
    src = mroot / "labels_sequence/val/lindau"
    train = tmp_path / "train/val/lindau"
    ids = tmp_path / "ids/val/lindau"
    train.mkdir(parents=True)
    ids.mkdir(parents=True)
    from roienc.dataset import read_label_ids
    from roienc.fileio import write_png
    for t in (5, 12, 19):
        fid = f"lindau_000000_{t:06d}"
        write_png(train / f"{fid}_labelIds.png", to_train[read_label_ids(src / f"{fid}_labelIds.png")])
        for d in (train, ids):
            shutil.copy(src / f"{fid}_instanceIds.png", d)
        shutil.copy(src / f"{fid}_labelIds.png", ids)
    a = _build(mroot, tmp_path / "a", labels_root=tmp_path / "train", labels_kind="trainIds",
               speed_override=8.0)
    _build(mroot, tmp_path / "b", labels_root=tmp_path / "ids", speed_override=8.0)
    man = a.manifest.set_index("frame_id")
    assert (man["status"] == "ok").all(), man["reason"].tolist()
    srcs = man["label_sources"].str.replace("lindau_000000_", "")
    assert (srcs.iloc[0:5] == "000005;000012").all()
    assert (srcs.iloc[6:12] == "000005;000012").all()
    assert (srcs.iloc[13:19] == "000012;000019").all()
    assert (srcs.iloc[20:] == "000012;000019").all()
    assert (srcs.iloc[[5, 12, 19]] == ["000005", "000012", "000019"]).all()
    assert json.loads((tmp_path / "a/params.json").read_text())["labels"]["labels_kind"] == "trainIds"
    for t in (5, 12, 19):
        # trainIds lose the classes that have none (e.g. 'ground', 'parking'): the dynamic ones
        # all have one, so the objects' importance is the same
        lab = read_label_ids(src / f"lindau_000000_{t:06d}_labelIds.png")
        dyn = (load_class_groups().group_lut() == DYNAMIC)[lab]
        assert dyn.any()
        assert np.array_equal(_imp(tmp_path / "a", t)[dyn], _imp(tmp_path / "b", t)[dyn])
    # labelIds read as trainIds: a skip naming the file and the fix
    bad = _build(mroot, tmp_path / "c", labels_root=tmp_path / "ids", labels_kind="trainIds",
                 speed_override=8.0).manifest.set_index("frame_id")
    r = bad.loc["lindau_000000_000005", "reason"]
    assert bad.loc["lindau_000000_000005", "status"] == "failed"
    assert "lindau_000000_000005_labelIds.png" in r and "--labels-kind labelIds" in r


def test_label_every_bad_input(mroot, tmp_path):
    with pytest.raises(InputError, match="--labels-root"):
        _build(mroot, tmp_path / "x", labels_root=None, label_every=5)
    with pytest.raises(InputError, match="--label-every must be an integer >= 1"):
        _build(mroot, tmp_path / "y", label_every=0)
    with pytest.raises(InputError, match="--labels-kind"):
        _build(mroot, tmp_path / "z", labels_kind="colors")


def test_cli_label_every(mroot, tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(__import__("pathlib").Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])}
    base = [sys.executable, "-m", "roienc.cli", "build-maps", "--cityscapes-root", str(mroot),
            "--split", "val", "--sequences", "--workers", "1", "--no-progress",
            "--labels-root", str(mroot / "labels_sequence")]
    r = subprocess.run(base + ["--out", str(tmp_path / "bad"), "--label-every", "0"],
                       capture_output=True, text=True, env=env)
    assert r.returncode != 0 and "--label-every must be an integer >= 1" in r.stderr
    assert "Traceback" not in r.stderr
    r = subprocess.run(base + ["--out", str(tmp_path / "ok"), "--label-every", "15",
                               "--outputs", "maps"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    params = json.loads((tmp_path / "ok/params.json").read_text())
    assert params["labels"]["label_every"] == 15
    man = pd.read_csv(tmp_path / "ok/maps_manifest.csv")
    man = man[man["source"] == "sequence"]
    assert sorted(man.loc[man["label_source"] == "labels-root", "frame_id"].str[-2:]) == ["04", "19"]


def test_flow_of_each_pair_is_computed_once(monkeypatch):
    """Whatever the labelled frames, each consecutive pair's two flows (both directions) are
    computed once per snippet: 2 * 29 for 30 frames (the disparity carried from frame 19 too)."""
    from roienc import propagate as P

    frames = sequence_frames(width=128, height=64, seed=2)
    lut = load_class_groups().group_lut()
    imgs = [f["rgb"] for f in frames]
    calls = []
    real = P._Flow.__call__

    def counted(self, a, b):
        calls.append(1)
        return real(self, a, b)
    monkeypatch.setattr(P._Flow, "__call__", counted)
    for keys in ((19,), (9, 19, 29), (4, 9, 14, 19, 24, 29), (4, 19), (0, 29)):
        calls.clear()
        kf = {k: (frames[k]["labels"], frames[k]["inst"].astype(np.int32)) for k in keys}
        out = P.propagate_keyframes(imgs, kf, None, lut, extra={"d": frames[19]["disp"]},
                                    extra_index=19)
        assert len(calls) == 2 * 29, keys
        assert all(f.extra["d"].shape == (64, 128) for f in out)


def test_objects_carry_their_labelled_frames_distance(tmp_path):
    """Without per-frame disparity, an object propagated from a labelled frame keeps the median
    distance it had there (the annotated disparity warped to that frame): the same value on the
    frames next to it, and the object ids of different labelled frames never clash."""
    import shutil

    from roienc.synth import synthesize

    root = tmp_path / "root"
    synthesize(root, split="val", cities=("lindau",), width=256, height=128, seed=4,
               frame_labels=True)
    shutil.rmtree(root / "disparity_sequence")
    rep = _build(root, tmp_path / "m", label_every=10, speed_override=8.0)
    man = rep.manifest.set_index("frame_id")
    assert (man["status"] == "ok").all(), man["reason"].tolist()
    gaps = man["label_source"] == "propagate:labels-root"
    assert (man.loc[gaps, "distance_source"] == "carried from the labelled frames").all()
    assert man.loc["lindau_000000_000009", "distance_source"] == "warped from lindau_000000_000019"
    o9 = pd.read_csv(tmp_path / "m/val/lindau/lindau_000000_000009_objects.csv")
    o8 = pd.read_csv(tmp_path / "m/val/lindau/lindau_000000_000008_objects.csv")
    d8 = o8.set_index(o8["object_id"].astype(str))["distance_m"].dropna()
    # frame 8's objects come from frames 9 and 19 with ids of their own; each has a distance
    # equal to one of frame 9's or 19's objects' distances
    o19 = pd.read_csv(tmp_path / "m/val/lindau/lindau_000000_000019_objects.csv")
    known = np.concatenate([o9["distance_m"].dropna(), o19["distance_m"].dropna()])
    assert len(d8) >= 3
    for v in d8:
        assert np.isclose(known, v, rtol=0.02).any(), (v, known)
    assert d8.index.is_unique


@pytest.mark.encode
@pytest.mark.slow
def test_sweep_label_every_names_its_maps(tmp_path):
    """sweep --label-every K: the maps of the encoder are built from every K-th file (params.json,
    sweep.json's map_options, a maps folder of its own), the judge maps from every file."""
    from roienc.cli import main as cli
    from roienc.synth import synthesize

    root = tmp_path / "root"
    synthesize(root, width=192, height=96, seed=1, frame_labels=True)
    run = tmp_path / "run"
    labels = root / "labels_sequence"
    common = ["sweep", "--cityscapes-root", str(root), "--split", "val", "--modes",
              "baseline,roi", "--crf", "22,27,32,37", "--preset", "veryfast", "--out", str(run),
              "--no-progress", "--workers", "1", "--block-size", "16", "--no-settings-reference",
              "--labels-root", str(labels), "--judge-labels-root", str(labels)]
    assert cli(common) == 0
    assert cli(common + ["--label-every", "10"]) == 0
    dirs = sorted((run / "maps").iterdir())
    assert len(dirs) == 2
    every = {json.loads((d / "params.json").read_text())["labels"]["label_every"]: d for d in dirs}
    assert sorted(every) == [1, 10]
    man = pd.read_csv(every[10] / "maps_manifest.csv")
    seq = man[man["source"] == "sequence"]
    assert (seq["label_source"] == "labels-root").sum() == 3
    assert json.loads((run / "sweep.json").read_text())["map_options"]["label_every"] == 10
    assert len(list((run / "judge_maps").iterdir())) == 1


def test_hold_takes_the_nearest_labelled_frame(mroot, tmp_path):
    rep = _build(mroot, tmp_path / "h", label_every=10, label_source="hold")
    man = rep.manifest.set_index("frame_id")
    assert (man["status"] == "ok").all(), man["reason"].tolist()
    assert man.loc["lindau_000000_000012", "label_source"] == "hold:labels-root"
    assert man.loc["lindau_000000_000012", "label_sources"] == "lindau_000000_000009"
    assert man.loc["lindau_000000_000014", "label_sources"] == "lindau_000000_000009"  # tie: earlier
    assert man.loc["lindau_000000_000015", "label_sources"] == "lindau_000000_000019"
    assert int(man.loc["lindau_000000_000015", "label_steps"]) == -4
    assert json.loads((tmp_path / "h/params.json").read_text())["labels"]["propagation"] is None


def test_a_labels_file_of_the_wrong_size_is_named(mroot, tmp_path):
    import shutil

    from roienc.fileio import write_png

    src = mroot / "labels_sequence/val/lindau"
    dst = tmp_path / "lab/val/lindau"
    dst.mkdir(parents=True)
    for t in (9, 19, 29):
        shutil.copy(src / f"lindau_000000_{t:06d}_labelIds.png", dst)
    write_png(dst / "lindau_000000_000029_labelIds.png", np.zeros((H // 2, W // 2), np.uint8))
    man = _build(mroot, tmp_path / "m", labels_root=tmp_path / "lab").manifest.set_index("frame_id")
    r = man.loc["lindau_000000_000012", "reason"]
    assert man.loc["lindau_000000_000012", "status"] == "failed"
    assert "lindau_000000_000029_labelIds.png" in r and f"{W}x{H}" in r and "frame's size" in r
    assert "Traceback" not in r and "shape" not in r
