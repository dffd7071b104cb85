"""One class per encoder (roienc/encoders): the registry, the dispatcher that names no encoder, the
settings each class refuses because its encoder would ignore the ROI, and with real encodes of a
tiny snippet: an all-zero delta map gives the baseline's bytes and a non-zero map does not, for
every class that takes ROI; a new encoder is one class and a config TOML."""
import ast
import inspect
import json
from pathlib import Path

import pytest

import roienc.adapters
import roienc.configs
import roienc.encode
import roienc.encoders
from roienc.configs import load_config, packaged_configs
from roienc.dataset import find_clips
from roienc.encode import MODES, RatePoint, encode_many, validate_mode
from roienc.encoders import (ENCODERS, FFMPEG_ENCODERS, MODE_CONFIGS, Encoder, SvtAv1, Vp9, X264,
                             X265, X265Cli, encoder_for)
from roienc.encoders.base import job_input_args
from roienc.errors import InputError, ToolError
from roienc.fileio import atomic_path
from roienc.inproc import versions
from roienc.maps import QPParams, build_maps
from roienc.tools import run

ENGINES = ["ffmpeg"] + (["pyav"] if versions() else [])


def _svt_roi() -> str | None:
    """Why SvtAv1EncApp cannot encode with a ROI map here (None: it can)."""
    from roienc.encoders.svtav1 import locate_svtav1, roi_problem
    try:
        return roi_problem(locate_svtav1())
    except ToolError as exc:
        return str(exc).splitlines()[0]


# --- structure ----------------------------------------------------------------------------------

def test_registry_names_every_encoder_of_the_configs():
    assert set(ENCODERS) == set(roienc.configs.ENCODERS)
    for name, cls in ENCODERS.items():
        assert issubclass(cls, Encoder) and cls.name == name
        assert cls.codec == roienc.configs.ENCODERS[name]
        assert set(cls.modes) <= set(MODES) and "baseline" in cls.modes
    assert set().union(*(cls.modes for cls in ENCODERS.values())) == set(MODES)
    for name, path in packaged_configs().items():
        cfg = load_config(path)
        enc = encoder_for(cfg)
        assert type(enc) is ENCODERS[cfg.encoder] and enc.config is cfg, name
    assert {type(encoder_for(load_config(n))) for n in ("hevc", "h264", "vp9", "hevc_x265cli", "av1")} \
        == {X265, X264, Vp9, X265Cli, SvtAv1}
    assert FFMPEG_ENCODERS == {"hevc": "libx265", "h264": "libx264", "vp9": "libvpx-vp9"}
    assert MODE_CONFIGS == {"qpfile": "hevc_x265cli"}
    assert roienc.encode.INPROC_ENCODERS == ("libx265", "libx264", "libvpx-vp9")
    with pytest.raises(InputError, match="roienc drives"):
        roienc.encoders.encoder_class("libaom-av1")


def _code_strings(tree: ast.AST) -> list[str]:
    """The string constants of ``tree`` that are not docstrings."""
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef)) and n.body
            and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    return [n.value for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs]


def test_the_runner_names_no_encoder():
    """encode.py holds no per-encoder branch: no encoder's name appears in its code (docstrings
    and comments aside), and _encode is a short dispatcher."""
    tree = ast.parse(Path(roienc.encode.__file__).read_text())
    strings = _code_strings(tree)
    for name in ENCODERS:
        assert not [s for s in strings if s == name], f"encode.py branches on {name!r}"
    codecs = {"hevc", "h264", "vp9", "av1"}
    compared = [c.value for n in ast.walk(tree) if isinstance(n, ast.Compare)
                for c in ast.walk(n) if isinstance(c, ast.Constant)]
    assert not codecs & set(compared), "encode.py branches on a codec"
    src = inspect.getsource(roienc.encode._encode)
    assert len(src.splitlines()) < 20 and "encoder.encode(job, maps, side)" in src


def test_moved_names_still_import():
    from roienc import svtav1 as old_svt
    from roienc.encoders import svtav1, vp9, x26x
    assert roienc.adapters.check_roi_compatible is x26x.check_roi_compatible
    assert roienc.adapters.check_vp9_roi is vp9.check_vp9_roi
    assert roienc.adapters.vpx_delta_grids is vp9.vpx_delta_grids
    assert roienc.adapters.VPX_MAX_LEVELS == vp9.VPX_MAX_LEVELS == 7
    assert old_svt.locate_svtav1 is svtav1.locate_svtav1 and old_svt.roi_map_grids is svtav1.roi_map_grids
    with pytest.raises(AttributeError):
        roienc.adapters.no_such_name  # noqa: B018
    for name in ("EncodeJob", "RatePoint", "build_ffmpeg_cmd", "_x265_cli_args", "job_input_args",
                 "input_args", "concat_list_text", "run_pipeline", "FrameProgress", "frame_offsets",
                 "inproc_versions", "check_encoder_options", "settings_reference_is_baseline"):
        assert hasattr(roienc.encode, name), name


# --- what each class refuses --------------------------------------------------------------------

def _cfg(name: str, **change):
    cfg = load_config(name)
    cfg.params.update(change.pop("params", {}))
    for k, v in change.items():
        setattr(cfg, k, v)
    return cfg


CRF = RatePoint("crf", 30)
IGNORES_ROI = [          # config, its change, the rate, what the refusal names
    ("hevc", {"params": {"aq-mode": 0}}, CRF, "aq-mode=0"),
    ("hevc", {"params": {"aq-strength": 0}}, CRF, "aq-strength=0"),
    ("hevc", {"params": {"hevc-aq": 1}}, CRF, "hevc-aq"),
    ("hevc", {"preset": "ultrafast"}, CRF, "ultrafast"),
    ("hevc", {}, RatePoint("qp", 30), "constant-QP"),
    ("h264", {"params": {"aq-mode": 0}}, CRF, "aq-mode=0"),
    ("h264", {"tune": "grain"}, CRF, "tune grain"),
    ("h264", {"preset": "superfast"}, CRF, "superfast"),
    ("vp9", {"params": {"deadline": "good"}}, CRF, "deadline good"),
    ("vp9", {"params": {"cpu-used": 4}}, CRF, "cpu-used 4"),
    ("vp9", {"params": {"aq-mode": 3}}, CRF, "aq-mode 3"),
    ("vp9", {"params": {"lag-in-frames": 25}}, CRF, "lag-in-frames 25"),
]


@pytest.mark.parametrize("name,change,rate,why", IGNORES_ROI)
def test_each_class_refuses_settings_that_ignore_the_roi(name, change, rate, why):
    cfg = _cfg(name, **change)
    enc = encoder_for(cfg)
    for mode in ("roi", "roi-settings"):
        with pytest.raises(InputError, match=why):
            enc.check(mode, rate)
        with pytest.raises(InputError, match=why):
            validate_mode(cfg.codec, mode, rate, cfg)
    if rate.control != "qp" or name == "hevc":
        assert isinstance(enc.check("baseline", rate), list)     # the plain encoder still encodes


def test_each_class_refuses_what_it_does_not_drive():
    cases = [
        ("hevc_x265cli", "roi", CRF, False, "goes through FFmpeg"),
        ("hevc_x265cli", "baseline", RatePoint("bitrate", 500), True, "x265 CLI"),
        ("hevc", "qpfile", CRF, False, "hevc_x265cli"),
        ("h264", "zones", CRF, False, "x265-only"),
        ("vp9", "baseline", RatePoint("qp", 30), False, "CRF or bitrate only"),
        ("av1", "roi", RatePoint("qp", 30), False, "CRF or bitrate only"),
        ("av1", "baseline", RatePoint("bitrate", 500), True, "one pass"),
    ]
    for name, mode, rate, two_pass, why in cases:
        with pytest.raises(InputError, match=why):
            encoder_for(load_config(name)).check(mode, rate, two_pass)
    with pytest.raises(InputError, match="no presets"):
        encoder_for(_cfg("vp9", preset="fast")).check("baseline", CRF)
    assert encoder_for(load_config("hevc")).check("zones", CRF)            # B-frames: a warning
    assert encoder_for(load_config("hevc_x265cli")).check("qpfile", CRF) == []


# --- real encodes: the payload acts, and an all-zero map is the baseline ------------------------

@pytest.fixture(scope="module")
def zero_maps(seq_dataset, tmp_path_factory):
    root, _ = seq_dataset
    maps0 = tmp_path_factory.mktemp("maps0")
    build_maps(root, maps0, split="val", sequences=True, workers=1, progress=False,
               visualize_every=0, qp=QPParams(delta=0))
    return maps0


ROI_CLASSES = [pytest.param("hevc", "fast", 30, e, id=f"libx265-{e}") for e in ENGINES] + [
    pytest.param("h264", "fast", 30, e, id=f"libx264-{e}") for e in ENGINES] + [
    pytest.param("vp9", None, 40, e, id=f"libvpx-vp9-{e}") for e in ENGINES] + [
    pytest.param("av1", None, 50, "ffmpeg", id="SvtAv1EncApp",
                 marks=pytest.mark.skipif(_svt_roi() is not None, reason=f"no AV1 ROI: {_svt_roi()}"))]


@pytest.mark.encode
@pytest.mark.parametrize("codec,preset,crf,engine", ROI_CLASSES)
def test_zero_map_is_the_baseline_and_a_map_is_not(seq_dataset, zero_maps, tmp_path, codec, preset,
                                                   crf, engine):
    root, maps = seq_dataset
    clips = find_clips(root, "val")
    kw = dict(codec=codec, rates=[RatePoint("crf", crf)], preset=preset, progress=False,
              engine=engine, threads=1)
    zero = encode_many(clips, zero_maps, modes=["baseline", "roi"], out=tmp_path / "z", **kw)
    real = encode_many(clips, maps, modes=["roi"], out=tmp_path / "r", **kw)
    assert [r["status"] for r in zero + real] == ["ok"] * 3, [r["error"] for r in zero + real]
    base, roi0 = (tmp_path / "z" / codec / m / f"crf{crf}/lindau_000000.mp4" for m in ("baseline", "roi"))
    if (codec, engine) == ("h264", "pyav"):
        # libx264 in PyAV 18.1's FFmpeg is not bit-reproducible run to run (the same command gave
        # 9933 bytes once and 10046 seven times on a 192x96 clip, measured; Debian's FFmpeg CLI
        # and x264: the same bytes every time): the zero map must give the baseline's command.
        def argv(mp4):
            cmds = json.loads(mp4.with_suffix(".json").read_text())["commands"]
            return [[a for a in c if not a.endswith(".tmp.mp4")] for c in cmds]
        assert argv(roi0) == argv(base)
    else:
        assert base.read_bytes() == roi0.read_bytes()
    assert "all-zero" in zero[1]["adapter"]["note"]
    roi = tmp_path / "r" / codec / f"roi/crf{crf}/lindau_000000.mp4"
    assert roi.read_bytes() != base.read_bytes()             # the payload reached the encoder
    assert real[0]["engine"] == zero[0]["engine"]


# --- a new encoder: one class and its config ----------------------------------------------------

class Fake264(Encoder):
    """A stand-in for an encoder roienc does not know: the FFmpeg CLI with libx264, baseline only."""

    name = "fake264"
    codec = "h264"
    modes = ("baseline",)
    engine = "fake-cli"

    def encode(self, job, maps, side):
        with atomic_path(job.mp4) as tmp:
            cmd = [job.ffmpeg.path, "-hide_banner", "-nostdin", "-y", *job_input_args(job),
                   "-c:v", "libx264", "-preset", "ultrafast", "-crf", f"{job.rate.value:g}",
                   "-pix_fmt", self.config.pix_fmt, "-f", "mp4", str(tmp)]
            side["commands"].append(cmd)
            run(cmd, log_path=job.log_path)


@pytest.mark.encode
def test_a_new_encoder_is_one_class_and_a_config(seq_dataset, tmp_path, monkeypatch):
    root, _ = seq_dataset
    monkeypatch.setitem(roienc.encoders.ENCODERS, "fake264", Fake264)
    monkeypatch.setitem(roienc.configs.ENCODERS, "fake264", "h264")
    toml = tmp_path / "fake.toml"
    toml.write_text('name = "fake"\ncodec = "h264"\nencoder = "fake264"\npreset = ""\n'
                    '[rate]\ncontrol = "crf"\ncrf = 30\n')
    res = encode_many(find_clips(root, "val"), None, codec="h264", config=toml,
                      out=tmp_path / "e", progress=False, engine="ffmpeg")
    assert res[0]["status"] == "ok", res[0]["error"]
    assert res[0]["engine"] == "fake-cli" and res[0]["frames_encoded"] == 30
    with pytest.raises(InputError, match="fake264 takes baseline"):
        encode_many(find_clips(root, "val"), None, codec="h264", config=toml, modes=["roi"],
                    out=tmp_path / "e", progress=False, engine="ffmpeg")
