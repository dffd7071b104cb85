"""The exported ``.ffmpeg.sh`` runs without ffmpeg/x265 on PATH, with the FFmpeg roienc found,
and follows ``ROIENC_FFMPEG`` / ``ROIENC_X265`` when they are set."""
import os
import subprocess
from pathlib import Path

import pytest

from roienc.export import export
from roienc.tools import _bundled_ffmpeg, find_ffmpeg

pytestmark = pytest.mark.encode


def _run_script(script: Path, tmp_path: Path, **env) -> subprocess.CompletedProcess:
    empty = tmp_path / "empty-bin"            # PATH holds neither ffmpeg nor x265 (nor anything)
    empty.mkdir(exist_ok=True)
    base = {k: v for k, v in os.environ.items() if not k.startswith("ROIENC_")}
    return subprocess.run(["/bin/bash", str(script)], capture_output=True, text=True,
                          cwd=tmp_path, env={**base, "PATH": str(empty), **env})


def test_script_uses_found_ffmpeg_not_path(seq_dataset, tmp_path):
    root, maps = seq_dataset
    out = tmp_path / "ex"
    export(maps, out, "all", ["lindau_000000"], crf=30)
    script = out / "lindau_000000.ffmpeg.sh"
    text = script.read_text()
    ff = find_ffmpeg()
    assert f'FFMPEG="${{ROIENC_FFMPEG:-{ff.path}}}"' in text
    assert "\nffmpeg " not in text and '"$FFMPEG" ' in text
    proc = _run_script(script, tmp_path, ROIENC_X265=str(tmp_path / "no-x265"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (out / "lindau_000000.roi.mp4").stat().st_size > 0
    assert (out / "lindau_000000.zones.mp4").stat().st_size > 0
    assert "qpfile encode skipped" in proc.stderr
    assert not (out / "lindau_000000.qpfile.hevc").exists()


def test_script_follows_roienc_ffmpeg(seq_dataset, tmp_path):
    """An override by another FFmpeg (other major version: the filter-script option changes)."""
    root, maps = seq_dataset
    out = tmp_path / "ex"
    export(maps, out, "addroi", ["lindau_000000"], crf=30)
    found = find_ffmpeg().path
    other = next((p for p in (_bundled_ffmpeg(), "/usr/bin/ffmpeg")
                  if p and Path(p).is_file() and os.path.realpath(p) != os.path.realpath(found)), found)
    log = tmp_path / "calls.txt"
    wrapper = tmp_path / "my-ffmpeg"
    wrapper.write_text(f'#!/bin/bash\necho "$@" >> {log}\nexec {other} "$@"\n')
    wrapper.chmod(0o755)
    proc = _run_script(out / "lindau_000000.ffmpeg.sh", tmp_path, ROIENC_FFMPEG=str(wrapper))
    assert proc.returncode == 0, proc.stderr[-2000:]
    calls = log.read_text()
    assert "libx265" in calls and "lindau_000000.filter.txt" in calls
    assert (out / "lindau_000000.roi.mp4").stat().st_size > 0
