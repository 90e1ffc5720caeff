"""Preprocessing at scale: 100k-row text-classification CSV, whole `taskcli finetune` processes to the first (and
only) training step, first run (empty datasets cache) vs second run (same recipe, same data).

Target: the second run's preprocessing <= 10% of the first's. Also shown: data.num_proc=2 on an empty cache, and the
preflight's cost (taskcli/preflight.py: file decoding check, row checks, train/eval overlap) in the first run, against
its preprocessing (target <= 5%).
"""

import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROWS = 100_000
WORDS = ("the film was a gripping story with fine acting and a dull middle while the score felt warm and the ending "
         "fell flat for some yet many loved its pace cast humour and style").split()


def write_csv(path: Path) -> None:
    rng = random.Random(0)
    with path.open("w") as fh:
        fh.write("text,label\n")
        for _ in range(ROWS):
            words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 60)))
            fh.write(f"{words},{rng.choice(['pos', 'neg'])}\n")


def finetune(model: Path, data: Path, out: Path, cache: Path, *extra: str) -> tuple[float, dict]:
    env = dict(os.environ, HF_DATASETS_CACHE=str(cache), HF_HUB_OFFLINE="1", TASKCLI_REPORT="0")
    cmd = [sys.executable, "-m", "taskcli", "finetune", "text-classification", "--model", str(model), "--data",
           str(data), "-o", str(out), "--json", "--set", "train.max_steps=1", "--set", "train.eval_strategy=no",
           "--set", "data.max_eval_samples=64", *extra]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"finetune failed: {done.stderr[-2000:]}")
    return wall, json.loads(done.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="bench-preprocess-") as tmp:
        tmp = Path(tmp)
        # a tiny model of the default recipe's architecture (its tokenizer is a fast WordPiece one, as BERT's)
        subprocess.run([sys.executable, "-m", "taskcli", "finetune", "text-classification", "--smoke", "-o",
                        str(tmp / "tiny"), "--set", "train.max_steps=1", "--json"], check=True, capture_output=True,
                       env=dict(os.environ, TASKCLI_REPORT="0"))
        data = tmp / "reviews-100k.csv"
        write_csv(data)
        first_wall, first = finetune(tmp / "tiny", data, tmp / "run1", tmp / "cache")
        second_wall, second = finetune(tmp / "tiny", data, tmp / "run2", tmp / "cache")
        procs_wall, procs = finetune(tmp / "tiny", data, tmp / "run3", tmp / "cache-np2", "--set", "data.num_proc=2")
    ratio = second["preprocess_s"] / first["preprocess_s"]
    print(f"{ROWS:,}-row text-classification CSV, whole process to the end of step 1 (2-core machine):")
    print(f"first run  (empty cache)   wall {first_wall:6.1f} s   preprocessing {first['preprocess_s']:6.2f} s")
    print(f"second run (same recipe)   wall {second_wall:6.1f} s   preprocessing {second['preprocess_s']:6.2f} s")
    print(f"data.num_proc=2 (empty)    wall {procs_wall:6.1f} s   preprocessing {procs['preprocess_s']:6.2f} s")
    print(f"second / first preprocessing  {100 * ratio:.1f} %   (target <= 10 %)  {'OK' if ratio <= 0.10 else 'MISS'}")
    share = first["preflight_s"] / first["preprocess_s"]
    print(f"preflight (first run)         {first['preflight_s']:.2f} s = {100 * share:.1f} % of its preprocessing   "
          f"(target <= 5 %)  {'OK' if share <= 0.05 else 'MISS'}")
    sys.exit(0 if ratio <= 0.10 and share <= 0.05 else 1)
