"""`roienc doctor` (placeholder until implemented)."""
from __future__ import annotations

import argparse

from ..errors import RoiencError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="(not yet implemented)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    raise RoiencError("doctor is not implemented yet")
