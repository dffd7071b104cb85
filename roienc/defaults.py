"""Default values of the parameter dataclasses, in a module that imports nothing heavy.

:class:`roienc.importance.ImportanceParams`, :class:`roienc.maps.QPParams` and
:class:`roienc.propagate.PropagationParams` take their field defaults from here, and
``roienc --help`` shows them from here without importing numpy, pandas or OpenCV: one source of
truth, read by both. Why each value was chosen is said beside its field in those classes.
"""
from __future__ import annotations

from types import MappingProxyType

# roienc.importance.ImportanceParams
IMPORTANCE = MappingProxyType({
    "t_react": 2.5,                 # s, reaction time
    "decel": 3.4,                   # m/s^2, braking deceleration
    "min_safe_distance": 5.0,       # m, floor of d_safe
    "min_valid_pixels": 5,          # fewer valid disparity pixels -> distance unknown
    "unknown_importance": 1.0,      # importance of an object of unknown distance
    "distance_mode": "object",      # 'object' (median per object) or 'pixel'
})

# roienc.maps.QPParams
QP = MappingProxyType({
    "block_size": 32,
    "base_qp": 32,
    "delta": 6,
    "gamma": 1.0,
    "block_stat": "submax",
    "qp_normalize": "none",
    "background": 0,
    "rate_budget": 9.0,             # percent; None: fixed offsets
    "activity_exponent": 1.0,
    "floor": 0.1,
})

# roienc.propagate.PropagationParams (the ``--propagation KEY=VALUE`` keys, in this order)
PROPAGATION = MappingProxyType({
    "scale": 0.25,
    "method": "dis",
    "preset": "ultrafast",
    "mode": "chain",
    "fb_check": True,
    "fb_threshold": 2.0,
    "fb_relative": 0.1,
    "unreliable": "keep_dynamic",
    "margin_px": 8,
    "margin_growth_px": 2.0,
    "margin_max_px": 48,
    "fill_not_annotated": True,
    "unseen_importance": 0.0,
    "margin_importance": 0.25,
    "object_motion": "pixel",
    "far_as_margin": True,
    "hold_growth": 1.0,
})
