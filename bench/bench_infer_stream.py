"""Streamed inference over many inputs: `taskcli infer ner FILE --json` on 20,000 and 200,000 short lines with a
tiny NER model, whole processes. Reported: time to the first result row on stdout vs the whole run (target: the
first row within 5% of the run), and the peak RSS of each run (target: about the same for 10x the inputs).
Also the start-up alone (a whole one-line infer process), which bounds the time to the first row.
"""

import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS = "Alice Bob Carol works lives in Paris Berlin Tokyo for Globex Initech today and then".split()
# the child's peak RSS (kB): a wrapper process that waits for the run and reads its rusage
PEAK = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], stdout=sys.stdout, check=True); "
        "print('peak_rss_kb', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)")


def run(model: Path, lines: Path) -> tuple[float, float, float, int]:
    """(seconds to the first row, seconds in all, peak RSS MB, rows)"""
    cmd = [sys.executable, "-c", PEAK, sys.executable, "-m", "taskcli", "infer", "ner", str(lines), "--model",
           str(model), "--json", "--no-progress"]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, HF_HUB_OFFLINE="1"))
    first = None
    rows = 0
    for line in proc.stdout:
        if first is None:
            first = time.perf_counter() - start
            json.loads(line)
        rows += 1
    err = proc.stderr.read()
    proc.wait()
    total = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"infer failed: {err[-2000:]}")
    peak = next(int(line.split()[1]) for line in err.splitlines() if line.startswith("peak_rss_kb"))
    return first, total, peak / 1024, rows


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="bench-stream-") as tmp:
        tmp = Path(tmp)
        subprocess.run([sys.executable, "-m", "taskcli", "finetune", "ner", "--smoke", "-o", str(tmp / "ner"),
                        "--set", "train.max_steps=1", "--json"], check=True, capture_output=True,
                       env=dict(os.environ, TASKCLI_REPORT="0"))
        rng = random.Random(0)
        figures = {}
        for n in (20_000, 200_000):
            path = tmp / f"lines-{n}.txt"
            path.write_text("".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 10))) + "\n"
                                    for _ in range(n)))
            figures[n] = run(tmp / "ner", path)
        one = tmp / "one.txt"
        one.write_text("Alice works in Paris\n")
        startup = min(run(tmp / "ner", one)[1] for _ in range(2))  # a whole one-line run: imports + model load
    for n, (first, total, peak, rows) in figures.items():
        assert rows == n, (rows, n)
        print(f"{n:>7,} lines: first row after {first:5.1f} s of {total:6.1f} s ({100 * first / total:4.1f} %, "
              f"target < 5 %)  peak RSS {peak:6.0f} MB")
    first = figures[200_000][0]
    print(f"start-up (a whole one-line infer process): {startup:4.1f} s; the 200k run's first row came "
          f"{first - startup:+4.1f} s after it")
    ratio = figures[200_000][2] / figures[20_000][2]
    ok = figures[200_000][0] / figures[200_000][1] < 0.05
    print(f"peak RSS 200k / 20k: {ratio:.2f}x   first row within 5 % at 200k: {'OK' if ok else 'MISS'}")
    sys.exit(0 if ok else 1)
