"""Memory over a tune study: `taskcli tune text-classification --smoke --trials 10` as one whole process, its peak
RSS and the RSS after each trial (each trial's model, optimizer and Trainer are freed before the next loads: the
figure after trial 10 should be that after trial 1, give or take the allocator).

    .venv/bin/python bench/bench_tune.py [--trials 10]

Prints the RSS after each trial, the growth from the first trial to the last, the peak RSS of the process and its
wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPACE = "tune.space={train.learning_rate: {log_uniform: [1e-4, 1e-2]}, train.batch_size: {choice: [4, 8]}}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    args = parser.parse_args()
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    with tempfile.TemporaryDirectory(prefix="bench-tune-") as tmp:
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "taskcli", "tune", "text-classification", "--smoke",
                               "--trials", str(args.trials), "-o", str(Path(tmp) / "study"), "--set", SPACE,
                               "--set", "train.max_steps=20", "--set", "train.eval_steps=10", "--json"],
                              env=env, cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - start
    if done.returncode != 0:
        print(f"FAILED: {(done.stderr.strip().splitlines() or ['exit %d' % done.returncode])[-1]}")
        return 1
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB on Linux
    rows = json.loads(done.stdout)["trials"]
    print(f"{'trial':>5} {'state':>9} {'RSS MiB':>8} {'s':>6}")
    for row in rows:
        print(f"{row['trial']:>5} {row['state']:>9} {row['rss_mb'] or 0:8.1f} {row['seconds'] or 0:6.1f}")
    rss = [r["rss_mb"] for r in rows if r["rss_mb"]]
    print(f"{len(rows)} trials in {wall:.1f} s; RSS after trial 1: {rss[0]:.1f} MiB, after the last: {rss[-1]:.1f} "
          f"MiB (growth {rss[-1] - rss[0]:+.1f} MiB, {(rss[-1] - rss[0]) / max(len(rss) - 1, 1):+.1f} MiB a trial); "
          f"peak RSS of the process: {peak_mb:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
