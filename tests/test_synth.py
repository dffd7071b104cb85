"""The synthesizer writes a complete, deterministic Cityscapes layout with known depths."""
import hashlib
import json

import numpy as np
import pytest
from cityscapesscripts.helpers.labels import id2label
from PIL import Image

from roienc.cli import main as cli
from roienc.errors import InputError
from roienc.synth import synthesize


def digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("s")
    return root, synthesize(root, cities=("lindau",), width=160, height=96, seed=1)


def test_layout_is_complete(synth):
    root, info = synth
    for f in info.frames:
        c = f"val/{f.city}/{f.frame_id}"
        if f.source == "frames":
            for rel in (f"leftImg8bit/{c}_leftImg8bit.png", f"gtFine/{c}_gtFine_labelIds.png",
                        f"gtFine/{c}_gtFine_instanceIds.png", f"gtFine/{c}_gtFine_polygons.json",
                        f"gtFine/{c}_gtFine_color.png", f"disparity/{c}_disparity.png",
                        f"camera/{c}_camera.json", f"vehicle/{c}_vehicle.json"):
                assert (root / rel).is_file(), rel
        else:
            for rel in (f"leftImg8bit_sequence/{c}_leftImg8bit.png",
                        f"disparity_sequence/{c}_disparity.png", f"vehicle_sequence/{c}_vehicle.json"):
                assert (root / rel).is_file(), rel
    seq = [f.frame_id for f in info.frames if f.source == "sequence"]
    assert seq == [f"lindau_000000_{i:06d}" for i in range(30)]


def test_modes_dtypes_and_label_ids(synth):
    root, info = synth
    c = "val/lindau/lindau_000000_000019"
    lab = Image.open(root / f"gtFine/{c}_gtFine_labelIds.png")
    inst = Image.open(root / f"gtFine/{c}_gtFine_instanceIds.png")
    disp = Image.open(root / f"disparity/{c}_disparity.png")
    rgb = Image.open(root / f"leftImg8bit/{c}_leftImg8bit.png")
    assert (lab.mode, inst.mode, disp.mode, rgb.mode) == ("L", "I;16", "I;16", "RGB")
    assert lab.size == inst.size == disp.size == rgb.size == (160, 96)
    ids = np.unique(np.asarray(lab))
    assert all(int(i) in id2label for i in ids)
    insts = np.unique(np.asarray(inst))
    assert any(i >= 1000 for i in insts)
    poly = json.loads((root / f"gtFine/{c}_gtFine_polygons.json").read_text())
    assert poly["imgWidth"] == 160 and poly["imgHeight"] == 96 and poly["objects"]
    cam = json.loads((root / f"camera/{c}_camera.json").read_text())
    assert cam["intrinsic"]["fx"] > 0 and cam["extrinsic"]["baseline"] > 0


def test_disparity_encodes_recorded_depths(synth):
    root, info = synth
    f = next(f for f in info.frames if f.source == "frames")
    disp = np.asarray(Image.open(root / f"disparity/val/lindau/{f.frame_id}_disparity.png"))
    depths = []
    for o in f.objects:
        x0, y0, x1, y1 = o.bbox
        patch = disp[y0:y1, x0:x1]
        assert (patch == o.disparity_raw).mean() > 0.5, o   # visible (nearer objects may occlude)
        if o.disparity_raw:
            z = f.fx * f.baseline / ((o.disparity_raw - 1) / 256.0)
            assert z == pytest.approx(o.depth_m, rel=0.01)
            depths.append(o.depth_m)
    assert min(depths) < 15 and max(depths) > 60          # near and far objects
    assert any(o.disparity_raw == 0 for o in f.objects)   # one object of unknown distance


def test_sequences_show_motion_and_match_annotated(synth):
    root, info = synth
    seq = [f for f in info.frames if f.source == "sequence"]
    cars = [next(o for o in f.objects if o.instance_id == 26000) for f in seq]
    assert all(a.depth_m > b.depth_m for a, b in zip(cars, cars[1:]))   # approaching
    a = root / "leftImg8bit/val/lindau/lindau_000000_000019_leftImg8bit.png"
    s = root / "leftImg8bit_sequence/val/lindau/lindau_000000_000019_leftImg8bit.png"
    assert a.read_bytes() == s.read_bytes()
    f0 = np.asarray(Image.open(root / "leftImg8bit_sequence/val/lindau/lindau_000000_000000_leftImg8bit.png"))
    f1 = np.asarray(Image.open(root / "leftImg8bit_sequence/val/lindau/lindau_000000_000001_leftImg8bit.png"))
    assert np.abs(f0.astype(int) - f1).mean() > 1.0                     # textures move


def test_deterministic_and_odd_sizes(tmp_path):
    synthesize(tmp_path / "a", width=90, height=50, seed=4, with_sequences=False)
    synthesize(tmp_path / "b", width=90, height=50, seed=4, with_sequences=False)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    with pytest.raises(InputError):
        synthesize(tmp_path / "c", width=8, height=8)


def test_cli(tmp_path, capsys):
    assert cli(["synth", "--out", str(tmp_path), "--cities", "ulm,bonn", "--width", "64",
                "--height", "48", "--no-sequences"]) == 0
    assert "2 annotated frames" in capsys.readouterr().out
    assert (tmp_path / "leftImg8bit/val/bonn/bonn_000000_000019_leftImg8bit.png").is_file()
    assert (tmp_path / "synth_truth.json").is_file()


def test_object_texture_moves_and_scales_with_the_object():
    from roienc.synth import ANNOTATED, sequence_frames
    import cv2
    fr = sequence_frames(width=384, height=192)
    a, b = fr[ANNOTATED - 5], fr[ANNOTATED]
    oa = next(o for o in a["objects"] if o.instance_id == 26000)     # the near car, approaching
    ob = next(o for o in b["objects"] if o.instance_id == 26000)
    (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = oa.bbox, ob.bbox
    assert (bx1 - bx0) > (ax1 - ax0) and (ax0, ay0) != (bx0, by0)    # it moved and grew
    ga = cv2.cvtColor(a["rgb"], cv2.COLOR_RGB2GRAY)[ay0:ay1, ax0:ax1].astype(np.float32)
    gb = cv2.cvtColor(b["rgb"], cv2.COLOR_RGB2GRAY)[by0:by1, bx0:bx1].astype(np.float32)
    same = cv2.resize(gb, (ax1 - ax0, ay1 - ay0), interpolation=cv2.INTER_AREA)
    fixed = cv2.cvtColor(b["rgb"], cv2.COLOR_RGB2GRAY)[ay0:ay1, ax0:ax1].astype(np.float32)
    corr = np.corrcoef(ga.ravel(), same.ravel())[0, 1]
    assert corr > 0.8, corr                     # the texture went along with the object
    assert np.std(ga) > 10                      # and is visible in luminance
    assert corr > np.corrcoef(ga.ravel(), fixed.ravel())[0, 1] + 0.2


def test_sequence_frames_deterministic():
    from roienc.synth import sequence_frames
    a, b = sequence_frames(width=64, height=48, seed=3), sequence_frames(width=64, height=48, seed=3)
    assert all(np.array_equal(x["rgb"], y["rgb"]) and np.array_equal(x["labels"], y["labels"])
               for x, y in zip(a, b))
