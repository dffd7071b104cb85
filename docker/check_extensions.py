"""Import every compiled extension module of a site-packages folder; print those that fail.

    python check_extensions.py SITE_PACKAGES > before.txt
    (strip the extension modules' debug sections)
    python check_extensions.py SITE_PACKAGES > after.txt && cmp before.txt after.txt

docker/Dockerfile runs it before and after `strip --strip-debug` and fails the build when the two
lists differ: a module that imported before must import after. A few fail in both runs, for
reasons of their own: the Tk bindings (no tkinter in the image) and a SciPy module imported only
through its package. Exit status 1 when more than 5% fail (a broken venv fails every import alike).
"""
import importlib
import sys
from pathlib import Path


def main(site_packages: str) -> int:
    sp = Path(site_packages).resolve()
    if not any(Path(p).resolve() == sp for p in sys.path if p):
        print(f"{sp} is not on this Python's path: run the venv's python", file=sys.stderr)
        return 1
    names = []
    for so in sorted(sp.glob("*/**/*.so")):
        rel = so.relative_to(sp)
        if rel.parts[0].endswith(".libs"):
            continue   # libraries bundled by the wheels: loaded by the modules that link them
        parts = rel.parts[:-1] + (rel.name.split(".")[0],)
        if len(parts) > 1 and parts[-1] == parts[-2]:
            parts = parts[:-1]    # cv2/cv2.abi3.so: the package's own binary, loaded by it
        names.append(".".join(parts))
    if not names:
        print(f"no extension modules under {sp}", file=sys.stderr)
        return 1
    failed = 0
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as exc:   # printed, compared with the other run
            failed += 1
            print(f"{name}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    print(f"{len(names)} extension modules, {failed} do not import", file=sys.stderr)
    if failed > len(names) // 20:
        print("more than 5% do not import: the venv itself is broken", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1]))
