"""The ``roienc`` command: a thin argparse layer over the library.

Each sub-command lives in ``roienc/commands/<name>.py`` exposing ``register(subparsers)``, which
adds its parser and sets ``func`` (called with the parsed namespace, returns an exit status).
Library errors (:class:`roienc.errors.RoiencError`) become one-line messages and exit status 2.

Building the parser imports every command module, so those import only light modules at their
top (argparse, :mod:`roienc.defaults`, :mod:`roienc.configs`, :mod:`roienc.names`); numpy,
pandas, OpenCV, PyAV and the library modules that use them are imported in ``run()`` and in the
functions that need them. ``roienc --help`` then costs about 50 ms over the interpreter's start
(``benchmarks/bench_help.py``; ``tests/test_help.py`` checks what building the parser imports).
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from . import __version__
from .errors import RoiencError, describe_oserror

COMMANDS = ["synth", "build_maps", "export", "encode", "evaluate", "sweep", "demo", "doctor"]


RESUME_DEFAULT = "finished outputs are kept"
RESUME_HINT = {     # how each command resumes (only options it accepts)
    "build-maps": "finished outputs are kept; rerun with --skip-existing to resume",
    "encode": "finished encodes are kept; rerun with --skip-existing to resume",
    "evaluate": "the rows measured so far are in the report; rerun with --skip-existing to resume",
    "sweep": "finished maps and encodes are kept; rerun the same command to resume",
    "demo": "rerun the same command to resume",
}


class DefaultsFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default (unless it already names one, or there is none)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        d = action.default
        if ("default" in text.lower() or d is None or d is False or d is argparse.SUPPRESS
                or (isinstance(d, list) and not d) or not action.option_strings):
            return text
        return f"{text} (default: %(default)s)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="roienc",
        description="Importance-driven ROI encoding of Cityscapes driving video.")
    parser.add_argument("--version", action="version", version=f"roienc {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f".commands.{name}", __package__)
        module.register(sub)
    for name, p in sub.choices.items():
        p.formatter_class = DefaultsFormatter
        page = f"docs/{name}.md"
        p.epilog = (f"Every option, its default and what it means: {page} in the roienc source "
                    "(README.md links it).")
    return parser


def _tolerate_undecodable_paths() -> None:
    """Paths with bytes that are not UTF-8 print as those bytes instead of raising
    UnicodeEncodeError after the work is done."""
    for stream, errors in ((sys.stdout, "surrogateescape"), (sys.stderr, "backslashreplace")):
        try:
            stream.reconfigure(errors=errors)
        except (AttributeError, ValueError, OSError):
            pass                           # not a text stream we can reconfigure (captured)


def main(argv: Sequence[str] | None = None) -> int:
    _tolerate_undecodable_paths()
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except RoiencError as exc:
        print(f"roienc {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:            # the file system refused a write or read: where and why
        print(f"roienc {args.command}: error: {describe_oserror(exc)}; "
              f"{RESUME_HINT.get(args.command, RESUME_DEFAULT)}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"roienc {args.command}: error: not enough memory for this input (frames too large, "
              "or too many workers: try --workers 1)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"roienc {args.command}: interrupted; {RESUME_HINT.get(args.command, RESUME_DEFAULT)}",
              file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
