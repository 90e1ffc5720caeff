"""Smoke fine-tune time per task: `taskcli finetune TASK --smoke -o TMP` as a whole process, as a user's CI runs it
(start-up, imports, data, training, eval, saving, the run report), for every task in the registry. Target: each
<= 60 s on 2 idle cores.

    .venv/bin/python bench/bench_smoke.py [TASK ...] [--limit 60]

Prints task / wall seconds / CPU seconds (the process and its children) / OK or MISS. On a busy machine wall time
grows while CPU time stays put: the load average is printed before and after, and a task's CPU time over its wall
time shows how much of the machine it got.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TASKCLI = [sys.executable, "-m", "taskcli"]


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def smoke(task: str, out: Path) -> tuple[float, float, str]:
    """Wall and CPU seconds of one smoke fine-tune, and the last stderr line when it failed."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    cpu, start = children_cpu(), time.perf_counter()
    done = subprocess.run([*TASKCLI, "finetune", task, "--smoke", "-o", str(out)], env=env, cwd=ROOT,
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    error = "" if done.returncode == 0 else (done.stderr.strip().splitlines() or ["exit %d" % done.returncode])[-1]
    return wall, children_cpu() - cpu, error


def main() -> int:
    from taskcli import registry

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tasks", nargs="*", help="tasks or aliases (default: every task in the registry)")
    parser.add_argument("--limit", type=float, default=60.0, help="seconds a smoke run may take (default 60)")
    args = parser.parse_args()
    tasks = [registry.get(t).name for t in args.tasks] or registry.names()

    print(f"{os.cpu_count()} CPUs, load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'task':<30} {'wall s':>7} {'cpu s':>7}  <= {args.limit:g} s")
    failed = []
    with tempfile.TemporaryDirectory(prefix="bench-smoke-") as tmp:
        for task in tasks:
            wall, cpu, error = smoke(task, Path(tmp) / task)
            verdict = "FAILED: " + error if error else ("OK" if wall <= args.limit else "MISS")
            print(f"{task:<30} {wall:7.1f} {cpu:7.1f}  {verdict}", flush=True)
            if error:
                failed.append(task)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
