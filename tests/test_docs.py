"""README and docs/ cannot drift from the code: every command they run exists, every option on a
``roienc <command>`` line is that command's, every option they name is some command's, and every
command has its docs page, which its --help points to."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from roienc.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
COMMAND_PAGES = ["build-maps", "export", "encode", "evaluate", "sweep", "demo", "doctor"]
# options of other programs the docs name (FFmpeg filters' and x265's own)
FOREIGN = {"--qg-size", "--aq-mode", "--csv", "--qpfile", "--zones", "--roi-map-file",
           "--frames", "--no-ssim", "--encode-seconds-per-clip", "--stages", "--real",
           "--real-maps", "--long-frames", "--long-repeat", "--zero-offsets", "--same-size",
           "--engines", "--repeat", "--sources", "--root", "--run", "--explore", "--crop",
           "--codecs", "--mappings", "--flow-scale", "--margin", "--unseen-importance",
           "--help", "--version", "--nthreads", "--rm"}    # dask worker, docker run
OPT = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def _options() -> dict[str, set[str]]:
    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    return {name: {o for a in p._actions for o in a.option_strings} for name, p in sub.choices.items()}


def _command_lines(text: str) -> list[str]:
    """Lines of code blocks, continuation lines (trailing backslash) joined."""
    lines = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S):
        cur = ""
        for line in block.splitlines():
            cur += line.rstrip("\\").strip() + " "
            if not line.rstrip().endswith("\\"):
                lines.append(cur.strip())
                cur = ""
    return [line for line in lines if "roienc " in line]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_commands_and_options_on_the_page_exist(page):
    opts = _options()
    every = set().union(*opts.values())
    text = page.read_text()
    for line in _command_lines(text):
        code = line.split(" #")[0]
        m = re.search(r"(?:^|[\s;&(])roienc ([a-z][a-z-]*)", code)
        if m is None or (m.group(1) not in opts and not code.startswith("roienc ")):
            continue                # prose in a code block ("... + roienc version")
        cmd = m.group(1)
        assert cmd in opts, f"{page.name}: `roienc {cmd}` is not a command ({line})"
        for o in OPT.findall(code[m.end():]):
            assert o in opts[cmd] or o in FOREIGN, f"{page.name}: {o} is not an option of roienc {cmd}: {line}"
    named = set(OPT.findall(text)) - FOREIGN
    unknown = sorted(named - every)
    assert not unknown, f"{page.name} names options no command has: {unknown}"


def test_every_command_has_a_page_and_its_help_points_to_it(capsys):
    for cmd in COMMAND_PAGES:
        assert (REPO / "docs" / f"{cmd}.md").is_file(), f"docs/{cmd}.md missing"
        with pytest.raises(SystemExit):
            build_parser().parse_args([cmd, "--help"])
        out = capsys.readouterr().out
        assert f"docs/{cmd}.md" in out
    readme = (REPO / "README.md").read_text()
    for cmd in COMMAND_PAGES:
        assert f"docs/{cmd}.md" in readme


def test_help_shows_defaults(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["encode", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "(default: 1)" in out          # --jobs


def test_readme_is_short():
    assert len((REPO / "README.md").read_text().splitlines()) <= 200
