"""The errors a newcomer hits get one clear line: FFmpeg without libx265, no FFmpeg at all,
an output folder that cannot be created. (A root that is not Cityscapes and an empty city filter
are covered in test_build_maps.py.)"""
import os

import pytest

from roienc import tools
from roienc.cli import main as cli
from roienc.errors import ToolError

FAKE_FFMPEG = """#!/bin/sh
case "$*" in
  *-version*)  echo "ffmpeg version 4.4-fake Copyright (c) the FFmpeg developers" ;;
  *-encoders*) printf ' V....D libx264              libx264 H.264\\n V....D mpeg4                MPEG-4 part 2\\n' ;;
  *-filters*)  printf ' ... null              V->V       Pass the source unchanged.\\n' ;;
esac
exit 0
"""


@pytest.fixture
def ffmpeg_without_x265(tmp_path, monkeypatch):
    """A PATH whose only ffmpeg lacks libx265 (a stand-in binary: a real one without libx265
    cannot be installed beside Debian's here)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "ffmpeg"
    fake.write_text(FAKE_FFMPEG)
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}/usr/bin/nonexistent")
    monkeypatch.delenv("ROIENC_FFMPEG", raising=False)
    tools.find_ffmpeg.cache_clear()
    yield fake
    tools.find_ffmpeg.cache_clear()


def test_ffmpeg_without_libx265_falls_back_to_the_bundled_one(ffmpeg_without_x265):
    tool = tools.find_ffmpeg()
    assert tool.source == "imageio-ffmpeg" and "libx265" in tool.encoders


def test_no_usable_ffmpeg_says_what_to_install(ffmpeg_without_x265, monkeypatch):
    # the imageio-ffmpeg wheel is installed here, so its absence can only be simulated
    monkeypatch.setattr(tools, "_bundled_ffmpeg", lambda: None)
    with pytest.raises(ToolError) as exc:
        tools.find_ffmpeg()
    msg = str(exc.value)
    assert "built without libx265" in msg and str(ffmpeg_without_x265) in msg
    assert "apt-get install ffmpeg" in msg and "ROIENC_FFMPEG" in msg


def test_output_folder_that_cannot_be_created(seq_dataset, tmp_path, capsys):
    root, _ = seq_dataset
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    code = cli(["build-maps", "--cityscapes-root", str(root), "--out", str(blocker / "maps"),
                "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert "cannot create output folder" in err and "writable --out" in err
    assert "Traceback" not in err
