"""roienc: importance-driven ROI encoding of driving video.

Pipeline: dataset -> importance -> qpmap -> adapters -> encode -> evaluate.
"""
from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("roienc")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+src"

from .errors import InputError, RoiencError, ToolError  # noqa: E402

__all__ = ["__version__", "RoiencError", "InputError", "ToolError"]
