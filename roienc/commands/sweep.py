"""`roienc sweep` (placeholder until implemented)."""
from __future__ import annotations

import argparse

from ..errors import RoiencError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="(not yet implemented)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    raise RoiencError("sweep is not implemented yet")
