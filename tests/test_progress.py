"""Progress output when stdout/stderr are not terminals (CI, logs, pipes): plain lines, never
redrawn (nested) bars."""
import subprocess
import sys

from roienc.executor import ExecutorSpec, LineProgress, interactive_progress, run_tasks


def _square(x):
    return x * x


def test_run_tasks_prints_plain_lines_when_not_a_terminal(capsys):
    assert not interactive_progress()          # pytest captures both streams
    assert sorted(run_tasks(_square, range(5), ExecutorSpec("local", 1), desc="squares",
                            unit="item")) == [0, 1, 4, 9, 16]
    err = capsys.readouterr().err
    assert "\r" not in err and "\x1b" not in err
    assert err.strip().splitlines() == [err.strip()]          # one summary line at the end
    assert err.startswith("squares: 5/5 items (100%)")


def test_line_progress_is_periodic():
    lines = []

    class Sink:
        def write(self, s):
            lines.append(s)

        def flush(self):
            pass

    bar = LineProgress(1000, "x", "frame", interval=3600, file=Sink())
    for _ in range(1000):
        bar.update(1)
    assert "".join(lines).count("\n") == 1     # nothing in between (interval), one at the end
    bar = LineProgress(3, "x", "clip", interval=0, file=Sink())
    lines.clear()
    for _ in range(3):
        bar.update(1)
    assert "".join(lines).count("\n") == 3     # interval 0: one line per finished task


def test_encode_through_a_pipe_has_no_redrawn_bars(seq_dataset, tmp_path):
    root, maps = seq_dataset
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from roienc.cli import main; sys.exit(main())",
         "encode", "--cityscapes-root", str(root), "--maps", str(maps), "--split", "val",
         "--mode", "baseline,roi", "--crf", "30", "--preset", "fast", "--jobs", "1",
         "--out", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout + proc.stderr
    assert "\r" not in out and "\x1b" not in out, out[:500]
    assert "encode: 2/2 clips (100%)" in proc.stderr
