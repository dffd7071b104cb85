"""Bad input files and a refusing file system (issue 30): a clear error or a recorded skip
naming the file and the fix, never a traceback from deep inside numpy or an encoder."""
import errno
import shutil

import numpy as np
import pytest
from PIL import Image

from roienc.cli import main as cli
from roienc.dataset import find_clips
from roienc.encode import RatePoint, encode_many
from roienc.maps import build_maps, read_manifest

KW = dict(split="val", sequences=True, workers=1, progress=False, visualize_every=0)


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    from roienc.synth import synthesize

    r = tmp_path_factory.mktemp("cs")
    synthesize(r, split="val", width=192, height=96, seed=4)
    return r


@pytest.fixture
def root(clean, tmp_path):
    r = tmp_path / "cs"
    shutil.copytree(clean, r)
    return r


def _rows(out):
    return read_manifest(out).set_index("frame_id")


def test_8bit_disparity_is_refused_naming_the_file(root, tmp_path):
    d = next((root / "disparity_sequence").rglob("*_000004_disparity.png"))
    a = np.asarray(Image.open(d))
    Image.fromarray((a >> 8).astype(np.uint8)).save(d)
    build_maps(root, tmp_path / "m", **KW)
    row = _rows(tmp_path / "m").loc[d.name[:-len("_disparity.png")]]
    assert row["status"] == "failed" and str(d) in row["reason"] and "16-bit" in row["reason"]


def test_labels_of_another_size_are_a_failure_naming_both_files(root, tmp_path):
    lab = next((root / "gtFine").rglob("*_000019_gtFine_labelIds.png"))
    Image.fromarray(np.asarray(Image.open(lab))[:90, :180]).save(lab)
    build_maps(root, tmp_path / "m", **KW)
    man = _rows(tmp_path / "m")
    propagated = man[man["label_source"].str.startswith("propagate")]
    assert len(propagated) and (propagated["status"] == "failed").all()
    reason = propagated["reason"].iloc[0]
    assert str(lab) in reason and "180x90" in reason and "192x96" in reason
    assert "IndexError" not in " ".join(man["reason"])


@pytest.mark.encode
@pytest.mark.parametrize("damage", ["truncated", "jpeg", "size"])
def test_a_damaged_frame_is_named_before_encoding(root, tmp_path, damage):
    frame = next((root / "leftImg8bit_sequence").rglob("*_000011_leftImg8bit.png"))
    if damage == "truncated":
        frame.write_bytes(frame.read_bytes()[:-200])
        want = "truncated"
    elif damage == "jpeg":
        Image.open(frame).convert("RGB").save(frame, format="JPEG")
        want = "a JPEG"
    else:
        Image.open(frame).resize((194, 96)).save(frame)
        want = "194x96"
    clips = find_clips(root, "val", source="sequence")
    side = encode_many(clips, None, modes=["baseline"], rates=[RatePoint("crf", 30)],
                       out=tmp_path / "e", preset="fast", progress=False)[0]
    assert side["status"] == "skipped"
    assert str(frame) in side["error"] and want in side["error"]
    assert not (tmp_path / "e/hevc/baseline/crf30/lindau_000000.mp4").exists()


@pytest.mark.encode
def test_a_frame_without_maps_says_why(root, tmp_path):
    d = next((root / "disparity_sequence").rglob("*_000004_disparity.png"))
    d.write_bytes(b"not a png")
    build_maps(root, tmp_path / "m", **KW)
    clips = find_clips(root, "val", source="sequence")
    side = encode_many(clips, tmp_path / "m", modes=["roi"], rates=[RatePoint("crf", 30)],
                       out=tmp_path / "e", preset="fast", progress=False)[0]
    assert side["status"] == "skipped"
    assert "build-maps failed frame lindau_000000_000004" in side["error"] and str(d) in side["error"]


def test_a_file_system_refusal_is_one_line_naming_path_and_cause(monkeypatch, capsys, tmp_path):
    """Disk full cannot be made for real in a test without mounting a file system: the error is
    raised where synthesize would write (a mock of that failure only)."""
    import roienc.commands.synth

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x" / "f.png"))
    monkeypatch.setattr(roienc.commands.synth, "synthesize", full)
    assert cli(["synth", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert f"{tmp_path / 'x' / 'f.png'}: no space left on the device" in err
    assert "MB free there" in err


def test_names_that_would_leave_out_are_refused_and_nothing_is_written(clean, tmp_path, capsys):
    from roienc.errors import InputError
    out = tmp_path / "a" / "b" / "out"
    for opt, value in (("--split", "../../s"), ("--cities", "../x")):
        with pytest.raises(SystemExit) as stop:               # argparse refuses the value
            cli(["build-maps", "--cityscapes-root", str(clean), opt, value, "--out", str(out)])
        assert stop.value.code == 2 and "not a plain name" in capsys.readouterr().err
        # the library refuses it too (a caller that does not go through the command line)
        with pytest.raises(InputError, match="not a plain name"):     # before making --out
            build_maps(clean, out, progress=False, **({"split": value} if opt == "--split"
                                                      else {"cities": [value]}))
    assert not (tmp_path / "a").exists()
    with pytest.raises(InputError, match="list of names"):      # the library call, a bare string
        build_maps(clean, out, cities="lindau", progress=False)
    assert not (tmp_path / "a").exists()


def test_names_too_long_for_the_file_system_are_refused_before_work(clean, tmp_path, capsys):
    report = tmp_path / ("r" * 250 + ".csv")
    assert cli(["evaluate", "--encoded", str(tmp_path), "--maps", str(tmp_path),
                "--report", str(report)]) == 2
    err = capsys.readouterr().err
    assert "--report" in err and "choose a shorter name" in err and "Traceback" not in err
    deep = tmp_path.joinpath(*["d" * 200] * 22)
    assert cli(["sweep", "--cityscapes-root", str(clean), "--out", str(deep)]) == 2
    assert "choose a shorter path" in capsys.readouterr().err
    assert not (tmp_path / ("d" * 200)).exists()


@pytest.mark.encode
def test_an_encoder_failure_names_its_cause_on_the_console(root, tmp_path, caplog):
    """A frame whose header and end are whole but whose pixels are damaged reaches the encoder:
    the console says what the encoder said, not only that a program failed."""
    frame = next((root / "leftImg8bit_sequence").rglob("*_000011_leftImg8bit.png"))
    data = bytearray(frame.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 64] = bytes(64)                  # inside the compressed pixels
    frame.write_bytes(bytes(data))
    clips = find_clips(root, "val", source="sequence")
    side = encode_many(clips, None, modes=["baseline"], rates=[RatePoint("crf", 30)],
                       out=tmp_path / "e", preset="fast", progress=False)[0]
    assert side["status"] == "failed"
    line = next(r.getMessage() for r in caplog.records if "lindau_000000 baseline" in r.getMessage())
    assert "inflate returned error" in line       # libpng's words about the damaged frame


def test_build_maps_exits_1_after_a_failure_and_0_after_documented_skips(root, tmp_path, capsys):
    lab = next((root / "gtFine").rglob("*_000019_gtFine_instanceIds.png"))
    for v in (root / "vehicle_sequence").rglob("*_vehicle.json"):
        v.unlink()                                  # documented: pass --speed
    code = cli(["build-maps", "--cityscapes-root", str(root), "--out", str(tmp_path / "a"),
                "--sequences", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0 and "30 skipped" in out and "--speed" in out
    lab.write_bytes(lab.read_bytes()[:300])         # a corrupt input: a failure
    code = cli(["build-maps", "--cityscapes-root", str(root), "--out", str(tmp_path / "b"),
                "--sequences", "--no-progress", "--speed", "8"])
    out = capsys.readouterr().out
    assert code == 1 and "30 failed" in out and "frame(s) failed" in out and str(lab) in out


@pytest.mark.encode
def test_an_unknown_preset_is_refused_before_the_maps(clean, tmp_path):
    from roienc.errors import InputError
    from roienc.sweep import run_sweep
    with pytest.raises(InputError, match="ultrafst"):
        run_sweep(clean, tmp_path / "run", split="val", preset="ultrafst", progress=False,
                  rates=[RatePoint("crf", v) for v in (24, 28, 32, 36)])
    assert not (tmp_path / "run" / "maps").exists()
    clips = find_clips(clean, "val", source="sequence")
    with pytest.raises(InputError, match="--jobs"):
        encode_many(clips, None, jobs=0, out=tmp_path / "e", progress=False)
    assert not (tmp_path / "e").exists()
