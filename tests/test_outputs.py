"""build-maps image outputs: the PNG writer, paletted renderings, the cv2 annotation, --outputs."""
from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from roienc.errors import InputError
from roienc.fileio import encode_jpeg, encode_png, write_npy
from roienc.maps import (QPParams, IMAGE_OUTPUTS, MAP_KEYS, build_maps, derive_maps, existing_outputs,
                         load_near_mask, output_paths, parse_outputs)
from roienc.qpmap import _qp_colours, render_qp_vis, render_qp_vis_indexed
from roienc.vis import (BLUE, RED, colormap_lut, distance_annotation, importance_to_uint8, importance_vis,
                        object_outlines)

ALWAYS = ["_importance.npz", "_objects.csv", "_near_mask.png", "_qp_map.npy", "_qp_map.csv"]
if QPParams().rate_mode:            # the default mapping's rate budget: its input and its choice
    ALWAYS += ["_activity.npy", "_rate.json"]
IMAGES = ["_importance.png", "_importance_vis.png", "_qp_map_vis.png", "_distance_annotation.jpg"]


def _decode(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


@pytest.mark.parametrize("shape", [(37, 53), (37, 53, 3), (5, 7, 4), (1, 1), (1, 9, 3)])
def test_encode_png_round_trip(shape):
    a = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    assert np.array_equal(np.asarray(_decode(encode_png(a))), a)


def test_encode_png_palette_and_16_bit():
    rng = np.random.default_rng(1)
    pal = rng.integers(0, 256, (256, 3), dtype=np.uint8)
    idx = rng.integers(0, 256, (40, 30), dtype=np.uint8)
    im = _decode(encode_png(idx, palette=pal))
    assert im.mode == "P" and np.array_equal(np.asarray(im.convert("RGB")), pal[idx])
    d16 = rng.integers(0, 65536, (9, 11), dtype=np.uint16)        # through Pillow, as before
    assert np.array_equal(np.asarray(_decode(encode_png(d16))), d16)
    with pytest.raises(ValueError):
        encode_png(np.full((2, 2), 5, np.uint8), palette=pal[:3])   # index outside the palette
    for shape in [(1, 1), (3, 8), (7, 9), (40, 30)]:                # bool: 1-bit gray
        m = rng.random(shape) > 0.5
        im = _decode(encode_png(m))
        assert im.mode == "1" and np.array_equal(np.asarray(im), m)
        assert np.array_equal(np.asarray(im.convert("L")), m * 255)


def test_object_outlines_match_skimage():
    from skimage.segmentation import find_boundaries

    rng = np.random.default_rng(2)
    for _ in range(10):
        om = np.zeros((90, 130), np.int32)
        for k in range(1, 12):
            y, x = rng.integers(0, 90), rng.integers(0, 130)
            om[y:y + rng.integers(1, 40), x:x + rng.integers(1, 50)] = k
        inner = find_boundaries(om, mode="inner") & (om > 0)
        thick = inner | (find_boundaries(np.where(inner, 0, om), mode="inner") & (om > 0))
        assert np.array_equal(object_outlines(om), inner)
        assert np.array_equal(object_outlines(om, thick=True), thick)
        # ids past uint8 (k and k + 256 side by side must not merge) and past uint16
        for offset in (250, 65530):
            big = np.where(om > 0, om + offset, 0)
            big[big == 1 + offset] = 1 + offset + 256
            assert np.array_equal(object_outlines(big), find_boundaries(big, mode="inner") & (big > 0))


def test_qp_vis_indexed_decodes_to_rgb_and_qp_colours():
    q = np.random.default_rng(3).integers(27, 38, (64, 128))
    idx, pal = render_qp_vis_indexed(q, 32, 3)
    rgb = render_qp_vis(q, 32, 3)
    assert np.array_equal(pal[idx], rgb)
    assert np.array_equal(np.asarray(_decode(encode_png(idx, palette=pal)).convert("RGB")), rgb)
    colours = _qp_colours(32, 3)
    s = 512 // 64
    grid = rgb[::s, :128 * s:s]                              # one pixel per block
    assert np.array_equal(grid, colours[np.clip(q - 29, 0, 6)])


@pytest.mark.parametrize("delta", [1, 3, 6, 9, 12])
def test_qp_vis_is_paletted_at_every_delta(delta):
    """The colour bar's anti-aliased colours are fitted beside the QP colours into 256, so the
    QP picture is paletted at the default --delta 6 too (its bar alone had 279 colours)."""
    q = np.random.default_rng(delta).integers(32 - delta, 33 + delta, (32, 64))
    got = render_qp_vis_indexed(q, 32, delta)
    assert got is not None and len(got[1]) <= 256
    assert np.array_equal(got[1][got[0]], render_qp_vis(q, 32, delta))


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from roienc.synth import synthesize

    root = tmp_path_factory.mktemp("cs")
    synthesize(root, split="val", cities=("lindau",), sequences_per_city=2, width=256,
               height=128, with_sequences=False)
    return root


def _files(out):
    return sorted(p.name.split("_000019")[1] for p in (out / "val" / "lindau").iterdir())


def test_all_outputs_decode_to_the_colours(synth, tmp_path):
    out = tmp_path / "all"
    rep = build_maps(synth, out, split="val", workers=1, progress=False, visualize_every=1)
    assert (rep.manifest["status"] == "ok").all(), rep.manifest["reason"].tolist()
    for fid in rep.manifest["frame_id"]:
        p = out / "val" / "lindau" / fid
        imp = np.load(f"{p}_importance.npz")["importance"]
        u8 = np.asarray(Image.open(f"{p}_importance.png"))
        assert np.array_equal(u8, np.rint(imp * 255).astype(np.uint8))
        vis = Image.open(f"{p}_importance_vis.png")
        assert vis.mode == "P"
        assert np.array_equal(np.asarray(vis.convert("RGB")), importance_vis(u8))
        assert np.array_equal(np.asarray(vis.getpalette(), np.uint8).reshape(-1, 3)[:256],
                              colormap_lut("hot"))
        qp = np.load(f"{p}_qp_map.npy")
        qvis = Image.open(f"{p}_qp_map_vis.png")
        d = QPParams()
        assert qvis.mode in ("P", "RGB")   # paletted while levels and colour bar fit 256 colours
        assert qvis.mode == "P"            # they do at the default delta
        assert np.array_equal(np.asarray(qvis.convert("RGB")),
                              render_qp_vis(qp, d.base_qp, max(d.delta, d.background)))
        near = Image.open(f"{p}_near_mask.png")             # 1-bit: white on near objects
        objs = pd.read_csv(f"{p}_objects.csv")
        assert near.mode == "1" and near.size == (256, 128)
        assert np.asarray(near).sum() == objs.loc[objs["inside_safe"], "pixels"].sum()
        assert np.array_equal(load_near_mask(out, "val", "lindau", fid), np.asarray(near))
        assert set(np.unique(np.asarray(near.convert("L")))) <= {0, 255}
        ann = np.asarray(Image.open(f"{p}_distance_annotation.jpg").convert("RGB"))
        assert ann.shape[1] == 256 and ann.shape[0] > 128
    params = json.loads((out / "params.json").read_text())
    assert params["outputs"] == list(IMAGE_OUTPUTS)
    assert "outputs" not in MAP_KEYS


def test_distance_annotation_outlines_and_picture():
    import pandas as pd

    img = np.random.default_rng(4).integers(0, 256, (100, 160, 3), dtype=np.uint8)
    om = np.zeros((100, 160), np.int32)
    om[10:40, 10:60] = 1
    om[50:90, 80:150] = 2
    objs = pd.DataFrame({"object_id": ["1", "2"], "label": ["car", "person"], "pixels": [10, 2800],
                         "valid_pixels": [10, 2800], "distance_m": [4.0, np.nan],
                         "importance": [1.0, 1.0], "inside_safe": [True, False],
                         "x0": [10, 80], "y0": [10, 50], "x1": [59, 149], "y1": [39, 89]})
    rgb = distance_annotation(img, om, objs, 12.0, 10.0, title="t")
    bgr = distance_annotation(np.ascontiguousarray(img[:, :, ::-1]), om, objs, 12.0, 10.0,
                              title="t", bgr=True)
    assert np.array_equal(rgb, bgr)
    bar = rgb.shape[0] - 100
    pic = rgb[bar:]
    edges = object_outlines(om)
    assert (pic[edges & (om == 1)] == RED).all()
    assert (pic[:45, :][edges[:45] & (om[:45] == 1)] == RED).all()
    assert (pic[edges & (om == 2)][:, 2] == BLUE[2]).mean() > 0.5    # label text overlaps some
    assert np.array_equal(pic[95:, :], img[95:, :])       # untouched rows are the picture
    # drawn in BGR (what cv2 encodes) from either order: the same picture, channels reversed
    for src, is_bgr in ((img, False), (np.ascontiguousarray(img[:, :, ::-1]), True)):
        out = distance_annotation(src, om, objs, 12.0, 10.0, title="t", bgr=is_bgr, bgr_out=True)
        assert np.array_equal(out, rgb[:, :, ::-1])


def test_parse_outputs():
    assert parse_outputs(None) == parse_outputs("all") == IMAGE_OUTPUTS
    assert parse_outputs("maps") == ()
    assert parse_outputs("qp_map_vis,importance_vis") == ("importance_vis", "qp_map_vis")
    with pytest.raises(InputError, match="near mask"):
        parse_outputs("near_mask")


def test_outputs_maps_and_skip_existing_follow_the_choice(synth, tmp_path):
    out = tmp_path / "m"
    rep = build_maps(synth, out, split="val", workers=1, progress=False, outputs="maps",
                     visualize_every=1)
    assert (rep.manifest["status"] == "ok").all()
    assert set(_files(out)) == set(ALWAYS)
    assert json.loads((out / "params.json").read_text())["outputs"] == []
    prefix = out / "val" / "lindau" / rep.manifest["frame_id"].iloc[0]
    b = QPParams().block_size
    assert existing_outputs(output_paths(prefix, True, ()), b) is not None
    assert existing_outputs(output_paths(prefix, True, IMAGE_OUTPUTS), b) is None
    # the same folder with every image: accepted (not a map setting), images added
    rep = build_maps(synth, out, split="val", workers=1, progress=False, skip_existing=True,
                     outputs="importance_vis,distance_annotation", visualize_every=1)
    assert (rep.manifest["reason"] != "existing output kept").all()
    assert set(_files(out)) == set(ALWAYS) | {"_importance_vis.png", "_distance_annotation.jpg"}
    # and back to maps only: every frame is complete, kept
    rep = build_maps(synth, out, split="val", workers=1, progress=False, skip_existing=True,
                     outputs="maps")
    assert (rep.manifest["reason"] == "existing output kept").all()


def test_cli_outputs(synth, tmp_path):
    from roienc.cli import main

    out = tmp_path / "cli"
    assert main(["build-maps", "--cityscapes-root", str(synth), "--out", str(out), "--workers", "1",
                 "--no-progress", "--outputs", "qp_map_vis"]) == 0
    assert set(_files(out)) == set(ALWAYS) | {"_qp_map_vis.png"}


def _psnr(a, b):
    err = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0 ** 2 / max(err, 1e-12))


def test_encode_jpeg_and_write_npy(tmp_path):
    rng = np.random.default_rng(5)
    smooth = np.repeat(np.repeat(rng.integers(0, 256, (12, 20, 3), dtype=np.uint8), 8, 0), 8, 1)
    rgb = np.asarray(_decode(encode_jpeg(smooth)))
    assert rgb.shape == smooth.shape and _psnr(rgb, smooth) > 35
    bgr = np.asarray(_decode(encode_jpeg(np.ascontiguousarray(smooth[:, :, ::-1]), bgr=True)))
    assert np.array_equal(bgr, rgb)                       # same bytes whichever order came in
    with pytest.raises(ValueError):
        encode_jpeg(np.zeros((4, 4), np.uint16))
    for a in (rng.random((31, 17)).astype(np.float32), np.asfortranarray(rng.random((5, 9))),
              rng.integers(0, 50, (3, 4)).astype(np.int8)):
        write_npy(tmp_path / "a.npy", a)
        b = np.load(tmp_path / "a.npy")
        assert b.dtype == a.dtype and np.array_equal(b, a)
    assert [p.name for p in tmp_path.iterdir()] == ["a.npy"]     # no temporary left


def test_annotation_is_a_jpeg_of_the_drawing(synth, tmp_path):
    """The JPEG decodes to the cv2 drawing within JPEG loss; the outlines keep their colour
    (4:4:4 chroma); a truncated JPEG is rebuilt by --skip-existing; an older version's PNG
    annotation of the frame is replaced; derive-maps links the JPEG."""
    from roienc.dataset import find_annotated_frames, read_camera, read_disparity_raw, read_instance_ids, read_label_ids, read_rgb
    from roienc.importance import compute_importance
    from roienc.labels import load_class_groups

    out = tmp_path / "a"
    ref = find_annotated_frames(synth, "val", None)[0]
    p = out / "val" / "lindau" / ref.frame_id
    p.parent.mkdir(parents=True)
    legacy = p.with_name(p.name + "_distance_annotation.png")
    legacy.write_bytes(b"old")
    rep = build_maps(synth, out, split="val", workers=1, progress=False, visualize_every=1)
    assert (rep.manifest["status"] == "ok").all()
    assert not legacy.exists()
    fx, b = read_camera(ref.camera)
    fi = compute_importance(read_label_ids(ref.labels), read_instance_ids(ref.instances),
                            read_disparity_raw(ref.disparity), fx, b, 10.0, load_class_groups(None))
    row = rep.manifest.set_index("frame_id").loc[ref.frame_id]
    want = distance_annotation(read_rgb(ref.image), fi.object_map, fi.objects, fi.d_safe,
                               row["speed_mps"], title=ref.frame_id)
    jpg = p.with_name(p.name + "_distance_annotation.jpg")
    got = np.asarray(Image.open(jpg).convert("RGB"))
    assert got.shape == want.shape and _psnr(got, want) > 30
    red = (want == RED).all(axis=2)
    assert red.any() and np.abs(got[red].astype(int) - RED).mean() < 40
    # --skip-existing: a truncated JPEG is not a finished output
    paths = output_paths(p, True)
    assert existing_outputs(paths, QPParams().block_size) is not None
    data = jpg.read_bytes()
    jpg.write_bytes(data[: len(data) // 2])
    assert existing_outputs(paths, QPParams().block_size) is None
    rep = build_maps(synth, out, split="val", workers=1, progress=False, visualize_every=1,
                     skip_existing=True)
    kept = rep.manifest.set_index("frame_id")["reason"] == "existing output kept"
    assert not kept[ref.frame_id] and kept.drop(ref.frame_id).all()
    assert jpg.read_bytes()[-2:] == b"\xff\xd9"
    d = derive_maps(out, tmp_path / "d", QPParams(delta=4))
    assert (d.manifest["status"] == "ok").all()
    assert (tmp_path / "d" / "val" / "lindau" / jpg.name).samefile(jpg)


@pytest.mark.parametrize("threaded", [False, True])
def test_annotation_errors_fail_the_frame_after_both_writers(synth, tmp_path, monkeypatch, threaded):
    import threading

    import roienc.maps as maps

    def build(out):
        return build_maps(synth, out, split="val", workers=1, progress=False, visualize_every=1,
                          annotation_thread=threaded)

    def broken(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(maps, "write_jpeg", broken)
    rep = build(tmp_path / "j")
    assert (rep.manifest["status"] == "failed").all()
    assert rep.manifest["reason"].str.contains("disk full").all()
    monkeypatch.undo()
    # the map writers fail: their error; on a thread the annotation runs beside them and has
    # finished when the row is returned, without one it is not started
    started = []
    real = maps.write_annotation

    def slow_annotation(*a, **k):
        started.append(1)
        return real(*a, **k)

    def broken_maps(*a, **k):
        raise OSError("maps broke")
    monkeypatch.setattr(maps, "write_annotation", slow_annotation)
    monkeypatch.setattr(maps, "_write_map_outputs", broken_maps)
    out = tmp_path / "m"
    rep = build(out)
    assert (rep.manifest["status"] == "failed").all()
    assert rep.manifest["reason"].str.contains("maps broke").all()
    assert len(started) == (len(rep.manifest) if threaded else 0)
    assert len(list(out.rglob("*_distance_annotation.jpg"))) == len(started)
    assert not [f for f in out.rglob("*") if ".tmp" in f.name]
    monkeypatch.undo()
    # the importance fails (while the picture is decoded): no annotation, no thread left running
    def broken_importance(*a, **k):
        raise ValueError("importance broke")
    monkeypatch.setattr(maps, "compute_importance", broken_importance)
    before = threading.active_count()
    out = tmp_path / "i"
    rep = build(out)
    assert (rep.manifest["status"] == "failed").all()
    assert rep.manifest["reason"].str.contains("importance broke").all()
    assert not list(out.rglob("*_distance_annotation.*"))
    assert threading.active_count() == before
    monkeypatch.undo()
    # and when nothing fails, the thread writes the very same files
    a, b = tmp_path / "a", tmp_path / "b"
    build_maps(synth, a, split="val", workers=1, progress=False, visualize_every=1)
    build_maps(synth, b, split="val", workers=1, progress=False, visualize_every=1,
               annotation_thread=True)
    files = sorted(f.relative_to(a) for f in a.rglob("*_*.*") if f.parent != a)
    assert files and files == sorted(f.relative_to(b) for f in b.rglob("*_*.*") if f.parent != b)
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)


def test_write_bytes_is_atomic_with_open_permissions(tmp_path):
    import os

    from roienc.fileio import write_bytes

    old = os.umask(0o027)
    try:
        write_bytes(tmp_path / "sub" / "a.png", b"abc")          # folder made on the way
    finally:
        os.umask(old)
    f = tmp_path / "sub" / "a.png"
    assert f.read_bytes() == b"abc" and (f.stat().st_mode & 0o777) == 0o640
    with pytest.raises(TypeError):
        write_bytes(tmp_path / "sub" / "b.png", object())         # fails after the temp exists
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["a.png"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="cannot create output folder"):
        write_bytes(tmp_path / "file" / "c.png", b"c")


def test_importance_to_uint8_rounds_like_numpy():
    steps = (np.arange(512, dtype=np.float32) + 0.5) / np.float32(255)    # every half-way point
    rng = np.random.default_rng(6)
    for imp in (np.concatenate([steps, [0, 1, 1e-9, 1 - 1e-7]]).astype(np.float32)[None],
                rng.random((64, 96)).astype(np.float32), rng.random((8, 9)),
                np.array([[-0.5, 0.2, 1.5, np.nan]], np.float32)):
        with np.errstate(invalid="ignore"):
            want = np.rint(np.clip(imp, 0.0, 1.0) * 255.0).astype(np.uint8)
            got = importance_to_uint8(imp)
        assert got.dtype == np.uint8 and np.array_equal(got[~np.isnan(imp)], want[~np.isnan(imp)])
