"""Label propagation (roienc.propagate) on synthetic sequences with known per-frame truth."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from roienc.errors import InputError
from roienc.labels import DYNAMIC, load_class_groups
from roienc.propagate import (PropagationParams, compute_flow, dilate_dynamic, propagate_snippet,
                              read_label_png, read_rgb, warp_nearest)
from roienc.synth import ANNOTATED, sequence_frames, synthesize

W, H, ANN, N = 384, 192, 19, 30
LUT = load_class_groups().group_lut()
IS_DYN = LUT == DYNAMIC
# the test frames are small (384x192): flow at full resolution (DIS medium works at 1/2 of it)
FLOW = dict(scale=1.0, preset="medium")
NO_MARGIN_KW = dict(margin_px=0, margin_growth_px=0.0, **FLOW)
NO_MARGIN = PropagationParams(**NO_MARGIN_KW)


@pytest.fixture(scope="module")
def moving(tmp_path_factory):
    """A 30-frame sequence built from a synthesized annotated frame: its static scene, plus its
    two nearest dynamic objects (the near car and the person, with their own pixels) cut out and
    moved rigidly at known speeds (px per frame), pasted back in every frame -> exact per-frame
    labels and instance ids. The objects' texture is kept, as luminance.

    (Rigid motion over a static background isolates the flow's error on the objects themselves;
    the synthesized sequences, whose objects' textures move and scale with them over a scrolling
    background, are tested below.)"""
    root = tmp_path_factory.mktemp("synth")
    synthesize(root, cities=("lindau",), width=W, height=H)
    stem = root / "gtFine/val/lindau/lindau_000000_000019_gtFine_"
    labels = read_label_png(f"{stem}labelIds.png")
    inst = read_label_png(f"{stem}instanceIds.png")
    rgb = read_rgb(root / "leftImg8bit_sequence/val/lindau/lindau_000000_000019_leftImg8bit.png")
    # background: dynamic pixels replaced by the road/sidewalk row just below them
    bg_rgb, bg_lab = rgb.copy(), labels.copy()
    bg_lab[IS_DYN[labels]] = 7                      # road
    bg_rgb[IS_DYN[labels]] = rgb[-20, W // 2]
    bg_inst = bg_lab.astype(np.int32)
    movers, rng = [], np.random.default_rng(0)
    for iid, v in ((26000, (-2, 1)), (24000, (-1, 0))):   # near car, person (never overlap)
        m = inst == iid
        assert m.sum() > 100, iid
        ys, xs = np.nonzero(m)
        # the synth's object texture is faint in luminance (a car is (0, 0, 142)); give the
        # objects a clear texture (4-px cells of random grey) that moves with them
        cells = rng.integers(30, 230, size=(H // 4 + 1, W // 4 + 1))
        pix = np.repeat(cells[ys // 4, xs // 4][:, None], 3, axis=1).astype(np.uint8)
        movers.append((ys, xs, pix, labels[m], iid, v))
    frames, truth_l, truth_i = [], [], []
    for t in range(N):
        f, lab, ins = bg_rgb.copy(), bg_lab.copy(), bg_inst.copy()
        for ys, xs, pix, lid, iid, (vx, vy) in movers:
            y, x = ys + vy * (t - ANN), xs + vx * (t - ANN)
            ok = (y >= 0) & (y < H) & (x >= 0) & (x < W)
            f[y[ok], x[ok]] = pix[ok]
            lab[y[ok], x[ok]] = lid[ok]
            ins[y[ok], x[ok]] = iid
        frames.append(f)
        truth_l.append(lab)
        truth_i.append(ins)
    return frames, truth_l, truth_i


def _iou(a, b):
    return (a & b).sum() / max(1, (a | b).sum())


def test_propagated_mask_matches_truth_every_frame(moving):
    frames, truth_l, truth_i = moving
    out = propagate_snippet(frames, ANN, truth_l[ANN], truth_i[ANN], NO_MARGIN, LUT)
    assert [o.steps for o in out] == list(range(-ANN, N - ANN))
    ious = [_iou(IS_DYN[o.labels], IS_DYN[truth_l[t]]) for t, o in enumerate(out)]
    hold = [_iou(IS_DYN[truth_l[ANN]], IS_DYN[truth_l[t]]) for t in range(N)]
    # measured (DIS medium, full res): IoU >= 0.95 one frame away, 0.87-0.90 two, ~0.39 at 19 frames: DIS
    # under-estimates the motion of these small objects by ~10% (smoothing with the static
    # background at their edges), which accumulates; the margin (next test) covers that.
    near = [iou for t, iou in enumerate(ious) if abs(t - ANN) <= 1]
    assert min(near) >= 0.9, np.round(ious, 2)
    assert min(ious) >= 0.35, np.round(ious, 2)
    assert all(ious[t] > hold[t] + 0.03 for t in range(N) if t != ANN), (np.round(ious, 2), np.round(hold, 2))
    for t, o in enumerate(out):
        for iid in (26000, 24000):       # each instance stays where its truth is
            assert (o.instances == iid).any() and (o.instances[truth_i[t] == iid] == iid).mean() > 0.3, (t, iid)
    assert min(hold) < 0.2            # the objects really move


def test_margin_covers_truth_and_keeps_ids(moving):
    frames, truth_l, truth_i = moving
    p = PropagationParams(**FLOW)
    out = propagate_snippet(lambda i: frames[i], ANN, truth_l[ANN], truth_i[ANN], p, LUT,
                            n_frames=N)
    ids19 = set(np.unique(truth_i[ANN]).tolist())
    for t, o in enumerate(out):
        assert o.labels.dtype == np.uint8 and o.instances.dtype == np.int32
        assert set(np.unique(o.instances).tolist()) <= ids19
        pred, ref = IS_DYN[o.labels], IS_DYN[truth_l[t]]
        assert (pred & ref).sum() >= 0.98 * ref.sum()          # margin: (almost) nothing missed
        assert o.margin_px == p.margin_at(t - ANN, o.labels.shape[1])
        # ring pixels carry an instance id consistent with their label
        iid = o.instances[pred]
        assert np.all((iid // 1000 == o.labels[pred]) | (iid == o.labels[pred]))
    assert out[ANN].margin_px == 0 and np.array_equal(out[ANN].labels, truth_l[ANN])


def test_warp_nearest_keeps_dtype_and_values():
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 40000, size=(40, 60)).astype(np.int32)
    flow = rng.normal(0, 3, size=(40, 60, 2)).astype(np.float32)
    out = warp_nearest(arr, flow)
    assert out.dtype == np.int32 and out.shape == arr.shape
    assert set(np.unique(out)) <= set(np.unique(arr))
    lab = arr.astype(np.uint8)
    assert warp_nearest(lab, flow).dtype == np.uint8
    shift = np.zeros((40, 60, 2), np.float32)
    shift[..., 0] = 2.0
    assert np.array_equal(warp_nearest(lab, shift)[:, :-2], lab[:, 2:])
    with pytest.raises(InputError):
        warp_nearest(lab, shift[:10])


@pytest.mark.parametrize("scale", [0.5, 1.0])
def test_flow_recovers_integer_shift(moving, scale):
    img = moving[0][ANN]
    dx, dy = 5, -3
    nxt = np.roll(img, (dy, dx), axis=(0, 1))       # next[y, x] = prev[y - dy, x - dx]
    flow = compute_flow(img, nxt, PropagationParams(scale=scale, preset="medium"))
    assert flow.shape == (H, W, 2) and flow.dtype == np.float32
    inner = flow[20:-20, 20:-20].reshape(-1, 2)
    med = np.median(inner, axis=0)
    assert abs(med[0] + dx) < 0.5 and abs(med[1] + dy) < 0.5, med


def test_dilate_dynamic_nearest_instance():
    lab = np.zeros((50, 50), np.uint8)
    ins = np.zeros((50, 50), np.int32)
    lab[10:20, 10:20], ins[10:20, 10:20] = 26, 26001
    lab[10:20, 30:40], ins[10:20, 30:40] = 24, 24000
    l2, i2, added = dilate_dynamic(lab, ins, IS_DYN[lab], 4)
    assert added > 0 and l2[10, 23] == 26 and i2[10, 23] == 26001 and i2[10, 27] == 24000
    assert l2[30, 15] == 0 and lab[10, 23] == 0      # input untouched


@pytest.mark.parametrize("kw", [dict(scale=0), dict(scale=1.5), dict(preset="slow"),
                                dict(method="lk"), dict(mode="x"), dict(unreliable="drop"),
                                dict(fb_threshold=-1), dict(margin_px=-2), dict(margin_px=1.5),
                                dict(margin_px=10, margin_max_px=5), dict(fb_relative=float("nan"))])
def test_params_validation(kw):
    with pytest.raises(InputError):
        PropagationParams(**kw)


def test_params_as_dict_and_bad_inputs():
    d = PropagationParams().as_dict()
    assert d["scale"] == 0.25 and "margin_px" in d
    img = np.zeros((32, 32, 3), np.uint8)
    lab = np.zeros((32, 32), np.uint8)
    with pytest.raises(InputError):
        propagate_snippet([img, img], 5, lab, None, None, LUT)
    with pytest.raises(InputError):
        propagate_snippet(lambda i: img, 0, lab, None, None, LUT)
    out = propagate_snippet([img, img, img], 1, lab, None, None, LUT)
    assert [o.steps for o in out] == [-1, 0, 1] and out[0].instances is None


# ------------------------------------------------- synthesized sequences (synth's own truth)

SYNTH_FLOW = dict(scale=1.0, preset="medium")


@pytest.fixture(scope="module")
def synth_seq():
    """A synthesized snippet and its per-frame truth from synth's renderer (objects approach:
    they move and grow, their texture with them; the background texture scrolls)."""
    return sequence_frames(width=W, height=H)


def _synth_ious(frames, params):
    out = propagate_snippet([f["rgb"] for f in frames], ANNOTATED, frames[ANNOTATED]["labels"],
                            frames[ANNOTATED]["inst"].astype(np.int32), params, LUT)
    return [_iou(IS_DYN[o.labels], IS_DYN[frames[t]["labels"]]) for t, o in enumerate(out)]


def test_synth_sequence_propagation_near_frames(synth_seq):
    """Margin off, the propagated dynamic mask follows synth's per-frame truth. Measured (DIS
    medium, full resolution, 384x192): IoU 0.96/0.94 one frame away, 0.91/0.90 two, then it
    decays: 0.79 at +10 and 0.18 at -19 (see the xfail test below)."""
    ious = _synth_ious(synth_seq, PropagationParams(margin_px=0, margin_growth_px=0.0, **SYNTH_FLOW))
    assert ious[ANNOTATED] == 1.0
    assert min(ious[ANNOTATED - 1], ious[ANNOTATED + 1]) >= 0.93, np.round(ious, 2)
    assert min(ious[ANNOTATED - 2], ious[ANNOTATED + 2]) >= 0.88, np.round(ious, 2)
    hold = [_iou(IS_DYN[synth_seq[ANNOTATED]["labels"]], IS_DYN[f["labels"]]) for f in synth_seq]
    later = range(ANNOTATED + 1, len(synth_seq))
    assert all(ious[t] > hold[t] for t in later), (np.round(ious, 2), np.round(hold, 2))


@pytest.mark.xfail(strict=True, reason=(
    "goal not met: IoU >= 0.9 at every frame. Chained DIS flow smears objects at the "
    "boundaries where the background scrolls out from behind them (disocclusion: the "
    "background's flow there points into the object, and the forward-backward check does not "
    "flag it because DIS smooths both flows alike); going back to frame 0 the objects also "
    "shrink by ~40%. Measured IoU: 0.18 at -19, 0.49 at -8, 0.79 at +10. With "
    "object_motion='similarity' (objects moved whole) 0.55 at -19, 0.75 at -11, 0.93 at +10: "
    "the small far objects drift with the scrolling background around them."))
def test_synth_sequence_propagation_every_frame(synth_seq):
    ious = _synth_ious(synth_seq, PropagationParams(margin_px=0, margin_growth_px=0.0, **SYNTH_FLOW))
    assert min(ious) >= 0.9, np.round(ious, 2)


def test_synth_truth_helper_matches_written_files(tmp_path, synth_seq):
    synthesize(tmp_path, cities=("lindau",), width=W, height=H)
    stem = tmp_path / "gtFine/val/lindau/lindau_000000_000019_gtFine_"
    assert np.array_equal(read_label_png(f"{stem}labelIds.png"), synth_seq[ANNOTATED]["labels"])
    assert np.array_equal(read_label_png(f"{stem}instanceIds.png"),
                          synth_seq[ANNOTATED]["inst"].astype(np.int32))
    for t in (0, ANNOTATED, 29):
        rgb = read_rgb(tmp_path / f"leftImg8bit_sequence/val/lindau/lindau_000000_{t:06d}_leftImg8bit.png")
        assert np.array_equal(rgb, synth_seq[t]["rgb"])


def test_drop_dynamic_policy_and_void_index():
    rng = np.random.default_rng(1)
    img = (rng.random((40, 60, 3)) * 255).astype(np.uint8)
    lab = np.full((40, 60), 7, np.uint8)
    lab[10:20, 10:20] = 26
    ins = lab.astype(np.int32)
    ins[10:20, 10:20] = 26001
    out = propagate_snippet([img, np.roll(img, 3, axis=1)], 0, lab, ins,
                            PropagationParams(scale=1.0, unreliable="drop_dynamic", margin_px=0,
                                              margin_growth_px=0.0), LUT)
    o = out[1]
    assert set(np.unique(o.labels).tolist()) <= {0, 7, 26}
    assert np.all((o.instances == 0) == (o.labels == 0))


def test_not_annotated_border_does_not_spread():
    """gtFine's 'out of roi' frame around the image is "no annotation", not content: pixels whose
    flow points out of the view must not inherit it (border replicate) and carry it inward step
    by step. The camera pans 4 px a frame over a textured scene; frame 10's labels have a 6-px
    'out of roi' border and a car touching it."""
    rng = np.random.default_rng(3)
    big = cv2.GaussianBlur((rng.random((120, 400)) * 255).astype(np.uint8), (0, 0), 1.5)
    frames = [np.repeat(big[:, 4 * t:4 * t + 200, None], 3, axis=2) for t in range(14)]
    lab = np.full((120, 200), 7, np.uint8)
    lab[40:80, 0:50] = 26
    ins = lab.astype(np.int32)
    ins[40:80, 0:50] = 26001
    border = np.zeros(lab.shape, bool)
    border[:6], border[-6:], border[:, :6], border[:, -6:] = True, True, True, True
    lab[border], ins[border] = 3, 3
    kw = dict(scale=1.0, margin_px=0, margin_growth_px=0.0)
    filled = propagate_snippet(frames, 10, lab, ins, PropagationParams(**kw), LUT)
    plain = propagate_snippet(frames, 10, lab, ins, PropagationParams(fill_not_annotated=False, **kw), LUT)
    assert np.array_equal(filled[10].labels, lab)            # the annotated frame stays as given
    assert max((o.labels == 3).sum() for t, o in enumerate(filled) if t != 10) == 0
    # without the fill, the 40 columns that came into view by frame 0 take the border's label
    assert (plain[0].labels[:, :40] == 3).mean() > 0.9
    # the car (which touched the border) keeps its pixels and id where the border was
    assert (filled[9].instances[40:80, 0:6] == 26001).any()


def test_unseen_pixels_are_those_out_of_the_annotated_view():
    """The camera pans 4 px a frame: frame 0's 40 leftmost columns were never in frame 10's view."""
    rng = np.random.default_rng(4)
    big = cv2.GaussianBlur((rng.random((120, 400)) * 255).astype(np.uint8), (0, 0), 1.5)
    frames = [np.repeat(big[:, 4 * t:4 * t + 200, None], 3, axis=2) for t in range(14)]
    lab = np.full((120, 200), 7, np.uint8)
    out = propagate_snippet(frames, 10, lab, None, PropagationParams(scale=1.0), LUT)
    assert out[10].unseen is None
    u0 = out[0].unseen
    assert u0.shape == lab.shape and u0.dtype == bool
    assert u0[:, :36].mean() > 0.95 and u0[:, 48:].mean() < 0.02
    assert out[13].unseen[:, 188:].mean() > 0.9 and out[13].unseen[:, :180].mean() < 0.02


def test_params_from_settings():
    p = PropagationParams.from_settings(["margin_px=12", "unseen-importance=0.5", "fb_check=off",
                                         "preset=fast"])
    assert (p.margin_px, p.unseen_importance, p.fb_check, p.preset) == (12, 0.5, False, "fast")
    assert PropagationParams.from_settings([]) == PropagationParams()
    for bad in (["margin_px"], ["nope=1"], ["margin_px=1.5"], ["fb_check=maybe"],
                ["unseen_importance=2"], ["scale=x"]):
        with pytest.raises(InputError):
            PropagationParams.from_settings(bad)


def _zooming_object_sequence(n=13, ann=6, size=(240, 160)):
    """A car (an ellipse with its own texture) that approaches over a static textured scene: it
    grows 4% a frame about its centre and moves 2 px right, 1 px down a frame. Exact per-frame
    masks."""
    w, h = size
    rng = np.random.default_rng(7)
    bg = cv2.GaussianBlur((rng.random((h, w)) * 255).astype(np.uint8), (0, 0), 1.2)
    tex = cv2.GaussianBlur((rng.random((h, w)) * 255).astype(np.uint8), (0, 0), 1.2)
    shape = np.zeros((h, w), np.uint8)
    cv2.ellipse(shape, (w // 2, h // 2), (26, 16), 0, 0, 360, 1, -1)
    frames, masks = [], []
    for t in range(n):
        k = t - ann
        s = 1.04 ** k
        c = np.array([w / 2 + 2 * k, h / 2 + k])
        m = np.array([[s, 0, c[0] - s * w / 2], [0, s, c[1] - s * h / 2]])
        obj = cv2.warpAffine(tex, m, (w, h), flags=cv2.INTER_LINEAR)
        msk = cv2.warpAffine(shape, m, (w, h), flags=cv2.INTER_NEAREST).astype(bool)
        frames.append(np.repeat(np.where(msk, obj, bg)[..., None], 3, axis=2))
        masks.append(msk)
    lab = np.full((h, w), 7, np.uint8)
    lab[masks[ann]] = 26
    ins = lab.astype(np.int32)
    ins[masks[ann]] = 26001
    return frames, masks, lab, ins, ann


def test_similarity_motion_keeps_a_zooming_object_whole():
    """object_motion="similarity" moves each object by one transform fitted to the flow inside
    it: the approaching car keeps its shape over the chain, where the per-pixel warp smears it
    at the edges the background comes out from. Measured (DIS medium, full resolution): IoU
    0.77 / 0.78 six frames before / after against 0.50 / 0.72 per pixel (the fitted zoom is ~2.8%
    a frame for the true 4%: DIS smooths the flow's divergence)."""
    frames, masks, lab, ins, ann = _zooming_object_sequence()
    res = {}
    for motion in ("pixel", "similarity"):
        out = propagate_snippet(frames, ann, lab, ins,
                                PropagationParams(object_motion=motion, **NO_MARGIN_KW), LUT)
        res[motion] = [_iou(o.instances == 26001, masks[t]) for t, o in enumerate(out)]
    assert min(res["similarity"]) >= 0.72, np.round(res["similarity"], 2)
    assert res["similarity"][0] > res["pixel"][0] + 0.15, res
    assert res["similarity"][-1] > res["pixel"][-1] + 0.03, res
    assert all(a >= b - 0.01 for a, b in zip(res["similarity"], res["pixel"])), res


def test_similarity_motion_paints_the_nearer_object_last_and_drops_objects_that_leave():
    """move_objects on hand-made index images and a uniform flow: an object moved out of the view
    is gone, its pixels take the background's index; two objects moved onto each other: the one
    whose bottom edge is lower (nearer, on a ground plane) is in front."""
    from roienc.propagate import move_objects
    idx = np.zeros((40, 60), np.uint8)
    idx[5:15, 5:20] = 2          # far object (bottom edge row 14)
    idx[12:30, 22:40] = 3        # near object (bottom edge row 29)
    idx[30:38, 50:58] = 4        # leaves the view to the right
    is_obj = np.zeros(256, bool)
    is_obj[[2, 3, 4]] = True
    flow = np.zeros((40, 60, 2), np.float32)
    flow[5:15, 5:20] = (12, 4)   # the far object slides under the near one
    flow[30:38, 50:58] = (20, 0)
    new = idx.copy()             # the per-pixel warp's guess (left where they were)
    out = move_objects(idx, new, flow, is_obj)
    assert not (out == 4).any()
    assert (out[9:19, 17:32] == 2).sum() < (idx == 2).sum()       # partly hidden
    assert np.array_equal(out == 3, idx == 3)                      # the near object is whole
    assert (out[5:9, 5:17] == 0).all()                             # vacated -> background
