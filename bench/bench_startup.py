"""Start-up cost: `taskcli --help` median wall time vs `python -c "import torch"` (target <= 0.25 s, <= 15%)."""

import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def median_wall(cmd: list[str], runs: int = 9) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


if __name__ == "__main__":
    help_s = median_wall([str(BIN / "taskcli"), "--help"])
    torch_s = median_wall([sys.executable, "-c", "import torch"])
    ratio = help_s / torch_s
    print(f"taskcli --help        median {help_s:.3f} s   (target <= 0.25 s)  {'OK' if help_s <= 0.25 else 'MISS'}")
    print(f"python -c import torch median {torch_s:.3f} s")
    print(f"ratio                 {100 * ratio:.1f} %    (target <= 15 %)   {'OK' if ratio <= 0.15 else 'MISS'}")
