"""Wall time of `roienc --help` (issue 31: under 0.3 s), each run a fresh interpreter.

    python3 benchmarks/bench_help.py [--repeat 5] [--all]

Measures, best of ``--repeat`` runs each, in fresh subprocesses of this interpreter started in the
checkout (so its roienc is the one measured; the interpreter itself, not a launcher such as a
pyenv shim, which adds its own start): ``python3 -c pass`` (the interpreter's own start,
measured in the same run), ``python3 -m roienc --help``, ``python3 -m roienc sweep --help`` and
``python3 -m roienc build-maps --help`` (``--all``: every command's help). Prints each time, what
roienc adds to the interpreter's start, and which heavy libraries building the parser imported
(none is expected: they are imported where used).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import _checkout  # noqa: F401  (this checkout's roienc, not an installed copy)

REPO = _checkout.REPO
LIMIT_S = 0.3
HEAVY = ("numpy", "pandas", "cv2", "av", "scipy", "matplotlib", "PIL", "tqdm", "dask")
COMMANDS = ["synth", "build-maps", "export", "encode", "evaluate", "sweep", "demo", "doctor"]


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    return env


def best_wall(argv: list[str], repeat: int) -> float:
    """Best wall time in seconds of ``repeat`` runs of ``argv`` (stdout discarded)."""
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run(argv, cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, check=True)
        best = min(best, time.perf_counter() - t)
    return best


def heavy_imports() -> list[str]:
    code = ("import sys, json\nfrom roienc.cli import build_parser\nbuild_parser()\n"
            f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({list(HEAVY)!r}))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=_env(), capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5, help="runs of each command; the best counts")
    ap.add_argument("--all", action="store_true", help="every command's --help, not only three")
    args = ap.parse_args()
    py = sys.executable
    cases = [("python3 -c pass", [py, "-c", "pass"]),
             ("python3 -m roienc --help", [py, "-m", "roienc", "--help"])]
    for cmd in (COMMANDS if args.all else ["sweep", "build-maps"]):
        cases.append((f"python3 -m roienc {cmd} --help", [py, "-m", "roienc", cmd, "--help"]))
    print(f"{py} (python {sys.version.split()[0]}), {os.cpu_count()} CPUs, best of "
          f"{args.repeat} fresh processes each; load average {os.getloadavg()[0]:.2f}")
    base = None
    worst = 0.0
    for label, argv in cases:
        t = best_wall(argv, args.repeat)
        if base is None:
            base = t
            print(f"{label:40s} {t * 1000:7.1f} ms  (the interpreter's own start)")
            continue
        worst = max(worst, t)
        print(f"{label:40s} {t * 1000:7.1f} ms  (+{(t - base) * 1000:.1f} ms over the interpreter)")
    heavy = heavy_imports()
    print(f"heavy libraries imported by build_parser(): {', '.join(heavy) if heavy else 'none'}")
    print(f"slowest --help {worst * 1000:.1f} ms: " + ("within" if worst < LIMIT_S else "OVER")
          + f" the {LIMIT_S * 1000:.0f} ms goal")
    return 0


if __name__ == "__main__":
    sys.exit(main())
