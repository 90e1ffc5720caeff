"""Make the bundled depth-estimation smoke sample: small rendered scenes with exact depth.

    .venv/bin/python scripts/make_depth_samples.py

The real sample files (tests/data) have no depth maps, so the sample is rendered: a pinhole camera 1.5 m above a checkered
floor, facing a back wall, with fronto-parallel boxes standing on the floor. Depth (metres, along the optical
axis) is exact by construction. Colour fades into fog with distance and the floor texture shrinks with it, so
appearance carries the depth cues a model can learn. numpy seed 0: deterministic. Writes
taskcli/samples/depth-estimation/images/scene_NN.png + depth/scene_NN.png (16-bit, millimetres) + metadata.jsonl.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

OUT = Path(__file__).resolve().parents[1] / "taskcli" / "samples" / "depth-estimation"
SIZE, FOCAL, CAM_H, SCENES = 64, 48.0, 1.5, 16
FOG = np.array([200.0, 210.0, 225.0])


def scene(rng) -> tuple[np.ndarray, np.ndarray]:
    horizon = rng.uniform(18, 28)
    wall = rng.uniform(6.0, 9.0)
    rows, cols = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    below = rows - horizon
    depth = np.where(below > 0.5, CAM_H * FOCAL / np.maximum(below, 0.5), wall)
    depth = np.minimum(depth, wall)
    x_world = (cols - SIZE / 2) * depth / FOCAL
    checker = ((np.floor(x_world / 0.5) + np.floor(depth / 0.5)) % 2)[..., None]
    floor_rgb = np.where(checker > 0, [150.0, 110.0, 70.0], [90.0, 60.0, 40.0])
    wall_rgb = np.broadcast_to(rng.uniform(60, 200, 3), floor_rgb.shape)
    rgb = np.where((depth < wall)[..., None], floor_rgb, wall_rgb).astype(np.float64)
    for _ in range(int(rng.integers(1, 4))):
        d = rng.uniform(1.5, 5.0)
        width, height = rng.uniform(0.4, 1.2), rng.uniform(0.4, 1.6)
        centre = rng.uniform(-1.5, 1.5)
        bottom = horizon + CAM_H * FOCAL / d
        top = bottom - height * FOCAL / d
        left, right = SIZE / 2 + (centre - width / 2) * FOCAL / d, SIZE / 2 + (centre + width / 2) * FOCAL / d
        inside = (rows >= top) & (rows < bottom) & (cols >= left) & (cols < right) & (depth > d)
        depth = np.where(inside, d, depth)
        shade = 0.7 + 0.3 * (cols - left) / max(right - left, 1)
        rgb = np.where(inside[..., None], rng.uniform(40, 255, 3) * shade[..., None], rgb)
    fade = np.exp(-depth / 7.0)[..., None]
    rgb = rgb * fade + FOG * (1 - fade) + rng.normal(0, 3, rgb.shape)
    return np.clip(rgb, 0, 255).astype(np.uint8), depth


def main() -> None:
    rng = np.random.default_rng(0)
    if OUT.exists():
        shutil.rmtree(OUT)
    (OUT / "images").mkdir(parents=True)
    (OUT / "depth").mkdir()
    rows = []
    for i in range(SCENES):
        rgb, depth = scene(rng)
        Image.fromarray(rgb, "RGB").save(OUT / "images" / f"scene_{i:02d}.png")
        Image.fromarray(np.round(depth * 1000).astype(np.uint16)).save(OUT / "depth" / f"scene_{i:02d}.png")
        rows.append({"file_name": f"images/scene_{i:02d}.png", "depth": f"depth/scene_{i:02d}.png"})
    (OUT / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"wrote {SCENES} scenes to {OUT}")


if __name__ == "__main__":
    main()
