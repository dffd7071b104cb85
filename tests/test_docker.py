"""The Dockerfile refers only to files that exist, and CI installs what the image installs."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "docker" / "Dockerfile"


def test_every_copied_file_exists():
    sources = []
    for line in DOCKERFILE.read_text().splitlines():
        m = re.match(r"\s*COPY\s+(?!--from)(.+)", line)
        if m:
            parts = m.group(1).split()
            sources += parts[:-1]
    assert sources, "no COPY lines found"
    missing = [s for s in sources if not (ROOT / s).exists()]
    assert not missing, f"Dockerfile copies missing paths: {missing}"


def test_ci_and_image_share_the_package_list():
    pkgs = [l for l in (ROOT / "docker" / "apt-packages.txt").read_text().splitlines()
            if l and not l.startswith("#")]
    assert {"ffmpeg", "x265"} <= set(pkgs)
    ci = (ROOT / ".ci" / "run").read_text()
    assert "docker/apt-packages.txt" in ci
    assert "apt-packages.txt" in DOCKERFILE.read_text()
    assert 'ENTRYPOINT ["roienc"]' in DOCKERFILE.read_text()
    assert re.search(r"^USER\s+(?!root)\w+", DOCKERFILE.read_text(), re.M)


def test_doctor_reports_the_engine_encode_would_use(monkeypatch):
    """ROIENC_FFMPEG set (as an image may set it) sends encodes through the FFmpeg CLI; doctor
    must say so, not 'pyav'."""
    import shutil

    import pytest

    from roienc.doctor import _engine_check
    from roienc.encode import inproc_versions
    ff = shutil.which("ffmpeg")
    if ff is None or inproc_versions() is None:
        pytest.skip("needs an FFmpeg on PATH and PyAV")
    monkeypatch.delenv("ROIENC_ENGINE", raising=False)
    monkeypatch.setenv("ROIENC_FFMPEG", ff)
    assert _engine_check(None).detail.startswith("ffmpeg:")
    monkeypatch.delenv("ROIENC_FFMPEG")
    assert _engine_check(None).detail.startswith("pyav:")


def test_the_image_encodes_with_the_engine_readme_measured():
    """README's figures come from the in-process engine: the image must not force the CLI."""
    assert "ROIENC_FFMPEG" not in DOCKERFILE.read_text().split("ENV", 1)[-1].split("USER")[0]


def test_ci_builds_and_runs_the_image():
    ci = (ROOT / ".ci" / "run").read_text()
    docker = (ROOT / ".ci" / "docker").read_text()
    assert "bash .ci/docker" in ci
    assert "podman build --pull=never" in docker.replace("$PODMAN", "podman")
    for step in ("roienc doctor", "roienc demo", "roienc sweep"):
        assert step in docker
