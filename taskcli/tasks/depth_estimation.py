"""depth-estimation (monocular): image -> metric depth per pixel (GLPN; DPT-style models for eval and infer).

Data: rows of an image and a depth map. The depth map is a 16-bit PNG divided by `params.depth_scale` (1000:
millimetres; KITTI's 256), or a float TIFF / datasets float Image / .npy in metres. 0 marks pixels without a
measurement; they count neither in the loss (GLPN's scale-invariant log loss masks them) nor in the scores.
Hub dataset, imagefolder with metadata.jsonl/csv (`file_name`, `depth`), or CSV/JSONL with two path columns.

Eval: abs_rel, sq_rel, rmse, rmse_log and delta1..3 (Eigen et al.) over valid pixels, summed batch by batch at the
processor's resolution. Infer: the depth map at the input's own size via the processor's post-processing (as the
pipeline), its range and mean, with --save-maps DIR the map as .npy (metres) plus a greyscale .png preview, and
with --save-overlays DIR the map in colour (magma, near bright) at the image's size (taskcli/overlays.py).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from taskcli.task import Result, Task
from taskcli.tasks import vision_common


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    depth_scale: float = Field(1000.0, gt=0, description="integer depth images are divided by this to get metres")
    min_depth: float = Field(1e-3, ge=0, description="scores count reference pixels deeper than this (metres)")
    max_depth: float | None = Field(None, gt=0, description="... and not deeper than this (default: no cap)")
    augment: bool = Field(True, description="training only: random horizontal flip of image and depth together")


def preprocess(run, ds, training):
    """Keep image and depth references; both are decoded per batch (and flipped together when training)."""
    from taskcli import images

    flip = training and run.params.augment
    scale = run.params.depth_scale

    def transform(batch):
        import random

        from PIL import ImageOps

        from taskcli.errors import TaskcliError

        out_images, out_depths = [], []
        for image, depth in zip(batch["image"], batch["depth"]):
            image, depth = images.load(image), images.load_depth(depth, scale)
            if depth.shape != (image.height, image.width):
                raise TaskcliError(f"depth map {depth.shape[1]}x{depth.shape[0]} does not match its image "
                                   f"{image.width}x{image.height}", "depth maps must have their image's size")
            if flip and random.random() < 0.5:
                image, depth = ImageOps.mirror(image), depth[:, ::-1].copy()
            out_images.append(image)
            out_depths.append(depth)
        return {"image": out_images, "depth": out_depths}

    return ds.select_columns(["image", "depth"]).with_transform(transform)


class DepthCollator:
    """pixel_values from the processor; the reference depth resized (nearest: no invented depths at edges, and
    missing pixels stay 0) to the processed image's size."""

    def __init__(self, processor):
        self.processor = processor

    def __call__(self, rows):
        import numpy as np
        import torch
        import torch.nn.functional as F

        pixels = self.processor([r["image"] for r in rows], return_tensors="pt")["pixel_values"]
        depth = torch.from_numpy(np.stack([np.asarray(r["depth"], dtype=np.float32) for r in rows]))[:, None]
        labels = F.interpolate(depth, size=pixels.shape[-2:], mode="nearest")[:, 0]
        return {"pixel_values": pixels, "labels": labels}


def collator(run):
    return DepthCollator(run.processor)


def metrics(run, examples, features):
    """fn(pred, compute_result): sums each batch's per-pixel errors; scores them on the last batch."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from taskcli.metrics import DEPTH_SUMS, depth, depth_sums, main_output

    lo, hi = run.params.min_depth, run.params.max_depth
    totals = dict.fromkeys(DEPTH_SUMS, 0.0)

    def compute(pred, compute_result: bool = True):
        raw = main_output(pred)
        refs = torch.as_tensor(pred.label_ids).float().cpu()
        guess = torch.as_tensor(raw).float().cpu()
        if guess.shape[-2:] != refs.shape[-2:]:
            guess = F.interpolate(guess[:, None], size=refs.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        ref, est = refs.numpy(), guess.numpy()
        valid = (ref > lo) & (ref <= hi if hi else np.ones_like(ref, dtype=bool))
        for key, value in depth_sums(est, ref, valid).items():
            totals[key] += value
        if not compute_result:
            return {}
        result = depth(totals)
        totals.update(dict.fromkeys(DEPTH_SUMS, 0.0))
        return result

    return compute


def setup(run, model, options):
    # the processor keeps each image's size (rounded to 32): batch only equal sizes
    return vision_common.context(vision_common.VisionContext, run, model, options, same_size=True,
                                 outputs=("predicted_depth",), map_suffixes=(".npy", ".png"),
                                 min_side=int(getattr(run.processor, "size_divisor", None) or 1))


def decode(ctx, picture, outputs):
    """The processor's own post-processing (back to the input's size), then the map's range and mean."""
    import numpy as np
    from PIL import Image

    from taskcli import overlays

    found = ctx.processor.post_process_depth_estimation(outputs[0], target_sizes=[picture.image.size[::-1]])[0]
    depth = found["predicted_depth"].cpu().numpy().astype(np.float32)
    result = {"min": float(depth.min()), "max": float(depth.max()), "mean": float(depth.mean()),
              "size": [int(depth.shape[1]), int(depth.shape[0])]}
    if picture.source in ctx.maps:
        npy, png = ctx.maps[picture.source]
        npy.parent.mkdir(parents=True, exist_ok=True)
        np.save(npy, depth)
        span = float(depth.max() - depth.min()) or 1.0  # preview: near bright, far dark
        Image.fromarray(((depth.max() - depth) / span * 255).round().astype(np.uint8)).save(png)
        result["depth"] = str(npy)
    return Result(result, overlay=overlays.save(ctx.overlays.get(picture.source), lambda: overlays.depth(depth)))


STEPS = vision_common.steps(setup, decode)


def render(item, result):
    row = {"min m": f"{result['min']:.2f}", "mean m": f"{result['mean']:.2f}", "max m": f"{result['max']:.2f}"}
    return [{**row, **({"depth": result["depth"]} if "depth" in result else {})}]


TASK = Task(
    infer_options=vision_common.MapOptions,
    name="depth-estimation",
    aliases=("depth", "monocular-depth"),
    summary="Estimate the distance of every pixel from the camera, from one image",
    modality="image",
    metric_names=("abs_rel", "rmse", "delta1"),
    best_metric="abs_rel",
    greater_is_better=False,
    columns={"image": "image file path (or a hub Image column)",
             "depth": "depth map: 16-bit PNG (see params.depth_scale), float TIFF or .npy path, or a hub Image column"},
    sample="depth-estimation",
    default_recipe="glpn",
    auto_model="AutoModelForDepthEstimation",
    load_processor=vision_common.load_processor,
    preprocess=preprocess,
    collator=collator,
    metrics=metrics,
    steps=lambda run, model: STEPS,
    render=render,
    params=Params,
    collator_reads_raw=True,
    batch_eval_metrics=True,
)
