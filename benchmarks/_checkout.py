"""Imported first by every benchmark script: this checkout's roienc goes ahead of an installed
copy. (``python3 benchmarks/<script>.py`` puts only ``benchmarks/`` on ``sys.path``, so ``import
roienc`` would otherwise find site-packages' roienc and measure another version.)"""
from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path[:1]:
    sys.path.insert(0, str(REPO))
