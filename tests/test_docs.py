"""README and docs/ cannot drift from the code: every command they run exists, every option on a
``roienc <command>`` line is that command's, every option they name is some command's, every
command has its docs page, which its --help points to, and every benchmark command line uses
options of its script."""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from roienc.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
COMMAND_PAGES = ["build-maps", "export", "encode", "evaluate", "sweep", "demo", "doctor", "synth"]
# options of other programs the docs name (FFmpeg filters' and x265's own)
FOREIGN = {"--qg-size", "--aq-mode", "--csv", "--qpfile", "--zones", "--roi-map-file",
           "--frames", "--rc", "--tbr", "--no-ssim", "--encode-seconds-per-clip", "--stages", "--real",
           "--real-maps", "--long-frames", "--long-repeat", "--zero-offsets", "--same-size",
           "--engines", "--repeat", "--sources", "--root", "--run", "--explore", "--crop",
           "--codecs", "--mappings", "--flow-scale", "--margin", "--unseen-importance",
           "--help", "--version", "--nthreads", "--rm",   # dask worker, docker run
           "--lp",                                       # SvtAv1EncApp
           "--compare"}                                  # bench_store.py
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


def _subparsers() -> dict:
    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    return sub.choices


def test_every_command_has_a_page_and_its_help_points_to_it(capsys):
    assert set(COMMAND_PAGES) == set(_subparsers()), "a command without a docs page (COMMAND_PAGES)"
    readme = (REPO / "README.md").read_text()
    for cmd in COMMAND_PAGES:
        assert (REPO / "docs" / f"{cmd}.md").is_file(), f"docs/{cmd}.md missing"
        with pytest.raises(SystemExit):
            build_parser().parse_args([cmd, "--help"])
        out = capsys.readouterr().out
        assert f"docs/{cmd}.md" in out
        assert f"docs/{cmd}.md" in readme, f"README does not link docs/{cmd}.md"


@pytest.mark.parametrize("cmd", COMMAND_PAGES)
def test_every_option_is_on_its_commands_page(cmd):
    """A new option cannot go undocumented: each is named (in backquotes) on docs/<cmd>.md."""
    text = (REPO / "docs" / f"{cmd}.md").read_text()
    named = set(re.findall(r"`[^`]*`", text))
    named_opts = set(OPT.findall(" ".join(named)))
    missing = sorted(o for o in _options()[cmd] if o.startswith("--") and o not in ("--help",)
                     and o not in named_opts)
    assert not missing, f"docs/{cmd}.md does not document {missing}"
    # and the option tables name only options the command has (a removed option cannot linger)
    for row in re.findall(r"^\| *(`--[^|]*)\|", text, flags=re.M):
        for o in OPT.findall(row):
            assert o in _options()[cmd], f"docs/{cmd}.md documents {o}, which roienc {cmd} lacks"


@pytest.mark.parametrize("cmd", COMMAND_PAGES)
def test_help_shows_every_default_once(cmd):
    p = _subparsers()[cmd]
    fmt = p._get_formatter()
    for a in p._actions:
        if not a.option_strings or a.help is argparse.SUPPRESS or a.dest == "help":
            continue
        assert a.help, f"roienc {cmd} {a.option_strings[-1]} has no help line"
        text = fmt._expand_help(a)
        assert text.lower().count("(default") <= 1, f"{cmd} {a.option_strings[-1]}: {text}"
        if a.default not in (None, False, []) and not isinstance(a.default, bool):
            assert "default" in text.lower(), f"{cmd} {a.option_strings[-1]} hides its default: {text}"


def test_encode_help_names_the_jobs_default(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["encode", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "clips encoded in parallel (default: 1)" in out


def test_readme_is_short_and_keeps_the_results_block():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    assert text.count("<!-- RESULTS:BEGIN -->") == 1 and text.count("<!-- RESULTS:END -->") == 1
    assert "RESULTS_TABLE" not in text


def _anchors(page: Path) -> set[str]:
    """GitHub's heading anchors of a page."""
    heads = re.findall(r"^#+ (.+)$", page.read_text(), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in heads}


def test_links_between_pages_resolve():
    for page in PAGES:
        for target, anchor in re.findall(r"\]\(([^)#:]*)(?:#([^)]*))?\)", page.read_text()):
            dest = page.parent / target if target else page
            assert dest.exists(), f"{page.name} links {target}, which does not exist"
            if anchor and dest.suffix == ".md":
                assert anchor in _anchors(dest), f"{page.name} links {target}#{anchor}: no such heading"


BENCH = re.compile(r"(bench_\w+|_crop)\.py((?:[^`\n]|\\\n)*)")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_benchmark_commands_on_the_page_take_their_options(page):
    """A benchmark command line the docs give (in a code block or a code span) uses only options
    its script defines: a user who copies it gets figures, not an argparse error."""
    seen = 0
    for m in BENCH.finditer(page.read_text()):
        script = REPO / "benchmarks" / f"{m.group(1)}.py"
        assert script.is_file(), f"{page.name}: {script.name} is not a benchmark"
        source = script.read_text()
        for o in OPT.findall(m.group(2).split(" #")[0]):
            defined = f'"{o}"' in source
            assert defined, f"{page.name}: {o} is not an option of {script.name}: {m.group(0)}"
            seen += 1
    if page.name == "sparse-labels.md":
        assert seen > 5                   # the pattern does find the commands
