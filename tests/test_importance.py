"""The importance model on hand-built frames: formula, objects, invalid disparity, errors."""
import math

import numpy as np
import pytest
from cityscapesscripts.helpers.labels import name2label

from roienc.errors import InputError
from roienc.importance import (ImportanceParams, _components, _rank, compute_importance, decay,
                               disparity_px, distance_m, grouped_median, object_map, safe_distance)
from roienc.labels import load_class_groups

FX, B = 2262.52, 0.209313
CAR, PERSON, SIGN, ROAD, SKY, EGO = (name2label[n].id for n in
                                     ("car", "person", "traffic sign", "road", "sky", "ego vehicle"))
GROUPS = load_class_groups()


def raw_for(z: float) -> int:
    """uint16 disparity value of a surface at ``z`` metres."""
    return int(round(FX * B / z * 256.0)) + 1


def z_of(raw: int) -> float:
    return FX * B / ((raw - 1) / 256.0)


def scene(h=40, w=60):
    labels = np.full((h, w), ROAD, np.uint8)
    labels[:8] = SKY
    labels[-3:] = EGO
    inst = labels.astype(np.int32)
    disp = np.full((h, w), raw_for(30.0), np.uint16)
    disp[:8] = 0
    return labels, inst, disp


def test_safe_distance_formula_and_floor():
    v = 13.9
    assert safe_distance(v) == pytest.approx(v * 2.5 + v * v / (2 * 3.4))
    assert safe_distance(0.0) == 5.0            # floor: a stopped car still cares about 4 m
    assert safe_distance(0.0, floor=2.0) == 2.0
    assert safe_distance(1.0, 1.0, 1.0, floor=0.1) == pytest.approx(1.5)
    with pytest.raises(InputError):
        safe_distance(-1.0)
    with pytest.raises(InputError):
        safe_distance(float("nan"))


def test_decay_at_boundaries():
    ds = 40.0
    assert decay(ds, ds) == 1.0                 # d == d_safe is inside
    assert decay(0.0, ds) == 1.0
    assert decay(2 * ds, ds) == pytest.approx(0.5)   # halves every d_safe beyond it
    assert decay(3 * ds, ds) == pytest.approx(0.25)
    assert decay(np.inf, ds) == 0.0
    assert np.isnan(decay(np.nan, ds))


def test_disparity_decoding():
    raw = np.array([0, 1, 257, 25601], np.uint16)
    d = disparity_px(raw)
    assert np.isnan(d[0])
    assert d[1] == 0.0 and d[2] == 1.0 and d[3] == 100.0
    z = distance_m(d, FX, B)
    assert np.isinf(z[1])
    assert z[3] == pytest.approx(FX * B / 100.0)


def test_grouped_median_matches_numpy():
    rng = np.random.default_rng(0)
    keys = rng.integers(1, 8, 500)
    vals = rng.integers(0, 1000, 500)
    med, cnt = grouped_median(keys, vals, 9)
    for k in range(1, 10):
        sel = vals[keys == k]
        assert cnt[k - 1] == sel.size
        if sel.size:
            assert med[k - 1] == np.median(sel)
        else:
            assert np.isnan(med[k - 1])


def test_two_cars_get_their_own_distance():
    labels, inst, disp = scene()
    labels[10:20, 5:15] = CAR
    inst[10:20, 5:15] = CAR * 1000
    disp[10:20, 5:15] = raw_for(12.0)
    labels[10:20, 30:40] = CAR
    inst[10:20, 30:40] = CAR * 1000 + 1
    disp[10:20, 30:40] = raw_for(80.0)
    disp[10, 30] = 0                           # a few invalid pixels don't matter
    v = 8.0
    fi = compute_importance(labels, inst, disp, FX, B, v, GROUPS)
    ds = safe_distance(v)
    objs = fi.objects.set_index("object_id")
    near, far = objs.loc[str(CAR * 1000)], objs.loc[str(CAR * 1000 + 1)]
    assert near.distance_m == pytest.approx(z_of(raw_for(12.0)))
    assert far.distance_m == pytest.approx(z_of(raw_for(80.0)))
    assert far.valid_pixels == far.pixels - 1 == 99
    assert near.importance == 1.0 and near.inside_safe
    expected = math.exp(-math.log(2) / ds * (z_of(raw_for(80.0)) - ds))
    assert far.importance == pytest.approx(expected)
    assert not far.inside_safe
    assert fi.importance[15, 10] == 1.0
    assert fi.importance[15, 35] == pytest.approx(expected, rel=1e-6)
    assert fi.importance.dtype == np.float32
    # classes: road static 0.1, sky static 0.1, ego vehicle void 0.0
    assert fi.importance[30, 50] == pytest.approx(0.1)
    assert fi.importance[0, 0] == pytest.approx(0.1)
    assert fi.importance[-1, 0] == 0.0
    assert (near.x0, near.y0, near.x1, near.y1) == (5, 10, 15, 20)


def test_components_split_non_instance_classes():
    labels, inst, disp = scene()
    labels[10:14, 2:6] = SIGN                   # no instance ids: two blobs, two distances
    disp[10:14, 2:6] = raw_for(6.0)
    labels[10:14, 50:54] = SIGN
    disp[10:14, 50:54] = raw_for(150.0)
    fi = compute_importance(labels, inst, disp, FX, B, 0.0, GROUPS)
    assert len(fi.objects) == 2
    assert set(fi.objects["label"]) == {"traffic sign"}
    d = sorted(fi.objects["distance_m"])
    assert d[0] == pytest.approx(z_of(raw_for(6.0)))
    assert d[1] == pytest.approx(z_of(raw_for(150.0)))
    assert fi.importance[11, 3] > fi.importance[11, 51]


def test_unknown_distance_gets_unknown_importance():
    labels, inst, disp = scene()
    labels[10:20, 5:15] = PERSON
    inst[10:20, 5:15] = PERSON * 1000
    disp[10:20, 5:15] = 0
    disp[10, 5:9] = raw_for(100.0)             # 4 valid pixels < min_valid_pixels (5)
    fi = compute_importance(labels, inst, disp, FX, B, 10.0, GROUPS)
    row = fi.objects.iloc[0]
    assert row.valid_pixels == 4 and np.isnan(row.distance_m)
    assert row.importance == 1.0 and not row.inside_safe
    fi2 = compute_importance(labels, inst, disp, FX, B, 10.0, GROUPS,
                             ImportanceParams(unknown_importance=0.3))
    assert fi2.importance[15, 10] == pytest.approx(0.3)
    fi3 = compute_importance(labels, inst, disp, FX, B, 10.0, GROUPS,
                             ImportanceParams(min_valid_pixels=4))
    assert fi3.objects.iloc[0].distance_m == pytest.approx(z_of(raw_for(100.0)))


def test_pixel_mode_uses_each_pixels_distance():
    labels, inst, disp = scene()
    labels[10:20, 5:15] = CAR
    inst[10:20, 5:15] = CAR * 1000
    disp[10:20, 5:10] = raw_for(10.0)
    disp[10:20, 10:15] = raw_for(200.0)
    disp[12, 12] = 0
    obj = compute_importance(labels, inst, disp, FX, B, 5.0, GROUPS)
    pix = compute_importance(labels, inst, disp, FX, B, 5.0, GROUPS,
                             ImportanceParams(distance_mode="pixel"))
    assert np.unique(obj.importance[10:20, 5:15]).size == 1
    assert pix.importance[15, 6] == 1.0
    assert pix.importance[15, 13] < 0.01
    assert pix.importance[12, 12] == obj.importance[12, 12]   # invalid pixel: object's value


def test_speed_changes_importance():
    labels, inst, disp = scene()
    labels[10:20, 5:15] = CAR
    inst[10:20, 5:15] = CAR * 1000
    disp[10:20, 5:15] = raw_for(40.0)
    slow = compute_importance(labels, inst, disp, FX, B, 0.0, GROUPS).importance[15, 10]
    fast = compute_importance(labels, inst, disp, FX, B, 15.0, GROUPS).importance[15, 10]
    assert slow < 0.1 and fast == 1.0


def test_no_objects_and_size_errors():
    labels, inst, disp = scene()
    fi = compute_importance(labels, None, disp, FX, B, 3.0, GROUPS)
    assert len(fi.objects) == 0 and list(fi.objects.columns)[:7] == [
        "object_id", "label", "pixels", "valid_pixels", "distance_m", "importance", "inside_safe"]
    with pytest.raises(InputError, match="differs"):
        compute_importance(labels, inst, disp[:-1], FX, B, 3.0, GROUPS)
    with pytest.raises(InputError, match="fx"):
        compute_importance(labels, inst, disp, 0.0, B, 3.0, GROUPS)
    with pytest.raises(InputError):
        ImportanceParams(distance_mode="median")


def test_class_groups_cover_the_label_table(tmp_path):
    assert GROUPS.unassigned == ()
    lut = GROUPS.group_lut()
    assert lut[CAR] == 2 and lut[ROAD] == 1 and lut[EGO] == 0
    bad = tmp_path / "c.toml"
    bad.write_text('[static]\nclasses=["road","roads"]\n')
    with pytest.raises(InputError, match="roads"):
        load_class_groups(bad)
    dup = tmp_path / "d.toml"
    dup.write_text('[static]\nclasses=["road"]\n[dynamic]\nclasses=["road"]\n')
    with pytest.raises(InputError, match="both"):
        load_class_groups(dup)
    custom = tmp_path / "e.toml"
    custom.write_text('[static]\nimportance=0.2\nclasses=["road"]\n[dynamic]\nclasses=["car"]\n')
    g = load_class_groups(custom)
    assert g.static_importance == 0.2 and "sky" in g.unassigned


# --- the fast paths (OpenCV labelling, count tables, table look-ups) against plain references ---

def reference_object_map(labels, instances, group_lut):
    """object_map as first written: np.unique for instances, scipy.ndimage.label per label."""
    from scipy import ndimage
    dynamic = group_lut[labels] == 2
    omap = np.zeros(labels.shape, np.int32)
    ids = []
    rest = dynamic
    if instances is not None:
        inst_mask = dynamic & (instances >= 1000)
        if inst_mask.any():
            uniq, inv = np.unique(instances[inst_mask], return_inverse=True)
            omap[inst_mask] = inv.astype(np.int32) + 1
            ids.extend((str(int(u)), int(u) // 1000) for u in uniq)
        rest = dynamic & ~inst_mask
    for lid in np.unique(labels[rest]):
        mask = rest & (labels == lid)
        comp, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
        omap[mask] = comp[mask] + len(ids)
        ids.extend((f"{int(lid)}c{k}", int(lid)) for k in range(1, n + 1))
    return omap, ids


def reference_importance(labels, instances, disp, fx, b, speed, params=ImportanceParams()):
    """compute_importance's map and object table, one object at a time."""
    omap, ids = reference_object_map(labels, instances, GROUPS.group_lut())
    ds = safe_distance(speed)
    lut = GROUPS.group_lut()
    imp = np.where(lut[labels] == 1, np.float32(GROUPS.static_importance),
                   np.float32(GROUPS.void_importance)).astype(np.float32)
    rows = []
    for k, (oid, lid) in enumerate(ids, start=1):
        m = omap == k
        vals = disp[m & (disp > 0)]
        known = vals.size >= params.min_valid_pixels
        dist = FX * B / ((np.median(vals) - 1.0) / 256.0) if known else np.nan
        val = float(decay(dist, ds)) if known else params.unknown_importance
        imp[m] = np.float32(val)
        ys, xs = np.nonzero(m)
        rows.append((oid, int(m.sum()), int(vals.size), dist, val, known and dist <= ds,
                     xs.min(), ys.min(), xs.max() + 1, ys.max() + 1))
    return np.clip(imp, 0, 1), omap, ids, rows


def random_frame(rng, h, w):
    dyn = [CAR, PERSON, SIGN, name2label["bicycle"].id, name2label["rider"].id]
    stat = [ROAD, SKY, EGO]
    labels = np.where(rng.random((h, w)) < rng.random(), rng.choice(dyn, (h, w)),
                      rng.choice(stat, (h, w))).astype(np.uint8)
    if rng.random() < 0.5:                      # blobs of 4x4 rather than salt and pepper
        labels = np.repeat(np.repeat(labels, 4, 0), 4, 1)[:h, :w].copy()
    inst = labels.astype(np.int32)
    sel = rng.random((h, w)) < rng.random()
    inst[sel] = inst[sel] * 1000 + rng.integers(0, 4, (h, w))[sel]
    disp = rng.integers(1, 4000, (h, w)).astype(np.uint16)
    disp[rng.random((h, w)) < 0.3] = 0
    return labels, inst, disp


@pytest.mark.parametrize("seed", range(6))
def test_fast_paths_match_the_references(seed):
    rng = np.random.default_rng(seed)
    lut = GROUPS.group_lut()
    for _ in range(15):
        h, w = int(rng.integers(1, 50)), int(rng.integers(1, 70))
        labels, inst, disp = random_frame(rng, h, w)
        for lab, ins in ((labels, inst), (labels, None), (labels.astype(np.int32), inst),
                         (labels, inst.astype(np.int64)), (np.asfortranarray(labels), inst)):
            omap, ids = object_map(lab, ins, lut)
            ref_map, ref_ids = reference_object_map(lab, ins, lut)
            assert ids == ref_ids and omap.dtype == np.int32
            np.testing.assert_array_equal(omap, ref_map)
        speed = float(rng.uniform(0, 20))
        lab = (labels, labels.astype(np.int32), np.asfortranarray(labels))[int(rng.integers(3))]
        fi = compute_importance(lab, inst, disp, FX, B, speed, GROUPS)
        imp, ref_map, ref_ids, rows = reference_importance(labels, inst, disp, FX, B, speed)
        assert fi.importance.dtype == np.float32
        np.testing.assert_array_equal(fi.importance, imp)       # bit for bit
        np.testing.assert_array_equal(fi.object_map, ref_map)
        got = list(fi.objects[["object_id", "pixels", "valid_pixels", "distance_m", "importance",
                               "inside_safe", "x0", "y0", "x1", "y1"]].itertuples(index=False))
        assert len(got) == len(rows)
        for g, r in zip(got, rows):
            assert g[:3] == r[:3] and g[5:] == r[5:]
            np.testing.assert_array_equal(g[3:5], r[3:5])          # exact, NaN == NaN


def test_components_numbered_as_scipy_numbers_them():
    from scipy import ndimage
    rng = np.random.default_rng(7)
    for _ in range(100):
        mask = rng.random((int(rng.integers(1, 40)), int(rng.integers(1, 60)))) < rng.random()
        if not mask.any():
            continue
        n, comp = _components(np.flatnonzero(mask), mask.shape[1])
        ref, m = ndimage.label(mask, structure=np.ones((3, 3), bool))
        assert n == m
        np.testing.assert_array_equal(comp, ref[mask])


def test_grouped_median_of_16_bit_values_and_ranks():
    rng = np.random.default_rng(3)
    keys = rng.integers(1, 40, 3000).astype(np.int32)
    vals = rng.integers(0, 65536, 3000).astype(np.uint16)      # the radix path
    med, cnt = grouped_median(keys, vals, 45)
    ref_med, ref_cnt = grouped_median(keys, vals.astype(np.int64), 45)   # the lexsort path
    np.testing.assert_array_equal(cnt, ref_cnt)
    np.testing.assert_array_equal(med, ref_med)
    for k in (1, 17, 39):
        assert med[k - 1] == np.median(vals[keys == k].astype(np.float64))
    assert np.isnan(med[40:]).all()
    for values in (np.array([26003, 26001, 24000, 26003, 33000], np.int32),
                   np.array([5, 1 << 20, 5, 7], np.int64),            # beyond the count table
                   np.array([2.5, 1.0, 2.5])):
        uniq, inv = _rank(values)
        ref_uniq, ref_inv = np.unique(values, return_inverse=True)
        np.testing.assert_array_equal(uniq, ref_uniq)
        np.testing.assert_array_equal(inv, ref_inv)
