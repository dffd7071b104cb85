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
