"""Issue 11: reruns, resumes, interruptions and bad inputs never give silently wrong results.

Real FFmpeg/x265 encodes of tiny synthesized clips (192x96); mocks only where a failure cannot be
produced for real.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from roienc.cli import main as cli
from roienc.configs import load_config
from roienc.dataset import find_clips
from roienc.encode import RatePoint, encode_many
from roienc.errors import InputError
from roienc.evaluate import evaluate
from roienc.synth import synthesize

from conftest import decode_luma, psnr

pytestmark = pytest.mark.encode
FAST = dict(preset="ultrafast", progress=False)          # baseline-only encodes
CRF30 = [RatePoint("crf", 30)]


def _src_luma(png: Path) -> np.ndarray:
    """The luma FFmpeg makes of a PNG for a yuv420p encode."""
    with Image.open(png) as im:
        return decode_luma(png, im.width, im.height)[0]


@pytest.fixture(scope="module")
def frames_root(tmp_path_factory):
    """Two annotated frames per city, no sequences: the `--source frames` layout."""
    root = tmp_path_factory.mktemp("framescs") / "cs"
    synthesize(root, split="val", cities=("lindau",), sequences_per_city=2, width=192, height=96,
               seed=3, with_sequences=False)
    return root


# ---------------------------------------------------------------- item 4

def test_evaluate_compares_with_the_frames_encoded_not_the_cwd_dataset(seq_dataset, tmp_path,
                                                                       monkeypatch):
    root, maps = seq_dataset
    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(root, a / "cs")
    synthesize(b / "cs", split="val", cities=("lindau",), width=192, height=96, seed=5)
    enc = tmp_path / "enc"
    monkeypatch.chdir(a)                      # encode with a relative root
    assert cli(["encode", "--cityscapes-root", "cs", "--mode", "baseline", "--crf", "30",
                "--preset", "ultrafast", "--out", str(enc), "--no-progress"]) == 0
    assert cli(["evaluate", "--encoded", str(enc), "--maps", str(maps), "--report",
                str(tmp_path / "ra.csv"), "--no-progress"]) == 0
    monkeypatch.chdir(b)                      # another cs/ in the current directory
    assert cli(["evaluate", "--encoded", str(enc), "--maps", str(maps), "--report",
                str(tmp_path / "rb.csv"), "--no-progress"]) == 0
    ra, rb = pd.read_csv(tmp_path / "ra.csv"), pd.read_csv(tmp_path / "rb.csv")
    assert ra["psnr_y"].iloc[0] == rb["psnr_y"].iloc[0]
    side = json.loads(next(enc.rglob("lindau_000000.json")).read_text())
    assert Path(side["cityscapes_root"]).is_absolute() and all(Path(f).is_absolute()
                                                              for f in side["source_files"])
    # the dataset moved: --cityscapes-root finds the same frames there
    shutil.move(str(a / "cs"), str(tmp_path / "moved"))
    assert cli(["evaluate", "--encoded", str(enc), "--maps", str(maps), "--cityscapes-root",
                str(tmp_path / "moved"), "--report", str(tmp_path / "rc.csv"), "--no-progress"]) == 0
    assert pd.read_csv(tmp_path / "rc.csv")["psnr_y"].iloc[0] == ra["psnr_y"].iloc[0]
    # another dataset under --cityscapes-root, or none at the recorded place: refused, no row
    for extra in (["--cityscapes-root", str(b / "cs")], []):
        rep = tmp_path / "rd.csv"
        assert cli(["evaluate", "--encoded", str(enc), "--maps", str(maps), *extra,
                    "--report", str(rep), "--no-progress"]) != 0
        assert not rep.exists() or len(pd.read_csv(rep)) == 0


# ---------------------------------------------------------------- items 5 and 16

def test_frames_source_encodes_exactly_the_listed_frames(frames_root, tmp_path):
    folder = frames_root / "leftImg8bit" / "val" / "lindau"
    stray = folder / "aaa_copy_leftImg8bit.png"
    Image.new("RGB", (192, 96), (255, 255, 255)).save(stray)
    try:
        clips = find_clips(frames_root, "val", source="frames")
        assert len(clips) == 1 and len(clips[0].frame_ids) == 2
        res = encode_many(clips, None, modes=["baseline"], rates=CRF30, out=tmp_path,
                          cityscapes_root=frames_root, **FAST)[0]
        assert res["status"] == "ok", res["error"]
        dec = decode_luma(tmp_path / "hevc/baseline/crf30/lindau_frames.mp4", 192, 96)
        assert len(dec) == 2
        for i, png in enumerate(clips[0].image_paths):
            assert psnr(dec[i], _src_luma(png)) > 30
    finally:
        stray.unlink()


@pytest.mark.parametrize("name", ["100% real", "it's a:b"])
def test_odd_characters_in_the_dataset_path(seq_dataset, tmp_path, name):
    root, maps = seq_dataset
    cs = tmp_path / name / "cs"
    shutil.copytree(root, cs)
    enc = tmp_path / name / "enc"
    for source in ("sequence", "frames"):
        res = encode_many(find_clips(cs, "val", source=source), None, modes=["baseline"],
                          rates=CRF30, out=enc, cityscapes_root=cs, **FAST)
        assert [r["status"] for r in res] == ["ok"] * len(res), [r["error"] for r in res]
    df = evaluate(enc, maps, tmp_path / "r.csv", progress=False)
    assert not df.attrs["errors"] and sorted(df["clip"]) == ["lindau_000000", "lindau_frames"]
    assert ((25 < df["psnr_y"]) & (df["psnr_y"] < 60)).all()


# ---------------------------------------------------------------- item 6

def test_skip_existing_does_not_trust_a_truncated_or_stale_encode(seq_dataset, tmp_path):
    root, maps = seq_dataset
    cs = tmp_path / "cs"
    shutil.copytree(root, cs)
    clips = find_clips(cs, "val")
    kw = dict(modes=["baseline"], rates=CRF30, out=tmp_path / "enc", cityscapes_root=cs,
              skip_existing=True, **FAST)
    first = encode_many(clips, None, **kw)[0]
    mp4 = tmp_path / "enc/hevc/baseline/crf30/lindau_000000.mp4"
    assert encode_many(clips, None, **kw)[0].get("skipped_existing")
    data = mp4.read_bytes()
    mp4.write_bytes(data[:len(data) // 2])                 # a truncated file
    again = encode_many(clips, None, **kw)[0]
    assert not again.get("skipped_existing") and again["status"] == "ok"
    assert mp4.stat().st_size == again["bytes"] == first["bytes"]
    # the source frames changed since: encoded again
    frame = clips[0].image_paths[3]
    Image.new("RGB", (192, 96), (0, 0, 0)).save(frame)
    third = encode_many(clips, None, **kw)[0]
    assert not third.get("skipped_existing") and third["source_digest"] != first["source_digest"]


# ---------------------------------------------------------------- item 7

def _config(tmp_path: Path, rate: str, params: str = "log-level = \"error\"") -> Path:
    p = tmp_path / "my.toml"
    p.write_text(f'encoder = "libx265"\npreset = "ultrafast"\n[rate]\n{rate}\n[params]\n{params}\n')
    return p


def test_config_rate_section_is_the_default_rate_point(seq_dataset, tmp_path):
    root, _ = seq_dataset
    clips = find_clips(root, "val")
    cfg = _config(tmp_path, "crf = 18")
    assert cli(["encode", "--cityscapes-root", str(root), "--mode", "baseline", "--config", str(cfg),
                "--out", str(tmp_path / "e1"), "--no-progress"]) == 0
    side = json.loads((tmp_path / "e1/hevc/baseline/crf18/lindau_000000.json").read_text())
    assert side["rate_value"] == 18 and side["commands"][0][side["commands"][0].index("-crf") + 1] == "18"
    cfg = _config(tmp_path, 'control = "bitrate"\nbitrate = "150k"')
    res = encode_many(clips, None, modes=["baseline"], config=cfg, out=tmp_path / "e2",
                      progress=False)[0]
    assert res["rate_control"] == "bitrate" and res["rate_value"] == 150 and "-b:v" in res["commands"][0]
    # an explicit rate point still wins; a bad [rate] section is refused naming the file
    res = encode_many(clips, None, modes=["baseline"], config=cfg, rates=CRF30, out=tmp_path / "e3",
                      progress=False)[0]
    assert res["rate_label"] == "crf30"
    for bad in ("crf = 99", 'control = "cbr"', "crf = true", "crf = nan", "speed = 3"):
        with pytest.raises(InputError, match="my.toml"):
            load_config(_config(tmp_path, bad))


# ---------------------------------------------------------------- items 14 and 21

@pytest.mark.parametrize("opt", [["--bitrate", "0"], ["--bitrate", "-5"], ["--bitrate", "abc"],
                                 ["--bitrate", "inf"], ["--crf", "52"], ["--crf", "-1"],
                                 ["--crf", "nan"], ["--crf", "inf"], ["--crf", ""],
                                 ["--crf", "28,abc"], ["--qp", "99"], ["--mode", ""]])
def test_bad_rate_and_mode_options_are_one_line_usage_errors(seq_dataset, tmp_path, capsys, opt):
    root, maps = seq_dataset
    args = ["encode", "--cityscapes-root", str(root), "--maps", str(maps), "--mode", "baseline",
            "--out", str(tmp_path / "e"), "--no-progress"]
    if opt[0] == "--mode":
        args[args.index("--mode") + 1] = opt[1]
    else:
        args += opt
    with pytest.raises(SystemExit) as ei:
        cli(args)
    assert ei.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("roienc encode: error:")
    assert not (tmp_path / "e").exists()


def test_library_refuses_empty_modes_rates_and_out_of_range_crf(seq_dataset, tmp_path):
    root, maps = seq_dataset
    clips = find_clips(root, "val")
    for kw in (dict(modes=[]), dict(rates=[]), dict(rates=[RatePoint("crf", float("nan"))]),
               dict(rates=[RatePoint("crf", 60)]), dict(rates=[RatePoint("bitrate", 0)])):
        with pytest.raises(InputError):
            encode_many(clips, maps, out=tmp_path / "e", progress=False, **{"modes": ["baseline"], **kw})


# ---------------------------------------------------------------- items 8, 18, 19 (evaluate)

@pytest.fixture
def two_encodes(seq_dataset, tmp_path):
    root, maps = seq_dataset
    enc = tmp_path / "enc"
    res = encode_many(find_clips(root, "val"), None, modes=["baseline"],
                      rates=[RatePoint("crf", 30), RatePoint("crf", 40)], out=enc,
                      cityscapes_root=root, **FAST)
    assert [r["status"] for r in res] == ["ok", "ok"]
    return maps, enc, enc / "hevc/baseline/crf30/lindau_000000.json"


def _evaluate_cli(maps, enc, report) -> int:
    return cli(["evaluate", "--encoded", str(enc), "--maps", str(maps), "--report", str(report),
                "--no-progress"])


@pytest.mark.parametrize("damage", ["not json", "missing key", "truncated mp4"])
def test_evaluate_failures_are_reported_and_exit_nonzero(two_encodes, tmp_path, capsys, caplog,
                                                        damage):
    maps, enc, side = two_encodes
    if damage == "not json":
        side.write_text("{ this is not json")
    elif damage == "missing key":
        d = json.loads(side.read_text())
        del d["width"]
        side.write_text(json.dumps(d))
    else:
        mp4 = side.with_suffix(".mp4")
        mp4.write_bytes(mp4.read_bytes()[:2000])
    report = tmp_path / "r.csv"
    assert _evaluate_cli(maps, enc, report) == 1
    out = capsys.readouterr()
    assert "Traceback" not in out.err and "1 FAILED" in out.out and str(side) in caplog.text
    df = pd.read_csv(report)
    assert list(df["rate_value"]) == [40]
    prov = json.loads(report.with_suffix(".json").read_text())
    assert [e["sidecar"] for e in prov["errors"]] == [str(side)]


def test_evaluate_report_path_checked_before_any_work(two_encodes, tmp_path, capsys):
    maps, enc, side = two_encodes
    for bad in (tmp_path / "x.json", tmp_path):
        assert _evaluate_cli(maps, enc, bad) == 2
        assert "--report" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def test_evaluate_interrupted_keeps_what_it_measured(two_encodes, tmp_path, monkeypatch):
    import roienc.evaluate as ev
    maps, enc, side = two_encodes
    real, calls = ev._safe_eval, []

    def interrupted_after_one(task):
        calls.append(task)
        if len(calls) == 2:
            raise KeyboardInterrupt              # Ctrl-C during the second evaluation
        return real(task)

    monkeypatch.setattr(ev, "_safe_eval", interrupted_after_one)
    with pytest.raises(KeyboardInterrupt):
        evaluate(enc, maps, tmp_path / "r.csv", progress=False)
    assert len(pd.read_csv(tmp_path / "r.csv")) == 1


# ---------------------------------------------------------------- item 9 (readers: encode, evaluate)

def test_a_corrupt_map_file_fails_its_clip_with_a_reason_not_a_traceback(seq_dataset, tmp_path,
                                                                         capsys, caplog):
    root, maps = seq_dataset
    m = tmp_path / "maps"
    shutil.copytree(maps, m)
    qp = next(m.rglob("lindau_000000_000005_qp_map.npy"))
    qp.write_bytes(qp.read_bytes()[:70])                     # truncated
    enc = tmp_path / "enc"
    assert cli(["encode", "--cityscapes-root", str(root), "--maps", str(m), "--mode", "roi",
                "--crf", "30", "--preset", "fast", "--out", str(enc), "--no-progress"]) == 1
    out = capsys.readouterr()
    assert "Traceback" not in out.err and "damaged QP map" in out.out and "encode: 0/1 ok" in out.out
    side = json.loads((enc / "hevc/roi/crf30/lindau_000000.json").read_text())
    assert side["status"] == "skipped" and str(qp) in side["error"]
    # evaluate with an empty / non-finite importance map: that encode fails, the others are kept
    encode_many(find_clips(root, "val"), None, modes=["baseline"], rates=CRF30, out=enc,
                cityscapes_root=root, **FAST)
    imp = next(m.rglob("lindau_000000_000007_importance.npz"))
    for damage in (b"", None):
        if damage is None:
            np.savez(imp, importance=np.full((96, 192), np.nan, np.float32))
        else:
            imp.write_bytes(damage)
        caplog.clear()
        assert _evaluate_cli(m, enc, tmp_path / "r.csv") == 2        # its only encode failed
        err = capsys.readouterr().err
        assert "Traceback" not in err and str(imp) in err + caplog.text


# ---------------------------------------------------------------- item 10

@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_atomic_outputs_get_the_umask_mode(tmp_path, umask):
    import os
    from roienc.fileio import write_json
    old = os.umask(umask)
    try:
        p = write_json(tmp_path / "x.json", {"a": 1})
        with open(tmp_path / "plain", "w"):
            pass
    finally:
        os.umask(old)
    assert p.stat().st_mode & 0o777 == (tmp_path / "plain").stat().st_mode & 0o777 == 0o666 & ~umask


def test_encode_outputs_are_readable_by_others(seq_dataset, tmp_path):
    import os
    root, _ = seq_dataset
    old = os.umask(0o022)
    try:
        encode_many(find_clips(root, "val"), None, modes=["baseline"], rates=CRF30,
                    out=tmp_path, cityscapes_root=root, **FAST)
    finally:
        os.umask(old)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert {p.suffix for p in files} >= {".mp4", ".json", ".log"}
    assert all(p.stat().st_mode & 0o044 == 0o044 for p in files), [
        (p.name, oct(p.stat().st_mode)) for p in files]


# ---------------------------------------------------------------- item 11

@pytest.fixture
def bad_binaries(tmp_path):
    noexec = tmp_path / "ffmpeg-noexec"
    noexec.write_text("#!/bin/sh\nexit 0\n")
    noexec.chmod(0o644)
    folder = tmp_path / "bindir"
    folder.mkdir()
    return {"not executable": noexec, "a directory": folder}


@pytest.mark.parametrize("how", ["option", "env"])
def test_unusable_ffmpeg_or_x265_is_a_one_line_error(seq_dataset, tmp_path, capsys, monkeypatch,
                                                     bad_binaries, how):
    from roienc.tools import find_ffmpeg as ff, find_x265
    root, maps = seq_dataset
    for why, path in bad_binaries.items():
        ff.cache_clear()
        find_x265.cache_clear()
        args = ["encode", "--cityscapes-root", str(root), "--mode", "baseline", "--out",
                str(tmp_path / "e"), "--no-progress"]
        if how == "option":
            args += ["--ffmpeg", str(path)]
        else:
            monkeypatch.setenv("ROIENC_FFMPEG", str(path))
        assert cli(args) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and why in err and str(path) in err
        dargs = ["doctor", "--ffmpeg", str(path)] if how == "option" else ["doctor"]
        assert cli(dargs) == 1
        out = capsys.readouterr()
        assert "Traceback" not in out.err and why in out.out
        monkeypatch.delenv("ROIENC_FFMPEG", raising=False)
        ff.cache_clear()
        # the x265 CLI of qpfile mode
        xargs = ["encode", "--cityscapes-root", str(root), "--maps", str(maps), "--mode", "qpfile",
                 "--out", str(tmp_path / "e"), "--no-progress"]
        if how == "option":
            xargs += ["--x265", str(path)]
        else:
            monkeypatch.setenv("ROIENC_X265", str(path))
        assert cli(xargs) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and why in err
        assert cli(["doctor"] + (["--x265", str(path)] if how == "option" else [])) == 0
        out = capsys.readouterr()
        assert "Traceback" not in out.err and why in out.out
        monkeypatch.delenv("ROIENC_X265", raising=False)
    ff.cache_clear()
    find_x265.cache_clear()


# ---------------------------------------------------------------- item 13

@pytest.mark.parametrize("codec,params,line", [
    ("hevc", "aq-mod = 0", "Unknown option: aq-mod"),
    ("hevc", 'aq-mode = "abc"', "Invalid value for aq-mode"),
    ("h264", "aq-mod = 0", "Error parsing option 'aq-mod = 0'")])
@pytest.mark.parametrize("engine", ["auto", "ffmpeg"])
def test_unknown_encoder_params_are_refused_before_encoding(seq_dataset, tmp_path, capsys,
                                                            monkeypatch, codec, params, line,
                                                            engine):
    root, _ = seq_dataset
    monkeypatch.setenv("ROIENC_ENGINE", engine)
    cfg = tmp_path / "typo.toml"
    enc = "libx265" if codec == "hevc" else "libx264"
    cfg.write_text(f'encoder = "{enc}"\npreset = "ultrafast"\n[params]\n{params}\n')
    assert cli(["encode", "--codec", codec, "--cityscapes-root", str(root), "--mode", "baseline",
                "--config", str(cfg), "--out", str(tmp_path / "e"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert line in err and "typo.toml" in err
    assert not list((tmp_path / "e").rglob("*.mp4"))


# ---------------------------------------------------------------- item 15

@pytest.mark.parametrize("codec", ["hevc", "h264"])
def test_two_pass_with_quote_colon_and_equals_in_the_output_path(seq_dataset, tmp_path, codec):
    root, _ = seq_dataset
    out = tmp_path / "it's a:b=c"
    res = encode_many(find_clips(root, "val"), None, codec=codec, modes=["baseline"],
                      rates=[RatePoint("bitrate", 200)], two_pass=True, out=out,
                      cityscapes_root=root, **FAST)[0]
    assert res["status"] == "ok", res["error"]
    assert len(res["commands"]) == 2 and res["frames_encoded"] == 30
    log2 = (out / codec / "baseline/bitrate200k/lindau_000000.pass2.log").read_text()
    assert "stats" not in log2.lower() or "fail" not in log2.lower()
    assert not [p for p in out.rglob("*") if ".2pass." in p.name or ".tmp" in p.name]


# ---------------------------------------------------------------- item 17

def test_non_utf8_bytes_in_dataset_and_encoded_paths(seq_dataset, tmp_path):
    import os
    root, maps = seq_dataset
    base = Path(os.fsdecode(os.fsencode(str(tmp_path)) + b"/data\xff"))
    cs = base / "cs"
    shutil.copytree(root, cs)
    enc = Path(os.fsdecode(os.fsencode(str(tmp_path)) + b"/enc\xfe"))
    for source in ("sequence", "frames"):
        assert cli(["encode", "--cityscapes-root", str(cs), "--mode", "baseline", "--source", source,
                    "--preset", "ultrafast", "--out", str(enc), "--no-progress"]) == 0
    report = enc / "r.csv"
    assert cli(["evaluate", "--encoded", str(enc), "--maps", str(maps), "--report", str(report),
                "--no-progress"]) == 0
    df = pd.read_csv(report, encoding_errors="surrogateescape")
    assert len(df) == 2 and all(Path(p).is_file() for p in df["sidecar"])
    assert report.with_suffix(".json").is_file()
    # the rows are found again for --skip-existing
    assert cli(["evaluate", "--encoded", str(enc), "--maps", str(maps), "--report", str(report),
                "--no-progress", "--skip-existing"]) == 0
    assert len(pd.read_csv(report, encoding_errors="surrogateescape")) == 2


# ---------------------------------------------------------------- item 20

def test_temporaries_of_a_hard_killed_run_are_removed_by_the_next(seq_dataset, tmp_path):
    import os
    import sys
    import time
    root, _ = seq_dataset
    folder = tmp_path / "hevc/baseline/crf30"
    folder.mkdir(parents=True)
    # a process killed with SIGKILL inside atomic_path (as ffmpeg writes the mp4), and a 2-pass folder
    code = ("import os, signal, sys\nfrom pathlib import Path\nfrom roienc.fileio import atomic_path, temp_tag\n"
            "f = Path(sys.argv[1])\n(f / ('.lindau_000000.2pass.' + temp_tag() + '.x')).mkdir()\n"
            "with atomic_path(f / 'lindau_000000.mp4') as tmp:\n"
            "    tmp.write_bytes(b'partial')\n    os.kill(os.getpid(), signal.SIGKILL)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(folder)])
    assert proc.returncode == -9
    left = sorted(p.name for p in folder.iterdir())
    assert len(left) == 2 and all(n.startswith(".lindau_000000.") for n in left)
    legacy = folder / ".lindau_000000.abcd1234.tmp.mp4"        # untagged, of an older version
    legacy.write_bytes(b"x")
    os.utime(legacy, (time.time() - 7200,) * 2)
    from roienc.fileio import temp_tag
    mine = folder / f".other.{temp_tag()}.abcdefgh.tmp.mp4"
    mine.write_bytes(b"x")
    res = encode_many(find_clips(root, "val"), None, modes=["baseline"], rates=CRF30, out=tmp_path,
                      cityscapes_root=root, **FAST)[0]
    assert res["status"] == "ok"
    hidden = sorted(p.name for p in folder.iterdir() if p.name.startswith("."))
    assert hidden == [mine.name]


# ---------------------------------------------------------------- items 12 and 19 (pool workers)

POOL_SCRIPT = r'''
import os, sys, time
from pathlib import Path
from roienc.executor import ExecutorSpec, run_tasks
from roienc.tools import run

OUT = Path(sys.argv[1])

def task(i):
    (OUT / f"started.{i}.{os.getpid()}").write_text("")
    run(["sleep", "30"])                 # an encoder that runs for a while
    (OUT / f"finished.{i}").write_text("")
    return i

if __name__ == "__main__":
    (OUT / "main.pid").write_text(str(os.getpid()))
    for _ in run_tasks(task, range(8), ExecutorSpec("local", 2), progress=False):
        pass
'''


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("sig", ["SIGKILL", "SIGINT"])
def test_pool_workers_stop_with_the_main_process(tmp_path, sig):
    import os
    import signal
    import sys
    import time
    script = tmp_path / "pool.py"
    script.write_text(POOL_SCRIPT)
    main = subprocess.Popen([sys.executable, str(script), str(tmp_path)], stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        deadline = time.time() + 30
        while len(list(tmp_path.glob("started.*"))) < 2 and time.time() < deadline:
            time.sleep(0.1)
        started = list(tmp_path.glob("started.*"))
        assert len(started) == 2
        workers = [int(p.name.split(".")[2]) for p in started]

        def children() -> list[int]:         # each worker's encoder, once it runs
            return [int(x) for w in workers for x in
                    open(f"/proc/{w}/task/{w}/children").read().split()]
        deadline = time.time() + 30          # a loaded machine may take a while to start them
        while len(sleeps := children()) < 2 and time.time() < deadline:
            time.sleep(0.1)
        assert len(sleeps) == 2
        main.send_signal(getattr(signal, sig))        # to the main pid only, not the group
        main.wait(timeout=60)
        deadline = time.time() + 30
        while any(map(_alive, workers + sleeps)) and time.time() < deadline:
            time.sleep(0.1)
        assert not [p for p in workers + sleeps if _alive(p)]
        time.sleep(1)
        assert len(list(tmp_path.glob("started.*"))) == 2       # no queued task started
        assert not list(tmp_path.glob("finished.*"))
    finally:
        try:
            os.killpg(main.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        main.wait()


def test_qpfile_pipeline_is_stopped_when_interrupted(tmp_path):
    """run_pipeline (FFmpeg | x265 in qpfile mode) kills both sides on Ctrl-C to roienc only."""
    import os
    import signal
    import sys
    import time
    code = ("import os, sys\nfrom roienc.encode import run_pipeline\n"
            "open(sys.argv[1], 'w').write(str(os.getpid()))\n"
            "run_pipeline(['sleep', '30'], ['sleep', '31'])\n")
    pidfile = tmp_path / "pid"
    main = subprocess.Popen([sys.executable, "-c", code, str(pidfile)], stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        def running() -> list[int]:
            """Both sides exec'd and roienc waiting on them (not still inside a launch: an
            interrupt between fork and Popen's return would leave that side unknown to it)."""
            try:
                kids = [int(x) for x in open(f"/proc/{main.pid}/task/{main.pid}/children").read().split()]
                execd = all(open(f"/proc/{k}/cmdline", "rb").read().startswith(b"sleep") for k in kids)
                wchan = open(f"/proc/{main.pid}/wchan").read().strip()
            except OSError:
                return []
            return kids if len(kids) == 2 and execd and wchan in ("do_wait", "0", "") else []
        deadline = time.time() + 30
        while not (kids := running()) and time.time() < deadline:
            time.sleep(0.05)
        assert len(kids) == 2
        main.send_signal(signal.SIGINT)
        main.wait(timeout=60)
        deadline = time.time() + 30          # a loaded machine may take a moment to reap them
        while any(map(_alive, kids)) and time.time() < deadline:
            time.sleep(0.1)
        assert not [k for k in kids if _alive(k)]
    finally:
        try:
            os.killpg(main.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        main.wait()


@pytest.mark.parametrize("command,hint", [("sweep", "rerun the same command"),
                                          ("encode", "--skip-existing"),
                                          ("evaluate", "--skip-existing")])
def test_interrupt_message_names_a_resume_the_command_accepts(monkeypatch, capsys, command, hint):
    import roienc.cli as rc
    parser = rc.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, __import__("argparse")._SubParsersAction))
    accepts_skip = any("--skip-existing" in a.option_strings for a in sub.choices[command]._actions)

    def interrupted(args):
        raise KeyboardInterrupt
    real = rc.build_parser

    def patched():
        p = real()
        for a in p._actions:
            if hasattr(a, "choices") and isinstance(a.choices, dict):
                a.choices[command].set_defaults(func=interrupted)
        return p
    monkeypatch.setattr(rc, "build_parser", patched)
    req = {"sweep": ["--cityscapes-root", "x", "--out", "y"],
           "encode": ["--cityscapes-root", "x", "--mode", "baseline", "--out", "y"],
           "evaluate": ["--encoded", "x", "--maps", "y", "--report", "r.csv"]}[command]
    assert rc.main([command, *req]) == 130
    err = capsys.readouterr().err
    assert hint in err and ("--skip-existing" not in err or accepts_skip)
