"""The Dockerfile refers only to files that exist, CI installs what the image installs, the image's
pins and its FFmpeg CLI give README's build and figures."""
import os
import re
from pathlib import Path

import numpy as np
import pytest

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
    # the demo's figures in the image are compared with the same demo outside it
    assert "python3 -m roienc demo" in docker and "assert_frame_equal" in docker


def test_the_image_has_the_svtav1_ci_has():
    """SVT-AV1 with --roi-map-file in the image as in CI: the Dockerfile runs .ci/svtav1 (which
    .ci/run runs too), copies its tree and wrapper to the image, and leaves Debian 12's svt-av1
    1.4.1 (still in the shared package list for CI's first steps) out; .ci/docker checks doctor's
    line and an AV1 ROI encode in the image."""
    dockerfile = DOCKERFILE.read_text()
    assert "bash .ci/svtav1" in (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^COPY \.ci/svtav1 ", dockerfile, re.M)
    assert re.search(r"^RUN bash /tmp/svtav1 /opt/svtav1-trixie /usr/local/bin$", dockerfile, re.M)
    assert "COPY --from=build /opt/svtav1-trixie /opt/svtav1-trixie" in dockerfile
    assert "COPY --from=build /usr/local/bin/SvtAv1EncApp /usr/local/bin/SvtAv1EncApp" in dockerfile
    assert "grep -vxE 'ffmpeg|svt-av1'" in dockerfile
    docker = (ROOT / ".ci" / "docker").read_text()
    assert "SVT-AV1 2\\.3\\.0, with --roi-map-file" in docker
    assert "--codec av1" in docker and '"--roi-map-file" in cmd' in docker


def _pyav_planes(av, container, pix_fmt: str, frames: int) -> bytes:
    """``frames`` frames of ``container`` through PyAV's ``format=<pix_fmt>`` (the in-process
    engine's conversion), as the CLI's rawvideo lays them out (planes, no row padding)."""
    stream = container.streams.video[0]
    g = av.filter.Graph()
    g.link_nodes(g.add_buffer(template=stream), g.add("format", pix_fmt), g.add("buffersink"))
    g.configure()
    out = bytearray()
    for i, frame in enumerate(container.decode(stream)):
        if i == frames:
            break
        g.push(frame)
        conv = g.pull()
        bps = 2 if pix_fmt.endswith("le") else 1
        for p in conv.planes:
            rows = np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)
            out += rows[:, :p.width * bps].tobytes()
    return bytes(out)


@pytest.fixture(scope="module")
def png_clip(tmp_path_factory):
    """Four 98x66 RGB PNG frames: noise over colour ramps (every RGB -> YUV path is used)."""
    from PIL import Image
    d = tmp_path_factory.mktemp("pngclip")
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:66, 0:98]
    for i in range(4):
        base = np.stack([xx * 2.6, yy * 3.8, (xx + yy + 40 * i) % 256], -1)
        rgb = np.clip(base + rng.normal(0, 30, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(rgb).save(d / f"c_{i:06d}_leftImg8bit.png")
    return d


@pytest.mark.encode
@pytest.mark.parametrize("pix_fmt", ["yuv420p", "yuv420p10le", "yuv444p"])
def test_the_cli_converts_sources_as_pyav_does(png_clip, pix_fmt):
    """Evaluation's reference frames (the FFmpeg CLI roienc finds: Debian's, or imageio-ffmpeg's
    as in the image) are the very frames the in-process engine encoded (PyAV's FFmpeg): the same
    bytes, so no FFmpeg build moves a PSNR. The image's choice of CLI rests on this."""
    av = pytest.importorskip("av")
    from roienc.evaluate import _source_cmd
    from roienc.tools import find_ffmpeg, run
    pattern = str(png_clip / "c_%06d_leftImg8bit.png")
    args = ["-framerate", "17", "-start_number", "0", "-i", pattern, "-frames:v", "4"]
    cli = run(_source_cmd(find_ffmpeg().path, {"input_args": args, "pix_fmt": pix_fmt})).stdout
    with av.open(pattern, format="image2", options={"framerate": "17", "start_number": "0"}) as c:
        ref = _pyav_planes(av, c, pix_fmt, 4)
    assert len(cli) == len(ref) > 0
    assert cli == ref


@pytest.mark.encode
def test_the_cli_decodes_as_pyav_does(png_clip, tmp_path):
    """A libx265 encode made in-process decodes to the same pixels through the FFmpeg CLI
    (evaluate's decoder) as through PyAV."""
    av = pytest.importorskip("av")
    from roienc.evaluate import _decode_cmd
    from roienc.tools import find_ffmpeg, run
    pattern = str(png_clip / "c_%06d_leftImg8bit.png")
    mp4 = tmp_path / "c.mp4"
    with av.open(pattern, format="image2", options={"framerate": "17", "start_number": "0"}) as c, \
            av.open(str(mp4), "w") as out:
        st = out.add_stream("libx265", rate=17, options={"crf": "35", "preset": "ultrafast",
                                                          "x265-params": "log-level=error"})
        st.width, st.height, st.pix_fmt = 98, 66, "yuv420p"
        for frame in c.decode(video=0):
            for pkt in st.encode(frame.reformat(format="yuv420p")):
                out.mux(pkt)
        for pkt in st.encode():
            out.mux(pkt)
    cli = run(_decode_cmd(find_ffmpeg().path, mp4, "yuv420p")).stdout
    with av.open(str(mp4)) as c:
        ref = _pyav_planes(av, c, "yuv420p", 10)
    assert len(cli) == len(ref) == 4 * (98 * 66 + 2 * 49 * 33)
    assert cli == ref


def test_image_pins_satisfy_pyproject_and_readme():
    """docker/constraints.txt pins every runtime dependency within pyproject's ranges, and the
    PyAV (the encoder build) that README's figures name."""
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    pins = {}
    for line in (ROOT / "docker" / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for dep in map(Requirement, deps):
        name = canonicalize_name(dep.name)
        assert name in pins, f"{dep.name} is not pinned in docker/constraints.txt"
        assert dep.specifier.contains(pins[name]), f"{dep.name}=={pins[name]} is not {dep.specifier}"
    readme_av = re.findall(r"of PyAV (\d+\.\d+\.\d+)", (ROOT / "README.md").read_text())
    assert readme_av and set(readme_av) == {pins["av"]}
    assert "constraints.txt" in DOCKERFILE.read_text()


def test_check_extensions_reports_a_module_that_does_not_load(tmp_path):
    """The build's guard around `strip`: an extension module that cannot be loaded is listed,
    and a venv where most fail is refused."""
    import subprocess
    import sys
    pkg = tmp_path / "brokenpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "_mod.cpython-311-x86_64-linux-gnu.so").write_bytes(b"\x7fELF not really")
    proc = subprocess.run([sys.executable, str(ROOT / "docker" / "check_extensions.py"), str(tmp_path)],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.startswith("brokenpkg._mod: ImportError")
    assert "1 extension modules, 1 do not import" in proc.stderr
