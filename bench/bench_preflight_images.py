"""The preflight on 2,000 images (an image-classification folder, one sub-folder per label): every file opened
header-level (Pillow's open, no pixels decoded) before training, against decoding them all as training would.

Target: the preflight costs a small share of one pass of decoding (printed; no hard target in the issue).
"""

import random
import sys
import tempfile
import time
from pathlib import Path

IMAGES = 2000
LABELS = ("cat", "dog", "bird", "fish")


def write_images(root: Path) -> None:
    from PIL import Image

    rng = random.Random(0)
    for i in range(IMAGES):
        label = LABELS[i % len(LABELS)]
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        size = (rng.randint(160, 320), rng.randint(160, 320))
        Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3))).save(folder / f"{i:05d}.jpg", quality=90)


if __name__ == "__main__":
    from taskcli import data as data_mod
    from taskcli import images, preflight, run as run_mod

    with tempfile.TemporaryDirectory(prefix="bench-preflight-") as tmp:
        root = Path(tmp) / "photos"
        write_images(root)
        run = run_mod.prepare("image-classification", None, [], False)
        run_mod.quiet_libraries()
        started = time.perf_counter()
        dsd = data_mod.load(run, str(root))
        preflight.check(run, dsd, str(root))  # and the train/eval overlap, as finetune runs it
        load_s = time.perf_counter() - started
        preflight_s = run.data_info.preflight_s
        started = time.perf_counter()
        for split in dsd.values():
            for path in split["image"]:
                images.load(path)
        decode_s = time.perf_counter() - started
    share = preflight_s / decode_s
    print(f"{IMAGES:,} JPEGs (160-320 px), image-classification folder:")
    print(f"data load with preflight   {load_s:6.2f} s   of which preflight {preflight_s:6.3f} s "
          f"({1000 * preflight_s / IMAGES:.2f} ms per image)")
    print(f"one decoding pass          {decode_s:6.2f} s   preflight = {100 * share:.1f} % of it")
    sys.exit(0)
