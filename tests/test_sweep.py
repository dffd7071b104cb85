"""The sweep end to end on a synthesized snippet with real encodes."""
import json

import numpy as np

import pandas as pd
import pytest

from roienc.cli import main as cli

pytestmark = [pytest.mark.encode, pytest.mark.slow]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    from roienc.synth import synthesize

    r = tmp_path_factory.mktemp("cs")
    synthesize(r, width=384, height=192, seed=0)
    return r


def _sweep(root, run, *extra):
    return cli(["sweep", "--cityscapes-root", str(root), "--split", "val", "--codec", "hevc",
                "--modes", "baseline,roi", "--crf", "22,27,32,37", "--preset", "fast",
                "--out", str(run), "--no-progress", "--workers", "1",
                # 384x192 frames: 16-px blocks (the 32-px default is chosen for 2048x1024),
                # 'max' protects every block an object touches (see README, sweep)
                "--block-size", "16", "--delta", "3", "--background", "3", "--block-stat", "max",
                *extra])


def test_sweep_end_to_end(root, tmp_path, capsys):
    run = tmp_path / "run"
    assert _sweep(root, run) == 0
    out = capsys.readouterr().out
    assert "BD-rate" in out and "regions judged by: self" in out
    for name in ("results.csv", "bdrate.csv", "frontier.csv", "frontier.png", "report.html",
                 "sweep.json", "rd_psnr_roi.png", "rd_psnr_nonroi.png", "rd_psnr_y.png",
                 "rd_psnr_weighted.png"):
        assert (run / name).is_file(), name
    (maps,) = [p for p in (run / "maps").iterdir()]
    assert (maps / "params.json").is_file() and maps.name.startswith("b16-max-d3-bg3-")
    res = pd.read_csv(run / "results.csv")
    # plain baseline once, roi and its roi-settings reference per mapping
    assert sorted(res.groupby(["maps", "mode"]).size().items()) == [
        ((maps.name, "roi"), 4), ((maps.name, "roi-settings"), 4), (("plain", "baseline"), 4)]
    assert res["judged_by"].str.startswith("self").all()
    bd = pd.read_csv(run / "bdrate.csv")
    assert list(bd.columns[:6]) == ["maps", "mode", "reference", "metric", "bd_rate_pct", "bd_psnr_db"]
    mean = bd[(bd["clip"] == "mean") & (bd["metric"] == "psnr_roi")].set_index(["mode", "reference"])
    assert mean.loc[("roi", "baseline"), "bd_rate_pct"] < 0     # ROI beats the plain encoder inside
    assert ("roi", "roi-settings") in mean.index and ("roi-settings", "baseline") in mean.index
    html = (run / "report.html").read_text()
    assert "rd_psnr_roi.png" in html and "report_files/roi_crop.png" in html and "Self-judged" in html
    assert "qg-size=16" in html           # what the ROI encode adds to the plain baseline
    # SSIM only where asked: NaN columns, said on the page, left out of its table
    ssim_cols = ["ssim_y", "ssim_roi", "ssim_nonroi"]
    assert res[ssim_cols].isna().all().all() and "SSIM was not computed" in html
    assert "<th>ssim_roi</th>" not in html
    assert json.loads((run / "sweep.json").read_text())["ssim"] is False
    # resumable: a second run reuses maps and encodes; --ssim reaches evaluate
    mp4 = run / "enc" / maps.name / "hevc/roi/crf22/lindau_000000.mp4"
    mtime = mp4.stat().st_mtime_ns
    assert _sweep(root, run, "--ssim") == 0
    assert mp4.stat().st_mtime_ns == mtime
    res_ssim = pd.read_csv(run / "results.csv")
    assert res_ssim[ssim_cols].notna().all().all() and (res_ssim["ssim_roi"] <= 1).all()
    html = (run / "report.html").read_text()
    assert "SSIM was not computed" not in html and "<th>ssim_roi</th>" in html
    assert res_ssim["psnr_roi"].equals(res["psnr_roi"])
    # changed map options are applied, in a folder of their own (not silently ignored)
    assert _sweep(root, run, "--delta", "6", "--base-qp", "30") == 0
    assert len(list((run / "maps").iterdir())) == 2
    res2 = pd.read_csv(run / "results.csv")
    (lab,) = set(res2["maps"]) - {"plain"}
    assert lab.startswith("b16-max-d6-bg3-r9-f0.1-g1-q30-")   # the default budget and floor
    side = json.loads((run / "enc" / lab / "hevc/roi/crf22/lindau_000000.json").read_text())
    assert side["adapter"]["delta"] == 6 and side["adapter"]["base_qp"] == 30
    assert json.loads((run / "sweep.json").read_text())["qp_combinations"][lab]["delta"] == 6


def test_interrupted_maps_resume(root, tmp_path):
    """A sweep whose maps were cut short completes them on the next run (no skipped encodes)."""
    run = tmp_path / "run"
    assert _sweep(root, run, "--modes", "baseline,roi", "--no-settings-reference") == 0
    (maps,) = list((run / "maps").iterdir())
    victims = sorted((maps / "val" / "lindau").glob("*_0000[12]?_qp_map.npy"))
    for v in victims:                     # as if build-maps had been interrupted
        v.unlink()
    mp4 = run / "enc" / maps.name / "hevc/roi/crf22/lindau_000000.mp4"
    mp4.unlink()
    assert _sweep(root, run, "--modes", "baseline,roi", "--no-settings-reference") == 0
    assert all(v.is_file() for v in victims) and mp4.is_file()
    res = pd.read_csv(run / "results.csv")
    assert len(res) == 8 and res["psnr_roi"].notna().all()


def test_frontier_over_qp_mappings(root, tmp_path):
    """Lists of map settings: one maps folder per combination (derived ones equal to maps built
    directly), every combination judged by the same regions, frontier.csv with a Pareto front."""
    run = tmp_path / "run"
    assert _sweep(root, run, "--delta", "2,4", "--background", "0,3", "--crf", "24,30,36",
                  "--no-settings-reference") == 0
    fr = pd.read_csv(run / "frontier.csv")
    assert len(fr) == 4 and set(zip(fr["delta"], fr["background"])) == {(2, 0), (2, 3), (4, 0), (4, 3)}
    assert fr["pareto"].any() and fr["bd_psnr_roi_pct"].notna().all()
    assert fr["judged_by"].nunique() == 1
    # more background QP costs quality outside the ROI
    by = fr.set_index(["delta", "background"])
    assert by.loc[(4, 3), "bd_psnr_nonroi_pct"] > by.loc[(4, 0), "bd_psnr_nonroi_pct"]
    from roienc.maps import QPParams, build_maps
    import numpy as np
    direct = tmp_path / "direct"
    build_maps(root, direct, split="val", sequences=True, workers=1, progress=False,
               visualize_every=0, qp=QPParams(block_size=16, block_stat="max", delta=4, background=0))
    lab = by.loc[(4, 0), "maps"]
    for f in sorted((direct / "val" / "lindau").glob("*_qp_map.npy"))[:5]:
        assert np.array_equal(np.load(f), np.load(run / "maps" / lab / "val" / "lindau" / f.name))


def _per_frame_labels(out, width=384, height=192, city="lindau"):
    """Each sequence frame's true labelIds/instanceIds from the synthesizer's renderer (seed 0)."""
    from roienc.fileio import write_png
    from roienc.synth import _Scene

    scene = _Scene(width, height, 2262.52, 0.209313, 0)
    for t in range(30):
        files, _, _ = scene.render(t, city, 0)
        fid = f"{city}_000000_{t:06d}"
        write_png(out / city / f"{fid}_labelIds.png", files["labels"].astype("uint8"))
        write_png(out / city / f"{fid}_instanceIds.png", files["inst"].astype("uint16"))
    return out


def test_judging_by_per_frame_labels_differs_from_self_judging(root, tmp_path):
    """Stale (held) maps judged by themselves vs by each frame's own labels: different numbers,
    and every output names the regions that judged it."""
    labels = _per_frame_labels(tmp_path / "labels")
    run = tmp_path / "run"
    common = ("--label-source", "hold", "--no-settings-reference", "--crf", "24,30,36")
    assert _sweep(root, run, *common) == 0
    self_res = pd.read_csv(run / "results.csv")
    assert _sweep(root, run, *common, "--judge-labels-root", str(labels)) == 0
    judged = pd.read_csv(run / "results.csv")
    assert judged["judged_by"].str.startswith("per-frame labels").all()
    assert (run / "judge_maps").is_dir()
    a = self_res.set_index(["maps", "mode", "rate_value"]).sort_index()
    b = judged.set_index(["maps", "mode", "rate_value"]).sort_index()
    assert (a["kbps"] == b["kbps"]).all()                 # the same encodes, reused
    assert (a["psnr_roi"] - b["psnr_roi"]).abs().max() > 0.05
    assert not np.allclose(a["roi_fraction"], b["roi_fraction"])
    bd = pd.read_csv(run / "bdrate.csv")
    assert bd["judged_by"].str.startswith("per-frame labels").all()
    assert "per-frame labels --judge-labels-root" in (run / "report.html").read_text()


def test_judge_maps_of_a_new_propagation_default_get_a_folder_of_their_own(root, tmp_path,
                                                                          monkeypatch):
    """A library sweep (no propagation settings given, as benchmarks/ call it) rerun into the
    same run folder after the propagation defaults changed (an upgrade) builds new judge maps
    beside the old ones instead of refusing to mix two kinds of maps in one folder."""
    import functools

    import roienc.maps
    import roienc.sweep
    from roienc.encode import RatePoint
    from roienc.importance import ImportanceParams
    from roienc.maps import QPParams
    from roienc.propagate import PropagationParams
    from roienc.sweep import run_sweep

    labels = _per_frame_labels(tmp_path / "labels")
    run = tmp_path / "run"

    def sweep():
        run_sweep(root, run, split="val", modes=("baseline", "roi"), rates=[RatePoint("crf", 30.0)],
                  map_options=dict(importance=ImportanceParams(), label_source="hold",
                                   qp=QPParams(block_size=16)),
                  preset="fast", judge_labels_root=labels, settings_reference=False,
                  progress=False, argv=[])

    sweep()
    newer = functools.partial(PropagationParams, margin_px=3)
    monkeypatch.setattr(roienc.sweep, "PropagationParams", newer)
    monkeypatch.setattr(roienc.maps, "PropagationParams", newer)
    sweep()
    folders = [p.parent.name for p in (run / "judge_maps").glob("*/params.json")]
    assert len(folders) == 2


def test_bad_threads_refused_before_any_work(root, tmp_path, capsys):
    run = tmp_path / "run"
    assert _sweep(root, run, "--threads", "0") == 2
    assert "--threads must be an integer from 1 to 256" in capsys.readouterr().err
    assert not run.exists()


def test_maps_that_change_nothing_reuse_the_encodes(root, tmp_path):
    """A rerun whose map settings differ (a new maps folder) but whose QP grids come out
    byte-identical takes the encodes of the folder it equals, instead of encoding again: here a
    margin cap above any margin the 19 steps reach (8 + 2 * 19 = 46 px < 60)."""
    from roienc.sweep import qp_maps_digest

    run = tmp_path / "run"
    assert _sweep(root, run) == 0
    first = pd.read_csv(run / "results.csv")
    sidecars = sorted(run.glob("enc/*/hevc/*/*/*.json"))
    stamps = {p: p.stat().st_mtime_ns for p in sidecars}
    assert _sweep(root, run, "--propagation", "margin_max_px=60") == 0
    old, new = sorted((run / "maps").iterdir(), key=lambda d: d.stat().st_mtime_ns)
    assert qp_maps_digest(old) == qp_maps_digest(new) is not None
    assert sorted(p.name for p in (run / "enc").iterdir()) == sorted(["plain", old.name])
    assert sorted(run.glob("enc/*/hevc/*/*/*.json")) == sidecars
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())      # nothing re-encoded
    reused = json.loads((run / "sweep.json").read_text())["maps_reused"]
    assert list(reused) == [new.name] and old.name in reused[new.name]
    second = pd.read_csv(run / "results.csv")
    assert set(second["maps"]) == {"plain", new.name}
    cols = ["clip", "mode", "rate_label", "bytes", "psnr_roi", "psnr_nonroi"]
    a = first[first["maps"] == old.name][cols].sort_values(cols[:3]).reset_index(drop=True)
    b = second[second["maps"] == new.name][cols].sort_values(cols[:3]).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
