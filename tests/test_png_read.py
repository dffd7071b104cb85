"""roienc.fileio.read_png: libspng where it applies, Pillow elsewhere, the same samples either way."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from roienc import fileio
from roienc.errors import InputError


def _png(tmp_path, name, im: Image.Image, **kw):
    p = tmp_path / name
    im.save(p, format="PNG", **kw)
    return p


def _cases(tmp_path):
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (37, 53, 3), np.uint8)
    grey = rng.integers(0, 256, (37, 53), np.uint8)
    g16 = rng.integers(0, 65536, (37, 53), np.uint16)
    pal = Image.fromarray(grey % 7, "L").convert("P")
    return {
        "rgb": (_png(tmp_path, "rgb.png", Image.fromarray(rgb)), rgb),
        "grey": (_png(tmp_path, "grey.png", Image.fromarray(grey)), grey),
        "grey16": (_png(tmp_path, "g16.png", Image.fromarray(g16)), g16),
        "palette": (_png(tmp_path, "pal.png", pal), np.asarray(pal)),
    }


@pytest.mark.parametrize("kind", ["rgb", "grey", "grey16", "palette"])
def test_samples_as_stored_match_pillow(tmp_path, kind):
    path, want = _cases(tmp_path)[kind]
    got = fileio.read_png(path, "test")
    assert got.dtype == want.dtype and got.shape == want.shape
    assert np.array_equal(got, want)
    assert got.flags.c_contiguous


def test_rgb_request_converts_every_mode(tmp_path):
    cases = _cases(tmp_path)
    for kind in ("grey", "palette", "rgb"):
        path, _ = cases[kind]
        with Image.open(path) as im:
            want = np.asarray(im.convert("RGB"))
        assert np.array_equal(fileio.read_png(path, "test", rgb=True), want), kind
    rgba = np.random.default_rng(1).integers(0, 256, (20, 30, 4), np.uint8)
    p = _png(tmp_path, "rgba.png", Image.fromarray(rgba, "RGBA"))
    assert np.array_equal(fileio.read_png(p, "test", rgb=True), rgba[..., :3])


def test_fast_path_is_taken_for_plain_grey_and_rgb(tmp_path):
    if fileio._spng is None:
        pytest.skip("pyspng not installed: every file goes through Pillow")
    cases = _cases(tmp_path)
    for kind in ("rgb", "grey", "grey16"):
        data = cases[kind][0].read_bytes()
        assert fileio._spng_decode(data, rgb=False) is not None, kind
    assert fileio._spng_decode(cases["palette"][0].read_bytes(), rgb=False) is None


def test_corrupt_and_missing_files_name_the_file(tmp_path):
    path, _ = _cases(tmp_path)["rgb"]
    data = path.read_bytes()
    bad = tmp_path / "truncated.png"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"truncated\.png: unreadable disparity image"):
        fileio.read_png(bad, "disparity")
    with pytest.raises(InputError, match=r"nope\.png: labelIds file not found"):
        fileio.read_png(tmp_path / "nope.png", "labelIds")
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not a png at all")
    with pytest.raises(InputError, match="junk.png: unreadable"):
        fileio.read_png(junk, "labelIds")


def test_pillow_alone_reads_the_same(tmp_path, monkeypatch):
    """Without pyspng (a platform with no wheel) every file goes through Pillow, same samples."""
    cases = _cases(tmp_path)
    fast = {k: fileio.read_png(p, "test") for k, (p, _) in cases.items()}
    monkeypatch.setattr(fileio, "_spng", None)
    for k, (p, want) in cases.items():
        slow = fileio.read_png(p, "test")
        assert slow.dtype == fast[k].dtype and np.array_equal(slow, fast[k]), k
