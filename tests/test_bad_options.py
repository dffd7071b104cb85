"""Issue 30, option ranges and argument types: every bad value is refused before any work with a
message naming the option (or argument), its bounds and the fix; the CLI exits 2, the library
raises InputError; nothing is written where it must not be."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from roienc.bdrate import bd_table
from roienc.cli import main
from roienc.configs import check_rate
from roienc.encode import RatePoint
from roienc.errors import InputError
from roienc.executor import ExecutorSpec
from roienc.export import export
from roienc.sweep import run_sweep
from roienc.synth import synthesize


def cli(argv: list[str], capsys) -> tuple[int, str]:
    """Exit status of ``roienc argv`` (argparse's usage errors included) and the last line of
    its stderr."""
    try:
        code = main(argv)
    except SystemExit as exc:              # argparse: usage error, exit status 2
        code = exc.code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, (err.strip().splitlines() or [""])[-1]


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    r = tmp_path_factory.mktemp("bad") / "cs"
    synthesize(r, width=192, height=96)
    return r


# ------------------------------------------------------------------ --jobs / --workers

@pytest.mark.parametrize("argv, option, value", [
    (["encode", "--mode", "baseline", "--jobs", "0"], "--jobs", "0"),
    (["encode", "--mode", "baseline", "--jobs", "-1"], "--jobs", "-1"),
    (["sweep", "--jobs", "0"], "--jobs", "0"),
    (["sweep", "--workers", "0"], "--workers", "0"),
    (["build-maps", "--workers", "0"], "--workers", "0"),
    (["build-maps", "--workers", "-3"], "--workers", "-3"),
    (["evaluate", "--encoded", "E", "--maps", "M", "--report", "r.csv", "--workers", "0"],
     "--workers", "0"),
])
def test_jobs_and_workers_below_one_are_usage_errors(root, tmp_path, capsys, argv, option, value):
    out = tmp_path / "out"
    cmd = argv[0]
    if cmd != "evaluate":
        argv = argv + ["--cityscapes-root", str(root), "--out", str(out), "--no-progress"]
    code, err = cli(argv, capsys)
    assert code == 2
    assert err.startswith(f"roienc {cmd}: error:") and f"{option} must be at least 1, got {value}" in err
    assert not out.exists()


def test_library_executor_refuses_zero_workers():
    for bad in (0, -1, 1.5, True):
        with pytest.raises(InputError, match="at least 1"):
            ExecutorSpec("local", bad)
    assert ExecutorSpec("local", None).resolved_workers() >= 1
    with pytest.raises(InputError, match="--jobs must be a whole number of at least 1"):
        run_sweep("nowhere", "nowhere_out", jobs=0)


# ------------------------------------------------------------------ CRF ranges per codec

@pytest.mark.parametrize("codec, crf, top", [("hevc", "99", 51), ("hevc", "55", 51),
                                             ("hevc", "-5", 51), ("h264", "60", 51),
                                             ("vp9", "99", 63), ("av1", "-1", 63)])
@pytest.mark.parametrize("cmd", ["encode", "sweep"])
def test_crf_out_of_range_names_the_codecs_own_bounds(tmp_path, capsys, cmd, codec, crf, top):
    """hevc says 0..51 whether the CRF is 55 or 99 (it said 0..63 for 99); vp9/av1 say 0..63."""
    out = tmp_path / "out"
    argv = [cmd, "--cityscapes-root", str(tmp_path / "cs"), "--out", str(out), "--codec", codec,
            f"--crf={crf}", "--no-progress"] + (["--mode", "baseline"] if cmd == "encode" else [])
    code, err = cli(argv, capsys)
    assert code == 2
    assert f"--crf must be between 0 and {top} for {codec}" in err, err
    assert "63" not in err if top == 51 else "51" not in err
    assert not out.exists()


def test_check_rate_bounds_follow_the_codec():
    with pytest.raises(InputError, match="between 0 and 51 for hevc, got 99"):
        check_rate("crf", 99, codec="hevc")
    with pytest.raises(InputError, match="between 0 and 63 for vp9, got 64"):
        check_rate("crf", 64, codec="vp9")
    assert check_rate("crf", 60, codec="av1") == 60
    with pytest.raises(InputError, match="between 0 and 51, got 52"):
        check_rate("qp", 52)                 # no codec: x264/x265's scale, as before


# ------------------------------------------------------------------ export --crf

@pytest.mark.parametrize("crf", ["99", "-5", "nan"])
def test_export_refuses_an_out_of_range_crf(tmp_path, capsys, crf):
    out = tmp_path / "x"
    code, err = cli(["export", "--maps", str(tmp_path / "maps"), "--out", str(out), f"--crf={crf}"],
                    capsys)
    assert code == 2 and "--crf" in err and "between 0 and 51 for hevc" in err, err
    assert not out.exists()


def test_export_library_checks_the_crf_before_reading_or_writing(tmp_path):
    out = tmp_path / "x"
    # the maps folder does not exist: the CRF is refused first, nothing written
    with pytest.raises(InputError, match=r"--crf must be between 0 and 51 for hevc, got 99"):
        export(tmp_path / "maps", out, crf=99)
    with pytest.raises(InputError, match="--crf must be between 0 and 51"):
        export(tmp_path / "maps", out, crf=-5)
    assert not out.exists()


# ------------------------------------------------------------------ sweep: checks before work

def test_sweep_refuses_preset_ultrafast_before_maps_and_baseline(root, tmp_path, capsys):
    run = tmp_path / "run"
    code, err = cli(["sweep", "--cityscapes-root", str(root), "--out", str(run), "--preset",
                     "ultrafast", "--crf", "30,35,40", "--no-progress"], capsys)
    assert code == 2
    assert "ultrafast" in err and "use veryfast or slower" in err and "mode roi" in err
    assert not (run / "maps").exists() and not (run / "enc").exists()
    with pytest.raises(InputError, match="ultrafast"):
        run_sweep(root, tmp_path / "lib", modes=("baseline", "roi"), preset="ultrafast",
                  rates=[RatePoint("crf", 30)], progress=False)
    assert not (tmp_path / "lib").exists()


@pytest.mark.parametrize("cmd", ["sweep", "build-maps"])
def test_odd_block_size_with_submax_is_refused_before_any_work(root, tmp_path, capsys, cmd):
    out = tmp_path / "run"
    code, err = cli([cmd, "--cityscapes-root", str(root), "--out", str(out), "--block-size", "7",
                     "--no-progress"], capsys)
    assert code == 2
    assert "--block-size 7" in err and "even block size" in err and "--block-stat" in err
    assert not out.exists()


def test_sweep_odd_block_size_among_several_is_refused(root, tmp_path, capsys):
    out = tmp_path / "run"
    code, err = cli(["sweep", "--cityscapes-root", str(root), "--out", str(out), "--block-size",
                     "16,9", "--no-progress"], capsys)
    assert code == 2 and "--block-size 9" in err
    assert not out.exists()
    code, err = cli(["sweep", "--cityscapes-root", str(root), "--out", str(out), "--block-size",
                     "4096", "--no-progress"], capsys)
    assert code == 2 and "--block-size must be between 1 and 1024" in err
    assert not out.exists()


def test_sweep_missing_judge_labels_root_is_named_as_such(root, tmp_path, capsys):
    out = tmp_path / "run"
    missing = tmp_path / "no_such_labels"
    code, err = cli(["sweep", "--cityscapes-root", str(root), "--out", str(out),
                     "--judge-labels-root", str(missing), "--no-progress"], capsys)
    assert code == 2
    assert f"--judge-labels-root {missing}: no such directory" in err
    assert not out.exists()
    code, err = cli(["sweep", "--cityscapes-root", str(root), "--out", str(out),
                     "--judge-maps", str(missing), "--no-progress"], capsys)
    assert code == 2 and f"--judge-maps {missing}" in err and "not a build-maps output" in err
    assert not out.exists()


# ------------------------------------------------------------------ library argument types

@pytest.mark.parametrize("kw, message", [
    (dict(rates="30"), "rates takes a list of RatePoint"),
    (dict(rates=[30]), "rates takes RatePoint values"),
    (dict(rates=[]), "no rate point"),
    (dict(cities="lindau"), r"pass \['lindau'\]"),
    (dict(cities=["../x"]), "not a plain name"),
    (dict(split="../val"), "--split '../val' is not a plain name"),
    (dict(modes="baseline"), "--modes takes a list of modes"),
    (dict(modes=("baseline", "roj")), "unknown 'roj'"),
    (dict(modes=("roi",)), "must include baseline"),
    (dict(sequence_ids="lindau_000000"), "pass \\['lindau_000000'\\]"),
    (dict(codec="h266"), "--codec must be one of"),
    (dict(roi_threshold=2), "--roi-threshold must be in"),
])
def test_run_sweep_refuses_wrong_argument_types(root, tmp_path, kw, message):
    out = tmp_path / "run"
    with pytest.raises(InputError, match=message):
        run_sweep(root, out, progress=False, **kw)
    assert not out.exists()


def test_bd_table_names_the_missing_columns():
    with pytest.raises(InputError, match="lack the column.*codec, clip, mode, kbps, psnr_roi"):
        bd_table(pd.DataFrame())
    frame = pd.DataFrame({"codec": ["hevc"], "clip": ["a"], "mode": ["baseline"], "kbps": [1.0],
                          "psnr_roi": [40.0]})
    with pytest.raises(InputError, match=r"lack the column\(s\) psnr_nonroi, psnr_y, psnr_weighted"):
        bd_table(frame)
    assert bd_table(frame, metrics=("psnr_roi",)).empty      # all it needs: no BD pair, no row
    with pytest.raises(InputError, match="DataFrame"):
        bd_table([{"codec": "hevc"}])


# ------------------------------------------------------------------ synth names and sizes

@pytest.mark.parametrize("opt", [["--cities", "../../x"], ["--cities", "lindau,../y"],
                                 ["--split", "../../../s"], ["--split", ".."], ["--cities", ""]])
def test_synth_names_cannot_write_outside_out(tmp_path, capsys, monkeypatch, opt):
    monkeypatch.chdir(tmp_path)
    code, err = cli(["synth", "--out", "a/b/out", *opt], capsys)
    assert code == 2 and opt[0] in err, err
    assert files_under(tmp_path) == []


@pytest.mark.parametrize("cmd", ["build-maps", "encode", "sweep"])
def test_city_and_split_names_are_checked_by_every_command(root, tmp_path, capsys, cmd):
    out = tmp_path / "out"
    base = [cmd, "--cityscapes-root", str(root), "--out", str(out), "--no-progress"]
    base += ["--mode", "baseline"] if cmd == "encode" else []
    for opt in (["--cities", "../../x"], ["--split", "../val"]):
        code, err = cli(base + opt, capsys)
        assert code == 2 and f"{opt[0]} '{opt[1]}' is not a plain name" in err, err
    assert not out.exists() and not (tmp_path / "x").exists()


@pytest.mark.parametrize("size, message", [
    (["--width", "100000", "--height", "100000"], "--width must be between 16 and 8192"),
    (["--width", "256", "--height", "9000"], "--height must be between 16 and 8192"),
    (["--width", "8"], "--width must be between 16 and 8192, got 8"),
    (["--width", "8000", "--height", "8000"], "at most 8.4 Mpx"),
    (["--sequences-per-city", "0"], "--sequences-per-city must be between 1 and 999999"),
    (["--seed", "-1"], "--seed must be at least 0"),
])
def test_synth_sizes_are_bounded_before_any_allocation(tmp_path, capsys, size, message):
    out = tmp_path / "out"
    code, err = cli(["synth", "--out", str(out), *size], capsys)
    assert code == 2 and message in err, err
    assert not out.exists()


def test_synthesize_library_checks_its_arguments(tmp_path):
    out = tmp_path / "out"
    for kw, message in ((dict(width=100_000, height=100_000), "--width must be between 16 and 8192"),
                        (dict(width=256.0), "--width must be a whole number"),
                        (dict(cities="lindau"), r"pass \['lindau'\]"),
                        (dict(cities=["../../x"]), "not a plain name"),
                        (dict(split="a/b"), "--split 'a/b' is not a plain name"),
                        (dict(sequences_per_city=0), "--sequences-per-city must be between 1")):
        with pytest.raises(InputError, match=message):
            synthesize(out, **kw)
    assert not out.exists() and files_under(tmp_path) == []
