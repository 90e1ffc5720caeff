"""Image-classification infer throughput: taskcli vs transformers.pipeline on the same files, fp32 and bf16.

    .venv/bin/python bench/bench_vision.py [--images 96]

Model: ViT-base size (hidden 768, 12 layers, 224 px, patch 16), random weights, built offline. Inputs: JPEG files
of mixed sizes cut from the bundled COCO photo. Both sides start from file paths (decoding included): taskcli
batches `infer.batch_size` images per forward; the pipeline is timed at batch size 1 and 8. Like for like per
precision: taskcli `--precision bf16` against pipeline(dtype=torch.bfloat16). Reports the top-1 agreement.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
COCO = ROOT / ".." / "shared" / "realdata" / "COCO" / "000000039769.jpg"


def make_images(out: Path, n: int) -> list[str]:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    photo = Image.open(COCO).convert("RGB")
    paths = []
    for i in range(n):
        w, h = int(rng.integers(160, 640)), int(rng.integers(120, 480))
        x, y = int(rng.integers(0, 640 - w + 1)), int(rng.integers(0, 480 - h + 1))
        path = out / f"img_{i:03d}.jpg"
        photo.crop((x, y, x + w, y + h)).save(path, quality=90)
        paths.append(str(path))
    return paths


def build_model(out: Path) -> None:
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(0)
    labels = ["cat", "remote", "blanket", "couch", "other"]
    ViTForImageClassification(ViTConfig(num_labels=len(labels), id2label=dict(enumerate(labels)),
                                        label2id={n: i for i, n in enumerate(labels)})).save_pretrained(out)
    ViTImageProcessor(size={"height": 224, "width": 224}).save_pretrained(out)


def bench_taskcli(model_dir: str, paths: list[str], precision: str, batch_size: int) -> tuple[float, list[str]]:
    from taskcli import model_loading
    from taskcli.inference import predict_args

    sets = [f"infer.precision={'no' if precision == 'fp32' else precision}"]
    run, model = model_loading.load_for_inference("image-classification", model_dir, None, sets, False)
    options = {"batch_size": batch_size, "top_k": 1}
    predict_args(run, model, paths[:4], options)  # warm-up
    start = time.perf_counter()
    results = predict_args(run, model, paths, options)
    return time.perf_counter() - start, [r["labels"][0]["label"] for r in results]


def bench_pipeline(model_dir: str, paths: list[str], precision: str, batch_size: int) -> tuple[float, list[str]]:
    import torch
    from transformers import pipeline

    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    pipe = pipeline("image-classification", model=model_dir, device="cpu", dtype=dtype)
    pipe(paths[:4], batch_size=batch_size)  # warm-up
    start = time.perf_counter()
    out = pipe(paths, batch_size=batch_size, top_k=1)
    return time.perf_counter() - start, [o[0]["label"] for o in out]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=96)
    ap.add_argument("--precisions", default="fp32,bf16")
    args = ap.parse_args()
    from taskcli.run import quiet_libraries

    quiet_libraries()
    import torch

    with tempfile.TemporaryDirectory(prefix="taskcli-bench-") as tmp:
        tmp = Path(tmp)
        build_model(tmp / "vit-base-size")
        paths = make_images(tmp, args.images)
        print(f"image-classification infer, {len(paths)} JPEGs (160-640 px), ViT-base size at 224 px, "
              f"{torch.get_num_threads()} threads")
        for precision in args.precisions.split(","):
            ours, ours_top = bench_taskcli(str(tmp / "vit-base-size"), paths, precision, 32)
            pipes = {b: bench_pipeline(str(tmp / "vit-base-size"), paths, precision, b) for b in (1, 8)}
            agree = sum(a == b for a, b in zip(ours_top, pipes[1][1]))
            best = min(t for t, _ in pipes.values())
            print(f"{precision}: taskcli {ours:.2f} s ({len(paths) / ours:.1f} img/s); pipeline bs1 {pipes[1][0]:.2f} s, "
                  f"bs8 {pipes[8][0]:.2f} s -> {pipes[1][0] / ours:.2f}x bs1, {best / ours:.2f}x best; "
                  f"top-1 agreement {agree}/{len(paths)}", flush=True)


if __name__ == "__main__":
    main()
