"""Make the bundled image-classification smoke sample: 64x64 JPEG crops of real photos, one folder per label.

    .venv/bin/python scripts/make_image_samples.py

Sources (../shared/realdata, Apache-2.0 test files of the datasets/transformers repos):
  COCO/000000039769.jpg + COCO/coco_annotations.txt -> "cat" (2 boxes) and "remote" (2 boxes)
  images/test_image_rgba.png (a pug plush, RGBA)    -> "toy" (the whole picture, alpha on white)
Each box gives several crops, jittered in scale and position and sometimes mirrored (numpy seed 0), so the
sample is deterministic. Writes taskcli/samples/image-classification/<label>/<label>_NN.jpg.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT / ".." / "shared" / "realdata"
OUT = ROOT / "taskcli" / "samples" / "image-classification"
SIZE = 64
PER_CLASS = 8
CATEGORIES = {17: "cat", 75: "remote"}


def crops(image: Image.Image, box: tuple[float, float, float, float], n: int, rng) -> list[Image.Image]:
    x, y, w, h = box
    out = []
    for _ in range(n):
        scale = rng.uniform(0.85, 1.15)
        cw, ch = w * scale, h * scale
        cx = x + w / 2 + rng.uniform(-0.1, 0.1) * w
        cy = y + h / 2 + rng.uniform(-0.1, 0.1) * h
        left, top = max(0, cx - cw / 2), max(0, cy - ch / 2)
        right, bottom = min(image.width, cx + cw / 2), min(image.height, cy + ch / 2)
        crop = image.crop((round(left), round(top), round(right), round(bottom))).resize((SIZE, SIZE), Image.BICUBIC)
        out.append(ImageOps.mirror(crop) if rng.random() < 0.5 else crop)
    return out


def main() -> None:
    rng = np.random.default_rng(0)
    coco = Image.open(REAL / "COCO" / "000000039769.jpg").convert("RGB")
    boxes: dict[str, list] = {}
    for ann in json.loads((REAL / "COCO" / "coco_annotations.txt").read_text()):
        if ann["category_id"] in CATEGORIES:
            boxes.setdefault(CATEGORIES[ann["category_id"]], []).append(ann["bbox"])
    toy = Image.open(REAL / "images" / "test_image_rgba.png").convert("RGBA")
    toy = Image.alpha_composite(Image.new("RGBA", toy.size, (255, 255, 255, 255)), toy).convert("RGB")
    made: dict[str, list[Image.Image]] = {}
    for label, label_boxes in boxes.items():
        made[label] = [c for b in label_boxes for c in crops(coco, b, PER_CLASS // len(label_boxes), rng)]
    made["toy"] = crops(toy, (20, 10, 160, 180), PER_CLASS, rng)
    if OUT.exists():
        shutil.rmtree(OUT)
    for label, images in made.items():
        (OUT / label).mkdir(parents=True)
        for i, img in enumerate(images):
            img.save(OUT / label / f"{label}_{i:02d}.jpg", quality=90)
    print(f"wrote {sum(len(v) for v in made.values())} images in {len(made)} classes to {OUT}")


if __name__ == "__main__":
    main()
