"""Two-process (DDP, gloo) training speed with find_unused_parameters on (the Trainer's default) and with the task's
own setting (off for models that use every weight): `taskcli finetune TASK --smoke --num-processes 2` as whole
processes, the runs of the two settings alternated so a busy machine slows both alike.

    .venv/bin/python bench/bench_ddp.py [TASK ...] [--steps 400] [--repeats 4]

Prints, per task and setting, the median training samples/s (steps x global batch / the Trainer's train runtime:
start-up, data and saving are left out) and whether the processes warned about find_unused_parameters.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {"default (True)": ["--set", "train.trainer_args.ddp_find_unused_parameters=true"], "per task": []}


def one_run(task: str, steps: int, extra: list[str], out: Path) -> tuple[float, bool]:
    """(samples/s, warned) of one two-process smoke training of `steps` steps."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TASKCLI_REPORT="0", OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "taskcli", "finetune", task, "--smoke", "-o", str(out), "--overwrite", "--json",
           "--num-processes", "2", "--set", "smoke.train.eval_strategy=no", "--set", f"smoke.train.max_steps={steps}",
           *extra]
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{task}: {(done.stderr.strip().splitlines() or ['exit %d' % done.returncode])[-1]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return steps * result["global_batch_size"] / result["train_runtime_s"], "find_unused_parameters" in done.stderr


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tasks", nargs="*", default=["token-classification"])
    # a tiny model's step is a few ms: fewer steps than this drown in the start-up of the Trainer's clock
    parser.add_argument("--steps", type=int, default=400, help="training steps per run (default 400)")
    parser.add_argument("--repeats", type=int, default=4, help="runs per setting (default 4)")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'task':<24} {'setting':<16} {'samples/s':>10} {'runs':>28}  warning")
    with tempfile.TemporaryDirectory(prefix="bench-ddp-") as tmp:
        for task in args.tasks:
            speeds: dict[str, list[float]] = {name: [] for name in SETTINGS}
            warned: dict[str, bool] = {}
            for _ in range(args.repeats):
                for name, extra in SETTINGS.items():
                    speed, warned[name] = one_run(task, args.steps, extra, Path(tmp) / task)
                    speeds[name].append(speed)
            for name, runs in speeds.items():
                print(f"{task:<24} {name:<16} {statistics.median(runs):10.1f} "
                      f"{' '.join(f'{s:.1f}' for s in runs):>28}  {'yes' if warned[name] else 'no'}", flush=True)
            gain = statistics.median(speeds["per task"]) / statistics.median(speeds["default (True)"])
            print(f"{task:<24} {'per task / True':<16} {gain:10.2f}x")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
