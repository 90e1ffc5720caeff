"""Make the bundled image smoke samples from real photos: 64x64 crops.

    .venv/bin/python scripts/make_image_samples.py

Sources (tests/data, copied from the Apache-2.0 test files of the datasets/transformers repos):
  COCO/000000039769.jpg + COCO/coco_annotations.txt -> "cat" (2 boxes) and "remote" (2 boxes)
  images/test_image_rgba.png (a pug plush, RGBA)    -> "toy" (the whole picture, alpha on white)
Each box gives several crops, jittered in scale and position and sometimes mirrored (numpy seed 0), so the
samples are deterministic. Writes
  taskcli/samples/image-classification/<label>/<label>_NN.jpg                       (folder per label)
  taskcli/samples/image-segmentation/images/seg_NN.jpg + masks/seg_NN.png + metadata.jsonl
  taskcli/samples/object-detection/images/det_NN.jpg + metadata.jsonl {file_name, objects: {bbox, category}}
The segmentation masks are real annotations: COCO's cat and remote polygons, and the toy's alpha channel;
class ids 0 background, 1 cat, 2 remote, 3 toy, as palette PNGs. The detection boxes are COCO's own, moved and
clipped with each crop (COCO [x, y, width, height] pixels), kept when at least half of a box is in view.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageOps

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT / "tests" / "data"
OUT = ROOT / "taskcli" / "samples" / "image-classification"
SEG_OUT = ROOT / "taskcli" / "samples" / "image-segmentation"
SEG_CLASSES = ["background", "cat", "remote", "toy"]
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
    segmentation(coco, toy_rgba=Image.open(REAL / "images" / "test_image_rgba.png").convert("RGBA"), rng=rng)
    detection(coco, rng)


def detection(coco: Image.Image, rng, n: int = 12, out_w: int = 128, out_h: int = 96) -> None:
    out = ROOT / "taskcli" / "samples" / "object-detection"
    anns = [a for a in json.loads((REAL / "COCO" / "coco_annotations.txt").read_text())
            if a["category_id"] in CATEGORIES]
    if out.exists():
        shutil.rmtree(out)
    (out / "images").mkdir(parents=True)
    rows = []
    for i in range(n):
        scale = rng.uniform(0.6, 1.0)  # crop a 4:3 window, then resize it to out_w x out_h
        cw, ch = 640 * scale, 480 * scale
        left, top = rng.uniform(0, 640 - cw), rng.uniform(0, 480 - ch)
        flip = rng.random() < 0.5
        image = coco.crop((round(left), round(top), round(left + cw), round(top + ch))).resize((out_w, out_h),
                                                                                                 Image.BICUBIC)
        boxes, names = [], []
        for ann in anns:
            x, y, w, h = ann["bbox"]
            x0, y0 = max(x, left), max(y, top)
            x1, y1 = min(x + w, left + cw), min(y + h, top + ch)
            if x1 <= x0 or y1 <= y0 or (x1 - x0) * (y1 - y0) < 0.5 * w * h:
                continue
            fx, fy = out_w / cw, out_h / ch
            bx, by, bw, bh = (x0 - left) * fx, (y0 - top) * fy, (x1 - x0) * fx, (y1 - y0) * fy
            if flip:
                bx = out_w - bx - bw
            boxes.append([round(v, 1) + 0.0 for v in (bx, by, bw, bh)])  # + 0.0: no "-0.0" in the file
            names.append(CATEGORIES[ann["category_id"]])
        if flip:
            image = ImageOps.mirror(image)
        image.save(out / "images" / f"det_{i:02d}.jpg", quality=90)
        rows.append({"file_name": f"images/det_{i:02d}.jpg", "objects": {"bbox": boxes, "category": names}})
    (out / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"wrote {n} images with {sum(len(r['objects']['bbox']) for r in rows)} boxes to {out}")


def segmentation(coco: Image.Image, toy_rgba: Image.Image, rng) -> None:
    anns = json.loads((REAL / "COCO" / "coco_annotations.txt").read_text())
    mask = Image.new("L", coco.size, 0)
    draw = ImageDraw.Draw(mask)
    for category in (17, 75):  # cats first: the remotes lie on them
        for ann in anns:
            if ann["category_id"] == category:
                for poly in ann["segmentation"]:
                    draw.polygon([(poly[i], poly[i + 1]) for i in range(0, len(poly), 2)],
                                 fill=SEG_CLASSES.index(CATEGORIES[category]))
    toy = Image.alpha_composite(Image.new("RGBA", toy_rgba.size, (255, 255, 255, 255)), toy_rgba).convert("RGB")
    toy_mask = Image.fromarray(np.where(np.asarray(toy_rgba)[..., 3] > 127, 3, 0).astype(np.uint8), "L")
    pairs = []
    for source, label_map, n, lo, hi in ((coco, mask, 9, 200, 420), (toy, toy_mask, 3, 150, 200)):
        for _ in range(n):
            side = int(rng.integers(lo, hi + 1))
            left = int(rng.integers(0, source.width - side + 1))
            top = int(rng.integers(0, source.height - side + 1))
            box = (left, top, left + side, top + side)
            image = source.crop(box).resize((SIZE, SIZE), Image.BICUBIC)
            target = label_map.crop(box).resize((SIZE, SIZE), Image.NEAREST)
            if rng.random() < 0.5:
                image, target = ImageOps.mirror(image), ImageOps.mirror(target)
            pairs.append((image, target))
    if SEG_OUT.exists():
        shutil.rmtree(SEG_OUT)
    (SEG_OUT / "images").mkdir(parents=True)
    (SEG_OUT / "masks").mkdir()
    palette = [0, 0, 0, 220, 120, 40, 60, 160, 220, 240, 240, 240] + [0] * (256 * 3 - 12)
    rows = []
    for i, (image, target) in enumerate(pairs):
        image.save(SEG_OUT / "images" / f"seg_{i:02d}.jpg", quality=90)
        target = target.convert("P")
        target.putpalette(palette)
        target.save(SEG_OUT / "masks" / f"seg_{i:02d}.png")
        rows.append({"file_name": f"images/seg_{i:02d}.jpg", "mask": f"masks/seg_{i:02d}.png"})
    (SEG_OUT / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (SEG_OUT / "labels.json").write_text(json.dumps(dict(enumerate(SEG_CLASSES)), indent=1) + "\n")
    print(f"wrote {len(pairs)} image/mask pairs to {SEG_OUT}")


if __name__ == "__main__":
    main()
