"""The maps' block size a sweep uses without --block-size comes from the encoder config's
``[roi] block_size``: 16 for libx264 (its macroblock, measured better than 32 on the six real
clips), the library's 32 for the others; a given --block-size always wins."""
import json

import pytest

from roienc.cli import build_parser
from roienc.cli import main as cli
from roienc.commands.sweep import resolve_block_size
from roienc.configs import load_config
from roienc.errors import InputError


def _args(*extra):
    return build_parser().parse_args(["sweep", "--cityscapes-root", "R", "--out", "O", *extra])


@pytest.mark.parametrize("extra,expected", [
    (["--codec", "h264"], [16]),
    (["--codec", "hevc"], [32]),
    (["--codec", "vp9"], [32]),
    (["--codec", "av1"], [32]),
    ([], [32]),
    (["--codec", "h264", "--block-size", "32"], [32]),
    (["--codec", "h264", "--block-size", "16,32"], [16, 32]),
])
def test_block_size_follows_the_codec_unless_given(extra, expected):
    args = _args(*extra)
    resolve_block_size(args)
    assert args.block_size == expected


def test_a_config_without_a_block_size_gets_the_librarys(tmp_path):
    cfg = tmp_path / "my264.toml"
    cfg.write_text('encoder = "libx264"\n[params]\naq-mode = 1\n')
    args = _args("--codec", "h264", "--config", str(cfg))
    resolve_block_size(args)
    assert args.block_size == [32]


@pytest.mark.parametrize("value", ["15", "0", "128", "true", '"16"', "16.0"])
def test_a_bad_block_size_in_a_config_names_the_file(tmp_path, value):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(f'encoder = "libx264"\n[roi]\nblock_size = {value}\n')
    with pytest.raises(InputError, match=r"bad\.toml: \[roi\] block_size must be an even number"):
        load_config(str(cfg))
    cfg.write_text('encoder = "libx264"\n[roi]\nblock = 16\n')
    with pytest.raises(InputError, match=r"\[roi\] takes only qp_scale .* and block_size"):
        load_config(str(cfg))


def test_the_packaged_configs_say_it():
    assert load_config("h264").map_block_size == 16
    assert all(load_config(n).map_block_size is None for n in ("hevc", "hevc_x265cli", "vp9", "av1"))
    block = next(a for a in build_parser()._subparsers._group_actions[0].choices["sweep"]._actions
                 if a.dest == "block_size")
    assert block.default is None and "16 for h264, 32 for the others" in block.help


@pytest.mark.encode
def test_an_h264_sweep_builds_16_px_maps_and_records_them(tmp_path, capsys):
    from roienc.synth import synthesize
    root = tmp_path / "cs"
    synthesize(root, width=192, height=96, seed=1)
    run = tmp_path / "run"
    assert cli(["sweep", "--cityscapes-root", str(root), "--split", "val", "--codec", "h264",
                "--modes", "baseline,roi", "--crf", "24,30,36,42", "--preset", "fast",
                "--out", str(run), "--no-progress", "--workers", "1", "--no-settings-reference"]) == 0
    (maps,) = list((run / "maps").iterdir())
    assert maps.name.startswith("b16-")
    assert json.loads((maps / "params.json").read_text())["qp"]["block_size"] == 16
    manifest = json.loads((run / "sweep.json").read_text())
    assert manifest["qp_combinations"][maps.name]["block_size"] == 16
    (sidecar,) = [p for p in (run / "enc").rglob("h264/roi/crf24/*.json")
                  if not p.name.endswith(".roi.json")]
    side = json.loads(sidecar.read_text())
    assert side["status"] == "ok" and "qg-size" not in " ".join(side["commands"][0])
