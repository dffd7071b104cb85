"""The SVT-AV1 CLI's discovery and ROI map, kept importable here (``roienc doctor`` and older
code use ``roienc.svtav1``); they live with the AV1 encoder class in
:mod:`roienc.encoders.svtav1`."""
from .encoders.svtav1 import (MIN_ROI_VERSION, SVT_BLOCK, SVT_FINER, SVT_LAYER_SCALE,  # noqa: F401
                              SVT_LEVELS, SVT_MAX_LEVELS, SVT_MAX_OFFSET, SVT_RULE, SVT_RULE_NAME,
                              SvtAv1, block_means, block_minima, cli_args, coded_pictures,
                              find_svtav1, hierarchy_levels, locate_svtav1, picture_offsets,
                              roi_map_grids, roi_map_text, roi_problem, temporal_layer)
