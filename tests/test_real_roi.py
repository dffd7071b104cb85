"""ROI on a real Cityscapes frame (skips when ../shared/cityscapes_samples is absent): the
importance-driven addroi chain moves quality into the ROI on real street content too."""
import numpy as np
import pytest

from roienc.adapters import addroi_chain, roi_rects
from roienc.maps import build_maps, load_importance, load_params
from roienc.tools import find_ffmpeg, run

from conftest import psnr
from test_build_maps import REAL

FRAME = "aachen_000000_000019"


@pytest.mark.skipif(not REAL.is_dir(), reason=f"real Cityscapes samples not present at {REAL}")
def test_real_frame_roi_moves_quality(tmp_path):
    build_maps(REAL, tmp_path / "maps", split="train", workers=1, progress=False, speed=10.0,
               camera=REAL / "camera" / "train" / "aachen" / "aachen_000001_000019_camera.json",
               visualize_every=0)
    qp = np.load(tmp_path / "maps" / "train" / "aachen" / f"{FRAME}_qp_map.npy")
    imp = load_importance(tmp_path / "maps", "train", "aachen", FRAME)
    h, w = imp.shape
    params = load_params(tmp_path / "maps")
    block = params["block_size"]
    rects = roi_rects(qp.astype(np.int16) - params["base_qp"], block, w, h)
    assert 0 < len(rects) < 1000                         # hundreds, not thousands
    ff = find_ffmpeg()
    png = REAL / "leftImg8bit" / "train" / "aachen" / f"{FRAME}_leftImg8bit.png"

    def luma(args, name):
        out = tmp_path / name
        run([ff.path, "-v", "error", "-y", "-i", str(png), *args, "-c:v", "libx265", "-preset", "fast",
             "-crf", "30", "-pix_fmt", "yuv420p", "-x265-params", f"log-level=error:qg-size={block}",
             str(out)])
        raw = run([ff.path, "-v", "error", "-i", str(out), "-f", "rawvideo", "-pix_fmt", "gray", "-"]).stdout
        return np.frombuffer(raw, np.uint8).reshape(h, w).astype(float)

    # reference: the source through the same RGB -> yuv420p conversion the encoder input gets
    src = np.frombuffer(run([ff.path, "-v", "error", "-i", str(png), "-vf", "format=yuv420p",
                             "-f", "rawvideo", "-pix_fmt", "gray", "-"]).stdout,
                        np.uint8).reshape(h, w).astype(float)
    base = luma(["-vf", "format=yuv420p"], "base.mp4")
    roi = luma(["-vf", "format=yuv420p," + addroi_chain(rects)], "roi.mp4")
    mask = imp >= 0.5
    gain_in = psnr(roi[mask], src[mask]) - psnr(base[mask], src[mask])
    gain_out = psnr(roi[~mask], src[~mask]) - psnr(base[~mask], src[~mask])
    print(f"real frame: {len(rects)} rects, ROI {mask.mean():.1%} of pixels, "
          f"PSNR in ROI {gain_in:+.2f} dB, outside {gain_out:+.2f} dB")
    # the default mapping lowers QP in the ROI by 6 and on static classes by 1: quality moves
    # into the ROI by far more than it moves anywhere else
    assert gain_in > 1.0 and gain_in - gain_out > 1.0
