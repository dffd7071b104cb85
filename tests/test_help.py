"""`roienc --help` stays light and says concrete things: building the parser imports none of the
heavy libraries (benchmarks/bench_help.py measures the time), the defaults it shows are those the
library uses, and it names no source-code internals."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from roienc.cli import build_parser

HEAVY = ("numpy", "pandas", "cv2", "av", "scipy", "matplotlib", "PIL", "tqdm", "dask",
         "cityscapesscripts", "bjontegaard", "spng")


def _imported_after(code: str) -> list[str]:
    """Top-level packages among HEAVY that ``code`` (run in a fresh interpreter) imported."""
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport json, sys\n"
         f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({list(HEAVY)!r}))))"],
        capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_building_the_parser_imports_no_heavy_library():
    assert _imported_after("from roienc.cli import build_parser; build_parser()") == []


@pytest.mark.parametrize("argv", [["--help"], ["sweep", "--help"], ["build-maps", "--help"],
                                  ["encode", "--help"], ["evaluate", "--help"], ["synth", "--help"],
                                  ["export", "--help"], ["demo", "--help"], ["doctor", "--help"]])
def test_help_imports_no_heavy_library(argv):
    code = ("import contextlib, io\nfrom roienc.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    try:\n        main({argv!r})\n    except SystemExit:\n        pass")
    assert _imported_after(code) == []


def _sub() -> dict:
    return next(a for a in build_parser()._actions
                if a.__class__.__name__ == "_SubParsersAction").choices


def _help(cmd: str) -> str:
    return " ".join(_sub()[cmd].format_help().split())


def _defaults(cmd: str) -> dict:
    return {a.dest: a.default for a in _sub()[cmd]._actions}


def test_help_defaults_are_the_librarys():
    from roienc.importance import ImportanceParams
    from roienc.maps import QPParams
    from roienc.propagate import PropagationParams
    for cmd in ("build-maps", "sweep"):
        d = _defaults(cmd)
        for params in (ImportanceParams(), QPParams()):
            for name, value in dataclasses.asdict(params).items():
                if (cmd, name) == ("sweep", "block_size"):    # the encoder config's, else the library's
                    assert d[name] is None and f"else {value}" in " ".join(_help(cmd).split())
                    continue
                if name in d:
                    assert d[name] == value, f"{cmd} --{name}: {d[name]!r} != {value!r}"
        text = _help(cmd)
        for name, value in dataclasses.asdict(PropagationParams()).items():
            shown = str(int(value)) if isinstance(value, bool) else (
                f"{value:g}" if isinstance(value, float) else str(value))
            assert f"{name}={shown}" in text, f"{cmd} --propagation does not show {name}={shown}"
    page = (Path(__file__).resolve().parents[1] / "docs" / "build-maps.md").read_text()
    row = next(line for line in page.splitlines() if line.startswith("| `--propagation"))
    for name, value in dataclasses.asdict(PropagationParams()).items():
        shown = str(int(value)) if isinstance(value, bool) else (
            f"{value:g}" if isinstance(value, float) else str(value))
        assert f"`{name}={shown}`" in row, f"docs/build-maps.md: --propagation lacks {name}={shown}"


def test_the_copied_constants_are_the_librarys():
    """Command modules keep copies of a few library constants (choices and bounds) so that
    --help does not import the library modules that define them."""
    import roienc.encode
    import roienc.export
    import roienc.synth
    from roienc.commands import encode, export, synth
    assert encode.MODES == roienc.encode.MODES and encode.ENGINES == roienc.encode.ENGINES
    assert export.CODEC == roienc.export.CODEC and export.FORMATS == roienc.export.FORMATS
    for name in ("MIN_SIDE", "MAX_SIDE", "MAX_PIXELS", "MAX_SEQUENCES"):
        assert getattr(synth, name) == getattr(roienc.synth, name), name


def test_sweep_help_names_the_rate_points_sweep_uses(monkeypatch, tmp_path):
    import roienc.sweep
    from roienc.commands.sweep import DEFAULT_CRFS

    class Seen(Exception):
        pass

    def seen(codec, modes, rates, *args):
        raise Seen(rates)
    monkeypatch.setattr(roienc.sweep, "check_encode_settings", seen)
    with pytest.raises(Seen) as exc:
        roienc.sweep.run_sweep(tmp_path, tmp_path / "run")
    rates = exc.value.args[0]
    assert [(r.control, r.value) for r in rates] == [("crf", v) for v in DEFAULT_CRFS]
    assert "CRF " + ",".join(map(str, DEFAULT_CRFS)) in _help("sweep")
    # vp9 and av1 (0..63 scales): their packaged configs' sweep_crf, which the help names
    from roienc.commands.sweep import SWEEP_CRFS_0_63
    for codec in ("vp9", "av1"):
        with pytest.raises(Seen) as exc:
            roienc.sweep.run_sweep(tmp_path, tmp_path / "run", codec=codec)
        assert [(r.control, r.value) for r in exc.value.args[0]] == [("crf", v) for v in SWEEP_CRFS_0_63]
    assert ",".join(map(str, SWEEP_CRFS_0_63)) + " for vp9 and av1" in " ".join(_help("sweep").split())
    from roienc.configs import load_config
    for codec in ("hevc", "h264"):                # no sweep_crf: the 0..51 default
        assert load_config(None, codec).sweep_crfs is None


def test_config_sweep_crf_is_checked(tmp_path):
    import roienc
    from roienc.configs import load_config
    from roienc.errors import InputError
    base = (Path(roienc.__file__).parent / "encoder_configs" / "vp9.toml").read_text()
    for bad, why in (("[30]", "at least 2"), ("[30, 30]", "at least 2"), ("[30, 70]", "sweep_crf"),
                     ('"30,36"', "at least 2")):
        cfg = tmp_path / "c.toml"
        cfg.write_text(base.replace("sweep_crf = [30, 36, 42, 48]", f"sweep_crf = {bad}"))
        with pytest.raises(InputError, match=why) as exc:
            load_config(str(cfg))
        assert str(cfg) in str(exc.value)


def test_preset_and_crf_defaults_come_from_the_packaged_configs():
    from roienc.configs import CODECS, load_config
    for codec in CODECS:
        cfg = load_config(None, codec)
        control, value = cfg.default_rate()
        for cmd in ("encode", "sweep"):
            text = _help(cmd)
            if cfg.preset:
                assert f"{cfg.preset} for " in text and codec in text
        assert f"{control.upper()} {value:g} for " in _help("encode")
    assert "medium for hevc and h264" in _help("encode")
    assert "CRF 28 for hevc and h264" in _help("encode")


@pytest.mark.parametrize("cmd", ["build-maps", "sweep", "encode", "evaluate", "export", "synth",
                                 "demo", "doctor"])
def test_help_names_no_internals(cmd):
    text = _help(cmd)
    for word in ("roienc.", "the seed", "the config's", "--roi-map-file", "Params"):
        assert word not in text, f"roienc {cmd} --help says {word!r}"


def test_jobs_and_workers_say_how_they_differ():
    sweep = _help("sweep")
    assert "the maps and the evaluation run in --workers processes" in sweep
    assert "how many encodes run at once is --jobs" in sweep
    assert "decoding and measuring the encodes, one encode each" in _help("evaluate")
    assert "processes building the maps" in _help("build-maps")


def test_sequences_help_says_when_it_matters():
    assert "roienc sweep builds them by itself" in _help("build-maps")
    assert "sweep builds them by itself when its clips are the snippets" in _help("sweep")


def test_synth_is_patchable_on_its_command_module(monkeypatch, tmp_path):
    """A test may replace what a command calls on the command's module (the library module is
    imported when the command runs, not when the parser is built)."""
    import roienc.commands.synth
    from roienc.cli import main
    calls = []

    def fake(*args, **kwargs):
        calls.append(kwargs)
        raise KeyboardInterrupt
    monkeypatch.setattr(roienc.commands.synth, "synthesize", fake)
    assert main(["synth", "--out", str(tmp_path / "x"), "--width", "64"]) == 130
    assert calls and calls[0]["width"] == 64 and not (tmp_path / "x").exists()
