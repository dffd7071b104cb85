"""build-maps reruns into an existing folder: other settings are refused, other cities merge into
the manifest, damaged outputs are rebuilt rather than trusted (issue: nothing silently wrong)."""
import threading

import numpy as np
import pytest

from roienc.dataset import find_clips
from roienc.errors import InputError
from roienc.maps import QPParams, build_maps, load_clip_maps, read_manifest, load_params


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    from roienc.synth import synthesize

    r = tmp_path_factory.mktemp("cs")
    synthesize(r, split="val", cities=("frankfurt", "lindau"), width=192, height=96, seed=5)
    return r


def _build(root, out, **kw):
    return build_maps(root, out, split="val", workers=1, progress=False, visualize_every=0,
                      sequences=True, **kw)


def test_other_settings_into_same_out_are_refused(root, tmp_path):
    out = tmp_path / "m"
    _build(root, out, cities=["frankfurt"], qp=QPParams(block_size=16))
    # without --skip-existing too: the folder would hold grids of two block sizes
    with pytest.raises(InputError, match="different qp.*--overwrite"):
        _build(root, out, cities=["lindau"], qp=QPParams(block_size=32))
    clip = find_clips(root, "val", ["frankfurt"])[0]
    maps = load_clip_maps(out, clip)
    assert maps.block_size == 16 and maps.qp.shape[1:] == (6, 12)
    # --overwrite starts afresh: no frankfurt maps of the old block size remain
    _build(root, out, cities=["lindau"], qp=QPParams(block_size=32), overwrite=True)
    assert load_params(out)["block_size"] == 32
    assert not (out / "val" / "frankfurt").exists()
    assert set(read_manifest(out)["city"]) == {"lindau"}


def test_other_cities_merge_into_the_manifest(root, tmp_path):
    out = tmp_path / "m"
    _build(root, out, cities=["frankfurt"])
    _build(root, out, cities=["lindau"])
    man = read_manifest(out)
    assert sorted(set(man["city"])) == ["frankfurt", "lindau"]
    # one row per frame id: the annotated frame is the snippet's frame _000019, built with it
    assert len(man) == 2 * 30 and not man.duplicated(["frame_id"]).any()
    assert (man["source"] == "sequence").all()
    assert sorted(load_params(out)["cities"]) == ["frankfurt", "lindau"]
    # a rerun of one city replaces its rows, keeps the other's
    _build(root, out, cities=["lindau"], skip_existing=True)
    assert len(read_manifest(out)) == 60


def test_concurrent_runs_keep_each_others_rows(root, tmp_path):
    out = tmp_path / "m"
    out.mkdir()
    errors = []

    def run(city):
        try:
            _build(root, out, cities=[city])
        except Exception as exc:      # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(c,)) for c in ("frankfurt", "lindau")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(set(read_manifest(out)["city"])) == ["frankfurt", "lindau"]


def test_damaged_outputs_are_rebuilt_not_trusted(root, tmp_path):
    out = tmp_path / "m"
    _build(root, out, cities=["frankfurt"])
    folder = out / "val" / "frankfurt"
    qp = sorted(folder.glob("*_qp_map.npy"))[3]
    good = np.load(qp)
    qp.write_bytes(qp.read_bytes()[:60])                       # truncated
    imp = sorted(folder.glob("*_importance.npz"))[4]
    imp.write_bytes(b"")                                        # empty
    rep = _build(root, out, cities=["frankfurt"], skip_existing=True)
    assert (rep.manifest["status"] == "ok").all()
    rebuilt = rep.manifest[rep.manifest["reason"] != "existing output kept"]
    assert len(rebuilt) == 2
    assert np.array_equal(np.load(qp), good)
    assert np.load(imp)["importance"].shape == (96, 192)
